"""The peers tools/bench.py times streamgru against, each optional.

Every peer is a function ``(Ctx) -> {path: (run(number) -> seconds, per)}``
for the paths it has ("step": one sample with the state carried, "process":
T samples of one stream, "batch": one sample of each of B streams). A peer
whose package is missing raises ``Missing`` with the pip command; the bench
prints it and goes on.

    ort      ONNX Runtime, float32 model (state fed in and out of session.run)
    ort_q    ONNX Runtime, onnxruntime.quantization.quantize_dynamic (int8
             weights, per output channel). ONNX Runtime has no quantized GRU
             operator (quantize_dynamic leaves a GRU node in float32), so the
             GRU is exported as its cell (MatMul + gates: one step per run,
             no process path) and the MatMuls become int8; the LSTM keeps its
             LSTM node, which becomes DynamicQuantizeLSTM.
    torch    torch.nn.GRUCell / LSTMCell (step, batch), nn.GRU / nn.LSTM (process)
    torch_q  torch.ao.quantization.quantize_dynamic of nn.GRU / nn.LSTM (int8
             weights), one step (T=1) with the state carried
    ov       OpenVINO, the ONNX model made stateful (the state lives in the
             infer request), input bound once, infer() with no arguments,
             f32 inference precision, one thread (step and batch)
    litert   LiteRT (ai-edge-litert), XNNPACK, one thread, on a .tflite cell
             written by tools/bench_tflite.py (step and batch)
    litert_q the same with int8 weights (dynamic-range FULLY_CONNECTED)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench_sys import has_vnni, looped

PIP = {"ort": "onnxruntime==1.32.0", "ort_q": "onnxruntime==1.32.0", "torch": "torch==2.13.0",
       "torch_q": "torch==2.13.0", "ov": "openvino==2026.4.1", "litert": "ai-edge-litert==2.3.0",
       "litert_q": "ai-edge-litert==2.3.0"}
LABEL = {"ort": "ORT", "ort_q": "ORT int8", "torch": "torch", "torch_q": "torch int8",
         "ov": "OpenVINO", "litert": "LiteRT", "litert_q": "LiteRT int8"}


class Missing(Exception):
    """A peer's package is not installed (the message is the pip command)."""


@dataclass
class Ctx:
    kind: str
    I: int
    H: int
    layer: object  # torch nn.GRU / nn.LSTM, seeded
    cell: object  # the matching torch cell with the same weights
    onnx_path: Path  # ``layer`` exported with its state as input and output
    tmp: Path
    x: np.ndarray  # (I,)
    X: np.ndarray  # (T, I)
    XB: np.ndarray  # (B, I)

    @property
    def nstate(self) -> int:
        return 1 if self.kind == "gru" else 2

    def arrays(self) -> list:
        return [getattr(self.cell, n).detach().numpy() for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def _need(module: str, peer: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise Missing(f"pip install {PIP[peer]}") from None


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


def export_gru_cell_onnx(weight_ih, weight_hh, bias_ih, bias_hh, path: Path, head=None) -> None:
    """A GRU step (PyTorch's reset-after form) as MatMul + Add + gates, so
    that ONNX Runtime's quantize_dynamic can make its products int8 (it has
    no quantized GRU node). Inputs x (B, I), h (B, H); output hn (B, H), and
    with ``head=(weight, bias)`` (torch.nn.Linear's layout) also ``y = hn
    @ weight.T + bias``."""
    import torch

    def param(a):
        return torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(a, np.float32)))

    class Cell(torch.nn.Module):
        def __init__(self):
            super().__init__()
            # x @ W.T exports as MatMul with a constant B: what quantize_dynamic rewrites
            self.wi, self.wh = param(weight_ih.T), param(weight_hh.T)
            self.bi, self.bh = param(bias_ih), param(bias_hh)
            if head is not None:
                self.wo, self.bo = param(head[0].T), param(head[1])

        def forward(self, x, h):
            gi = torch.matmul(x, self.wi) + self.bi
            gh = torch.matmul(h, self.wh) + self.bh
            ir, iz, i_n = gi.chunk(3, 1)
            hr, hz, hn = gh.chunk(3, 1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            n = torch.tanh(i_n + r * hn)
            h2 = n + z * (h - n)
            return h2 if head is None else (h2, torch.matmul(h2, self.wo) + self.bo)

    H = weight_hh.shape[1]
    outs = ["hn"] + ([] if head is None else ["y"])
    torch.onnx.export(Cell(), (torch.zeros(2, weight_ih.shape[1]), torch.zeros(2, H)), str(path),
                      dynamo=False, input_names=["x", "h"], output_names=outs,
                      dynamic_axes={n: {0: "B"} for n in ["x", "h"] + outs})


def ort_quantize(src: Path, dst: Path) -> None:
    """onnxruntime.quantization.quantize_dynamic, int8 weights, one scale per
    output channel; 7-bit weights (``reduce_range``) on a CPU without VNNI,
    as ONNX Runtime advises: there its uint8 x int8 kernels (``vpmaddubsw``)
    saturate pairs of products in int16, which cost this GRU cell 0.7 of
    output on an AVX2 Zen 3."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # its "run pre-processing first" advice
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     reduce_range=not has_vnni())


def ort_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def torch_quantized(layer):
    """torch.ao.quantization.quantize_dynamic of an nn.GRU / nn.LSTM (int8
    weights; it swaps only child modules, hence the container)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its "migrate to torchao" notice
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(layer), {type(layer)},
                                                   dtype=torch.qint8)
    return q[0]


