"""The ``streamgru`` command: demo, run, info, convert, bench, warmup.

Every subcommand has ``--help``. A bad model file or bad arguments print one
line on stderr (no traceback) and exit non-zero:

    0  success
    1  the model file (or a state file) could not be read or written
    2  bad arguments, or a bad input line in ``run``
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Any, Iterable, Sequence, TextIO

import numpy as np

from . import __version__
from .data import WATCH_GRU, WATCH_TEST
from .errors import InputError, StreamGRUError, WeightsError
from .formats import load, save
from .layers import GRU, LSTM, RNN, Dense
from .model import Model

__all__ = ["main", "build_parser", "parse_sample", "LineError"]

PROG = "streamgru"
DEMO_MODEL = WATCH_GRU
DEMO_STREAM = WATCH_TEST

FORMAT_NAMES = {
    ".npz": "streamgru native (.npz)",
    ".safetensors": "safetensors (streamgru native, or a PyTorch state dict)",
    ".pt": "PyTorch state dict / checkpoint (.pt, read without torch)",
    ".pth": "PyTorch state dict / checkpoint (.pth, read without torch)",
    ".onnx": "ONNX graph",
}


class CLIError(Exception):
    """A failure to report as one line on stderr with exit code ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class LineError(ValueError):
    """An input line of ``run`` that is not a sample; the message says why."""


# ----------------------------------------------------------------------------
# helpers


def _dtype(name: str | None):
    return None if name is None else np.dtype(name)


def _load_model(path: str, dtype: str | None = None) -> Model:
    """Load ``path``; WeightsError (bad file) becomes exit code 1."""
    try:
        model = load(path)
    except WeightsError as exc:
        raise CLIError(str(exc), 1) from None
    except OSError as exc:
        raise CLIError(f"{path}: {exc.strerror or exc}", 1) from None
    return model if dtype is None else model.astype(_dtype(dtype))


def _percentiles_us(ns: np.ndarray) -> tuple[float, float, float]:
    """p50, p99 and max of nanosecond timings, in microseconds."""
    p50, p99 = np.percentile(ns, [50, 99])
    return p50 / 1e3, p99 / 1e3, float(ns.max()) / 1e3


def _layer_line(i: int, layer: Any) -> str:
    """One line describing a layer: kind, sizes, and the flags that change its math."""
    name = type(layer).__name__
    head = f"{i:>3}  {name:<5} {layer.input_size:>5} -> {layer.output_size:<5}"
    params = sum(a.size for a in layer.arrays().values())
    parts = [f"params {params:,}"]
    if layer.state_size:
        parts.append(f"state {layer.state_size}")
    if isinstance(layer, GRU):
        parts.append(
            "reset_after=True (r applied after W_hn h)"
            if layer.reset_after
            else "reset_after=False (r applied before W_hn)"
        )
        parts.append(f"gates {layer.gate_activation}, candidate {layer.activation}")
    elif isinstance(layer, LSTM):
        if layer.proj_size:
            parts.append(f"projection {layer.proj_size}")
        if layer.peepholes is not None:
            parts.append("peepholes")
        if layer.input_forget:
            parts.append("input_forget (f = 1 - i)")
        parts.append(
            f"gates {layer.gate_activation}, cell {layer.cell_activation}, "
            f"hidden {layer.hidden_activation}"
        )
    elif isinstance(layer, RNN):
        parts.append(f"activation {layer.activation}")
    elif isinstance(layer, Dense):
        act = layer.activation
        parts.append(f"activation {'none' if act.name == 'identity' else act}")
    clip = getattr(layer, "clip", None)
    if clip is not None:
        parts.append(f"clip {clip:g}")
    return f"{head}  " + ", ".join(parts)


# ----------------------------------------------------------------------------
# run: parsing samples


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _fields(line: str) -> list[str]:
    """Comma-separated if the line has a comma, else whitespace-separated."""
    if "," in line:
        return [f.strip() for f in line.split(",")]
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
        raise LineError(f"expected {n} values, got {len(fields)}")
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


