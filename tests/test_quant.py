"""Reduced-precision weights (``Model.quantize``, ``QuantizedWeight`` in the
layers): every kernel path against the float64 reference computed on the
weights dequantized explicitly from their stored values (reference.py), so
the only difference from a float model is the stored rounding; and the
stored form through astype, equality, snapshots, bad input, the native
format and the command line."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
import streamgru as sg
from streamgru.layers.quant import BFLOAT16, QuantizedWeight
from test_gru import run_all_paths

KINDS = ("int8", "float16", "bfloat16")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the kernels and the reference add the same products in other orders (and
# int8 scales the sum instead of each weight): float rounding only
F32_TOL = 2e-5
F64_TOL = 1e-11
# int8 products round their inputs to int16 (kernels/qdot.py; the reference
# rounds the same way): in float32 an input can round one step (its chunk's
# largest value / 32767, about 1e-4 here) the other way from the float64
# reference, which moves an output by that step times one weight
INT8_F32_TOL = 3e-4


def mixed_model(rng, I, H, P, dtype, reset_after=True):
    """GRU, LSTM with a projection (P < H) or without (P = 0), RNN and Dense,
    float64 weights scaled so the cells are not saturated."""
    def w(rows, cols):
        return rng.normal(size=(rows, cols)) / np.sqrt(cols)

    def b(n):
        return rng.normal(size=n) * 0.3

    Hp = P or H
    layers = [
        sg.GRU(w(3 * H, I), w(3 * H, H), b(3 * H), b(3 * H), reset_after=reset_after),
        sg.LSTM(w(4 * H, H), w(4 * H, Hp), b(4 * H), b(4 * H),
                weight_hr=w(P, H) if P else None),
        sg.RNN(w(H, Hp), w(H, H), b(H), b(H)),
        sg.Dense(w(5, H), b(5), "tanh"),
    ]
    return sg.Model(layers, dtype=dtype)


sizes = st.fixed_dictionaries({
    "I": st.integers(1, 9),
    "H": st.integers(1, 70),
    "proj": st.booleans(),
    "T": st.integers(1, 40),
    "n": st.integers(1, 6),
    "reset_after": st.booleans(),
    "seed": st.integers(0, 2**32 - 1),
})


# one test per weight type and dtype: each compiles its own kernels (calls.py),
# so the six run in parallel processes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=6, deadline=None)
@given(c=sizes)
def test_every_path_equals_the_dequantized_reference(kind, dtype, c):
    rng = np.random.default_rng(c["seed"])
    P = max(1, c["H"] // 2) if c["proj"] and c["H"] > 1 else 0
    q = mixed_model(rng, c["I"], c["H"], P, dtype, c["reset_after"]).quantize(kind)
    assert q.weights_dtype == kind and q.dtype == dtype
    assert all(isinstance(l.weight_hr, np.ndarray) for l in q.layers[1:2] if P)  # stays float
    X = rng.normal(size=(c["n"], c["T"], c["I"])).astype(dtype)
    states = rng.uniform(-1, 1, size=(c["n"], q.state_size))
    res = run_all_paths(q, X, states)  # each path, then reference.run_model on q
    y_ref, f_ref = res.pop("reference")
    tol = F64_TOL if dtype == np.float64 else INT8_F32_TOL if kind == "int8" else F32_TOL
    for name, (y, f) in res.items():
        assert y.dtype == dtype, name
        np.testing.assert_allclose(y, y_ref, rtol=0, atol=tol, err_msg=name)
        np.testing.assert_allclose(f, f_ref, rtol=0, atol=tol, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_stored_values_are_what_the_formulas_say(kind):
    w = np.array([[0.5, -1.0, 0.3], [1e-3, 0.0, -2e-3]])
    q = QuantizedWeight.quantize(w, kind)
    d = ref.dequantized(q)
    if kind == "int8":
        assert q.values.dtype == np.int8 and q.scale.dtype == np.float32
        np.testing.assert_array_equal(np.abs(q.values).max(axis=1), 127)  # symmetric, per row
        # round to nearest: within half a step (the float32 scale's own rounding aside)
        assert np.all(np.abs(d - w) <= q.scale[:, None] / 2 * (1 + 1e-6) + np.abs(w) * 1e-7)
    elif kind == "float16":
        np.testing.assert_array_equal(d, w.astype(np.float16))
    else:
        assert q.values.dtype == np.uint16
        np.testing.assert_allclose(d, w, rtol=2 ** -8)
        assert np.all((d.astype(np.float32).view(np.uint32) & 0xFFFF) == 0)
    np.testing.assert_array_equal(q.dequantize(), d)


@pytest.mark.parametrize("kind", KINDS)
def test_import_forms_reorder_rows_with_their_scales(kind):
    """An ONNX GRU/LSTM built from stored weights equals the torch form of
    the same stored rows: gate reordering moves each row's scale with it."""
    rng = np.random.default_rng(3)
    H, I = 4, 3
    W, R = rng.normal(size=(3 * H, I)), rng.normal(size=(3 * H, H))
    onnx = sg.GRU.from_onnx(QuantizedWeight.quantize(W, kind), QuantizedWeight.quantize(R, kind),
                            linear_before_reset=1)
    zrh_to_rzn = np.r_[H : 2 * H, 0:H, 2 * H : 3 * H]
    torch = sg.GRU.from_torch(QuantizedWeight.quantize(W[zrh_to_rzn], kind),
                              QuantizedWeight.quantize(R[zrh_to_rzn], kind))
    assert onnx == torch
    W4, R4 = rng.normal(size=(4 * H, I)), rng.normal(size=(1, 4 * H, H))  # num_directions kept
    lstm = sg.LSTM.from_onnx(QuantizedWeight.quantize(W4, kind), QuantizedWeight.quantize(R4[0], kind))
    iofc_to_ifgo = np.r_[0:H, 2 * H : 3 * H, 3 * H : 4 * H, H : 2 * H]
    np.testing.assert_array_equal(ref.dequantized(lstm.weight_ih),
                                  ref.dequantized(QuantizedWeight.quantize(W4, kind))[iofc_to_ifgo])
    with pytest.raises(sg.WeightsError, match="torch or ONNX form"):
        sg.GRU.from_keras(QuantizedWeight.quantize(W.T, kind), R.T)
    with pytest.raises(sg.WeightsError, match=r"tensor weight_hh: expected shape \(12, 4\)"):
        sg.GRU.from_torch(QuantizedWeight.quantize(W, kind), QuantizedWeight.quantize(R[:, :3], kind))


