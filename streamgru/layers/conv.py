"""The streamed causal 1-D convolution, in canonical (PyTorch ``nn.Conv1d``) form."""

from __future__ import annotations

import operator
from typing import Any, Mapping

import numpy as np

from ..errors import WeightsError
from .activations import ELEMENTWISE_ACTIVATIONS, _restricted
from .base import Layer, _act_config, _act_from_config, _array, _float_dtype, _shape_of, _source


def _positive_int(value: Any, name: str) -> int:
    try:
        n = operator.index(value)
    except TypeError:
        raise WeightsError(f"{name} must be a positive integer, got {value!r}") from None
    if isinstance(value, bool) or n < 1:
        raise WeightsError(f"{name} must be a positive integer, got {value!r}")
    return int(n)


class Conv1d(Layer):
    """A causal 1-D convolution over time, streamed one sample at a time.

    Canonical form is ``torch.nn.Conv1d``'s: weight (C_out, C_in / groups, k),
    bias (C_out,). Output channel ``o`` (in group ``g = o // (C_out/groups)``)
    at step t is::

        y_t[o] = act(b[o] + sum_{i < k} sum_{c < C_in/groups}
                          W[o, c, i] * x_{t - (k-1-i)*d}[g * C_in/groups + c])

    with ``x_s = 0`` for s < 0: exactly PyTorch's conv with ``(k-1)*d`` zeros
    of left padding and none on the right (the TCN form,
    ``F.pad(x, ((k-1)*d, 0))`` then an unpadded conv; or a conv padded by
    ``(k-1)*d`` on both sides followed by the "chomp" ``y[..., :-(k-1)*d]``).
    ``groups == C_in`` is a depthwise convolution.

    State (part of the stream's state, ``state_size = 1 + L*C_in`` with
    ``L = (k-1)*d``, or 0 when L = 0): a ring of the last L inputs. Element 0
    is the ring position p (an integer stored as a float); then L slots of
    C_in values, slot j at ``1 + j*C_in``. Slot ``(p + m) % L`` holds
    ``x_{t-L+m}`` (m = 0 the oldest) before step t, which reads its taps from
    there, writes x_t over the oldest slot and advances p. All zeros (the
    initial state) is the zero left padding of the offline convolution; a
    position outside [0, L) (from ``set_state``) is read as 0.

    Parameters
    ----------
    weight : array (C_out, C_in / groups, k)
    bias : array (C_out,), optional (zeros)
    dilation : int, spacing of the taps (default 1)
    groups : int, dividing C_in and C_out (default 1)
    activation : an element-wise activation applied to the output, like
        ``Dense``'s (None: identity)

    Examples
    --------
    >>> import numpy as np, streamgru as sg
    >>> conv = sg.Conv1d(np.ones((1, 1, 3)), dilation=2)    # y_t = x_t + x_{t-2} + x_{t-4}
    >>> (conv.kernel_size, conv.receptive_field, conv.state_size)
    (3, 5, 5)
    >>> sg.Model([conv], dtype=np.float64).stream().process(np.arange(6.0)[:, None]).ravel()
    array([0., 1., 2., 4., 6., 9.])
    """

    kind = "conv1d"
    _array_names = ("weight", "bias")

    def __init__(
        self,
        weight: Any,
        bias: Any = None,
        *,
        dilation: int = 1,
        groups: int = 1,
        activation: Any = None,
    ) -> None:
        c_out, c_in_g, k = _shape_of(weight, "weight", 3)
        self.dilation = _positive_int(dilation, "dilation")
        self.groups = _positive_int(groups, "groups")
        if c_out % self.groups:
            raise WeightsError(
                f"tensor weight: {c_out} output channels (shape {(c_out, c_in_g, k)}) are not "
                f"divisible by groups={self.groups}"
            )
        dt = _float_dtype(weight, bias)
        self.weight = _array(weight, "weight", (c_out, c_in_g, k), dt)
        self.bias = _array(np.zeros(c_out) if bias is None else bias, "bias", (c_out,), dt)
        self.activation = _restricted(activation, ELEMENTWISE_ACTIVATIONS, "Conv1d output")
        self.kernel_size = k
        self.input_size = c_in_g * self.groups
        self.output_size = c_out
        self.history = (k - 1) * self.dilation  # L: past inputs the ring keeps
        if self.history >= 1 << 24:
            # the ring position is a float in the state: exact below 2**24 in float32
            raise WeightsError(
                f"Conv1d: (kernel_size - 1) * dilation = {self.history} past samples; at most "
                f"{(1 << 24) - 1} are supported"
            )
        self.receptive_field = self.history + 1
        self.state_size = 1 + self.history * self.input_size if self.history else 0

    def config(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "output_size": self.output_size,
            "kernel_size": self.kernel_size,
            "dilation": self.dilation,
            "groups": self.groups,
            "activation": _act_config(self.activation),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "Conv1d":
        return cls(
            arrays["weight"], arrays.get("bias"), dilation=config.get("dilation", 1),
            groups=config.get("groups", 1), activation=_act_from_config(config.get("activation")),
        )

    @classmethod
    def from_torch(cls, weight: Any, bias: Any = None, dilation: int = 1, groups: int = 1) -> "Conv1d":
        """From ``torch.nn.Conv1d`` tensors (already canonical), streamed causally."""
        return cls(weight, bias, dilation=dilation, groups=groups)

    @classmethod
    def from_keras(cls, kernel: Any, bias: Any = None, dilation: int = 1, groups: int = 1,
                   activation: Any = None) -> "Conv1d":
        """From a Keras ``Conv1D`` kernel (k, C_in / groups, C_out) (RTNeural's
        ``conv1d`` stores the same), streamed causally.

        Keras's causal padding applies ``kernel[i]`` to ``x_{t-(k-1-i)*d}``,
        as torch applies ``weight[..., i]``: the canonical weight is the
        kernel transposed to (C_out, C_in / groups, k).

        Examples
        --------
        >>> import numpy as np, streamgru as sg
        >>> conv = sg.Conv1d.from_keras(np.array([[[2.0]], [[1.0]]]))   # y_t = 2 x_{t-1} + x_t
        >>> sg.Model([conv], dtype=np.float64).stream().process([[1.0], [0.0], [0.0]]).ravel()
        array([1., 2., 0.])
        """
        k = _source(kernel, "kernel", _shape_of(kernel, "kernel", 3))
        return cls(np.transpose(k, (2, 1, 0)), bias, dilation=dilation, groups=groups,
                   activation=activation)