# ----------------------------------------------------------------------------
# subcommands


def cmd_run(args: argparse.Namespace) -> int:
    model = _load_model(args.model, args.dtype)
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
            s.step(x, out=y)
            if args.argmax:
                k = int(y.argmax())
                label = f"{k}{sep}{classes[k]}" if classes and k < len(classes) else str(k)
                out.write(label + "\n")
            else:
                out.write(sep.join(fmt % v for v in y.tolist()) + "\n")
            out.flush()
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): stop quietly, keep the state
        _quiet_stdout()
    except UnicodeDecodeError as exc:
        print(f"{PROG} run: input is not UTF-8 text ({exc.reason})", file=sys.stderr)
        code = 2
    finally:
        if close:
            src.close()
        if args.state_out:
            _write_state(args.state_out, s.get_state())
    return code


def _quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so interpreter exit
    does not print a second error while flushing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def cmd_info(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    suffix = os.path.splitext(args.model)[1].lower()
    w = sys.stdout.write
    w(f"file:        {args.model}\n")
    w(f"format:      {FORMAT_NAMES.get(suffix, suffix)}\n")
    w(f"dtype:       {model.dtype.name}\n")
    w(f"input size:  {model.input_size}\n")
    w(f"output size: {model.output_size}\n")
    w(f"state size:  {model.state_size}"
      f"{'' if not model.initial_state.any() else ' (non-zero initial state from the file)'}\n")
    w(f"parameters:  {model.num_parameters:,}\n")
    w("layers:\n")
    for i, layer in enumerate(model.layers):
        w(_layer_line(i, layer) + "\n")
    w("conventions: canonical PyTorch form (GRU gate rows r, z, n; LSTM i, f, g, o; "
      "h' = (1 - z) * n + z * h); loaders convert other gate orders on import\n")
    if model.metadata:
        w("metadata:\n")
        for key, value in model.metadata.items():
            text = str(value)
            w(f"  {key}: {text if len(text) <= 200 else text[:197] + '...'}\n")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    suffix = os.path.splitext(args.output)[1].lower()
    if suffix not in (".npz", ".safetensors"):
        raise CLIError(
            f"{args.output}: convert writes streamgru's native format; use a .npz or "
            f".safetensors suffix",
            2,
        )
    if os.path.abspath(args.output) == os.path.abspath(args.input):
        raise CLIError(f"{args.output}: output is the input file; choose another name", 2)
    model = _load_model(args.input, args.dtype)
    meta = dict(model.metadata)
    meta.setdefault("converted_from", os.path.basename(args.input))
    model = Model(model.layers, model.dtype, model.initial_state, meta)
    try:
        save(model, args.output)
    except WeightsError as exc:
        raise CLIError(str(exc), 1) from None
    except OSError as exc:
        raise CLIError(f"{args.output}: cannot write ({exc.strerror or exc})", 1) from None
    print(f"wrote {args.output}: {model!r}, {model.num_parameters:,} parameters")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    model = _load_model(args.model, args.dtype)
    if args.steps < 100 or args.chunk < 1 or args.repeats < 1:
        raise CLIError("bench: --steps must be >= 100, --chunk and --repeats >= 1", 2)
    rng = np.random.default_rng(0)
    s = model.stream()
    xs = rng.standard_normal((args.steps, model.input_size)).astype(model.dtype)
    y = np.empty(model.output_size, model.dtype)
    for x in xs[:100]:  # compile or load the cached kernels outside the timing
        s.step(x, out=y)
    ns = np.empty(args.steps, np.int64)
    clock = time.perf_counter_ns
    for i, x in enumerate(xs):
        t0 = clock()
        s.step(x, out=y)
        ns[i] = clock() - t0
    p50, p99, mx = _percentiles_us(ns)
    X = rng.standard_normal((args.chunk, model.input_size)).astype(model.dtype)
    Y = np.empty((args.chunk, model.output_size), model.dtype)
    s.process(X, out=Y)
    chunk_ns = np.empty(args.repeats, np.int64)
    for i in range(args.repeats):
        t0 = clock()
        s.process(X, out=Y)
        chunk_ns[i] = clock() - t0
    best = float(np.median(chunk_ns))
    print(f"model:   {model!r}, {model.num_parameters:,} parameters")
    print(f"step:    p50 {p50:.1f} us   p99 {p99:.1f} us   max {mx:.1f} us   "
          f"({args.steps} single-sample steps, out= given)")
    print(f"process: {args.chunk} samples per call, median {best / 1e6:.2f} ms = "
          f"{args.chunk / (best / 1e9):,.0f} samples/s   ({args.repeats} calls)")
    return 0


def _progress(stream: TextIO, text: str, live: bool) -> None:
    if live:
        stream.write("\r" + text + "\x1b[K")
    else:
        stream.write(text + "\n")
    stream.flush()


def cmd_demo(args: argparse.Namespace) -> int:
    model = _load_model(args.model or DEMO_MODEL)
    path = args.data or DEMO_STREAM
    try:
        with np.load(path, allow_pickle=False) as z:
            samples = np.ascontiguousarray(z["samples"], dtype=model.dtype)
            labels = np.asarray(z["labels"], np.int64)
            recs = np.asarray(z["recording_ids"], np.int64)
            classes = [str(c) for c in z["classes"]] if "classes" in z.files else None
    except (OSError, KeyError, ValueError) as exc:
        raise CLIError(f"{path}: not a demo stream ({exc})", 1) from None
    if samples.ndim != 2 or samples.shape[1] != model.input_size or len(labels) != len(samples):
        raise CLIError(f"{path}: samples do not fit the model's {model.input_size} inputs", 1)
    if len(labels) and (labels.min() < 0 or labels.max() >= model.output_size):
        raise CLIError(f"{path}: labels must be class indices 0..{model.output_size - 1}", 1)
    if args.limit is not None:
        if args.limit < 1:
            raise CLIError("demo: --limit must be at least 1", 2)
        samples, labels, recs = samples[: args.limit], labels[: args.limit], recs[: args.limit]
    n = len(samples)
    names = classes or [str(k) for k in range(model.output_size)]
    err = sys.stderr
    live = err.isatty() if args.progress == "auto" else args.progress == "live"
    quiet = args.progress == "none"
    print(f"streamgru demo: {model!r}, {model.num_parameters:,} parameters", flush=True)
    print(f"streaming {n} samples ({n / 50:.0f} s of 50 Hz smartwatch data from "
          f"{len(np.unique(recs))} held-out recordings) one at a time", flush=True)

    y = np.empty(model.output_size, model.dtype)
    # load (or, on a fresh install, compile) the kernels before timing anything
    t0 = time.perf_counter()
    model.stream().step(samples[0], out=y)
    ready = time.perf_counter() - t0
    print(f"kernels ready in {ready:.2f} s"
          f"{' (compiled: cached on disk from now on)' if ready > 1.0 else ''}", flush=True)
    s = model.stream()
    pred = np.empty(n, np.int64)
    ns = np.empty(n, np.int64)
    clock = time.perf_counter_ns
    every = max(1, n // 20)
    next_report = time.monotonic() + 0.1
    for i in range(n):
        x = samples[i]
        t0 = clock()
        s.step(x, out=y)
        ns[i] = clock() - t0
        pred[i] = y.argmax()
        if quiet:
            continue
        # live: redraw about 10 times a second; piped: a line every 5 %
        if (live and time.monotonic() >= next_report) or (not live and (i + 1) % every == 0):
            next_report = time.monotonic() + 0.1
            acc = float(np.mean(pred[: i + 1] == labels[: i + 1]))
            _progress(
                err,
                f"{i + 1:>6}/{n}  t={(i + 1) / 50:7.1f}s  now: {names[pred[i]]:<5} "
                f"(true {names[labels[i]]:<5})  accuracy so far {acc:6.1%}",
                live,
            )
    if live and not quiet:
        err.write("\n")
        err.flush()

    per_step = float(np.mean(pred == labels))
    votes = [
        np.bincount(pred[recs == r], minlength=model.output_size).argmax() == labels[recs == r][0]
        for r in np.unique(recs)
    ]
    p50, p99, mx = _percentiles_us(ns)
    print(f"accuracy per sample:            {per_step:.1%} ({int((pred == labels).sum())}/{n})")
    print(f"accuracy per recording (vote):  {float(np.mean(votes)):.1%} "
          f"({int(np.sum(votes))}/{len(votes)})")
    print(f"latency per sample (step):      p50 {p50:.1f} us   p99 {p99:.1f} us   "
          f"max {mx:.1f} us")
    print(f"total streaming time:           {ns.sum() / 1e9:.2f} s for {n} samples")
    return 0


def cmd_warmup(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    try:
        from .kernels import warmup as kernel_warmup  # the kernels' own list of signatures
    except ImportError:
        kernel_warmup = None
    if callable(kernel_warmup):
        took = kernel_warmup()
        how = "streamgru.kernels.warmup()"
        if isinstance(took, dict):
            how += ": " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
    else:
        _warmup_by_streaming()
        how = "one sample through a float32 and a float64 model of every layer kind"
    print(f"numba cache ready ({how}) in {time.perf_counter() - t0:.1f} s")
    return 0


def _warmup_by_streaming() -> None:
    """Run every entry point (step, process, batch step, batch process) of a
    model holding each layer kind, in float32 and float64, so numba compiles
    them once and caches them on disk."""
    rng = np.random.default_rng(0)
    i, h = 3, 4

    def m(rows: int, cols: int) -> np.ndarray:
        return rng.standard_normal((rows, cols)) * 0.3

    layers = [
        GRU.from_torch(m(3 * h, i), m(3 * h, h)),
        LSTM.from_torch(m(4 * h, h), m(4 * h, h)),
        RNN.from_torch(m(h, h), m(h, h)),
        Dense(m(2, h)),
    ]
    for dtype in (np.float32, np.float64):
        model = Model(layers, dtype=dtype)
        x = np.zeros((2, 2, i), dtype)
        model.stream().step(x[0, 0])
        model.stream().process(x[0])
        model.streams(2).step(x[:, 0])
        model.streams(2).process(x)


def cmd_cache(args: argparse.Namespace) -> int:
    """Where the compiled kernels are cached, how big the cache is; --clear empties it."""
    from .kernels import cache

    if args.clear:
        print(f"removed {cache.clear()} files from {cache.base_dir()}")
    files, size = cache.usage()
    print(f"kernel cache for this install: {cache.folder()}")
    print(f"all streamgru kernel caches:   {cache.base_dir()} ({files} files, "
          f"{size / 1e6:.1f} MB)")
    print(f"writable: {'yes' if cache.can_write() else 'no (kernels compile in memory)'}")
    print(f"set {cache.ENV} to move it; `{PROG} cache --clear` empties it")
    return 0


# ----------------------------------------------------------------------------
# parser


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (no usage dump) on a bad argument."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``streamgru`` command."""
    p = _Parser(
        prog=PROG,
        description="Run trained recurrent networks (GRU, LSTM, RNN + Dense) one sample "
        "at a time on a CPU.",
        epilog="Model files: .onnx, .pt/.pth (state dict), .safetensors, .npz (native).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    dtypes = ("float32", "float64")

    d = sub.add_parser(
        "demo",
        help="stream the shipped smartwatch model over held-out sensor data",
        description="Stream the shipped GRU (trained on smartwatch exercise recordings) "
        "sample by sample over the held-out subjects' recordings, showing live progress, "
        "then print its accuracy and per-sample latency (p50/p99/max).",
    )
    d.add_argument("--limit", type=int, metavar="N", help="stream only the first N samples")
    d.add_argument("--progress", choices=("auto", "live", "lines", "none"), default="auto",
                   help="progress on stderr: one updating line (live, default on a terminal), "
                   "periodic lines (lines, default otherwise), or none")
    d.add_argument("--model", metavar="MODEL", help="another model file (default: the shipped one)")
    d.add_argument("--data", metavar="NPZ",
                   help="another stream: .npz with samples, labels, recording_ids")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser(
        "run",
        help="stream samples from a file or stdin through a model",
        description="Read samples (one per line: comma- or whitespace-separated numbers; "
        "an optional header line; blank lines and lines starting with # are skipped) and "
        "write one output line per sample, flushed at once, so it works in a pipe. A bad "
        "line (wrong count, not a number, NaN/inf) stops the run with exit code 2 and a "
        "message naming the line; outputs of the earlier lines are already written and "
        "--state-out holds the state after the last good line.",
    )
    r.add_argument("model", metavar="MODEL", help="model file")
    r.add_argument("input", metavar="INPUT", nargs="?",
                   help="input file (default, or -: stdin)")
    r.add_argument("--state-in", metavar="FILE", help="start from this state (.npy)")
    r.add_argument("--state-out", metavar="FILE",
                   help="write the final state here (.npy), to continue with --state-in")
    r.add_argument("--argmax", action="store_true",
                   help="print the index of the largest output (and its class name if "
                   "the model names its classes) instead of the outputs")
    r.add_argument("--sep", default=",", help="output separator (default ,)")
    r.add_argument("--dtype", choices=dtypes, help="compute in this float type")
    r.set_defaults(func=cmd_run)

    i = sub.add_parser(
        "info",
        help="describe a model: layers, sizes, parameters, conventions",
        description="Print a model's layers, sizes, parameter count, state size, dtype, "
        "source format and conventions (e.g. GRU reset_after) and its metadata.",
    )
    i.add_argument("model", metavar="MODEL", help="model file")
    i.set_defaults(func=cmd_info)

    c = sub.add_parser(
        "convert",
        help="convert any supported model file to the native format",
        description="Load IN (.onnx, .pt/.pth, .safetensors, .npz) and save it as OUT in "
        "streamgru's native format (.npz or .safetensors), which loads back bit-exact.",
    )
    c.add_argument("input", metavar="IN", help="model file to read")
    c.add_argument("output", metavar="OUT", help="native file to write (.npz or .safetensors)")
    c.add_argument("--dtype", choices=dtypes, help="store in this float type")
    c.set_defaults(func=cmd_convert)

    b = sub.add_parser(
        "bench",
        help="time a model's step latency and chunk throughput on this machine",
        description="Time single-sample steps (p50/p99/max latency, with out= given) and "
        "chunked process() throughput for MODEL on random input.",
    )
    b.add_argument("model", metavar="MODEL", help="model file")
    b.add_argument("--steps", type=int, default=20000, help="timed single steps (default 20000)")
    b.add_argument("--chunk", type=int, default=1000, help="samples per process() call (default 1000)")
    b.add_argument("--repeats", type=int, default=50, help="timed process() calls (default 50)")
    b.add_argument("--dtype", choices=dtypes, help="compute in this float type")
    b.set_defaults(func=cmd_bench)

    w = sub.add_parser(
        "warmup",
        help="compile and cache the kernels now (e.g. after install)",
        description="Compile streamgru's numba kernels for float32 and float64 and store "
        "them in numba's on-disk cache, so the first real run does not pay for it.",
    )
    w.set_defaults(func=cmd_warmup)

    k = sub.add_parser(
        "cache",
        help="show where the compiled kernels are cached and its size (--clear: empty it)",
        description="Print the folder streamgru caches its compiled numba kernels in "
        "($STREAMGRU_CACHE_DIR, else $NUMBA_CACHE_DIR/streamgru, else "
        "$XDG_CACHE_HOME/streamgru or ~/.cache/streamgru), and its size.",
    )
    k.add_argument("--clear", action="store_true",
                   help="remove every cached kernel (all versions); the next run recompiles")
    k.set_defaults(func=cmd_cache)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamgru`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except (WeightsError, InputError) as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, WeightsError) else 2
    except StreamGRUError as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
