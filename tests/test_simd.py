"""The panel products in kernels/simd.py against plain numpy matrix products."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from streamgru.kernels import simd

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-5, np.float64: 1e-13}


def test_pack_panels_layout():
    """Blocks of L columns, groups of up to four blocks stored row by row,
    zero columns padding the last block."""
    L = simd.lanes(np.float32)
    nr, nc = 3, 5 * L + 3  # one group of four blocks and a group of two
    wt = np.arange(nr * nc, dtype=np.float64).reshape(nr, nc)
    flat = simd.pack_panels(wt, np.float32)
    ncp = simd.padded(nc, np.float32)
    assert ncp == 6 * L and flat.size == nr * ncp
    first = flat[: nr * 4 * L].reshape(nr, 4 * L)
    np.testing.assert_array_equal(first, wt[:, : 4 * L])
    rest = flat[nr * 4 * L :].reshape(nr, 2 * L)
    np.testing.assert_array_equal(rest[:, :L + 3], wt[:, 4 * L :])
    assert not rest[:, L + 3 :].any()


def _operands(rng, wt, rows, dtype, rounded=lambda v: v):
    """Padded width, row stride of acc (rows further apart than one row),
    inputs V (rows, nr + 2; row r's vector at 1), acc (outputs at 3 + r *
    stride) and the float64 acc + rounded(V) W^T a product must give."""
    nr, nc = wt.shape
    ncp = simd.padded(nc, dtype)
    stride = ncp + simd.lanes(dtype)
    V = rng.normal(size=(rows, nr + 2)).astype(dtype)
    acc0 = rng.normal(size=rows * stride + 3).astype(dtype)
    want = acc0.astype(np.float64).copy()
    for r in range(rows):
        o = 3 + r * stride
        want[o : o + nc] += rounded(V[r, 1 : 1 + nr].astype(np.float64)) @ wt
    return ncp, stride, V, acc0, want


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(nr=st.integers(1, 70), nc=st.integers(1, 200), rows=st.integers(1, 11),
       seed=st.integers(0, 2**32 - 1))
def test_products_match_numpy(dtype, nr, nc, rows, seed):
    rng = np.random.default_rng(seed)
    wt = rng.normal(size=(nr, nc))
    w = np.concatenate([rng.normal(size=5), simd.pack_panels(wt, dtype)]).astype(dtype)
    ncp, stride, V, acc0, want = _operands(rng, wt, rows, dtype)

    acc = acc0.copy()
    simd.gemm(acc, 3, stride, V.reshape(-1), 1, nr + 2, w, 5, nr, ncp, rows)
    scale = 1 + np.abs(want).max()
    assert np.abs(acc - want).max() <= TOL[dtype] * scale * nr
    # the padded columns see zero weights: they keep their values
    for r in range(rows):
        o = 3 + r * stride
        np.testing.assert_array_equal(acc[o + nc : o + ncp], acc0[o + nc : o + ncp])
    # everything outside the rows' outputs is untouched
    mask = np.ones(acc.size, bool)
    for r in range(rows):
        mask[3 + r * stride : 3 + r * stride + ncp] = False
    np.testing.assert_array_equal(acc[mask], acc0[mask])

    one = acc0.copy()
    simd.gemv(one, 3, V[0], 1, w, 5, nr, ncp)
    # one vector sums even and odd rows apart (a shorter FMA chain): the
    # same products, rounded in another order
    assert np.abs(one[3 : 3 + nc] - want[3 : 3 + nc]).max() <= TOL[dtype] * scale * nr
    np.testing.assert_array_equal(one[3 + nc : 3 + ncp], acc0[3 + nc : 3 + ncp])
    np.testing.assert_array_equal(one[3 + ncp :], acc0[3 + ncp :])
    np.testing.assert_array_equal(one[:3], acc0[:3])
    # the same sums visited group by group from the end: bit for bit the same
    back = acc0.copy()
    simd.gemv_backward(back, 3, V[0], 1, w, 5, nr, ncp)
    np.testing.assert_array_equal(back, one)


def _stored_plan(rng, nr, nc, kind, dtype):
    """A ``w`` holding, after 5 float values, the W^T (nr, nc) of a random
    weight of ``kind`` packed the way the plan packs it (int8 scales, padded
    to the panel's width, just before the panel's bytes); the panel offset;
    and the matrix it stands for, dequantized by the formula."""
    from streamgru.layers.quant import QuantizedWeight

    q = QuantizedWeight.quantize(rng.normal(size=(nc, nr)), kind)  # (out, in)
    ncp = simd.padded(nc, dtype)
    L = simd.lanes(dtype)
    vt = np.zeros((nr, ncp), q.values.dtype)
    vt[:, :nc] = q.values.T
    parts = [rng.normal(size=5 + (-5 % L))]
    if kind == "int8":
        scale = np.zeros(ncp)
        scale[:nc] = q.scale
        parts.append(scale)
    w0 = sum(p.size for p in parts)
    parts = [p.astype(dtype) for p in parts] + [simd.pack_stored(vt, dtype)]
    if kind == "int8":
        deq = q.scale.astype(np.float64)[:, None] * q.values.astype(np.float64)
    elif kind == "float16":
        deq = q.values.astype(np.float64)
    else:
        deq = (q.values.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return np.concatenate(parts), w0, deq.T


@pytest.mark.parametrize("kind", ["int8", "float16", "bfloat16"])
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=25, deadline=None)
@given(nr=st.integers(1, 70), nc=st.integers(1, 150), rows=st.integers(1, 9),
       seed=st.integers(0, 2**32 - 1))
def test_stored_products_match_numpy_on_the_dequantized_matrix(kind, dtype, nr, nc, rows, seed):
    from streamgru.kernels.layout import WQ_CODES

    q = WQ_CODES[kind]
    rng = np.random.default_rng(seed)
    w, w0, wt = _stored_plan(rng, nr, nc, kind, dtype)
    # int8 products round each input vector to int16 (kernels/qdot.py), in the model's dtype
    ncp, stride, V, acc0, want = _operands(
        rng, wt, rows, dtype,
        (lambda v: ref.int16_rounded(v, dtype=dtype)) if kind == "int8" else (lambda v: v))
    scale = (1 + np.abs(want).max()) * TOL[dtype] * nr
    acc = acc0.copy()
    _qgemm(q, acc, 3, stride, V.reshape(-1), 1, nr + 2, w, w0, nr, ncp, rows)
    assert np.abs(acc - want).max() <= scale
    for r in range(rows):  # padded columns: zero weights (and zero int8 scales)
        o = 3 + r * stride
        np.testing.assert_array_equal(acc[o + nc : o + ncp], acc0[o + nc : o + ncp])
    one = acc0.copy()
    _qgemv(q, one, 3, V[0], 1, w, w0, nr, ncp)
    assert np.abs(one[3 : 3 + nc] - want[3 : 3 + nc]).max() <= scale
    back = acc0.copy()
    _qgemv_backward(q, back, 3, V[0], 1, w, w0, nr, ncp)
    np.testing.assert_array_equal(back, one)


# the weight type must be a compile-time constant: one small jitted caller per type
_CALLERS = {}


def _caller(name, q):
    from numba import njit

    key = (name, q)
    if key not in _CALLERS:
        fn = getattr(simd, name)
        if name == "qgemm":
            def call(acc, a0, astride, v, v0, vstride, w, w0, nr, nc, R):
                fn(q, acc, a0, astride, v, v0, vstride, w, w0, nr, nc, R)
        else:
            def call(acc, a0, v, v0, w, w0, nr, nc):
                fn(q, acc, a0, v, v0, w, w0, nr, nc)
        _CALLERS[key] = njit(call)
    return _CALLERS[key]


def _qgemm(q, *args):
    _caller("qgemm", q)(*args)


def _qgemv(q, *args):
    _caller("qgemv", q)(*args)


def _qgemv_backward(q, *args):
    _caller("qgemv_backward", q)(*args)


def _int8_plan(values, scale, dtype):
    """A ``w`` with int8 W^T ``values`` (nr, nc) and per-column ``scale``
    packed as the plan packs them, and the panel's offset."""
    nr, nc = values.shape
    ncp = simd.padded(nc, dtype)
    vt = np.zeros((nr, ncp), np.int8)
    vt[:, :nc] = values
    sc = np.zeros(ncp)
    sc[:nc] = scale
    return np.concatenate([sc.astype(dtype), simd.pack_stored(vt, dtype)]), ncp


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nr", [511, 512, 513, 1030, 1537])
def test_int8_products_round_each_chunk_of_512_inputs_on_its_own(dtype, nr):
    """Inputs past 512 are a new chunk with its own scale and int32 sums;
    the largest sums a chunk can reach (every product 128 x 32767) do not
    overflow; an all-zero chunk adds nothing; a value that is not finite
    makes every output NaN."""
    from streamgru.kernels.layout import WQ_INT8

    rng = np.random.default_rng(nr)
    nc = 37
    values = rng.integers(-128, 128, size=(nr, nc)).astype(np.int8)
    values[:, 0] = -128   # column 0: the largest sums (with v = -top or +top everywhere)
    scale = rng.uniform(0.5, 2.0, nc)
    w, ncp = _int8_plan(values, scale, dtype)
    wt = values.astype(np.float64) * scale
    tol = 1e-12 if dtype == np.float64 else 1e-5
    v = rng.normal(size=nr) * np.where(np.arange(nr) < 512, 1.0, 50.0)  # chunks of other scales
    v[:: 7] = -np.abs(v).max()
    for vec in (v, np.full(nr, 3.0), np.where(np.arange(nr) < 512, 0.0, v)):
        x = vec.astype(dtype)
        acc = np.zeros(ncp, dtype)
        _qgemv(WQ_INT8, acc, 0, x, 0, w, ncp, nr, ncp)
        want = ref.int16_rounded(x, dtype=dtype) @ wt
        assert np.abs(acc[:nc] - want).max() <= tol * np.abs(want).max() + tol, vec[:3]
        np.testing.assert_array_equal(acc[nc:], 0)
    for bad in (np.nan, np.inf):
        x = v.astype(dtype)
        x[nr - 1] = bad
        acc = np.zeros(ncp, dtype)
        _qgemv(WQ_INT8, acc, 0, x, 0, w, ncp, nr, ncp)
        assert np.isnan(acc[:nc]).all(), bad
