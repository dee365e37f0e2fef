"""Session set-up: the float kernels compiled once, before any test runs.

Every test process would otherwise compile the kernels its models use on
an empty cache, several processes the same ones at once. One ``warmup()``
(each dtype in a child process of its own, at once) before the test
processes start compiles every float kernel into the cache they all load.
tests/test_compile.py checks compiles from fresh caches of their own.

The tests run in parallel processes (pytest-xdist, ``-n auto`` in
setup.cfg): at most four, one per core.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_WORKERS = 4  # each worker imports torch, Keras, ONNX Runtime: about 1 GB


def pytest_xdist_auto_num_workers(config):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_WORKERS, cores or 1))


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("NUMBA_DISABLE_JIT") == "1":
        return  # the controller warmed the cache; or there is nothing to compile
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # in a process of its own (it compiles each dtype in a child, at once):
    # this controller process never imports numba
    job = subprocess.run([sys.executable, "-c", "from streamgru.kernels import warmup; warmup()"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
                         timeout=1800)
    if job.returncode:
        raise RuntimeError(f"kernel warm-up failed:\n{job.stderr}")
