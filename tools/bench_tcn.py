#!/usr/bin/env python
"""Benchmark a TCN (pytorch-tcn's own) streamed by streamgru, PyTorch and ONNX Runtime.

The model: ``pytorch_tcn.TCN`` (1.2.3) with 8 input channels, six residual
blocks of 32 channels, kernel 3, dilations 1..32 (receptive field R = 253),
weight norm, ReLU, a 1x1 output projection to 4; converted with
``sg.from_torch``. Paths, one thread, microseconds per sample:

- sg step       ``Stream.step(x, out=y)`` for one sample from Python;
- sg process    ``Stream.process`` on 256-sample blocks (``out=`` given);
- torch stream  pytorch-tcn's own streaming mode, one sample per call
                (``tcn(x, inference=True)``: its buffers carry the past);
- torch block   the offline forward on 256 new samples plus the R - 1 before
                them (what a block-streaming PyTorch host runs), per sample;
- ort block     ONNX Runtime on the same window (``torch.onnx.export``).

Also GFLOP/s (2 x the multiply-adds of the convolutions and the projection
per sample over the time). Numbers move with machine load: run it on a
quiet machine. Used by tools/bench.py (the "tcn" rows) or alone:

    python tools/bench_tcn.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sys import FMA_PER_CYCLE, cpu_ghz  # noqa: E402
from bench_wavenet import cli, flop_per_sample, measure  # noqa: E402

BLOCK = 256
INPUTS, CHANNELS, BLOCKS, KERNEL, OUTPUTS = 8, 32, 6, 3, 4


def build():
    import torch
    from pytorch_tcn import TCN

    torch.manual_seed(0)
    net = TCN(INPUTS, [CHANNELS] * BLOCKS, kernel_size=KERNEL, output_projection=OUTPUTS)
    return net.eval()


def run(target_s: float = 0.2, repeat: int = 5) -> dict:
    import torch

    import streamgru as sg

    torch.set_num_threads(1)
    net = build()
    R = 1 + 2 * (KERNEL - 1) * sum(2 ** i for i in range(BLOCKS))
    model = sg.from_torch(net)
    window = torch.zeros((1, INPUTS, BLOCK + R - 1))
    ort, ort_error = None, ""
    with tempfile.TemporaryDirectory() as d:
        try:
            import onnxruntime as rt

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(net, (window,), str(Path(d) / "tcn.onnx"), input_names=["x"],
                                  dynamo=False)
            opts = rt.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            ort = rt.InferenceSession(str(Path(d) / "tcn.onnx"), opts,
                                      providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            ort_error = f"{type(exc).__name__}: {exc}"[:200]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8 * BLOCK, INPUTS)).astype(np.float32)
    s = model.stream()
    y = np.empty(OUTPUTS, np.float32)
    Y = np.empty((BLOCK, OUTPUTS), np.float32)
    pos = [0]

    def sg_step():
        for x in X[:BLOCK]:
            s.step(x, out=y)

    def sg_process():
        i = pos[0] = (pos[0] + BLOCK) % (len(X) - BLOCK)
        s.process(X[i : i + BLOCK], out=Y)

    xs = [torch.from_numpy(x.copy()).reshape(1, INPUTS, 1) for x in X[:BLOCK]]
    net.reset_buffers()

    def torch_stream():
        with torch.inference_mode():
            for x in xs:
                net(x, inference=True)

    xw = torch.from_numpy(np.resize(X, (BLOCK + R - 1, INPUTS)).T.copy())[None]

    def torch_block():
        with torch.inference_mode():
            net(xw)

    jobs = {"sg_step": (sg_step, BLOCK), "sg_process": (sg_process, BLOCK),
            "torch_stream": (torch_stream, BLOCK), "torch_block": (torch_block, BLOCK)}
    if ort is not None:
        feed = {"x": xw.numpy()}
        jobs["ort_block"] = (lambda: ort.run(None, feed), BLOCK)
    us = measure(jobs, target_s, repeat)
    flop = flop_per_sample(model)
    peak = 2 * FMA_PER_CYCLE * cpu_ghz()
    out = {"receptive_field": R, "block": BLOCK, "flop_per_sample": flop,
           "weights": sum(p.numel() for p in net.parameters()), "us_per_sample": us,
           "gflops": {k: flop / v / 1e3 for k, v in us.items()}, "peak_gflops": peak}
    if ort is None:
        out["ort_error"] = ort_error
    return out


def table(res: dict) -> str:
    names = {"sg_step": "streamgru step", "sg_process": f"streamgru process ({BLOCK})",
             "torch_stream": "pytorch-tcn inference=True (1 sample)",
             "torch_block": f"PyTorch forward ({BLOCK} + R-1)",
             "ort_block": f"ONNX Runtime ({BLOCK} + R-1)"}
    sg_step, sg_process = res["us_per_sample"]["sg_step"], res["us_per_sample"]["sg_process"]
    peak = res["peak_gflops"]
    lines = [f"pytorch-tcn TCN ({INPUTS} inputs, {BLOCKS} blocks of {CHANNELS}, kernel {KERNEL}, "
             f"receptive field {res['receptive_field']}, {res['weights']} weights, "
             f"{res['flop_per_sample']} FLOP/sample), one thread, fp32 FMA peak {peak:.0f} "
             f"GFLOP/s; the last two columns: this row's time over streamgru's",
             f"| {'path':38} | µs/sample | GFLOP/s | % peak | / sg step | / sg process |",
             f"|{'-' * 40}|-----------|---------|--------|-----------|--------------|"]
    for k, v in res["us_per_sample"].items():
        g = res["gflops"][k]
        lines.append(f"| {names[k]:38} | {v:9.3f} | {g:7.2f} | {100 * g / peak:5.1f}% | "
                     f"{v / sg_step:8.2f}x | {v / sg_process:11.2f}x |")
    if "ort_error" in res:
        lines.append(f"ONNX Runtime: not measured ({res['ort_error']})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli(__doc__, run, table))
