"""The streamed 1-D convolution, in canonical (PyTorch ``nn.Conv1d``) form:
causal, or "same"/padded/unpadded with a fixed delay, and strided."""

from __future__ import annotations

import operator
from typing import Any, Mapping

import numpy as np

from ..errors import WeightsError
from .activations import ELEMENTWISE_ACTIVATIONS, _restricted
from .base import Layer, _act_config, _act_from_config, _array, _float_dtype, _shape_of, _source


def _positive_int(value: Any, name: str, least: int = 1) -> int:
    what = "a positive" if least else "a non-negative"
    try:
        n = operator.index(value)
    except TypeError:
        raise WeightsError(f"{name} must be {what} integer, got {value!r}") from None
    if isinstance(value, bool) or n < least:
        raise WeightsError(f"{name} must be {what} integer, got {value!r}")
    return int(n)


def _paddings(padding: Any, L: int, stride: int) -> tuple[int, int]:
    """(left, right) zero padding of the time axis from the ``padding`` option."""
    if isinstance(padding, str):
        pads = {"causal": (L, 0), "same": (L // 2, L - L // 2), "valid": (0, 0)}.get(padding)
        if pads is None:
            raise WeightsError(f"padding={padding!r}: expected 'causal', 'same', 'valid', a "
                               f"number of zeros on both sides or a (left, right) pair")
        if padding == "same" and stride != 1:
            raise WeightsError("padding='same' needs stride 1 (as in PyTorch)")
        return pads
    pair = tuple(padding) if isinstance(padding, (tuple, list)) else (padding, padding)
    if len(pair) != 2:
        raise WeightsError(f"padding={padding!r}: a (left, right) pair has two numbers")
    left, right = (_positive_int(p, "padding", 0) for p in pair)
    if left > L:
        raise WeightsError(
            f"padding: {left} zeros on the left, more than (kernel_size - 1) * dilation = {L}: "
            f"the first outputs would come before the first sample, which a stream cannot give")
    return left, right


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

    **Padding and latency.** A convolution trained with ``pl`` zeros on the
    left (``padding``: "same" gives ``pl = L // 2``, "valid" 0, an int p
    gives p, PyTorch's ``Conv1d(padding=p)``) needs ``latency = L - pl``
    future samples per output. It is streamed with that fixed delay: the
    formula above is computed at every step, and its value at step t is the
    offline model's output at ``t - latency``. The first ``latency`` inputs
    only fill the ring: the layers after it do not advance, and a model's
    output for those steps is zeros (``Model.latency`` sums the delays).
    Padding on the right only matters where the offline sequence ends, which
    a stream never reaches.

    **Stride.** With ``stride = s > 1`` the layer emits one row every s
    inputs (the offline output ``j`` at input ``latency + j*s``), so a
    model holding it downsamples (``Model.stride``): ``process`` returns only
    the rows produced and ``step`` returns None when it produced none.

    State (part of the stream's state, ``state_size = 1 + L*C_in`` with
    ``L = (k-1)*d``, or 0 when L = 0): a ring of the last L inputs. Element 0
    is the ring position p (an integer stored as a float); then L slots of
    C_in values, slot j at ``1 + j*C_in``. Slot ``(p + m) % L`` holds
    ``x_{t-L+m}`` (m = 0 the oldest) before step t, which reads its taps from
    there, writes x_t over the oldest slot and advances p. All zeros (the
    initial state) is the zero left padding of the offline convolution; a
    position outside [0, L) (from ``set_state``) is read as 0. A delayed
    or strided conv adds one element after the ring (``counter_index``):
    the counter of kernels/rate.py, 0 at the start, which counts the warm-up
    up to ``latency`` and then the phase of the stride (values in
    ``[0, latency + stride)``; anything else reads as 0).

    Parameters
    ----------
    weight : array (C_out, C_in / groups, k)
    bias : array (C_out,), optional (zeros)
    dilation : int, spacing of the taps (default 1)
    groups : int, dividing C_in and C_out (default 1)
    activation : an element-wise activation applied to the output, like
        ``Dense``'s (None: identity)
    padding : "causal" (default: ``L`` zeros on the left, no delay), "same"
        (``L // 2`` left, the rest right), "valid" (none), an int (that many
        on both sides, PyTorch's ``padding=p``) or a (left, right) pair; the
        left padding is at most L
    stride : int, the output rate: one row every ``stride`` inputs (default 1)

    Examples
    --------
    >>> import numpy as np, streamgru as sg
    >>> conv = sg.Conv1d(np.ones((1, 1, 3)), dilation=2)    # y_t = x_t + x_{t-2} + x_{t-4}
    >>> (conv.kernel_size, conv.receptive_field, conv.state_size)
    (3, 5, 5)
    >>> sg.Model([conv], dtype=np.float64).stream().process(np.arange(6.0)[:, None]).ravel()
    array([0., 1., 2., 4., 6., 9.])

    Centred ("same"): y_t = x_{t-1} + x_t + x_{t+1}, one sample late

    >>> same = sg.Model([sg.Conv1d(np.ones((1, 1, 3)), padding="same")], dtype=np.float64)
    >>> same.latency
    1
    >>> same.stream().process(np.arange(6.0)[:, None]).ravel()    # 0, then y_0 .. y_4
    array([ 0.,  1.,  3.,  6.,  9., 12.])
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
        padding: Any = "causal",
        stride: int = 1,
    ) -> None:
        c_out, c_in_g, k = _shape_of(weight, "weight", 3)
        self.dilation = _positive_int(dilation, "dilation")
        self.groups = _positive_int(groups, "groups")
        self.stride = _positive_int(stride, "stride")
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
        self.padding = _paddings(padding, self.history, self.stride)
        self.latency = self.history - self.padding[0]
        ring = 1 + self.history * self.input_size if self.history else 0
        # the rate counter (kernels/rate.py), only where the layer needs one
        counted = self.latency > 0 or self.stride > 1
        self.counter_index = ring if counted else -1
        self.state_size = ring + counted

    def config(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "output_size": self.output_size,
            "kernel_size": self.kernel_size,
            "dilation": self.dilation,
            "groups": self.groups,
            "activation": _act_config(self.activation),
            "padding": list(self.padding),
            "stride": self.stride,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "Conv1d":
        return cls(
            arrays["weight"], arrays.get("bias"), dilation=config.get("dilation", 1),
            groups=config.get("groups", 1), activation=_act_from_config(config.get("activation")),
            padding=config.get("padding", "causal"), stride=config.get("stride", 1),
        )

    @classmethod
    def from_torch(cls, weight: Any, bias: Any = None, dilation: int = 1, groups: int = 1,
                   padding: Any = "causal", stride: int = 1) -> "Conv1d":
        """From ``torch.nn.Conv1d`` tensors (already canonical). ``padding``
        as the constructor takes it; PyTorch's own ``padding=p`` is ``p`` and
        its default 0 is "valid" (a delay of (k-1)*dilation), while the
        default here, "causal", is the left-padded TCN form."""
        return cls(weight, bias, dilation=dilation, groups=groups, padding=padding, stride=stride)

    @classmethod
    def from_keras(cls, kernel: Any, bias: Any = None, dilation: int = 1, groups: int = 1,
                   activation: Any = None, padding: Any = "causal", stride: int = 1) -> "Conv1d":
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
                   activation=activation, padding=padding, stride=stride)
