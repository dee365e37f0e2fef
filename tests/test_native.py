"""sg.save / sg.load in the native formats (.npz, .safetensors): bit-exact
round trips, and every kind of bad file refused with a WeightsError naming it."""

import io
import json
import os
import struct
import zipfile

import numpy as np
import pytest

import streamgru as sg
from streamgru.formats import native

SUFFIXES = [".npz", ".safetensors"]


def make_model(dtype, rng):
    layers = [
        sg.GRU(rng.normal(size=(18, 3)), rng.normal(size=(18, 6)), rng.normal(size=18),
               rng.normal(size=18), reset_after=True),
        sg.GRU(rng.normal(size=(12, 6)), rng.normal(size=(12, 4)), None, rng.normal(size=12),
               reset_after=False, clip=2.5, gate_activation=("hard_sigmoid", 0.25, 0.4)),
        sg.Dense(rng.normal(size=(5, 4)), rng.normal(size=5), ("leaky_relu", 0.3)),
        sg.Dense(rng.normal(size=(2, 5)), None, "sigmoid"),
    ]
    init = rng.normal(size=10)
    return sg.Model(layers, dtype=dtype, initial_state=init, metadata={"source": "unit test"})


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_exact(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    m = make_model(dtype, rng)
    path = tmp_path / f"model{suffix}"
    sg.save(m, path)
    back = sg.load(path)
    assert back == m  # dtype, layer configs, arrays (dtype and bits), initial state
    assert back.dtype == dtype
    for a, b in zip(m.layers, back.layers):
        assert type(a) is type(b) and a.config() == b.config()
        for name, arr in a.arrays().items():
            got = b.arrays()[name]
            assert got.dtype == arr.dtype and got.tobytes() == arr.tobytes(), name
    assert back.layers[1].reset_after is False and back.layers[1].clip == 2.5
    assert back.layers[1].gate_activation == m.layers[1].gate_activation
    assert str(back.layers[2].activation) == "leaky_relu(alpha=0.3)"
    assert back.initial_state.tobytes() == m.initial_state.tobytes()
    assert back.metadata["source"] == "unit test"
    X = rng.normal(size=(40, 3))
    assert back.stream().process(X).tobytes() == m.stream().process(X).tobytes()
    # str paths too, and dtype= converts on load
    assert sg.load(str(path), dtype=np.float64) == back.astype(np.float64)  # widened from the file


def test_safetensors_file_follows_the_published_layout(tmp_path):
    m = make_model(np.float32, np.random.default_rng(1))
    path = tmp_path / "m.safetensors"
    sg.save(m, path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    assert "streamgru" in header.pop("__metadata__")
    end = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        assert info["dtype"] == "F32"
        b, e = info["data_offsets"]
        assert b == end  # back to back, no gaps
        end = e
    assert end == len(data)
    w = header["layers.0.weight_hh"]
    b, e = w["data_offsets"]
    arr = np.frombuffer(data[b:e], "<f4").reshape(w["shape"])
    np.testing.assert_array_equal(arr, m.layers[0].weight_hh)


def test_npz_file_is_a_plain_npz_without_pickles(tmp_path):
    m = make_model(np.float64, np.random.default_rng(2))
    path = tmp_path / "m.npz"
    sg.save(m, path)
    with np.load(path, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["layers.2.weight"], m.layers[2].weight)
        assert z[native.META_KEY].dtype == np.uint8


# ----------------------------------------------------------------------------
# bad files


def write(path, data):
    path.write_bytes(data)
    return path


def saved_bytes(tmp_path, suffix):
    p = tmp_path / f"good{suffix}"
    sg.save(make_model(np.float32, np.random.default_rng(3)), p)
    return p.read_bytes()


def safetensors_with(header, data=b""):
    hdr = json.dumps(header).encode()
    return struct.pack("<Q", len(hdr)) + hdr + data


def npz_with(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def foreign_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "not weights")
    return buf.getvalue()


def npy_bytes():
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    return buf.getvalue()


def desc_bytes(**changes):
    desc = {"format": "streamgru", "version": 1, "dtype": "float32",
            "layers": [{"kind": "dense", "config": {"activation": ["identity", 0, 0]},
                        "arrays": ["weight"]}], "metadata": {}}
    desc.update(changes)
    return np.frombuffer(json.dumps(desc).encode(), np.uint8)


BAD_FILES = [
    # (name, suffix, bytes or callable(tmp_path) -> bytes, words in the message)
    ("empty", ".npz", b"", "not a readable .npz"),
    ("random", ".npz", np.random.default_rng(0).bytes(4096), "not a readable .npz"),
    ("truncated", ".npz", lambda t: saved_bytes(t, ".npz")[:300], "not a readable .npz"),
    ("foreign zip", ".npz", foreign_zip(), "not a streamgru file"),
    ("foreign npz", ".npz", npz_with(a=np.zeros(3)), "not a streamgru file"),
    ("npy renamed", ".npz", npy_bytes(), "not a readable .npz"),
    ("object array", ".npz",
     npz_with(**{native.META_KEY: desc_bytes(), "layers.0.weight": np.array([{}], dtype=object)}),
     "tensor layers.0.weight: an object array"),
    ("corrupt description", ".npz", npz_with(**{native.META_KEY: np.frombuffer(b"{oops", np.uint8)}),
     "corrupt streamgru description"),
    ("unknown layer kind", ".npz",
     npz_with(**{native.META_KEY: desc_bytes(layers=[{"kind": "conv", "config": {}, "arrays": []}])}),
     "unknown kind 'conv'"),
    ("missing tensor", ".npz", npz_with(**{native.META_KEY: desc_bytes()}), "layers.0.weight is missing"),
    ("future version", ".npz", npz_with(**{native.META_KEY: desc_bytes(version=99)}), "version 99"),
    ("bad layer tensor", ".npz",
     npz_with(**{native.META_KEY: desc_bytes(), "layers.0.weight": np.zeros(4)}),
     "tensor weight: expected 2 dimensions"),
    ("empty", ".safetensors", b"", "truncated"),
    ("random", ".safetensors", np.random.default_rng(1).bytes(4096), "not a safetensors file"),
    ("truncated data", ".safetensors", lambda t: saved_bytes(t, ".safetensors")[:-40],
     "outside the"),
    ("truncated header", ".safetensors", lambda t: saved_bytes(t, ".safetensors")[:60],
     "not a safetensors file, or truncated"),
    ("header not json", ".safetensors", struct.pack("<Q", 5) + b"{oops", "corrupt safetensors header"),
    ("header a list", ".safetensors", safetensors_with([1, 2]), "not a JSON object"),
    ("offsets out of range", ".safetensors",
     safetensors_with({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
     "data offsets [0, 16] outside the 8 data bytes"),
    ("offsets reversed", ".safetensors",
     safetensors_with({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}, b"\0" * 8),
     "outside"),
    ("size mismatch", ".safetensors",
     safetensors_with({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
     "8 bytes for shape (3,)"),
    ("unknown dtype", ".safetensors",
     safetensors_with({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8),
     "unsupported dtype 'C64'"),
    ("malformed entry", ".safetensors", safetensors_with({"w": {"dtype": "F32"}}), "malformed header"),
]


@pytest.mark.parametrize("name, suffix, content, words", BAD_FILES, ids=[f"{b[1]}-{b[0]}" for b in BAD_FILES])
def test_bad_file_is_refused_naming_it(tmp_path, name, suffix, content, words):
    data = content(tmp_path) if callable(content) else content
    path = write(tmp_path / f"bad{suffix}", data)
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path)
    msg = str(info.value)
    assert str(path) in msg and words in msg, msg


@pytest.mark.parametrize("suffix", SUFFIXES + [".pt", ".onnx"])
def test_missing_file_is_refused_naming_it(tmp_path, suffix):
    path = tmp_path / f"nothing{suffix}"
    with pytest.raises(sg.WeightsError, match="no such file") as info:
        sg.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["model.txt", "model", "model.npz.bak", "model.h6"])
def test_unknown_suffix_names_file_and_supported_suffixes(tmp_path, name):
    path = write(tmp_path / name, b"whatever")
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path)
    msg = str(info.value)
    assert str(path) in msg
    for suffix in (".npz", ".safetensors", ".pt", ".pth", ".onnx"):
        assert suffix in msg


def test_a_directory_is_not_a_weight_file(tmp_path):
    d = tmp_path / "dir.npz"
    d.mkdir()
    with pytest.raises(sg.WeightsError, match="dir.npz"):
        sg.load(d)


# ----------------------------------------------------------------------------
# failed saves


def test_save_refuses_unknown_suffix_and_non_models(tmp_path):
    m = make_model(np.float32, np.random.default_rng(4))
    existing = write(tmp_path / "model.txt", b"precious")
    with pytest.raises(sg.WeightsError, match=r"\.npz or \.safetensors"):
        sg.save(m, existing)
    assert existing.read_bytes() == b"precious"
    with pytest.raises(sg.WeightsError, match="expected a streamgru Model"):
        sg.save(m.layers[0], tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_failed_write_leaves_existing_file_identical(tmp_path, suffix, monkeypatch):
    """The file is written beside the target and renamed into place: if the
    rename fails, the old file is untouched and no temporary file is left."""
    old = make_model(np.float32, np.random.default_rng(5))
    path = tmp_path / f"model{suffix}"
    sg.save(old, path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(native.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        sg.save(make_model(np.float64, np.random.default_rng(6)), path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [path.name]


def test_save_into_read_only_directory_leaves_file_identical(tmp_path, monkeypatch):
    m = make_model(np.float32, np.random.default_rng(7))
    path = tmp_path / "model.npz"
    sg.save(m, path)
    before = path.read_bytes()
    os.chmod(tmp_path, 0o555)
    try:
        try:  # root ignores directory permissions: then refuse the way the OS would
            (tmp_path / "probe").touch()
            (tmp_path / "probe").unlink()

            def refuse(*args, **kwargs):
                raise PermissionError(13, "Permission denied", str(tmp_path))

            monkeypatch.setattr(native, "_open_temp", refuse)
        except PermissionError:
            pass
        with pytest.raises(PermissionError):
            sg.save(m.astype(np.float64), path)
    finally:
        os.chmod(tmp_path, 0o755)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [path.name]


def test_saved_file_mode_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        sg.save(make_model(np.float32, np.random.default_rng(8)), tmp_path / "m.npz")
        sg.save(make_model(np.float32, np.random.default_rng(8)), tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o644
