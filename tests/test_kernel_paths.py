"""The speed machinery around the kernels: locked per-dtype dispatchers (one
compiled signature per dtype whatever users pass), StreamBatch calls split
across threads, tiles of streams, and warmup()."""

import numpy as np
import pytest

import reference as ref
import streamgru as sg
from streamgru.kernels import config, network


def gru_model(dtype, I=5, H=11, head=True, seed=0):
    rng = np.random.default_rng(seed)
    layers = [sg.GRU.from_torch(rng.normal(size=(3 * H, I)) * 0.4, rng.normal(size=(3 * H, H)) * 0.4,
                                rng.normal(size=3 * H) * 0.1, rng.normal(size=3 * H) * 0.1)]
    if head:
        layers.append(sg.Dense(rng.normal(size=(3, H)), rng.normal(size=3), activation="tanh"))
    return sg.Model(layers, dtype=dtype)


@pytest.fixture
def threads(monkeypatch):
    """Two threads, split even tiny batches (the split itself is under test)."""
    monkeypatch.setattr(config, "THREADS", 2)
    monkeypatch.setattr(config, "PARALLEL_MIN_WORK", 1)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-12)])
def test_threaded_batch_equals_single_streams(threads, dtype, tol):
    m = gru_model(dtype)
    n, T = 37, 9  # 37: ranges and tiles of 16 that do not divide evenly
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, T, m.input_size)).astype(dtype)
    b = m.streams(n)
    ys = np.stack([b.step(X[:, t]) for t in range(T)], axis=1)
    b2 = m.streams(n)
    yp = b2.process(X)
    for i in (0, 17, 18, 36):
        want, final = ref.run_model(m, X[i])
        np.testing.assert_allclose(ys[i], want, atol=tol * 10, rtol=0)
        np.testing.assert_allclose(yp[i], want, atol=tol * 10, rtol=0)
        np.testing.assert_allclose(b.get_state()[i], final, atol=tol * 10, rtol=0)
    np.testing.assert_allclose(ys, yp, atol=tol, rtol=0)


def test_threaded_batch_bad_row_moves_no_stream(threads):
    m = gru_model(np.float32)
    n = 40
    b = m.streams(n)
    b.step(np.ones((n, m.input_size), np.float32))
    before = b.get_state()
    X = np.ones((n, m.input_size), np.float32)
    X[33, 2] = np.nan  # in the second thread's range
    with pytest.raises(sg.InputError, match="row 33"):
        b.step(X)
    np.testing.assert_array_equal(b.get_state(), before)
    XP = np.ones((n, 4, m.input_size), np.float32)
    XP[39, 3, 0] = np.inf
    with pytest.raises(sg.InputError, match="stream 39"):
        b.process(XP)
    np.testing.assert_array_equal(b.get_state(), before)


def test_one_compiled_signature_per_dtype_after_mixed_use():
    for dtype in (np.float32, np.float64):
        m = gru_model(dtype)
        s, b = m.stream(), m.streams(3)
        x = np.arange(m.input_size)
        for value in (x, x.astype(np.float32), x.astype(np.float64), list(x), x[::-1],
                      np.repeat(x.astype(dtype), 2)[::2]):
            s.step(value)
            s.process([value, value])
            b.step(np.stack([value] * 3))
            b.process(np.stack([[value] * 2] * 3))
        ro = x.astype(dtype)
        ro.setflags(write=False)
        s.step(ro)
        out = np.empty(m.output_size, dtype)
        out.setflags(write=False)
        with pytest.raises(sg.InputError, match="writeable"):
            s.step(x, out=out)
    for name in network.ENTRY_POINTS:
        dtypes = [sig[0].dtype for sig in network.compiled(name)]
        assert len(dtypes) == len(set(dtypes)) <= 2, (name, dtypes)


def test_locked_entry_point_refuses_other_array_types():
    m = gru_model(np.float32, head=False)
    s = m.stream()
    step = network.entry("step", np.float32)
    y = np.empty(m.output_size, np.float32)
    with pytest.raises(TypeError):
        step(np.ones(m.input_size), y, s._buf)  # float64 x
    with pytest.raises(TypeError):
        step(np.ones(2 * m.input_size, np.float32)[::2], y, s._buf)  # strided
    # sizes are the kernel's own check: status -1, nothing touched
    before = s.get_state()
    assert step(np.ones(m.input_size + 1, np.float32), y, s._buf) == -1
    # the buffer carries the plan's addresses: one stream_buffer did not write
    # is refused, not followed, and so is one too short for state + scratch
    x = np.ones(m.input_size, np.float32)
    process = network.entry("process", np.float32)
    X, Y = np.ones((3, m.input_size), np.float32), np.empty((3, m.output_size), np.float32)
    for buf in (np.zeros_like(s._buf), s._buf[:-1], s._buf[:3]):
        assert step(x, y, buf) == -1
        assert process(X, Y, buf) == -1
    np.testing.assert_array_equal(s.get_state(), before)
    assert step(x, y, s._buf) == 0 and process(X, Y, s._buf) == 0


def test_warmup_prepares_both_dtypes():
    import streamgru.kernels as kernels

    took = kernels.warmup()
    assert set(took) == {"float32", "float64"} and all(t >= 0 for t in took.values())
    for name in network.ENTRY_POINTS:
        if name != "step":  # Stream.step runs through the fast path instead
            assert {str(sig[0].dtype) for sig in network.compiled(name)} == {"float32", "float64"}
    # and Stream.step's fast path, and every float layer kind's C functions
    from streamgru.kernels import calls, fastcall, kinds

    assert {np.dtype(np.float32), np.dtype(np.float64)} <= set(fastcall._defs)
    for dt in (np.float32, np.float64):
        table = calls.TABLE[np.dtype(dt)]
        for code in kinds.FLOAT_KINDS:
            assert table[2 * code] and (table[2 * code + 1] or not kinds.has_rows(code)), code


def test_batch_scratch_does_not_grow_with_n():
    m = gru_model(np.float32)
    small, large = m.streams(1), m.streams(5000)
    assert large._scratch.nbytes == small._scratch.nbytes
    state = m.state_size * 4
    assert (large._states.nbytes + large._scratch.nbytes) / 5000 < 1.1 * state
