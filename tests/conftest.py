"""Session set-up: the float kernels compiled once, before any test runs.

A float model's fast step is compiled for its own layer kinds unless the
variant for every kind (``streamgru warmup``) is in the kernel cache
(kernels/fastcall.py). The suite builds dozens of models with different
kinds, each of which would compile its own variant on an empty cache; one
warm-up per dtype, in two processes at once before the test processes
start, replaces all of them. The numbers are identical either way (both
variants run the same layer kernels); tests/test_compile.py checks the
per-model variants in fresh caches of their own.

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
    jobs = [subprocess.Popen([sys.executable, "-c",
                              f"from streamgru.kernels import warmup; warmup(({dtype!r},))"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for dtype in ("float32", "float64")]
    for job in jobs:
        _, err = job.communicate(timeout=1800)
        if job.returncode:
            raise RuntimeError(f"kernel warm-up failed:\n{err}")
