#!/usr/bin/env python
"""Benchmark streamgru against ONNX Runtime and PyTorch on this machine.

Runs the grid of issue 7 in one process, on one thread unless stated:
GRU with I=16 and H=16, 64, 128, 256 (and I=32 for H=256), LSTM with I=16 and
H=64, 128; for each, three paths:

- step     one sample from Python: ``Stream.step(x, out=y)``; ONNX Runtime
           ``session.run`` with the state fed in and out; ``torch.nn.GRUCell``
           (``LSTMCell``) under ``inference_mode``.
- process  a sequence of T=4096 samples of one stream: ``Stream.process``;
           one ONNX Runtime run over the sequence; ``nn.GRU`` (``nn.LSTM``).
- batch    1024 streams, one sample each: ``StreamBatch.step``; ONNX Runtime
           with batch 1024; the torch cell with batch 1024.

Times are medians over repeats of per-call means (microseconds per sample,
per stream for batch). RTNeural's figures are constants quoted from issue 7
(C++, measured on this machine type earlier), not measured here. Also
reported: achieved GFLOP/s against an estimated FMA peak; for one stream
(step, process), the weights' bytes read per second against this core's
measured streaming read bandwidth (a single stream's step reads every weight
once and is bound by that, not by FMAs, from H=64 on); float32 accuracy
after 10,000 steps against float64 torch, StreamBatch bytes per stream, 1 vs
all cores, cold start, and (full run only) the first-ever compile time.

Then NAM's standard WaveNet (a graph model; tools/bench_wavenet.py): step,
process in 256-sample blocks, NAM's PyTorch module and ONNX Runtime.

Writes a JSON file and a PNG chart (matplotlib, ``pip install -e '.[bench]'``).
Benchmarks are not tests: numbers move with machine load; run it on a quiet
machine. ``--quick`` makes a short run with fewer repeats.

Usage: python tools/bench.py [--quick] [--json docs/bench.json] [--png docs/bench.png]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

# RTNeural (C++, compile-time models, Eigen/xsimd, AVX-512, -O3 -march=native),
# microseconds per sample, best of runs, as quoted in issue 7. Not measured here.
RTNEURAL_US = {
    ("gru", 16, 16): 0.077,
    ("gru", 16, 64): 0.66,
    ("gru", 16, 128): 2.17,
    ("gru", 32, 256): 9.0,
    ("lstm", 16, 64): 0.86,
    ("lstm", 16, 128): 2.99,
}

GRID = [("gru", 16, 16), ("gru", 16, 64), ("gru", 16, 128), ("gru", 16, 256), ("gru", 32, 256),
        ("lstm", 16, 64), ("lstm", 16, 128)]
T_SEQ = 4096
BATCH = 1024
FMA_PER_CYCLE = 16  # fp32 FMAs per cycle per core: two 256-bit FMA pipes (AVX-512 split in two)


# -- timing -------------------------------------------------------------------
def looped(fn, inference: bool = False):
    """run(number): seconds for ``number`` calls of ``fn`` (under torch's
    inference_mode if asked)."""

    def run(number: int) -> float:
        if inference:
            import torch

            with torch.inference_mode():
                return looped(fn)(number)
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - t0

    return run


def read_bandwidth(nbytes: int, repeat: int) -> float:
    """GB/s at which one core streams through ``nbytes`` of float32 over and
    over (a vectorised sum): the memory roof of a step, which must read every
    weight once per sample. A model's weights up to ~1 MB stay in this
    core's L2 between steps, so this is the L2-to-core bandwidth there."""
    from numba import njit

    @njit(cache=False, fastmath=True)
    def total(a, n):
        s = np.float32(0)
        for _ in range(n):
            for i in range(a.size):
                s += a[i]
        return s

    a = np.ones(max(nbytes // 4, 1024), np.float32)
    n = max(3, 100_000_000 // a.nbytes)
    total(a, 1)
    best = min(_time(lambda: total(a, n)) for _ in range(repeat))
    return a.nbytes * n / best / 1e9


def measure(jobs: dict, target_s: float, repeat: int) -> tuple[dict, dict]:
    """Median and best over ``repeat`` rounds of the mean time per call of
    each job, in microseconds divided by the job's ``per``. The jobs take
    turns within each round, so all of them see the same machine load."""
    number = {}
    for name, (run, _) in jobs.items():
        run(1)  # warm: compile, allocate, fill caches
        number[name] = max(1, int(target_s / max(run(1), 1e-7)))
    samples: dict = {name: [] for name in jobs}
    for _ in range(repeat):
        for name, (run, per) in jobs.items():
            samples[name].append(run(number[name]) / number[name] * 1e6 / per)
    return ({k: statistics.median(v) for k, v in samples.items()},
            {k: min(v) for k, v in samples.items()})


# -- models -------------------------------------------------------------------
def torch_models(kind: str, I: int, H: int):
    """A seeded torch recurrent layer and the cell with the same weights."""
    import torch

    torch.manual_seed(0)
    if kind == "gru":
        layer, cell = torch.nn.GRU(I, H), torch.nn.GRUCell(I, H)
    else:
        layer, cell = torch.nn.LSTM(I, H), torch.nn.LSTMCell(I, H)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(layer, name + "_l0"))
    return layer.eval(), cell.eval()


def export_onnx(kind: str, layer, I: int, H: int, path: Path) -> None:
    """Export ``layer`` with its state as graph input and output, sequence
    and batch axes dynamic."""
    import torch

    class WithState(torch.nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, x, *state):
            if kind == "gru":
                y, h = self.rnn(x, state[0])
                return y, h
            y, (h, c) = self.rnn(x, (state[0], state[1]))
            return y, h, c

    x = torch.zeros(3, 2, I)
    state = (torch.zeros(1, 2, H),) if kind == "gru" else (torch.zeros(1, 2, H), torch.zeros(1, 2, H))
    names_in = ["x", "h"] + (["c"] if kind == "lstm" else [])
    names_out = ["y", "hn"] + (["cn"] if kind == "lstm" else [])
    axes = {"x": {0: "T", 1: "B"}, "y": {0: "T", 1: "B"}}
    for n in names_in[1:] + names_out[1:]:
        axes[n] = {1: "B"}
    torch.onnx.export(WithState(layer), (x, *state), str(path), dynamo=False, input_names=names_in,
                      output_names=names_out, dynamic_axes=axes)


def ort_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


# -- one grid row -------------------------------------------------------------
def bench_config(kind: str, I: int, H: int, tmp: Path, target_s: float, repeat: int) -> dict:
    import torch

    import streamgru as sg

    rng = np.random.default_rng(1)
    layer, cell = torch_models(kind, I, H)
    m = sg.from_torch(layer)
    onnx_path = tmp / f"{kind}_{I}_{H}.onnx"
    export_onnx(kind, layer, I, H, onnx_path)
    sess = ort_session(onnx_path)
    nstate = 1 if kind == "gru" else 2
    res: dict = {"kind": kind, "I": I, "H": H, "fma_per_sample": (3 if kind == "gru" else 4) * H * (I + H)}

    from streamgru.kernels import config

    jobs = {}  # name -> (run(number) -> seconds, samples or streams per call)

    # streamgru
    s = m.stream()
    x = rng.standard_normal(I).astype(np.float32)
    y = np.empty(H, np.float32)

    def sg_step(number):
        step = s.step  # called straight from the loop, as a user's loop would
        t0 = time.perf_counter()
        for _ in range(number):
            step(x, out=y)
        return time.perf_counter() - t0

    jobs["sg_step"] = (sg_step, 1)
    X = rng.standard_normal((T_SEQ, I)).astype(np.float32)
    Y = np.empty((T_SEQ, H), np.float32)
    jobs["sg_process"] = (looped(lambda: s.process(X, out=Y)), T_SEQ)
    b = m.streams(BATCH)
    XB = rng.standard_normal((BATCH, I)).astype(np.float32)
    YB = np.empty((BATCH, H), np.float32)

    def sg_batch(number):
        threads = config.THREADS
        config.THREADS = 1  # the grid is single-threaded
        try:
            return looped(lambda: b.step(XB, out=YB))(number)
        finally:
            config.THREADS = threads

    jobs["sg_batch"] = (sg_batch, BATCH)

    # ONNX Runtime
    feeds = {"x": x.reshape(1, 1, I), "h": np.zeros((1, 1, H), np.float32)}
    if nstate == 2:
        feeds["c"] = np.zeros((1, 1, H), np.float32)

    def ort_step():
        out = sess.run(None, feeds)
        feeds["h"] = out[1]
        if nstate == 2:
            feeds["c"] = out[2]

    jobs["ort_step"] = (looped(ort_step), 1)
    seq_feeds = {"x": X.reshape(T_SEQ, 1, I), "h": np.zeros((1, 1, H), np.float32)}
    if nstate == 2:
        seq_feeds["c"] = np.zeros((1, 1, H), np.float32)
    jobs["ort_process"] = (looped(lambda: sess.run(None, seq_feeds)), T_SEQ)
    bfeeds = {"x": XB.reshape(1, BATCH, I), "h": np.zeros((1, BATCH, H), np.float32)}
    if nstate == 2:
        bfeeds["c"] = np.zeros((1, BATCH, H), np.float32)
    jobs["ort_batch"] = (looped(lambda: sess.run(None, bfeeds)), BATCH)

    # PyTorch
    xt = torch.from_numpy(x).reshape(1, I)
    st = [torch.zeros(1, H) for _ in range(nstate)]

    def torch_step():
        if nstate == 1:
            st[0] = cell(xt, st[0])
        else:
            st[0], st[1] = cell(xt, (st[0], st[1]))

    jobs["torch_step"] = (looped(torch_step, inference=True), 1)
    Xt = torch.from_numpy(X).reshape(T_SEQ, 1, I)
    jobs["torch_process"] = (looped(lambda: layer(Xt), inference=True), T_SEQ)
    XBt = torch.from_numpy(XB)
    bst = tuple(torch.zeros(BATCH, H) for _ in range(nstate))
    jobs["torch_batch"] = (looped(lambda: cell(XBt, bst[0] if nstate == 1 else bst), inference=True),
                           BATCH)

    med, best = measure(jobs, target_s, repeat)
    res.update(med)
    res.update({f"{k}_best": v for k, v in best.items()})

    with torch.inference_mode():
        # accuracy: float32 streamgru against float64 torch over 10,000 steps
        Xa = rng.standard_normal((10_000, I)).astype(np.float32)
        ref = layer.double()(torch.from_numpy(Xa.astype(np.float64)).reshape(10_000, 1, I))[0]
        layer.float()
        ya = m.stream().process(Xa)
        err = np.abs(ya.astype(np.float64) - ref.reshape(10_000, H).numpy())
        res["err_first_step"] = float(err[0].max())
        res["err_10000_steps"] = float(err.max())

    res["rtneural"] = RTNEURAL_US.get((kind, I, H))
    res["weight_bytes"] = 4 * res["fma_per_sample"]
    res["read_roof_gbs"] = read_bandwidth(res["weight_bytes"], repeat)
    return res


# -- memory, cores, start-up ----------------------------------------------------
def bench_memory(target_s: float, repeat: int) -> dict:
    """StreamBatch bytes per stream (allocations made by streams(n), as seen
    by tracemalloc) and 1 vs all cores, GRU I=16 H=64."""
    import streamgru as sg
    from streamgru.kernels import config

    layer, _ = torch_models("gru", 16, 64)
    m = sg.from_torch(layer)
    m.stream()  # builds the shared plan (weights) first: not per-stream memory
    state_bytes = m.state_size * m.dtype.itemsize
    mem = {"state_bytes_per_stream": state_bytes}
    for n in (1, 1024, 1_000_000):
        tracemalloc.start()
        b = m.streams(n)
        used, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        mem[str(n)] = {"bytes_per_stream": used / n, "ratio_to_state": used / n / state_bytes}
        del b
    cores = {}
    threads = config.THREADS
    rng = np.random.default_rng(2)
    for n in (1024, 65536):
        b = m.streams(n)
        X = rng.standard_normal((n, 16)).astype(np.float32)
        Y = np.empty((n, 64), np.float32)
        row = {}
        for k in sorted({1, threads}):
            config.THREADS = k
            row[str(k)] = measure({"b": (looped(lambda: b.step(X, out=Y)), n)}, target_s, repeat)[0]["b"]
        config.THREADS = threads
        cores[str(n)] = row
    return {"memory": mem, "cores": cores, "threads": threads}


COLD = """
import time
t0, c0 = time.perf_counter(), time.process_time()
import numpy as np, streamgru as sg
t1 = time.perf_counter()
m = sg.load({path!r})
t2 = time.perf_counter()
y = m.stream().step(np.ones(m.input_size, np.float32))
t3, c3 = time.perf_counter(), time.process_time()
import json, sys
from streamgru.kernels import network
misses = sum(len(f.stats.cache_misses) for f in network.ENTRY_POINTS.values() if hasattr(f, "stats"))
print(json.dumps({{"total": t3 - t0, "import": t1 - t0, "load": t2 - t1, "first_step": t3 - t2,
                  "cpu": c3 - c0, "compiled": misses,
                  "scipy": "scipy" in sys.modules, "onnx_or_torch": "onnx" in sys.modules or "torch" in sys.modules}}))
"""
COLD_RUNS = 9


def bench_startup(tmp: Path, compile_time: bool) -> dict:
    """Cold start (fresh process: import, load a model, first step) with the
    numba cache warm; optionally the first-ever compile of every kernel.

    Each run is a new interpreter importing the same streamgru as this one;
    the clock starts before ``import numpy`` (interpreter start-up itself is
    not counted). A run in which numba compiled anything instead of loading
    it from the cache is discarded and repeated. Also reports each phase:
    import (numpy and streamgru), load, and the first step (``stream()`` plus
    ``step``, which imports numba, initialises numba's CPU target and loads
    the one cached ``step`` kernel).
    """
    import streamgru as sg

    layer, _ = torch_models("gru", 16, 64)
    path = tmp / "cold.npz"
    sg.save(sg.from_torch(layer), path)
    code = COLD.format(path=str(path))
    root = str(Path(sg.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))

    def run() -> dict:
        done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                              text=True, env=env)
        return json.loads(done.stdout)

    run()  # warms the cache if a kernel source changed since the last warm-up
    runs = []
    for _ in range(3 * COLD_RUNS):
        r = run()
        if not r["compiled"]:
            runs.append(r)
        if len(runs) == COLD_RUNS:
            break
    if len(runs) < COLD_RUNS:
        raise RuntimeError("cold start: numba kept compiling; is a kernel being edited?")
    med = {k: statistics.median(r[k] for r in runs) for k in ("total", "import", "load", "first_step", "cpu")}
    out = {"cold_start_s": med["total"], "cold_start_best_s": min(r["total"] for r in runs),
           "cold_start_runs": len(runs), "cold_start_phases_s": med,
           "cold_start_imports_scipy": runs[0]["scipy"],
           "cold_start_imports_onnx_or_torch": runs[0]["onnx_or_torch"]}
    if compile_time:
        env_c = dict(env, NUMBA_CACHE_DIR=str(tmp / "numba_cache"))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import streamgru.kernels as k; k.warmup()"],
                       check=True, env=env_c)
        out["first_compile_s"] = time.perf_counter() - t0
    return out


