"""Stream and StreamBatch semantics of DESIGN.md: out=, fresh outputs, state
copies, reset, and bad input that leaves every state exactly as it was."""

import numpy as np
import pytest

import streamgru as sg
from randmodels import random_model

I, H, O = 3, 6, 2


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def model(request):
    rng = np.random.default_rng(0)
    m = random_model(rng, I, H, True, True, request.param, O=O)
    init = rng.uniform(-1, 1, m.state_size)
    return sg.Model(m.layers, dtype=request.param, initial_state=init)


@pytest.fixture
def warm(model):
    """A stream that has already run a few steps (state away from initial)."""
    s = model.stream()
    s.process(np.random.default_rng(1).normal(size=(5, I)))
    return s


# ----------------------------------------------------------------------------
# outputs


def test_out_is_returned_itself(model):
    s = model.stream()
    y = np.empty(O, model.dtype)
    assert s.step(np.zeros(I, model.dtype), out=y) is y
    Y = np.empty((4, O), model.dtype)
    assert s.process(np.zeros((4, I), model.dtype), out=Y) is Y
    b = model.streams(3)
    Yb = np.empty((3, O), model.dtype)
    assert b.step(np.zeros((3, I), model.dtype), out=Yb) is Yb
    Yp = np.empty((3, 4, O), model.dtype)
    assert b.process(np.zeros((3, 4, I), model.dtype), out=Yp) is Yp


def test_out_holds_the_same_numbers_as_a_fresh_result(model):
    X = np.random.default_rng(2).normal(size=(6, I)).astype(model.dtype)
    a, b = model.stream(), model.stream()
    y = np.empty(O, model.dtype)
    for x in X:
        np.testing.assert_array_equal(a.step(x, out=y), b.step(x))


def test_without_out_each_call_returns_a_fresh_array(model):
    s = model.stream()
    rng = np.random.default_rng(3)
    y1 = s.step(rng.normal(size=I))
    kept = y1.copy()
    y2 = s.step(rng.normal(size=I))
    assert y2 is not y1 and not np.shares_memory(y1, y2)
    np.testing.assert_array_equal(y1, kept)  # not overwritten by the later call
    Y1 = s.process(rng.normal(size=(3, I)))
    kept = Y1.copy()
    s.process(rng.normal(size=(3, I)))
    np.testing.assert_array_equal(Y1, kept)
    b = model.streams(2)
    Z1 = b.step(rng.normal(size=(2, I)))
    kept = Z1.copy()
    b.step(rng.normal(size=(2, I)))
    np.testing.assert_array_equal(Z1, kept)
    assert y1.dtype == Y1.dtype == Z1.dtype == model.dtype


# ----------------------------------------------------------------------------
# state


def test_new_stream_and_reset_use_the_initial_state(model):
    s = model.stream()
    np.testing.assert_array_equal(s.get_state(), model.initial_state)
    s.process(np.ones((4, I)))
    assert not np.array_equal(s.get_state(), model.initial_state)
    s.reset()
    np.testing.assert_array_equal(s.get_state(), model.initial_state)
    # after reset the outputs repeat exactly
    X = np.random.default_rng(4).normal(size=(5, I))
    first = s.process(X)
    s.reset()
    np.testing.assert_array_equal(s.process(X), first)


def test_get_state_is_a_copy(warm):
    st = warm.get_state()
    st[:] = 123.0
    assert not np.any(warm.get_state() == 123.0)
    st2 = warm.get_state()
    warm.step(np.ones(I))
    assert not np.array_equal(st2, warm.get_state())  # the snapshot did not follow


