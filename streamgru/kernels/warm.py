"""``warmup``: every kernel a float stream can run, compiled or loaded ahead of use.

With more than one dtype, a writable cache and more than one core, each
dtype compiles in a child process of its own, at once, and this process
then loads what they cached. numba compiles one function at a time per
process (its compiler lock), and the dtypes share no compiled code, so two
cores halve the wall time. The cache is safe to fill from several
processes: every save re-reads the index under a file lock (cache.py).
Whatever a child did not cache (it failed, or saw another cache folder)
this process compiles itself, so the result never depends on the children.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

_CHILD = (
    "import json, sys; sys.path.insert(0, {root!r}); "
    "from streamgru.kernels import cache, warm; "
    "took = warm.here(({dtype!r},)); "
    "print(json.dumps({{'folder': cache.folder(), 'took': took}}))"
)


def warmup(dtypes=("float32", "float64")) -> dict:
    """Compile, or load from the disk cache, what streams of each float
    dtype in ``dtypes`` run: ``Stream.step``'s fast path, every entry point
    it does not replace and the kernel of every layer kind with float
    weights (reduced weight types compile on first use); return the
    seconds each dtype took.

    The first call after installing (or editing a kernel) compiles, one
    child process per dtype at once where there are cores for it; later
    processes load the cache in a fraction of a second. Run it once at
    install or deploy time (``streamgru warmup``) so no user request pays
    for the compile.
    """
    dts = [np.dtype(d).name for d in dtypes]
    took = _in_children(dts) if _parallel(dts) else {}
    here_took = here(dts)  # loads what the children cached; compiles anything they did not
    return {d: took.get(d, 0.0) + here_took[d] for d in dts}


def here(dtypes) -> dict:
    """``warmup`` in this process only: the seconds each dtype took."""
    from . import calls, fastcall, network

    took = {}
    for dtype in dtypes:
        dt = np.dtype(dtype)
        t0 = time.perf_counter()
        fast = fastcall.prepare(dt)
        # with the fast path, Stream.step never calls the ``step`` entry point
        network.prepare(dt, [n for n in network.ENTRY_POINTS if not (fast and n == "step")])
        calls.prepare_all(dt)
        took[dt.name] = time.perf_counter() - t0
    return took


def _report(dtype: str, code: int, out: str, err: str, took: dict) -> str | None:
    """Record in ``took`` the seconds a child reported for ``dtype``; or say
    why its work does not count."""
    from . import cache

    if code:
        return f"it failed ({(err.strip().splitlines() or [f'exit status {code}'])[-1]})"
    try:
        said = json.loads(out.strip().splitlines()[-1])
        folder, seconds = said["folder"], float(said["took"][dtype])
    except (ValueError, IndexError, KeyError, TypeError):
        return "its report was unreadable"
    if folder != cache.folder():
        return f"it used another kernel cache ({folder})"
    took[dtype] = seconds
    return None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _parallel(dtypes) -> bool:
    from numba.core import config

    from . import cache

    return len(dtypes) > 1 and _cores() > 1 and not config.DISABLE_JIT and cache.writable()


def _in_children(dtypes) -> dict:
    """Run ``here`` for each dtype in a child process, as many at once as
    there are cores; the seconds each child reported for a cache folder
    that is this process's (others are ignored: this process compiles)."""
    from . import cache

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    took: dict = {}
    pending = list(dtypes)
    running: list = []
    try:
        while pending or running:
            while pending and len(running) < _cores():
                dtype = pending.pop(0)
                running.append((dtype, subprocess.Popen(
                    [sys.executable, "-c", _CHILD.format(root=root, dtype=dtype)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
            dtype, job = running[0]
            out, err = job.communicate()
            running.pop(0)
            why = _report(dtype, job.returncode, out, err, took)
            if why:
                cache.say(f"warm-{dtype}", f"warming {dtype} in a child process: {why}; "
                          "compiling it in this one")
    finally:
        for _, job in running:  # Ctrl-C, or an error: no child outlives this call
            job.kill()
            job.wait()
    return took
