"""``streamgru bench``, ``warmup`` and ``cache``: time a model, compile the kernels,
show or clear where they are cached."""

from __future__ import annotations

import argparse
import time

import numpy as np

from .common import PROG, CLIError, load_model, percentiles_us


def cmd_bench(args: argparse.Namespace) -> int:
    model = load_model(args.model, args.dtype, args.weights)
    if args.steps < 100 or args.chunk < 1 or args.repeats < 1:
        raise CLIError("--steps must be >= 100, --chunk and --repeats >= 1", 2)
    rng = np.random.default_rng(0)
    s = model.stream()
    xs = rng.standard_normal((args.steps, model.input_size)).astype(model.dtype)
    y = np.empty(model.output_size, model.dtype)
    for x in xs[:100]:  # compile or load the cached kernels outside the timing
        s.step(x, out=y)
    ns = np.empty(args.steps, np.int64)
    clock = time.perf_counter_ns
    for i, x in enumerate(xs):
        t0 = clock()
        s.step(x, out=y)
        ns[i] = clock() - t0
    p50, p99, mx = percentiles_us(ns)
    X = rng.standard_normal((args.chunk, model.input_size)).astype(model.dtype)
    Y = np.empty((args.chunk, model.output_size), model.dtype)
    s.process(X, out=Y)
    chunk_ns = np.empty(args.repeats, np.int64)
    for i in range(args.repeats):
        t0 = clock()
        s.process(X, out=Y)
        chunk_ns[i] = clock() - t0
    best = float(np.median(chunk_ns))
    print(f"model:   {model!r}, {model.num_parameters:,} parameters, "
          f"weights {model.weights_dtype} ({model.weights_nbytes:,} bytes)")
    print(f"step:    p50 {p50:.1f} us   p99 {p99:.1f} us   max {mx:.1f} us   "
          f"({args.steps} single-sample steps, out= given)")
    print(f"process: {args.chunk} samples per call, median {best / 1e6:.2f} ms = "
          f"{args.chunk / (best / 1e9):,.0f} samples/s   ({args.repeats} calls)")
    return 0


def cmd_warmup(args: argparse.Namespace) -> int:
    from ..kernels import warmup  # the kernels' own list of entry points and signatures

    t0 = time.perf_counter()
    took = warmup()
    each = ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
    print(f"numba cache ready (streamgru.kernels.warmup(): {each}) in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    """Where the compiled kernels are cached, how big the cache is; --clear empties it."""
    from ..kernels import cache

    if args.clear:
        print(f"removed {cache.clear()} files from {cache.base_dir()}")
    files, size = cache.usage()
    print(f"kernel cache for this install: {cache.folder()}")
    print(f"all streamgru kernel caches:   {cache.base_dir()} ({files} files, "
          f"{size / 1e6:.1f} MB)")
    print(f"writable: {'yes' if cache.can_write() else 'no (kernels compile in memory)'}")
    print(f"set {cache.ENV} to move it; `{PROG} cache --clear` empties it")
    return 0