def test_set_state_restores_a_snapshot(warm):
    X = np.random.default_rng(5).normal(size=(7, I))
    snap = warm.get_state()
    first = warm.process(X)
    warm.set_state(snap)
    np.testing.assert_array_equal(warm.process(X), first)
    warm.set_state(list(snap.astype(np.float64)))  # lists and other dtypes too
    np.testing.assert_array_equal(warm.process(X), first)


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros(H - 1), "shape (6,)"),
        (np.zeros((1, H)), "shape (6,)"),
        ([0.0] * (H + 1), "shape (6,)"),
        (np.array([0, 0, np.nan, 0, 0, 0]), "nan"),
        (np.array([0, 0, 0, 0, 0, -np.inf]), "inf"),
        ("abcdef", "real numbers"),
        (None, "real numbers"),
        ([1, 2, "3", 4, 5, 6], "real numbers"),
        (np.zeros(H, complex), "real numbers"),
    ],
)
def test_set_state_refuses_bad_state_and_keeps_the_old(warm, bad, words):
    before = warm.get_state()
    with pytest.raises(sg.InputError, match="set_state") as info:
        warm.set_state(bad)
    assert words in str(info.value)
    np.testing.assert_array_equal(warm.get_state(), before)


# ----------------------------------------------------------------------------
# bad input to step / process


BAD_STEP = [
    (np.zeros(I + 1), "x of shape (3,)"),
    (np.zeros((1, I)), "x of shape (3,)"),
    (np.float64(1.0), "x of shape (3,)"),
    ([[1, 2, 3]], "x of shape (3,)"),
    ([1, 2], "x of shape (3,)"),
    ([1, [2], 3], "x of shape (3,)"),
    ("abc", "real numbers"),
    (None, "real numbers"),
    (np.array([object(), 1, 2]), "real numbers"),
    (np.array([True, False, True]), "real numbers"),
    (np.array([1, np.nan, 2]), "nan"),
    (np.array([np.inf, 1, 2]), "inf"),
    (np.array([1, 2, -np.inf]), "-inf"),
    (np.array([1e300, 0, 0]), "inf"),  # finite in float64, inf in float32 models
]


@pytest.mark.parametrize("bad, words", BAD_STEP)
def test_bad_step_input_raises_and_changes_nothing(warm, bad, words):
    if words == "inf" and bad[0] == 1e300 and warm.model.dtype == np.float64:
        bad = np.array([1e300, np.inf, 0])  # float64 holds 1e300: make it bad another way
    before = warm.get_state()
    y = np.full(O, 7.0, warm.model.dtype)
    with pytest.raises(sg.InputError) as info:
        warm.step(bad, out=y)
    msg = str(info.value)
    assert words in msg and "step" in msg, msg
    if words in ("nan", "inf", "-inf"):
        assert "expected finite values" in msg and "unchanged" in msg
    assert warm.get_state().tobytes() == before.tobytes()
    assert np.all(y == 7.0)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_nonfinite_in_row_37_of_50_applies_nothing(warm, bad_value):
    X = np.random.default_rng(6).normal(size=(50, I)).astype(warm.model.dtype)
    X[37, 1] = bad_value
    before = warm.get_state()
    with pytest.raises(sg.InputError, match="row 37") as info:
        warm.process(X)
    assert "Nothing was applied" in str(info.value)
    assert warm.get_state().tobytes() == before.tobytes()  # not even rows 0..36
    X[37, 1] = 0.0
    warm.process(X)  # and the stream still works
    assert warm.get_state().tobytes() != before.tobytes()


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros((5, I + 1)), "X of shape (T, 3)"),
        (np.zeros(I), "X of shape (T, 3)"),
        (np.zeros((2, 5, I)), "X of shape (T, 3)"),
        ([[1, 2, 3], [1, 2]], "X of shape (T, 3)"),
        ([["a", "b", "c"]], "real numbers"),
        (None, "real numbers"),
    ],
)
def test_bad_process_input_raises_and_changes_nothing(warm, bad, words):
    before = warm.get_state()
    with pytest.raises(sg.InputError) as info:
        warm.process(bad)
    assert words in str(info.value)
    assert warm.get_state().tobytes() == before.tobytes()


