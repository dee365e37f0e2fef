"""The panel products in kernels/simd.py against plain numpy matrix products."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(nr=st.integers(1, 70), nc=st.integers(1, 200), rows=st.integers(1, 11),
       seed=st.integers(0, 2**32 - 1))
def test_products_match_numpy(dtype, nr, nc, rows, seed):
    rng = np.random.default_rng(seed)
    wt = rng.normal(size=(nr, nc))
    w = np.concatenate([rng.normal(size=5), simd.pack_panels(wt, dtype)]).astype(dtype)
    ncp = simd.padded(nc, dtype)
    stride = ncp + simd.lanes(dtype)  # rows of acc further apart than one row
    V = rng.normal(size=(rows, nr + 2)).astype(dtype)
    acc0 = rng.normal(size=rows * stride + 3).astype(dtype)
    want = acc0.astype(np.float64).copy()
    for r in range(rows):
        o = 3 + r * stride
        want[o : o + nc] += V[r, 1 : 1 + nr].astype(np.float64) @ wt

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
