"""Random GRU / Dense models for the tests, scaled so the cells are not saturated.

Weights are N(0, 1/fan_in) (like the usual initialisers), biases N(0, 0.25):
gate pre-activations stay of order 1, so sigmoid and tanh work in their
curved range and every term of the formulas matters.
"""

import numpy as np

import streamgru as sg


def gru_arrays(rng, I, H):
    """Torch-layout arrays (rows r, z, n) of a well-scaled GRU cell, float64."""
    return (
        rng.normal(size=(3 * H, I)) / np.sqrt(I),
        rng.normal(size=(3 * H, H)) / np.sqrt(H),
        rng.normal(size=3 * H) * 0.5,
        rng.normal(size=3 * H) * 0.5,
    )


def random_gru(rng, I, H, reset_after=True, clip=None, gate_activation="sigmoid"):
    w_ih, w_hh, b_ih, b_hh = gru_arrays(rng, I, H)
    return sg.GRU(
        w_ih, w_hh, b_ih, b_hh,
        reset_after=reset_after, clip=clip, gate_activation=gate_activation,
    )


def random_dense(rng, I, O, activation=None):
    return sg.Dense(rng.normal(size=(O, I)) / np.sqrt(I), rng.normal(size=O) * 0.5, activation)


def random_model(rng, I, H, reset_after=True, head=True, dtype=np.float32, O=3, **gru_options):
    """A GRU (optionally followed by a Dense head) in ``dtype``."""
    layers = [random_gru(rng, I, H, reset_after, **gru_options)]
    if head:
        layers.append(random_dense(rng, H, O))
    return sg.Model(layers, dtype=dtype)
