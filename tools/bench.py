#!/usr/bin/env python
"""Benchmark streamgru, with float32 and reduced-precision weights, against its peers.

Runs the grid of issues 7 and 14 in one process, on one thread unless stated:
GRU with I=16 and H=16, 64, 128, 256 (and I=32 for H=256), LSTM with I=16 and
H=64, 128; for each, three paths:

- step     one sample from Python: ``Stream.step(x, out=y)`` against each
           peer's one step with the state carried.
- process  a sequence of T=4096 samples of one stream: ``Stream.process``.
- batch    1024 streams, one sample each: ``StreamBatch.step``.

streamgru runs the float32 model and ``model.quantize(w)`` for w in int8,
float16, bfloat16 (where the installed streamgru has ``quantize``). The
peers (tools/bench_peers.py; each optional, a missing one prints its pip
command and is skipped): ONNX Runtime float32 and its dynamic-quantized
model, PyTorch's cells and their dynamic-quantized int8 version, OpenVINO's
stateful model, LiteRT (XNNPACK) float32 and int8. RTNeural's figures are
constants quoted from issue 7 (C++, measured on this machine type earlier).

Times are medians over repeats of per-call means (microseconds per sample,
per stream for batch); every job of one config takes turns within each
round, so all see the same load. Also reported: GFLOP/s against the peak
of the instruction each weight type uses (fp32 FMA; int8: int16 pair dot
products, vpmaddwd or VNNI vpdpwssd; tools/bench_sys.py), and for one stream the
weight bytes read per second against this core's streaming read bandwidth
over a buffer of the same size (the read roof: a single stream's step reads
every weight once); issue 7's float32 and issue 14's int8 targets with
yes/NO; NAM's standard WaveNet (a graph model, tools/bench_wavenet.py):
step and 256-sample process against NAM's PyTorch module and ONNX Runtime;
pytorch-tcn's TCN (tools/bench_tcn.py) against its own streaming mode,
its offline forward and ONNX Runtime;
model memory per weight type; float32 accuracy after 10,000 steps
against float64 torch (tools/quant_accuracy.py measures the reduced types);
StreamBatch bytes per stream, 1 vs all cores, cold start, and (full run
only) the first-ever compile time.

Writes a JSON file and a PNG chart (matplotlib, ``pip install -e '.[bench]'``).
Benchmarks are not tests: numbers move with machine load; run it on a quiet
machine. ``--quick`` makes a short run (a few minutes).

Usage: python tools/bench.py [--quick] [--weights int8,float16] [--json docs/bench.json]
                             [--png docs/bench.png] [--no-compile-time]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ is None and importlib.util.find_spec("streamgru") is None:
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from bench_peers import LABEL, Ctx, export_onnx, peer_jobs, torch_models
from bench_report import chart, memory_lines, peer_table, rows, sg_table, summary
from bench_sys import (FMA_PER_CYCLE, bench_memory, bench_startup, cpu_flags, cpu_ghz, cpu_name, looped,
                       measure, read_bandwidth)

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
WEIGHTS = ("float32", "int8", "float16", "bfloat16")
ITEMSIZE = {"float32": 4, "int8": 1, "float16": 2, "bfloat16": 2}


def sg_jobs(m, wt: str, c: Ctx) -> dict:
    """streamgru's step, process and batch jobs for model ``m``."""
    from streamgru.kernels import config

    s = m.stream()
    y = np.empty(c.H, np.float32)
    x = c.x

    def step(number):
        fast = s.step  # called straight from the loop, as a user's loop would
        t0 = time.perf_counter()
        for _ in range(number):
            fast(x, out=y)
        return time.perf_counter() - t0

    Y = np.empty((len(c.X), c.H), np.float32)
    b = m.streams(len(c.XB))
    YB = np.empty((len(c.XB), c.H), np.float32)

    def batch(number):
        threads = config.THREADS
        config.THREADS = 1  # the grid is single-threaded
        try:
            return looped(lambda: b.step(c.XB, out=YB))(number)
        finally:
            config.THREADS = threads

    return {f"sg_{wt}_step": (step, 1),
            f"sg_{wt}_process": (looped(lambda: s.process(c.X, out=Y)), len(c.X)),
            f"sg_{wt}_batch": (batch, len(c.XB))}


