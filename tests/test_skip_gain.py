"""The model-level residual input skip and output gain:
``y = output_gain * (net(x) + x[a : a + O])``.

Every kernel path (step's fast builtin and its checked path, process,
StreamBatch step and process, float32 and float64) is held to the float64
reference in tests/reference.py; the native format keeps both bit-exact;
``info`` shows them; bad values are refused.
"""

import json
import zipfile

import numba
import numpy as np
import pytest

import streamgru as sg
from streamgru import cli

import reference
from randmodels import random_dense, random_gru

TOL = {np.float32: 2e-5, np.float64: 1e-12}


def skip_model(dtype, input_skip=1, output_gain=-0.7, seed=0):
    rng = np.random.default_rng(seed)
    layers = [random_gru(rng, 5, 8), sg.LSTM.from_torch(
        rng.normal(size=(24, 8)) / 3, rng.normal(size=(24, 6)) / 3), random_dense(rng, 6, 3)]
    init = rng.normal(size=8 + 12) * 0.3
    return sg.Model(layers, dtype=dtype, initial_state=init, input_skip=input_skip,
                    output_gain=output_gain)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("input_skip,output_gain", [(0, 1.0), (2, 1.0), (None, 0.25), (1, -1.5)])
def test_every_path_matches_the_reference(dtype, input_skip, output_gain):
    m = skip_model(dtype, input_skip, output_gain)
    rng = np.random.default_rng(1)
    T, n = 1000, 3
    X = rng.normal(size=(n, T, 5)).astype(dtype)
    want = [reference.run_model(m, X[i])[0] for i in range(n)]
    tol = TOL[dtype]

    s = m.stream()
    y = np.empty(3, dtype)
    if not numba.config.DISABLE_JIT:  # the fast builtin (JIT only) runs this model
        assert s._fast(X[0, 0], y) is y
        s.reset()
    steps = np.array([s.step(x, out=y).copy() for x in X[0]])
    np.testing.assert_allclose(steps, want[0], atol=tol, rtol=0)

    s.reset()
    checked = np.array([s.step(list(x)) for x in X[0, :50]])  # the checked path (converts)
    np.testing.assert_allclose(checked, want[0][:50], atol=tol, rtol=0)

    s.reset()
    np.testing.assert_allclose(s.process(X[0]), want[0], atol=tol, rtol=0)

    b = m.streams(n)
    np.testing.assert_allclose(b.process(X), np.array(want), atol=tol, rtol=0)
    b.reset()
    rows = np.stack([b.step(X[:, t]) for t in range(40)], axis=1)
    np.testing.assert_allclose(rows, np.array(want)[:, :40], atol=tol, rtol=0)


def test_skip_and_gain_change_the_output_as_the_formula_says():
    """The same layers with and without the post-op: exactly gain * (y + x[a:a+O])
    in float64 (one add and one multiply per value)."""
    plain = skip_model(np.float64, None, 1.0)
    post = sg.Model(plain.layers, np.float64, plain.initial_state, input_skip=2, output_gain=3.0)
    X = np.random.default_rng(2).normal(size=(100, 5))
    y0 = plain.stream().process(X)
    y1 = post.stream().process(X)
    assert np.array_equal(y1, 3.0 * (y0 + X[:, 2:5]))


def test_bad_input_leaves_the_state_unchanged():
    m = skip_model(np.float32)
    s = m.stream()
    s.process(np.ones((5, 5)))
    before = s.get_state()
    x = np.ones(5, np.float32)
    x[1] = np.nan  # the skipped input value itself
    with pytest.raises(sg.InputError, match="nan at index 1"):
        s.step(x, out=np.empty(3, np.float32))
    assert np.array_equal(s.get_state(), before)


@pytest.mark.parametrize("kwargs,words", [
    ({"input_skip": 3}, "x[3:6]"),          # 3 + 3 outputs > 5 inputs
    ({"input_skip": -1}, "input_skip=-1"),
    ({"input_skip": True}, "whole-number"),
    ({"input_skip": 1.0}, "whole-number"),
    ({"output_gain": float("nan")}, "finite"),
    ({"output_gain": float("inf")}, "finite"),
    ({"output_gain": "2"}, "finite real"),
    ({"output_gain": False}, "finite real"),
])
def test_bad_values_are_refused(kwargs, words):
    good = skip_model(np.float32, None, 1.0)
    with pytest.raises(sg.WeightsError, match=words.replace("[", r"\[").replace("]", r"\]")):
        sg.Model(good.layers, **kwargs)


def test_equality_astype_and_repr():
    m = skip_model(np.float32, 1, 0.5)
    assert m == skip_model(np.float32, 1, 0.5)
    assert m != skip_model(np.float32, 0, 0.5)
    assert m != skip_model(np.float32, 1, 0.25)
    assert m != skip_model(np.float32, None, 0.5)
    d = m.astype(np.float64)
    assert (d.input_skip, d.output_gain, d.dtype) == (1, 0.5, np.float64)
    assert "input_skip=1" in repr(m) and "output_gain=0.5" in repr(m)
    assert "input_skip" not in repr(skip_model(np.float32, None, 1.0))


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_round_trip_is_bit_exact(tmp_path, suffix, dtype):
    gain = 10 ** (-3.7 / 20)  # an AIDA-X out_gain in dB: not a short decimal
    m = skip_model(dtype, 2, gain)
    path = tmp_path / f"m{suffix}"
    sg.save(m, path)
    back = sg.load(path)
    assert back == m
    assert back.input_skip == 2 and back.output_gain == gain  # the same double
    X = np.random.default_rng(3).normal(size=(64, 5)).astype(dtype)
    assert back.stream().process(X).tobytes() == m.stream().process(X).tobytes()


def _description(path):
    with zipfile.ZipFile(path) as z:
        return json.loads(np.load(z.open("__streamgru__.npy")).tobytes())


def test_files_without_skip_or_gain_stay_version_1(tmp_path):
    """Older streamgru reads a model without them (version 1, no new keys);
    a model with them is version 2, which an older reader refuses rather
    than silently dropping the skip."""
    sg.save(skip_model(np.float32, None, 1.0), tmp_path / "plain.npz")
    sg.save(skip_model(np.float32, 0, 1.0), tmp_path / "skip.npz")
    plain, skip = _description(tmp_path / "plain.npz"), _description(tmp_path / "skip.npz")
    assert plain["version"] == 1 and "input_skip" not in plain and "output_gain" not in plain
    assert skip["version"] == 2 and skip["input_skip"] == 0 and skip["output_gain"] == 1.0
    back = sg.load(tmp_path / "plain.npz")
    assert back.input_skip is None and back.output_gain == 1.0


def test_info_shows_them(tmp_path, capsys):
    path = tmp_path / "m.npz"
    sg.save(skip_model(np.float32, 1, 0.5), path)
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "input skip:  y = net(x) + x[1:4]" in out
    assert "output gain: 0.5, -6.02 dB" in out
    sg.save(skip_model(np.float32, None, 1.0), path)
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "input skip" not in out and "output gain" not in out


def test_convert_keeps_them(tmp_path, capsys):
    src, dst = tmp_path / "a.npz", tmp_path / "b.safetensors"
    m = skip_model(np.float64, 0, 2.0)
    sg.save(m, src)
    assert cli.main(["convert", str(src), str(dst)]) == 0
    back = sg.load(dst)
    assert (back.input_skip, back.output_gain) == (0, 2.0)
    assert back.layers == m.layers
