"""Fuzz every reader of ``sg.load`` with mutated weight files.

Seeds are valid files written here: the shipped models, and small models
written by ``sg.save``, ``torch.save`` and ``torch.onnx.export`` (the last
two where torch is installed). Mutants (tools/fuzz_mutate.py: byte flips,
truncations, duplicated chunks, and zip/JSON/.npy/pickle/protobuf-aware
changes) are loaded in a worker subprocess under a memory rlimit and a
per-file timeout. A case fails on anything but a returned Model or a
``WeightsError``/``UnsafeWeightsError`` naming the file: another exception,
the ``UnexpectedReaderError`` wrapper (a reader bug that reached sg.load's
safety net), a signal, a timeout, or running out of memory. Each failure is
written with its traceback to the output folder, one file per distinct bug.

Readers come from ``streamgru.formats.READERS``; each needs at least one
seed writer in ``SEEDS`` (tools/fuzz_seeds.py: one function per format; add
one with ``@seed("module")`` when adding a reader).

Usage (from the repository root)::

    python tools/fuzz.py --minutes 30             # long run over every reader
    python tools/fuzz.py --cases 500 --seed 1     # a fixed, reproducible run
    python tools/fuzz.py --reader native --atheris --minutes 30   # coverage-guided
    python tools/fuzz.py --replay fuzz-out/native/*.npz           # re-run saved cases

``--atheris`` runs one reader in-process under atheris (libFuzzer, coverage
guided; ``pip install atheris``), with these mutators as its custom mutator.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

os.environ.setdefault("KERAS_BACKEND", "torch")  # seeds written by Keras: never TensorFlow
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from fuzz_mutate import mutate  # noqa: E402
from fuzz_seeds import SEEDS, write_seeds  # noqa: E402,F401 (tests use fuzz.write_seeds)

TIMEOUT = 15.0          # seconds per case (above the Keras reader's own 8 s HDF5 deadline)
MEMORY_MB = 1536        # address space of the worker beyond what it has after importing streamgru

# ----------------------------------------------------------------------------
# the worker: loads one file per request, reports how it ended


def judge(path: str) -> dict:
    """Load ``path`` and classify the outcome (in the worker process)."""
    import streamgru as sg
    from streamgru.formats import UnexpectedReaderError

    try:
        m = sg.load(path)
        return {"outcome": "loaded", "detail": repr(m)[:200]}
    except UnexpectedReaderError as exc:
        return _bug("wrapper", exc.__cause__ or exc)
    except sg.WeightsError as exc:
        if path not in str(exc) and os.path.basename(path) not in str(exc):
            return {"outcome": "bug", "kind": "unnamed", "sig": "unnamed", "detail": str(exc)[:2000]}
        return {"outcome": type(exc).__name__}
    except BaseException as exc:  # anything else a load lets out is a bug
        return _bug("memory" if isinstance(exc, MemoryError) else "exception", exc)


def _bug(kind: str, exc: BaseException) -> dict:
    frames = traceback.extract_tb(exc.__traceback__)
    # the innermost frame of this repository: where a reader let it out
    ours = [f for f in frames if f.filename.startswith(str(ROOT))] or frames
    where = f"{os.path.relpath(ours[-1].filename, ROOT)}:{ours[-1].lineno}" if ours else "?"
    return {"outcome": "bug", "kind": kind, "sig": f"{type(exc).__name__} at {where}",
            "detail": "".join(traceback.format_exception(exc))[-4000:]}


def worker(memory_mb: int, warm: list[str]) -> None:
    # a reader's first load imports what it needs (the onnx package can
    # take seconds): done before the limit and the clock start
    for path in warm:
        judge(path)

    vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) << 10 \
        if os.path.exists("/proc/self/status") else 0
    limit = vm + (memory_mb << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("selftest") == "crash":
            os.kill(os.getpid(), 11)
        if req.get("selftest") == "hang":
            time.sleep(3600)
        if req.get("selftest") == "alloc":  # beyond the limit: must come back as a memory bug
            try:
                bytearray((memory_mb + 64) << 20)
            except MemoryError as exc:
                sys.stdout.write(json.dumps(_bug("memory", exc)) + "\n")
                sys.stdout.flush()
                continue
        sys.stdout.write(json.dumps(judge(req["path"])) + "\n")
        sys.stdout.flush()


class Worker:
    """A worker subprocess, restarted after a crash or a timeout."""

    def __init__(self, timeout: float = TIMEOUT, memory_mb: int = MEMORY_MB,
                 warm: list[Path] = ()) -> None:
        self.timeout, self.memory_mb, self.proc = timeout, memory_mb, None
        self.warm = [str(p) for p in warm]  # files loaded once at start-up

    def _start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="0")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", "--memory-mb", str(self.memory_mb),
             *self.warm],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
            env=env, text=True, bufsize=1)
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        if not ready or not self.proc.stdout.readline():
            self.close()
            raise RuntimeError("the fuzz worker did not start (run it by hand: tools/fuzz.py --worker)")

    def run(self, path: Path, selftest: str | None = None) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps({"path": str(path), "selftest": selftest}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        if not ready:
            self.close()
            return {"outcome": "bug", "kind": "timeout", "sig": "timeout",
                    "detail": f"no answer in {self.timeout} s"}
        code = self.proc.wait()
        self.proc = None
        kind = f"signal {-code}" if code < 0 else f"exit {code}"
        return {"outcome": "bug", "kind": "crash", "sig": f"crash ({kind})", "detail": f"worker died: {kind}"}

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


# ----------------------------------------------------------------------------
# the run


@dataclass
class Result:
    reader: str
    corpus: int = 0
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)
    bugs: dict = field(default_factory=dict)    # signature -> (kind, saved case path, detail)

    def line(self) -> str:
        outs = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return (f"{self.reader}: {self.cases} cases over {self.corpus} seeds ({outs}); "
                f"{len(self.bugs)} distinct bug(s)")


def readers() -> list[str]:
    from streamgru.formats import READERS

    return [r.module for r in READERS]


def suffixes() -> list[str]:
    from streamgru.formats import READERS

    return [s for r in READERS for s in r.suffixes]


def fuzz(names: list[str], seeds: dict[str, list[Path]], *, cases: int | None = None,
         seconds: float | None = None, seed_value: int = 0, out: Path | None = None,
         worker_: Worker | None = None, log: Callable[[str], None] = print) -> dict[str, Result]:
    """Fuzz the readers ``names`` round-robin, ``cases`` mutants each (a
    fixed, reproducible run) or until ``seconds`` have passed."""
    rng = random.Random(seed_value)
    w = worker_ or Worker(warm=[seeds[n][0] for n in names])
    work = Path(tempfile.mkdtemp(prefix="streamgru-fuzz-"))
    corpora = {n: [(p, p.read_bytes()) for p in seeds[n]] for n in names}
    results = {n: Result(n, corpus=len(corpora[n])) for n in names}
    all_suffixes = suffixes()
    end = time.monotonic() + seconds if seconds else None
    step = 0
    try:
        while True:
            if cases is not None and step >= cases or end is not None and time.monotonic() > end:
                break
            for n in names:
                src, data = rng.choice(corpora[n])
                blob = mutate(data, rng, [d for _, d in corpora[n]])
                suffix = src.suffix if rng.random() < 0.95 else rng.choice(all_suffixes)
                case = work / f"case{suffix}"
                case.write_bytes(blob)
                res = w.run(case)
                results[n].cases += 1
                results[n].outcomes[res["outcome"] if res["outcome"] != "bug" else res["kind"]] += 1
                if res["outcome"] == "bug" and res["sig"] not in results[n].bugs:
                    saved = _save(out, n, res, blob, suffix, src)
                    results[n].bugs[res["sig"]] = (res["kind"], saved, res["detail"])
                    log(f"[{n}] {res['sig']} (from {src.name}) -> {saved}")
            step += 1
            if step % 200 == 0:
                log(" | ".join(r.line() for r in results.values()))
    finally:
        if worker_ is None:
            w.close()
        shutil.rmtree(work, ignore_errors=True)
    return results


def _save(out: Path | None, reader: str, res: dict, blob: bytes, suffix: str, src: Path) -> str:
    if out is None:
        return "(not saved)"
    folder = out / reader
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{res['kind'].replace(' ', '_')}-{hashlib.sha1(blob).hexdigest()[:12]}{suffix}"
    (folder / name).write_bytes(blob)
    (folder / (name + ".txt")).write_text(f"{res['sig']}\nseed file: {src.name}\n\n{res['detail']}\n")
    return str(folder / name)


# ----------------------------------------------------------------------------
# coverage-guided (atheris)


def atheris_main(reader: str, seeds: list[Path], out: Path, seconds: float, extra: list[str]) -> None:
    import atheris

    import streamgru as sg
    from streamgru.formats import UnexpectedReaderError

    # streamgru is already imported (the seeds were written with it): add
    # coverage counters to the code loaded so far, readers included
    for r in readers():
        __import__(f"streamgru.formats.{r}")
    atheris.instrument_all()

    corpus_dir = out / f"corpus-{reader}"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    for p in seeds:
        shutil.copy(p, corpus_dir / p.name)
    corpus = [p.read_bytes() for p in seeds]
    kinds = {p.read_bytes()[:2] == b"PK": p.suffix for p in seeds}  # a zip suffix and another
    work = Path(tempfile.mkdtemp(prefix="streamgru-atheris-"))

    def one(data: bytes) -> None:
        case = work / f"case{kinds.get(data[:2] == b'PK', seeds[0].suffix)}"
        case.write_bytes(data)
        try:
            sg.load(case)
        except UnexpectedReaderError:
            raise
        except sg.WeightsError:
            pass

    def custom(data: bytes, max_size: int, seed_value: int) -> bytes:
        rng = random.Random(seed_value)
        if rng.random() < 0.2:
            return atheris.Mutate(data, max_size)
        return mutate(data, rng, corpus)[:max_size]

    args = [sys.argv[0], f"-max_total_time={int(seconds)}", f"-timeout={int(TIMEOUT)}",
            f"-rss_limit_mb={MEMORY_MB + 512}", f"-artifact_prefix={out}/atheris-{reader}-",
            f"-max_len={4 * max(len(c) for c in corpus)}", *extra, str(corpus_dir)]
    atheris.Setup(args, one, custom_mutator=custom)
    atheris.Fuzz()


# ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reader", action="append", help="a streamgru.formats module (default: all)")
    ap.add_argument("--cases", type=int, help="mutants per reader (a reproducible run)")
    ap.add_argument("--minutes", type=float, help="run for this long instead")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "fuzz-out", help="where failing cases go")
    ap.add_argument("--atheris", action="store_true", help="coverage-guided, in-process, one reader")
    ap.add_argument("--replay", nargs="+", type=Path, help="load these files in the worker and report")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--memory-mb", type=int, default=MEMORY_MB, help=argparse.SUPPRESS)
    args, extra = ap.parse_known_args(argv)
    if args.worker:
        worker(args.memory_mb, [str(p) for p in args.replay or []] + extra)
        return 0
    if args.replay:
        w = Worker(timeout=60)  # a reader's first load includes its imports
        for p in args.replay:
            print(p, json.dumps(w.run(p)))
        w.close()
        return 0
    names = args.reader or readers()
    seed_root = Path(tempfile.mkdtemp(prefix="streamgru-seeds-"))
    seeds = {n: write_seeds(n, seed_root / n) for n in names}
    missing = [n for n in names if not seeds[n]]
    if missing:
        print(f"no seed files for reader(s) {', '.join(missing)}: add a @seed writer to tools/fuzz.py")
        return 2
    seconds = 60 * args.minutes if args.minutes else None
    if args.atheris:
        if len(names) != 1:
            ap.error("--atheris fuzzes one --reader at a time")
        atheris_main(names[0], seeds[names[0]], args.out, seconds or 600, extra)
        return 0
    t0 = time.monotonic()
    results = fuzz(names, seeds, cases=args.cases or (None if seconds else 200), seconds=seconds, seed_value=args.seed, out=args.out)
    print(f"\n{time.monotonic() - t0:.0f} s, seed {args.seed}")
    for r in results.values():
        print(r.line())
        for sig, (kind, saved, _) in r.bugs.items():
            print(f"    {sig}: {saved}")
    return 1 if any(r.bugs for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
