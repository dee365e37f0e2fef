"""Stream and StreamBatch: a model's state and scratch, allocated once.

The Python methods validate and convert once, then call one compiled kernel.
The kernels check the input for NaN and inf before they touch the state, so a
bad sample raises ``InputError`` and leaves the state exactly as it was.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError
from .inputs import (
    _as_input, _check_out, _new_state, _nonfinite, _overlaps, _refuse_overlap, _shape,
)
from .kernels import calls, config, fastcall, network

__all__ = ["Stream", "StreamBatch"]

_ndarray = np.ndarray

_pool = None


def _thread_pool():
    """Worker threads for large StreamBatch calls (the kernels release the GIL)."""
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=max(1, config.THREADS - 1),
                                   thread_name_prefix="streamgru")
    return _pool


def _decline(x: Any, out: Any) -> None:
    """Stand-in for the fast step where it is unavailable: always declines."""
    return None


class Stream:
    """One stream: the state of every recurrent layer of a model, updated in place.

    Made by ``Model.stream()``. ``step`` and ``process`` advance the state;
    ``get_state``/``set_state`` snapshot and restore it; ``reset`` returns to
    the model's initial state.

    Examples
    --------
    >>> import numpy as np, streamgru as sg
    >>> rng = np.random.default_rng(1)
    >>> m = sg.Model([sg.GRU.from_torch(rng.normal(size=(6, 3)), rng.normal(size=(6, 2)))])
    >>> s = m.stream()
    >>> y = np.empty(2, np.float32)
    >>> s.step([1.0, 0.0, -1.0], out=y) is y
    True
    >>> snap = s.get_state()
    >>> first = s.process(np.ones((4, 3)))
    >>> s.set_state(snap)
    >>> bool(np.array_equal(s.process(np.ones((4, 3))), first))
    True
    """

    __slots__ = ("_model", "_w", "_meta", "_buf", "_state", "_dtype", "_xshape", "_oshape", "_I", "_O",
                 "_fast", "_kstep", "_kprocess")
    _model_stride = 1  # DecimatedStream: the model's stride, and _rows(T) counts the rows out

    def __init__(self, model) -> None:
        plan = model._plan()
        self._model = model
        # the buffer's header holds the addresses of w and meta, which the
        # kernels follow: these references keep them alive as long as _buf
        self._w = plan.w
        self._meta = plan.meta
        # the canonical dtype object: the fast path compares descriptors by identity
        self._dtype = np.dtype(model.dtype.char)
        self._buf, self._state = network.stream_buffer(plan)
        self._I = plan.input_size
        self._O = plan.output_size
        self._xshape = (plan.input_size,)
        self._oshape = (plan.output_size,)
        self._state[:] = model.initial_state
        # step's fast path: a builtin that runs the kernel when x and out are
        # exactly what it needs and declines (returns something other than
        # out, having changed nothing) otherwise
        # the kernels of this model's layer kinds, compiled or loaded once per process
        calls.prepare(plan.meta, self._dtype)
        self._fast = fastcall.builtin(
            self._buf, self._dtype,
            release_gil=plan.w.nbytes >= fastcall.RELEASE_GIL_BYTES) or _decline
        # the checked path's kernels, loaded when first needed (start-up):
        # locked to this dtype, they raise TypeError for any other array type
        self._kstep = None
        self._kprocess = None

    @property
    def model(self):
        """The Model this stream runs."""
        return self._model

    def step(self, x: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Advance the stream by one sample.

        Parameters
        ----------
        x : array (input_size,)
            One sample; other real dtypes, non-contiguous and read-only arrays
            are converted (a copy; read-only arrays would otherwise need a
            compiled kernel of their own).
        out : array (output_size,), optional
            Where to write the output (exactly ``numpy.ndarray``, C-contiguous,
            writeable, the model's dtype). With ``out`` given and ``x``
            already in the model's dtype, nothing is allocated. ``out`` must
            not share memory with ``x`` (``out=x`` included): InputError.

        Returns
        -------
        array (output_size,)
            ``out`` itself if given, else a new array.

        Raises
        ------
        InputError
            Wrong shape or type (a masked array included), NaN/inf in ``x``,
            or an unsuitable ``out``; the state and ``out`` are unchanged.
        """
        if out is None:
            out = np.empty(self._oshape, self._dtype)
        if self._fast(x, out) is out:
            return out
        return self._step_checked(x, out)

    def _step_checked(self, x: Any, out: np.ndarray) -> np.ndarray:
        """``step`` for whatever the fast path declined: ``x`` is converted
        (or refused with InputError) and ``out`` checked, then the fast
        path runs again (on views with the canonical dtype object, which
        is what it compares); if it still declines, ``x`` holds NaN or inf.
        Where the fast path is unavailable, the locked ``step`` kernel does
        the same (its dispatcher checks each array's type)."""
        status = -1
        if self._fast is _decline:
            if self._kstep is None:
                self._kstep = network.entry("step", self._dtype)
            # numba's dispatcher would also take ndarray subclasses (a masked
            # array's data without its mask): only exact ndarrays go straight in
            if type(x) is _ndarray and type(out) is _ndarray and not _overlaps(x, out):
                try:
                    status = self._kstep(x, out, self._buf)
                except TypeError:
                    status = -1
        if status == -1:
            given = x
            x = _as_input(x, self._xshape, self._dtype, "step", f"x of shape {self._xshape}")
            _check_out(out, self._oshape, self._dtype, "step")
            _refuse_overlap(given, out, "step", "x")
            if self._fast is _decline:
                status = self._kstep(x, out, self._buf)
            else:
                o = out if out.dtype is self._dtype else out.view(self._dtype)
                if self._fast(x if x.dtype is self._dtype else x.view(self._dtype), o) is o:
                    return out
                status = 1
                if np.isfinite(x).all():  # not expected: let the checked kernel decide
                    status = network.entry("step", self._dtype)(x, out, self._buf)
        if status:
            raise InputError(
                f"step: x contains {_nonfinite(x)}; expected finite values. "
                f"The stream's state is unchanged."
            )
        return out

    def process(self, X: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Advance the stream by T samples at once.

        Equivalent to calling ``step`` on each row in order, but faster: the
        input projection of a whole tile of rows is computed first.

        Parameters
        ----------
        X : array (T, input_size)
        out : array (T, output_size), optional
            Exactly ``numpy.ndarray``, C-contiguous, writeable, the model's
            dtype, not sharing memory with ``X``.

        Returns
        -------
        array (T, output_size)

        Raises
        ------
        InputError
            Wrong shape or type (a masked array included), an unsuitable
            ``out``, or NaN/inf anywhere in ``X``: nothing is applied, not
            even the rows before the bad one, and ``out`` is untouched.
        """
        given = X
        if not (
            type(X) is _ndarray
            and X.dtype is self._dtype
            and X.ndim == 2
            and X.shape[1] == self._I
            and X.flags.c_contiguous
            and X.flags.writeable
        ):
            expected = f"X of shape (T, {self._I})"
            shape = _shape(X, "process", expected)
            T = shape[0] if len(shape) == 2 else -1
            X = _as_input(X, (T, self._I), self._dtype, "process", expected)
        oshape = (X.shape[0] if self._model_stride == 1 else self._rows(X.shape[0]), self._O)
        if out is None:
            out = np.empty(oshape, self._dtype)
        else:
            _check_out(out, oshape, self._dtype, "process")
            _refuse_overlap(given, out, "process", "X")
        if self._kprocess is None:
            self._kprocess = network.entry("process", self._dtype)
        bad = self._kprocess(X, out, self._buf)
        if bad:
            raise InputError(
                f"process: X row {bad - 1} contains {_nonfinite(X[bad - 1])}; expected finite "
                f"values. Nothing was applied; the stream's state is unchanged."
            )
        return out

    def reset(self) -> None:
        """Return to the model's initial state."""
        self._state[:] = self._model.initial_state

    def get_state(self) -> np.ndarray:
        """A copy of the state: each stateful layer's state in order
        (GRU, RNN: h; LSTM: h then c; Conv1d: its ring of past inputs, see
        ``sg.Conv1d``), length ``model.state_size``."""
        return self._state.copy()

    def set_state(self, state: Any) -> None:
        """Replace the state with ``state`` (length ``model.state_size``, finite)."""
        self._state[:] = _new_state(
            state, self._state.shape, self._dtype, "a state", "state contains",
            "The stream's state is unchanged.",
        )

    def __reduce__(self):
        # copy, deepcopy and pickle: a new buffer (its header must point at
        # the copy's own plan, never at this one's) carrying the same state
        return (_restore_stream, (self._model, self.get_state()))

    def __repr__(self) -> str:
        return f"<Stream of {self._model!r}>"


def _restore_stream(model, state: np.ndarray) -> Stream:
    """A stream of ``model`` in ``state`` (how a Stream is copied and unpickled)."""
    s = model.stream()
    s.set_state(state)
    return s


class StreamBatch:
    """``n`` independent streams of one model, sharing its weights and scratch.

    Made by ``Model.streams(n)``. Row ``i`` of every input and output belongs
    to stream ``i``. What equals what:

    - ``process`` gives each stream the numbers ``Stream.process`` gives it.
    - ``step`` equals ``Stream.step`` to 1e-12 in float64 and within float
      rounding in float32: from n = 16 on, streams run together in tiles
      whose products are summed in another order (measured: up to 5e-6 apart
      after 200 steps of a GRU+LSTM model with outputs of order one; the same
      kind of difference as between ``Stream.step`` and ``Stream.process``).
      ``tests/test_inputs.py`` holds the batch to 1e-6 in float32.

    Examples
    --------
    >>> import numpy as np, streamgru as sg
    >>> rng = np.random.default_rng(2)
    >>> m = sg.Model([sg.GRU.from_torch(rng.normal(size=(6, 3)), rng.normal(size=(6, 2)))])
    >>> b = m.streams(4)
    >>> b.step(np.zeros((4, 3))).shape
    (4, 2)
    >>> b.process(np.zeros((4, 10, 3))).shape
    (4, 10, 2)
    >>> b.reset(2)
    """

    __slots__ = ("_model", "_w", "_meta", "_states", "_scratch", "_dtype", "_n", "_I", "_O",
                 "_kstep", "_kprocess", "_kfirst", "_work")
    _model_stride = 1  # DecimatedBatch: as for Stream

    def __init__(self, model, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"streams: n must be a positive integer, got {n!r}")
        plan = model._plan()
        self._model = model
        self._w = plan.w
        self._meta = plan.meta
        self._dtype = model.dtype
        self._n = int(n)
        self._I = plan.input_size
        self._O = plan.output_size
        self._states = np.empty((self._n, plan.state_size), self._dtype)
        self._states[:] = model.initial_state
        # one scratch buffer per thread that may share a call (not per stream:
        # memory stays the states plus a few kilobytes however large n is)
        self._scratch = np.zeros((max(1, config.THREADS), plan.scratch_size), self._dtype)
        # kernels are loaded at first use: keeps start-up short
        self._kstep = self._kprocess = self._kfirst = None
        calls.prepare(plan.meta, self._dtype, rows=True)
        self._work = self._n * plan.w.size  # weight reads per step, to size thread splits

    @property
    def model(self):
        """The Model these streams run."""
        return self._model

    def __len__(self) -> int:
        return self._n

    def step(self, X: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Advance every stream by one sample: X (n, input_size) -> (n, output_size).

        NaN or inf in any stream's sample, a wrong shape or type (a masked
        array included), or an unsuitable ``out`` (not exactly a writeable
        C-contiguous ndarray of the model's dtype, or sharing memory with
        ``X``) raises ``InputError``: no stream advances and ``out`` is
        untouched.
        """
        given = X
        shape = (self._n, self._I)
        if not (
            type(X) is _ndarray
            and X.dtype is self._dtype
            and X.shape == shape
            and X.flags.c_contiguous
            and X.flags.writeable
        ):
            X = _as_input(X, shape, self._dtype, "step", f"X of shape {shape}")
        oshape = (self._n, self._O)
        if out is None:
            out = np.empty(oshape, self._dtype)
        else:
            _check_out(out, oshape, self._dtype, "step")
            _refuse_overlap(given, out, "step", "X")
        if self._kstep is None:
            self._kstep = network.entry("batch_step", self._dtype)
        bad = self._call(self._kstep, X, out, 1)
        if bad:
            raise InputError(
                f"step: X row {bad - 1} (stream {bad - 1}) contains {_nonfinite(X[bad - 1])}; "
                f"expected finite values. No stream was advanced."
            )
        return out

    def process(self, X: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Advance every stream by T samples: X (n, T, input_size) -> (n, T, output_size).

        NaN or inf anywhere, or a bad ``X`` or ``out`` (as for ``step``),
        raises ``InputError``: no stream advances and ``out`` is untouched.
        """
        given = X
        if not (
            type(X) is _ndarray
            and X.dtype is self._dtype
            and X.ndim == 3
            and X.shape[0] == self._n
            and X.shape[2] == self._I
            and X.flags.c_contiguous
            and X.flags.writeable
        ):
            expected = f"X of shape ({self._n}, T, {self._I})"
            shape = _shape(X, "process", expected)
            T = shape[1] if len(shape) == 3 else -1
            X = _as_input(X, (self._n, T, self._I), self._dtype, "process", expected)
        T = X.shape[1]
        oshape = (self._n, T if self._model_stride == 1 else self._rows(T), self._O)
        if out is None:
            out = np.empty(oshape, self._dtype)
        else:
            _check_out(out, oshape, self._dtype, "process")
            _refuse_overlap(given, out, "process", "X")
        if self._kprocess is None:
            self._kprocess = network.entry("batch_process", self._dtype)
        bad = self._call(self._kprocess, X, out, X.shape[1])
        if bad:
            raise InputError(
                f"process: X[{bad - 1}] (stream {bad - 1}) contains {_nonfinite(X[bad - 1])}; "
                f"expected finite values. No stream was advanced."
            )
        return out

    def _call(self, kernel, X: np.ndarray, out: np.ndarray, T: int) -> int:
        """Run ``kernel`` over all streams, split across threads when the call
        is large enough; returns the kernel's status."""
        n = self._n
        work = self._work * T
        if work < 2 * config.PARALLEL_MIN_WORK or config.THREADS < 2:
            return kernel(X, out, self._w, self._meta, self._states, self._scratch[0], 0, n)
        parts = min(len(self._scratch), config.THREADS, n, work // config.PARALLEL_MIN_WORK)
        # the whole input is checked before any thread moves a stream
        if self._kfirst is None:
            self._kfirst = network.entry("first_bad", self._dtype)
        bad = self._kfirst(X.reshape(n, -1))
        if bad >= 0:
            return bad + 1
        bounds = [n * k // parts for k in range(parts + 1)]
        pool = _thread_pool()
        jobs = [
            pool.submit(kernel, X, out, self._w, self._meta, self._states, self._scratch[k],
                        bounds[k], bounds[k + 1])
            for k in range(1, parts)
        ]
        status = kernel(X, out, self._w, self._meta, self._states, self._scratch[0], 0, bounds[1])
        for job in jobs:
            status = status or job.result()
        return status

    def reset(self, i: int | None = None) -> None:
        """Return all streams, or stream ``i``, to the model's initial state."""
        if i is None:
            self._states[:] = self._model.initial_state
        else:
            self._states[self._index(i)] = self._model.initial_state

    def _index(self, i: Any) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not -self._n <= i < self._n:
            raise InputError(f"stream index must be an integer in [0, {self._n}), got {i!r}")
        return int(i)

    def get_state(self) -> np.ndarray:
        """A copy of all states, shape (n, state_size)."""
        return self._states.copy()

    def set_state(self, states: Any) -> None:
        """Replace all states with ``states`` of shape (n, state_size), finite."""
        self._states[:] = _new_state(
            states, self._states.shape, self._dtype, "states", "states contain",
            "No stream's state was changed.",
        )

    def __repr__(self) -> str:
        return f"<StreamBatch of {self._n} streams of {self._model!r}>"