# -- report -------------------------------------------------------------------
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


FADD_LATENCY = 3  # cycles of one dependent float add on AMD Zen 4 (4 on recent Intel cores)


def cpu_ghz() -> float:
    """The clock the core actually runs at (boost included, which
    /proc/cpuinfo does not show): a chain of dependent float adds, one
    FADD latency each, best of several runs."""
    from numba import njit

    @njit(cache=False)
    def chain(n, x, y):
        for _ in range(n):
            x = x + y  # strict IEEE: no reassociation, so the chain stays serial
        return x

    n = 20_000_000
    chain(10, 1.0, 1e-9)
    best = min(_time(lambda: chain(n, 1.0, 1e-9)) for _ in range(9))
    return FADD_LATENCY * n / best / 1e9


def _time(fn) -> float:
    # CPU time of this thread: a run pre-empted by other processes still
    # counts only the cycles it got
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def rows(results: list, peak_gflops: float) -> list:
    """One table row per config and path, with ratios and targets."""
    out = []
    for r in results:
        label = f"{r['kind'].upper()} I={r['I']} H={r['H']}"
        flop = 2 * r["fma_per_sample"]
        rt = r["rtneural"]
        for path in ("step", "process", "batch"):
            sgt, ortt, tt = r[f"sg_{path}"], r[f"ort_{path}"], r[f"torch_{path}"]
            vs_ort, vs_torch = ortt / sgt, tt / sgt
            if path == "step":
                checks = [("10x ORT", vs_ort >= 10), ("15x torch", vs_torch >= 15)]
                if rt is not None:
                    checks.append(("RTNeural+0.5us", sgt <= rt + 0.5))
            elif path == "process":
                checks = [("1.5x ORT", vs_ort >= 1.5)]
                if rt is not None:
                    checks.append(("< RTNeural", sgt < rt))
            else:
                checks = [("2x ORT", vs_ort >= 2)]
            out.append({
                "model": label, "path": path, "sg_us": sgt, "ort_us": ortt, "torch_us": tt,
                "rtneural_us": rt if path != "batch" else None, "vs_ort": vs_ort,
                "vs_torch": vs_torch, "gflops": flop / sgt / 1e3, "peak_pct": 100 * flop / sgt / 1e3 / peak_gflops,
                # one stream reads every weight once per sample; a batch shares them
                "weight_gbs": r["weight_bytes"] / sgt / 1e3 if path != "batch" else None,
                "roof_gbs": r["read_roof_gbs"],
                "targets": ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in checks),
            })
    return out