def test_wrong_out_raises_and_changes_nothing(warm):
    dt = warm.model.dtype
    other = np.float64 if dt == np.float32 else np.float32
    before = warm.get_state()
    for out in (
        np.empty(O, other),
        np.empty(O + 1, dt),
        np.empty((1, O), dt),
        np.empty(2 * O, dt)[::2],
        [0.0] * O,
    ):
        with pytest.raises(sg.InputError, match=r"out must be a writeable C-contiguous"):
            warm.step(np.zeros(I), out=out)
    ro = np.empty(O, dt)
    ro.setflags(write=False)
    with pytest.raises(sg.InputError, match="writeable"):
        warm.step(np.zeros(I), out=ro)
    with pytest.raises(sg.InputError, match=r"shape \(4, 2\)"):
        warm.process(np.zeros((4, I)), out=np.empty((5, O), dt))
    with pytest.raises(sg.InputError, match=dt.name if hasattr(dt, "name") else ""):
        warm.process(np.zeros((4, I)), out=np.empty((4, O), other))
    assert warm.get_state().tobytes() == before.tobytes()


# ----------------------------------------------------------------------------
# conversions give the same numbers


def test_other_dtypes_lists_and_strided_inputs_give_the_same_numbers(model):
    rng = np.random.default_rng(7)
    Xi = rng.integers(-3, 4, size=(6, I))
    X = Xi.astype(model.dtype)
    want = model.stream().process(X)
    # step and process sum the same products in different orders (one
    # vector vs a tile): each path is compared with itself on X
    s = model.stream()
    want_step = np.array([s.step(x) for x in X])
    strided = np.zeros((6, 2 * I), model.dtype)[:, ::2]
    strided[:] = X
    ro = X.copy()
    ro.setflags(write=False)
    variants = [Xi, Xi.astype(np.int8), X.astype(np.float16), X.astype(np.float64),
                X.tolist(), strided, np.asfortranarray(X), ro]
    for V in variants:
        np.testing.assert_array_equal(model.stream().process(V), want)
        s = model.stream()
        np.testing.assert_array_equal(np.array([s.step(v) for v in V]), want_step)
        b = model.streams(6)  # 6 streams, one step each
        np.testing.assert_array_equal(b.step(V), model.streams(6).step(X))
        b = model.streams(1)
        np.testing.assert_array_equal(b.process([V])[0], want)


# ----------------------------------------------------------------------------
# StreamBatch


def test_batch_with_one_bad_stream_advances_none(model):
    b = model.streams(4)
    b.process(np.random.default_rng(8).normal(size=(4, 3, I)))
    before = b.get_state()
    X = np.ones((4, I), model.dtype)
    X[2, 0] = np.nan
    with pytest.raises(sg.InputError, match=r"stream 2.*No stream was advanced"):
        b.step(X)
    assert b.get_state().tobytes() == before.tobytes()
    Xp = np.ones((4, 10, I), model.dtype)
    Xp[3, 9, 2] = np.inf
    with pytest.raises(sg.InputError, match=r"stream 3.*No stream was advanced"):
        b.process(Xp)
    assert b.get_state().tobytes() == before.tobytes()
    with pytest.raises(sg.InputError, match=r"X of shape \(4, 3\)"):
        b.step(np.ones((3, I)))
    with pytest.raises(sg.InputError, match=r"X of shape \(4, T, 3\)"):
        b.process(np.ones((4, I)))
    with pytest.raises(sg.InputError, match="out must be"):
        b.step(np.ones((4, I)), out=np.empty((4, O + 1), model.dtype))
    assert b.get_state().tobytes() == before.tobytes()


