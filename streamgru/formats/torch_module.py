"""Live ``torch.nn.Module`` to Model (``sg.from_torch``); torch is imported lazily.

Supported:

- ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN`` with any ``num_layers``, ``bias``,
  ``batch_first``, ``proj_size`` (LSTM) and ``nonlinearity`` (RNN); their
  sequence output feeds the next module. ``dropout`` between layers is a
  training-time effect and is ignored, as in ``module.eval()``.
- ``nn.GRUCell`` / ``LSTMCell`` / ``RNNCell`` given on their own: stepping
  the cell, carrying its state, is exactly a stream.
- ``torch.ao`` dynamic-quantized GRU, LSTM and Linear
  (``quantize_dynamic``, int8 or float16): their own int8 values and scales
  (or float16 values) are kept, never re-quantized (``torch_qlive``).
- ``nn.Linear``; the activation modules ReLU, Tanh, Sigmoid, LeakyReLU, ELU,
  GELU (exact), Softmax(dim=-1), LogSoftmax(dim=-1), Hardsigmoid; Identity
  and Dropout (identity at inference). An activation right after a Linear
  becomes that Dense layer's activation; elsewhere it becomes an identity
  Dense layer carrying it.
- Subclasses of all of these are converted as the module they extend.
- ``nn.Sequential`` of these, and custom modules whose ``forward`` chains
  them (``y, _ = self.gru(x); return self.fc(y)``), traced with ``torch.fx``
  (``torch_trace``: also the last time step ``y[:, -1]`` / ``h_n[-1]``, a
  learned initial state, and a residual skip ``out + x[..., a:b]``); the
  functional forms (``torch.relu``, ``F.softmax(y, dim=-1)``, ``y.tanh()``,
  ...) are accepted there too.
- A ``forward`` that is no chain (residual TCN blocks, sums and products of
  branches, gated activations, scaling) becomes a graph model
  (``torch_graph``).
- ``weight_norm`` (``torch.nn.utils.parametrizations`` or the older
  ``torch.nn.utils``) on a Conv1d or Linear is folded into its weight
  (``torch_wnorm``).

Anything else raises ``WeightsError`` naming the module or the operation
(in a traced forward, its line).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import WeightsError
from ..layers import GRU, LSTM, RNN, Activation, Dense, Layer, make_activation
from ..model import Model
from . import torch_conv, torch_qlive
from .torch_wnorm import as_array as _array

__all__ = ["from_module"]

# the keywords sg.from_torch takes
OPTIONS = ("dtype",)


def leaf_types(torch: Any) -> tuple:
    """Modules converted as a whole; their subclasses too (fx does not enter them)."""
    nn = torch.nn
    return (nn.GRU, nn.LSTM, nn.RNN, nn.GRUCell, nn.LSTMCell, nn.RNNCell, nn.Linear, nn.ReLU,
            nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Hardsigmoid, nn.Softmax,
            nn.LogSoftmax, nn.Dropout, nn.AlphaDropout, nn.Identity) + torch_qlive.quantized_types(torch)

# marks a step that leaves values unchanged (Dropout, Identity, .contiguous())
_SKIP = "skip"


def _import_torch():
    try:
        import torch
        import torch.fx  # noqa: F401  (tracing custom modules)
    except ImportError as exc:
        raise WeightsError(
            f"sg.from_torch needs torch installed ({exc}); to load without torch, save the "
            f"weights with torch.save(module.state_dict(), 'model.pt') and use sg.load"
        ) from None
    return torch




def _opt(t: Any) -> np.ndarray | None:
    return None if t is None else _array(t)


# ----------------------------------------------------------------------------
# modules


def _recurrent_layers(torch: Any, name: str, mod: Any) -> list[Layer]:
    """The layers of an nn.GRU / LSTM / RNN, one per num_layers."""
    nn = torch.nn
    if mod.bidirectional:
        raise WeightsError(
            f"module {name} ({type(mod).__name__}) is bidirectional; a bidirectional layer reads "
            f"the sequence backwards from its end, so it needs the future and cannot run one "
            f"sample at a time"
        )
    layers: list[Layer] = []
    for k in range(mod.num_layers):
        w_ih = _array(getattr(mod, f"weight_ih_l{k}"))
        w_hh = _array(getattr(mod, f"weight_hh_l{k}"))
        b_ih = _opt(getattr(mod, f"bias_ih_l{k}", None)) if mod.bias else None
        b_hh = _opt(getattr(mod, f"bias_hh_l{k}", None)) if mod.bias else None
        if isinstance(mod, nn.GRU):
            layers.append(GRU.from_torch(w_ih, w_hh, b_ih, b_hh))
        elif isinstance(mod, nn.LSTM):
            w_hr = _array(getattr(mod, f"weight_hr_l{k}")) if mod.proj_size > 0 else None
            layers.append(LSTM.from_torch(w_ih, w_hh, b_ih, b_hh, weight_hr=w_hr))
        else:
            layers.append(RNN.from_torch(w_ih, w_hh, b_ih, b_hh, nonlinearity=mod.nonlinearity))
    return layers


def _cell_layer(torch: Any, mod: Any) -> Layer:
    nn = torch.nn
    w_ih, w_hh = _array(mod.weight_ih), _array(mod.weight_hh)
    b_ih = _opt(mod.bias_ih) if mod.bias else None
    b_hh = _opt(mod.bias_hh) if mod.bias else None
    if isinstance(mod, nn.GRUCell):
        return GRU.from_torch(w_ih, w_hh, b_ih, b_hh)
    if isinstance(mod, nn.LSTMCell):
        return LSTM.from_torch(w_ih, w_hh, b_ih, b_hh)
    return RNN.from_torch(w_ih, w_hh, b_ih, b_hh, nonlinearity=mod.nonlinearity)


def softmax_dim(what: str, dim: Any) -> None:
    if dim != -1:
        raise WeightsError(
            f"{what}: softmax over dim={dim!r}; streamgru applies it over the features of "
            f"each sample, which is dim=-1"
        )


def _activation_module(torch: Any, name: str, mod: Any) -> Activation | str | None:
    """The activation an activation module applies, ``_SKIP``, or None if
    ``mod`` is not one."""
    nn = torch.nn
    if isinstance(mod, (nn.Dropout, nn.AlphaDropout, nn.Identity)):
        return _SKIP
    if isinstance(mod, nn.ReLU):
        return make_activation("relu")
    if isinstance(mod, nn.Tanh):
        return make_activation("tanh")
    if isinstance(mod, nn.Sigmoid):
        return make_activation("sigmoid")
    if isinstance(mod, nn.LeakyReLU):
        return make_activation("leaky_relu", alpha=mod.negative_slope)
    if isinstance(mod, nn.ELU):
        return make_activation("elu", alpha=mod.alpha)
    if isinstance(mod, nn.GELU):
        return gelu(f"module {name} (GELU)", mod.approximate)
    if isinstance(mod, nn.Hardsigmoid):
        return hardsigmoid()
    if isinstance(mod, nn.Softmax):
        softmax_dim(f"module {name} (Softmax)", mod.dim)
        return make_activation("softmax")
    if isinstance(mod, nn.LogSoftmax):
        softmax_dim(f"module {name} (LogSoftmax)", mod.dim)
        return make_activation("log_softmax")
    return None


def gelu(what: str, approximate: Any) -> Activation:
    if approximate not in (None, "none"):
        raise WeightsError(
            f"{what}: approximate={approximate!r} is not supported; streamgru's gelu is the "
            f"exact (erf) form, approximate='none'"
        )
    return make_activation("gelu")


def hardsigmoid() -> Activation:
    # torch: relu6(x + 3) / 6 = clip(x / 6 + 1/2, 0, 1)
    return make_activation("hard_sigmoid", alpha=1.0 / 6.0, beta=0.5)


# ----------------------------------------------------------------------------
# assembling the chain


class _Chain:
    """Layers in forward order; activations fold into the Dense before them."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.initial: list[np.ndarray | None] = []  # per layer: its initial state, or zeros
        self.names: list[str] = []

    def add(self, name: str, layers: list[Layer], initial: list | None = None) -> None:
        self.layers.extend(layers)
        self.initial.extend(initial or [None] * len(layers))
        self.names.append(name)

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` layers (forward uses a lower layer's final state)."""
        del self.layers[n:], self.initial[n:]

    def layers_after(self, n: int) -> bool:
        return len(self.layers) > n

    def initial_state(self) -> np.ndarray | None:
        if all(s is None for s in self.initial):
            return None
        return np.concatenate([np.zeros(layer.state_size) if s is None else s
                               for layer, s in zip(self.layers, self.initial)] or [np.zeros(0)])

    def activation(self, what: str, act: Activation) -> None:
        if not self.layers:
            raise WeightsError(
                f"{what}: an activation before the first layer is not supported"
            )
        last = self.layers[-1]
        if isinstance(last, Dense) and last.activation.name == "identity":
            self.layers[-1] = Dense(last.weight, last.bias, act)
        else:
            # after a recurrent layer (or a Dense that already has one): an
            # identity Dense carries the activation
            n = last.output_size
            self.layers.append(Dense(np.eye(n), np.zeros(n), act))
            self.initial.append(None)
        self.names.append(f"{what.split(':')[0]}: {act}")

    def module(self, torch: Any, name: str, mod: Any, initial: list | None = None) -> None:
        nn = torch.nn
        if isinstance(mod, torch_qlive.quantized_types(torch)):
            # torch.ao dynamic quantization: the module's own int8 / float16 weights
            self.add(f"{name}: {type(mod).__name__}", torch_qlive.layers(torch, name, mod), initial)
            return
        if isinstance(mod, (nn.GRU, nn.LSTM, nn.RNN)):
            self.add(f"{name}: {type(mod).__name__}", _recurrent_layers(torch, name, mod), initial)
            return
        if isinstance(mod, nn.Linear):
            from .torch_wnorm import weight

            self.add(f"{name}: Linear", [Dense(weight(torch, mod, name), _opt(mod.bias))])
            return
        if isinstance(mod, (nn.GRUCell, nn.LSTMCell, nn.RNNCell)):
            raise WeightsError(
                f"module {name} ({type(mod).__name__}): a cell inside a larger module is called "
                f"with a fresh state each time; convert the cell on its own "
                f"(sg.from_torch(cell)) or use nn.{type(mod).__name__[:-4]}"
            )
        act = _activation_module(torch, name, mod)
        if act == _SKIP:
            return
        if act is not None:
            self.activation(f"{name} ({type(mod).__name__})", act)
            return
        raise WeightsError(
            f"module {name} ({type(mod).__module__}.{type(mod).__name__}) is not supported; "
            f"streamgru converts GRU, LSTM, RNN, their cells, Linear, activation modules, "
            f"Dropout, Identity and Sequential"
        )


def _sequential(torch: Any, chain: _Chain, prefix: str, seq: Any) -> None:
    # not named_children(): it skips a module that appears twice, forward does not
    for child_name, child in seq._modules.items():
        if child is None:
            continue
        name = f"{prefix}.{child_name}" if prefix else child_name
        if isinstance(child, torch.nn.Sequential):
            _sequential(torch, chain, name, child)
        else:
            chain.module(torch, name, child)


# ----------------------------------------------------------------------------
# functional forms, for forward traced by torch_trace


def function_table(torch: Any) -> dict[Any, str]:
    F = torch.nn.functional
    return {
        torch.relu: "relu", F.relu: "relu",
        torch.tanh: "tanh", F.tanh: "tanh",
        torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
        F.leaky_relu: "leaky_relu", F.elu: "elu", F.gelu: "gelu",
        F.hardsigmoid: "hard_sigmoid",
        torch.softmax: "softmax", F.softmax: "softmax",
        torch.log_softmax: "log_softmax", F.log_softmax: "log_softmax",
        F.dropout: _SKIP, torch.dropout: _SKIP,
    }


METHODS = {
    "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid",
    "softmax": "softmax", "log_softmax": "log_softmax", "contiguous": _SKIP,
}


def _arg(node: Any, pos: int, name: str, default: Any) -> Any:
    if len(node.args) > pos:
        return node.args[pos]
    return node.kwargs.get(name, default)


def function_activation(what: str, kind: str, node: Any) -> Activation:
    if kind == "leaky_relu":
        return make_activation("leaky_relu", alpha=_arg(node, 1, "negative_slope", 0.01))
    if kind == "elu":
        return make_activation("elu", alpha=_arg(node, 1, "alpha", 1.0))
    if kind == "gelu":
        return gelu(what, _arg(node, 1, "approximate", "none"))
    if kind == "hard_sigmoid":
        return hardsigmoid()
    if kind in ("softmax", "log_softmax"):
        softmax_dim(what, _arg(node, 1, "dim", None))
    return make_activation(kind)



def _graph_model(module: Any, found: dict, dtype: Any) -> Model:
    """A branching forward (torch_graph): the graph its output node computes."""
    out = found["graph"]
    model = Model(out.node, dtype=dtype)
    layers = ", ".join(sorted({type(layer).__name__ for layer in model.layers}))
    notes = [f"input {found['input_layout']}"]
    if out.layout == torch_conv.CF and not out.last:
        notes.append(f"output {torch_conv.CF}: row t of a stream is y[0, :, t]")
    metadata = {
        "format": "pytorch",
        "source": f"torch module {type(module).__module__}.{type(module).__name__}",
        "modules": f"graph of {layers} ({'; '.join(notes)})",
        "conventions": "PyTorch gate order (GRU r,z,n; LSTM i,f,g,o), reset_after GRU",
        "many_to_one": out.last,
    }
    model.metadata.update(metadata)
    return model


def from_module(module: Any, dtype: Any = np.float32) -> Model:
    """Build a Model from a live ``torch.nn.Module``.

    Parameters
    ----------
    module : torch.nn.Module
        A recurrent module, cell, Linear, activation (or a subclass of
        one), an ``nn.Sequential`` of these, or a custom module whose
        ``forward`` chains them (see ``streamgru.formats.torch_trace``) or
        combines them as a small dataflow graph (``torch_graph``: then the
        Model is a graph model). Its weights are copied; the module is not
        changed.
    dtype : float32 (default) or float64

    Returns
    -------
    Model
        Whose ``stream().process(X)`` equals ``module(X)`` for a single
        sequence X of shape (T, input_size) (in eval mode; a channels-first
        module's X[:, :, t] is the stream's sample t); for a many-to-one
        module (``metadata["many_to_one"]``), row t equals the module's
        answer for ``X[:t + 1]``.

    Raises
    ------
    WeightsError
        Unsupported modules or operations (named, with the line of
        ``forward``), bidirectional layers.
    """
    torch = _import_torch()
    nn = torch.nn
    if not isinstance(module, nn.Module):
        raise WeightsError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    kind = type(module).__name__
    chain = _Chain()
    found = {"many_to_one": False, "input_skip": None}
    if isinstance(module, (nn.GRUCell, nn.LSTMCell, nn.RNNCell)):
        chain.add(f"{kind}", [_cell_layer(torch, module)])
    elif torch_conv.uses_conv(torch, module):
        from .torch_trace import trace

        found = trace(torch, torch_conv.traceable(torch, module), chain, leaf_types(torch))
    elif isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
        _sequential(torch, chain, "", module)
    elif isinstance(module, leaf_types(torch)) or type(module).__module__.startswith("torch.nn"):
        chain.module(torch, kind, module)
    else:
        from .torch_trace import trace

        found = trace(torch, module, chain, leaf_types(torch))
    if "graph" in found:
        return _graph_model(module, found, dtype)
    if not chain.layers:
        raise WeightsError(f"{kind} has no GRU, LSTM, RNN or Linear layer to convert")
    metadata = {
        "format": "pytorch",
        "source": f"torch module {type(module).__module__}.{kind}",
        "modules": ", ".join(chain.names),
        "conventions": "PyTorch gate order (GRU r,z,n; LSTM i,f,g,o), reset_after GRU",
        "many_to_one": found["many_to_one"],
    }
    # y = net(x) + x[a : a + output_size] (Model's residual input skip)
    extra = {} if found["input_skip"] is None else {"input_skip": found["input_skip"]}
    return Model(chain.layers, dtype=dtype, initial_state=chain.initial_state(),
                 metadata=metadata, **extra)
