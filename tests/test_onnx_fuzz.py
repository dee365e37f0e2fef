"""Random small graphs of shape and folding ops on absurd constants (huge,
negative, non-integer, non-finite, subnormal), after a GRU: each either
loads or raises WeightsError naming the file, quickly and within a small
peak of memory. Never another exception type, never a hang."""

from __future__ import annotations

import os
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")

from onnx import helper  # noqa: E402

import streamgru as sg  # noqa: E402
from onnx_models import gru_then, save  # noqa: E402

# op -> number of inputs
OPS = {"ConstantOfShape": 1, "Expand": 2, "Tile": 2, "Range": 3, "Reshape": 2, "Unsqueeze": 2,
       "Squeeze": 2, "Slice": 3, "Gather": 2, "Concat": 2, "Mul": 2, "Add": 2, "Div": 2,
       "Pad": 2, "OneHot": 3, "MatMul": 2, "Transpose": 1, "Where": 3, "Shape": 1,
       "CumSum": 2, "Relu": 1}

INTS = [0, 1, -1, 2, 3, 12, 2**31, 2**40, 2**62, -2**62, 10**18]
FLOATS = [0.0, 1.0, -1.0, 0.5, np.inf, -np.inf, np.nan, 1e-320, 1e308]

int_arrays = st.lists(st.sampled_from(INTS), min_size=0, max_size=3).map(
    lambda v: np.array(v, np.int64))
int_scalars = st.sampled_from(INTS).map(lambda v: np.array(v, np.int64))
float_arrays = st.tuples(st.sampled_from([(), (1,), (3,), (2, 3), (1, 12)]),
                         st.sampled_from(FLOATS), st.sampled_from([np.float32, np.float64])).map(
    lambda a: np.full(a[0], a[1], a[2]))
constants = st.one_of(int_arrays, int_scalars, float_arrays)


@st.composite
def graphs(draw):
    inits = {f"c{k}": draw(constants) for k in range(draw(st.integers(1, 4)))}
    names = ["h"] + list(inits)
    nodes = []
    for k in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(sorted(OPS)))
        ins = [draw(st.sampled_from(names)) for _ in range(OPS[op])]
        attrs = {"axis": 0} if op == "Concat" else {}
        nodes.append(helper.make_node(op, ins, [f"v{k}"], name=f"n{k}_{op.lower()}", **attrs))
        names.append(f"v{k}")
    nodes.append(helper.make_node("Add", ["h", names[-1]], ["Y"], name="out"))
    return nodes, inits


# STREAMGRU_FUZZ_EXAMPLES=5000 for a longer run
@settings(max_examples=int(os.environ.get("STREAMGRU_FUZZ_EXAMPLES", 60)), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=graphs())
def test_random_fold_graphs_load_or_are_refused(tmp_path_factory, graph):
    nodes, inits = graph
    path = save(gru_then(nodes, inits, None), tmp_path_factory.mktemp("fuzz") / "g.onnx")
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        sg.load(path)
    except sg.WeightsError as exc:
        assert not isinstance(exc, sg.formats.UnexpectedReaderError), str(exc)
        assert str(path) in str(exc)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 10
    assert peak < 64 * 2**20, peak
