"""Input edge cases of Stream and StreamBatch: masked arrays and other
ndarray subclasses, ``out`` that shares memory with the input, and the
equality that holds between a StreamBatch and single Streams. Every
refusal is an InputError saying what was expected, with the state and
``out`` exactly as before."""

import numpy as np
import pytest

import streamgru as sg

I = O = 4  # input and output of one size, so that out=x is possible
H = 5


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def model(request):
    """Dense first: its output is written while later inputs are still to be
    read, which is what makes an overlapping ``out`` give wrong numbers."""
    rng = np.random.default_rng(0)
    return sg.Model([
        sg.Dense(rng.normal(size=(I, I)), rng.normal(size=I), "tanh"),
        sg.GRU.from_torch(rng.normal(size=(3 * H, I)), rng.normal(size=(3 * H, H)),
                          rng.normal(size=3 * H), rng.normal(size=3 * H)),
        sg.Dense(rng.normal(size=(O, H)), rng.normal(size=O)),
    ], dtype=request.param)


def warm_stream(model):
    s = model.stream()
    s.process(np.random.default_rng(1).normal(size=(3, I)))
    return s


def warm_batch(model, n=3):
    b = model.streams(n)
    b.process(np.random.default_rng(2).normal(size=(n, 3, I)))
    return b


def refused(obj, method, X, out, *words):
    """``obj.method(X, out=out)`` raises InputError naming each of ``words``;
    the state and ``out`` (if an array) are unchanged."""
    before = obj.get_state()
    guard = np.array(out, copy=True) if out is not None else None
    with pytest.raises(sg.InputError) as info:
        getattr(obj, method)(X, out=out)
    msg = str(info.value)
    for w in words:
        assert w in msg, msg
    assert obj.get_state().tobytes() == before.tobytes()
    if guard is not None:
        np.testing.assert_array_equal(np.asarray(out), guard)
    return msg


# ----------------------------------------------------------------------------
# masked arrays and subclasses


def masked(shape, dtype, nan_under_mask=True):
    data = np.ones(shape, dtype)
    mask = np.zeros(shape, bool)
    mask.flat[1] = True
    if nan_under_mask:
        data.flat[1] = np.nan
    return np.ma.masked_array(data, mask=mask)


@pytest.mark.parametrize("nan", [True, False], ids=["nan-under-mask", "clean"])
def test_masked_input_is_refused_with_input_error(model, nan):
    dt = model.dtype
    s = warm_stream(model)
    refused(s, "step", masked((I,), dt, nan), np.full(O, 3.0, dt), "masked array", "x.filled")
    refused(s, "step", masked((I,), dt, nan), None, "masked array")
    refused(s, "process", masked((6, I), dt, nan), np.full((6, O), 3.0, dt), "masked array")
    b = warm_batch(model)
    refused(b, "step", masked((3, I), dt, nan), np.full((3, O), 3.0, dt), "masked array")
    refused(b, "process", masked((3, 6, I), dt, nan), np.full((3, 6, O), 3.0, dt), "masked array")


def test_masked_out_is_refused(model):
    dt = model.dtype
    s = warm_stream(model)
    msg = refused(s, "step", np.ones(I, dt), np.ma.masked_array(np.full(O, 3.0, dt)), "out must be")
    assert "MaskedArray" in msg
    refused(s, "process", np.ones((2, I), dt), np.ma.masked_array(np.full((2, O), 3.0, dt)),
            "out must be")
    b = warm_batch(model)
    refused(b, "step", np.ones((3, I), dt), np.ma.masked_array(np.full((3, O), 3.0, dt)),
            "out must be")


class Sub(np.ndarray):
    pass


