"""Hostile native files (.npz, .safetensors) and the guarantees every load
gives: a byte budget checked before allocating, only regular files opened,
and only WeightsError (naming the file and the tensor) raised.

The files are built here byte by byte, the way an attacker would, from the
published layouts: a zip of .npy members, and safetensors' length-prefixed
JSON header."""

import io
import json
import os
import socket
import struct
import threading
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import streamgru as sg
from streamgru import formats
from streamgru.data import WATCH_GRU
from streamgru.formats import guard, native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_model(dtype=np.float32):
    rng = np.random.default_rng(0)
    return sg.Model([sg.GRU.from_torch(rng.normal(size=(12, 3)), rng.normal(size=(12, 4))),
                     sg.Dense(rng.normal(size=(2, 4)))], dtype=dtype)


def saved(tmp_path, suffix, model=None):
    path = tmp_path / f"good{suffix}"
    sg.save(model or small_model(), path)
    return path


def refused(path, *words, **options):
    """sg.load(path) raises a WeightsError (never the reader-bug wrapper)
    whose message names the file and each of ``words``; returns the message."""
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path, **options)
    assert not isinstance(info.value, formats.UnexpectedReaderError), info.value.__cause__
    msg = str(info.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


# ----------------------------------------------------------------------------
# zips written by hand (members may lie about their sizes)


def zip_bytes(members):
    """A zip of ``(name, method, crc, payload, claimed_size)`` members, the
    payload stored as given (already deflated for method 8)."""
    local, central = b"", b""
    for name, method, crc, payload, size in members:
        fn = name.encode()
        central += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc,
                               len(payload), size, len(fn), 0, 0, 0, 0, 0, len(local)) + fn
        local += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc,
                             len(payload), size, len(fn), 0) + fn + payload
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members), len(members),
                      len(central), len(local), 0)
    return local + central + end


def members_of(path):
    """The members of a valid npz as ``zip_bytes`` rows (stored)."""
    with zipfile.ZipFile(path) as z:
        return [(i.filename, 0, i.CRC, z.read(i), i.file_size) for i in z.infolist()]


