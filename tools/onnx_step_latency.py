"""Per-sample latency of one exported model: ONNX Runtime vs streamgru.

A torch GRU (2 layers, H=64) with a Linear head is exported to ONNX as
``f(x, h0) -> (y, h_n)``. ONNX Runtime runs it one step per call, feeding the
state back; streamgru loads the same file with ``sg.load`` and calls
``Stream.step(x, out=...)``. Prints the best of five runs of 2000 steps each
and the largest difference between the two output sequences.

    python tools/onnx_step_latency.py [folder for the .onnx file]
"""

import os
import sys
import tempfile
import time
import warnings

import numpy as np
import onnxruntime as ort
import torch

import streamgru as sg

I, H, L, O = 8, 64, 2, 4
STEPS, REPEATS = 2000, 5


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.GRU(I, H, L)
        self.fc = torch.nn.Linear(H, O)

    def forward(self, x, h):
        y, h_n = self.rnn(x, h)
        return self.fc(y), h_n


def main() -> None:
    folder = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
    path = os.path.join(folder, "gru_step.onnx")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), (torch.randn(1, 1, I), torch.zeros(L, 1, H)), path,
                          dynamo=False, input_names=["x", "h0"], output_names=["y", "h_n"])
    t0 = time.perf_counter()
    model = sg.load(path)
    load_ms = (time.perf_counter() - t0) * 1e3
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    X = np.random.default_rng(0).normal(size=(STEPS, I)).astype(np.float32)
    stream, out = model.stream(), np.empty(O, np.float32)
    stream.step(X[0], out=out)  # compile / load the cached kernels

    def run_streamgru() -> float:
        stream.reset()
        t = time.perf_counter()
        for x in X:
            stream.step(x, out=out)
        return (time.perf_counter() - t) / STEPS

    def run_ort() -> tuple[float, np.ndarray]:
        h, ys = np.zeros((L, 1, H), np.float32), []
        t = time.perf_counter()
        for x in X:
            y, h = sess.run(None, {"x": x[None, None], "h0": h})
            ys.append(y[0, 0])
        return (time.perf_counter() - t) / STEPS, np.array(ys)

    best_sg = min(run_streamgru() for _ in range(REPEATS))
    runs = [run_ort() for _ in range(REPEATS)]
    best_ort = min(r[0] for r in runs)
    stream.reset()
    diff = np.abs(stream.process(X) - runs[0][1]).max()
    print(f"sg.load {load_ms:.1f} ms; per step: streamgru {best_sg * 1e6:.2f} us, "
          f"ONNX Runtime {best_ort * 1e6:.2f} us ({best_ort / best_sg:.1f}x); "
          f"max |difference| {diff:.1e}")


if __name__ == "__main__":
    main()
