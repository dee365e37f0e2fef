"""streamgru.integrations.flink: the operator's per-chunk work (no Flink needed),
and the fleet job on a local Flink mini-cluster surviving an injected failure
and a SIGKILLed Python worker with exactly the outputs of a single-process run.

The two mini-cluster tests need PyFlink (``pip install -e ".[flink]"``, Java
17) and are skipped only when ``pyflink`` cannot be imported; together they
take about two minutes on a busy 2-core machine (a JVM start-up each, and two
restores from checkpoints).

Exactly-once, as tested: Flink restores keyed state and the source's position
from the same checkpoint and replays from there, so a state update is neither
lost nor applied twice; the FileSink is transactional (a part file becomes
visible only when the checkpoint after it completes, and a restore drops the
uncommitted ones), so no output line is lost or written twice. The operator
also stores each stream's last ``seq`` and drops a chunk that is not newer: an
at-least-once source's duplicates never reach the state either.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import streamgru as sg
from streamgru.data import WATCH_GRU
from streamgru.integrations import flink as sgf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "flink_fleet.py")


def small_model(dtype, seed=0):
    rng = np.random.default_rng(seed)
    layers = [sg.GRU.from_torch(rng.normal(size=(15, 3)), rng.normal(size=(15, 5)),
                                rng.normal(size=15), rng.normal(size=15)),
              sg.LSTM.from_torch(rng.normal(size=(16, 5)), rng.normal(size=(16, 4))),
              sg.Dense(rng.normal(size=(2, 4)), rng.normal(size=2))]
    return sg.Model(layers, dtype=dtype, initial_state=rng.normal(size=5 + 8))


def load_example():
    spec = importlib.util.spec_from_file_location("flink_fleet", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------
# without Flink


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunks_through_stored_states_equal_one_stream(dtype):
    """Chunks applied from bytes states (as the operator does, one scratch
    stream for interleaved keys) give exactly one Stream per key's outputs
    and state; the stored bytes are get_state() in little-endian."""
    m = small_model(dtype)
    rng = np.random.default_rng(1)
    runner = sgf.ChunkRunner(m)
    keys = {k: (m.stream(), None) for k in "abc"}
    for seq in range(40):
        for k in rng.permutation(list(keys)):
            X = rng.normal(size=(int(rng.integers(1, 9)), 3))
            ref, stored = keys[k]
            expected = ref.process(X)
            payload = sgf.samples_to_bytes(X, m) if seq % 2 else X.tolist()
            stored, Y = runner.advance(stored, seq, payload)
            np.testing.assert_array_equal(Y, expected.astype(dtype))
            assert stored[0] == seq
            assert stored[1] == ref.get_state().astype(np.dtype(dtype).newbyteorder("<")).tobytes()
            np.testing.assert_array_equal(sgf.state_from_bytes(stored[1], m), ref.get_state())
            keys[k] = ref, stored
    assert runner.emit(Y) == Y.ravel().tolist()
    assert sgf.ChunkRunner(m, "argmax").emit(Y) == Y.argmax(axis=1).tolist()


def test_duplicates_and_bad_records_change_nothing():
    m = small_model(np.float32)
    runner = sgf.ChunkRunner(m)
    X = np.ones((3, 3), np.float32)
    stored, _ = runner.advance(None, 5, X.tobytes())
    assert runner.advance(stored, 5, X.tobytes()) is None  # replayed
    assert runner.advance(stored, 2, X.tobytes()) is None  # older
    bad = X.copy()
    bad[1, 2] = np.nan
    with pytest.raises(sg.InputError, match="row 1"):
        runner.advance(stored, 6, bad.tobytes())
    with pytest.raises(sg.InputError, match="not a whole number of samples"):
        runner.advance(stored, 6, X.tobytes()[:-4])
    with pytest.raises(sg.InputError, match=r"shape \(T, 3\)"):
        runner.advance(stored, 6, np.ones((2, 4)))
    with pytest.raises(sg.InputError, match="not a rectangular array"):
        runner.advance(stored, 6, [[1, 2, 3], [4, 5]])
    # a stored state that does not fit the model is no bad record (which would
    # be dropped) but an error of the job: another model's checkpoint
    with pytest.raises(sg.StreamGRUError, match="another model") as info:
        runner.advance((5, stored[1][:-4]), 6, X.tobytes())
    assert not isinstance(info.value, sg.InputError)
    # the same state continues as if none of those had arrived
    ref = m.stream()
    ref.process(X)
    stored2, Y = runner.advance(stored, 6, X.tobytes())
    np.testing.assert_array_equal(Y, ref.process(X))
    with pytest.raises(sg.InputError, match="13 float32 values"):
        sgf.state_from_bytes(stored2[1][:-4], m)
    with pytest.raises(ValueError, match="output must be"):
        sgf.ChunkRunner(m, "logits")


def test_model_travels_as_native_bytes():
    m = small_model(np.float64)
    data = sgf.model_bytes(m)
    assert sgf.model_from_bytes(data) == m
    assert sgf.model_from_bytes(data) is sgf.model_from_bytes(data)  # loaded once per process
    with pytest.raises(sg.WeightsError):
        sgf.model_from_bytes(data[: len(data) // 2])


def test_import_needs_no_pyflink_and_names_the_extra(monkeypatch):
    code = ("import sys, streamgru, streamgru.integrations.flink as f; "
            "f.ChunkRunner; assert 'pyflink' not in sys.modules, 'pyflink imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
    monkeypatch.setitem(sys.modules, "pyflink", None)  # as if not installed
    monkeypatch.delitem(sgf.__dict__, "StreamGRUFunction", raising=False)
    for get in (lambda: sgf.StreamGRUFunction, sgf.job_configuration, sgf.record_type):
        with pytest.raises(ImportError, match=r'pip install "streamgru\[flink\]"'):
            get()


def test_fleet_replay_keeps_each_device_in_order():
    ff = load_example()
    fleet = ff.Fleet(30, 6, 16, seed=3)
    seen = {}
    for k in range(len(fleet)):
        dev, seq, raw = fleet.record(k)
        assert seq == seen.get(dev, -1) + 1
        seen[dev] = seq
        assert len(raw) == 16 * 6 * 4
    assert len(seen) == 30 and set(seen.values()) == {5}
    assert len({fleet.record(k)[0] for k in range(30)}) > 10  # interleaved, not device by device


# ----------------------------------------------------------------------------
# on a Flink mini-cluster


def test_fleet_job_is_exactly_once_across_a_failure_and_a_killed_worker(tmp_path):
    pytest.importorskip("pyflink", reason='PyFlink not installed: pip install -e ".[flink]"')
    ff = load_example()
    devices, chunks, chunk = 200, 20, 32
    out, progress = tmp_path / "out", tmp_path / "progress"
    cmd = [sys.executable, EXAMPLE, "--devices", str(devices), "--chunks", str(chunks),
           "--chunk", str(chunk), "--output", "outputs", "--out", str(out),
           "--progress", str(progress), "--rate", "600",
           "--fail-after", "600", "--kill-worker-after", "900"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # three attempts: the injected failure and the killed worker each restarted
    # the job, and each restart began past the start of the fleet's records,
    # so the state that came before was restored from a checkpoint
    starts = [line.split() for line in progress.read_text().splitlines()]
    assert [s[1] for s in starts] == ["0", "1", "2"], starts
    assert int(starts[1][3]) > 0 and int(starts[2][3]) > 0, starts

    # every device's every chunk exactly once, with exactly the outputs of
    # one process running the same chunks (an update lost or applied twice
    # would change that device's outputs from then on)
    fleet = ff.Fleet(devices, chunks, chunk)
    expected = ff.single_process(fleet, sg.load(WATCH_GRU), "outputs")
    rows = ff.read_output(str(out))
    got = {}
    for dev, seq, values in rows:
        assert (dev, seq) not in got, f"{dev} chunk {seq} written twice"
        got[dev, seq] = values
    assert got.keys() == expected.keys()
    wrong = [k for k in expected if got[k] != expected[k]]
    assert not wrong, f"{len(wrong)} chunks differ, first {wrong[:3]}"


JOB = """
import json, sys
import numpy as np
from pyflink.common import Row
from pyflink.datastream import StreamExecutionEnvironment
import streamgru as sg
from streamgru.integrations import flink as sgf

