"""The builtin fast path of Stream.step (kernels/fastcall.py): it runs the
kernel only for arrays that are exactly what the kernel needs and otherwise
declines, having changed nothing; it leaks no references."""

import sys

import numpy as np
import pytest

import streamgru as sg
from streamgru.kernels import fastcall

I, H = 5, 7


@pytest.fixture(scope="module", params=[np.float32, np.float64])
def model(request):
    rng = np.random.default_rng(3)
    gru = sg.GRU.from_torch(rng.normal(size=(3 * H, I)), rng.normal(size=(3 * H, H)),
                            rng.normal(size=3 * H), rng.normal(size=3 * H))
    return sg.Model([gru], dtype=request.param)


def test_available_here(model):
    # on CPython 3.11 / numpy 2 (this project's platform) the fast path must exist
    s = model.stream()
    assert s._fast is not None and type(s._fast).__name__ == "builtin_function_or_method"


def test_fast_path_matches_checked_path(model):
    dt = model.dtype
    a, b = model.stream(), model.stream()
    y, z = np.empty(H, dt), np.empty(H, dt)
    rng = np.random.default_rng(0)
    for _ in range(30):
        x = rng.normal(size=I).astype(dt)
        assert a._fast(x, y) is y
        b._step_checked(x, z)
        np.testing.assert_array_equal(y, z)
    np.testing.assert_array_equal(a.get_state(), b.get_state())


class Sub(np.ndarray):
    pass


def declined_cases(dt):
    other = np.float64 if dt == np.float32 else np.float32
    x = np.linspace(-1, 1, I).astype(dt)
    ro = np.empty(H, dt)
    ro.flags.writeable = False
    return {
        "x other dtype": (x.astype(other), np.empty(H, dt)),
        "out other dtype": (x, np.empty(H, other)),
        "x strided": (np.repeat(x, 2)[::2], np.empty(H, dt)),
        "x 2-D": (x[None, :], np.empty(H, dt)),
        "x wrong size": (x[:-1], np.empty(H, dt)),
        "out wrong size": (x, np.empty(H + 1, dt)),
        "out read-only": (x, ro),
        "x a list": (list(x), np.empty(H, dt)),
        "x a subclass": (x.view(Sub), np.empty(H, dt)),
        "out a subclass": (x, np.empty(H, dt).view(Sub)),
        "x NaN": (np.where(np.arange(I) == 2, np.nan, x).astype(dt), np.empty(H, dt)),
        "x inf": (np.full(I, np.inf, dt), np.empty(H, dt)),
        "x None": (None, np.empty(H, dt)),
    }


@pytest.mark.parametrize("case", list(declined_cases(np.float32)))
def test_declines_and_changes_nothing(model, case):
    s = model.stream()
    s.step(np.ones(I))
    before = s.get_state()
    x, out = declined_cases(model.dtype)[case]
    guard = out.copy()
    assert s._fast(x, out) is not out
    np.testing.assert_array_equal(s.get_state(), before)
    np.testing.assert_array_equal(out, guard)


def test_wrong_argument_count_declines(model):
    s = model.stream()
    x, y = np.ones(I, model.dtype), np.empty(H, model.dtype)
    for args in [(), (x,), (x, y, y)]:
        assert s._fast(*args) is not y


def test_no_reference_leaks(model):
    s = model.stream()
    x, y = np.ones(I, model.dtype), np.empty(H, model.dtype)
    bad = np.full(I, np.nan, model.dtype)
    table = s._fast.__self__
    s._fast(x, y), s._fast(bad, y)
    refs = sys.getrefcount(x), sys.getrefcount(y), sys.getrefcount(table), sys.getrefcount(bad)
    for _ in range(1000):
        s._fast(x, y)
        s._fast(bad, y)
    assert (sys.getrefcount(x), sys.getrefcount(y), sys.getrefcount(table),
            sys.getrefcount(bad)) == refs


def test_read_only_x_takes_the_fast_path(model):
    s = model.stream()
    x, y = np.ones(I, model.dtype), np.empty(H, model.dtype)
    x.flags.writeable = False
    assert s._fast(x, y) is y


def test_step_uses_it_and_still_refuses_bad_input(model):
    s = model.stream()
    y = np.empty(H, model.dtype)
    assert s.step(np.ones(I, model.dtype), out=y) is y
    before = s.get_state()
    with pytest.raises(sg.InputError, match="NaN|nan"):
        s.step(np.full(I, np.nan, model.dtype), out=y)
    np.testing.assert_array_equal(s.get_state(), before)


def test_layout_check_passes_here():
    assert fastcall._layout_ok()


def test_large_model_releases_the_gil_and_threads_agree():
    """Weights of RELEASE_GIL_BYTES or more: the kernel runs without the GIL;
    streams stepped from two threads at once give the numbers they give
    stepped one after the other."""
    import threading

    H2 = 128
    rng = np.random.default_rng(5)
    gru = sg.GRU.from_torch(rng.normal(size=(3 * H2, I)) / 3, rng.normal(size=(3 * H2, H2)) / 11)
    m = sg.Model([gru], dtype=np.float32)
    assert m._plan().w.nbytes >= fastcall.RELEASE_GIL_BYTES
    X = rng.normal(size=(2, 300, I)).astype(np.float32)
    want = []
    for k in range(2):
        s = m.stream()
        assert s._fast.__self__[fastcall.T_SAVE_THREAD] != 0
        want.append(np.array([s.step(x).copy() for x in X[k]]))
    streams = [m.stream(), m.stream()]
    got = [np.empty((300, H2), np.float32) for _ in range(2)]

    fast = [0, 0]

    def run(k):
        y = np.empty(H2, np.float32)
        for t, x in enumerate(X[k]):
            fast[k] += streams[k]._fast(x, y) is y
            got[k][t] = y

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fast == [300, 300]
    for k in range(2):
        np.testing.assert_array_equal(got[k], want[k])


def test_small_model_keeps_the_gil(model):
    assert model.stream()._fast.__self__[fastcall.T_SAVE_THREAD] == 0
