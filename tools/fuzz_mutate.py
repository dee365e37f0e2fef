"""Mutations of weight files for tools/fuzz.py: plain byte mutations, and
mutations that know the containers (zip members and headers, safetensors'
JSON header, .npy headers, pickle opcodes, protobuf fields) so that a
mutant gets past the outer checks and reaches the code behind them.

``mutate(data, rng, corpus)`` applies one to three of them; every choice
comes from ``rng`` (a ``random.Random``), so a seed reproduces a run.
"""

from __future__ import annotations

import ast
import io
import json
import pickletools
import random
import struct
import warnings
import zipfile

import numpy as np

INTS = [0, 1, -1, 2, 3, 7, 8, 16, 64, 65, 127, 128, 255, 256, 4096, 2**15 - 1, 2**16 - 1, 2**16,
        2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64,
        10**30, -2**31, -2**63]
MAX_SIZE = 4 << 20  # mutants stay small: the fuzzer is after logic, not disk


# ----------------------------------------------------------------------------
# bytes


def _pos(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data)) if data else 0


def _span(rng: random.Random, data: bytes) -> tuple[int, int]:
    a = _pos(rng, data)
    return a, min(len(data), a + rng.choice([1, 2, 4, 8, 16, 64, 256, 4096]))


def byte_mutate(data: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    b = bytearray(data)
    op = rng.randrange(9)
    if not b or op == 0:  # insert random bytes
        at = _pos(rng, b)
        b[at:at] = rng.randbytes(rng.choice([1, 2, 4, 8, 64]))
    elif op == 1:  # flip a bit
        b[_pos(rng, b)] ^= 1 << rng.randrange(8)
    elif op == 2:  # an interesting byte
        b[_pos(rng, b)] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    elif op == 3:  # an interesting integer, either byte order
        size = rng.choice([1, 2, 4, 8])
        v = rng.choice(INTS) % (1 << (8 * size))
        at = _pos(rng, b)
        b[at : at + size] = v.to_bytes(size, rng.choice(["little", "big"]))
    elif op == 4:  # delete a span
        a, e = _span(rng, b)
        del b[a:e]
    elif op == 5:  # duplicate a span elsewhere, maybe many times
        a, e = _span(rng, b)
        at = _pos(rng, b)
        b[at:at] = b[a:e] * rng.choice([1, 1, 2, 16, 256])
    elif op == 6:  # truncate
        del b[_pos(rng, b):]
    elif op == 7 and corpus:  # splice with another seed
        other = rng.choice(corpus)
        b = b[: _pos(rng, b)] + other[_pos(rng, other):]
    else:  # copy a span over another
        a, e = _span(rng, b)
        at = _pos(rng, b)
        b[at : at + (e - a)] = b[a:e]
    return bytes(b[:MAX_SIZE])


# ----------------------------------------------------------------------------
# JSON values


def _nodes(obj, out, parent=None, key=None, depth=0):
    out.append((parent, key, obj))
    if depth < 12:
        if isinstance(obj, dict):
            for k, v in obj.items():
                _nodes(v, out, obj, k, depth + 1)
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                _nodes(v, out, obj, i, depth + 1)
    return out


def _odd_value(rng: random.Random, old):
    choices = [rng.choice(INTS), -rng.choice(INTS), 1.5, -0.0, 1e308, float("nan"), float("inf"),
               "", "x" * rng.choice([1, 1000]), None, True, False, [], {}, [1] * 65,
               [rng.choice(INTS)] * rng.choice([1, 2, 3]), "float16", "F16", "BF16", "I64", "object",
               "gru", "lstm", "dense", "relu", ["leaky_relu", "x"], json.loads("[" * 40 + "]" * 40)]
    if isinstance(old, str):
        choices += [old + "x", old[:-1], old.upper()]
    if isinstance(old, (int, float)) and not isinstance(old, bool):
        choices += [old + 1, old - 1, old * 2, -old, str(old)]
    if isinstance(old, list) and old:
        choices += [old[:-1], old + old[-1:], old[::-1]]
    return rng.choice(choices)


def json_mutate(obj, rng: random.Random):
    """``obj`` (parsed JSON) with one node replaced, deleted or duplicated
    (half the time a dict, list or string: weight lists would swamp the rest)."""
    nodes = _nodes(obj, [])
    if rng.random() < 0.5:
        nodes = [n for n in nodes if not isinstance(n[2], (int, float))] or nodes
    parent, key, value = rng.choice(nodes)
    if parent is None:
        return _odd_value(rng, value) if rng.random() < 0.1 else obj
    op = rng.randrange(4)
    if op == 0:
        del parent[key]
    elif op == 1 and isinstance(parent, list):
        parent.insert(key, value)
    elif op == 1:
        parent[str(key) + "_"] = value
    else:
        parent[key] = _odd_value(rng, value)
    return obj


def _dumps(obj) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


# ----------------------------------------------------------------------------
# safetensors


def is_safetensors(data: bytes) -> bool:
    return len(data) > 9 and data[8:9] == b"{" and int.from_bytes(data[:8], "little") <= len(data) - 8


def safetensors_mutate(data: bytes, rng: random.Random) -> bytes:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("streamgru"), str) and rng.random() < 0.5:
        meta["streamgru"] = _dumps(json_mutate(json.loads(meta["streamgru"]), rng)).decode()
    else:
        header = json_mutate(header, rng)
    hdr = _dumps(header)
    length = len(hdr) if rng.random() < 0.9 else rng.choice(INTS) % 2**64
    return struct.pack("<Q", length) + hdr + data[8 + n :]


