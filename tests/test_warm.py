"""``warmup``: each dtype compiled in a child process at once, and this
process never depending on the children (kernels/warm.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from streamgru.kernels import cache, calls, kinds, warm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _filled(dtype) -> bool:
    table = calls.TABLE[np.dtype(dtype)]
    return all(table[2 * code] for code in kinds.FLOAT_KINDS)


_FRESH = """
import json
from streamgru.kernels import warm

started = []
in_children = warm._in_children
warm._in_children = lambda dtypes: started.append(list(dtypes)) or in_children(dtypes)
took = warm.warmup()
print(json.dumps([started, took, warm.here(("float32", "float64"))]))
"""


def test_an_empty_cache_is_filled_by_one_child_per_dtype(tmp_path):
    # a fresh process on an empty cache: the children compile, the parent loads
    env = dict(os.environ, STREAMGRU_CACHE_DIR=str(tmp_path),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", _FRESH], env=env, capture_output=True, text=True,
                       check=False,
                       timeout=900)
    assert r.returncode == 0, r.stderr
    started, took, again = json.loads(r.stdout.strip().splitlines()[-1])
    assert started == ([["float32", "float64"]] if warm._cores() > 1 else [])
    assert set(took) == {"float32", "float64"}
    # the kernels were on disk by the time the parent came to them: it only loaded
    assert all(again[d] < 0.5 * took[d] for d in took), (took, again)
    assert r.stderr == ""


@pytest.mark.parametrize("child, why", [
    ("import sys; sys.exit('boom')", "it failed (boom)"),
    ("print('not json')", "its report was unreadable"),
    ("import json; print(json.dumps({{'folder': '/elsewhere', 'took': {{'{dtype}': 1.0}}}}))",
     "it used another kernel cache (/elsewhere)"),
])
def test_a_child_that_did_not_do_its_work_is_done_here(monkeypatch, capsys, child, why):
    monkeypatch.setattr(warm, "_CHILD", child)
    monkeypatch.setattr(warm, "_cores", lambda: 2)
    monkeypatch.setattr(cache, "_said", set())
    took = warm.warmup()
    assert set(took) == {"float32", "float64"} and all(t >= 0 for t in took.values())
    assert _filled(np.float32) and _filled(np.float64)
    err = capsys.readouterr().err
    for dtype in ("float32", "float64"):
        assert f"warming {dtype} in a child process: {why}; compiling it in this one" in err


def test_one_core_or_one_dtype_runs_no_child(monkeypatch):
    monkeypatch.setattr(warm, "_in_children", lambda d: pytest.fail("a child was started"))
    monkeypatch.setattr(warm, "_cores", lambda: 1)
    assert set(warm.warmup()) == {"float32", "float64"}
    monkeypatch.setattr(warm, "_cores", lambda: 8)
    assert set(warm.warmup(("float64",))) == {"float64"}


def test_a_read_only_cache_runs_no_child(monkeypatch):
    monkeypatch.setattr(warm, "_in_children", lambda d: pytest.fail("a child was started"))
    monkeypatch.setattr(cache, "writable", lambda: False)
    assert set(warm.warmup()) == {"float32", "float64"}
