"""Hostile .pt files: each is built here, tiny, and must be refused with a
WeightsError naming the file, without crashing the interpreter, within a
small fraction of the memory it asks for, and quickly.

All files are loaded in one subprocess (a crash there cannot take pytest
down): for each, it records the error, tracemalloc's peak and the time.
"""

import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import streamgru as sg

from torch_fixtures import _Call, _Storage, dumps, float_storage, tensor, write_archive

PROTO2 = b"\x80\x02"
DEPTH = 10**6


def deep_tuple(n=DEPTH):
    """``((((),),),)`` n deep: EMPTY_TUPLE then n TUPLE1."""
    return b")" + b"\x85" * n


def member(path, name, chunks, prefix="archive"):
    """A deflated zip member written chunk by chunk (tiny on disk, large inflated)."""
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z:
        with z.open(f"{prefix}/{name}", "w", force_zip64=True) as f:
            for c in chunks:
                f.write(c)


def declare_size(path, name, size):
    """Patch the central directory so member ``name`` declares ``size`` bytes."""
    raw = bytearray(open(path, "rb").read())
    eocd = raw.rfind(b"PK\x05\x06")
    count, = struct.unpack_from("<H", raw, eocd + 10)
    at, = struct.unpack_from("<I", raw, eocd + 16)
    for _ in range(count):
        n, extra, comment = struct.unpack_from("<HHH", raw, at + 28)
        if raw[at + 46: at + 46 + n].decode() == name:
            struct.pack_into("<I", raw, at + 24, size)
        at += 46 + n + extra + comment
    open(path, "wb").write(raw)


def build_cases(folder):
    """name -> (path, text the error must contain, the blow-up in bytes it is protected from)."""
    cases = {}

    def add(name, pkl, needle, blowup, storages=None):
        path = str(folder / f"{name}.pt")
        write_archive(path, pkl, storages)
        cases[name] = (path, needle, blowup)
        return path

    # 10^6-deep tuple as a dict key: hashing it recursed in C (SIGSEGV)
    add("deep_tuple_key", PROTO2 + b"}" + deep_tuple() + b"Ns.", "nested deeper than 100", 0)
    # the same tuple inside an allow-listed frozenset
    add("deep_tuple_frozenset", PROTO2 + b"c__builtin__\nfrozenset\n]" + deep_tuple() + b"a\x85R.",
        "nested deeper than 100", 0)
    # a deep list as a tensor size: raised a raw RecursionError from the message's repr
    st, data = float_storage([1.0, 2.0])
    size = b"]" * 100_000 + b"a" * 99_999  # under the stack limit, over the depth limit
    pkl = dumps({"w": tensor(st, 0, (2,), (1,))})
    pkl = pkl.replace(b"K\x02\x85", size, 1)  # the size tuple (2,) becomes the deep list
    add("deep_list_size", pkl, "nested deeper than 100", 0, data)
    # the deep list built through the memo, so no opcode sees its depth: the
    # tensor's layout check must still answer in bounded text
    n = 50_000
    memo_chain = bytearray(b"]r\x00\x00\x00\x00")  # memo[0] = []
    for i in range(1, n):
        # memo[i] = [memo[i-1]] built as: EMPTY_LIST, LONG_BINPUT i, LONG_BINGET i-1, APPEND, POP
        memo_chain += b"]r" + struct.pack("<I", i) + b"j" + struct.pack("<I", i - 1) + b"a0"
    memo_chain += b"0j" + struct.pack("<I", n - 1)  # drop L0, push the outermost list
    pkl2 = dumps({"w": tensor(st, 0, (2,), (1,))}).replace(b"K\x02\x85", bytes(memo_chain), 1)
    add("deep_list_size_via_memo", pkl2, "tensor w: malformed layout (offset 0, size [[<list", 0, data)
    # one LONG_BINPUT with a 700 M memo index (the C unpickler allocated 10.7 GB)
    add("memo_index", PROTO2 + b"Nr" + struct.pack("<I", 700_000_000) + b".",
        "memo index 700000000 is out of range", 700_000_000 * 16)
    # 60 k int keys that all hash alike (quadratic insertion: 34-56 s)
    m = 2**61 - 1
    keys = b"".join(b"\x8a\x0a" + (7 + i * m).to_bytes(10, "little") + b"N" for i in range(60_000))
    add("colliding_keys", PROTO2 + b"}(" + keys + b"u.", "share a hash value", 0)
    # the same collision through builtins.set
    items = b"".join(b"\x8a\x0a" + (7 + i * m).to_bytes(10, "little") for i in range(60_000))
    add("colliding_set", PROTO2 + b"c__builtin__\nset\n(" + items + b"l\x85R.", "share a hash value", 0)
    # a stride-0 view of a 4 MiB storage, repeated (9-13 GB, then a raw MemoryError)
    big = _Storage("FloatStorage", "0", 1 << 20)
    views = {f"layer{i}.weight": tensor(big, 0, (1000, 1 << 20), (0, 1)) for i in range(8)}
    path = str(folder / "stride0.pt")
    write_archive(path, dumps(views), None)
    member(path, "data/0", [bytes(1 << 20)] * 4)
    cases["stride0"] = (path, "beyond this load's budget", 8 * 1000 * (4 << 20))
    # 200 MB of NONE opcodes (a stack of 200 M pointers)
    path = str(folder / "nones.pt")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/byteorder", b"little")
    member(path, "data.pkl", [PROTO2] + [b"N" * (1 << 20)] * 200 + [b"."])
    cases["nones_200MB"] = (path, "more than the 67,108,864 streamgru reads", 1600 << 20)
    # a million NONE opcodes: under the record cap, over the stack limit
    add("nones_1M", PROTO2 + b"N" * 10**6 + b".", "values on the pickle stack", 0)
    # records declaring 1 GiB: data.pkl, and a storage
    path = add("record_1GiB", PROTO2 + b"N.", "more than the 67,108,864", 1 << 30)
    declare_size(path, "archive/data.pkl", 1 << 30)
    st = _Storage("FloatStorage", "0", 1 << 28)
    path = add("storage_1GiB", dumps({"w": tensor(st, 0, (1 << 28,), (1,))}), "beyond this load's budget",
               1 << 30, {"0": bytes(64)})
    declare_size(path, "archive/data/0", 1 << 30)
    # messages of the stand-ins and the codec refusal name the file
    add("build_state", PROTO2 + b"ctorch._utils\n_rebuild_tensor_v2\n}b.", "unexpected pickle state", 0)
    add("codec", dumps({"x": _Call("_codecs", "encode", "abc", "rot13")}), "_codecs.encode", 0)
    return cases


