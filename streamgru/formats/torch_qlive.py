"""Live ``torch.ao`` dynamic-quantized modules (``quantize_dynamic``'s
``DynamicQuantizedGRU`` / ``LSTM`` / ``Linear``) to canonical layers whose
weights keep the module's own int8 values and scales (or float16 values).

Their weights live in packed TorchScript objects; the module's own accessors
unpack them: ``_all_weight_values[k].param.__getstate__()`` (a recurrent
layer's ``(kind, tensors, doubles, longs, [packed_ih, packed_hh])``, each
packed weight's state ``(weight, bias)``) and ``Linear._weight_bias()``. A
quantized weight gives its integers (``int_repr``) and quantizer
(``q_scale`` / ``q_per_channel_scales``, zero points, axis); torch's gate
order is already the canonical one (GRU r, z, n; LSTM i, f, g, o).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import WeightsError
from ..layers import GRU, LSTM, Dense, Layer
from ..layers.quant import QuantizedWeight
from .qweights import affine_int8, exact_float16

__all__ = ["quantized_types", "recurrent_types", "layers"]


def quantized_types(torch: Any) -> tuple:
    """(GRU, LSTM, Linear) of ``torch.ao.nn.quantized.dynamic``, or () where
    this torch build has no quantization."""
    try:
        from torch.ao.nn.quantized import dynamic as qd
    except ImportError:  # pragma: no cover - every CPU build has it
        return ()
    return (qd.GRU, qd.LSTM, qd.Linear)


def recurrent_types(torch: Any) -> tuple:
    """The recurrent module types that take a sequence (float and quantized)."""
    nn = torch.nn
    return (nn.GRU, nn.LSTM, nn.RNN) + quantized_types(torch)[:2]


def _weight(torch: Any, w: Any, what: str) -> QuantizedWeight:
    w = w.detach().to("cpu")
    if not w.is_quantized:
        # float16 dynamic quantization unpacks its float16 weights as float32
        return exact_float16(w.double().numpy(), what)
    scheme = w.qscheme()
    if scheme == torch.per_tensor_affine:
        scale, zero = np.float64(w.q_scale()), w.q_zero_point()
    elif scheme == torch.per_channel_affine:
        if w.q_per_channel_axis() != 0:
            raise WeightsError(f"{what}: per-channel quantization along axis "
                               f"{w.q_per_channel_axis()}; streamgru reads one scale per output row")
        scale = w.q_per_channel_scales().double().numpy()
        zero = w.q_per_channel_zero_points().numpy()
    else:
        raise WeightsError(f"{what}: quantization scheme {scheme} is not read "
                           f"(per_tensor_affine and per_channel_affine are)")
    return affine_int8(w.int_repr().numpy(), scale, zero, what)


def _bias(b: Any) -> np.ndarray | None:
    return None if b is None else b.detach().to("cpu").double().numpy()


def layers(torch: Any, name: str, mod: Any) -> list[Layer]:
    """The canonical layers of one dynamic-quantized module."""
    q_gru, q_lstm, q_linear = quantized_types(torch)
    label = f"module {name} ({type(mod).__name__})"
    if isinstance(mod, q_linear):
        w, b = mod._weight_bias()
        return [Dense(_weight(torch, w, f"{label} weight"), _bias(b))]
    if mod.bidirectional:
        raise WeightsError(
            f"{label} is bidirectional; a bidirectional layer reads the sequence backwards from "
            f"its end, so it needs the future and cannot run one sample at a time"
        )
    out: list[Layer] = []
    for k in range(mod.num_layers):
        state = mod._all_weight_values[k].param.__getstate__()[0]
        kind, packed = state[0], state[4]
        if kind not in ("quantized_dynamic", "quantized_fp16"):
            raise WeightsError(f"{label}: layer {k} holds cell parameters of kind {kind!r}; "
                               f"streamgru reads dynamic int8 and float16 quantization")
        (w_ih, b_ih), (w_hh, b_hh) = (p.__getstate__()[0] for p in packed)
        args = (_weight(torch, w_ih, f"{label} weight_ih_l{k}"),
                _weight(torch, w_hh, f"{label} weight_hh_l{k}"), _bias(b_ih), _bias(b_hh))
        out.append(LSTM.from_torch(*args) if isinstance(mod, q_lstm) else GRU.from_torch(*args))
    return out
