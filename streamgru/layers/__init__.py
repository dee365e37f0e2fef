"""Canonical layer specifications: GRU, LSTM, RNN, Dense, Conv1d, BatchNorm,
LayerNorm, PReLU, MaxPool1d and AvgPool1d.

Canonical form is PyTorch's layout (gate rows r, z, n for GRU and i, f, g, o
for LSTM; separate input and recurrent biases) plus flags for what PyTorch
cannot express (GRU ``reset_after=False``, LSTM peepholes and coupled input
and forget gates, ``clip``, other gate activations). Every importer converts
to this form; the kernels repack it privately.

A layer is immutable: its arrays are read-only copies, validated for shape
and finiteness when the layer is built. A ``WeightsError`` names the tensor
and gives the expected and the actual shape.

Update convention: streamgru (like PyTorch, ONNX and Keras) writes the GRU
update as ``h' = (1 - z) * n + z * h``. Some texts write
``h' = (1 - z) * h + z * n``; that is the same cell with ``z -> 1 - z``.
Since ``1 - sigmoid(a) = sigmoid(-a)``, convert such weights by negating the
z rows of ``weight_ih``, ``weight_hh`` and of both biases.

Each layer kind is one module here; ``LAYER_TYPES`` is the registry the
native format and the kernels' plan packer look layer kinds up in.
"""

from .activations import (
    ACTIVATIONS, CELL_ACTIVATIONS, ELEMENTWISE_ACTIVATIONS, GATE_ACTIVATIONS, Activation,
    keras_activation, make_activation, onnx_activations,
)
from .base import Layer
from .conv import Conv1d
from .dense import Dense
from .gru import GRU
from .lstm import LSTM
from .norm import BatchNorm, LayerNorm, PReLU
from .pool import AvgPool1d, MaxPool1d
from .rnn import RNN

__all__ = ["Activation", "GRU", "LSTM", "RNN", "Dense", "Conv1d", "BatchNorm", "LayerNorm",
           "PReLU", "MaxPool1d", "AvgPool1d", "Layer", "LAYER_TYPES", "make_activation",
           "onnx_activations", "ACTIVATIONS", "GATE_ACTIVATIONS", "CELL_ACTIVATIONS",
           "ELEMENTWISE_ACTIVATIONS", "keras_activation"]

# layer kind (``layer.kind``, as stored in native files) -> class
LAYER_TYPES: dict[str, type[Layer]] = {c.kind: c for c in (
    GRU, LSTM, RNN, Dense, Conv1d, BatchNorm, LayerNorm, PReLU, MaxPool1d, AvgPool1d)}
