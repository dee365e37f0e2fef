"""Helpers that write ONNX files at test time: torch exports and hand-built
single-node graphs (onnx.helper). Nothing binary is committed."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TOL = 2e-5  # float32 streamed against ONNX Runtime over T steps

I, H, O = 5, 12, 3  # input, hidden and head sizes (small: compiles and exports stay quick)
T = 240  # time steps compared (>= 200)

ONNX_NAMES = {"GRU": 3, "LSTM": 4, "RNN": 1}  # gates per op


# ----------------------------------------------------------------------------
# torch exports


@dataclass(frozen=True)
class Export:
    """One torch model exported to ONNX."""

    kind: str  # GRU / LSTM / RNN
    num_layers: int
    batch_first: bool
    head: str  # activation after the Linear head ("" for none)
    dynamo: bool = False
    dynamic: bool = False  # dynamic batch and time axes
    relu: bool = False  # RNN nonlinearity
    last: bool = False  # many-to-one: head on the last time step
    hn: bool = False  # many-to-one through the final state: fc(h_n[-1])
    state_input: bool = False  # forward(x, h0)
    opset: int | None = None  # TorchScript opset_version (None: the exporter's default)

    @property
    def id(self) -> str:
        bits = [self.kind, f"L{self.num_layers}", "bf" if self.batch_first else "tf",
                self.head or "linear", "dynamo" if self.dynamo else "ts"]
        for flag in ("dynamic", "relu", "last", "hn", "state_input"):
            if getattr(self, flag):
                bits.append(flag)
        if self.opset:
            bits.append(f"opset{self.opset}")
        return "-".join(bits)


def export(case: Export, path) -> None:
    """Build a seeded torch model for ``case`` and export it to ``path``."""
    import torch

    torch.manual_seed(hash(case.id) % 1000)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            kw = {"nonlinearity": "relu"} if case.relu else {}
            self.rnn = getattr(torch.nn, case.kind)(I, H, num_layers=case.num_layers,
                                                    batch_first=case.batch_first, **kw)
            self.fc = torch.nn.Linear(H, O)

        def forward(self, x, *h):
            y, h_n = self.rnn(x, *h)
            if case.hn:
                y = (h_n[0] if case.kind == "LSTM" else h_n)[-1]
            elif case.last:
                y = y[:, -1] if case.batch_first else y[-1]
            y = self.fc(y)
            if case.head == "softmax":
                return torch.softmax(y, dim=-1)
            if case.head == "leaky_relu":
                return torch.nn.functional.leaky_relu(y, 0.1)
            if case.head == "gelu":  # below opset 20 exported as x * 0.5 * (1 + erf(x / sqrt 2))
                return torch.nn.functional.gelu(y)
            return getattr(torch, case.head)(y) if case.head else y

    net = Net().eval()
    Tex = 16 if case.dynamic else T  # static exports bake T into the graph
    n = 2 if case.dynamic else 1  # torch.export fixes dimensions of size 1
    x = torch.randn((n, Tex, I) if case.batch_first else (Tex, n, I))
    args: tuple = (x,)
    names = ["x"]
    if case.state_input:
        h0 = torch.zeros(case.num_layers, n, H)
        args = (x, (h0, h0.clone())) if case.kind == "LSTM" else (x, h0)
        names = ["x", "h0", "c0"] if case.kind == "LSTM" else ["x", "h0"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case.dynamo:
            shapes = None
            if case.dynamic:
                batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
                shapes = ({0: batch, 1: time} if case.batch_first else {0: time, 1: batch},)
            torch.onnx.export(net, args, str(path), dynamo=True, verbose=False,
                              dynamic_shapes=shapes)
        else:
            dyn = None
            if case.dynamic:
                dyn = {"x": {0: "batch", 1: "time"} if case.batch_first else {0: "time", 1: "batch"}}
                dyn.update({name: {1: "batch"} for name in names[1:]})
            torch.onnx.export(net, args, str(path), dynamo=False, input_names=names,
                              dynamic_axes=dyn, opset_version=case.opset)


def save(model: onnx.ModelProto, path):
    onnx.save(model, str(path))
    return path


def close(a, b, tol: float = TOL) -> None:
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=0, atol=tol)


def err(path, *words, **kw) -> str:
    """sg.load(path, **kw) raises WeightsError naming the file and ``words``."""
    import pytest

    import streamgru as sg

    with pytest.raises(sg.WeightsError) as info:
        sg.load(path, **kw)
    msg = str(info.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def ort_run(path, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


# ----------------------------------------------------------------------------
# hand-built single-node graphs


def rnn_node_model(op: str, rng: np.random.Generator, *, layout: int = 0,
                   attrs: dict | None = None, bias: bool = True, peepholes: bool = False,
                   initial_h: bool = False, initial_c: bool = False, scale: float = 0.5,
                   opset: int = 22, direction: str = "forward", hidden: int = H,
                   inputs: int = I, recurrent_scale: float | None = None,
                   ) -> tuple[onnx.ModelProto, dict]:
    """A graph with one ``op`` node (GRU/LSTM/RNN), X a graph input of shape
    (T, 1, I) (layout 0) or (1, T, I) (layout 1), Y the only output.
    Returns the model and its initializer arrays by name."""
    H, I = hidden, inputs  # noqa: N806 (the spec's names)
    gates = ONNX_NAMES[op]
    nd = 2 if direction == "bidirectional" else 1
    arrays = {
        "W": rng.normal(0, scale, (nd, gates * H, I)).astype(np.float32),
        # R defaults to a mildly contracting size, so float32 comparisons over
        # hundreds of steps measure rounding, not amplified rounding
        "R": rng.normal(0, 1.5 * scale / np.sqrt(H) if recurrent_scale is None else recurrent_scale,
                        (nd, gates * H, H)).astype(np.float32),
    }
    if bias:
        arrays["B"] = rng.normal(0, scale, (nd, 2 * gates * H)).astype(np.float32)
    state_shape = (nd, 1, H) if layout == 0 else (1, nd, H)
    if initial_h:
        arrays["initial_h"] = rng.normal(0, 0.5, state_shape).astype(np.float32)
    if initial_c:
        arrays["initial_c"] = rng.normal(0, 0.5, state_shape).astype(np.float32)
    if peepholes:
        arrays["P"] = rng.normal(0, scale, (nd, 3 * H)).astype(np.float32)
    inputs = ["X", "W", "R", "B" if bias else "", "",
              "initial_h" if initial_h else ""]
    if op == "LSTM":
        inputs += ["initial_c" if initial_c else "", "P" if peepholes else ""]
    while inputs[-1] == "":
        inputs.pop()  # trailing absent optional inputs may be omitted
    node = helper.make_node(op, inputs, ["Y"], name=f"the_{op.lower()}", hidden_size=H,
                            direction=direction, **({"layout": layout} if layout else {}),
                            **(attrs or {}))
    xshape = ["T", 1, I] if layout == 0 else [1, "T", I]
    yshape = ["T", nd, 1, H] if layout == 0 else [1, "T", nd, H]
    graph = helper.make_graph(
        [node], f"{op.lower()}_graph",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, xshape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, yshape)],
        [numpy_helper.from_array(v, k) for k, v in arrays.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model, arrays


def dense_graph(nodes: list, initializers: dict, out_shape: list, opset: int = 17) -> onnx.ModelProto:
    """A graph from input ``X`` (T, 1, I) through ``nodes`` to output ``Y``."""
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", 1, I])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def gru_then(nodes, inits, out_shape, opset=17, rng_seed=0, batch=1):
    """X (T, batch, I) -> GRU -> Squeeze(dir) -> ``nodes`` (consuming 'h') -> Y."""
    model, arrays = rnn_node_model("GRU", np.random.default_rng(rng_seed), opset=opset,
                                   attrs={"linear_before_reset": 1})
    gru = model.graph.node[0]
    gru.output[0] = "Yg"
    if opset >= 13:
        axes = {"dir_axis": np.array([1], np.int64)}
        pre = [helper.make_node("Squeeze", ["Yg", "dir_axis"], ["h"], name="sq")]
    else:  # Squeeze-11: axes is an attribute
        axes = {}
        pre = [helper.make_node("Squeeze", ["Yg"], ["h"], name="sq", axes=[1])]
    inits = {**axes, **inits, **arrays}
    model = dense_graph([gru] + pre + nodes, inits, out_shape, opset=opset)
    if batch != 1:
        model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = batch
    return model


def rng_mat(*shape, seed=0):
    return np.random.default_rng(seed).normal(0, 0.5, shape).astype(np.float32)
