"""Throughput of the streamgru Flink operator against one process, by chunk length and keys.

For each number of keys (devices) K and chunk length T, the shipped watch
GRU runs the fleet replay of examples/flink_fleet.py (K devices, C records
of T samples each, interleaved) three ways:

- Flink: the fleet job on a local mini-cluster (RocksDB state, checkpoints
  every 500 ms, Python workers as processes, one keyed subtask), argmax out
  to a discarding sink. Records/s is timed inside the operator from the
  first record in to the last one out, so JVM and worker start-up are not
  counted. "operator CPU" is the CPU the operator's own Python spends per
  record (state read, ``Stream.process``, state write, emit); "job CPU" is
  the CPU of the JVM and all Python workers per record over the middle 80%
  of that time (read from /proc), the whole cost of a record on the machine.
- one process: the operator's work (``ChunkRunner.advance``: bytes state
  in, process, bytes state out) in a Python loop, no Flink.
- StreamBatch: all K streams in one ``StreamBatch.process`` per round of T
  samples (the single-process best case).

    pip install -e ".[flink]"
    python tools/bench_flink.py                 # 6 jobs: 30+ minutes on a busy 2-core machine
    python tools/bench_flink.py --keys 1000     # 3 jobs, about 5 minutes

Prints a markdown table with the load average, as wall-clock numbers on a
shared machine depend on what else it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "examples"))

# records per key, by keys and chunk length: 2e4-1e5 records a run
# (with 1e5 keys, each record is the first of its key: a new state)
PLAN = {1_000: {1: 30, 16: 30, 256: 20}, 100_000: {1: 1, 16: 1, 256: 1}}


TICK = os.sysconf("SC_CLK_TCK")


def _descendant_cpu(root: int) -> dict:
    """CPU seconds (user + system, each process's own) of every descendant
    of ``root``, by kind: the JVM ("java") and the Python workers ("python")."""
    parent, cpu, comm = {}, {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        pid = int(entry)
        parent[pid], comm[pid] = int(fields[1]), name
        cpu[pid] = (int(fields[11]) + int(fields[12])) / TICK
    out = {"java": 0.0, "python": 0.0}
    for pid in cpu:
        p, hops = parent.get(pid), 0
        while p not in (None, 0, root) and hops < 50:
            p, hops = parent.get(p), hops + 1
        if p == root:
            kind = "java" if comm[pid] == "java" else "python" if "python" in comm[pid] else None
            if kind:
                out[kind] += cpu[pid]
    return out


class CpuSampler(threading.Thread):
    """Samples the CPU time of this process's descendants every 0.1 s, so the
    CPU a job spent between two moments (its steady state) can be read off."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.samples.append((time.time(), _descendant_cpu(os.getpid())))

    def between(self, t0: float, t1: float) -> dict:
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return {"java": float("nan"), "python": float("nan"), "seconds": 0.0}
        (a, ca), (b, cb) = inside[0], inside[-1]
        return {k: cb[k] - ca[k] for k in ca} | {"seconds": b - a}


def flink_run(fleet_args: tuple, model_path: str, parallelism: int, tmp: str,
              **options) -> dict:
    from pyflink.common import Types
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.datastream.connectors.base import Sink
    from pyflink.java_gateway import get_gateway

    import streamgru as sg
    from streamgru.integrations import flink as sgf
    from flink_fleet import fleet_records

    devices, chunks, chunk, seed = fleet_args
    timing_dir = tempfile.mkdtemp(dir=tmp)
    Base = sgf.StreamGRUFunction

    class Timed(Base):
        def open(self, ctx):
            super().open(ctx)
            self.n, self.busy, self.cpu, self.first = 0, 0.0, 0.0, None
            self.path = os.path.join(timing_dir, f"{ctx.get_index_of_this_subtask()}.json")

        def process_element(self, value, ctx):
            t, c = time.perf_counter(), time.thread_time()
            if self.first is None:
                self.first = time.time()
            out = list(super().process_element(value, ctx))
            self.busy += time.perf_counter() - t
            self.cpu += time.thread_time() - c
            self.n += 1
            self.last = time.time()
            if self.n % 1000 == 0:  # not only at close(), which a worker may not reach
                self.save()
            return out

        def save(self):
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"n": self.n, "busy": self.busy, "cpu": self.cpu, "first": self.first,
                           "last": self.last}, f)
            os.replace(tmp, self.path)

        def close(self):
            if self.n:
                self.save()

    model = sg.load(model_path)
    options.setdefault("active_keys", devices)
    conf = sgf.job_configuration(os.path.join(tmp, "ckpt"), **options)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(parallelism)
    env.add_python_file(os.path.join(ROOT, "examples", "flink_fleet.py"))  # Fleet, on the workers
    records = fleet_records(env, fleet_args)
    out = (records.key_by(lambda r: r[0], key_type=Types.STRING())
           .process(Timed(model, "argmax"), output_type=sgf.output_type(model, "argmax")))
    discard = get_gateway().jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink()
    out.sink_to(Sink(discard))
    sampler = CpuSampler()
    sampler.start()
    t0 = time.perf_counter()
    env.execute(f"bench {devices} keys x {chunks} records of {chunk}")
    wall = time.perf_counter() - t0
    sampler.stop.set()
    parts = [json.load(open(os.path.join(timing_dir, f))) for f in os.listdir(timing_dir)
             if f.endswith(".json")]
    first, last = min(p["first"] for p in parts), max(p["last"] for p in parts)
    # CPU over the middle of the steady state (records flowing through every operator)
    cpu = sampler.between(first + 0.1 * (last - first), last - 0.1 * (last - first))
    return {"records": sum(p["n"] for p in parts), "span": last - first,
            "busy": sum(p["busy"] for p in parts), "op_cpu": sum(p["cpu"] for p in parts),
            "wall": wall, "cpu": cpu}