# ----------------------------------------------------------------------------
# .npy members


def npy_mutate(data: bytes, rng: random.Random) -> bytes:
    if not data.startswith(b"\x93NUMPY") or len(data) < 10:
        raise ValueError("not .npy")
    major = data[6]
    hlen = struct.unpack("<H" if major == 1 else "<I", data[8:10] if major == 1 else data[8:12])[0]
    start = 10 if major == 1 else 12
    header = ast.literal_eval(data[start : start + hlen].decode("latin1"))
    body = data[start + hlen :]
    key = rng.choice(["shape", "shape", "descr", "fortran_order", "body"])
    if key == "shape":
        shape = list(header["shape"])
        if shape and rng.random() < 0.7:
            shape[rng.randrange(len(shape))] = rng.choice(INTS)
        else:
            shape = rng.choice([[], [0], [1] * 65, [2**32, 2**32], shape + [1]])
        header["shape"] = tuple(shape)
    elif key == "descr":
        header["descr"] = rng.choice(["<f2", ">f4", "<f8", "<i8", "|u1", "|b1", "<c16", "|O", "<U3",
                                      "|V8", "<M8[s]", [("a", "<f4")], "<f16"])
    elif key == "fortran_order":
        header["fortran_order"] = not header["fortran_order"]
    else:
        body = byte_mutate(body, rng, [])
    text = repr(header).encode("latin1")
    text += b" " * (-(len(text) + start + 1) % 64) + b"\n"
    size = struct.pack("<H" if major == 1 else "<I", len(text))
    return data[:8] + size + text + body


# ----------------------------------------------------------------------------
# pickles