def deflated_zeros(gib_quarters):
    """Deflate data that inflates to ``gib_quarters`` x 256 MiB of zeros, in
    a few MB: one full-flushed 1 MiB block repeated (each block starts from
    an empty history, so copies concatenate into a valid stream)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    mib = bytes(1 << 20)
    c.compress(mib)
    c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    n = 256 * gib_quarters
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(mib, crc)
    return block * n + c.flush(), crc, n << 20


@pytest.fixture(scope="module")
def bomb():
    return deflated_zeros(10)  # 2.5 GiB


def test_unreferenced_member_inflating_to_2_5_gib_is_never_decompressed(tmp_path, bomb):
    data, crc, size = bomb
    assert size == 5 << 29
    path = tmp_path / "bomb.npz"
    path.write_bytes(zip_bytes(members_of(saved(tmp_path, ".npz"))
                               + [("junk.npy", 8, crc, data, size)]))
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        m = sg.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert m == small_model()
    assert time.perf_counter() - t0 < 5  # inflating 2.5 GiB takes some 15 s here
    assert peak < 64 << 20, peak


def test_referenced_member_beyond_the_budget_is_refused_before_inflating(tmp_path, bomb):
    data, crc, size = bomb
    rows = [r if r[0] != "layers.0.weight_hh.npy" else ("layers.0.weight_hh.npy", 8, crc, data, size)
            for r in members_of(saved(tmp_path, ".npz"))]
    path = tmp_path / "bomb.npz"
    path.write_bytes(zip_bytes(rows))
    t0 = time.perf_counter()
    refused(path, "tensor layers.0.weight_hh", "would need 2,684,354,560 bytes", "budget of",
            "max_bytes")
    assert time.perf_counter() - t0 < 2


def test_member_inflating_past_its_claimed_size_is_cut_at_the_claim(tmp_path):
    """The directory claims 1 KiB; the deflate stream holds 256 MiB. The
    reader stops at the claim (and the CRC of the whole member then fails)."""
    data, crc, _ = deflated_zeros(1)
    rows = [r if r[0] != "layers.0.weight_hh.npy" else ("layers.0.weight_hh.npy", 8, crc, data, 1024)
            for r in members_of(saved(tmp_path, ".npz"))]
    path = tmp_path / "liar.npz"
    path.write_bytes(zip_bytes(rows))
    tracemalloc.start()
    try:
        refused(path, "tensor layers.0.weight_hh")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


def npz_desc_with(tmp_path, change):
    """A valid npz whose description went through ``change(desc)``."""
    rows = members_of(saved(tmp_path, ".npz"))
    out = []
    for name, method, crc, payload, size in rows:
        if name == native.META_KEY + ".npy":
            with np.load(io.BytesIO(zip_bytes([(name, method, crc, payload, size)]))) as z:
                desc = json.loads(z[native.META_KEY].tobytes())
            change(desc)
            buf = io.BytesIO()
            np.save(buf, np.frombuffer(json.dumps(desc).encode(), np.uint8))
            payload = buf.getvalue()
            crc, size = zlib.crc32(payload), len(payload)
        out.append((name, method, crc, payload, size))
    path = tmp_path / "changed.npz"
    path.write_bytes(zip_bytes(out))
    return path


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(metadata="a string"), "metadata is a str"),
    (lambda d: d.update(metadata=[1, 2]), "metadata is a list"),
    (lambda d: d.update(dtype={"names": ["a"], "formats": ["f4"]}), "dtype {'names'"),
    (lambda d: d.update(dtype="O"), "dtype 'O'"),
    (lambda d: d.update(layers={"0": 1}), "layers is not a list"),
    (lambda d: d.update(version=True), "version True"),
    (lambda d: d["layers"].__setitem__(0, ["gru"]), "layer 0: malformed description"),
    (lambda d: d["layers"][0].update(kind=["gru"]), "layer 0: malformed description"),
    (lambda d: d["layers"][0].update(arrays=[1]), "layer 0: malformed description"),
    (lambda d: d["layers"][0].update(config=[]), "layer 0: malformed description"),
    (lambda d: d["layers"][0]["config"].update(clip=10 ** 400), "layer 0 (gru): malformed config"),
    (lambda d: d["layers"][0]["config"].update(clip=[1]), "layer 0 (gru): malformed config"),
    (lambda d: d["layers"][0]["config"].pop("reset_after"), "layer 0 (gru): malformed config"),
    (lambda d: d["layers"][0]["arrays"].remove("weight_ih"), "layer 0 (gru): malformed config"),
    (lambda d: d["layers"][1]["config"].update(activation=["relu", "x"]),
     "layer 1 (dense): malformed config"),
])
def test_malformed_description_is_refused_naming_the_part(tmp_path, change, words):
    refused(npz_desc_with(tmp_path, change), words)


def npy_member(header: bytes, data: bytes = b"") -> bytes:
    head = header + b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head + data


@pytest.mark.parametrize("member, words", [
    # 2**32 * 2**32 * 4 bytes wraps int64 to 0, the size of no data
    (npy_member(b"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}"),
     "0 bytes for shape (4294967296, 4294967296)"),
    (npy_member(b"{'descr': '<f4', 'fortran_order': False, 'shape': (" + b"1" + b"0" * 30 + b",)}"),
     "expected 4" + "0" * 30),
    (npy_member(b"{'descr': '<f4', 'fortran_order': False, 'shape': (" + b"1," * 65 + b")}"),
     "65 dimensions"),
    (npy_member(b"{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 4)}"), "non-negative"),
    (npy_member(b"{'descr': '|O', 'fortran_order': False, 'shape': (1,)}", b"\0" * 8), "object array"),
    (npy_member(b"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", b"\0" * 4),
     "not a number type"),
    (npy_member(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", b"\0" * 8),
     "8 bytes for shape (3,)"),
    (npy_member(b"{'descr': __import__('os').getcwd(), 'fortran_order': False, 'shape': (1,)}"),
     "corrupt .npy header"),
    (b"\x93NUMPY\x09\x00" + b"\0" * 60, "corrupt .npy header"),
    # found by tools/fuzz.py: numpy's own header parser let tokenize.TokenError out
    (npy_member(b"{'descr': '<f4', 'fortran_order': False, 'shap'descr':'descr':"), "corrupt .npy header"),
    (npy_member(b"{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 4)}", b"\0" * 32), "fortran_order 0"),
    (npy_member(b"{'descr': '<f4', 'fortran_order': False, 'shape': [2, 4]}", b"\0" * 32), "shape [2, 4]"),
    (npy_member(b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), 'x': 1}", b"\0" * 32),
     "corrupt .npy header"),
    (npy_member(b"{'descr': '<i3', 'fortran_order': False, 'shape': (2,)}", b"\0" * 6), "not a number type"),
    (npy_member(b"(" * 300 + b")" * 300), "corrupt .npy header"),
    (b"\x93NUMPY\x01\x00\xff\xff{}", "header length 65535"),
])
def test_hostile_npy_member_is_refused_naming_the_tensor(tmp_path, member, words):
    rows = [r if r[0] != "layers.1.weight.npy" else
            ("layers.1.weight.npy", 0, zlib.crc32(member), member, len(member))
            for r in members_of(saved(tmp_path, ".npz"))]
    path = tmp_path / "hostile.npz"
    path.write_bytes(zip_bytes(rows))
    refused(path, "tensor layers.1.weight", words)


@pytest.mark.parametrize("rows, words", [
    (lambda rows: rows + [rows[1]], "stored twice"),
    (lambda rows: [(n, 12, c, p, s) for n, _, c, p, s in rows], "compression method 12"),
    (lambda rows: [(n, m, c ^ 1, p, s) for n, m, c, p, s in rows], "unreadable zip member"),
    (lambda rows: [(n, m, c, p, s + 5) for n, m, c, p, s in rows], "directory entry claims"),
])
def test_damaged_zip_is_refused(tmp_path, rows, words):
    path = tmp_path / "damaged.npz"
    path.write_bytes(zip_bytes(rows(members_of(saved(tmp_path, ".npz")))))
    refused(path, words)


# ----------------------------------------------------------------------------
# safetensors headers


def safetensors_file(tmp_path, change):
    """A valid safetensors file whose header went through ``change(header)``."""
    raw = saved(tmp_path, ".safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    change(header)
    hdr = json.dumps(header).encode()
    path = tmp_path / "changed.safetensors"
    path.write_bytes(struct.pack("<Q", len(hdr)) + hdr + raw[8 + n :])
    return path


def set_shape(name, shape):
    return lambda h: h[name].update(shape=shape)


def set_desc(**changes):
    def change(h):
        desc = json.loads(h["__metadata__"]["streamgru"])
        desc.update(changes)
        h["__metadata__"]["streamgru"] = json.dumps(desc)
    return change


@pytest.mark.parametrize("change, words", [
    # 2**32 * 2**32 * 4 wraps int64 to 0, the size of an empty tensor
    (set_shape("layers.1.weight", [2 ** 32, 2 ** 32]), "tensor layers.1.weight"),
    (set_shape("layers.1.weight", [10 ** 30]), "tensor layers.1.weight"),
    (set_shape("layers.1.weight", [1] * 65), "65 dimensions"),
    (set_shape("layers.1.weight", [-2, -4]), "non-negative"),
    (set_shape("layers.1.weight", [2.0, 4.0]), "non-negative integers"),
    (set_shape("layers.1.weight", [True, 8]), "non-negative integers"),
    (set_shape("layers.1.weight", "8"), "non-negative integers"),
    (lambda h: h["layers.1.weight"].update(data_offsets=[0.5, 32]), "pair of integers"),
    (lambda h: h["layers.1.weight"].update(data_offsets=[0, 2 ** 70]), "outside"),
    (lambda h: h["layers.1.weight"].update(dtype=["F32"]), "unsupported dtype"),
    (lambda h: h.update(x=[1, 2]), "tensor x: malformed header entry"),
    (lambda h: h.update(__metadata__="streamgru"), "__metadata__ is a str"),
    (lambda h: h["__metadata__"].update(streamgru={"format": "streamgru"}), "not a JSON string"),
    (lambda h: h["__metadata__"].update(streamgru="[" * 100000), "RecursionError"),
    (set_desc(metadata="a string"), "metadata is a str"),
])
def test_hostile_safetensors_header_is_refused(tmp_path, change, words):
    refused(safetensors_file(tmp_path, change), words)


def test_deeply_nested_header_is_refused(tmp_path):
    hdr = b"[" * 200000 + b"]" * 200000
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(hdr)) + hdr)
    refused(path, "corrupt safetensors header")


def test_header_expanding_beyond_the_budget_is_refused_before_parsing(tmp_path):
    """``[{},{},...]`` makes some 24 bytes of Python objects per byte."""
    hdr = b"[" + b"{}," * 3_000_000 + b"{}]"
    path = tmp_path / "wide.safetensors"
    path.write_bytes(struct.pack("<Q", len(hdr)) + hdr)
    tracemalloc.start()
    try:
        refused(path, "parsing the safetensors header", "budget of", max_bytes=50 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20, peak


# ----------------------------------------------------------------------------
# the budget


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_small_max_bytes_refuses_a_valid_file_with_a_clear_message(tmp_path, suffix):
    path = saved(tmp_path, suffix)
    size = path.stat().st_size
    refused(path, "reading the file", f"budget of {size - 1:,} bytes", "max_bytes",
            max_bytes=size - 1)
    # the least budget that loads it (failure is monotone in the limit): one
    # byte less fails at the last allocation, a tensor, which is named
    lo, hi = size, 64 * size
    assert sg.load(path, max_bytes=hi) == small_model()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            sg.load(path, max_bytes=mid)
            hi = mid
        except sg.WeightsError as exc:
            assert str(path) in str(exc) and f"budget of {mid:,} bytes" in str(exc), exc
            lo = mid
    refused(path, "tensor initial_state", "would need", f"budget of {lo:,} bytes", max_bytes=lo)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1000", True])
def test_max_bytes_must_be_a_positive_integer(tmp_path, bad):
    refused(saved(tmp_path, ".npz"), "max_bytes must be a positive whole number", max_bytes=bad)


# every model file shipped in weights/ (any format sg.load reads; the sensor
# streams watch_test.npz / watch_sample.csv are data), and the packaged one
SUFFIXES = tuple(s for r in formats.READERS for s in r.suffixes)
SHIPPED = [os.path.join(ROOT, "weights", f) for f in sorted(os.listdir(os.path.join(ROOT, "weights")))
           if f.endswith(SUFFIXES) and "test" not in f]
SHIPPED.append(WATCH_GRU)


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_default_budget_allows_every_shipped_model(path):
    m = sg.load(path)  # the default budget: 8 x the file plus 256 MiB
    assert isinstance(m, sg.Model) and m.input_size > 0
    if "watch_gru" in path:
        assert (m.input_size, m.output_size) == (6, 7)


# ----------------------------------------------------------------------------
# only regular files


def loads_without_blocking(path):
    """sg.load(path) must return (raise) within seconds; a FIFO opened for
    reading without O_NONBLOCK would wait for a writer for ever."""
    result = {}

    def run():
        try:
            sg.load(path)
        except BaseException as exc:  # noqa: B902 - handed to the main thread
            result["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # release the reader, then fail
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(5)
        pytest.fail(f"sg.load({path}) blocked")
    return result.get("exc")


@pytest.mark.parametrize("suffix", [".npz", ".safetensors", ".pt", ".onnx"])
def test_fifo_is_refused_without_blocking(tmp_path, suffix):
    path = tmp_path / f"pipe{suffix}"
    os.mkfifo(path)
    exc = loads_without_blocking(path)
    assert isinstance(exc, sg.WeightsError) and "is a FIFO" in str(exc) and str(path) in str(exc)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors", ".pt", ".onnx"])
def test_socket_and_directory_are_refused(tmp_path, suffix):
    sock_path = tmp_path / f"s{suffix}"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(sock_path))
        refused(sock_path, "is a socket")
    finally:
        s.close()
    d = tmp_path / f"d{suffix}"
    d.mkdir()
    refused(d, "is a directory")


def test_devices_are_refused():
    for dev in ("/dev/zero", "/dev/null", "/dev/urandom"):
        if os.path.exists(dev):
            refused(dev, "is a device")


def test_symlink_to_a_device_is_refused(tmp_path):
    link = tmp_path / "zero.npz"
    link.symlink_to("/dev/zero")
    refused(link, "is a device")


def test_fifo_swapped_in_after_the_check_is_refused(tmp_path, monkeypatch):
    """Between the stat and the open a file may be replaced by a FIFO: the
    open does not wait (O_NONBLOCK) and fstat refuses what was opened."""
    path = tmp_path / "race.npz"
    os.mkfifo(path)
    regular = os.stat(saved(tmp_path, ".npz"))
    monkeypatch.setattr(guard, "check_regular", lambda p, what="": regular)
    with pytest.raises(sg.WeightsError, match="is not a regular file"):
        native.load(str(path), budget=guard.Budget(str(path), regular.st_size))


# ----------------------------------------------------------------------------
# one class of error


def test_a_reader_bug_becomes_a_weights_error_naming_the_file(tmp_path, monkeypatch):
    """The one wrapper in sg.load: an exception a reader did not mean to
    raise is reported as UnexpectedReaderError (a WeightsError) naming the
    file and the reader, the original chained as the cause."""
    path = saved(tmp_path, ".npz")

    def buggy(raw, p, budget):
        return {}["oops"]

    monkeypatch.setattr(native, "read_npz", buggy)
    with pytest.raises(formats.UnexpectedReaderError) as info:
        sg.load(path)
    exc = info.value
    assert isinstance(exc, sg.WeightsError) and not isinstance(exc, sg.UnsafeWeightsError)
    assert str(path) in str(exc) and "streamgru native reader failed unexpectedly" in str(exc)
    assert "KeyError" in str(exc) and isinstance(exc.__cause__, KeyError)


def test_unknown_option_is_a_type_error_listing_the_options(tmp_path):
    with pytest.raises(TypeError, match="max_bytes") as info:
        sg.load(saved(tmp_path, ".npz"), colour="red")
    assert "'colour'" in str(info.value) and "dtype" in str(info.value)
