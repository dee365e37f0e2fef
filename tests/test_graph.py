"""Graph models (sg.Input, layers called on nodes, + * slices, act, gate,
blend) streamed against the offline reference.

tests/reference.py computes a graph node by node over the whole sequence
(``run_graph_offline``); every path (step, process, uneven chunks, batch
step and process; float32 and float64; from random states) must give the
same numbers, on random DAGs built by hypothesis: residual blocks, skip sums
collected across blocks, gated and blended activations, products of two
branches, slices, scales, and a conditioning input fed to every block.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamgru as sg

import reference as ref
from test_conv import check_paths

FAST = settings(max_examples=25, deadline=None)
ACTS = [None, "relu", "tanh", "sigmoid", ("leaky_relu", 0.1)]

# one step of a random graph: what to do with the nodes built so far
step = st.fixed_dictionaries({
    "op": st.sampled_from(["block", "block", "gated", "dense", "mul", "slice", "scale", "act",
                           "blend", "gru", "concat"]),
    "k": st.integers(1, 3), "d": st.integers(1, 4), "C": st.integers(1, 5),
    "act": st.sampled_from(ACTS), "pick": st.integers(0, 1000), "a": st.integers(0, 1000),
})


def build_graph(I, seed, steps, dtype):
    """A random DAG: each step reads one or two earlier nodes (the input,
    fed to every block like WaveNet's condition, included); the output sums
    the block outputs (skip connections) into a Dense head."""
    rng = np.random.default_rng(seed)
    x = sg.Input(I)
    nodes, skips = [x], []

    def conv(cin, cout, k=1, d=1, act=None):
        return sg.Conv1d(rng.normal(size=(cout, cin, k)) / np.sqrt(cin * k),
                         rng.normal(size=cout) * 0.3, dilation=d, activation=act)

    for s in steps:
        src = nodes[s["pick"] % len(nodes)]
        C, op = s["C"], s["op"]
        if op in ("block", "gated"):
            # a residual block conditioned on x: h + conv(gate(conv(h) + mix(x)))
            h = conv(src.size, C)(src) if src.size != C else src
            if op == "gated":
                z = (conv(C, 2 * C, s["k"], s["d"])(h) + conv(I, 2 * C)(x)).gate()
            else:
                z = (conv(C, C, s["k"], s["d"])(h) + conv(I, C)(x)).act(s["act"] or "tanh")
            out = h + conv(C, C)(z)
            skips.append(conv(C, 2)(z))
        elif op == "dense":
            out = sg.Dense(rng.normal(size=(C, src.size)) / np.sqrt(src.size),
                           rng.normal(size=C) * 0.2, s["act"])(src)
        elif op == "mul":
            other = conv(I, src.size)(x)
            out = src * other
        elif op == "slice":
            a = s["a"] % src.size
            out = src[a : a + 1 + s["a"] % (src.size - a)]
        elif op == "scale":
            out = src * float(rng.normal())
        elif op == "act":
            out = src.act(s["act"])
        elif op == "concat":  # with another earlier node (the input at least)
            out = src.concat(nodes[s["a"] % len(nodes)])
        elif op == "blend":
            out = conv(src.size, 2 * C)(src).blend(s["act"] or "tanh", "sigmoid")
        else:  # a recurrent layer inside a graph
            H = C
            out = sg.GRU.from_torch(rng.normal(size=(3 * H, src.size)) * 0.5,
                                    rng.normal(size=(3 * H, H)) * 0.5)(src)
        nodes.append(out)
    last = nodes[-1]
    head = sg.Dense(rng.normal(size=(2, last.size)), rng.normal(size=2))(last)
    return sg.Model(sum(skips, head), dtype=dtype)


@pytest.mark.parametrize("dtype,ref_tol,path_tol", [(np.float64, 1e-10, 1e-12),
                                                     (np.float32, 2e-4, 2e-5)])
@FAST
@given(I=st.integers(1, 4), seed=st.integers(0, 2**31), steps=st.lists(step, min_size=1, max_size=6),
       T=st.integers(1, 40))
def test_random_graphs(dtype, ref_tol, path_tol, I, seed, steps, T):
    check_paths(build_graph(I, seed, steps, dtype), T, seed, ref_tol=ref_tol, path_tol=path_tol)


def wavenet_like(dtype=np.float64, gated=False, seed=0):
    """Two blocks of NAM's layer form, skip sum into a 1x1 head."""
    rng = np.random.default_rng(seed)
    x = sg.Input(1)
    h = sg.Conv1d(rng.normal(size=(4, 1, 1)))(x)
    skip = None
    for d in (1, 2, 4):
        M = 8 if gated else 4
        z = sg.Conv1d(rng.normal(size=(M, 4, 3)) * 0.5, rng.normal(size=M), dilation=d)(h)
        z = z + sg.Conv1d(rng.normal(size=(M, 1, 1)))(x)
        p = z.gate() if gated else z.act("tanh")
        h = h + sg.Conv1d(rng.normal(size=(4, 4, 1)) * 0.5, rng.normal(size=4))(p)
        skip = p if skip is None else skip + p
    return sg.Model(sg.Conv1d(rng.normal(size=(1, 4, 1)))(skip) * 0.5, dtype=dtype)


@pytest.mark.parametrize("gated", [False, True])
def test_wavenet_block_1000_steps(gated):
    check_paths(wavenet_like(np.float64, gated), 1000, 3, ref_tol=1e-10, path_tol=1e-12)
    check_paths(wavenet_like(np.float32, gated), 1000, 3, ref_tol=1e-5, path_tol=1e-5)


def test_graph_api_reads_like_the_model():
    """The docstring's model: shapes, the node table and the formulas."""
    rng = np.random.default_rng(1)
    x = sg.Input(2)
    a = sg.Dense(rng.normal(size=(4, 2)))(x)
    b = sg.Dense(rng.normal(size=(4, 2)))(x)
    y = (a + b) * a[0:4] + (a * 2.0).act("relu")
    m = sg.Model(y, dtype=np.float64)
    assert (m.input_size, m.output_size, m.state_size) == (2, 4, 0)
    assert m.graph == ((0,), (0,), (1, 2), (1,), (3, 4), (1,), (6,), (5, 7))
    X = rng.normal(size=(7, 2))
    A, B = X @ m.layers[0].weight.T, X @ m.layers[1].weight.T
    np.testing.assert_allclose(m.stream().process(X), (A + B) * A + np.maximum(2 * A, 0),
                               rtol=0, atol=1e-12)


def test_a_layer_called_twice_shares_weights_not_state():
    rng = np.random.default_rng(2)
    conv = sg.Conv1d(rng.normal(size=(1, 1, 3)), dilation=2)
    x = sg.Input(1)
    m = sg.Model(conv(conv(x)), dtype=np.float64)
    assert m.state_size == 2 * conv.state_size
    X = rng.normal(size=(30, 1))
    chain = sg.Model([conv, conv], dtype=np.float64)
    np.testing.assert_array_equal(m.stream().process(X), chain.stream().process(X))


def test_graph_models_convert_and_compare():
    m = wavenet_like(np.float64)
    m32 = m.astype(np.float32)
    assert m32.dtype == np.float32 and m32.graph == m.graph
    assert m32.astype(np.float64) == m
    assert m != wavenet_like(np.float64, seed=1)
    assert "graph of" in repr(m)


def test_bad_graphs_are_refused():
    rng = np.random.default_rng(3)
    x, other = sg.Input(3), sg.Input(3)
    d2 = sg.Dense(rng.normal(size=(2, 3)))
    with pytest.raises(sg.WeightsError, match="same number"):
        d2(x) + x
    with pytest.raises(sg.WeightsError, match="takes 3 channels but is called on a node of 2"):
        d2(d2(x))
    with pytest.raises(TypeError, match="graph node"):
        d2(np.ones(3))
    with pytest.raises(sg.WeightsError, match="exactly one sg.Input"):
        sg.Model(d2(x) + d2(other))
    with pytest.raises(sg.WeightsError, match="at least one layer"):
        sg.Model(x)
    with pytest.raises(sg.WeightsError, match="even number"):
        d2(x)[0:1].gate()
    with pytest.raises(sg.WeightsError, match="chains"):
        sg.Model(d2(x), input_skip=0)
    with pytest.raises(sg.WeightsError, match=r"\[start:stop\]"):
        x[1]
    with pytest.raises(sg.WeightsError, match="empty"):
        x[2:1]


def test_bad_input_leaves_a_graph_unchanged():
    m = wavenet_like(np.float32, gated=True)
    s = m.stream()
    s.process(np.ones((20, 1), np.float32))
    before = s.get_state()
    X = np.ones((30, 1), np.float32)
    X[17] = np.inf
    with pytest.raises(sg.InputError, match="row 17"):
        s.process(X)
    with pytest.raises(sg.InputError, match="finite"):
        s.step([np.nan])
    np.testing.assert_array_equal(s.get_state(), before)
    s.reset()
    np.testing.assert_array_equal(s.get_state(), m.initial_state)
    want, _ = ref.run_offline(m, np.ones((5, 1)))
    np.testing.assert_allclose(s.process(np.ones((5, 1))), want, rtol=0, atol=1e-5)
