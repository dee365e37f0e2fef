"""Neural Amp Modeler ``.nam`` files with the WaveNet architecture, as graph models.

``config`` holds ``layers`` (the layer arrays), ``head`` (null or a head
config) and ``head_scale``; ``weights`` is one flat list. Two generations of
layer-array config are read:

- NAM 0.5-0.12 ("legacy"): ``input_size``, ``condition_size``, ``channels``,
  ``kernel_size`` (one int), ``dilations``, ``activation`` (a name),
  ``gated``, ``head_size``, ``head_bias``;
- NAM 0.13: ``head`` ``{out_channels, kernel_size, bias}``, ``kernel_sizes``,
  ``activation`` / ``gating_mode`` / ``secondary_activation`` per layer,
  ``bottleneck``, ``layer1x1`` / ``head1x1`` ``{active, groups, ...}``,
  ``groups_input``, ``groups_input_mixin`` and the FiLM switches (refused
  when active), ``slimmable`` (refused unless null).

The math of one layer array (NAM's ``LayerArray`` / ``_Layer`` forward; x the
model input, which is also the condition c fed to every layer)::

    h = rechannel(y)                                # 1x1 conv, no bias
    for each layer (kernel k, dilation d):
        z = conv_kd(h) + input_mixer(c)             # dilated conv (bias), 1x1 mixer (no bias)
        p = act(z)  |  act(z[:B]) * act2(z[B:])  (gated)  |  blend (blended)
        h = h + layer1x1(p)                         # or h + p with layer1x1 inactive
        head = head + (head1x1(p) or p)             # the first layer starts the sum
    y, head = h, head_rechannel(head)               # conv of head.kernel_size (bias per config)

The arrays run in order, each taking the previous ``y`` and ``head``; the
output is ``head_scale * head`` (then, with a ``head`` config, its blocks of
activation then conv). Every conv is causal: NAM's valid convs over a start
padded with R - 1 zeros (R the receptive field) are exactly this stream
started from its settled response to R - 1 zeros, which ``load`` computes
once and makes the model's initial state.

Weight order (NAM's ``export_weights`` / ``import_weights``; torch
``Conv1d`` tensors flattened row-major, weight (out, in/groups, k) then bias):

    for each layer array:
        rechannel.weight            (channels, input_size, 1)
        for each layer:
            conv.weight, conv.bias  (M, channels/groups_input, k), (M,)
                                    M = 2*bottleneck if gated/blended else bottleneck
            input_mixer.weight      (M, condition_size/groups_input_mixin, 1)
            layer1x1.weight, .bias  (channels, bottleneck/groups, 1), (channels,)  if active
            head1x1.weight, .bias   (out, bottleneck/groups, 1), (out,)            if active
        head_rechannel.weight       (head_out, head_in, head_kernel)
        head_rechannel.bias         (head_out,)                                    if head bias
    head blocks (head config only): conv.weight, conv.bias per block
    head_scale                      (the last number; as NAM's import_weights does, config's
                                     head_scale is kept when within 1e-5 of it, float32's
                                     rounding of it, else the weight is used)

Legacy files are the same order with bottleneck = channels, layer1x1
active, head1x1 inactive, head_kernel = 1, head_out = head_size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field as dc_field
from typing import Any

import numpy as np

from ..errors import WeightsError
from ..graph import Input, Node
from ..layers import Conv1d, make_activation
from ..layers.elementwise import Elementwise
from ..model import Model
from . import jsonfile
from .jsonfile import field, positive_int

MAX_ARRAYS = 64
MAX_LAYERS = 1024
MAX_CHANNELS = 1 << 12
MAX_DILATION = 1 << 20
# NAM activation (torch.nn class name) -> streamgru activation and its parameter
_ACTS = {"Tanh": "tanh", "ReLU": "relu", "Sigmoid": "sigmoid", "Identity": "identity",
         "LeakyReLU": "leaky_relu", "ELU": "elu", "GELU": "gelu", "Hardsigmoid": "hard_sigmoid"}


@dataclass
class _Array:
    input_size: int
    condition_size: int
    channels: int
    bottleneck: int
    kernel_sizes: list[int]
    dilations: list[int]
    acts: list[tuple[Any, str, Any]]  # (primary, gating mode, secondary)
    head_out: int
    head_kernel: int
    head_bias: bool
    layer1x1: tuple[bool, int] = (True, 1)
    head1x1: tuple[bool, int, int] = (False, 1, 1)
    groups_input: int = 1
    groups_mixin: int = 1
    head_in: int = dc_field(init=False, default=0)


def _activation(spec: Any, where: str):
    """A NAM activation (``"Tanh"`` or ``{"type": "LeakyReLU", "negative_slope": a}``)."""
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, dict) and isinstance(spec.get("type", spec.get("name")), str):
        params = dict(spec)
        name = params.pop("type", None) or params.pop("name")
    else:
        raise WeightsError(f"{where}: activation must be a name or {{'type': name}}, got "
                           f"{jsonfile.kind(spec)}")
    if name not in _ACTS:
        raise WeightsError(f"{where}: activation {name!r} is not supported (streamgru reads "
                           f"{', '.join(sorted(_ACTS))})"[:300])
    if name == "LeakyReLU":
        return make_activation("leaky_relu", alpha=float(params.get("negative_slope", 0.01)))
    if name == "ELU":
        return make_activation("elu", alpha=float(params.get("alpha", 1.0)))
    if name == "Hardsigmoid":  # torch: relu6(x + 3) / 6
        return make_activation("hard_sigmoid", alpha=1.0 / 6.0, beta=0.5)
    if name == "GELU" and params.get("approximate", "none") != "none":
        raise WeightsError(f"{where}: GELU(approximate={params['approximate']!r}) is not supported")
    return make_activation(_ACTS[name])


def _per_layer(value: Any, n: int, key: str, where: str) -> list:
    if isinstance(value, list):
        if len(value) != n:
            raise WeightsError(f"{where}: {key!r} has {len(value)} entries for {n} dilations")
        return value
    return [value] * n


def _int_list(obj: dict, key: str, where: str, limit: int) -> list[int]:
    value = field(obj, key, where, (list, int))
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > MAX_LAYERS or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= limit for v in items):
        raise WeightsError(f"{where}: {key!r} must be 1 to {MAX_LAYERS} whole numbers from 1 "
                           f"to {limit}")
    return items


def _parse_array(lc: Any, where: str) -> _Array:
    if not isinstance(lc, dict):
        raise WeightsError(f"{where}: expected a JSON object, got {jsonfile.kind(lc)}")
    pos = lambda key: positive_int(lc, key, where, MAX_CHANNELS)  # noqa: E731
    dil = _int_list(lc, "dilations", where, MAX_DILATION)
    n = len(dil)
    legacy = "head_size" in lc
    if legacy:
        ks = _per_layer(field(lc, "kernel_size", where, (int,)), n, "kernel_size", where)
        gated = field(lc, "gated", where, (bool,), default=False)
        prim = _activation(field(lc, "activation", where, (str, dict)), where)
        acts = [(prim, "gated" if gated else "none", make_activation("sigmoid"))] * n
        arr = _Array(pos("input_size"), pos("condition_size"), pos("channels"), 0, ks, dil,
                     acts, pos("head_size"), 1, field(lc, "head_bias", where, (bool,)))
        arr.bottleneck = arr.channels
    else:
        key = "kernel_sizes" if "kernel_sizes" in lc else "kernel_size"
        ks = _per_layer(field(lc, key, where, (int, list)), n, key, where)
        modes = _per_layer(field(lc, "gating_mode", where, (list, str), default="none"), n,
                           "gating_mode", where)
        seconds = _per_layer(field(lc, "secondary_activation", where, (list, dict, str),
                                   default=None) if "secondary_activation" in lc else None, n,
                             "secondary_activation", where)
        prims = _per_layer(field(lc, "activation", where, (list, str, dict)), n, "activation",
                           where)
        acts = []
        for i, (p, m, s) in enumerate(zip(prims, modes, seconds)):
            w = f"{where}, layer {i}"
            if m not in ("none", "gated", "blended"):
                raise WeightsError(f"{w}: gating_mode {m!r} is not one of none, gated, blended")
            acts.append((_activation(p, w), m, None if m == "none" else _activation(s, w)))
        head = field(lc, "head", where, (dict,))
        hw = f"{where}: head"
        l1 = field(lc, "layer1x1", where, (dict,), default={"active": True, "groups": 1})
        h1 = field(lc, "head1x1", where, (dict,), default={"active": False})
        arr = _Array(pos("input_size"), pos("condition_size"), pos("channels"),
                     positive_int(lc, "bottleneck", where, MAX_CHANNELS) if "bottleneck" in lc
                     else 0, ks, dil, acts, positive_int(head, "out_channels", hw, MAX_CHANNELS),
                     positive_int(head, "kernel_size", hw, MAX_DILATION),
                     field(head, "bias", hw, (bool,)),
                     (field(l1, "active", where + ": layer1x1", (bool,)),
                      positive_int(l1, "groups", where + ": layer1x1", MAX_CHANNELS)
                      if "groups" in l1 else 1),
                     (field(h1, "active", where + ": head1x1", (bool,)),
                      positive_int(h1, "out_channels", where + ": head1x1", MAX_CHANNELS)
                      if "out_channels" in h1 else 1,
                      positive_int(h1, "groups", where + ": head1x1", MAX_CHANNELS)
                      if "groups" in h1 else 1),
                     positive_int(lc, "groups_input", where, MAX_CHANNELS)
                     if "groups_input" in lc else 1,
                     positive_int(lc, "groups_input_mixin", where, MAX_CHANNELS)
                     if "groups_input_mixin" in lc else 1)
        arr.bottleneck = arr.bottleneck or arr.channels
        for key, value in lc.items():
            if key.endswith("_film") and isinstance(value, dict) and value.get("active"):
                raise WeightsError(f"{where}: FiLM ({key}) is not supported")
        if lc.get("slimmable") is not None or lc.get("packing") is not None:
            raise WeightsError(f"{where}: slimmable and packed layer arrays are not supported")
    if not all(isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 64 for k in ks):
        raise WeightsError(f"{where}: kernel sizes must be whole numbers from 1 to 64")
    arr.head_in = arr.head1x1[1] if arr.head1x1[0] else arr.bottleneck
    if not arr.layer1x1[0] and arr.bottleneck != arr.channels:
        raise WeightsError(f"{where}: without layer1x1 the bottleneck ({arr.bottleneck}) must "
                           f"equal channels ({arr.channels})")
    return arr


def _mid(arr: _Array, i: int) -> int:
    return arr.bottleneck * (1 if arr.acts[i][1] == "none" else 2)


def _conv_shapes(arr: _Array) -> list[tuple[str, tuple[int, ...] | None]]:
    """(tensor name, shape) of each weight and bias of a layer array, in file order."""
    out: list[tuple[str, tuple[int, ...] | None]] = [("rechannel.weight", (arr.channels, arr.input_size, 1))]
    for i, k in enumerate(arr.kernel_sizes):
        M = _mid(arr, i)
        out += [(f"layer {i} conv.weight", (M, arr.channels // arr.groups_input, k)),
                (f"layer {i} conv.bias", (M,)),
                (f"layer {i} input_mixer.weight", (M, arr.condition_size // arr.groups_mixin, 1))]
        if arr.layer1x1[0]:
            out += [(f"layer {i} layer1x1.weight",
                     (arr.channels, arr.bottleneck // arr.layer1x1[1], 1)),
                    (f"layer {i} layer1x1.bias", (arr.channels,))]
        if arr.head1x1[0]:
            out += [(f"layer {i} head1x1.weight",
                     (arr.head1x1[1], arr.bottleneck // arr.head1x1[2], 1)),
                    (f"layer {i} head1x1.bias", (arr.head1x1[1],))]
    out.append(("head_rechannel.weight", (arr.head_out, arr.head_in, arr.head_kernel)))
    if arr.head_bias:
        out.append(("head_rechannel.bias", (arr.head_out,)))
    return out


def _parse_head(head: Any, where: str, cin: int) -> list[tuple[Any, int, int, int]]:
    """The head's blocks as (activation, in, out, kernel size)."""
    act = _activation(field(head, "activation", where, (str, dict)), where)
    ch = positive_int(head, "channels", where, MAX_CHANNELS)
    out = positive_int(head, "out_channels", where, MAX_CHANNELS)
    if "kernel_sizes" in head:
        ks = _int_list(head, "kernel_sizes", where, 64)
    else:  # legacy: num_layers blocks of 1x1 convs
        ks = [1] * positive_int(head, "num_layers", where, MAX_LAYERS)
    blocks = []
    for i, k in enumerate(ks):
        cout = out if i == len(ks) - 1 else ch
        blocks.append((act, cin, cout, k))
        cin = ch
    return blocks


