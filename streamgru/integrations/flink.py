"""streamgru as a keyed Apache Flink operator (PyFlink), state in Flink's keyed state.

Each record is one chunk of samples of one stream: ``(stream_id, seq,
samples)``, where ``samples`` holds T samples of ``input_size`` values (the
bytes of a (T, input_size) array in the model's dtype, little-endian, or a
flat or nested sequence of numbers) and ``seq`` numbers the stream's chunks
in order. After ``key_by(stream_id)``, the operator reads that stream's state
from Flink's keyed state, runs ``Stream.process`` on the chunk, writes the
state back and emits ``(stream_id, seq, values)``: the T x output_size
outputs flattened, or the T argmax classes.

What Flink checkpoints per stream is one row ``(seq, state)``: ``seq`` of
the last chunk applied, and ``state`` the bytes of ``Stream.get_state()``
(little-endian, the model's dtype, ``state_size`` values), so a checkpoint's
state can be read back with :func:`state_from_bytes` and handed to
``set_state`` (or migrated) with streamgru alone. A chunk whose ``seq`` is
not above the stored one is a duplicate (a replaying or at-least-once
source): it is dropped, so no update is ever applied twice.

PyFlink is imported only when a Flink object is asked for
(``StreamGRUFunction``, :func:`apply_model`, :func:`job_configuration`);
the rest works without it:

>>> import numpy as np, streamgru as sg
>>> from streamgru.integrations.flink import ChunkRunner, state_from_bytes
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

import builtins
import contextlib
import hashlib
import logging
import os
import sys
import tempfile
from typing import Any

import numpy as np

from ..errors import InputError, StreamGRUError
from ..model import Model

# StreamGRUFunction (made on first access, as it needs pyflink) is left out
# so that a star import works without pyflink
__all__ = [
    "INSTALL",
    "ChunkRunner",
    "apply_model",
    "job_configuration",
    "model_bytes",
    "model_from_bytes",
    "output_type",
    "record_type",
    "samples_to_bytes",
    "state_from_bytes",
    "state_to_bytes",
    "use_worker_processes",
]

INSTALL = 'pip install "streamgru[flink]"'
OUTPUTS = ("outputs", "argmax")

_log = logging.getLogger(__name__)


def _pyflink():
    """The pyflink modules this file uses, or ImportError saying how to get them."""
    try:
        from pyflink import common, datastream
        from pyflink.common import typeinfo
    except ImportError as exc:
        raise ImportError(
            f"streamgru.integrations.flink needs PyFlink (the apache-flink package, which "
            f"runs on Java 17): {INSTALL}  ({exc})"
        ) from exc
    return common, datastream, typeinfo


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


def _worker_model(source: bytes | str) -> Model:
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


@contextlib.contextmanager
def _builtin_print():
    """PyFlink's Python worker replaces ``builtins.print`` with a method of
    its own, and numba's import (which registers ``print`` for jitted code)
    fails unless ``builtins.print`` is a function named ``print`` of module
    ``builtins``. Meanwhile, put back the original (PyFlink keeps it as
    ``_print``) or else a stand-in that passes that check."""
    current = builtins.print
    original = getattr(getattr(current, "__self__", None), "_print", None)
    if getattr(original, "__module__", None) != "builtins":

        def original(*args, sep=" ", end="\n", file=None, flush=False):
            current(*args, sep=sep, end=end, file=file)

        original.__module__, original.__name__, original.__qualname__ = "builtins", "print", "print"
    builtins.print = original
    try:
        yield
    finally:
        builtins.print = current


# ----------------------------------------------------------------------------
# the Flink side (pyflink imported here only)


def _make_function_class():
    common, datastream, typeinfo = _pyflink()
    Types = typeinfo.Types

    class StreamGRUFunction(datastream.KeyedProcessFunction):
        """Keyed process function: one stream's state per key, ``(seq, state)``
        in a ValueState, updated once per chunk record.

        Parameters
        ----------
        model : Model, bytes or str
            The model or its native-format bytes (shipped inside the job), or
            the path of any file ``sg.load`` reads as the workers see it
            (shared storage); loaded once per Python worker.
        output : "outputs" or "argmax"
        on_bad_input : "drop" or "fail"
            A record with NaN/inf or the wrong size: dropped (state unchanged,
            counted in the ``streamgru_bad_records`` metric, logged), or the
            task fails (and, restarted, meets the same record again).
        """

        def __init__(self, model: Any, output: str = "outputs", on_bad_input: str = "drop"):
            if on_bad_input not in ("drop", "fail"):
                raise ValueError(f"on_bad_input must be 'drop' or 'fail', got {on_bad_input!r}")
            if output not in OUTPUTS:
                raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
            if isinstance(model, os.PathLike):
                model = os.fspath(model)
            self.model_data = model if isinstance(model, (bytes, str)) else model_bytes(model)
            self.output = output
            self.on_bad_input = on_bad_input

        def open(self, runtime_context):
            with _builtin_print():
                self._runner = ChunkRunner(_worker_model(self.model_data), self.output)
                # load the kernels now, not on the first record
                self._runner.advance(None, 0, np.zeros((1, self._runner.model.input_size)))
            desc = datastream.state.ValueStateDescriptor("streamgru", _STATE_TYPE(Types))
            self._state = runtime_context.get_state(desc)
            metrics = runtime_context.get_metrics_group()
            self._bad = metrics.counter("streamgru_bad_records")
            self._dupes = metrics.counter("streamgru_duplicate_records")

        def process_element(self, value, ctx):
            stream_id, seq, samples = value[0], value[1], value[2]
            try:
                done = self._runner.advance(self._state.value(), seq, samples)
            except InputError as exc:
                if self.on_bad_input == "fail":
                    raise
                self._bad.inc()
                _log.warning("streamgru: dropped record %s of stream %r: %s", seq, stream_id, exc)
                return
            if done is None:
                self._dupes.inc()
                return
            stored, Y = done
            self._state.update(common.Row(*stored))
            yield common.Row(stream_id, seq, self._runner.emit(Y))

    StreamGRUFunction.__module__ = __name__
    StreamGRUFunction.__qualname__ = "StreamGRUFunction"
    return StreamGRUFunction


def _STATE_TYPE(Types):
    return Types.ROW_NAMED(["seq", "state"], [Types.LONG(), Types.PRIMITIVE_ARRAY(Types.BYTE())])


def __getattr__(name: str):
    # the class derives from pyflink's KeyedProcessFunction, so it exists
    # only once asked for; pickled by reference, a worker rebuilds it here
    if name == "StreamGRUFunction":
        cls = _make_function_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def output_type(model: Model, output: str = "outputs", id_type: Any = None):
    """Flink type of the operator's records: Row(stream_id, seq, values)."""
    _, _, typeinfo = _pyflink()
    Types = typeinfo.Types
    if output == "argmax":
        values = Types.PRIMITIVE_ARRAY(Types.INT())
    else:
        values = Types.PRIMITIVE_ARRAY(Types.DOUBLE() if model.dtype == np.float64
                                       else Types.FLOAT())
    return Types.ROW_NAMED(["stream_id", "seq", "values"],
                           [id_type or Types.STRING(), Types.LONG(), values])