def test_other_subclasses_are_read_as_plain_arrays(model):
    dt = model.dtype
    X = np.random.default_rng(3).normal(size=(6, I)).astype(dt)
    s, ref = model.stream(), model.stream()
    for x in X:
        y = s.step(x.view(Sub))
        assert type(y) is np.ndarray
        np.testing.assert_array_equal(y, ref.step(x))
    np.testing.assert_array_equal(model.stream().process(X.view(Sub)), model.stream().process(X))
    b = model.streams(6)
    np.testing.assert_array_equal(b.step(X.view(Sub)), model.streams(6).step(X))
    # but out must be exactly an ndarray
    refused(warm_stream(model), "step", X[0], np.empty(O, dt).view(Sub), "out must be", "Sub")


# ----------------------------------------------------------------------------
# out sharing memory with the input


def test_out_is_x_is_refused_by_step(model):
    dt = model.dtype
    s = warm_stream(model)
    x = np.linspace(-1, 1, I).astype(dt)
    before = x.copy()
    refused(s, "step", x, x, "out shares memory with x")
    np.testing.assert_array_equal(x, before)
    assert s._fast(x, x) is not x  # the fast path declines it too


def test_overlapping_views_are_refused_and_separate_views_work(model):
    dt = model.dtype
    buf = np.linspace(-1, 1, 3 * I).astype(dt)
    s = warm_stream(model)
    refused(s, "step", buf[0:I], buf[2 : 2 + O], "out shares memory with x")
    refused(s, "step", buf[2 : 2 + I], buf[0:O], "out shares memory with x")
    refused(s, "step", buf[0 : 2 * I : 2], buf[1 : 1 + O], "out shares memory with x")
    # views of one buffer that do not overlap: fine, and the same numbers
    ref = warm_stream(model)
    want = ref.step(buf[0:I].copy())
    assert s.step(buf[0:I], out=buf[I : I + O]) is not None
    np.testing.assert_array_equal(buf[I : I + O], want)
    np.testing.assert_array_equal(s.get_state(), ref.get_state())


def test_process_refuses_out_sharing_memory_with_x(model):
    dt = model.dtype
    X = np.random.default_rng(4).normal(size=(8, I)).astype(dt)
    s = warm_stream(model)
    before = X.copy()
    refused(s, "process", X, X, "out shares memory with X")
    refused(s, "process", X[:4], X[2:6], "out shares memory with X")
    np.testing.assert_array_equal(X, before)
    # halves of one buffer
    ref = warm_stream(model)
    want = ref.process(X[:4].copy())
    s.process(X[:4], out=X[4:])
    np.testing.assert_array_equal(X[4:], want)


def test_batch_refuses_out_sharing_memory_with_x(model):
    dt = model.dtype
    b = warm_batch(model)
    X = np.random.default_rng(5).normal(size=(3, I)).astype(dt)
    refused(b, "step", X, X, "out shares memory with X")
    XP = np.random.default_rng(6).normal(size=(3, 5, I)).astype(dt)
    refused(b, "process", XP, XP, "out shares memory with X")
    both = np.random.default_rng(7).normal(size=(2, 3, 5, I)).astype(dt)
    ref = warm_batch(model)
    want = ref.process(both[0].copy())
    b.process(both[0], out=both[1])
    np.testing.assert_array_equal(both[1], want)


# ----------------------------------------------------------------------------
# StreamBatch against single streams


@pytest.mark.parametrize("n", [1, 3, 16, 40])
def test_batch_equals_single_streams_within_the_documented_bound(model, n):
    """StreamBatch's docstring: bit-identical in float64 ... and in float32
    within a few units in the last place (its kernels sum in another order)."""
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 60, I)).astype(model.dtype)
    Yb = model.streams(n).process(X)
    Ys = np.stack([model.stream().process(X[i]) for i in range(n)])
    tol = 1e-12 if model.dtype == np.float64 else 1e-6
    np.testing.assert_allclose(Yb, Ys, rtol=tol, atol=tol)
    b = model.streams(n)
    streams = [model.stream() for _ in range(n)]
    for t in range(5):
        got = b.step(X[:, t])
        want = np.stack([streams[i].step(X[i, t]) for i in range(n)])
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