def receptive_field(arrays: list[_Array], head_blocks: list) -> int:
    """NAM's ``WaveNet.receptive_field``: 1 + every conv's (k - 1) * d on the way."""
    r = 1
    for a in arrays:
        r += sum((k - 1) * d for k, d in zip(a.kernel_sizes, a.dilations)) + a.head_kernel - 1
    return r + sum(k - 1 for _, _, _, k in head_blocks)


def _state_size(arrays: list[_Array], blocks: list) -> int:
    """Numbers in a stream's state: each conv's ring of (k - 1) * d past inputs."""
    n = 0
    for a in arrays:
        n += sum(1 + (k - 1) * d * a.channels for k, d in zip(a.kernel_sizes, a.dilations) if k > 1)
        n += 1 + (a.head_kernel - 1) * a.head_in if a.head_kernel > 1 else 0
    return n + sum(1 + (k - 1) * cin for _, cin, _, k in blocks if k > 1)


def build(path: str, doc: dict, version: str, dtype: Any, budget) -> Model:
    """The Model of a parsed WaveNet ``.nam`` document (nam.py has read and
    checked the file's JSON, version and architecture)."""
    config = field(doc, "config", path, (dict,))
    where = f"{path}: config"
    if config.get("condition_dsp") is not None:
        raise WeightsError(f"{where}: condition_dsp (a model computing the condition) is not "
                           f"supported")
    raw_arrays = field(config, "layers", where, (list,))
    if not 1 <= len(raw_arrays) <= MAX_ARRAYS:
        raise WeightsError(f"{where}: 'layers' must hold 1 to {MAX_ARRAYS} layer arrays")
    arrays = [_parse_array(lc, f"{where}: layer array {i}") for i, lc in enumerate(raw_arrays)]
    _check_sizes(arrays, where)
    head_cfg = config.get("head")
    blocks = [] if head_cfg is None else _parse_head(head_cfg, f"{where}: head", arrays[-1].head_out)
    shapes = [(f"layer array {i} {name}", shape) for i, a in enumerate(arrays)
              for name, shape in _conv_shapes(a)]
    for i, (_, cin, cout, k) in enumerate(blocks):
        shapes += [(f"head block {i} conv.weight", (cout, cin, k)), (f"head block {i} conv.bias", (cout,))]
    need = sum(int(np.prod(s)) for _, s in shapes) + 1
    raw = field(doc, "weights", path, (list,))
    if len(raw) != need:
        raise WeightsError(f"{path}: tensor weights: {len(raw)} numbers, but this WaveNet config "
                           f"has {need} (its convolutions, then head_scale)")
    w = jsonfile.array(raw, f"{path}: tensor weights", 1, budget)
    R = receptive_field(arrays, blocks)
    # the rings of past inputs (float64 for the warm-up, then the model's own
    # and a stream's), and the warm-up: R - 1 samples through every layer
    budget.take(24 * _state_size(arrays, blocks), "the convolutions' rings of past samples")
    budget.count(R * (len(shapes) + 1), "the WaveNet warm-up (receptive field x layers)")
    tensors: dict[str, np.ndarray] = {}
    off = 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        tensors[name] = w[off : off + n].reshape(shape)
        off += n
    head_scale = float(w[off])
    given = config.get("head_scale")
    if (isinstance(given, (int, float)) and not isinstance(given, bool) and np.isfinite(given)
            and abs(head_scale - given) <= 1e-5):
        head_scale = float(given)  # the exact value float32's weight list rounded
    try:
        out = _graph(arrays, blocks, tensors, head_scale)
        # NAM pads the start with R - 1 zeros: start from the settled response to them
        warm = Model(out, dtype=np.float64)
        s = warm.stream()
        s.process(np.zeros((R - 1, arrays[0].input_size)))
        metadata = {
            "format": "nam",
            "source": os.path.basename(path),
            "nam_version": version,
            "receptive_field": R,
            "conventions": "NAM WaveNet: torch Conv1d weights (out, in/groups, k) then bias, "
                           "layer arrays in order, head_scale last; initial state = the settled "
                           "response to receptive_field - 1 zeros (NAM's start padding)",
        }
        sample_rate = doc.get("sample_rate")
        if isinstance(sample_rate, (int, float)) and not isinstance(sample_rate, bool):
            metadata["sample_rate"] = sample_rate
        if isinstance(doc.get("metadata"), dict):
            metadata["file_metadata"] = doc["metadata"]
        return Model(out, dtype=np.float32 if dtype is None else dtype,
                     initial_state=s.get_state(), metadata=metadata)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None