def record_type(id_type: Any = None):
    """Flink type of input records: Row(stream_id, seq, samples as bytes)."""
    _, _, typeinfo = _pyflink()
    Types = typeinfo.Types
    return Types.ROW_NAMED(["stream_id", "seq", "samples"],
                           [id_type or Types.STRING(), Types.LONG(),
                            Types.PRIMITIVE_ARRAY(Types.BYTE())])


def apply_model(records, model: Any, *, output: str = "outputs", id_type: Any = None,
                on_bad_input: str = "drop", name: str = "streamgru"):
    """``records.key_by(stream_id).process(StreamGRUFunction(model))``, typed.

    Parameters
    ----------
    records : pyflink DataStream of ``(stream_id, seq, samples)``
        Each stream's records in ``seq`` order (one source partition per
        stream id: per-key order is kept only from one upstream subtask).
    model : Model, bytes (native format) or a path to any file ``sg.load`` reads
    id_type : pyflink TypeInformation of stream_id, default ``Types.STRING()``

    Returns
    -------
    pyflink DataStream of Row(stream_id, seq, values)
    """
    _, _, typeinfo = _pyflink()
    Types = typeinfo.Types
    if isinstance(model, (str, os.PathLike)):
        from ..formats import load

        model = load(model)
    loaded = model if isinstance(model, Model) else model_from_bytes(model)
    key_type = id_type or Types.STRING()
    fn = __getattr__("StreamGRUFunction")(model_bytes(loaded), output, on_bad_input)
    return (records.key_by(_stream_id, key_type=key_type)
            .process(fn, output_type=output_type(loaded, output, key_type))
            .name(name).uid(name))