def test_astype_equality_and_weights_dtype():
    rng = np.random.default_rng(1)
    m = mixed_model(rng, 3, 6, 2, np.float32)
    assert m.weights_dtype == np.float32 and m.astype(np.float64).weights_dtype == np.float64
    q = m.quantize("int8")
    wide = q.astype(np.float64)
    assert wide.dtype == np.float64 and wide.weights_dtype == np.int8
    for a, b in zip(q.layers, wide.layers):
        for name, arr in a.arrays().items():
            if isinstance(arr, QuantizedWeight):  # the stored weights, bit for bit
                got = b.arrays()[name]
                assert got.values.tobytes() == arr.values.tobytes()
                assert got.scale.tobytes() == arr.scale.tobytes()
            else:
                assert b.arrays()[name].dtype == np.float64
    assert q == m.quantize("int8") and q != m and q != m.quantize("float16")
    assert q.quantize("int8") == q  # already int8: kept as stored
    f16 = m.quantize(np.float16)
    assert f16.weights_dtype == np.float16 and f16.weights_dtype == np.dtype("float16")
    bf = m.quantize("bf16")
    assert bf.weights_dtype is BFLOAT16 and bf.weights_dtype == "bfloat16"
    assert bf.weights_dtype.name == "bfloat16" and bf.weights_dtype != np.uint16
    assert bf.weights_dtype != np.float16 and str(bf.weights_dtype) == "bfloat16"