# -- peers --------------------------------------------------------------------
def _ort_seq_jobs(c: Ctx, sess, process: bool = True) -> dict:
    """Jobs for an ONNX model of the layer (x (T, B, I), h, c in; y, hn, cn out)."""
    H, I, B = c.H, c.I, len(c.XB)
    zero = lambda b: np.zeros((1, b, H), np.float32)  # noqa: E731
    names = ["h", "c"][: c.nstate]
    feeds = {"x": c.x.reshape(1, 1, I), **{n: zero(1) for n in names}}

    def step():
        out = sess.run(None, feeds)
        for k, n in enumerate(names):
            feeds[n] = out[1 + k]

    jobs = {"step": (looped(step), 1)}
    if process:
        seq = {"x": c.X.reshape(len(c.X), 1, I), **{n: zero(1) for n in names}}
        jobs["process"] = (looped(lambda: sess.run(None, seq)), len(c.X))
    bfeeds = {"x": c.XB.reshape(1, B, I), **{n: zero(B) for n in names}}
    jobs["batch"] = (looped(lambda: sess.run(None, bfeeds)), B)
    return jobs


def peer_ort(c: Ctx) -> dict:
    _need("onnxruntime", "ort")
    return _ort_seq_jobs(c, ort_session(c.onnx_path))


def peer_ort_q(c: Ctx) -> dict:
    _need("onnxruntime.quantization", "ort_q")
    dst = c.tmp / f"{c.onnx_path.stem}_q.onnx"
    if c.kind == "lstm":  # LSTM -> DynamicQuantizeLSTM
        ort_quantize(c.onnx_path, dst)
        return _ort_seq_jobs(c, ort_session(dst))
    cell = c.tmp / f"{c.onnx_path.stem}_cell.onnx"
    export_gru_cell_onnx(*c.arrays(), cell)
    ort_quantize(cell, dst)
    sess = ort_session(dst)
    feeds = {"x": c.x.reshape(1, c.I), "h": np.zeros((1, c.H), np.float32)}

    def step():
        feeds["h"] = sess.run(None, feeds)[0]

    B = len(c.XB)
    bfeeds = {"x": c.XB, "h": np.zeros((B, c.H), np.float32)}
    return {"step": (looped(step), 1), "batch": (looped(lambda: sess.run(None, bfeeds)), B)}


