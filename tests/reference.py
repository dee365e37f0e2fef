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


def dequantized(q):
    """The matrix a reduced-precision weight (``QuantizedWeight``) stands
    for, from its stored values by the formulas in layers/quant.py (not
    through its own ``dequantize``)."""
    if q.kind == "int8":  # W = scale[:, None] * values
        return np.asarray(q.scale, np.float64)[:, None] * np.asarray(q.values, np.float64)
    if q.kind == "float16":
        return np.asarray(q.values, np.float64)
    if q.kind == "bfloat16":  # the 16 stored bits are the top half of a float32
        bits = np.asarray(q.values, np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32).astype(np.float64)
    raise ValueError(f"no reference for weight type {q.kind}")


def int16_rounded(v, chunk=512, dtype=np.float64):
    """v as an int8 weight matrix's product sees it: each run of ``chunk``
    inputs rounded to a step of its largest magnitude m over 32767,

        v'_j = rint(v_j * (32767 / m)) * (m / 32767)     (v' = 0 when m = 0),

    and NaN throughout a run that holds a value that is not finite. The
    divisions and the product inside rint are rounded to ``dtype`` (a
    float32 model's kernels compute them in float32), v' is float64."""
    x_all = np.asarray(v, dtype=dtype)
    out = np.empty(len(x_all))
    qmax = dtype(32767.0)
    for j in range(0, len(x_all), chunk):
        x = x_all[j : j + chunk]
        m = np.abs(x).max()
        if not np.isfinite(m):
            out[j : j + chunk] = np.nan
        elif m > 0:
            q = np.rint(x * (qmax / m)).astype(np.float64)
            out[j : j + chunk] = q * np.float64(m / qmax)
        else:
            out[j : j + chunk] = 0.0
    return out


class Int8Matrix:
    """A dequantized int8 weight matrix W whose products ``W @ v`` take v
    rounded by ``int16_rounded`` (the integer dot products of the kernels);
    row slices W[a:b] keep that."""

    def __init__(self, w):
        self.w = w
        self.shape = w.shape

    def __getitem__(self, rows):
        return Int8Matrix(self.w[rows])

    def __matmul__(self, v):
        return self.w @ int16_rounded(v)


def f64(layer, name):
    a = getattr(layer, name)
    if hasattr(a, "kind") and hasattr(a, "values"):  # stored in reduced precision
        return Int8Matrix(dequantized(a)) if a.kind == "int8" else dequantized(a)
    return np.asarray(a, dtype=np.float64)


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


def lstm_step(layer, x, state):
    """One LSTM step, gate rows i, f, g, o; state = concat(h (P), c (H)).
    Returns (h', concat(h', c'))."""
    H, P = layer.hidden_size, layer.output_size
    h, c = state[:P], state[P:]
    W, R = f64(layer, "weight_ih"), f64(layer, "weight_hh")
    b = f64(layer, "bias_ih") + f64(layer, "bias_hh")
    W_i, W_f, W_g, W_o = W[:H], W[H : 2 * H], W[2 * H : 3 * H], W[3 * H :]
    R_i, R_f, R_g, R_o = R[:H], R[H : 2 * H], R[2 * H : 3 * H], R[3 * H :]
    b_i, b_f, b_g, b_o = b[:H], b[H : 2 * H], b[2 * H : 3 * H], b[3 * H :]
    if layer.peepholes is None:
        p_i = p_f = p_o = np.zeros(H)
    else:
        p_i, p_f, p_o = f64(layer, "peepholes")
    gate, cell, hid, k = (
        layer.gate_activation, layer.cell_activation, layer.hidden_activation, layer.clip
    )

    i = activate(gate, clip(W_i @ x + b_i + R_i @ h + p_i * c, k))
    if layer.input_forget:
        f = 1.0 - i
    else:
        f = activate(gate, clip(W_f @ x + b_f + R_f @ h + p_f * c, k))
    g = activate(cell, clip(W_g @ x + b_g + R_g @ h, k))
    c_new = f * c + i * g
    o = activate(gate, clip(W_o @ x + b_o + R_o @ h + p_o * c_new, k))
    h_new = o * activate(hid, c_new)
    if layer.weight_hr is not None:
        h_new = f64(layer, "weight_hr") @ h_new
    return h_new, np.concatenate([h_new, c_new])


