"""Graph models through sg.save / sg.load (native format version 4) and
`streamgru convert`: the loaded model equals the saved one, streams
bit-identically (step, process, StreamBatch; both containers, both dtypes,
float and reduced-precision weights), keeps a shared layer shared, and a NAM
WaveNet file survives the trip. Chain files are written as before. Every
malformed topology is refused with a WeightsError naming the file and the
graph node, within the load's budget."""

import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamgru as sg
from streamgru.formats import native, native_files

from test_graph import build_graph, step, wavenet_like

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUFFIXES = [".npz", ".safetensors"]


def shared_graph(dtype=np.float32):
    """A conv, a GRU, one Dense called on two nodes, products, slices,
    scales, a gate: every node kind, with weights a quantizer touches."""
    rng = np.random.default_rng(0)
    x = sg.Input(3)
    shared = sg.Dense(rng.normal(size=(4, 4)) * 0.5, rng.normal(size=4), "tanh")
    h = sg.Conv1d(rng.normal(size=(4, 3, 2)), rng.normal(size=4), dilation=2)(x)
    g = sg.GRU.from_torch(rng.normal(size=(12, 4)) * 0.5, rng.normal(size=(12, 4)) * 0.5)(h)
    a = shared(g)
    b = shared(a * 0.5 + h)
    z = sg.Dense(rng.normal(size=(8, 4)))(a * b).blend()
    w = sg.Dense(rng.normal(size=(8, 4)))(z).gate()
    y = sg.Dense(rng.normal(size=(2, 2)))(w[0:2] + b.act("relu")[1:3])
    return sg.Model(y, dtype=dtype)


def assert_streams_identically(a, b, T=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(T, a.input_size)).astype(a.dtype)
    sa, sb = a.stream(), b.stream()
    np.testing.assert_array_equal(sa.process(X), sb.process(X))
    np.testing.assert_array_equal(sa.get_state(), sb.get_state())
    sa.reset(), sb.reset()
    np.testing.assert_array_equal(np.array([sa.step(x) for x in X[:50]]),
                                  np.array([sb.step(x) for x in X[:50]]))
    X2 = np.stack([X, X[::-1].copy()])
    np.testing.assert_array_equal(a.streams(2).process(X2), b.streams(2).process(X2))


def roundtrip(model, tmp_path, suffix):
    path = tmp_path / f"graph{suffix}"
    sg.save(model, path)
    return sg.load(path)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", [None, "int8", "float16", "bfloat16"])
def test_a_graph_comes_back_equal_and_streams_bit_identically(tmp_path, suffix, dtype, kind):
    m = shared_graph(dtype)
    if kind is not None:
        m = m.quantize(kind)
        assert m.weights_dtype == kind and m.graph == shared_graph().graph
    back = roundtrip(m, tmp_path, suffix)
    assert back == m and back.graph == m.graph and back.dtype == dtype
    assert back.weights_dtype == m.weights_dtype
    # equal models (bit-exact arrays, same graph) pack into the same plan and
    # stream identically, every weight type (each compiles only its own
    # kernels, once: kernels/calls.py)
    np.testing.assert_array_equal(back._plan().w, m._plan().w)
    np.testing.assert_array_equal(back._plan().meta, m._plan().meta)
    assert_streams_identically(m, back)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_layer_called_twice_is_stored_once_and_comes_back_shared(tmp_path, suffix):
    m = shared_graph()
    i, j = [n for n, layer in enumerate(m.layers) if layer is m.layers[2]]
    assert (i, j) == (2, 5)
    path = tmp_path / f"shared{suffix}"
    sg.save(m, path)
    desc, tensors = native._describe(m)
    assert [n["layer"] for n in desc["graph"]["nodes"] if "layer" in n] == [0, 1, 2, 2, 3, 4, 5]
    # 7 layer calls, 6 layers, each with its tensors once
    assert {k.split(".")[1] for k in tensors if k.startswith("layers.")} == set("012345")
    back = sg.load(path)
    assert back.layers[2] is back.layers[5]
    for other in (back.astype(np.float64), back.quantize("int8")):
        assert other.layers[2] is other.layers[5]