def peer_torch(c: Ctx) -> dict:
    torch = _need("torch", "torch")
    cell, layer = c.cell, c.layer
    xt = torch.from_numpy(c.x).reshape(1, c.I)
    st = [torch.zeros(1, c.H) for _ in range(c.nstate)]

    def step():
        if c.nstate == 1:
            st[0] = cell(xt, st[0])
        else:
            st[0], st[1] = cell(xt, (st[0], st[1]))

    Xt = torch.from_numpy(c.X).reshape(len(c.X), 1, c.I)
    XBt = torch.from_numpy(c.XB)
    B = len(c.XB)
    bst = tuple(torch.zeros(B, c.H) for _ in range(c.nstate))
    return {"step": (looped(step, inference=True), 1),
            "process": (looped(lambda: layer(Xt), inference=True), len(c.X)),
            "batch": (looped(lambda: cell(XBt, bst[0] if c.nstate == 1 else bst), inference=True), B)}


def peer_torch_q(c: Ctx) -> dict:
    torch = _need("torch", "torch_q")
    q = torch_quantized(c.layer)
    zero = lambda b: torch.zeros(1, b, c.H)  # noqa: E731
    xt = torch.from_numpy(c.x).reshape(1, 1, c.I)
    st = [zero(1) if c.nstate == 1 else (zero(1), zero(1))]

    def step():
        st[0] = q(xt, st[0])[1]

    Xt = torch.from_numpy(c.X).reshape(len(c.X), 1, c.I)
    B = len(c.XB)
    XBt = torch.from_numpy(c.XB).reshape(1, B, c.I)
    bst = zero(B) if c.nstate == 1 else (zero(B), zero(B))
    return {"step": (looped(step, inference=True), 1),
            "process": (looped(lambda: q(Xt), inference=True), len(c.X)),
            "batch": (looped(lambda: q(XBt, bst), inference=True), B)}


def _ov_request(c: Ctx, batch: int, x: np.ndarray):
    ov = _need("openvino", "ov")
    from openvino._offline_transformations import apply_make_stateful_transformation

    core = ov.Core()
    model = core.read_model(str(c.onnx_path))
    shapes = {"x": [1, batch, c.I], "h": [1, batch, c.H]}
    pairs = {"h": "hn"}
    if c.nstate == 2:
        shapes["c"] = [1, batch, c.H]
        pairs["c"] = "cn"
    model.reshape(shapes)
    apply_make_stateful_transformation(model, pairs)  # h (and c) become variables of the request
    compiled = core.compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    req.set_input_tensor(ov.Tensor(np.ascontiguousarray(x.reshape(1, batch, c.I)), shared_memory=True))
    return req


def peer_ov(c: Ctx) -> dict:
    r1 = _ov_request(c, 1, c.x)
    rb = _ov_request(c, len(c.XB), c.XB)
    return {"step": (looped(lambda: r1.infer()), 1), "batch": (looped(lambda: rb.infer()), len(c.XB))}


def _litert(c: Ctx, weights: str, peer: str) -> dict:
    _need("ai_edge_litert.interpreter", peer)
    from bench_tflite import LiteRTCell, cell_tflite

    w = c.arrays()
    one = LiteRTCell(cell_tflite(c.kind, *w, weights=weights), c.nstate)
    one.set_input(c.x)
    B = len(c.XB)
    many = LiteRTCell(cell_tflite(c.kind, *w, batch=B, weights=weights), c.nstate)
    many.set_input(c.XB)
    return {"step": (looped(one.step), 1), "batch": (looped(many.invoke), B)}


def peer_litert(c: Ctx) -> dict:
    return _litert(c, "float32", "litert")


def peer_litert_q(c: Ctx) -> dict:
    return _litert(c, "int8", "litert_q")


PEERS = {"ort": peer_ort, "ort_q": peer_ort_q, "torch": peer_torch, "torch_q": peer_torch_q,
         "ov": peer_ov, "litert": peer_litert, "litert_q": peer_litert_q}


def peer_jobs(c: Ctx, skipped: dict) -> dict:
    """Every available peer's jobs as {f"{peer}_{path}": job}; a missing
    peer goes to ``skipped`` (peer -> pip command) and is left out."""
    jobs = {}
    for name, make in PEERS.items():
        if name in skipped:
            continue
        try:
            made = make(c)
        except Missing as exc:
            skipped[name] = str(exc)
            continue
        jobs.update({f"{name}_{path}": job for path, job in made.items()})
    return jobs