def _check_sizes(arrays: list[_Array], where: str) -> None:
    """Channel counts that must agree between arrays, the condition and groups."""
    x = arrays[0].input_size
    prev = None
    for i, a in enumerate(arrays):
        w = f"{where}: layer array {i}"
        if prev is not None and a.input_size != prev.channels:
            raise WeightsError(f"{w}: input_size {a.input_size} but the previous array has "
                               f"{prev.channels} channels")
        if prev is not None and prev.head_out != a.head_in:
            raise WeightsError(f"{w}: its head sum has {a.head_in} channels but the previous "
                               f"array's head gives {prev.head_out}")
        if a.condition_size != x:
            raise WeightsError(f"{w}: condition_size {a.condition_size}, but the condition is "
                               f"the model input ({x} channel(s))")
        for g, c, name in ((a.groups_input, a.channels, "groups_input"),
                           (a.groups_mixin, a.condition_size, "groups_input_mixin"),
                           (a.layer1x1[1], a.bottleneck, "layer1x1 groups"),
                           (a.head1x1[2], a.bottleneck, "head1x1 groups")):
            if c % g:
                raise WeightsError(f"{w}: {name}={g} does not divide {c} channels")
        prev = a


def _conv(tensors: dict, name: str, bias: str | None = None, dilation: int = 1, groups: int = 1):
    try:
        return Conv1d(tensors[name], None if bias is None else tensors[bias], dilation=dilation,
                      groups=groups)
    except WeightsError as exc:
        raise WeightsError(f"tensor {name}: {exc}") from None


