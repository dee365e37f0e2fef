"""GuitarML / Automated-GuitarAmpModelling ``SimpleRNN`` JSON (read through
``rtneural.load``, which tells the layouts apart).

The trainer's ``SimpleRNN.save_model`` writes::

    {"model_data": {"model": "SimpleRNN", "input_size", "skip", "output_size",
                    "unit_type": "LSTM" | "GRU" | "RNN", "num_layers",
                    "hidden_size", "bias_fl"},
     "state_dict": {"rec.weight_ih_l0": [[...]], "rec.weight_hh_l0", "rec.bias_ih_l0",
                    "rec.bias_hh_l0", ..., "lin.weight", "lin.bias" (if bias_fl)}}

``rec`` is a ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` (tanh) with ``num_layers``
layers and ``lin`` an ``nn.Linear``: the state dict is already canonical
(PyTorch) form. ``forward`` returns ``lin(rec(x)) + x[..., 0:skip]`` when
``skip > 0``: the Model's ``input_skip=0`` (``skip`` must equal
``output_size``, as the addition needs). Streams start from zeros, as
``reset_hidden`` does.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import WeightsError
from ..layers import GRU, LSTM, RNN, Dense, Layer
from ..model import Model
from . import jsonfile
from .guard import Budget
from .jsonfile import field, positive_int

CELLS = {"LSTM": LSTM, "GRU": GRU, "RNN": RNN}
MAX_LAYERS = 256


def _tensor(sd: dict, key: str, ndim: int, path: str, budget: Budget):
    if key not in sd:
        raise WeightsError(f"{path}: tensor state_dict[{key!r}] is missing")
    return jsonfile.array(sd[key], f"{path}: tensor state_dict[{key!r}]", ndim, budget)


def from_document(doc: dict, path: str, dtype: Any, budget: Budget) -> Model:
    """The Model a GuitarML ``SimpleRNN`` document describes."""
    where = f"{path}: model_data"
    md = field(doc, "model_data", path, (dict,))
    model = field(md, "model", where, (str,))
    if model != "SimpleRNN":
        raise WeightsError(f"{where}: model {model!r} is not supported; streamgru reads "
                           f"GuitarML's SimpleRNN (one recurrent unit and a linear layer)")
    unit = field(md, "unit_type", where, (str,))
    if unit not in CELLS:
        raise WeightsError(f"{where}: unit_type {unit!r}; expected one of {', '.join(CELLS)}")
    n_in = positive_int(md, "input_size", where)
    hidden = positive_int(md, "hidden_size", where)
    n_out = positive_int(md, "output_size", where)
    n_layers = positive_int(md, "num_layers", where, MAX_LAYERS)
    skip = field(md, "skip", where, (int,), default=0)
    bias_fl = field(md, "bias_fl", where, (bool, int), default=True)
    sd = field(doc, "state_dict", path, (dict,))

    expected = [f"rec.{n}_l{k}" for k in range(n_layers)
                for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    expected += ["lin.weight"] + (["lin.bias"] if bias_fl else [])
    extra = [k for k in sd if k not in expected]
    if extra:
        raise WeightsError(
            f"{path}: tensor state_dict[{extra[0]!r}] is unexpected: a {n_layers}-layer "
            f"{unit} SimpleRNN has {', '.join(expected)}"[:400]
        )
    layers: list[Layer] = []
    cls = CELLS[unit]
    size = n_in
    for k in range(n_layers):
        arrays = [_tensor(sd, f"rec.{n}_l{k}", nd, path, budget)
                  for n, nd in (("weight_ih", 2), ("weight_hh", 2), ("bias_ih", 1), ("bias_hh", 1))]
        try:
            layer = cls.from_torch(*arrays)  # torch layout: already canonical
        except WeightsError as exc:
            raise WeightsError(f"{path}: rec layer {k} ({unit}): {exc}") from None
        if layer.input_size != size or layer.hidden_size != hidden:
            raise WeightsError(
                f"{path}: tensor state_dict['rec.weight_ih_l{k}']: a {unit} layer "
                f"{layer.input_size}->{layer.hidden_size}, but model_data says "
                f"{size}->{hidden}")
        layers.append(layer)
        size = hidden
    weight = _tensor(sd, "lin.weight", 2, path, budget)
    bias = _tensor(sd, "lin.bias", 1, path, budget) if bias_fl else None
    if weight.shape != (n_out, hidden):
        raise WeightsError(f"{path}: tensor state_dict['lin.weight']: expected shape "
                           f"({n_out}, {hidden}) from model_data, got {weight.shape}")
    try:
        layers.append(Dense(weight, bias))
    except WeightsError as exc:
        raise WeightsError(f"{path}: lin: {exc}") from None
    if skip not in (0, n_out) or skip > n_in:
        raise WeightsError(
            f"{where}: skip={skip}: forward adds x[..., 0:{skip}] to the {n_out} outputs; "
            f"streamgru needs skip 0 or equal to output_size (and at most input_size {n_in})"
        )
    metadata = {
        "format": "guitarml",
        "source": os.path.basename(path),
        "conventions": f"PyTorch SimpleRNN state dict ({unit} gate order of torch, "
                       f"y = lin(rec(x)){' + x[..., 0:%d]' % skip if skip else ''})",
        "skip": skip,
    }
    try:
        return Model(layers, dtype=dtype, metadata=metadata,
                     input_skip=0 if skip else None)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
