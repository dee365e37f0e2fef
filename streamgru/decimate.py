"""Streams of a downsampling model (``Model.stride > 1``): fewer rows out than in.

A strided Conv1d or a pool emits one row every ``stride`` inputs, so a
model holding one answers only some inputs. Its streams keep the API of
``Stream`` and ``StreamBatch`` with two differences:

- ``process(X)`` returns only the rows the T inputs produced, shape
  (rows, output_size); ``rows_for(T)`` says how many beforehand (for
  ``out=``, which must have exactly that many rows);
- ``step(x)`` returns the new row, or None when the input produced none
  (``out``, if given, is then untouched).

The k-th row a stream produces is the offline model's k-th output row. The
layers' counters (kernels/rate.py) are part of the state, so ``get_state``,
``set_state``, ``reset`` and copies carry the phase of the stride.

A StreamBatch returns one array for all its streams, so a call must give
every stream the same number of rows. Streams started together always do;
after ``reset(i)`` (or ``set_state``) of some, a call whose inputs would
give them different numbers raises InputError and advances nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError
from .stream import Stream, StreamBatch

__all__ = ["DecimatedStream", "DecimatedBatch"]


def _counters(model) -> tuple[tuple[int, int, int], ...]:
    """(index of the counter in the state, delay D, stride s) of each layer
    that changes the row count, in order."""
    found, off = [], 0
    for layer in model.layers:
        at = getattr(layer, "counter_index", -1)
        if at >= 0:
            found.append((off + at, layer.latency, layer.stride))
        off += layer.state_size
    return tuple(found)


def _rows(counters, state, T: int) -> int:
    """Rows out for T more inputs from ``state`` (kernels/rate.py's count)."""
    n = T
    for at, D, s in counters:
        v = float(state[at])
        c = int(v) if 0 <= v < D + s else 0
        first = D - c if c <= D else D + s - c
        n = 0 if n <= first else 1 + (n - 1 - first) // s
    return n


class DecimatedStream(Stream):
    """A ``Stream`` of a downsampling model: ``step`` returns None when the
    input produced no row, ``process`` only the rows produced.

    Examples
    --------
    >>> import numpy as np, streamgru as sg
    >>> m = sg.Model([sg.AvgPool1d(1, 2)], dtype=np.float64)   # one row every 2 inputs
    >>> s = m.stream()
    >>> print(s.step([1.0]))
    None
    >>> s.step([3.0])
    array([2.])
    >>> s.rows_for(5)
    2
    >>> s.process(np.arange(5.0)[:, None]).ravel()
    array([0.5, 2.5])
    """

    __slots__ = ("_counters", "_spare", "_model_stride")

    def __init__(self, model) -> None:
        super().__init__(model)
        self._counters = _counters(model)
        self._model_stride = model.stride
        self._spare = np.empty(self._oshape, self._dtype)  # the row of an input that emits none

    def rows_for(self, T: int) -> int:
        """How many rows the next T inputs produce, from the current state."""
        return _rows(self._counters, self._state, T)

    _rows = rows_for

    def step(self, x: Any, out: np.ndarray | None = None) -> np.ndarray | None:
        """Advance by one sample: the row it produced (``out`` if given), or
        None if it produced none (``out`` untouched). Bad input raises
        InputError as ``Stream.step`` does, row or not."""
        if self.rows_for(1):
            return super().step(x, out)
        super().step(x, self._spare if out is None else out)
        return None


class DecimatedBatch(StreamBatch):
    """A ``StreamBatch`` of a downsampling model: ``step`` returns
    (n, output_size) or None, ``process`` (n, rows, output_size); each call
    must give every stream the same number of rows.

    Examples
    --------
    >>> import numpy as np, streamgru as sg
    >>> b = sg.Model([sg.MaxPool1d(2, 3)], dtype=np.float64).streams(2)
    >>> b.process(np.arange(14.0).reshape(2, 7, 1).repeat(2, axis=2)).shape
    (2, 2, 2)
    """

    __slots__ = ("_counters", "_spare", "_model_stride")

    def __init__(self, model, n: int) -> None:
        super().__init__(model, n)
        self._counters = _counters(model)
        self._model_stride = model.stride
        self._spare = np.empty((self._n, self._O), self._dtype)

    def rows_for(self, T: int) -> int:
        """How many rows per stream the next T inputs produce; InputError if
        that differs between streams (some at another phase of the stride,
        after a ``reset(i)``): then they cannot advance together."""
        rows = -1
        for i, st in enumerate(self._states):  # no builtin calls: the out= path stays lean
            r = _rows(self._counters, st, T)
            if rows < 0:
                rows = r
            elif r != rows:
                raise InputError(
                    f"the streams are at different phases of the model's stride "
                    f"{self._model_stride} (stream 0 would give {rows} rows for {T} inputs, "
                    f"stream {i} {r}), so they cannot advance together; reset() them all or "
                    f"run them as separate streams. No stream was advanced.")
        return rows

    _rows = rows_for

    def step(self, X: Any, out: np.ndarray | None = None) -> np.ndarray | None:
        """Advance every stream by one sample: their rows (n, output_size),
        or None if this input produced none (``out`` untouched)."""
        if self.rows_for(1):
            return super().step(X, out)
        super().step(X, self._spare if out is None else out)
        return None
