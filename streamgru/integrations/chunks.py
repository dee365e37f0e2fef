"""The work of a keyed streamgru operator, independent of any stream processor.

A record is one chunk of samples of one stream; a stream's stored state is
``(seq, state bytes)``: the ``seq`` of the last chunk applied and the bytes
of ``Stream.get_state()`` (little-endian, the model's dtype). ``ChunkRunner``
applies a chunk to a stored state with one scratch ``Stream``, so a worker
serving many keys holds one stream, not one per key. Models travel as the
native format's bytes. ``streamgru.integrations.flink`` builds on this.

>>> import numpy as np, streamgru as sg
>>> from streamgru.integrations.chunks import ChunkRunner, state_from_bytes
>>> rng = np.random.default_rng(0)
>>> m = sg.Model([sg.GRU.from_torch(rng.normal(size=(6, 3)), rng.normal(size=(6, 2)))])
>>> run = ChunkRunner(m)
>>> X = rng.normal(size=(4, 3)).astype(np.float32)
>>> stored, y = run.advance(None, 0, X.tobytes())
>>> stored[0], y.shape
(0, (4, 2))
>>> s = m.stream(); ref = s.process(X)
>>> bool(np.array_equal(y, ref)), bool(np.array_equal(state_from_bytes(stored[1], m), s.get_state()))
(True, True)
>>> run.advance(stored, 0, X.tobytes()) is None   # the same chunk again: a duplicate
True
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any

import numpy as np

from ..errors import InputError, StreamGRUError
from ..model import Model

__all__ = ["ChunkRunner", "load_once", "model_bytes", "model_from_bytes", "samples_to_bytes",
           "state_from_bytes", "state_to_bytes"]

OUTPUTS = ("outputs", "argmax")


# ----------------------------------------------------------------------------
# models and states as bytes (what travels in a job graph and a checkpoint)


def model_bytes(model: Model) -> bytes:
    """``model`` in streamgru's native ``.npz`` format, as bytes.

    >>> import numpy as np, streamgru as sg
    >>> m = sg.Model([sg.Dense(np.eye(2))])
    >>> model_from_bytes(model_bytes(m)) == m
    True
    """
    from ..formats import save

    with tempfile.TemporaryDirectory(prefix="streamgru-") as tmp:
        path = os.path.join(tmp, "model.npz")
        save(model, path)
        with open(path, "rb") as f:
            return f.read()


_MODELS: dict[str, Model] = {}


def model_from_bytes(data: bytes) -> Model:
    """The Model in native-format bytes, loaded once per process (cached by
    content hash) through ``sg.load``, so every check of the reader applies;
    a bad file raises ``WeightsError``."""
    key = hashlib.sha256(data).hexdigest()
    model = _MODELS.get(key)
    if model is None:
        from ..formats import load

        with tempfile.TemporaryDirectory(prefix="streamgru-") as tmp:
            path = os.path.join(tmp, f"{key[:12]}.npz")
            with open(path, "wb") as f:
                f.write(data)
            model = load(path)
        _MODELS[key] = model
    return model


def load_once(source: bytes | str) -> Model:
    """The model of native-format bytes or of a file path, loaded once per process."""
    if isinstance(source, bytes):
        return model_from_bytes(source)
    model = _MODELS.get(source)
    if model is None:
        from ..formats import load

        model = _MODELS[source] = load(source)
    return model


def _le(model: Model) -> np.dtype:
    return model.dtype.newbyteorder("<")


def state_to_bytes(state: Any, model: Model) -> bytes:
    """A stream's state (``get_state()``) as the bytes Flink stores:
    ``state_size`` little-endian values of the model's dtype."""
    st = np.ascontiguousarray(state, dtype=_le(model))
    if st.shape != (model.state_size,):
        raise InputError(f"state_to_bytes: expected a state of shape ({model.state_size},), "
                         f"got shape {st.shape}")
    return st.tobytes()


def state_from_bytes(raw: bytes, model: Model) -> np.ndarray:
    """The state (as ``get_state()`` gives it) stored in Flink's keyed state
    or a checkpoint; InputError if ``raw`` is not ``state_size`` values."""
    dt = _le(model)
    if len(raw) != model.state_size * dt.itemsize:
        raise InputError(
            f"state_from_bytes: {len(raw)} bytes; a state of this model is {model.state_size} "
            f"{model.dtype.name} values ({model.state_size * dt.itemsize} bytes)"
        )
    return np.frombuffer(raw, dtype=dt).astype(model.dtype)


def samples_to_bytes(samples: Any, model: Model) -> bytes:
    """A chunk (T, input_size) as the bytes a record carries (model dtype, little-endian)."""
    X = np.ascontiguousarray(samples, dtype=_le(model))
    if X.ndim != 2 or X.shape[1] != model.input_size:
        raise InputError(f"samples_to_bytes: expected shape (T, {model.input_size}), "
                         f"got {X.shape}")
    return X.tobytes()


# ----------------------------------------------------------------------------
# the operator's work, independent of Flink


class ChunkRunner:
    """Apply chunks to stored states with one scratch ``Stream`` (one per worker).

    Parameters
    ----------
    model : Model
    output : "outputs" or "argmax"
        What :meth:`emit` makes of a chunk's outputs: all of them flattened
        (T * output_size floats), or each sample's argmax (T ints).
    """

    def __init__(self, model: Model, output: str = "outputs") -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.model = model
        self.output = output
        self._stream = model.stream()
        self._dt = _le(model)
        self._I = model.input_size

    def samples(self, value: Any) -> np.ndarray:
        """A record's samples as a (T, input_size) array; InputError otherwise."""
        if isinstance(value, (bytes, bytearray, memoryview)):
            if len(value) % (self._I * self._dt.itemsize):
                raise InputError(
                    f"samples: {len(value)} bytes is not a whole number of samples of "
                    f"{self._I} {self.model.dtype.name} values"
                )
            return np.frombuffer(value, dtype=self._dt).reshape(-1, self._I)
        try:
            X = np.asarray(value)
        except (TypeError, ValueError):  # ragged nesting, for one
            raise InputError(f"samples: expected (T, {self._I}) numbers, got a "
                             f"{type(value).__name__} that is not a rectangular array") from None
        return X.reshape(-1, self._I) if X.ndim == 1 and X.size % self._I == 0 else X

    def advance(self, stored: Any, seq: int, samples: Any):
        """Run one chunk from ``stored`` (``(seq, state bytes)`` or None for
        a new stream); return ``((seq, new state bytes), outputs)``, or None
        for a duplicate (``seq`` not above the stored one). Bad samples raise
        InputError; a stored state of the wrong size, StreamGRUError."""
        stream = self._stream
        if stored is None:
            stream.reset()
        else:
            if seq <= stored[0]:
                return None
            try:
                state = state_from_bytes(stored[1], self.model)
            except InputError as exc:
                # not the record's fault: dropping records would hide it
                raise StreamGRUError(
                    f"the stored state does not fit this model ({exc}): the job restored "
                    f"state written with another model; migrate it with state_from_bytes"
                ) from None
            stream.set_state(state)
        Y = stream.process(self.samples(samples))
        return (seq, stream.get_state().astype(self._dt).tobytes()), Y

    def emit(self, Y: np.ndarray) -> list:
        """The values a record carries out (a flat list, what Flink serialises)."""
        if self.output == "argmax":
            return Y.argmax(axis=1).tolist()
        return Y.ravel().tolist()
