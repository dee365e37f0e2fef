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
the rest (from ``streamgru.integrations.chunks``, which has the examples)
works without it.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import sys
from typing import Any

import numpy as np

from ..errors import InputError
from ..model import Model
from .chunks import (OUTPUTS, ChunkRunner, load_once, model_bytes, model_from_bytes,
                     samples_to_bytes, state_from_bytes, state_to_bytes)

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
                self._runner = ChunkRunner(load_once(self.model_data), self.output)
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
