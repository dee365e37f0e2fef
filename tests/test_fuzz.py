"""A short, seeded fuzz run over every reader in formats.READERS (the long
run is ``python tools/fuzz.py --minutes 30``), and checks that the harness
itself sees what it must: crashes, hangs, memory blow-ups and the
UnexpectedReaderError safety net."""

import importlib.util
import os
import sys

import pytest

import streamgru as sg
from streamgru.formats import native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
_spec = importlib.util.spec_from_file_location("fuzz", os.path.join(ROOT, "tools", "fuzz.py"))
fuzz = sys.modules["fuzz"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

# mutants per reader in the CI run: about 30 s in all on a 2-core machine
CASES = {"native": 600, "torch": 500, "onnx": 200, "keras": 100, "rtneural": 300, "nam": 300}
DEFAULT_CASES = 200  # a reader merged later, until it is given its own number
READERS = fuzz.readers()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    return {name: fuzz.write_seeds(name, root / name) for name in fuzz.readers()}


@pytest.fixture(scope="module")
def worker(seeds):
    w = fuzz.Worker(warm=[files[0] for files in seeds.values() if files])
    yield w
    w.close()


# seeds that a reader may refuse (with a WeightsError) until it supports them
MAY_BE_REFUSED = {"legacy.pt"}  # torch.save's pre-1.6 format


def test_every_reader_has_valid_seeds(seeds, worker):
    for name in fuzz.readers():
        assert seeds[name], f"reader {name!r} has no seed writer: add one with @seed in tools/fuzz_seeds.py"
        for path in seeds[name]:
            want = {"loaded", "WeightsError"} if path.name in MAY_BE_REFUSED else {"loaded"}
            assert worker.run(path)["outcome"] in want, path


@pytest.mark.parametrize("reader", READERS)
def test_short_fuzz_run_finds_no_bug(reader, seeds, worker, tmp_path):
    n = CASES.get(reader, DEFAULT_CASES)
    res = fuzz.fuzz([reader], seeds, cases=n, seed_value=20261201, out=tmp_path, worker_=worker,
                    log=lambda line: None)[reader]
    assert res.cases == n
    report = "\n\n".join(f"{sig} ({kind}): {saved}\n{detail}" for sig, (kind, saved, detail)
                         in res.bugs.items())
    assert not res.bugs, report
    # the mutants reach both ends: some still load, some are refused
    assert res.outcomes["loaded"] > 0 and res.outcomes["WeightsError"] > 0, res.outcomes


def test_harness_reports_a_crash_a_hang_and_memory(seeds, tmp_path):
    w = fuzz.Worker(timeout=3)
    try:
        any_seed = seeds["native"][0]
        assert w.run(any_seed, selftest="crash")["sig"] == "crash (signal 11)"
        assert w.run(any_seed, selftest="hang")["kind"] == "timeout"
        res = w.run(any_seed, selftest="alloc")
        assert res["kind"] == "memory", res
        assert w.run(any_seed)["outcome"] == "loaded"  # a fresh worker after each
    finally:
        w.close()


def test_the_reader_bug_wrapper_counts_as_a_bug(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    sg.save(sg.Model([sg.Dense([[1.0, 2.0]])]), path)
    assert fuzz.judge(str(path))["outcome"] == "loaded"

    def buggy(raw, p, budget):
        return [][1]

    monkeypatch.setattr(native, "read_npz", buggy)
    res = fuzz.judge(str(path))
    assert res["outcome"] == "bug" and res["kind"] == "wrapper"
    assert res["sig"].startswith("IndexError at tests/test_fuzz.py"), res["sig"]

    def exhausted(raw, p, budget):
        raise MemoryError

    monkeypatch.setattr(native, "read_npz", exhausted)
    assert fuzz.judge(str(path))["kind"] == "wrapper"  # MemoryError also reaches the wrapper


def test_mutations_are_reproducible(seeds):
    import random

    data = seeds["native"][0].read_bytes()
    a = [fuzz.mutate(data, random.Random(s), [data]) for s in range(50)]
    b = [fuzz.mutate(data, random.Random(s), [data]) for s in range(50)]
    assert a == b and len(set(a)) > 40