def table(rows_: list) -> str:
    head = ("| model | path | streamgru µs | ORT µs | torch µs | RTNeural µs* | ×ORT | ×torch "
            "| GFLOP/s (% peak) | weights GB/s (% roof) | targets |")
    lines = [head, "|" + "---|" * 11]
    for r in rows_:
        rt = f"{r['rtneural_us']:.3f}" if r["rtneural_us"] is not None else "–"
        gbs = (f"{r['weight_gbs']:.0f} ({100 * r['weight_gbs'] / r['roof_gbs']:.0f}%)"
               if r["weight_gbs"] is not None else "–")
        lines.append(
            f"| {r['model']} | {r['path']} | {r['sg_us']:.3f} | {r['ort_us']:.3f} | {r['torch_us']:.3f} "
            f"| {rt} | {r['vs_ort']:.1f} | {r['vs_torch']:.1f} | {r['gflops']:.1f} ({r['peak_pct']:.0f}%) "
            f"| {gbs} | {r['targets']} |"
        )
    return "\n".join(lines)


def chart(results: list, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['kind'].upper()} {r['I']}/{r['H']}" for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    engines = [("sg", "streamgru", "#1b9e77"), ("ort", "ONNX Runtime", "#7570b3"),
               ("torch", "PyTorch", "#d95f02")]
    for ax, (p, name) in zip(axes, [("step", "step (one sample from Python)"),
                                    ("process", f"process (T={T_SEQ}, per sample)"),
                                    ("batch", f"batch of {BATCH} (per stream)")]):
        xs = np.arange(len(results))
        width = 0.2
        for k, (key, lab, col) in enumerate(engines):
            ax.bar(xs + (k - 1.5) * width, [r[f"{key}_{p}"] for r in results], width, label=lab, color=col)
        if p != "batch":
            rt = [r["rtneural"] if r["rtneural"] is not None else np.nan for r in results]
            ax.bar(xs + 1.5 * width, rt, width, label="RTNeural (quoted)", color="#999999")
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, fontsize=8, rotation=30, ha="right")
        ax.set_xlabel("cell I/H")
        ax.set_title(name)
        ax.set_ylabel("µs (lower is better)")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: fewer, shorter repeats")
    ap.add_argument("--json", default="docs/bench.json", help="where to write the results")
    ap.add_argument("--png", default="docs/bench.png", help="where to write the chart")
    ap.add_argument("--no-compile-time", action="store_true",
                    help="skip timing the first-ever compile (about a minute)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    target_s, repeat = (0.02, 3) if args.quick else (0.15, 7)
    ghz = cpu_ghz()
    peak = 2 * FMA_PER_CYCLE * ghz  # GFLOP/s, one core
    import streamgru.kernels as kernels

    kernels.warmup(("float32",))
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind, I, H in GRID:
            print(f"  {kind} I={I} H={H} ...", file=sys.stderr, flush=True)
            results.append(bench_config(kind, I, H, tmp, target_s, repeat))
        extra = bench_memory(target_s, repeat)
        # NAM's standard WaveNet, a graph model (tools/bench_wavenet.py)
        sys.path.insert(0, str(Path(__file__).parent))
        import bench_wavenet

        extra["wavenet"] = bench_wavenet.run(target_s, repeat)
        extra.update(bench_startup(tmp, compile_time=not (args.quick or args.no_compile_time)))

    import numba
    import onnxruntime

    info = {
        "cpu": cpu_name(), "ghz_measured": ghz, "peak_gflops_one_core": peak, "load_avg": os.getloadavg(),
        "python": platform.python_version(), "numba": numba.__version__, "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "quick": args.quick,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    tab = rows(results, peak)
    print(f"CPU: {info['cpu']}, {os.cpu_count()} cores, measured clock {ghz:.2f} GHz; one thread; "
          f"estimated peak {peak:.0f} GFLOP/s ({FMA_PER_CYCLE} fp32 FMA/cycle x 2 FLOP x clock); "
          f"load average {info['load_avg'][0]:.1f}")
    print(table(tab))
    print("* RTNeural: figures quoted in issue 7 (C++, same machine type), not measured in this run.")
    print("weights GB/s: bytes of weights a stream reads per sample over the time per sample; "
          "roof: this core's streaming read bandwidth over a buffer of the same size, measured "
          "in this run (" + ", ".join(f"{r['kind'].upper()} {r['I']}/{r['H']} {r['weight_bytes'] / 1024:.0f} KB: "
                                      f"{r['read_roof_gbs']:.0f} GB/s" for r in results) + ")")
    print("float32 accuracy against float64 torch (max abs error): " + "; ".join(
        f"{r['kind'].upper()} {r['I']}/{r['H']}: {r['err_first_step']:.1e} first step, "
        f"{r['err_10000_steps']:.1e} over 10,000 steps" for r in results))
    mem, cores = extra["memory"], extra["cores"]
    print(f"\nStreamBatch memory, GRU I=16 H=64 (state {mem['state_bytes_per_stream']} B per stream):")
    for n in ("1", "1024", "1000000"):
        print(f"  n={int(n):>9,}: {mem[n]['bytes_per_stream']:.0f} B per stream "
              f"({mem[n]['ratio_to_state']:.3f}x the state)")
    print(f"StreamBatch.step, GRU I=16 H=64, µs per stream by threads ({extra['threads']} available):")
    for n, row in cores.items():
        print(f"  n={int(n):>6}: " + ", ".join(f"{k} thread(s) {v:.3f}" for k, v in row.items()))
    ph = extra["cold_start_phases_s"]
    print(f"Cold start (import, load, first step; warm cache), median of {extra['cold_start_runs']} "
          f"fresh processes: {extra['cold_start_s']:.3f} s (best {extra['cold_start_best_s']:.3f} s; "
          f"import {ph['import']:.3f}, load {ph['load']:.3f}, first step {ph['first_step']:.3f}; "
          f"CPU {ph['cpu']:.3f} s; scipy imported by numba: {extra['cold_start_imports_scipy']})")
    print("\n" + bench_wavenet.table(extra["wavenet"]))
    if "first_compile_s" in extra:
        print(f"First-ever compile (every entry point, float32 + float64): {extra['first_compile_s']:.1f} s")

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"info": info, "results": results, "rows": tab, **extra},
                                          indent=1))
    title = (f"streamgru vs ONNX Runtime {onnxruntime.__version__} vs PyTorch {torch.__version__}, "
             f"one thread, {info['cpu']} ({info['date_utc']} UTC)")
    chart(results, Path(args.png), title)
    print(f"\nwrote {args.json} and {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
