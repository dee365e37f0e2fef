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
seed writer in ``SEEDS`` below (one function per format: add one with
``@seed("module")`` when adding a reader).

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

TIMEOUT = 15.0          # seconds per case (above the Keras reader's own 8 s HDF5 deadline)
MEMORY_MB = 1536        # address space of the worker beyond what it has after importing streamgru

# ----------------------------------------------------------------------------
# seeds: reader module -> functions writing valid files into a folder

SEEDS: dict[str, list[tuple[Callable[[Path], None], str | None]]] = {}


def seed(reader: str, needs: str | None = None):
    """Register ``fn(folder)`` as a writer of seed files for ``reader``
    (a module of streamgru.formats); ``needs``: a package it imports."""
    def register(fn):
        SEEDS.setdefault(reader, []).append((fn, needs))
        return fn
    return register


def _small_models():
    import numpy as np

    import streamgru as sg

    rng = np.random.default_rng(0)
    r = lambda *s: rng.normal(size=s) * 0.5  # noqa: E731
    yield "gru", sg.Model([sg.GRU.from_torch(r(12, 3), r(12, 4), r(12), r(12)), sg.Dense(r(2, 4), r(2))])
    yield "gru_v1", sg.Model([sg.GRU(r(12, 3), r(12, 4), None, r(12), reset_after=False, clip=2.0,
                                     gate_activation=("hard_sigmoid", 0.2, 0.5))],
                             dtype=np.float64, initial_state=r(4), metadata={"source": "fuzz"})
    yield "lstm", sg.Model([sg.LSTM(r(16, 3), r(16, 2), r(16), r(16), weight_hr=r(2, 4),
                                    peepholes=r(3, 4)), sg.Dense(r(3, 2), None, ("leaky_relu", 0.1))])
    yield "rnn", sg.Model([sg.RNN.from_torch(r(5, 3), r(5, 5), r(5), r(5), nonlinearity="relu"),
                           sg.Dense(r(2, 5), None, "softmax")])


@seed("native")
def native_saved(folder: Path) -> None:
    import streamgru as sg

    for name, m in _small_models():
        for suffix in (".npz", ".safetensors"):
            sg.save(m, folder / f"{name}{suffix}")


@seed("native")
def native_shipped(folder: Path) -> None:
    shutil.copy(ROOT / "streamgru" / "data" / "watch_gru.npz", folder / "watch_gru.npz")


@seed("native")
def safetensors_state_dict(folder: Path) -> None:
    """A safetensors file without a streamgru description (a PyTorch state
    dict, as safetensors.torch.save_file writes it)."""
    import numpy as np

    rng = np.random.default_rng(1)
    tensors = {"gru.weight_ih_l0": rng.normal(size=(12, 3)), "gru.weight_hh_l0": rng.normal(size=(12, 4)),
               "gru.bias_ih_l0": rng.normal(size=12), "gru.bias_hh_l0": rng.normal(size=12),
               "fc.weight": rng.normal(size=(2, 4)), "fc.bias": rng.normal(size=2)}
    header, blobs, at = {}, [], 0
    for name, arr in tensors.items():
        data = arr.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    hdr = json.dumps(header).encode()
    (folder / "state_dict.safetensors").write_bytes(len(hdr).to_bytes(8, "little") + hdr + b"".join(blobs))


@seed("torch")
def torch_shipped(folder: Path) -> None:
    shutil.copy(ROOT / "weights" / "watch_gru.pt", folder / "watch_gru.pt")


def _torch_nets(projections: bool = True):
    import torch

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn, self.fc = rnn, torch.nn.Linear(rnn.hidden_size if not getattr(rnn, "proj_size", 0)
                                                     else rnn.proj_size, 2)

        def forward(self, x):
            return self.fc(self.rnn(x)[0])

    yield "gru", Net(torch.nn.GRU(3, 4, batch_first=True))
    yield "lstm", Net(torch.nn.LSTM(3, 4, num_layers=2, batch_first=True))
    if projections:  # torch.onnx cannot export them
        yield "lstm_proj", Net(torch.nn.LSTM(3, 4, proj_size=2, batch_first=True))
    yield "rnn", Net(torch.nn.RNN(3, 4, nonlinearity="relu", batch_first=True))


@seed("torch", needs="torch")
def torch_saved(folder: Path) -> None:
    import torch

    for name, net in _torch_nets():
        torch.save(net.state_dict(), folder / f"{name}.pt")
    name, net = next(_torch_nets())
    torch.save(net.state_dict(), folder / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(net.double().state_dict(), folder / "float64.pth")
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.float().state_dict().items()},
                "epoch": 3, "global_step": 30, "hyper_parameters": {"hidden": 4, "lr": 0.01},
                "optimizer_states": [], "pytorch-lightning_version": "2.6.0"}, folder / "lightning.ckpt")


@seed("onnx")
def onnx_shipped(folder: Path) -> None:
    shutil.copy(ROOT / "weights" / "watch_gru.onnx", folder / "watch_gru.onnx")


