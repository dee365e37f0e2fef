"""Hostile ONNX files, each built here with onnx.helper (a few hundred
bytes): every one is refused with a WeightsError naming the file and the
node (name and op type) or tensor, before it allocates or works beyond the
load's budget: quickly, within a small peak of memory, and without taking
the process down (the abort-prone ones run in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import tracemalloc

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import streamgru as sg  # noqa: E402
from onnx_models import H, I, gru_then, ort_run, rng_mat, rnn_node_model, save  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def refused(path, *words, peak_mb=40, seconds=15, **kw):
    """sg.load(path) raises WeightsError naming the file and ``words``,
    within ``seconds`` and a tracemalloc peak of ``peak_mb``."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(sg.WeightsError) as info:
            sg.load(path, **kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    took = time.perf_counter() - t0
    msg = str(info.value)
    assert not isinstance(info.value, sg.formats.UnexpectedReaderError), msg
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    assert peak < peak_mb * 2**20, f"peak {peak / 2**20:.1f} MiB: {msg}"
    assert took < seconds, f"{took:.1f} s: {msg}"
    return msg


def in_subprocess(path, timeout=60):
    """Load ``path`` in a fresh interpreter (an abort or hang cannot take the
    test run down); returns (exception type, message, peak RSS in MiB)."""
    code = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {ROOT!r})
        import streamgru as sg
        try:
            sg.load({str(path)!r})
            print("LOADED")
        except Exception as exc:
            print(type(exc).__name__)
            print(str(exc).replace("\\n", " "))
        # VmHWM: this process's own peak (ru_maxrss would count the pytest process
        # it was forked from: Linux carries the pre-exec peak over)
        try:
            hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
            print(int(hwm[0].split()[1]) // 1024)
        except (OSError, IndexError):
            print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"
    kind, msg, rss = out.stdout.strip().split("\n")[-3:]
    return kind, msg, int(rss)


def graph_model(nodes, inits, inputs, opset=17, functions=(), extra_opsets=()):
    graph = helper.make_graph(nodes, "hostile", inputs,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, functions=list(functions), opset_imports=[
        helper.make_opsetid("", opset), *[helper.make_opsetid(d, 1) for d in extra_opsets]])
    model.ir_version = 8
    return model


X_IN = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", 1, I])


# ----------------------------------------------------------------------------
# graph size after inlining local functions


def _doubling_functions(levels):
    """f0(x) = Relu(x); fk(x) = f(k-1)(f(k-1)(x)): 2**levels nodes once inlined."""
    funcs = [helper.make_function("local", "f0", ["x"], ["y"],
                                  [helper.make_node("Relu", ["x"], ["y"])],
                                  [helper.make_opsetid("", 17)])]
    for k in range(1, levels + 1):
        funcs.append(helper.make_function("local", f"f{k}", ["x"], ["y"], [
            helper.make_node(f"f{k - 1}", ["x"], ["a"], domain="local"),
            helper.make_node(f"f{k - 1}", ["a"], ["y"], domain="local"),
        ], [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]))
    return funcs


def test_local_functions_doubling_at_each_level_are_refused_before_inlining(tmp_path):
    node = helper.make_node("f40", ["X"], ["Y"], name="top", domain="local")
    path = save(graph_model([node], {}, [X_IN], functions=_doubling_functions(40),
                            extra_opsets=["local"]), tmp_path / "doubling.onnx")
    assert os.path.getsize(path) < 8000
    kind, msg, rss = in_subprocess(path)
    assert kind == "WeightsError", msg
    assert str(path) in msg and "node 'top' (f40)" in msg and "1,099,511,627,776 nodes" in msg, msg
    assert "steps of work" in msg  # the limit
    assert rss < 1024, rss
    refused(path, "node 'top' (f40)")  # and in this process, quickly and small


def test_recursive_local_function_is_refused(tmp_path):
    f = helper.make_function("local", "loop", ["x"], ["y"],
                             [helper.make_node("loop", ["x"], ["y"], domain="local")],
                             [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    node = helper.make_node("loop", ["X"], ["Y"], name="top", domain="local")
    path = save(graph_model([node], {}, [X_IN], functions=[f], extra_opsets=["local"]),
                tmp_path / "recursive.onnx")
    kind, msg, _ = in_subprocess(path)
    assert kind == "WeightsError" and "calls itself" in msg and str(path) in msg, msg


def test_a_small_local_function_is_still_inlined(tmp_path):
    """The size check lets ordinary functions through: f(h) = tanh(h @ W)."""
    f = helper.make_function("local", "head", ["x", "w"], ["y"], [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Tanh", ["m"], ["y"])], [helper.make_opsetid("", 17)])
    nodes = [helper.make_node("head", ["h", "w"], ["Y"], name="call", domain="local")]
    model = gru_then(nodes, {"w": rng_mat(H, 3)}, None)
    model.functions.append(f)
    model.opset_import.append(helper.make_opsetid("local", 1))
    path = save(model, tmp_path / "function.onnx")
    m = sg.load(path)
    X = np.random.default_rng(0).normal(size=(1000, I)).astype(np.float32)
    ref = ort_run(path, {"X": X[:, None]})[0].reshape(1000, -1)
    np.testing.assert_allclose(m.stream().process(X), ref, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------
# constant folding: output sizes before evaluation


def _gru_plus(nodes, inits, name):
    """GRU -> h; Y = h + (the constant ``nodes`` build into 'c')."""
    return gru_then(nodes + [helper.make_node("Add", ["h", "c"], ["Y"], name="add_c")], inits, None)


@pytest.mark.parametrize("case", ["random_normal", "outer_product", "constant_of_shape",
                                  "expand", "tile"])
def test_folding_a_huge_constant_is_refused_before_it_is_built(tmp_path, case):
    n = 20000
    builders = {
        "random_normal": ([helper.make_node("RandomNormal", [], ["c"], name="noise",
                                            shape=[n, n], dtype=TensorProto.FLOAT)], {},
                          "'noise' (RandomNormal)"),
        "outer_product": ([
            helper.make_node("ConstantOfShape", ["col"], ["a"], name="ones_col",
                             value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
            helper.make_node("ConstantOfShape", ["row"], ["b"], name="ones_row",
                             value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
            helper.make_node("Mul", ["a", "b"], ["c"], name="outer")],
            {"col": np.array([n, 1], np.int64), "row": np.array([1, n], np.int64)},
            "'outer' (Mul)"),
        "constant_of_shape": ([helper.make_node("ConstantOfShape", ["shape"], ["c"], name="zeros")],
                              {"shape": np.array([2**40, 2**40], np.int64)},
                              "'zeros' (ConstantOfShape)"),
        "expand": ([helper.make_node("Expand", ["one", "shape"], ["c"], name="expand")],
                   {"one": np.float32(1), "shape": np.array([2**31, 2**31, H], np.int64)},
                   "'expand' (Expand)"),
        "tile": ([helper.make_node("Tile", ["two", "reps"], ["c"], name="tile")],
                 {"two": np.ones((1, 2), np.float32), "reps": np.array([10**9, 10**9], np.int64)},
                 "'tile' (Tile)"),
    }
    nodes, inits, where = builders[case]
    path = save(_gru_plus(nodes, inits, case), tmp_path / f"{case}.onnx")
    refused(path, where, "budget of")


def test_folding_a_matmul_of_two_moderate_constants_is_bounded_in_work(tmp_path):
    """Neither 2500 x 2500 operand is large, their product is 15.6 G
    multiply-adds: refused on work before it runs."""
    n = 2500
    ones = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    nodes = [helper.make_node("ConstantOfShape", ["sq"], ["a"], name="a", value=ones),
             helper.make_node("MatMul", ["a", "a"], ["aa"], name="square_it"),
             helper.make_node("ReduceMax", ["aa"], ["c"], name="max", keepdims=0)]
    path = save(_gru_plus(nodes, {"sq": np.array([n, n], np.int64)}, "mm"), tmp_path / "mm.onnx")
    refused(path, "'square_it' (MatMul)", "steps of work", peak_mb=80, seconds=10)


def test_symbolic_shape_products_do_not_grow_without_bound(tmp_path):
    """Shape(h)[0:2] squared by 60 Mul nodes would name a product of 2**61
    unknown sizes; past a few factors it is simply unknown."""
    nodes = [helper.make_node("Shape", ["h"], ["s0"], name="shape"),
             helper.make_node("Slice", ["s0", "zero", "two"], ["d0"], name="tn")]
    for k in range(60):
        nodes.append(helper.make_node("Mul", [f"d{k}", f"d{k}"], [f"d{k + 1}"], name=f"sq{k}"))
    nodes.append(helper.make_node("Identity", ["h"], ["Y"], name="out"))
    model = gru_then(nodes, {"zero": np.array([0], np.int64), "two": np.array([2], np.int64)},
                     None, batch="N")
    path = save(model, tmp_path / "products.onnx")
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        m = sg.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert m.output_size == H and time.perf_counter() - t0 < 10 and peak < 40 * 2**20


@pytest.mark.parametrize("delta", [1e-320, 0.0])
def test_range_with_no_finite_length_is_refused(tmp_path, delta):
    nodes = [helper.make_node("Range", ["start", "limit", "delta"], ["c"], name="range")]
    inits = {"start": np.float64(0), "limit": np.float64(1), "delta": np.float64(delta)}
    path = save(_gru_plus(nodes, inits, "range"), tmp_path / "range.onnx")
    refused(path, "'range' (Range)")


# ----------------------------------------------------------------------------
# activations and scales on a wide input: no N x N identity weight


@pytest.mark.parametrize("op", ["Relu", "Mul"])
def test_activation_on_a_wide_input_does_not_build_an_identity_matrix(tmp_path, op):
    n = 20000
    wide = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", 1, n])
    node = (helper.make_node("Relu", ["X"], ["Y"], name="act") if op == "Relu"
            else helper.make_node("Mul", ["X", "two"], ["Y"], name="act"))
    path = save(graph_model([node], {"two": np.float32(2)} if op == "Mul" else {}, [wide]),
                tmp_path / f"wide_{op}.onnx")
    assert os.path.getsize(path) < 200
    refused(path, f"'act' ({op})", f"{n}x{n} Dense", "budget of")
    # the same graph on a narrow input loads, and matches ONNX Runtime
    narrow = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", 1, 16])
    path = save(graph_model([node], {"two": np.float32(2)} if op == "Mul" else {}, [narrow]),
                tmp_path / f"narrow_{op}.onnx")
    X = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32)
    np.testing.assert_allclose(sg.load(path).stream().process(X),
                               ort_run(path, {"X": X[:, None]})[0][:, 0], rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------
# loops


def _loop_model(trips, body_nodes, cond=True):
    """c = Loop(trips, cond, v0=1.0) with ``body_nodes`` (v -> v_out, cond_in ->
    cond_out); Y = h * c."""
    body = helper.make_graph(body_nodes, "body", [
        helper.make_tensor_value_info("i", TensorProto.INT64, []),
        helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
        helper.make_tensor_value_info("v", TensorProto.FLOAT, [])], [
        helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
        helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [])])
    inputs = ["trips" if trips is not None else "", "cond", "v0"]
    nodes = [helper.make_node("Loop", inputs, ["c"], name="loop", body=body),
             helper.make_node("Mul", ["h", "c"], ["Y"], name="scale")]
    inits = {"cond": np.array(cond), "v0": np.float32(1.0)}
    if trips is not None:
        inits["trips"] = np.array(trips, np.int64)
    return gru_then(nodes, inits, None)


_HALVE = [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
          helper.make_node("Mul", ["v", "half"], ["v_out"], name="halve")]


def test_loop_of_10_to_the_12_trips_is_refused_before_it_runs(tmp_path):
    model = _loop_model(10**12, _HALVE)
    model.graph.initializer.append(numpy_helper.from_array(np.float32(0.5), "half"))
    path = save(model, tmp_path / "long_loop.onnx")
    refused(path, "'loop' (Loop)", "1,000,000,000,000 trips", "steps of work", seconds=5)


def test_loop_without_a_trip_count_that_never_ends_is_stopped(tmp_path):
    model = _loop_model(None, _HALVE)
    model.graph.initializer.append(numpy_helper.from_array(np.float32(0.5), "half"))
    path = save(model, tmp_path / "endless_loop.onnx")
    refused(path, "'loop' (Loop)", "steps of work", seconds=30)


def test_a_short_loop_on_constants_is_folded(tmp_path):
    """Three trips of v *= 0.5: Y = h * 0.125, as ONNX Runtime computes it."""
    model = _loop_model(3, _HALVE)
    model.graph.initializer.append(numpy_helper.from_array(np.float32(0.5), "half"))
    path = save(model, tmp_path / "short_loop.onnx")
    X = np.random.default_rng(1).normal(size=(1000, I)).astype(np.float32)
    ref = ort_run(path, {"X": X[:, None]})[0].reshape(1000, -1)
    np.testing.assert_allclose(sg.load(path).stream().process(X), ref, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------
# odd values caught where they are read


@pytest.mark.parametrize("op", ["Unsqueeze", "Reshape"])
def test_non_integer_axes_or_shape_are_refused(tmp_path, op):
    if op == "Unsqueeze":
        nodes = [helper.make_node("Unsqueeze", ["h", "bad"], ["Y"], name="odd")]
        bad = np.array([np.inf], np.float32)
    else:
        nodes = [helper.make_node("Reshape", ["h", "bad"], ["Y"], name="odd")]
        bad = np.array([0, np.inf, H], np.float32)
    path = save(gru_then(nodes, {"bad": bad}, None), tmp_path / f"inf_{op}.onnx")
    refused(path, f"'odd' ({op})", "integers")


@pytest.mark.parametrize("after_dense", [False, True])
def test_non_finite_weight_names_the_file_and_node(tmp_path, after_dense):
    nodes = ([helper.make_node("MatMul", ["h", "w"], ["m"], name="mm")] if after_dense else [])
    nodes.append(helper.make_node("Mul", ["m" if after_dense else "h", "inf"], ["Y"],
                                  name="times_inf"))
    inits = {"inf": np.float32(np.inf), **({"w": rng_mat(H, 3)} if after_dense else {})}
    path = save(gru_then(nodes, inits, None), tmp_path / "inf_scale.onnx")
    refused(path, "'times_inf' (Mul)", "non-finite")


# ----------------------------------------------------------------------------
# tensors and external data


def _external_w(tmp_path, dims, length=None):
    model, _ = rnn_node_model("GRU", np.random.default_rng(0))
    w = next(t for t in model.graph.initializer if t.name == "W")
    w.ClearField("raw_data")
    del w.dims[:]
    w.dims.extend(dims)
    w.data_location = TensorProto.EXTERNAL
    nbytes = 4 * int(np.prod(np.array(dims, dtype=object)))
    for k, v in (("location", "w.bin"), ("offset", "0"), ("length", str(length or nbytes))):
        e = w.external_data.add()
        e.key, e.value = k, v
    return model


@pytest.mark.parametrize("dims", [[10**7, 10**7, 10**7], [10**6, 10**6, 10**6]])
def test_external_data_of_absurd_size_is_refused_before_reading(tmp_path, dims):
    (tmp_path / "w.bin").write_bytes(b"\0" * 64)
    path = save(_external_w(tmp_path, dims), tmp_path / "huge_ext.onnx")
    refused(path, "'W'", "external data 'w.bin'", "64")


def test_initializer_of_absurd_size_is_refused(tmp_path):
    model, _ = rnn_node_model("GRU", np.random.default_rng(0))
    w = next(t for t in model.graph.initializer if t.name == "W")
    del w.dims[:]
    w.dims.extend([10**7, 10**7, 10**7])
    refused(save(model, tmp_path / "huge_init.onnx"), "'W'", "bytes")


def test_external_data_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "w.bin")
    model, arrays = rnn_node_model("GRU", np.random.default_rng(0))
    path = save(_external_w(tmp_path, list(arrays["W"].shape)), tmp_path / "fifo.onnx")
    kind, msg, _ = in_subprocess(path, timeout=60)  # a regression would block forever
    assert kind == "WeightsError" and "FIFO" in msg and "'W'" in msg and str(path) in msg, msg
    refused(path, "'W'", "FIFO")


def test_a_constant_node_without_outputs_is_refused(tmp_path):
    # (found by tools/fuzz.py from the branches seed: an IndexError while
    # the feature size was looked up)
    g = helper.make_graph(
        [helper.make_node("Constant", [], [], value=numpy_helper.from_array(np.ones(2, np.float32))),
         helper.make_node("Relu", ["X"], ["Y"])], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, "C", "T"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, "C", "T"])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    refused(save(model, tmp_path / "constant.onnx"))
