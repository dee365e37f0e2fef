"""Model: an ordered stack of canonical layers with checked shapes, plus an
optional residual input skip and output gain around the whole stack."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import WeightsError
from .graph import Node, flatten, map_layers
from .layers import Layer

__all__ = ["Model"]


def _model_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise WeightsError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise WeightsError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _input_skip(value: Any, input_size: int, output_size: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise WeightsError(f"input_skip must be None or a whole-number input offset, got {value!r}")
    a = int(value)
    if a < 0 or a + output_size > input_size:
        raise WeightsError(
            f"input_skip={a}: adding input values x[{a}:{a + output_size}] to the "
            f"{output_size} outputs needs an input of at least {a + output_size} values, "
            f"the model takes {input_size}"
        )
    return a


def _output_gain(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise WeightsError(f"output_gain must be a finite real number, got {value!r}")
    g = float(value)
    if not math.isfinite(g):
        raise WeightsError(f"output_gain must be a finite real number, got {g}")
    return g


class Model:
    """A chain of layers (GRU, LSTM, RNN, Dense, Conv1d, norms) applied in order, or a graph.

    **Chain**: ``sg.Model([layer, layer, ...])``, each layer's output the
    next one's input. **Graph**: ``sg.Model(y)`` with ``y`` a node built from
    ``sg.Input(size)`` by calling layers on nodes (``conv(x)``) and combining
    nodes: ``a + b`` and ``a * b`` (element-wise, same size), ``a * 0.5``
    (scale), ``a[i:j]`` (a channel slice), ``a.act("tanh")``, ``a.gate()``
    (``tanh(a[:C]) * sigmoid(a[C:])``, WaveNet's gated activation) and
    ``a.blend()``; ``sum(nodes)`` adds a list (skip sums). Each layer call
    is its own step with its own state (one layer object called twice
    shares weights, not state); the input node may feed any number of
    layers (a conditioning input fed to every block). ``m.graph`` lists what
    each of ``m.layers`` reads; ``input_skip`` and ``output_gain`` are for
    chains (write them as nodes in a graph).

    A stream's state (``get_state()``, length ``state_size``) is the
    concatenation, layer by layer, of each recurrent layer's state:
    GRU and RNN contribute h; LSTM contributes h (proj size or H) then c (H);
    Conv1d contributes its ring of past inputs (see ``sg.Conv1d``); Dense,
    BatchNorm, LayerNorm and PReLU contribute nothing.

    Parameters
    ----------
    layers : list of layers
        Applied first to last; each layer's ``input_size`` must equal the
        previous layer's ``output_size``.
    dtype : float32 (default) or float64
        The float type the model computes in; ``layers`` hold the layers'
        arrays converted to it. The layers as given are kept too, so
        ``astype`` converts from their precision: float64 layers in a float32
        model give a float64 model with the original float64 weights.
    initial_state : array (state_size,), optional
        The state a stream starts from and ``reset()`` returns to; zeros by
        default.
    metadata : dict, optional
        Where the model came from (format, file, conventions), for ``info``.
    input_skip : int, optional (keyword)
        A residual connection from the input around the whole stack: with
        offset ``a``, ``a + output_size <= input_size``, the output becomes
        ``net(x) + x[a : a + output_size]``. ``None`` (default): no skip.
    output_gain : float, optional (keyword)
        A finite factor applied to the final output (default 1.0). Together::

            y = output_gain * (net(x) + x[a : a + output_size])   # with input_skip=a
            y = output_gain * net(x)                              # without

        the order AIDA-X applies its ``in_skip`` and ``out_gain`` in, and
        PyTorch's ``lin(rnn(x)) + x[..., :k]`` residual with ``a = 0``.

    Examples
    --------
    >>> import numpy as np, streamgru as sg
    >>> rng = np.random.default_rng(0)
    >>> gru = sg.GRU.from_torch(rng.normal(size=(24, 3)), rng.normal(size=(24, 8)))
    >>> m = sg.Model([gru, sg.Dense(rng.normal(size=(2, 8)))])
    >>> (m.input_size, m.output_size, m.state_size, m.dtype)
    (3, 2, 8, dtype('float32'))
    >>> r = sg.Model([gru, sg.Dense(rng.normal(size=(2, 8)))], input_skip=1, output_gain=0.5)
    >>> (r.input_skip, r.output_gain)
    (1, 0.5)

    A WaveNet-style graph: residual blocks of a dilated causal convolution
    plus a mix of the raw input (the condition), gated, with a skip sum:

    >>> x = sg.Input(1)
    >>> h = sg.Conv1d(rng.normal(size=(4, 1, 1)))(x)                 # rechannel 1 -> 4
    >>> skips = []
    >>> for d in (1, 2, 4):
    ...     z = sg.Conv1d(rng.normal(size=(8, 4, 3)), dilation=d)(h)  # 4 -> 2 x 4 channels
    ...     p = (z + sg.Conv1d(rng.normal(size=(8, 1, 1)))(x)).gate()   # tanh(a) * sigmoid(b)
    ...     h = h + sg.Conv1d(rng.normal(size=(4, 4, 1)))(p)          # residual
    ...     skips.append(p)
    >>> w = sg.Model(sg.Dense(rng.normal(size=(1, 4)))(sum(skips)))
    >>> (w.input_size, w.output_size, w.state_size)
    (1, 1, 59)
    >>> w.stream().process(np.zeros((5, 1))).shape
    (5, 1)
    """

    def __init__(
        self,
        layers: Iterable[Layer],
        dtype: Any = np.float32,
        initial_state: Any = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        input_skip: int | None = None,
        output_gain: float = 1.0,
    ) -> None:
        self._output = None
        self._edges = None
        if isinstance(layers, Node):
            # a graph (graph.py): its layers in execution order and what each reads
            self._output = layers
            input_size, layers, edges = flatten(layers)
            self._edges = tuple(edges)
            if input_skip is not None or output_gain != 1.0:
                raise WeightsError("input_skip and output_gain are for chains; in a graph write "
                                   "them as nodes (y = (f(x) + x[a:b]) * gain)")
        else:
            layers = list(layers) if not isinstance(layers, Layer) else [layers]
        if not layers:
            raise WeightsError("a model needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise WeightsError(
                    f"layer {i} is a {type(layer).__name__}, not a streamgru layer "
                    f"(GRU, LSTM, RNN, Dense, Conv1d, BatchNorm, LayerNorm, PReLU, MaxPool1d "
                    f"or AvgPool1d)"
                )
        for i in range(1, len(layers) if self._edges is None else 0):
            prev, cur = layers[i - 1], layers[i]
            if prev.output_size != cur.input_size:
                raise WeightsError(
                    f"layer {i - 1} ({type(prev).__name__}) outputs {prev.output_size} values "
                    f"but layer {i} ({type(cur).__name__}) takes {cur.input_size}"
                )
        self._dtype = _model_dtype(dtype)
        # the layers as given, so astype() converts from the source precision
        # (float64 layers in a float32 model widen back exactly), and the
        # layers the model computes with, in its dtype
        self._sources = tuple(layers)
        # one converted layer per layer object: a layer called twice in a graph stays shared
        converted: dict[int, Layer] = {}
        for layer in layers:
            if id(layer) not in converted:
                converted[id(layer)] = layer.astype(self._dtype)
        self._layers = tuple(converted[id(layer)] for layer in layers)
        self._input_size = layers[0].input_size if self._edges is None else input_size
        self._state_size = sum(layer.state_size for layer in self._layers)
        init = np.zeros(self._state_size, self._dtype)
        if initial_state is not None:
            given = np.asarray(initial_state)
            if given.dtype.kind not in "fiu" or given.shape != (self._state_size,):
                raise WeightsError(
                    f"initial_state: expected {self._state_size} real numbers, got "
                    f"shape {given.shape} of {given.dtype}"
                )
            if not np.all(np.isfinite(given)):
                raise WeightsError("initial_state: contains NaN or inf")
            init[:] = given
            # kept at its own precision for astype, like the layers
            self._initial_source = np.array(given, np.float64 if given.dtype.kind != "f" else None)
        else:
            self._initial_source = None
        init.setflags(write=False)
        self._initial_state = init
        self._input_skip = _input_skip(input_skip, self.input_size, self.output_size)
        if self._input_skip is not None and (self.latency or self.stride > 1):
            raise WeightsError(
                f"input_skip: the model has a latency of {self.latency} samples and a stride of "
                f"{self.stride}; the input skip adds x_t to the output of step t, which would not "
                f"line up with the delayed or downsampled output")
        self._output_gain = _output_gain(output_gain)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._plan_cache = None

    # -- shape ----------------------------------------------------------------
    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers, in order, with arrays in the model's dtype."""
        return self._layers

    @property
    def input_size(self) -> int:
        return self._input_size

    @property
    def graph(self) -> tuple[tuple[int, ...], ...] | None:
        """None for a chain; for a graph model, ``graph[i]`` is the tuple of
        nodes layer i reads (0: the model input, ``j + 1``: layer j's output);
        the last layer's output is the model's."""
        return self._edges

    @property
    def output_size(self) -> int:
        return self._layers[-1].output_size

    @property
    def state_size(self) -> int:
        """Length of ``get_state()``: each recurrent layer's state, in order
        (GRU, RNN: h; LSTM: h then c)."""
        return self._state_size

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def latency(self) -> int:
        """Samples of delay: step t's output is the offline model's output at
        t - latency (zeros for t < latency). 0 while every layer is causal; a
        "same"-padded or unpadded Conv1d (or a pool) adds the samples it waits
        for, counted at the input rate (after a stride-s layer, s per sample).
        In a downsampling model it is the number of inputs before the first
        row.

        Examples
        --------
        >>> import numpy as np, streamgru as sg
        >>> conv = sg.Conv1d(np.ones((2, 2, 5)), padding="same")     # 2 samples ahead
        >>> sg.Model([conv, sg.Conv1d(np.ones((2, 2, 3)), padding=1)]).latency
        3
        """
        total, rate = 0, 1
        for layer in self._layers:
            total += getattr(layer, "latency", 0) * rate
            rate *= getattr(layer, "stride", 1)
        return total

    @property
    def stride(self) -> int:
        """The total downsampling: the model emits one row every ``stride``
        inputs (the product of its layers' strides; 1 for most models). With
        ``stride > 1`` ``Stream.process`` returns only the rows produced and
        ``Stream.step`` returns None for an input that produced none.

        Examples
        --------
        >>> import numpy as np, streamgru as sg
        >>> m = sg.Model([sg.Conv1d(np.ones((4, 2, 3)), stride=2), sg.MaxPool1d(4, 3)])
        >>> (m.stride, m.latency)
        (6, 4)
        """
        return math.prod(getattr(layer, "stride", 1) for layer in self._layers)

    @property
    def initial_state(self) -> np.ndarray:
        """The (read-only) state a new or reset stream starts from."""
        return self._initial_state

    @property
    def input_skip(self) -> int | None:
        """Offset ``a`` of the input values added to the output
        (``y = output_gain * (net(x) + x[a : a + output_size])``), or None."""
        return self._input_skip

    @property
    def output_gain(self) -> float:
        """The factor applied to the final output (1.0: none)."""
        return self._output_gain

    @property
    def num_parameters(self) -> int:
        """Number of weights and biases."""
        return int(sum(a.size for layer in self._layers for a in layer.arrays().values()))

    # -- conversion -----------------------------------------------------------
    def astype(self, dtype: Any) -> "Model":
        """A new Model computing in ``dtype`` (float32 or float64), converted
        from the layers as they were given (not from this model's rounding).

        Examples
        --------
        >>> import numpy as np, streamgru as sg
        >>> w = np.full((3, 1), 0.1)                       # float64 weights
        >>> m = sg.Model([sg.Dense(w)])                     # computes in float32
        >>> float(m.astype(np.float64).layers[0].weight[0, 0]) == 0.1
        True
        """
        return Model(self._sources if self._output is None else self._output,
                     _model_dtype(dtype), self._initial_source, self.metadata,
                     input_skip=self._input_skip, output_gain=self._output_gain)

    def quantize(self, kind: str) -> "Model":
        """A new Model whose recurrent and Dense weight matrices are stored
        as ``kind``: ``"int8"`` (symmetric, one float32 scale per output
        row: ``W = scale[:, None] * values``), ``"float16"`` or
        ``"bfloat16"`` (rounded to nearest even). Inputs, state, outputs,
        biases, LSTM projections and peepholes, convolutions and norms stay
        in ``dtype``; the kernels widen the stored weights in registers, so
        the only difference from this model is the weights' rounding.

        Rounds from the layers as given (a float64 source is rounded once,
        not through float32). Weights already stored as ``kind`` (an
        imported quantized model) are kept bit for bit; a model already
        holding another reduced type is refused (WeightsError): quantize
        its float original instead. An unknown ``kind`` is a WeightsError
        listing the three.

        Examples
        --------
        >>> import numpy as np, streamgru as sg
        >>> rng = np.random.default_rng(0)
        >>> m = sg.Model([sg.GRU.from_torch(rng.normal(size=(48, 4)), rng.normal(size=(48, 16)))])
        >>> q = m.quantize("int8")
        >>> (q.weights_dtype, q.dtype, m.weights_dtype)
        (dtype('int8'), dtype('float32'), dtype('float32'))
        >>> x = rng.normal(size=4).astype(np.float32)
        >>> bool(np.abs(q.stream().step(x) - m.stream().step(x)).max() < 0.05)
        True
        """
        from .layers.quant import weight_type

        kind = weight_type(kind)
        if self._output is not None:
            return Model(map_layers(self._output, lambda layer: layer.quantize(kind)), self._dtype,
                         self._initial_source, self.metadata)
        return Model([layer.quantize(kind) for layer in self._sources], self._dtype,
                     self._initial_source, self.metadata,
                     input_skip=self._input_skip, output_gain=self._output_gain)

    @property
    def weights_dtype(self) -> Any:
        """The type the recurrent and Dense weight matrices are stored in:
        ``dtype`` for a float model, else ``np.dtype(np.int8)``,
        ``np.dtype(np.float16)``, or for bfloat16 (which numpy has no dtype
        for) ``streamgru.layers.quant.BFLOAT16``, whose ``.name`` is
        ``"bfloat16"`` and which equals the string ``"bfloat16"``. If the
        layers hold different reduced types, the one holding the most
        weights."""
        counts: dict = {}
        for layer in self._layers:
            wd = layer.weights_dtype
            if wd is not None and wd != self._dtype:  # None: a graph's element-wise op
                n = sum(getattr(layer, name).size for name in layer._weight_names)
                counts[wd.name] = (counts.get(wd.name, (0, wd))[0] + n, wd)
        if not counts:
            return self._dtype
        return max(counts.values(), key=lambda c: c[0])[1]

    @property
    def weights_nbytes(self) -> int:
        """Bytes of every layer array as stored (int8 scales included)."""
        return int(sum(a.nbytes for layer in self._layers for a in layer.arrays().values()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Model):
            return NotImplemented
        return (
            self._dtype == other._dtype
            and self._layers == other._layers
            and self._edges == other._edges
            and np.array_equal(self._initial_state, other._initial_state)
            and self._input_skip == other._input_skip
            and self._output_gain == other._output_gain
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{type(l).__name__}({l.input_size}->{l.output_size})" for l in self._layers
        )
        if self._edges is not None:
            return (f"Model(graph of {len(self._layers)} layers and ops, {self.input_size}->"
                    f"{self.output_size}, dtype={self._dtype.name})")
        extra = "" if self._input_skip is None else f", input_skip={self._input_skip}"
        if self._output_gain != 1.0:
            extra += f", output_gain={self._output_gain!r}"
        return f"Model([{inner}], dtype={self._dtype.name}{extra})"

    # -- streams --------------------------------------------------------------
    def _plan(self):
        """The packed weights the kernels run on, built once per model."""
        if self._plan_cache is None:
            from .kernels.plan import build_plan

            self._plan_cache = build_plan(self._layers, self._dtype,
                                          self._input_skip, self._output_gain, self._edges,
                                          self._input_size)
        return self._plan_cache

    def stream(self) -> "Stream":
        """One stream at the model's initial state (a ``decimate.Decimated``
        Stream when the model downsamples)."""
        if self.stride > 1:
            from .decimate import DecimatedStream as Stream
        else:
            from .stream import Stream

        return Stream(self)

    def streams(self, n: int) -> "StreamBatch":
        """``n`` independent streams sharing this model's weights."""
        if self.stride > 1:
            from .decimate import DecimatedBatch as StreamBatch
        else:
            from .stream import StreamBatch

        return StreamBatch(self, n)