@settings(max_examples=6, deadline=None)
@given(I=st.integers(1, 4), seed=st.integers(0, 2**31), steps=st.lists(step, min_size=1, max_size=6),
       suffix=st.sampled_from(SUFFIXES))
def test_random_graphs_round_trip(tmp_path_factory, I, seed, steps, suffix):
    m = build_graph(I, seed, steps, np.float32)
    s = m.stream()
    s.process(np.ones((7, I), np.float32))
    m = sg.Model(m._output, initial_state=s.get_state())  # a non-zero initial state too
    back = roundtrip(m, tmp_path_factory.mktemp("g"), suffix)
    assert back == m
    assert_streams_identically(m, back, T=60, seed=seed)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_chain_files_are_written_as_before(tmp_path, suffix):
    chain = sg.Model([sg.Dense(np.ones((2, 3)))])
    desc, _ = native._describe(chain)
    assert desc["version"] == native.VERSION and "graph" not in desc
    assert sg.load(roundtrip(chain, tmp_path, suffix) and tmp_path / f"graph{suffix}") == chain
    desc, _ = native._describe(chain.quantize("int8"))
    assert desc["version"] == native.VERSION_QUANT and "graph" not in desc
    assert native._describe(wavenet_like())[0]["version"] == native.VERSION_GRAPH


# ----------------------------------------------------------------------------
# NAM WaveNet files


@pytest.fixture(scope="module")
def nam_file(tmp_path_factory):
    pytest.importorskip("nam.models.wavenet")
    from test_nam_wavenet import export

    return export("gated", tmp_path_factory.mktemp("nam"))[1]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_nam_wavenet_round_trips(nam_file, tmp_path, suffix, dtype):
    m = sg.load(nam_file, dtype=dtype)
    assert m.graph is not None and np.any(m.initial_state)  # NAM's settled start
    back = roundtrip(m, tmp_path, suffix)
    assert back == m and back.metadata["receptive_field"] == m.metadata["receptive_field"]
    assert_streams_identically(m, back, T=1000)


def test_streamgru_convert_writes_a_nam_wavenet(nam_file, tmp_path):
    dst = tmp_path / "amp.safetensors"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "streamgru", "convert", str(nam_file), str(dst)],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "graph of" in r.stdout
    back, m = sg.load(dst), sg.load(nam_file)
    assert back == m and back.metadata["converted_from"] == "amp.nam"
    assert_streams_identically(m, back, T=1000)


# ----------------------------------------------------------------------------
# malformed topologies


def written(tmp_path, suffix, change=None, drop=None, model=None):
    """A native file of ``shared_graph()`` (or ``model``) whose description
    went through ``change(desc)`` and which lacks the tensor ``drop``."""
    desc, tensors = native._describe(model or shared_graph())
    if change is not None:
        change(desc)
    tensors.pop(drop, None)
    write = native_files.npz_bytes if suffix == ".npz" else native_files.safetensors_bytes
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(write(desc, tensors))
    return path


def nodes(d):
    return d["graph"]["nodes"]


def node(n, **fields):
    return lambda d: nodes(d)[n - 1].update(fields)


def elementwise(n, **fields):
    return lambda d: nodes(d)[n - 1]["elementwise"].update(fields)


