"""Live ``torch.nn.Module`` to Model (``sg.from_torch``); torch is imported lazily.

Supported:

- ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN`` with any ``num_layers``, ``bias``,
  ``batch_first``, ``proj_size`` (LSTM) and ``nonlinearity`` (RNN); their
  sequence output feeds the next module. ``dropout`` between layers is a
  training-time effect and is ignored, as in ``module.eval()``.
- ``nn.GRUCell`` / ``LSTMCell`` / ``RNNCell`` given on their own: stepping
  the cell, carrying its state, is exactly a stream.
- ``nn.Linear``; the activation modules ReLU, Tanh, Sigmoid, LeakyReLU, ELU,
  GELU (exact), Softmax(dim=-1), LogSoftmax(dim=-1), Hardsigmoid; Identity
  and Dropout (identity at inference). An activation right after a Linear
  becomes that Dense layer's activation; elsewhere it becomes an identity
  Dense layer carrying it.
- ``nn.Sequential`` of these, and custom modules whose ``forward`` chains
  them (``y, _ = self.gru(x); return self.fc(y)``), traced with ``torch.fx``;
  the functional forms (``torch.relu``, ``F.softmax(y, dim=-1)``,
  ``y.tanh()``, ...) are accepted there too.

Anything else raises ``WeightsError`` naming the module or the operation.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ..errors import WeightsError
from ..layers import GRU, LSTM, RNN, Activation, Dense, Layer, make_activation
from ..model import Model
from . import torch_conv

__all__ = ["from_module"]

# the keywords sg.from_torch takes
OPTIONS = ("dtype",)

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


def _array(t: Any) -> np.ndarray:
    # float64 keeps every source precision exactly; the Model converts to its dtype
    return t.detach().to("cpu").double().numpy()


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


def _softmax_dim(what: str, dim: Any) -> None:
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
        return _gelu(f"module {name} (GELU)", mod.approximate)
    if isinstance(mod, nn.Hardsigmoid):
        return _hardsigmoid()
    if isinstance(mod, nn.Softmax):
        _softmax_dim(f"module {name} (Softmax)", mod.dim)
        return make_activation("softmax")
    if isinstance(mod, nn.LogSoftmax):
        _softmax_dim(f"module {name} (LogSoftmax)", mod.dim)
        return make_activation("log_softmax")
    return None


def _gelu(what: str, approximate: Any) -> Activation:
    if approximate not in (None, "none"):
        raise WeightsError(
            f"{what}: approximate={approximate!r} is not supported; streamgru's gelu is the "
            f"exact (erf) form, approximate='none'"
        )
    return make_activation("gelu")


def _hardsigmoid() -> Activation:
    # torch: relu6(x + 3) / 6 = clip(x / 6 + 1/2, 0, 1)
    return make_activation("hard_sigmoid", alpha=1.0 / 6.0, beta=0.5)


# ----------------------------------------------------------------------------
# assembling the chain


class _Chain:
    """Layers in forward order; activations fold into the Dense before them."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.names: list[str] = []

    def add(self, name: str, layers: list[Layer]) -> None:
        self.layers.extend(layers)
        self.names.append(name)

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
        self.names.append(f"{what.split(':')[0]}: {act}")

    def module(self, torch: Any, name: str, mod: Any) -> None:
        nn = torch.nn
        if isinstance(mod, (nn.GRU, nn.LSTM, nn.RNN)):
            self.add(f"{name}: {type(mod).__name__}", _recurrent_layers(torch, name, mod))
            return
        if isinstance(mod, nn.Linear):
            self.add(f"{name}: Linear", [Dense(_array(mod.weight), _opt(mod.bias))])
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
# torch.fx


def _function_table(torch: Any) -> dict[Any, str]:
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


_METHODS = {
    "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid",
    "softmax": "softmax", "log_softmax": "log_softmax", "contiguous": _SKIP,
}


def _arg(node: Any, pos: int, name: str, default: Any) -> Any:
    if len(node.args) > pos:
        return node.args[pos]
    return node.kwargs.get(name, default)


def _function_activation(what: str, kind: str, node: Any) -> Activation:
    if kind == "leaky_relu":
        return make_activation("leaky_relu", alpha=_arg(node, 1, "negative_slope", 0.01))
    if kind == "elu":
        return make_activation("elu", alpha=_arg(node, 1, "alpha", 1.0))
    if kind == "gelu":
        return _gelu(what, _arg(node, 1, "approximate", "none"))
    if kind == "hard_sigmoid":
        return _hardsigmoid()
    if kind in ("softmax", "log_softmax"):
        _softmax_dim(what, _arg(node, 1, "dim", None))
    return make_activation(kind)


