"""``streamgru run``: samples from a file or stdin, one output line each."""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Iterable, TextIO

import numpy as np

from ..errors import InputError
from ..model import Model
from .common import PROG, CLIError, load_model, quiet_stdout


class LineError(ValueError):
    """An input line of ``run`` that is not a sample; the message says why."""


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _fields(line: str) -> list[str]:
    """Fields separated by commas, else semicolons (spreadsheets in many
    locales), else whitespace."""
    for sep in (",", ";"):
        if sep in line:
            return [f.strip() for f in line.split(sep)]
    return line.split()


def is_header(line: str) -> bool:
    """A header line has no field that reads as a number (e.g. ``ax,ay,az``)."""
    fields = [f for f in _fields(line) if f]
    return bool(fields) and not any(_is_number(f) for f in fields)


def parse_sample(line: str, n: int) -> np.ndarray:
    """Parse one input line into ``n`` finite float64 values.

    Raises
    ------
    LineError
        Wrong number of values, an empty or non-numeric field, NaN or inf;
        the message says which field (1-based) and what it held.
    """
    fields = _fields(line)
    if len(fields) != n:
        raise LineError(f"expected {n} values, got {len(fields)} (fields are separated by "
                        f"commas, semicolons or spaces)")
    values = np.empty(n)
    for j, field in enumerate(fields):
        if not field:
            raise LineError(f"field {j + 1} is empty")
        try:
            v = float(field)
        except ValueError:
            raise LineError(f"field {j + 1} is not a number: {field[:40]!r}") from None
        if not math.isfinite(v):
            raise LineError(f"field {j + 1} is {field!r}; values must be finite")
        values[j] = v
    return values


def _read_state(path: str, model: Model) -> np.ndarray:
    try:
        state = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CLIError(f"--state-in {path}: cannot read a .npy array ({exc})", 1) from None
    if state.shape != (model.state_size,) or state.dtype.kind != "f":
        raise CLIError(
            f"--state-in {path}: expected {model.state_size} floats for this model, got "
            f"shape {state.shape} of {state.dtype}",
            2,
        )
    return state


def _write_state(path: str, state: np.ndarray) -> None:
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            np.save(f, state)
        os.replace(tmp, path)
    except OSError as exc:
        raise CLIError(f"--state-out {path}: cannot write ({exc.strerror or exc})", 1) from None


def _lines(stream: TextIO) -> Iterable[str]:
    # readline, not file iteration: yields each line as soon as it arrives in a pipe
    return iter(stream.readline, "")


def cmd_run(args: argparse.Namespace) -> int:
    model = load_model(args.model, args.dtype)
    s = model.stream()
    if args.state_in:
        try:
            s.set_state(_read_state(args.state_in, model))
        except InputError as exc:
            raise CLIError(f"--state-in {args.state_in}: {exc}", 2) from None
    fmt = "%.9g" if model.dtype == np.float32 else "%.17g"
    sep = args.sep
    classes = model.metadata.get("classes") if args.argmax else None
    y = np.empty(model.output_size, model.dtype)
    x = np.empty(model.input_size, model.dtype)
    out = sys.stdout
    code = 0
    if args.input in (None, "-"):
        src, close = sys.stdin, False
    else:
        try:
            src, close = open(args.input, encoding="utf-8"), True
        except OSError as exc:
            raise CLIError(f"{args.input}: {exc.strerror or exc}", 1) from None
    try:
        first = True
        for lineno, line in enumerate(_lines(src), start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if first:
                first = False
                if is_header(text):
                    continue
            try:
                values = parse_sample(text, model.input_size)
                with np.errstate(over="ignore"):
                    x[:] = values
                if not np.isfinite(x).all():
                    j = int(np.flatnonzero(~np.isfinite(x))[0])
                    raise LineError(f"field {j + 1} ({values[j]:g}) is too large for "
                                    f"{model.dtype.name}")
            except LineError as exc:
                print(f"{PROG} run: line {lineno}: {exc}; stopped (state kept after the "
                      f"last good line)", file=sys.stderr)
                code = 2
                break
            if s.step(x, out=y) is None:
                continue  # a downsampling model (stride > 1) gave no row for this sample
            if args.argmax:
                k = int(y.argmax())
                label = f"{k}{sep}{classes[k]}" if classes and k < len(classes) else str(k)
                out.write(label + "\n")
            else:
                out.write(sep.join(fmt % v for v in y.tolist()) + "\n")
            out.flush()
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): stop quietly, keep the state
        quiet_stdout()
    except UnicodeDecodeError as exc:
        print(f"{PROG} run: input is not UTF-8 text ({exc.reason})", file=sys.stderr)
        code = 2
    finally:
        if close:
            src.close()
        if args.state_out:
            _write_state(args.state_out, s.get_state())
    return code