@seed("onnx", needs="torch")
def onnx_exported(folder: Path) -> None:
    import warnings

    import torch

    for name, net in _torch_nets(projections=False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.zeros(1, 5, 3),), str(folder / f"{name}.onnx"), dynamo=False,
                              input_names=["x"], dynamic_axes={"x": {0: "batch", 1: "time"}})


@seed("onnx", needs="torch")
def onnx_branches(folder: Path) -> None:
    """A graph whose branches join again: residual and skip sums, a gate
    over a Split, a stack summed (formats/onnx/branches.py)."""
    import warnings

    import torch
    import torch.nn.functional as F

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = torch.nn.Conv1d(3, 4, 1)
            self.conv = torch.nn.Conv1d(4, 8, 2, dilation=2)
            self.out = torch.nn.Conv1d(4, 4, 1)

        def forward(self, x):
            h = self.inp(x)
            a, b = torch.chunk(self.conv(F.pad(h, (2, 0))), 2, dim=1)
            g = torch.tanh(a) * torch.sigmoid(b)
            y = torch.relu(h + self.out(g))
            return torch.stack([y, g, h]).sum(0) - h * 0.5

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Block().eval(), (torch.zeros(1, 3, 8),), str(folder / "branches.onnx"),
                          dynamo=False, input_names=["x"], dynamic_axes={"x": {2: "time"}})


@seed("keras", needs="keras")
def keras_saved(folder: Path) -> None:
    """Keras 3 ``.keras`` and legacy ``.h5`` files, written by Keras (torch backend)."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    for name, rec in (("gru", keras.layers.GRU(4, return_sequences=True)),
                      ("lstm", keras.layers.LSTM(4, return_sequences=True))):
        m = keras.Sequential([keras.Input((None, 3)), rec, keras.layers.Dense(2, activation="tanh")])
        m.predict(np.zeros((1, 2, 3), np.float32), verbose=0)
        m.save(folder / f"{name}.keras")
        if available("h5py"):
            m.save(folder / f"{name}.h5")
    # a functional model whose layers branch and join again (formats/keras_dag.py)
    x = keras.Input((None, 3))
    h = keras.layers.Conv1D(4, 2, padding="causal", activation="tanh")(x)
    g = keras.layers.Multiply()([h, keras.layers.Conv1D(4, 1, activation="sigmoid")(x)])
    y = keras.layers.Dense(2)(keras.layers.Concatenate()([keras.layers.Add()([h, g]), x]))
    keras.Model(x, y).save(folder / "branches.keras")


def _weights(rng, *shape):
    return (rng.normal(size=shape) * 0.3).round(6).tolist()


@seed("rtneural")
def rtneural_documents(folder: Path) -> None:
    """RTNeural's Keras-exporter layout (GRU + Dense) and AIDA-X's (LSTM with
    in_skip and gains), weights in Keras layout."""
    import numpy as np

    rng = np.random.default_rng(2)
    H = 4
    doc = {"in_shape": [None, None, 1], "layers": [
        {"type": "gru", "activation": "tanh", "shape": [None, None, H],
         "weights": [_weights(rng, 1, 3 * H), _weights(rng, H, 3 * H), _weights(rng, 2, 3 * H)]},
        {"type": "dense", "activation": "", "shape": [None, None, 1],
         "weights": [_weights(rng, H, 1), _weights(rng, 1)]}]}
    (folder / "rtneural_gru.json").write_text(json.dumps(doc))
    doc = {"in_shape": [None, None, 2], "in_skip": 1, "in_gain": 3.0, "out_gain": -4.5,
           "metadata": {"name": "fuzz amp", "samplerate": "48000"}, "layers": [
               {"type": "lstm", "activation": "", "shape": [None, None, H],
                "weights": [_weights(rng, 2, 4 * H), _weights(rng, H, 4 * H), _weights(rng, 4 * H)]},
               {"type": "dense", "activation": "", "shape": [None, None, 1],
                "weights": [_weights(rng, H, 1), _weights(rng, 1)]}]}
    (folder / "aidax_lstm.json").write_text(json.dumps(doc))


@seed("nam")
def nam_document(folder: Path) -> None:
    """A NAM LSTM file in its exporter's layout: per layer [W_ih | W_hh],
    bias, h0, c0; then the head."""
    import numpy as np

    rng = np.random.default_rng(5)
    I, H, L = 1, 3, 2
    n = sum(4 * H * ((I if k == 0 else H) + H) + 4 * H + 2 * H for k in range(L)) + H + 1
    doc = {"version": "0.5.4", "metadata": {}, "architecture": "LSTM",
           "config": {"input_size": I, "hidden_size": H, "num_layers": L},
           "weights": _weights(rng, n), "sample_rate": 48000}
    (folder / "amp.nam").write_text(json.dumps(doc))


def available(needs: str | None) -> bool:
    import importlib.util

    return needs is None or importlib.util.find_spec(needs) is not None


def write_seeds(reader: str, folder: Path) -> list[Path]:
    """Write ``reader``'s seeds into ``folder``; the files written, sorted."""
    folder.mkdir(parents=True, exist_ok=True)
    for fn, needs in SEEDS.get(reader, []):
        if available(needs):
            fn(folder)
    return sorted(p for p in folder.iterdir() if p.is_file())


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