GLOBALS = [("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
           ("torch._utils", "_rebuild_parameter"), ("torch", "FloatStorage"), ("torch", "DoubleStorage"),
           ("torch", "HalfStorage"), ("torch", "BFloat16Storage"), ("torch", "LongStorage"),
           ("os", "system"), ("builtins", "eval"), ("builtins", "getattr"), ("posix", "system"),
           ("torch", "Size"), ("builtins", "set"), ("torch._utils", "_rebuild_tensor"),
           ("__builtin__", "set"), ("copyreg", "_reconstructor"), ("numpy", "dtype")]
OPCODES = [b"(", b")", b"t", b"R", b"b", b"0", b"2", b"}", b"]", b"e", b"u", b"s", b"a", b"N",
           b"\x88", b"\x94", b"h\x00", b"h\xff", b"j\xff\xff\xff\x7f", b"Q", b"\x85", b"\x86",
           b"\x87", b"\x93", b"\x81", b".", b"K\x00", b"J\xff\xff\xff\xff", b"\x8a\x09" + b"\xff" * 9]


def pickle_end(data: bytes, start: int = 0) -> int:
    """The offset just past the pickle that starts at ``start``."""
    end = start
    for op, _, pos in pickletools.genops(io.BytesIO(data[start:])):
        end = start + pos + 1
        if op.name == "STOP":
            return end
    raise ValueError("no STOP")


def _encode_int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if -2**31 <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    raw = v.to_bytes((v.bit_length() + 8) // 8 + 1, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _encode_str(s: str) -> bytes:
    raw = s.encode()
    return b"\x8c" + bytes([len(raw)]) + raw if len(raw) < 256 else b"X" + struct.pack("<I", len(raw)) + raw


def pickle_mutate(data: bytes, rng: random.Random) -> bytes:
    """One opcode of the first pickle in ``data`` changed (its argument, or
    the opcode itself); the bytes after that pickle are kept."""
    ops = list(pickletools.genops(io.BytesIO(data)))
    end = ops[-1][2] + 1
    bounds = [pos for _, _, pos in ops] + [end]
    i = rng.randrange(len(ops))
    op, arg, pos = ops[i]
    nxt = bounds[i + 1]
    kind = rng.randrange(5)
    if kind == 0 and isinstance(arg, int) and not isinstance(arg, bool) and op.name != "PROTO":
        new = _encode_int(rng.choice(INTS + [arg + 1, arg - 1, 2 * arg]))
    elif kind == 0 and isinstance(arg, str) and op.name in ("SHORT_BINUNICODE", "BINUNICODE"):
        new = _encode_str(rng.choice([m for pair in GLOBALS for m in pair] + [arg + "x", "", "0"]))
    elif kind == 1:
        mod, name = rng.choice(GLOBALS)
        new = b"c" + mod.encode() + b"\n" + name.encode() + b"\n"
    elif kind == 2:
        new = b""  # delete the opcode
    elif kind == 3:
        new = data[pos:nxt] + rng.choice(OPCODES)
    else:
        j = rng.randrange(i, len(ops))
        new = data[pos : bounds[j + 1]] * 2  # repeat a run of opcodes
    return data[:pos] + new + data[nxt:]


def legacy_pickles_mutate(data: bytes, rng: random.Random) -> bytes:
    """A legacy ``torch.save`` file is several pickles back to back, then raw
    storages: mutate one of the pickles."""
    starts, at = [], 0
    while at < len(data) and len(starts) < 8:
        try:
            end = pickle_end(data, at)
        except Exception:
            break
        starts.append((at, end))
        at = end
    if not starts:
        raise ValueError("no pickle")
    a, e = rng.choice(starts)
    return data[:a] + pickle_mutate(data[a:e], rng) + data[e:]


# ----------------------------------------------------------------------------
# zips (npz, torch.save)


_ZIP_FIELDS = {b"PK\x03\x04": [(6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)],
               b"PK\x01\x02": [(8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (42, 4)],
               b"PK\x05\x06": [(8, 2), (10, 2), (12, 4), (16, 4), (20, 2)]}


def _member_mutate(name: str, content: bytes, rng: random.Random) -> bytes:
    if name.endswith("__streamgru__.npy") and rng.random() < 0.7:
        desc = json_mutate(json.loads(np.load(io.BytesIO(content)).tobytes()), rng)
        out = io.BytesIO()
        np.save(out, np.frombuffer(_dumps(desc), np.uint8))
        return out.getvalue()
    if name.endswith(".npy") and rng.random() < 0.7:
        return npy_mutate(content, rng)
    if name.endswith(".pkl") and rng.random() < 0.8:
        return pickle_mutate(content, rng)
    if name.endswith(".json") and rng.random() < 0.8:
        return json_text_mutate(content, rng)
    return byte_mutate(content, rng, [])


def zip_mutate(data: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.25:  # a header field, in place
        hits = [(i, sig) for sig in _ZIP_FIELDS for i in _find_all(data, sig)]
        if hits:
            at, sig = rng.choice(hits)
            off, size = rng.choice(_ZIP_FIELDS[sig])
            b = bytearray(data)
            b[at + off : at + off + size] = (rng.choice(INTS) % (1 << (8 * size))).to_bytes(size, "little")
            return bytes(b)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = [(i.filename, z.read(i), i.compress_type) for i in z.infolist()]
    if not members:
        raise ValueError("empty zip")
    op = rng.randrange(6)
    k = rng.randrange(len(members))
    name, content, method = members[k]
    if op <= 2:
        members[k] = (name, _member_mutate(name, content, rng), method)
    elif op == 3:
        del members[k]
    elif op == 4:
        members.insert(rng.randrange(len(members) + 1), members[k])  # a duplicate name
    else:
        j = rng.randrange(len(members))
        members[k], members[j] = (name, members[j][1], method), (members[j][0], content, members[j][2])
    method = rng.choice([None, None, zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point
        with zipfile.ZipFile(out, "w") as z:
            for name, content, m in members:
                # a fixed time stamp: writestr(name) stamps the clock's, so the
                # same seed would give other bytes a second later
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = m if method is None else method
                info.external_attr = 0o600 << 16  # what writestr gives a name
                z.writestr(info, content)
    return out.getvalue()


def _find_all(data: bytes, sig: bytes) -> list[int]:
    out, at = [], data.find(sig)
    while at >= 0 and len(out) < 1000:
        out.append(at)
        at = data.find(sig, at + 1)
    return out


# ----------------------------------------------------------------------------
# protobuf (ONNX)


def pb_parse(buf: bytes) -> list[tuple[int, int, object]]:
    """Wire-format fields ``(number, wire type, value)``; ValueError if
    ``buf`` is not a well-formed message."""
    fields, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i : i + 8], i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = buf[i : i + n], i + n
        elif wt == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise ValueError("wire type")
        if i > len(buf) or num == 0:
            raise ValueError("truncated")
        fields.append((num, wt, v))
    return fields


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("varint")
        b = buf[i]
        v |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if b < 0x80:
            return v, i


def _enc_varint(v: int) -> bytes:
    v %= 1 << 64
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def pb_serialise(fields) -> bytes:
    out = bytearray()
    for num, wt, v in fields:
        out += _enc_varint(num << 3 | wt)
        if wt == 0:
            out += _enc_varint(v)
        elif wt == 2:
            out += _enc_varint(len(v)) + v
        else:
            out += v
    return bytes(out)


def protobuf_mutate(data: bytes, rng: random.Random, depth: int = 0) -> bytes:
    fields = pb_parse(data)
    if not fields:
        raise ValueError("empty message")
    k = rng.randrange(len(fields))
    num, wt, v = fields[k]
    if wt == 2 and depth < 6 and rng.random() < 0.75:
        try:
            fields[k] = (num, wt, protobuf_mutate(v, rng, depth + 1))
            return pb_serialise(fields)
        except ValueError:
            pass  # not a message: a string or raw bytes, mutated below
    op = rng.randrange(5)
    if op == 0 and wt == 0:
        fields[k] = (num, wt, rng.choice(INTS + [v + 1, v - 1, 2 * v]))
    elif op == 0 and wt == 2:
        fields[k] = (num, wt, byte_mutate(v, rng, []))
    elif op == 1:
        del fields[k]
    elif op == 2:
        fields.insert(k, fields[k])  # a repeated field, or a second value for a singular one
    elif op == 3:
        fields[k] = (rng.choice([num, num + 1, max(1, num - 1), rng.randrange(1, 30)]), wt, v)
    else:
        fields[k] = (num, wt, v if wt != 2 else v[: rng.randrange(len(v) + 1)])
    return pb_serialise(fields)


# ----------------------------------------------------------------------------


def structured(data: bytes, rng: random.Random) -> bytes:
    """A container-aware mutation of ``data``, or ValueError if it is no
    container these mutators know (or is too damaged to parse)."""
    if data[:2] == b"PK":
        return zip_mutate(data, rng)
    if is_safetensors(data):
        return safetensors_mutate(data, rng)
    if data[:1] == b"\x80":
        return legacy_pickles_mutate(data, rng)
    if data.lstrip()[:1] in (b"{", b"["):
        return json_text_mutate(data, rng)
    return protobuf_mutate(data, rng)


def json_text_mutate(data: bytes, rng: random.Random) -> bytes:
    """A JSON document (RTNeural, NAM, a Keras config) with one node changed."""
    return _dumps(json_mutate(json.loads(data), rng))


def mutate(data: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    """One to three mutations of ``data``; ``corpus`` holds files to splice with."""
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if rng.random() < 0.65:
            try:
                data = structured(data, rng)[:MAX_SIZE]
                continue
            except Exception:  # the input is beyond the structured mutators: fall back to bytes
                pass
        data = byte_mutate(data, rng, corpus)
    return data