model_path, records_path, out_path = sys.argv[1:4]
model = sg.load(model_path)
with open(records_path) as f:
    records = [Row(r[0], r[1], bytes.fromhex(r[2])) for r in json.load(f)]
sgf.use_worker_processes()
env = StreamExecutionEnvironment.get_execution_environment(sgf.job_configuration())
env.set_parallelism(2)
source = env.from_collection(records, type_info=sgf.record_type())
out = sgf.apply_model(source, model_path)
with out.execute_and_collect() as rows:
    got = [[r[0], r[1], list(r[2])] for r in rows]
with open(out_path, "w") as f:
    json.dump(got, f)
"""


def test_operator_drops_duplicates_and_bad_records_on_flink(tmp_path):
    """A float64 GRU+LSTM model from a file, two keyed subtasks: every good
    chunk exactly as one Stream per key gives it; a replayed chunk and a chunk
    with inf are dropped without touching the state."""
    pytest.importorskip("pyflink", reason='PyFlink not installed: pip install -e ".[flink]"')
    import json

    m = small_model(np.float64, seed=4)
    sg.save(m, str(tmp_path / "m.npz"))
    rng = np.random.default_rng(5)
    streams = {f"s{i}": m.stream() for i in range(5)}
    records, expected = [], {}
    for seq in range(6):
        for key, s in streams.items():
            X = rng.normal(size=(int(rng.integers(1, 7)), 3))
            records.append([key, seq, sgf.samples_to_bytes(X, m).hex()])
            expected[key, seq] = s.process(X).ravel().tolist()
            if key == "s1" and seq == 2:  # the same record again, as an at-least-once source may
                records.append(records[-1])
            if key == "s2" and seq == 3:  # a bad sample: dropped, the stream goes on
                bad = X.copy()
                bad[0, 1] = np.inf
                records.append([key, seq + 100, sgf.samples_to_bytes(bad, m).hex()])
    (tmp_path / "records.json").write_text(json.dumps(records))
    (tmp_path / "job.py").write_text(JOB)
    proc = subprocess.run([sys.executable, "job.py", "m.npz", "records.json", "out.json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = {}
    for key, seq, values in json.loads((tmp_path / "out.json").read_text()):
        assert (key, seq) not in got
        got[key, seq] = values
    assert got == expected