def rnn_step(layer, x, h):
    """One Elman RNN step; returns (h', h')."""
    W, R = f64(layer, "weight_ih"), f64(layer, "weight_hh")
    b_i, b_h = f64(layer, "bias_ih"), f64(layer, "bias_hh")
    h_new = activate(layer.activation, clip(W @ x + b_i + R @ h + b_h, layer.clip))
    return h_new, h_new


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
    state), with its input skip and output gain. Returns (outputs (T, O),
    final state), all float64."""
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
        if model.input_skip is not None:  # y = gain * (net(x) + x[a : a + O])
            v = v + x[model.input_skip : model.input_skip + model.output_size]
        outputs.append(model.output_gain * v)
    final = np.concatenate(states) if states else np.zeros(0)
    return np.array(outputs).reshape(len(X), model.output_size), final


# ----------------------------------------------------------------------------
# Keras layers in Keras's own layout (kernels (in, out), gate columns as Keras
# stores them), written from Keras's formulas: an importer's conversion to the
# canonical form is checked against these, not against itself.


def keras_hard_sigmoid(version):
    """Keras 2: clip(0.2 x + 0.5, 0, 1); Keras 3: clip(x / 6 + 0.5, 0, 1)."""
    slope = 0.2 if version == 2 else 1.0 / 6.0
    return lambda a: np.clip(slope * a + 0.5, 0.0, 1.0)


KERAS_ACTIVATIONS = {
    "linear": lambda a: a,
    "tanh": np.tanh,
    "sigmoid": sigmoid,
    "relu": lambda a: np.maximum(a, 0.0),
}


def _keras_act(name, version):
    if name == "hard_sigmoid":
        return keras_hard_sigmoid(version)
    return KERAS_ACTIVATIONS[name]


def keras_gru(X, kernel, recurrent_kernel, bias, reset_after, activation="tanh",
              recurrent_activation="sigmoid", version=3):
    """Keras GRU over the rows of X; columns z, r, h; h' = z h + (1 - z) hh."""
    k, rk = np.asarray(kernel, np.float64), np.asarray(recurrent_kernel, np.float64)
    H = rk.shape[0]
    act, ract = _keras_act(activation, version), _keras_act(recurrent_activation, version)
    b = np.zeros((2, 3 * H)) if bias is None else np.asarray(bias, np.float64).reshape(-1, 3 * H)
    b_in, b_rec = b[0], (b[1] if len(b) > 1 else np.zeros(3 * H))
    h, out = np.zeros(H), []
    for x in np.asarray(X, np.float64):
        xz, xr, xh = np.split(x @ k + b_in, 3)
        if reset_after:
            iz, ir, ih = np.split(h @ rk + b_rec, 3)
            z, r = ract(xz + iz), ract(xr + ir)
            hh = act(xh + r * ih)
        else:
            z = ract(xz + h @ rk[:, :H])
            r = ract(xr + h @ rk[:, H : 2 * H])
            hh = act(xh + (r * h) @ rk[:, 2 * H :])
        h = z * h + (1.0 - z) * hh
        out.append(h)
    return np.array(out)


def keras_lstm(X, kernel, recurrent_kernel, bias, activation="tanh",
               recurrent_activation="sigmoid", version=3):
    """Keras LSTM over the rows of X; columns i, f, c, o."""
    k, rk = np.asarray(kernel, np.float64), np.asarray(recurrent_kernel, np.float64)
    H = rk.shape[0]
    act, ract = _keras_act(activation, version), _keras_act(recurrent_activation, version)
    b = np.zeros(4 * H) if bias is None else np.asarray(bias, np.float64)
    h, c, out = np.zeros(H), np.zeros(H), []
    for x in np.asarray(X, np.float64):
        zi, zf, zc, zo = np.split(x @ k + h @ rk + b, 4)
        i, f, o = ract(zi), ract(zf), ract(zo)
        c = f * c + i * act(zc)
        h = o * act(c)
        out.append(h)
    return np.array(out)


def keras_simple_rnn(X, kernel, recurrent_kernel, bias, activation="tanh", version=3):
    """Keras SimpleRNN: h' = act(x K + h R + b)."""
    k, rk = np.asarray(kernel, np.float64), np.asarray(recurrent_kernel, np.float64)
    act = _keras_act(activation, version)
    b = np.zeros(rk.shape[0]) if bias is None else np.asarray(bias, np.float64)
    h, out = np.zeros(rk.shape[0]), []
    for x in np.asarray(X, np.float64):
        h = act(x @ k + h @ rk + b)
        out.append(h)
    return np.array(out)


