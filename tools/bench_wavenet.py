#!/usr/bin/env python
"""Benchmark NAM's standard WaveNet streamed by streamgru, PyTorch and ONNX Runtime.

The model: NAM's standard "WaveNet" preset (two layer arrays, 16 then 8
channels, kernel 3, dilations 1..512 twice, tanh, not gated, head_scale
0.02; receptive field R = 4093), made with NAM's own module
(``nam.models.wavenet.WaveNet``), exported with NAM's exporter and loaded
with ``sg.load``. Paths, one thread, microseconds per sample:

- sg step      ``Stream.step(x, out=y)`` for one sample from Python;
- sg process   ``Stream.process`` on 256-sample blocks (``out=`` given);
- torch block  NAM's module forward on 256 new samples plus the R - 1 before
               them (what a block-streaming PyTorch host runs), per sample;
- torch step   the same forward on the R samples one output needs;
- ort block    ONNX Runtime on the same 256 + R - 1 window (the module
               exported by ``torch.onnx.export``), when it exports.

Also: x real time at 48 kHz and GFLOP/s (2 x the convolutions' multiply-adds
per sample over the time). Numbers move with machine load: run it on a quiet
machine. Used by tools/bench.py (the "wavenet" rows) or alone:

    python tools/bench_wavenet.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BLOCK = 256
RATE = 48000
DIL = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def standard_config() -> dict:
    def array(inp, ch, head, bias):
        return {"input_size": inp, "condition_size": 1, "channels": ch, "kernel_size": 3,
                "dilations": DIL, "activation": "Tanh",
                "head": {"out_channels": head, "kernel_size": 1, "bias": bias}}
    return {"layers_configs": [array(1, 16, 8, False), array(16, 8, 1, True)], "head": None,
            "head_scale": 0.02}


def flop_per_sample(model) -> int:
    """2 x the multiply-adds of every convolution and dense layer per sample."""
    return int(sum(2 * layer.weight.size for layer in model.layers
                   if layer.kind in ("conv1d", "dense")))


def _timed(fn, number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return time.perf_counter() - t0


def measure(jobs: dict, target_s: float, repeat: int) -> dict:
    """Median over ``repeat`` rounds (jobs taking turns) of µs per sample."""
    number = {}
    for name, (fn, per) in jobs.items():
        fn()
        number[name] = max(1, int(target_s / max(_timed(fn, 1), 1e-7)))
    samples: dict = {name: [] for name in jobs}
    for _ in range(repeat):
        for name, (fn, per) in jobs.items():
            samples[name].append(_timed(fn, number[name]) / number[name] * 1e6 / per)
    return {k: statistics.median(v) for k, v in samples.items()}


def run(target_s: float = 0.2, repeat: int = 5) -> dict:
    import torch
    from nam.models.wavenet import WaveNet

    import streamgru as sg

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = WaveNet.init_from_config(standard_config())
    net.eval()
    R = net.receptive_field
    with tempfile.TemporaryDirectory() as d:
        net.export(d, basename="standard")
        model = sg.load(str(Path(d) / "standard.nam"))
        onnx_path = Path(d) / "standard.onnx"
        window = torch.zeros((1, 1, BLOCK + R - 1))
        ort = None
        try:
            import onnxruntime as rt

            torch.onnx.export(copy.deepcopy(net._net), (window,), str(onnx_path),
                              input_names=["x"], output_names=["y"], dynamo=False)
            opts = rt.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            ort = rt.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            ort_error = f"{type(exc).__name__}: {exc}"[:200]
    rng = np.random.default_rng(0)
    X = (0.3 * rng.normal(size=(RATE, 1))).astype(np.float32)
    s = model.stream()
    y = np.empty(1, np.float32)
    Y = np.empty((BLOCK, 1), np.float32)
    pos = [0]

    def sg_step():
        for x in X[:BLOCK]:
            s.step(x, out=y)

    def sg_process():
        i = pos[0] = (pos[0] + BLOCK) % (RATE - BLOCK)
        s.process(X[i : i + BLOCK], out=Y)

    xw = torch.from_numpy(X[: BLOCK + R - 1, 0].copy())[None]
    x1 = torch.from_numpy(X[:R, 0].copy())[None]

    def torch_block():
        with torch.inference_mode():
            net(xw, pad_start=False)

    def torch_step():
        with torch.inference_mode():
            net(x1, pad_start=False)

    jobs = {"sg_step": (sg_step, BLOCK), "sg_process": (sg_process, BLOCK),
            "torch_block": (torch_block, BLOCK), "torch_step": (torch_step, 1)}
    if ort is not None:
        feed = {"x": window.numpy()}
        jobs["ort_block"] = (lambda: ort.run(None, feed), BLOCK)
    us = measure(jobs, target_s, repeat)
    flop = flop_per_sample(model)
    out = {"receptive_field": R, "block": BLOCK, "flop_per_sample": flop,
           "nam_weights": sum(p.numel() for p in net.parameters()), "us_per_sample": us,
           "x_real_time_48k": {k: 1e6 / RATE / v for k, v in us.items()},
           "gflops": {k: flop / v / 1e3 for k, v in us.items()}}
    if ort is None:
        out["ort_error"] = ort_error
    return out


def table(res: dict) -> str:
    names = {"sg_step": "streamgru step", "sg_process": f"streamgru process ({BLOCK})",
             "torch_block": f"PyTorch NAM forward ({BLOCK} + R-1)",
             "torch_step": "PyTorch NAM forward (R per sample)",
             "ort_block": f"ONNX Runtime ({BLOCK} + R-1)"}
    lines = [f"NAM standard WaveNet ({res['nam_weights']} weights, receptive field "
             f"{res['receptive_field']}, {res['flop_per_sample']} FLOP/sample), one thread:",
             f"| {'path':36} | µs/sample | x real time @48k | GFLOP/s |",
             f"|{'-' * 38}|-----------|------------------|---------|"]
    for k, v in res["us_per_sample"].items():
        lines.append(f"| {names[k]:36} | {v:9.3f} | {res['x_real_time_48k'][k]:16.1f} | "
                     f"{res['gflops'][k]:7.2f} |")
    if "ort_error" in res:
        lines.append(f"ONNX Runtime: not measured ({res['ort_error']})")
    return "\n".join(lines)


def cli(doc: str, run, table, argv=None) -> int:
    """The command line of a one-model benchmark (this one, bench_tcn.py):
    ``--quick`` and ``--json``; prints ``table(run(...))`` and the load."""
    import os

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    res = run(*((0.05, 3) if args.quick else (0.3, 7)))
    print(table(res))
    print(f"load average {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(cli(__doc__, run, table))
