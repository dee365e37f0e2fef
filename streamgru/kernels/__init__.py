"""Numba kernels. Private: the public API is in streamgru/__init__.py."""


def warmup(dtypes=("float32", "float64")) -> dict:
    """Compile, or load from the disk cache, what streams of each float
    dtype in ``dtypes`` run: ``Stream.step``'s fast path, every entry point
    it does not replace and the kernel of every layer kind with float
    weights (reduced weight types compile on first use); return the
    seconds each dtype took.

    The first call after installing (or editing a kernel) compiles; later
    processes load the cache in a fraction of a second. Run it once at
    install or deploy time (``streamgru warmup``) so no user request pays
    for the compile.
    """
    import time

    import numpy as np

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