def _graph(arrays: list[_Array], blocks: list, t: dict, head_scale: float) -> Node:
    """The graph of NAM's WaveNet forward (module docstring) over the tensors ``t``."""
    x = Input(arrays[0].input_size)
    y, head = x, None
    for ai, a in enumerate(arrays):
        p = f"layer array {ai} "
        h = _conv(t, p + "rechannel.weight")(y)
        for i, (k, d) in enumerate(zip(a.kernel_sizes, a.dilations)):
            q = f"{p}layer {i} "
            zc = _conv(t, q + "conv.weight", q + "conv.bias", d, a.groups_input)(h)
            zm = _conv(t, q + "input_mixer.weight", groups=a.groups_mixin)(x)
            prim, mode, sec = a.acts[i]
            if mode == "none":
                post = Node(Elementwise("add", zc.size, activation=prim), (zc, zm), zc.size)
            else:
                z = zc + zm
                post = z.gate(prim, sec) if mode == "gated" else z.blend(prim, sec)
            if a.layer1x1[0]:
                h = h + _conv(t, q + "layer1x1.weight", q + "layer1x1.bias",
                              groups=a.layer1x1[1])(post)
            else:
                h = h + post
            term = (_conv(t, q + "head1x1.weight", q + "head1x1.bias", groups=a.head1x1[2])(post)
                    if a.head1x1[0] else post)
            head = term if head is None else head + term
        y = h
        head = _conv(t, p + "head_rechannel.weight",
                     p + "head_rechannel.bias" if a.head_bias else None)(head)
    out = head * head_scale
    for i, (act, _, _, _) in enumerate(blocks):
        out = _conv(t, f"head block {i} conv.weight", f"head block {i} conv.bias")(out.act(act))
    return out