def test_batch_reset_one_or_all(model):
    b = model.streams(3)
    b.process(np.random.default_rng(9).normal(size=(3, 4, I)))
    moved = b.get_state()
    b.reset(1)
    st = b.get_state()
    np.testing.assert_array_equal(st[1], model.initial_state)
    np.testing.assert_array_equal(st[[0, 2]], moved[[0, 2]])
    b.reset(-1)  # numpy-style negative index: the last stream
    np.testing.assert_array_equal(b.get_state()[2], model.initial_state)
    np.testing.assert_array_equal(b.get_state()[0], moved[0])
    b.reset()
    np.testing.assert_array_equal(b.get_state(), np.tile(model.initial_state, (3, 1)))
    for bad in (3, -4, 1.0, "0", True):
        with pytest.raises(sg.InputError, match="stream index"):
            b.reset(bad)


def test_batch_state_copy_and_set_state(model):
    b = model.streams(2)
    np.testing.assert_array_equal(b.get_state(), np.tile(model.initial_state, (2, 1)))
    snap = b.get_state()
    snap[:] = 5.0
    assert not np.any(b.get_state() == 5.0)
    new = np.random.default_rng(10).uniform(-1, 1, (2, model.state_size))
    b.set_state(new)
    np.testing.assert_array_equal(b.get_state(), new.astype(model.dtype))
    for bad in (new[0], np.zeros((3, model.state_size)), np.where(new > 0.5, np.nan, new), "x"):
        with pytest.raises(sg.InputError, match="set_state"):
            b.set_state(bad)
        np.testing.assert_array_equal(b.get_state(), new.astype(model.dtype))


@pytest.mark.parametrize("n", [0, -1, 2.0, True, "3", None])
def test_streams_needs_a_positive_integer(model, n):
    with pytest.raises(sg.InputError, match="positive integer"):
        model.streams(n)


def test_streams_of_one_model_are_independent(model):
    a, b = model.stream(), model.stream()
    a.process(np.ones((3, I)))
    np.testing.assert_array_equal(b.get_state(), model.initial_state)
    assert len(model.streams(5)) == 5


def test_empty_chunk_is_a_no_op(warm):
    before = warm.get_state()
    Y = warm.process(np.zeros((0, I)))
    assert Y.shape == (0, O) and Y.dtype == warm.model.dtype
    assert warm.get_state().tobytes() == before.tobytes()
    b = warm.model.streams(2)
    assert b.process(np.zeros((2, 0, I))).shape == (2, 0, O)
    np.testing.assert_array_equal(b.get_state(), np.tile(warm.model.initial_state, (2, 1)))


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_copies_and_pickles_continue_identically_and_independently(model, how):
    """A copy starts in the original's state and then runs on its own buffer.
    The kernels follow the plan addresses held in a stream's buffer, so a copy
    must still work after the original and its model are gone."""
    import copy
    import gc
    import pickle

    dup = {"copy": copy.copy, "deepcopy": copy.deepcopy,
           "pickle": lambda s: pickle.loads(pickle.dumps(s))}[how]
    m = sg.Model(model.layers, dtype=model.dtype, initial_state=model.initial_state)
    s = m.stream()
    rng = np.random.default_rng(3)
    s.process(rng.normal(size=(5, I)))
    c = dup(s)
    assert type(c) is sg.Stream and c.model.dtype == model.dtype
    np.testing.assert_array_equal(c.get_state(), s.get_state())
    # the same numbers as a stream set to that state by hand
    ref = model.stream()
    ref.set_state(s.get_state())
    X = rng.normal(size=(6, I))
    before = s.get_state()
    np.testing.assert_array_equal(c.step(X[0]), ref.step(X[0]))
    np.testing.assert_array_equal(s.get_state(), before)  # the original did not move
    assert not np.array_equal(c.get_state(), before)  # the copy did, and get_state sees it
    del s, m
    gc.collect()
    np.testing.assert_array_equal(c.process(X[1:4]), ref.process(X[1:4]))
    for x in X[4:]:
        np.testing.assert_array_equal(c.step(x), ref.step(x))
    np.testing.assert_array_equal(c.get_state(), ref.get_state())
