"""Reference math: plain numpy float64 transcriptions of the cell formulas.

Written from the formulas in DESIGN.md / the layer docstrings, never by
calling the kernels. Slow and obvious on purpose. Each function takes
canonical layer objects (or raw arrays) and returns new arrays; nothing is
updated in place.
"""

import math

import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def activate(act, a):
    """Apply an ``Activation`` (name, alpha, beta) to the float64 vector ``a``."""
    name, alpha, beta = act.name, act.alpha, act.beta
    a = np.asarray(a, dtype=np.float64)
    if name == "identity":
        return a.copy()
    if name == "relu":
        return np.maximum(a, 0.0)
    if name == "tanh":
        return np.tanh(a)
    if name == "sigmoid":
        return sigmoid(a)
    if name == "hard_sigmoid":
        return np.clip(alpha * a + beta, 0.0, 1.0)
    if name == "leaky_relu":
        return np.where(a >= 0, a, alpha * a)
    if name == "elu":
        return np.where(a >= 0, a, alpha * (np.exp(a) - 1.0))
    if name == "gelu":
        return np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in a])
    if name == "softmax":
        e = np.exp(a - a.max())
        return e / e.sum()
    if name == "log_softmax":
        return a - a.max() - np.log(np.exp(a - a.max()).sum())
    raise ValueError(f"no reference for activation {name}")


def f64(layer, name):
    return np.asarray(getattr(layer, name), dtype=np.float64)


def clip(a, c):
    return a if c is None else np.clip(a, -c, c)


def gru_step(layer, x, h):
    """One GRU step, gate rows r, z, n; returns h'."""
    H = layer.hidden_size
    W, R = f64(layer, "weight_ih"), f64(layer, "weight_hh")
    b_i, b_h = f64(layer, "bias_ih"), f64(layer, "bias_hh")
    W_r, W_z, W_n = W[:H], W[H : 2 * H], W[2 * H :]
    R_r, R_z, R_n = R[:H], R[H : 2 * H], R[2 * H :]
    b_ir, b_iz, b_in = b_i[:H], b_i[H : 2 * H], b_i[2 * H :]
    b_hr, b_hz, b_hn = b_h[:H], b_h[H : 2 * H], b_h[2 * H :]
    gate, cand, c = layer.gate_activation, layer.activation, layer.clip

    r = activate(gate, clip(W_r @ x + b_ir + R_r @ h + b_hr, c))
    z = activate(gate, clip(W_z @ x + b_iz + R_z @ h + b_hz, c))
    if layer.reset_after:
        n = activate(cand, clip(W_n @ x + b_in + r * (R_n @ h + b_hn), c))
    else:
        n = activate(cand, clip(W_n @ x + b_in + R_n @ (r * h) + b_hn, c))
    return (1.0 - z) * n + z * h


def dense(layer, x):
    """y = act(W x + b)."""
    return activate(layer.activation, f64(layer, "weight") @ x + f64(layer, "bias"))


def layer_step(layer, x, state):
    """One step of any layer: returns (output, new state)."""
    if layer.kind == "gru":
        h = gru_step(layer, x, state)
        return h, h
    if layer.kind == "dense":
        return dense(layer, x), state
    step = globals().get(f"{layer.kind}_step")
    if step is None:
        raise ValueError(f"no reference for layer kind {layer.kind}")
    return step(layer, x, state)


def run_model(model, X, state=None):
    """Run ``model`` over the rows of X from ``state`` (default: its initial
    state). Returns (outputs (T, O), final state), all float64."""
    X = np.asarray(X, dtype=np.float64)
    full = np.array(model.initial_state if state is None else state, dtype=np.float64)
    states, off = [], 0
    for layer in model.layers:
        states.append(full[off : off + layer.state_size])
        off += layer.state_size
    outputs = []
    for x in X:
        v = x
        for i, layer in enumerate(model.layers):
            v, states[i] = layer_step(layer, v, states[i])
        outputs.append(v)
    final = np.concatenate(states) if states else np.zeros(0)
    return np.array(outputs).reshape(len(X), model.output_size), final