def test_quantize_refusals():
    rng = np.random.default_rng(2)
    m = mixed_model(rng, 3, 5, 0, np.float32)
    for bad in ("int4", "float32", 3, None):
        with pytest.raises(sg.WeightsError, match="int8, float16, bfloat16"):
            m.quantize(bad)
    with pytest.raises(sg.WeightsError, match="already stored as int8"):
        m.quantize("int8").quantize("float16")
    huge = sg.Model([sg.Dense(np.array([[1e5, 1.0]]))])
    with pytest.raises(sg.WeightsError, match="float16's range"):
        huge.quantize("float16")
    assert huge.quantize("bfloat16").weights_dtype == "bfloat16"


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_changes_nothing_and_snapshots_restore(kind):
    rng = np.random.default_rng(4)
    q = mixed_model(rng, 3, 20, 0, np.float32).quantize(kind)
    s, b = q.stream(), q.streams(3)
    X = rng.normal(size=(30, 3)).astype(np.float32)
    s.process(X[:10])
    b.step(X[:3])
    snap, bsnap = s.get_state(), b.get_state()
    bad = X[10:20].copy()
    bad[5, 1] = np.nan
    with pytest.raises(sg.InputError):
        s.process(bad)
    with pytest.raises(sg.InputError):
        s.step(bad[5])
    with pytest.raises(sg.InputError):
        b.step(bad[4:7])
    np.testing.assert_array_equal(s.get_state(), snap)
    np.testing.assert_array_equal(b.get_state(), bsnap)
    y1 = s.process(X[10:])
    s.set_state(snap)
    np.testing.assert_array_equal(s.process(X[10:]), y1)


def test_memory_int8_is_a_quarter_of_float32():
    rng = np.random.default_rng(5)
    m = sg.Model([sg.GRU.from_torch(rng.normal(size=(3 * 256, 32)), rng.normal(size=(3 * 256, 256)))])
    f32 = m.layers[0].weight_ih.nbytes + m.layers[0].weight_hh.nbytes
    for kind, share in (("int8", 0.25), ("float16", 0.5), ("bfloat16", 0.5)):
        q = m.quantize(kind)
        stored = q.layers[0].weight_ih.values.nbytes + q.layers[0].weight_hh.values.nbytes
        assert stored == f32 * share
        # the packed plan the kernels read: weights as stored, scales and biases aside
        ratio = q._plan().w.nbytes / m._plan().w.nbytes
        assert share <= ratio < share + 0.03, (kind, ratio)
        assert q.weights_nbytes < m.weights_nbytes * (share + 0.03)


def test_a_quantized_model_runs_its_own_kernels():
    """A GRU int8 + Dense int8 model's layers have kind codes of their own,
    and its stream wires the int8 kernels' C functions (calls.py) into the
    table for them, not the float ones."""
    from streamgru.kernels import calls, kinds
    from streamgru.kernels.layout import FN_SEQ, KIND_DENSE, KIND_GRU, WQ_INT8, WQ_SHIFT

    rng = np.random.default_rng(6)
    m = sg.Model([sg.GRU.from_torch(rng.normal(size=(12, 2)), rng.normal(size=(12, 4))),
                  sg.Dense(rng.normal(size=(2, 4)))]).quantize("int8")
    codes = set(m._plan().meta[calls.HEADER + calls.ROW * np.arange(2) + calls.M_KIND].tolist())
    assert codes == {KIND_GRU | WQ_INT8 << WQ_SHIFT, KIND_DENSE | WQ_INT8 << WQ_SHIFT}
    m.stream()
    dt = np.dtype(m.dtype)
    for code in codes:
        kernel, names = kinds.kernel_of(code, FN_SEQ)
        assert kernel.py_func.__qualname__.endswith("_q1"), kernel.py_func.__qualname__
        assert calls.TABLE[dt][2 * code + FN_SEQ] == calls._funcs[dt, kernel, names].address
        float_kernel = kinds.kernel_of(code & 0xFF, FN_SEQ)[0]
        assert float_kernel is not kernel


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("kind", KINDS)
def test_native_round_trip_is_bit_exact(tmp_path, suffix, kind):
    rng = np.random.default_rng(7)
    q = mixed_model(rng, 3, 9, 4, np.float64).quantize(kind)
    path = tmp_path / f"q{suffix}"
    sg.save(q, path)
    back = sg.load(path)
    assert back == q and back.weights_dtype == kind and back.dtype == np.float64
    for a, b in zip(q.layers, back.layers):
        for name, arr in a.arrays().items():
            got = b.arrays()[name]
            if isinstance(arr, QuantizedWeight):
                assert got.kind == arr.kind and got.values.tobytes() == arr.values.tobytes()
                assert (got.scale is None) == (arr.scale is None)
                assert got.scale is None or got.scale.tobytes() == arr.scale.tobytes()
            else:
                assert got.tobytes() == arr.tobytes()
    X = rng.normal(size=(25, 3))
    np.testing.assert_array_equal(back.stream().process(X), q.stream().process(X))