DEAD = {"layer": 0, "inputs": [0], "size": 4}
MALFORMED = [
    (node(3, inputs=[99]), "graph node 3: reads node 99, which does not exist"),
    (node(3, inputs=[-1]), "graph node 3: reads node -1, which does not exist"),
    (node(3, inputs=[3]), "graph node 3: reads node 3, which is not before it (a cycle"),
    (node(3, inputs=[6]), "graph node 3: reads node 6, which is not before it (a cycle"),
    (node(3, inputs=[True]), "graph node 3: inputs [True] is not a list of one or two"),
    (node(5, inputs=[4, 1, 2]), "graph node 5: inputs [4, 1, 2] is not a list of one or two"),
    (node(5, inputs=[4]), "graph node 5: element-wise add reads 2 node(s), not 1"),
    (node(2, inputs=[0]), "graph node 2: GRU takes 4 channels but is called on a node of 3"),
    (node(3, size=5), "graph node 3: the file gives it 5 channels, but its Dense outputs 4"),
    (node(3, size=0), "graph node 3: size 0 is not a positive integer"),
    (node(3, size=10 ** 15), "graph node 3 would need"),
    (node(3, layer=7), "graph node 3: layer 7 is not one of the file's 6 layers"),
    (node(3, layer="0"), "graph node 3: layer '0' is not one of"),
    (node(3, extra=1), "graph node 3: malformed description"),
    (lambda d: nodes(d)[2].pop("size"), "graph node 3: malformed description"),
    (lambda d: nodes(d).__setitem__(2, [2]), "graph node 3: malformed description"),
    (elementwise(4, op="pow"), "graph node 4: element-wise op 'pow': expected one of"),
    (elementwise(4, op=["slice"]), "graph node 4: malformed element-wise op"),
    (elementwise(5, input_size=5), "graph node 5: element-wise add takes 5 channels"),
    (elementwise(4, output_size=9), "graph node 4: slice [0:9] of 4 channels"),
    (elementwise(4, scale=[1]), "graph node 4: malformed element-wise op"),
    (lambda d: nodes(d)[3].update(elementwise=[1]), "graph node 4: element-wise op [1] is not"),
    (lambda d: nodes(d)[3]["elementwise"].pop("op"), "graph node 4: malformed element-wise op"),
    (lambda d: d["layers"][0]["config"].update(padding="same"), "graph node 1: Conv1d has a latency"),
    (lambda d: d["layers"][3].update(kind="conv9d"), "graph node 8: layer 3: unknown kind 'conv9d'"),
    (lambda d: d["layers"].append(d["layers"][0]), "layer 6 is in the file but no graph node uses"),
    (lambda d: nodes(d).insert(len(nodes(d)) - 1, DEAD), "graph node 16 does not feed the output"),
    (lambda d: d["graph"].update(input_size=10 ** 12), "graph node 0 (the input) would need"),
    (lambda d: d["graph"].update(input_size=2.0), "graph input_size 2.0 is not a positive integer"),
    (lambda d: d["graph"].update(nodes=[]), "graph nodes is not a non-empty list"),
    (lambda d: d["graph"].pop("nodes"), "malformed graph description"),
    (lambda d: d.update(graph=[1]), "malformed graph description [1]"),
    (lambda d: d.update(version=3), "a graph description in a version 3 file"),
    (lambda d: d.update(input_skip=0), "input_skip and output_gain are for chains"),
    (lambda d: d["graph"].update(input_size=4), "graph node 1: Conv1d takes 3 channels but is "
                                                "called on a node of 4"),
]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("change, words", MALFORMED, ids=[w[:40] for _, w in MALFORMED])
def test_malformed_topology_is_refused_naming_file_and_node(tmp_path, suffix, change, words):
    path = written(tmp_path, suffix, change)
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    assert words in msg, msg


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_node_whose_layer_lacks_a_tensor_is_refused_naming_the_node(tmp_path, suffix):
    path = written(tmp_path, suffix, drop="layers.2.bias")
    with pytest.raises(sg.WeightsError, match="graph node 3: tensor layers.2.bias is missing"):
        sg.load(path)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_huge_node_count_is_refused_within_the_budget(tmp_path, suffix):
    """5000 wide nodes in a 1.5 MB file: each node is charged the rows a
    stream would keep for it before it is built, so the load stops early."""
    wide = sg.Model(sg.Dense(np.ones((1, 4096)))(sg.Input(4096)[0:4096]))
    N = 5000

    def change(d):
        ident, head = nodes(d)
        d["graph"]["nodes"] = ([ident] + [dict(ident, inputs=[n]) for n in range(1, N)]
                               + [dict(head, inputs=[N])])

    path = written(tmp_path, suffix, change, model=wide)
    tracemalloc.start()
    try:
        with pytest.raises(sg.WeightsError, match=r"graph node \d+ would need 1,048,576 bytes, "
                                                  r"beyond this load's budget"):
            sg.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 << 20, peak
