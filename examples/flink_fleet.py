"""A fleet of smartwatches on Apache Flink: every device its own GRU stream,
its state in Flink's keyed state, checkpointed (exactly once).

The shipped held-out smartwatch recordings (``streamgru.data.WATCH_TEST``)
are replayed as ``--devices`` concurrent devices: each starts at its own
point of the recordings, sends ``--chunk`` samples per record at its own
slightly jittered rate, and the records of all devices arrive interleaved
in time order. The job is

    number sequence (source, checkpointed offsets)
      -> map: record k of the fleet, (device id, seq, chunk bytes)
      -> key_by(device id) -> streamgru operator (state per device) -> argmax classes
      -> text lines "device,seq,class class ..." -> FileSink (files committed on checkpoints)

Run on a local mini-cluster (Python workers as their own processes):

    pip install -e ".[flink]"          # PyFlink 2.3 (needs Java 17)
    python examples/flink_fleet.py --devices 1000 --chunks 8 --out /tmp/fleet

On a cluster (Flink 2.3 with Java 17; the same Python, with numpy, numba,
apache-flink and streamgru, installed on every TaskManager):

    flink run --python examples/flink_fleet.py --devices 100000 --chunks 20 \\
        --worker-python /opt/venv/bin/python --parallelism 16 \\
        --out s3://bucket/fleet --checkpoints s3://bucket/fleet-ckpt

``--fail-after K`` raises in the first attempt after K records, and
``--kill-worker-after K`` SIGKILLs the Python worker in the second attempt:
watch Flink restore from the last checkpoint and the output stay exact
(tests/test_flink.py checks that against a single-process run).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from a source tree without an install
    sys.path.insert(0, ROOT)

RATE_HZ = 50.0


class Fleet:
    """The replay plan: which device's which chunk is record k (numpy only).

    Device d reads the recordings from its own offset, ``chunk`` samples per
    record, ``chunks`` records; record c of device d is sent at
    ``start_d + (c + 1) * period * rate_d + jitter`` (jitter below half a
    period, so each device's records stay in order) and all records are
    sorted by that time.
    """

    def __init__(self, devices: int, chunks: int, chunk: int, seed: int = 0) -> None:
        from streamgru.data import WATCH_TEST

        with np.load(WATCH_TEST) as z:
            data, self.labels = z["samples"], z["labels"]
        span = chunks * chunk
        if span > len(data):
            raise ValueError(f"{chunks} chunks of {chunk} samples exceed the {len(data)} samples")
        self.devices, self.chunks, self.chunk = devices, chunks, chunk
        self.data = np.ascontiguousarray(data, dtype="<f4")
        rng = np.random.default_rng(seed)
        self.offsets = rng.integers(0, len(data) - span + 1, size=devices)
        period = chunk / RATE_HZ
        start = rng.uniform(0, period, size=devices)
        rate = rng.uniform(0.98, 1.02, size=devices)
        c = np.arange(chunks)
        t = (start[:, None] + (c[None, :] + 1) * period * rate[:, None]
             + rng.uniform(0, 0.45 * period, size=(devices, chunks)))
        order = np.argsort(t, axis=None, kind="stable")
        self.device_of = (order // chunks).astype(np.int64)
        self.seq_of = (order % chunks).astype(np.int64)

    def __len__(self) -> int:
        return self.devices * self.chunks

    @staticmethod
    def name(d: int) -> str:
        return f"watch-{d:06d}"

    def _at(self, d: int, c: int) -> slice:
        o = self.offsets[d] + c * self.chunk
        return slice(o, o + self.chunk)

    def samples(self, d: int, c: int) -> np.ndarray:
        """Device d's chunk c, (chunk, 6) float32."""
        return self.data[self._at(d, c)]

    def chunk_labels(self, d: int, c: int) -> np.ndarray:
        """The exercise being done at each sample of device d's chunk c."""
        return self.labels[self._at(d, c)]

    def record(self, k: int) -> tuple:
        d, c = int(self.device_of[k]), int(self.seq_of[k])
        return self.name(d), c, self.samples(d, c).tobytes()

    def device_samples(self, d: int) -> np.ndarray:
        """All of device d's samples in order (for a single-process run)."""
        o = self.offsets[d]
        return self.data[o:o + self.chunks * self.chunk]


def single_process(fleet: Fleet, model, output: str = "argmax") -> dict:
    """What the job must emit, from one process: each device's chunks run
    through its own Stream in seq order. {(device name, seq): values}."""
    from streamgru.integrations.flink import ChunkRunner

    emit = ChunkRunner(model, output).emit
    expected = {}
    for d in range(fleet.devices):
        s = model.stream()
        for c in range(fleet.chunks):
            expected[fleet.name(d), c] = emit(s.process(fleet.samples(d, c)))
    return expected


def read_output(folder: str) -> list[tuple[str, int, list]]:
    """The committed lines of the job's FileSink (in-progress and pending
    part files, which a restore discards, start with a dot and are skipped)."""
    rows = []
    for dirpath, _, files in os.walk(folder):
        for fname in sorted(files):
            if fname.startswith("."):
                continue
            with open(os.path.join(dirpath, fname)) as f:
                for line in f:
                    dev, seq, values = line.rstrip("\n").split(",")
                    rows.append((dev, int(seq), [float(v) if "." in v or "e" in v else int(v)
                                                 for v in values.split()]))
    return rows


def fleet_records(env, fleet_args: tuple, rate: float = 0, progress: str | None = None):
    """The fleet's records as a DataStream of Row(device id, seq, chunk bytes):
    a number-sequence source (its position is checkpointed, so a restore
    resumes where the checkpoint was) and a map building record k of
    ``Fleet(*fleet_args)``; ``rate`` paces it in records per second."""
    from pyflink.common import Row, WatermarkStrategy
    from pyflink.datastream import MapFunction
    from pyflink.datastream.connectors.number_seq import NumberSequenceSource

    from streamgru.integrations import flink as sgf

    class FleetRecords(MapFunction):
        def open(self, ctx):
            self.fleet = Fleet(*fleet_args)
            self.first = True
            self.attempt = ctx.get_attempt_number()

        def map(self, k):
            if self.first:
                self.first, self.k0, self.t0 = False, k, time.monotonic()
                if progress:
                    # where this attempt's source began: above 0 after a restore from a checkpoint
                    with open(progress, "a") as f:
                        f.write(f"attempt {self.attempt} first_record {k}\n")
            if rate:  # the fleet's pace: devices send in real time
                ahead = self.t0 + (k - self.k0) / rate - time.monotonic()
                if ahead > 0.002:
                    time.sleep(ahead)
            return Row(*self.fleet.record(k))

    devices, chunks = fleet_args[:2]
    return (env.from_source(NumberSequenceSource(0, devices * chunks - 1),
                            WatermarkStrategy.no_watermarks(), "fleet-index")
            .set_parallelism(1)  # one partition: each device's records stay in order
            .map(FleetRecords(), output_type=sgf.record_type()).set_parallelism(1)
            .name("fleet-records"))


def build_job(env, args, model_path: str):
    """Wire the fleet job onto ``env``."""
    from pyflink.common import Types
    from pyflink.common.serialization import Encoder
    from pyflink.datastream import MapFunction
    from pyflink.datastream.connectors.file_system import BucketAssigner, FileSink

    from streamgru.integrations import flink as sgf

    class Chaos(MapFunction):
        """Fail on purpose: raise (attempt 0) or SIGKILL this Python worker (attempt 1)."""

        def open(self, ctx):
            self.attempt = ctx.get_attempt_number()
            self.first_subtask = ctx.get_index_of_this_subtask() == 0
            self.seen = 0

        def map(self, row):
            self.seen += 1
            if self.first_subtask and self.attempt == 0 and self.seen == args.fail_after:
                raise RuntimeError(f"injected failure after {self.seen} records")
            if self.first_subtask and self.attempt == 1 and self.seen == args.kill_worker_after:
                os.kill(os.getpid(), signal.SIGKILL)
            return f"{row[0]},{row[1]},{' '.join(map(repr, row[2]))}"

    records = fleet_records(env, (args.devices, args.chunks, args.chunk, args.seed),
                            args.rate, args.progress)
    results = sgf.apply_model(records, model_path, output=args.output)
    lines = results.map(Chaos(), output_type=Types.STRING()).name("to-text")
    sink = (FileSink.for_row_format(args.out, Encoder.simple_string_encoder())
            .with_bucket_assigner(BucketAssigner.base_path_bucket_assigner()).build())
    lines.sink_to(sink).name("files")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--chunks", type=int, default=8, help="records per device")
    p.add_argument("--chunk", type=int, default=64, help="samples per record")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="model file (default: the shipped watch GRU)")
    p.add_argument("--output", choices=("argmax", "outputs"), default="argmax",
                   help="per sample: the class, or all the model's outputs")
    p.add_argument("--worker-python", default=sys.executable,
                   help="the Python of the workers (on a cluster: the TaskManagers' one)")
    p.add_argument("--out", required=True, help="output folder (FileSink)")
    p.add_argument("--checkpoints", default=None, help="checkpoint folder or URI "
                   "(default: <out>-checkpoints)")
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--rate", type=float, default=0,
                   help="records per second the fleet sends (default: as fast as the job takes them)")
    p.add_argument("--interval-ms", type=int, default=500, help="checkpoint interval")
    p.add_argument("--fail-after", type=int, default=0, help="raise after K records (attempt 0)")
    p.add_argument("--kill-worker-after", type=int, default=0,
                   help="SIGKILL the Python worker after K records (attempt 1)")
    p.add_argument("--progress", default=None, help="append where each attempt's source began")
    args = p.parse_args(argv)

    from pyflink.datastream import StreamExecutionEnvironment

    from streamgru.data import WATCH_GRU
    from streamgru.integrations import flink as sgf

    sgf.use_worker_processes()  # on a local mini-cluster, as they are on a cluster

    conf = sgf.job_configuration(args.checkpoints or args.out.rstrip("/") + "-checkpoints",
                                 interval_ms=args.interval_ms, python=args.worker_python,
                                 active_keys=args.devices // max(1, args.parallelism) + 1)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(args.parallelism)
    build_job(env, args, args.model or WATCH_GRU)
    t0 = time.perf_counter()
    env.execute("streamgru fleet")
    wall = time.perf_counter() - t0
    n = args.devices * args.chunks
    print(f"{n} records ({n * args.chunk} samples) of {args.devices} devices in {wall:.1f} s "
          f"-> {args.out}")
    if args.output == "argmax" and "://" not in args.out:
        fleet = Fleet(args.devices, args.chunks, args.chunk, args.seed)
        rows = read_output(args.out)
        hits = sum(int(np.sum(np.equal(classes, fleet.chunk_labels(int(dev.split("-")[1]), seq))))
                   for dev, seq, classes in rows)
        print(f"{len(rows)} records written; the fleet's classes match the recordings' labels "
              f"for {100 * hits / max(1, len(rows) * args.chunk):.1f}% of the samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