def _rewrite_npz(src, dst, edit):
    """Copy the native .npz ``src`` to ``dst`` with ``edit(desc, arrays)`` applied."""
    import json

    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files}
    desc = json.loads(arrays.pop("__streamgru__").tobytes())
    edit(desc, arrays)
    arrays["__streamgru__"] = np.frombuffer(json.dumps(desc).encode(), np.uint8)
    np.savez(dst, **arrays)


@pytest.mark.parametrize("edit, message", [
    (lambda d, a: a.pop("layers.0.weight_ih.scale"), r"tensor layers\.0\.weight_ih\.scale is missing"),
    (lambda d, a: a.update({"layers.0.weight_ih.scale": a["layers.0.weight_ih.scale"][:-1]}),
     r"tensor layers\.0\.weight_ih: int8 weights: expected 18 scales"),
    (lambda d, a: a.update({"layers.0.weight_ih.scale": -a["layers.0.weight_ih.scale"]}),
     r"tensor layers\.0\.weight_ih: .*positive"),
    (lambda d, a: a.update({"layers.0.weight_ih": a["layers.0.weight_ih"].astype(np.float32)}),
     r"tensor layers\.0\.weight_ih: int8 weights: expected values of dtype int8"),
    (lambda d, a: a.update({"layers.0.weight_hh": a["layers.0.weight_hh"][:, :2]}),
     r"tensor weight_hh: expected shape \(18, 6\)"),
    (lambda d, a: d["layers"][0]["quantized"].update(weight_ih="int4"),
     r"tensor layers\.0\.weight_ih: weight type must be one of int8"),
    (lambda d, a: d["layers"][0].update(quantized={"bias_hx": "int8"}),
     r"layer 0: malformed description \(quantized"),
])
def test_bad_quantized_tensors_are_weights_errors(tmp_path, edit, message):
    rng = np.random.default_rng(8)
    q = sg.Model([sg.GRU.from_torch(rng.normal(size=(18, 3)), rng.normal(size=(18, 6)))]).quantize("int8")
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    sg.save(q, good)
    _rewrite_npz(good, bad, edit)
    with pytest.raises(sg.WeightsError, match=message) as info:
        sg.load(bad)
    assert str(bad) in str(info.value)


def test_bfloat16_safetensors_keeps_its_standard_dtype(tmp_path):
    import json
    import struct

    rng = np.random.default_rng(9)
    q = sg.Model([sg.Dense(rng.normal(size=(3, 4)))]).quantize("bfloat16")
    path = tmp_path / "q.safetensors"
    sg.save(q, path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    assert header["layers.0.weight"]["dtype"] == "BF16"
    assert json.loads(header["__metadata__"]["streamgru"])["version"] == 3


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "streamgru", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_cli_convert_info_and_bench(tmp_path):
    src = os.path.join(ROOT, "weights", "watch_gru.onnx")
    dst = tmp_path / "q.npz"
    r = _cli("convert", src, str(dst), "--weights", "int8")
    assert r.returncode == 0, r.stderr
    assert "weights int8" in r.stdout
    assert sg.load(dst) == sg.load(src).quantize("int8")
    r = _cli("info", str(dst))
    assert r.returncode == 0, r.stderr
    assert re.search(r"weights: +int8, [\d,]+ bytes \(in float32: [\d,]+\)", r.stdout)
    assert re.search(r"GRU +6 -> 48 .*weights int8", r.stdout)
    r = _cli("bench", str(dst), "--steps", "200", "--repeats", "2", "--chunk", "50")
    assert r.returncode == 0, r.stderr
    assert "weights int8" in r.stdout and re.search(r"step: +p50 [\d.]+ us", r.stdout)
    r = _cli("convert", str(dst), str(tmp_path / "again.npz"), "--weights", "float16")
    assert r.returncode == 1 and "already stored as int8" in r.stderr
    r = _cli("convert", src, str(tmp_path / "x.npz"), "--weights", "int4")
    assert r.returncode == 2 and "int8" in r.stderr
