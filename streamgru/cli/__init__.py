"""The ``streamgru`` command: demo, run, info, convert, bench, warmup, cache.

Every subcommand has ``--help``. A bad model file or bad arguments print one
line on stderr (never a traceback) and exit non-zero; so do Ctrl-C and a
reader that goes away (``streamgru info MODEL | head -1``), which simply
stops the output:

    0   success, or the reader of stdout went away (closed pipe)
    1   the model file (or a state or plot file) could not be read or written
    2   bad arguments, or a bad input line in ``run``
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .. import __version__
from ..errors import InputError, StreamGRUError, WeightsError
from ..formats import READERS
from .bench import cmd_bench, cmd_cache, cmd_warmup
from .common import PROG, CLIError, quiet_stdout
from .demo import LIMIT_ENV, cmd_demo
from ..layers.quant import WEIGHT_TYPES
from .info import cmd_convert, cmd_info
from .run import LineError, cmd_run, is_header, parse_sample

__all__ = ["main", "build_parser", "parse_sample", "is_header", "LineError"]


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
        epilog="Model files: " + ", ".join(s for r in READERS for s in r.suffixes) + ".",
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
    d.add_argument("--limit", type=int, metavar="N",
                   help=f"stream only the first N samples (default: ${LIMIT_ENV} if set, else all)")
    d.add_argument("--plot", metavar="FILE.png",
                   help="also draw a few recordings: the sensor signal, the model's class over "
                   "time and the true class (needs matplotlib)")
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
        description="Load IN (any model file sg.load reads) and save it as OUT in "
        "streamgru's native format (.npz or .safetensors), which loads back bit-exact.",
    )
    c.add_argument("input", metavar="IN", help="model file to read")
    c.add_argument("output", metavar="OUT", help="native file to write (.npz or .safetensors)")
    c.add_argument("--dtype", choices=dtypes, help="store in this float type")
    c.add_argument("--weights", choices=WEIGHT_TYPES,
                   help="store the recurrent and Dense weights in this reduced type "
                   "(int8: one scale per output row); inputs, state and outputs stay in dtype")
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
    b.add_argument("--weights", choices=WEIGHT_TYPES,
                   help="time the model with its weights quantized to this type")
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
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        command = args.command
        try:
            code = args.func(args)
        except CLIError as exc:
            code = _fail(command, exc, exc.code)
        except (WeightsError, InputError) as exc:
            code = _fail(command, exc, 1 if isinstance(exc, WeightsError) else 2)
        except StreamGRUError as exc:
            code = _fail(command, exc, 1)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except BrokenPipeError:
        # the reader of our output went away (`| head -1`): stop quietly
        quiet_stdout()
        return 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _fail(command: str, exc: Exception, code: int) -> int:
    print(f"{PROG} {command}: {exc}", file=sys.stderr)
    return code