def local_runs(fleet, model) -> tuple[float, float]:
    """Seconds per record of the operator's work in one process (no Flink),
    and seconds per sample of StreamBatch rounds over all keys."""
    from streamgru.integrations.flink import ChunkRunner

    runner = ChunkRunner(model, "argmax")
    stored = [None] * fleet.devices
    n = min(len(fleet), 50_000)
    t = time.perf_counter()
    for k in range(n):
        dev, seq, raw = fleet.record(k)
        d = int(fleet.device_of[k])
        stored[d], Y = runner.advance(stored[d], seq, raw)
        runner.emit(Y)
    per_record = (time.perf_counter() - t) / n
    rounds = [np.stack([fleet.samples(d, c) for d in range(fleet.devices)])
              for c in range(fleet.chunks)]
    b = model.streams(fleet.devices)
    b.process(rounds[0])  # kernels loaded
    b.reset()
    t = time.perf_counter()
    for X in rounds:
        b.process(X).argmax(axis=2)
    per_sample = (time.perf_counter() - t) / (len(fleet) * fleet.chunk)
    return per_record, per_sample


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, nargs="+", default=[1_000, 100_000])
    p.add_argument("--chunk-lengths", type=int, nargs="+", default=[1, 16, 256])
    p.add_argument("--parallelism", type=int, default=1, help="keyed subtasks")
    args = p.parse_args(argv)
    import streamgru as sg
    from streamgru.data import WATCH_GRU
    from streamgru.integrations.flink import use_worker_processes

    use_worker_processes()
    from flink_fleet import Fleet

    model = sg.load(WATCH_GRU)
    print(f"streamgru on Flink 2.3 (local mini-cluster, RocksDB, checkpoints every 500 ms), "
          f"watch GRU 6 -> 48 -> 7, argmax out, {args.parallelism} keyed subtask(s), "
          f"{os.cpu_count()} cores\n")
    print("| keys | samples/record | records | Flink records/s | Flink samples/s | wall us/record "
          "| operator CPU us/record | job CPU us/record | one process us/record "
          "| StreamBatch samples/s | load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-flink-") as tmp:
        for keys in args.keys:
            for chunk in args.chunk_lengths:
                chunks = PLAN[keys][chunk] if keys in PLAN and chunk in PLAN[keys] else 1
                fleet = Fleet(keys, chunks, chunk)
                per_record, per_sample = local_runs(fleet, model)
                r = flink_run((keys, chunks, chunk, 0), WATCH_GRU, args.parallelism, tmp)
                rate = r["records"] / r["span"]
                c = r["cpu"]
                job = (1e6 * (c["java"] + c["python"]) / (rate * c["seconds"])
                       if c["seconds"] else float("nan"))
                print(f"| {keys:,} | {chunk} | {r['records']:,} | {rate:,.0f} | {rate * chunk:,.0f} "
                      f"| {1e6 / rate:,.0f} | {1e6 * r['op_cpu'] / r['records']:.0f} | {job:,.0f} "
                      f"| {1e6 * per_record:.0f} | {1 / per_sample:,.0f} "
                      f"| {os.getloadavg()[0]:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
