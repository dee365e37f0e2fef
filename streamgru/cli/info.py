"""``streamgru info`` and ``streamgru convert``: describe a model, or save it natively."""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any

from ..errors import WeightsError
from ..formats import READERS, save
from ..layers import GRU, LSTM, RNN, AvgPool1d, BatchNorm, Conv1d, Dense, LayerNorm, MaxPool1d, PReLU
from ..model import Model
from .common import CLIError, load_model


def _format_name(path: str, model: Model) -> str:
    suffix = os.path.splitext(path)[1].lower()
    fmt = model.metadata.get("format")
    names = [r.name for r in READERS if suffix in r.suffixes]
    label = names[0] if names else suffix or "(no suffix)"
    return f"{label} ({fmt})" if fmt and str(fmt).lower() not in label.lower() else label


def _layer_line(i: int, layer: Any) -> str:
    """One line describing a layer: kind, sizes, and the flags that change its math."""
    name = type(layer).__name__
    head = f"{i:>3}  {name:<5} {layer.input_size:>5} -> {layer.output_size:<5}"
    params = sum(a.size for a in layer.arrays().values())
    parts = [f"params {params:,}"]
    if layer.weights_dtype != layer.dtype:
        parts.append(f"weights {layer.weights_dtype}")
    if layer.state_size:
        parts.append(f"state {layer.state_size}")
    if isinstance(layer, GRU):
        parts.append(
            "reset_after=True (r applied after W_hn h)"
            if layer.reset_after
            else "reset_after=False (r applied before W_hn)"
        )
        parts.append(f"gates {layer.gate_activation}, candidate {layer.activation}")
    elif isinstance(layer, LSTM):
        if layer.proj_size:
            parts.append(f"projection {layer.proj_size}")
        if layer.peepholes is not None:
            parts.append("peepholes")
        if layer.input_forget:
            parts.append("input_forget (f = 1 - i)")
        parts.append(
            f"gates {layer.gate_activation}, cell {layer.cell_activation}, "
            f"hidden {layer.hidden_activation}"
        )
    elif isinstance(layer, RNN):
        parts.append(f"activation {layer.activation}")
    elif isinstance(layer, (Dense, Conv1d)):
        if isinstance(layer, Conv1d):
            how = "causal" if not layer.latency else (
                f"padding {layer.padding}, delay {layer.latency}")
            if layer.stride > 1:
                how += f", stride {layer.stride}"
            parts.append(f"{how}, kernel {layer.kernel_size}, dilation {layer.dilation}, "
                         f"groups {layer.groups}, receptive field {layer.receptive_field}")
        act = layer.activation
        parts.append(f"activation {'none' if act.name == 'identity' else act}")
    elif isinstance(layer, (BatchNorm, LayerNorm)):
        parts.append(f"eps {layer.eps:g}")
    elif isinstance(layer, (MaxPool1d, AvgPool1d)):
        parts.append(f"kernel {layer.kernel_size}, stride {layer.stride}, padding {layer.padding}"
                     f", delay {layer.latency}")
        if isinstance(layer, MaxPool1d) and layer.dilation > 1:
            parts.append(f"dilation {layer.dilation}")
        if isinstance(layer, AvgPool1d) and not layer.count_include_pad:
            parts.append("count_include_pad=False")
    elif isinstance(layer, PReLU):
        parts.append("one shared slope" if layer.weight.size == 1 else "a slope per channel")
    clip = getattr(layer, "clip", None)
    if clip is not None:
        parts.append(f"clip {clip:g}")
    return f"{head}  " + ", ".join(parts)


def _float_size(model: Model) -> str:
    """What the arrays would take in float, beside a quantized model's size."""
    if model.weights_dtype == model.dtype:
        return ""
    floats = sum(a.size for layer in model.layers for a in layer.arrays().values())
    return f" (in {model.dtype.name}: {floats * model.dtype.itemsize:,})"


def cmd_info(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    w = sys.stdout.write
    w(f"file:        {args.model}\n")
    w(f"format:      {_format_name(args.model, model)}\n")
    w(f"dtype:       {model.dtype.name}\n")
    w(f"input size:  {model.input_size}\n")
    w(f"output size: {model.output_size}\n")
    w(f"state size:  {model.state_size}"
      f"{'' if not model.initial_state.any() else ' (non-zero initial state from the file)'}\n")
    w(f"parameters:  {model.num_parameters:,}\n")
    w(f"weights:     {model.weights_dtype}, {model.weights_nbytes:,} bytes"
      f"{_float_size(model)}\n")
    if model.latency:
        w(f"latency:     {model.latency} samples (step t gives the offline output at t - "
          f"{model.latency}; zeros before)\n")
    if model.stride > 1:
        w(f"stride:      {model.stride} (one output row every {model.stride} inputs)\n")
    if model.input_skip is not None:
        a, o = model.input_skip, model.output_size
        w(f"input skip:  y = net(x) + x[{a}:{a + o}] (residual from the input)\n")
    if model.output_gain != 1.0:
        g = model.output_gain
        db = f", {20 * math.log10(abs(g)):+.2f} dB" if g else ""
        w(f"output gain: {g:.9g}{db} (y multiplied by it, after the skip)\n")
    w("layers:\n")
    for i, layer in enumerate(model.layers):
        w(_layer_line(i, layer) + "\n")
    w("conventions: canonical PyTorch form (GRU gate rows r, z, n; LSTM i, f, g, o; "
      "h' = (1 - z) * n + z * h); loaders convert other gate orders on import\n")
    if model.metadata:
        w("metadata:\n")
        for key, value in model.metadata.items():
            text = str(value)
            w(f"  {key}: {text if len(text) <= 200 else text[:197] + '...'}\n")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    suffix = os.path.splitext(args.output)[1].lower()
    if suffix not in (".npz", ".safetensors"):
        raise CLIError(
            f"{args.output}: convert writes streamgru's native format; use a .npz or "
            f".safetensors suffix",
            2,
        )
    if os.path.abspath(args.output) == os.path.abspath(args.input):
        raise CLIError(f"{args.output}: output is the input file; choose another name", 2)
    model = load_model(args.input, args.dtype, args.weights)
    # the freshly loaded model is ours: note its source (chains and graphs alike)
    model.metadata.setdefault("converted_from", os.path.basename(args.input))
    try:
        save(model, args.output)
    except WeightsError as exc:
        raise CLIError(str(exc), 1) from None
    except OSError as exc:
        raise CLIError(f"{args.output}: cannot write ({exc.strerror or exc})", 1) from None
    print(f"wrote {args.output}: {model!r}, {model.num_parameters:,} parameters, "
          f"weights {model.weights_dtype} ({model.weights_nbytes:,} bytes)")
    return 0
