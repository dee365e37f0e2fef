"""The recurrent nodes: ONNX ``GRU``, ``LSTM`` and ``RNN`` become canonical
layers (``GRU.from_onnx`` and friends convert ONNX's z, r, h / i, o, f, c
gate order and ``B = [Wb; Rb]``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import WeightsError
from ...layers import GRU, LSTM, RNN
from . import quant
from .values import (_Const, _Fill, _Graph, _Poison, _Stream, _Unstreamable, _describe_axes,
                     _materialize, _opt)


def _const_input(g: _Graph, v: Any, name: str) -> np.ndarray | None:
    if v is None:
        return None
    arr = _materialize(g, v)
    if arr is None:
        raise g.fail(f"input {name} must be a constant (an initializer), not computed from data")
    return arr


def _weight_input(g: _Graph, v: Any, name: str) -> Any:
    """W or R: the file's int8 values and scales if it is a DequantizeLinear
    of int8 constants (its rows, axis 0 of (gates*H, in), are the outputs),
    else the constant's float values."""
    q = quant.weight(g, v, name, 0, False)
    return _const_input(g, v, name) if q is None else q


def _initial(g: _Graph, v: Any, H: int, layout: int, name: str) -> np.ndarray | None:
    """One stream's initial state from an ``initial_h`` / ``initial_c`` input
    (shape (1, batch, H), or (batch, 1, H) with layout 1)."""
    if v is None:
        return None
    if isinstance(v, _Stream):
        raise g.fail(f"{name} is computed from the input data; a stream starts from a fixed state")
    if isinstance(v, _Fill):
        base, shape = v.base, v.shape
        if v.source is not None:
            g.state_sources.add(v.source)
    elif isinstance(v, _Const):
        base = v.value
        shape = tuple(base.shape)
    else:
        raise g.fail(f"{name} is not a tensor of known values")
    if base.ndim != 3 or (isinstance(shape[-1], int) and shape[-1] != H):
        raise WeightsError(f"{g.where()}: tensor {name}: expected shape (1, batch, {H}), got {shape}")
    if not np.all(np.isfinite(base)):
        raise WeightsError(f"{g.where()}: tensor {name}: contains NaN or inf")
    rows = base[0] if layout == 0 else base[:, 0]  # (batch, H) or broadcastable
    if rows.shape[-1] not in (1, H):
        raise WeightsError(f"{g.where()}: tensor {name}: expected {H} values per row, got {rows.shape[-1]}")
    if not np.all(rows == rows[:1]):
        raise g.fail(
            f"{name} differs between batch entries; a stream has one initial state "
            f"(save the model with one batch entry)"
        )
    return np.broadcast_to(np.asarray(rows[0], np.float64), (H,)).copy()


def _h_recurrent(g: _Graph, node: Any, ins: list, at: dict) -> list:
    """GRU-22 / LSTM-22 / RNN-22. Inputs X, W, R, B, sequence_lens, initial_h
    (LSTM: initial_c, P); outputs Y, Y_h (LSTM: Y_c). Also
    com.microsoft.DynamicQuantizeLSTM: the LSTM's inputs, then W_scale,
    W_zero_point, R_scale, R_zero_point."""
    op = node.op_type
    lstm = op in ("LSTM", "DynamicQuantizeLSTM")
    direction = at.get("direction", "forward")
    if direction != "forward":
        raise g.fail(
            f"direction={direction!r}: a {direction} {op} reads the sequence from its end, "
            f"so it needs the future and cannot stream; export a forward-only model"
        )
    x = ins[0]
    if not isinstance(x, _Stream):
        raise g.fail(f"input X is not the data stream (it is a {type(x).__name__})")
    if x.last:
        raise g.fail(
            "input X holds only the last time step of a previous layer; "
            "a recurrent layer needs every step"
        )
    layout = int(at.get("layout", 0))
    if layout not in (0, 1):
        raise WeightsError(f"{g.where()}: layout {layout} (expected 0 or 1)")
    if op == "DynamicQuantizeLSTM":  # com.microsoft: int8 W (dirs, I, 4H), R (dirs, H, 4H)
        W, R = quant.dynamic_lstm_weights(g, ins, list(node.input))
    else:  # a DequantizeLinear (QDQ) W or R keeps its int8 values and scales
        W, R = _weight_input(g, ins[1], "W"), _weight_input(g, ins[2], "R")
    B = _const_input(g, _opt(ins, 3), "B")
    # sequence_lens (input 4) is ignored: a stream has no sequence length
    acts = at.get("activations")
    alpha, beta = at.get("activation_alpha"), at.get("activation_beta")
    clip = at.get("clip")
    try:
        if op == "GRU":
            layer = GRU.from_onnx(W, R, B, int(at.get("linear_before_reset", 0)), clip,
                                  acts, alpha, beta)
        elif lstm:
            P = _const_input(g, _opt(ins, 7), "P")
            layer = LSTM.from_onnx(W, R, B, P, int(at.get("input_forget", 0)), clip,
                                   acts, alpha, beta)
        else:
            if acts and len(acts) != 1:
                raise WeightsError(f"RNN activations has {len(acts)} entries, expected 1")
            act = acts[0] if acts else "Tanh"
            layer = RNN.from_onnx(W, R, B, act, clip, alpha, beta)
    except _Unstreamable:
        raise
    except WeightsError as exc:
        raise WeightsError(f"{g.where()}: {exc}") from None
    H = layer.hidden_size
    if "hidden_size" in at and int(at["hidden_size"]) != H:
        raise WeightsError(f"{g.where()}: hidden_size={at['hidden_size']} but tensor R has {H} rows per gate")

    # X is (seq, batch, input) with layout 0, (batch, seq, input) with layout 1
    if len(x.axes) != 3:
        raise g.mismatch(f"input X has axes {_describe_axes(x)}; expected 3 (time, batch, features)")
    t_ax, b_ax = (0, 1) if layout == 0 else (1, 0)
    batch = x.axes[b_ax]
    if x.axes[t_ax] != ("T",) or g.core(x.axes[2]) != ("F",) or g.core(batch) not in ((), ("N",)):
        order = "(time, batch, features)" if layout == 0 else "(batch, time, features)"
        raise g.mismatch(f"input X has axes {_describe_axes(x)}; layout={layout} needs {order}")
    if x.features != layer.input_size:
        raise WeightsError(
            f"{g.where()}: tensor W takes {layer.input_size} inputs but X has {x.features} features"
        )

    h0 = _initial(g, _opt(ins, 5), H, layout, "initial_h")
    init = h0
    if lstm:
        c0 = _initial(g, _opt(ins, 6), H, layout, "initial_c")
        if h0 is not None or c0 is not None:
            init = np.concatenate([np.zeros(H) if h0 is None else h0, np.zeros(H) if c0 is None else c0])
    layers = x.layers + ((layer, init),)
    if layout == 0:
        y_axes, yh_axes = (("T",), (), batch, ("F",)), ((), batch, ("F",))
    else:
        y_axes, yh_axes = (batch, ("T",), (), ("F",)), (batch, (), ("F",))
    y = _Stream(y_axes, H, layers, steps=x.steps)
    y_h = _Stream(yh_axes, H, layers, last=True, steps=x.steps)
    outs: list = [y, y_h]
    if lstm:
        outs.append(_Poison(g.fail("Y_c (the cell state) is not an output a stream produces")))
    return outs
