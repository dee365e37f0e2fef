"""Start-up cost: what a fresh process imports on the way to its first step.

Each check runs in a new interpreter (the test process has long since
imported everything), started in the repository root so it imports this
checkout of streamgru.
"""

import json
import os
import subprocess
import sys

import pytest

import streamgru as sg
from streamgru.data import WATCH_GRU

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("numba", "scipy", "onnx", "torch")


def fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter; return which HEAVY modules it imported."""
    code += f"\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_import_and_load_stay_light():
    """Importing streamgru and loading a native file need neither numba nor
    any importer's framework: numba comes with the first stream."""
    seen = fresh(f"import streamgru as sg\nm = sg.load({WATCH_GRU!r})\nprint(m.state_size)")
    assert seen == dict.fromkeys(HEAVY, False)


def test_cli_info_does_not_load_the_kernels():
    seen = fresh(f"from streamgru.cli import main\nassert main(['info', {WATCH_GRU!r}]) == 0")
    assert seen == dict.fromkeys(HEAVY, False)


def test_first_step_loads_no_importer():
    seen = fresh(
        "import numpy as np, streamgru as sg\n"
        f"m = sg.load({WATCH_GRU!r})\n"
        "m.stream().step(np.zeros(m.input_size, np.float32))"
    )
    assert seen["numba"]
    assert not seen["onnx"] and not seen["torch"]


def test_lazy_names_are_the_real_classes():
    import streamgru.stream as stream_module

    assert sg.Stream is stream_module.Stream
    assert sg.StreamBatch is stream_module.StreamBatch
    assert {"Stream", "StreamBatch"} <= set(dir(sg))
    namespace = {}
    exec("from streamgru import *", namespace)
    assert namespace["Stream"] is stream_module.Stream
    assert set(sg.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="no attribute 'Streem'"):
        sg.Streem  # noqa: B018


def test_a_warm_start_loads_kernels_without_numbas_numpy_support():
    """Loading cached kernels skips numba's target refresh, which imports its
    numpy implementations and, through their BLAS probe, scipy.linalg
    (about half of a warm start); the user's own jitted code still gets
    all of it when it compiles."""
    code = (
        "import sys, numpy as np, streamgru as sg\n"
        f"m = sg.load({WATCH_GRU!r})\n"
        "x = np.linspace(-1, 1, m.input_size).astype(np.float32)\n"
        "y = m.stream().step(x)\n"
        "assert np.array_equal(y, m.stream().process(x[None])[0])\n"
        "print('LINALG', 'scipy.linalg' in sys.modules, 'numba.np.arraymath' in sys.modules)\n"
        "from numba import njit\n"
        "dot = njit(lambda a, b: np.dot(a, b))\n"
        "assert dot(np.ones(3), np.ones(3)) == 3.0\n"
    )
    fresh(code)  # the first run may compile; the second starts warm
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                          capture_output=True, text=True)
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("LINALG")][0]
    assert line == "LINALG False False", line