def _trace(torch: Any, module: Any, chain: _Chain) -> None:
    """Follow ``module.forward`` as traced by torch.fx; it must be a chain."""
    fx = torch.fx
    try:
        graph = fx.Tracer().trace(module)
    except Exception as exc:
        raise WeightsError(
            f"cannot trace {type(module).__name__}.forward with torch.fx "
            f"({type(exc).__name__}: {exc}); write forward as a plain chain of supported "
            f"modules, or use nn.Sequential"
        ) from None
    functions = _function_table(torch)
    convs = torch_conv.Tracer(torch, module, chain)  # Conv1d, norms, pads, layouts
    current = None  # the node holding the value the next step must consume
    rnn_outputs: set = set()
    unused: set = set()  # unpacked final states that forward never uses

    def is_unused(n: Any) -> bool:
        return all(
            u.op == "call_function" and u.target is operator.getitem and is_unused(u)
            for u in n.users
        )

    for node in graph.nodes:
        target = getattr(node.target, "__name__", node.target)
        what = f"{type(module).__name__}.forward: {node.op} {target!r} ({node.name})"
        if node in unused:
            continue
        if node.op == "placeholder":
            if current is None:
                current = node
            elif node.users:
                raise WeightsError(
                    f"{what}: forward uses its extra argument {node.target!r}; streamgru feeds "
                    f"only the input sequence"
                )
            continue
        if node.op == "output":
            convs.finish(what)
            if node.args[0] is not current:
                raise WeightsError(
                    f"{what}: forward must return the output of its last layer as one tensor"
                )
            continue
        if node.op == "call_function" and node.target is operator.getitem and node.args[0] in rnn_outputs:
            if node.args[1] == 0:
                current = node
            elif is_unused(node):
                unused.add(node)
                unused.update(_descendants(node))
            else:
                raise WeightsError(
                    f"{what}: forward uses the final hidden state of a recurrent layer; "
                    f"streamgru streams its output sequence (element 0)"
                )
            continue
        if convs.handle(node, current, what):
            current = node
            continue
        supported = (
            node.op == "call_module"
            or (node.op == "call_function" and node.target in functions)
            or (node.op == "call_method" and node.target in _METHODS)
        )
        if not supported:
            raise WeightsError(
                f"{what}: operation {node.op} {target!r} is not supported; streamgru converts "
                f"chains of GRU, LSTM, RNN, Linear and activations"
            )
        extra = node.op == "call_module" and (
            any(a is not None for a in node.args[1:]) or any(v is not None for v in node.kwargs.values())
        )
        if node.all_input_nodes != [current] or not node.args or node.args[0] is not current or extra:
            raise WeightsError(
                f"{what}: not a step of a simple chain (it must take only the previous "
                f"layer's output); streamgru runs a stack of layers"
            )
        if node.op == "call_module":
            mod = module.get_submodule(node.target)
            if isinstance(mod, (torch.nn.GRU, torch.nn.LSTM, torch.nn.RNN)):
                chain.module(torch, node.target, mod)
                rnn_outputs.add(node)
                current = None  # only getitem(node, 0) continues the chain
                continue
            chain.module(torch, node.target, mod)
        else:
            kind = functions[node.target] if node.op == "call_function" else _METHODS[node.target]
            if kind != _SKIP:
                chain.activation(node.name, _function_activation(what, kind, node))
        current = node


def _descendants(node: Any) -> set:
    out = set()
    for u in node.users:
        out.add(u)
        out |= _descendants(u)
    return out


def from_module(module: Any, dtype: Any = np.float32) -> Model:
    """Build a Model from a live ``torch.nn.Module``.

    Parameters
    ----------
    module : torch.nn.Module
        A recurrent module, cell, Linear, activation, ``nn.Sequential`` of
        these, or a custom module whose ``forward`` chains them (see the
        module docstring). Its weights are copied; the module is not changed.
    dtype : float32 (default) or float64

    Returns
    -------
    Model
        Whose ``stream().process(X)`` equals ``module(X)`` for a single
        sequence X of shape (T, input_size) (in eval mode).

    Raises
    ------
    WeightsError
        Unsupported modules or operations (named), bidirectional layers.
    """
    torch = _import_torch()
    nn = torch.nn
    if not isinstance(module, nn.Module):
        raise WeightsError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    kind = type(module).__name__
    chain = _Chain()
    if isinstance(module, (nn.GRUCell, nn.LSTMCell, nn.RNNCell)):
        chain.add(f"{kind}", [_cell_layer(torch, module)])
    elif torch_conv.uses_conv(torch, module):
        _trace(torch, torch_conv.traceable(torch, module), chain)
    elif isinstance(module, nn.Sequential):
        _sequential(torch, chain, "", module)
    elif type(module).__module__.startswith("torch.nn"):
        chain.module(torch, kind, module)
    else:
        _trace(torch, module, chain)
    if not chain.layers:
        raise WeightsError(f"{kind} has no GRU, LSTM, RNN or Linear layer to convert")
    metadata = {
        "format": "pytorch",
        "source": f"torch module {type(module).__module__}.{kind}",
        "modules": ", ".join(chain.names),
        "conventions": "PyTorch gate order (GRU r,z,n; LSTM i,f,g,o), reset_after GRU",
    }
    return Model(chain.layers, dtype=dtype, metadata=metadata)