def _stream_id(record):
    return record[0]


def use_worker_processes() -> None:
    """Run the Python workers of jobs this process executes on a local
    mini-cluster as processes of their own, as on a cluster.

    PyFlink otherwise runs them as threads of this process ("loopback"):
    every Python operator then shares one interpreter lock, a killed worker
    is this process, and (seen with PyFlink 2.3) the interpreter can crash
    on exit after a job whose workers ran streamgru's kernels. Call it before
    ``execute``; it sets the environment variable PyFlink reads for this
    (``_python_worker_execution_mode``), so it has no effect on a cluster.
    """
    os.environ["_python_worker_execution_mode"] = "process"


def job_configuration(checkpoint_dir: str | None = None, *, interval_ms: int = 500,
                      restarts: int = 3, restart_delay_ms: int = 200,
                      state_backend: str = "rocksdb", active_keys: int = 1000,
                      python: str | None = None, extra: dict | None = None):
    """A pyflink ``Configuration`` for a streamgru job.

    Checkpoints every ``interval_ms`` (exactly-once) into ``checkpoint_dir``
    (a local path or a URI; none: checkpoints off), ``state_backend``
    ("rocksdb", incremental checkpoints, or "hashmap"), a fixed-delay restart strategy, the Python
    workers' executable (this interpreter by default) and their state cache
    sized to ``active_keys`` (the keys one worker sees between checkpoints:
    a smaller cache makes every record a round trip to the JVM for its
    state). ``extra`` adds or overrides any Flink option.
    """
    common, _, _ = _pyflink()
    opts = {
        "python.executable": python or sys.executable,
        "python.client.executable": python or sys.executable,
        "python.state.cache-size": str(max(1000, int(active_keys))),
        "state.backend.type": state_backend,
        # RocksDB: a checkpoint uploads only the files changed since the last
        # one, not every stream's state each time
        "state.backend.incremental": str(state_backend == "rocksdb").lower(),
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": str(restarts),
        "restart-strategy.fixed-delay.delay": f"{restart_delay_ms} ms",
    }
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # streamgru run from a source tree or an editable install: the workers
    # (started by the JVM, not by this interpreter) find it through their path
    if os.path.basename(here) not in ("site-packages", "dist-packages"):
        opts["python.pythonpath"] = here
    if checkpoint_dir is not None:
        uri = checkpoint_dir if "://" in checkpoint_dir else "file://" + os.path.abspath(checkpoint_dir)
        opts.update({
            "execution.checkpointing.interval": f"{interval_ms} ms",
            "execution.checkpointing.mode": "EXACTLY_ONCE",
            "execution.checkpointing.dir": uri,
        })
    opts.update(extra or {})
    conf = common.Configuration()
    for k, v in opts.items():
        conf.set_string(k, str(v))
    return conf
