"""A Model keeps its layers as given: astype converts from the source precision."""

import numpy as np
import pytest

import streamgru as sg

from randmodels import random_dense, random_gru
from reference import run_model


def _float64_layers(rng):
    lstm = sg.LSTM.from_torch(rng.normal(size=(16, 4)) / 2, rng.normal(size=(16, 4)) / 2,
                              rng.normal(size=16) / 2, rng.normal(size=16) / 2)
    return [random_gru(rng, 3, 8), random_dense(rng, 8, 4, "tanh"), lstm, random_dense(rng, 4, 2)]


@pytest.mark.parametrize("how", ["astype", "constructor"])
def test_float64_model_of_float64_layers_matches_float64_math(how):
    rng = np.random.default_rng(7)
    layers = _float64_layers(rng)
    init = rng.normal(size=8 + 8) * 0.5
    if how == "astype":
        model = sg.Model(layers, initial_state=init).astype(np.float64)  # via a float32 model
    else:
        model = sg.Model(layers, dtype=np.float64, initial_state=init)
    X = rng.normal(size=(200, 3))
    ref, _ = run_model(sg.Model(layers, dtype=np.float64, initial_state=init), X)
    got = model.stream().process(X)
    assert np.max(np.abs(got - ref)) < 1e-12
    for a, b in zip(model.layers, layers):
        assert a == b  # the float64 arrays as given, not float32-rounded
    assert np.array_equal(model.initial_state, init)


def test_float32_model_rounds_only_its_own_copy():
    rng = np.random.default_rng(8)
    layers = _float64_layers(rng)
    m32 = sg.Model(layers)
    assert all(l.dtype == np.float32 for l in m32.layers)
    assert all(l.dtype == np.float64 for l in layers)  # the caller's layers are untouched
    # float64 -> float32 -> float64 -> float32 is the same float32 model
    assert m32.astype(np.float64).astype(np.float32) == m32