def matrix_nbytes(m) -> int:
    """Bytes of the stored weight matrices (int8 values without their scales)."""
    total = 0
    for layer in m.layers:
        for name in getattr(layer, "_weight_names", ()):
            w = getattr(layer, name)
            total += getattr(w, "values", w).nbytes
    return total


def packed_nbytes(m) -> int | None:
    """Bytes of the arrays the kernels' plan holds (the weights packed for
    the kernels, built on first use)."""
    build = getattr(m, "_plan", None)
    if build is None:
        return None
    plan = build()
    fields = vars(plan) if hasattr(plan, "__dict__") else {}
    return sum(a.nbytes for a in fields.values() if isinstance(a, np.ndarray)) or None


def bench_config(kind: str, I: int, H: int, tmp: Path, target_s: float, repeat: int,
                 weights: list, skipped: dict) -> dict:
    import torch

    import streamgru as sg

    rng = np.random.default_rng(1)
    layer, cell = torch_models(kind, I, H)
    m = sg.from_torch(layer)
    onnx_path = tmp / f"{kind}_{I}_{H}.onnx"
    export_onnx(kind, layer, I, H, onnx_path)
    c = Ctx(kind, I, H, layer, cell, onnx_path, tmp, rng.standard_normal(I).astype(np.float32),
            rng.standard_normal((T_SEQ, I)).astype(np.float32),
            rng.standard_normal((BATCH, I)).astype(np.float32))
    fma = (3 if kind == "gru" else 4) * H * (I + H)
    res: dict = {"kind": kind, "I": I, "H": H, "fma_per_sample": fma, "rtneural": RTNEURAL_US.get((kind, I, H)),
                 "model_bytes": {}, "matrix_bytes": {}, "packed_bytes": {}, "weight_bytes": {}, "read_roof_gbs": {}}

    jobs = {}  # name -> (run(number) -> seconds, samples or streams per call)
    for wt in weights:
        q = m if wt == "float32" else m.quantize(wt)
        jobs.update(sg_jobs(q, wt, c))
        res["model_bytes"][wt] = getattr(q, "weights_nbytes", None) or 4 * fma
        res["matrix_bytes"][wt] = matrix_nbytes(q)
        res["packed_bytes"][wt] = packed_nbytes(q)
        # a step reads every matrix element once, plus int8's row scales (W_ih and W_hh)
        scales = 4 * 2 * (fma // (I + H)) if wt == "int8" else 0
        res["weight_bytes"][wt] = ITEMSIZE[wt] * fma + scales
    jobs.update(peer_jobs(c, skipped))

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

    for wt in weights:
        res["read_roof_gbs"][wt] = read_bandwidth(res["weight_bytes"][wt], repeat)
    return res


def available_weights(requested: list) -> list:
    import streamgru as sg

    if not hasattr(sg.Model, "quantize"):
        print("streamgru here has no Model.quantize: float32 rows only", file=sys.stderr)
        return ["float32"]
    return ["float32"] + [w for w in requested if w != "float32"]


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("numba", "numpy", "onnxruntime", "torch", "openvino", "ai-edge-litert"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def report(info: dict, results: list, tab: list, extra: dict, skipped: dict) -> None:
    ghz, peak = info["ghz_measured"], info["peak_gflops_one_core"]
    print(f"CPU: {info['cpu']}, {os.cpu_count()} cores, measured clock {ghz:.2f} GHz; one thread; "
          f"fp32 peak {peak:.0f} GFLOP/s ({FMA_PER_CYCLE} FMA/cycle x 2 FLOP x clock); load average "
          f"{info['load_avg'][0]:.1f}; " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v))
    for peer, pip in skipped.items():
        print(f"skipped {LABEL[peer]}: not installed ({pip})")
    print("\nPeers, µs per sample (per stream for batch):\n")
    print(peer_table(results))
    print("* RTNeural: figures quoted in issue 7 (C++, same machine type), not measured in this run.")
    print("\nstreamgru by weight type, and its speed-up over each peer (×peer = peer µs / streamgru µs):\n")
    print(sg_table(tab))
    print("\n% peak: of the fp32 FMA peak (float16 and bfloat16 are widened to float32 in registers "
          "and summed with fp32 FMAs); int8 rows also against the peak of the integer dot products "
          "int8 uses (vpmaddwd / vpdpwssd: two products per 32-bit lane, 2x the fp32 rate). weights GB/s: bytes of weights (and int8 scales) a stream reads per sample "
          "over the time per sample; roof: this core's streaming read bandwidth over a buffer of the "
          "same size, measured in this run (" + "; ".join(
              f"{r['kind'].upper()} {r['I']}/{r['H']}: " + ", ".join(
                  f"{wt} {r['weight_bytes'][wt] / 1024:.0f} KB {r['read_roof_gbs'][wt]:.0f} GB/s"
                  for wt in r["weight_bytes"]) for r in results) + ")")
    print("\nTargets met: " + "; ".join(summary(tab)))
    mem = memory_lines(results)
    if mem:
        print("\nModel memory (weights_nbytes: matrices, scales and biases):\n  " + "\n  ".join(mem))
    print("\nfloat32 accuracy against float64 torch (max abs error): " + "; ".join(
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
    if "first_compile_s" in extra:
        print(f"First-ever compile (every entry point, float32 + float64): {extra['first_compile_s']:.1f} s")
    if "wavenet" in extra:
        import bench_wavenet

        print("\n" + bench_wavenet.table(extra["wavenet"]))
    if "tcn" in extra:
        import bench_tcn

        print("\n" + bench_tcn.table(extra["tcn"]))
    elif "tcn_skipped" in extra:
        print(f"\nskipped the TCN rows: pytorch-tcn not installed ({extra['tcn_skipped']})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: fewer, shorter repeats")
    ap.add_argument("--weights", default=",".join(WEIGHTS[1:]),
                    help="reduced weight types to run beside float32 (comma-separated; '' for none)")
    ap.add_argument("--json", default="docs/bench.json", help="where to write the results")
    ap.add_argument("--png", default="docs/bench.png", help="where to write the chart")
    ap.add_argument("--no-compile-time", action="store_true",
                    help="skip timing the first-ever compile (about a minute)")
    args = ap.parse_args(argv)
    requested = [w for w in args.weights.split(",") if w]
    bad = [w for w in requested if w not in WEIGHTS]
    if bad:
        ap.error(f"--weights: unknown {', '.join(bad)} (choose from {', '.join(WEIGHTS[1:])})")

    import torch

    torch.set_num_threads(1)
    target_s, repeat = (0.02, 3) if args.quick else (0.15, 7)
    ghz = cpu_ghz()
    import streamgru.kernels as kernels

    kernels.warmup(("float32",))
    weights = available_weights(requested)
    results, skipped = [], {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind, I, H in GRID:
            print(f"  {kind} I={I} H={H} ...", file=sys.stderr, flush=True)
            results.append(bench_config(kind, I, H, tmp, target_s, repeat, weights, skipped))
        extra = bench_memory(target_s, repeat)
        # NAM's standard WaveNet, a graph model (tools/bench_wavenet.py)
        import bench_wavenet

        extra["wavenet"] = bench_wavenet.run(target_s, repeat)
        # pytorch-tcn's TCN, a residual graph (tools/bench_tcn.py)
        if importlib.util.find_spec("pytorch_tcn") is None:
            extra["tcn_skipped"] = "pip install pytorch-tcn==1.2.3"
        else:
            import bench_tcn

            extra["tcn"] = bench_tcn.run(target_s, repeat)
        extra.update(bench_startup(tmp, compile_time=not (args.quick or args.no_compile_time)))

    info = {
        "cpu": cpu_name(), "ghz_measured": ghz, "peak_gflops_one_core": 2 * FMA_PER_CYCLE * ghz,
        "load_avg": os.getloadavg(), "python": platform.python_version(), "versions": versions(),
        "quick": args.quick, "weights": weights, "skipped": skipped,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    flags = cpu_flags()
    info["cpu_flags"] = sorted(flags & {"avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni",
                                        "avx512_bf16", "avx512_fp16", "asimd", "asimddp", "bf16"})
    tab = rows(results, ghz, flags, weights)
    report(info, results, tab, extra, skipped)

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"info": info, "results": results, "rows": tab, **extra},
                                          indent=1))
    title = (f"streamgru vs ONNX Runtime, PyTorch, OpenVINO, LiteRT, one thread, {info['cpu']} "
             f"({info['date_utc']} UTC)")
    chart(results, Path(args.png), title)
    print(f"\nwrote {args.json} and {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
