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