RUNNER = textwrap.dedent("""
    import json, resource, sys, time, tracemalloc
    import streamgru as sg

    out = {}
    for name, path in json.load(open(sys.argv[1])).items():
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            sg.load(path)
            result = {"error": None}
        except Exception as exc:
            result = {"type": type(exc).__name__, "error": str(exc),
                      "weights_error": isinstance(exc, sg.WeightsError)}
        result["seconds"] = time.perf_counter() - t0
        result["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[name] = result
    # VmHWM is this process's own peak; ru_maxrss would also count the pytest
    # process it was forked from (Linux carries the pre-exec peak over)
    try:
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
        out["maxrss_kb"] = int(hwm[0].split()[1])
    except (OSError, IndexError):
        out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    cases = build_cases(folder)
    spec = folder / "cases.json"
    spec.write_text(json.dumps({k: v[0] for k, v in cases.items()}))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(sg.__file__)),
                                         env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(spec)], capture_output=True,
                          text=True, timeout=300, env=env)
    # a crash (SIGSEGV: returncode -11) or an escaped exception fails every case
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cases, json.loads(proc.stdout.strip().splitlines()[-1])


CASES = ["deep_tuple_key", "deep_tuple_frozenset", "deep_list_size", "deep_list_size_via_memo",
         "memo_index", "colliding_keys", "colliding_set", "stride0", "nones_200MB", "nones_1M",
         "record_1GiB", "storage_1GiB", "build_state", "codec"]


@pytest.mark.parametrize("name", CASES)
def test_hostile_file_is_refused_within_bounds(hostile, name):
    cases, results = hostile
    path, needle, blowup = cases[name]
    got = results[name]
    assert got["error"] is not None, f"{name} loaded"
    assert got["weights_error"] and got["type"] != "UnexpectedReaderError", got
    assert path in got["error"] and needle in got["error"], got["error"]
    assert os.path.getsize(path) < 2 << 20  # the files are small
    assert got["seconds"] < 5, got
    # far below what the file asked for, and below the default allowance
    assert got["peak"] < 300 << 20, got
    if blowup:
        assert got["peak"] < blowup / 20, got


def test_hostile_subprocess_peak_rss(hostile):
    assert hostile[1]["maxrss_kb"] < 600 << 10  # KiB: whole process, numpy included


def test_legitimate_int_keys_still_load(tmp_path):
    # an optimizer state keyed 0..n-1 (distinct hashes) is not a collision
    import torch

    net = torch.nn.GRU(3, 4)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(5, 1, 3))[0].sum().backward()
    opt.step()
    path = str(tmp_path / "ckpt.pt")
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(),
                "table": {i: i * 2 for i in range(20_000)}}, path)
    m = sg.load(path)
    np.testing.assert_array_equal(m.layers[0].weight_hh, net.weight_hh_l0.detach().numpy())
