"""Timing, CPU and system measurements for tools/bench.py: the timing loop,
the core's clock and read bandwidth, StreamBatch memory, 1 vs all cores and
cold start. See tools/bench.py for what the numbers mean."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

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


# -- CPU ----------------------------------------------------------------------
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_vnni(flags: set | None = None) -> bool:
    """Whether the CPU has x86 int8 dot products (AVX-512 VNNI or AVX-VNNI)."""
    return bool((cpu_flags() if flags is None else flags) & {"avx512_vnni", "avx_vnni"})


def int8_macs_per_cycle(flags: set) -> int | None:
    """int8 multiply-adds per cycle per core of the integer dot product
    streamgru's int8 kernels use (kernels/qdot.py: int8 weights and int16
    inputs, two products summed per 32-bit lane by one x86 ``vpmaddwd``, or
    ``vpdpwssd`` with AVX-512 VNNI), taken to issue at the fp32 FMA rate:
    2x the fp32 FMA peak. (An AVX2 Zen 3 issues ``vpmaddwd`` at about 2/3
    of its FMA rate, measured with ten independent chains in C: there the
    attainable int8 peak is about 1.3x fp32's, and the % reads low.) None where the kernels use the portable form
    (not x86): the "int8 dot peak" an int8 row is also compared with."""
    if flags & {"avx2", "avx512bw"}:
        return 2 * FMA_PER_CYCLE
    return None


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


# -- memory, cores, start-up --------------------------------------------------
def bench_memory(target_s: float, repeat: int) -> dict:
    """StreamBatch bytes per stream (allocations made by streams(n), as seen
    by tracemalloc) and 1 vs all cores, GRU I=16 H=64."""
    import streamgru as sg
    from streamgru.kernels import config

    from bench_peers import torch_models

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

    from bench_peers import torch_models

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