def keras_dense(X, kernel, bias, activation="linear"):
    """Keras Dense on each row: act(x K + b); softmax over the last axis."""
    y = np.asarray(X, np.float64) @ np.asarray(kernel, np.float64)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    if activation == "softmax":
        e = np.exp(y - y.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return _keras_act(activation, 3)(y)


# ----------------------------------------------------------------------------
# convolution and normalisation, computed offline over the whole sequence


def conv1d_offline(layer, X, history=None):
    """The causal dilated grouped convolution of the whole sequence X (T, C_in):

        y_t[o] = act(b[o] + sum_i W[o, :, i] . x_{t - (k-1-i)*d}[group of o])

    with x_s = 0 for s < 0, or x_s = history[L + s] (L = (k-1)*d) when the
    L inputs before the sequence are given."""
    X = np.asarray(X, dtype=np.float64)
    W, b = f64(layer, "weight"), f64(layer, "bias")
    C_out, cin_g, k = W.shape
    d, G = layer.dilation, layer.groups
    cout_g = C_out // G
    L = (k - 1) * d
    T = len(X)
    past = np.zeros((L, X.shape[1])) if history is None else np.asarray(history, np.float64)
    P = np.concatenate([past, X])  # P[L + t] = x_t: the zero-padded sequence
    Y = np.tile(b, (T, 1))
    for i in range(k):
        lag = (k - 1 - i) * d
        shifted = P[L - lag : L - lag + T]  # row t is x_{t - lag}
        for g in range(G):
            rows, cols = slice(g * cout_g, (g + 1) * cout_g), slice(g * cin_g, (g + 1) * cin_g)
            Y[:, rows] += shifted[:, cols] @ W[rows, :, i].T
    return np.array([activate(layer.activation, y) for y in Y]).reshape(T, C_out), P


def conv_history(layer, state):
    """The L inputs before now, oldest first, from a Conv1d state (position p,
    then L slots; slot (p + m) % L holds the m-th oldest)."""
    L, C = layer.history, layer.input_size
    if L == 0:
        return np.zeros((0, C))
    p = int(state[0]) if 0 <= state[0] < L else 0
    slots = np.asarray(state[1:], np.float64).reshape(L, C)
    return np.array([slots[(p + m) % L] for m in range(L)])


def conv_state(layer, state, T, P):
    """The Conv1d state after T more inputs: the last L rows of the padded
    sequence P, laid out in the ring from the advanced position."""
    L, C = layer.history, layer.input_size
    if L == 0:
        return np.zeros(0)
    p0 = int(state[0]) if 0 <= state[0] < L else 0
    p = (p0 + T) % L
    slots = np.zeros((L, C))
    last = P[len(P) - L :]
    for m in range(L):
        slots[(p + m) % L] = last[m]
    return np.concatenate([[p], slots.ravel()])


def batchnorm(layer, x):
    """(x - mean) / sqrt(var + eps) * weight + bias."""
    return ((x - f64(layer, "running_mean")) / np.sqrt(f64(layer, "running_var") + layer.eps)
            * f64(layer, "weight") + f64(layer, "bias"))


def layernorm(layer, x):
    """(x - mean(x)) / sqrt(var(x) + eps) * weight + bias, over the features."""
    mu = x.mean()
    var = ((x - mu) ** 2).mean()
    return (x - mu) / np.sqrt(var + layer.eps) * f64(layer, "weight") + f64(layer, "bias")


def prelu(layer, x):
    """x where x >= 0, else slope * x (one slope per channel, or shared)."""
    return np.where(x >= 0, x, f64(layer, "weight") * x)


STATELESS = {"dense": dense, "batchnorm": batchnorm, "layernorm": layernorm, "prelu": prelu}


def _layer_offline(layer, V, st):
    """One layer over the whole sequence V from its state ``st``: (outputs, final state)."""
    if layer.kind == "conv1d":
        V, P = conv1d_offline(layer, V, conv_history(layer, st))
        return V, conv_state(layer, st, len(V), P)
    if layer.kind in STATELESS:
        return np.array([STATELESS[layer.kind](layer, v) for v in V]).reshape(
            len(V), layer.output_size), st
    out = []
    for v in V:
        y, st = layer_step(layer, v, st)
        out.append(y)
    return np.array(out).reshape(len(V), layer.output_size), st


def run_offline(model, X, state=None):
    """Run ``model`` over the whole sequence X layer by layer (a conv over
    the entire padded sequence at once, recurrent layers step by step), from
    ``state`` (default: its initial state). Returns (outputs, final state)."""
    if model.graph is not None:
        return run_graph_offline(model, X, state)
    V = np.asarray(X, dtype=np.float64)
    full = np.array(model.initial_state if state is None else state, dtype=np.float64)
    finals, off = [], 0
    for layer in model.layers:
        st = full[off : off + layer.state_size]
        off += layer.state_size
        V, st = _layer_offline(layer, V, st)
        finals.append(st)
    return V, (np.concatenate(finals) if finals else np.zeros(0))


# ----------------------------------------------------------------------------
# RTNeural's documented math on its JSON layout (the arrays as the file holds
# them, Keras's layout), per sample in time order, as RTNeural runs it


def rtneural_conv1d(X, kernel, bias, dilation, groups=1):
    """RTNeural's always-causal conv1d over the rows of X (T, C_in): kernel
    (k, C_in / groups, C_out), ``kernel[i]`` multiplies x[t - (k-1-i)*d]
    (x = 0 before the first sample); output o reads input group o // (C_out/groups)."""
    X = np.asarray(X, np.float64)
    K = np.asarray(kernel, np.float64)
    k, cin_g, C_out = K.shape
    cout_g = C_out // groups
    Y = np.zeros((len(X), C_out))
    for t in range(len(X)):
        y = np.zeros(C_out) if bias is None else np.array(bias, np.float64)
        for i in range(k):
            s = t - (k - 1 - i) * dilation
            if s < 0:
                continue
            for o in range(C_out):
                g = o // cout_g
                y[o] += X[s, g * cin_g:(g + 1) * cin_g] @ K[i, :, o]
        Y[t] = y
    return Y


def rtneural_batchnorm(X, weights, epsilon):
    """gamma * (x - mean) / sqrt(var + epsilon) + beta; weights [gamma, beta,
    mean, var] or [mean, var]."""
    w = [np.asarray(a, np.float64) for a in weights]
    gamma, beta = (w[0], w[1]) if len(w) == 4 else (1.0, 0.0)
    mean, var = w[-2], w[-1]
    return gamma * (np.asarray(X, np.float64) - mean) / np.sqrt(var + epsilon) + beta


def rtneural_prelu(X, alpha):
    """x where x >= 0, else alpha * x; alpha is the first row of weights[0]
    (one value: shared by every channel)."""
    X = np.asarray(X, np.float64)
    a = np.asarray(alpha, np.float64)[0]
    return np.where(X >= 0, X, a * X)


RTNEURAL_ACTIVATIONS = {
    "": lambda a: a, "tanh": np.tanh, "relu": lambda a: np.maximum(a, 0.0), "sigmoid": sigmoid,
    "elu": lambda a: np.where(a >= 0, a, np.exp(a) - 1.0),
    "softmax": lambda a: np.exp(a - a.max(-1, keepdims=True))
    / np.exp(a - a.max(-1, keepdims=True)).sum(-1, keepdims=True),
}


def rtneural_run(doc, X):
    """Run an RTNeural JSON document's layers over the rows of X."""
    V = np.asarray(X, np.float64)
    for layer in doc["layers"]:
        kind, w = layer["type"], layer["weights"]
        act = RTNEURAL_ACTIVATIONS[layer.get("activation", "")]
        last = lambda v: v[-1] if isinstance(v, list) else v  # noqa: E731
        if kind == "conv1d":
            V = act(rtneural_conv1d(V, w[0], w[1] if len(w) > 1 else None, last(layer["dilation"]),
                                    last(layer.get("groups", 1))))
        elif kind == "batchnorm":
            V = rtneural_batchnorm(V, w, layer["epsilon"])
        elif kind == "prelu":
            V = rtneural_prelu(V, w[0])
        elif kind in ("dense", "time-distributed-dense"):
            V = act(V @ np.asarray(w[0], np.float64) + (np.asarray(w[1], np.float64)
                                                         if len(w) > 1 else 0.0))
        elif kind == "activation":
            V = act(V)
        elif kind == "gru":
            V = keras_gru(V, w[0], w[1], w[2], reset_after=True)
        elif kind == "lstm":
            V = keras_lstm(V, w[0], w[1], w[2])
        else:
            raise ValueError(f"no reference for RTNeural layer {kind}")
    return V


# ----------------------------------------------------------------------------
# padded and strided convolution, pooling: offline the way PyTorch computes
# them (pad both ends of the whole sequence, then one output every s samples)


def conv1d_padded(layer, X):
    """torch.nn.Conv1d with ``layer.padding = (left, right)`` zeros and stride s:

        y_j[o] = act(b[o] + sum_i W[o, :, i] . xp_{j*s + i*d}[group of o])

    over the padded sequence xp (left zeros, X, right zeros), for every j
    whose window fits: (len(xp) - (k-1)*d - 1) // s + 1 outputs."""
    X = np.asarray(X, dtype=np.float64)
    W, b = f64(layer, "weight"), f64(layer, "bias")
    C_out, cin_g, k = W.shape
    d, G, s = layer.dilation, layer.groups, layer.stride
    left, right = layer.padding
    P = np.concatenate([np.zeros((left, X.shape[1])), X, np.zeros((right, X.shape[1]))])
    n = max(0, (len(P) - (k - 1) * d - 1) // s + 1)
    cout_g = C_out // G
    Y = np.tile(b, (n, 1))
    for j in range(n):
        for i in range(k):
            x = P[j * s + i * d]
            for g in range(G):
                rows = slice(g * cout_g, (g + 1) * cout_g)
                Y[j, rows] += W[rows, :, i] @ x[g * cin_g : (g + 1) * cin_g]
    return np.array([activate(layer.activation, y) for y in Y]).reshape(n, C_out)


def pool_offline(layer, X):
    """torch.nn.MaxPool1d / AvgPool1d: windows of k samples (spacing d) every
    s samples over X padded by p on both ends; max ignores the padding,
    average divides by k (count_include_pad) or by the samples in the window."""
    X = np.asarray(X, dtype=np.float64)
    k, s, p, d = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    # no samples (an earlier pool or stride left none): torch refuses such an
    # input, and a stream that has seen no sample has emitted no row
    n = max(0, (len(X) + 2 * p - (k - 1) * d - 1) // s + 1) if len(X) else 0
    Y = np.zeros((n, X.shape[1]))
    for j in range(n):
        idx = [j * s - p + i * d for i in range(k)]
        inside = [X[t] for t in idx if 0 <= t < len(X)]
        if layer.kind == "maxpool1d":
            # torch pads max with -inf: a window wholly in the padding (the
            # end's, when dilation spans it) is -inf
            Y[j] = np.max(inside, axis=0) if inside else -np.inf
        else:
            Y[j] = np.sum(inside, axis=0) / (k if layer.count_include_pad else len(inside))
    return Y


def run_padded(model, X):
    """The offline model over the whole sequence X from its initial state,
    each convolution and pool with its own padding and stride (so the
    output may be shorter or longer than X)."""
    V = np.asarray(X, dtype=np.float64)
    for layer in model.layers:
        if layer.kind == "conv1d":
            V = conv1d_padded(layer, V)
        elif layer.kind in ("maxpool1d", "avgpool1d"):
            V = pool_offline(layer, V)
        elif layer.kind in STATELESS:
            V = np.array([STATELESS[layer.kind](layer, v) for v in V]).reshape(len(V), layer.output_size)
        else:
            st, out = np.zeros(layer.state_size), []
            for v in V:
                y, st = layer_step(layer, v, st)
                out.append(y)
            V = np.array(out).reshape(len(V), layer.output_size)
    return V

def elementwise(op, A, B=None):
    """A graph's element-wise op over whole sequences (rows = time steps)."""
    act = lambda a, V: np.array([activate(a, v) for v in V]).reshape(V.shape)  # noqa: E731
    if op.op == "add":
        return act(op.activation, A + B)
    if op.op == "mul":
        return act(op.activation, A * B)
    if op.op == "slice":
        return act(op.activation, op.scale * A[:, op.offset : op.offset + op.output_size])
    if op.op == "concat":
        return act(op.activation, np.concatenate([A, B], axis=1))
    C = op.output_size
    first, second = A[:, :C], act(op.secondary, A[:, C:])
    if op.op == "gate":
        return act(op.activation, first) * second
    return second * act(op.activation, first) + (1 - second) * first  # blend


def run_graph_offline(model, X, state=None):
    """A graph model over the whole sequence: node 0 is X, node j + 1 layer
    j's outputs computed from the nodes ``model.graph[j]`` names. Returns
    (outputs, final state), the state laid out layer by layer as for a chain."""
    nodes = [np.asarray(X, dtype=np.float64)]
    full = np.array(model.initial_state if state is None else state, dtype=np.float64)
    finals, off = [], 0
    for layer, ins in zip(model.layers, model.graph):
        st = full[off : off + layer.state_size]
        off += layer.state_size
        if layer.kind == "elementwise":
            V = elementwise(layer, *[nodes[j] for j in ins])
        else:
            V, st = _layer_offline(layer, nodes[ins[0]], st)
        nodes.append(V)
        finals.append(st)
    return nodes[-1], (np.concatenate(finals) if finals else np.zeros(0))
