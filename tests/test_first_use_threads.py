"""Many threads making their first call at once: compiling, loading and
closing the entry points happens once, under a lock, and every thread gets
the right answer (never "compilation disabled", never a TypeError from a
dispatcher another thread had reopened).

Each run is a fresh interpreter, so no entry point is prepared before the
threads start; they wait on a barrier and then all make their first
checked step (a list input), process and StreamBatch.step together.
"""

import json
import subprocess
import sys
import textwrap

import pytest

RACE = textwrap.dedent(
    r"""
    import json, sys, threading
    import numpy as np
    import streamgru as sg

    dtype = np.dtype(sys.argv[1])
    rng = np.random.default_rng(0)
    m = sg.Model([
        sg.GRU.from_torch(rng.normal(size=(12, 3)), rng.normal(size=(12, 4))),
        sg.Dense(rng.normal(size=(2, 4)), rng.normal(size=2)),
    ], dtype=dtype)
    x = [0.5, -1.0, 0.25]
    X = rng.normal(size=(7, 3))
    XB = rng.normal(size=(3, 3)).astype(dtype)
    N = 8
    barrier = threading.Barrier(N)
    results, errors = [None] * N, []

    def first_use(i):
        barrier.wait()
        try:
            s, b = m.stream(), m.streams(3)
            results[i] = [s.step(x).tolist(), s.process(X).tolist(), b.step(XB).tolist(),
                          b.process(XB[:, None, :]).tolist()]
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=first_use, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s, b = m.stream(), m.streams(3)
    alone = [s.step(x).tolist(), s.process(X).tolist(), b.step(XB).tolist(),
             b.process(XB[:, None, :]).tolist()]
    print(json.dumps({"errors": errors, "same": all(r == alone for r in results)}))
    """
)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threads_making_their_first_call_at_once(dtype):
    for _ in range(2):
        res = subprocess.run([sys.executable, "-c", RACE, dtype], capture_output=True,
                             text=True, timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
        out = json.loads(res.stdout.strip().splitlines()[-1])
        assert out == {"errors": [], "same": True}, out
