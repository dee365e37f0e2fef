"""ONNX import: the ops exporters write around the recurrent nodes (Dense-like,
element-wise, activations, axis moves, GELU's erf form), streamed against
ONNX Runtime; the input/output options."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import helper  # noqa: E402

import streamgru as sg  # noqa: E402
from onnx_models import H, I, O, T, close, err, gru_then, ort_run, rng_mat, save  # noqa: E402


# ----------------------------------------------------------------------------
# the ops around the recurrent nodes


HEADS = {
    "matmul_add_leakyrelu": ([
        helper.make_node("MatMul", ["h", "Wt"], ["a"], name="mm"),
        helper.make_node("Add", ["a", "b"], ["c"], name="add"),
        helper.make_node("LeakyRelu", ["c"], ["Y"], name="lrelu", alpha=0.2),
    ], {"Wt": rng_mat(H, O), "b": rng_mat(O)}, 17),
    "gemm_softmax_after_flatten": ([
        helper.make_node("Flatten", ["h"], ["f"], name="flat", axis=2),
        helper.make_node("Gemm", ["f", "Wg", "bg"], ["g"], name="gemm", transB=1, alpha=0.7, beta=1.3),
        helper.make_node("Softmax", ["g"], ["Y"], name="sm", axis=1),
    ], {"Wg": rng_mat(O, H), "bg": rng_mat(O)}, 17),
    "affine_by_constants_then_elu": ([
        helper.make_node("Mul", ["h", "scale"], ["m"], name="mul"),
        helper.make_node("Sub", ["m", "shift"], ["s"], name="sub"),
        helper.make_node("Div", ["s", "two"], ["d"], name="div"),
        helper.make_node("Elu", ["d"], ["e"], name="elu", alpha=0.5),
        helper.make_node("Sub", ["one", "e"], ["Y"], name="rsub"),
    ], {"scale": rng_mat(H), "shift": rng_mat(1, 1, H), "two": np.float32(2.0),
        "one": np.float32(1.0)}, 17),
    "transpose_reshape_gelu_logsoftmax": ([
        helper.make_node("Transpose", ["h"], ["tr"], name="tr", perm=[1, 0, 2]),
        helper.make_node("Reshape", ["tr", "shape"], ["rs"], name="rs"),
        helper.make_node("Gelu", ["rs"], ["ge"], name="gelu"),
        helper.make_node("Dropout", ["ge"], ["dr"], name="drop"),
        helper.make_node("Identity", ["dr"], ["id"], name="ident"),
        helper.make_node("MatMul", ["id", "Wt"], ["mm"], name="mm"),
        helper.make_node("LogSoftmax", ["mm"], ["Y"], name="lsm", axis=-1),
    ], {"shape": np.array([0, -1, H], np.int64), "Wt": rng_mat(H, O)}, 20),
    "select_features_hardsigmoid": ([
        helper.make_node("Slice", ["h", "st", "en", "ax"], ["sl"], name="slice"),
        helper.make_node("Gather", ["sl", "idx"], ["ga"], name="gather", axis=2),
        helper.make_node("HardSigmoid", ["ga"], ["Y"], name="hs", alpha=0.3, beta=0.6),
    ], {"st": np.array([1], np.int64), "en": np.array([9], np.int64), "ax": np.array([2], np.int64),
        "idx": np.array([0, 5, 2], np.int64)}, 17),
    "last_step_unsqueeze_sigmoid": ([
        helper.make_node("Gather", ["h", "minus1"], ["last"], name="take_last", axis=0),
        helper.make_node("Unsqueeze", ["last", "ax0"], ["u"], name="unsq"),
        helper.make_node("Neg", ["u"], ["ng"], name="neg"),
        helper.make_node("Sigmoid", ["ng"], ["Y"], name="sig"),
    ], {"minus1": np.array(-1, np.int64), "ax0": np.array([0], np.int64)}, 17),
}


HEADS["gelu_erf_form_half_first"] = ([
    helper.make_node("MatMul", ["h", "Wt"], ["x"], name="mm"),
    helper.make_node("Mul", ["x", "half"], ["hx"], name="half_x"),
    helper.make_node("Div", ["x", "sqrt2"], ["e"], name="div"),
    helper.make_node("Erf", ["e"], ["erf"], name="erf"),
    helper.make_node("Add", ["one", "erf"], ["p"], name="plus1"),
    helper.make_node("Mul", ["hx", "p"], ["Y"], name="gelu"),
], {"Wt": rng_mat(H, O), "half": np.float32(0.5), "sqrt2": np.float32(np.sqrt(2)),
    "one": np.float32(1.0)}, 17)
HEADS["scaled_gelu_erf_form"] = ([  # h * (1 + erf(h / 3)) = 3 sqrt(2) gelu(sqrt(2) h / 3)
    helper.make_node("Div", ["h", "three"], ["e"], name="div3"),
    helper.make_node("Erf", ["e"], ["erf"], name="erf"),
    helper.make_node("Add", ["erf", "one"], ["p"], name="plus1"),
    helper.make_node("Mul", ["h", "p"], ["Y"], name="scaled_gelu"),
], {"one": np.float32(1.0), "three": np.float32(3.0)}, 17)
HEADS["regression_output_squeezed"] = ([  # fc(y).squeeze(-1) with one output
    helper.make_node("MatMul", ["h", "w1"], ["r"], name="mm"),
    helper.make_node("Squeeze", ["r", "last"], ["Y"], name="squeeze_features"),
], {"w1": rng_mat(H, 1), "last": np.array([-1], np.int64)}, 17)
HEADS["regression_output_reshaped_flat"] = ([  # fc(y).reshape(-1) with one output
    helper.make_node("MatMul", ["h", "w1"], ["r"], name="mm"),
    helper.make_node("Reshape", ["r", "flat"], ["Y"], name="flatten_all"),
], {"w1": rng_mat(H, 1), "flat": np.array([-1], np.int64)}, 17)
HEADS["merge_time_and_batch_for_gemm_then_split"] = ([
    helper.make_node("Reshape", ["h", "flat_shape"], ["flat"], name="merge"),
    helper.make_node("Gemm", ["flat", "Wg", "bg"], ["g"], name="gemm", transB=1),
    helper.make_node("Shape", ["h"], ["sh"], name="shape"),
    helper.make_node("Slice", ["sh", "zero", "two"], ["tn"], name="first_two"),
    helper.make_node("Concat", ["tn", "o"], ["tno"], name="cat", axis=0),
    helper.make_node("Reshape", ["g", "tno"], ["Y"], name="split"),
], {"flat_shape": np.array([-1, H], np.int64), "Wg": rng_mat(O, H), "bg": rng_mat(O),
    "zero": np.array([0], np.int64), "two": np.array([2], np.int64),
    "o": np.array([O], np.int64)}, 17)


@pytest.mark.parametrize("name", list(HEADS))
def test_graph_ops_around_the_rnn(tmp_path, name):
    nodes, inits, opset = HEADS[name]
    # a symbolic batch axis, so reshapes must follow time and batch separately
    model = gru_then(nodes, inits, None, opset=opset, batch="N")
    path = save(model, tmp_path / f"{name}.onnx")
    X = np.random.default_rng(8).normal(size=(T, I)).astype(np.float32)
    ref = ort_run(path, {"X": X[:, None]})[0]
    m = sg.load(path)
    Y = m.stream().process(X)
    if name.startswith("last_step"):
        assert m.metadata["many_to_one"]
        close(Y[-1], ref.reshape(-1))
    else:
        close(Y, ref.reshape(T, -1))
    assert m.layers[0].kind == "gru"


def test_input_and_output_options(tmp_path):
    model = gru_then([helper.make_node("Relu", ["h"], ["Y"], name="relu")], {}, None)
    path = save(model, tmp_path / "g.onnx")
    m = sg.load(path, input="X", output="Y")
    assert (m.metadata["input"], m.metadata["output"]) == ("X", "Y")
    err(path, "no graph input named 'x'", input="x")
    err(path, "no graph output named 'Z'", output="Z")
