"""``streamgru demo``: the shipped model over held-out sensor recordings."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TextIO

import numpy as np

from ..data import WATCH_GRU, WATCH_TEST
from .common import CLIError, load_model, percentiles_us

DEMO_MODEL = WATCH_GRU
DEMO_STREAM = WATCH_TEST
# the default of --limit, for scripts that run the README's command as it is (CI)
LIMIT_ENV = "STREAMGRU_DEMO_LIMIT"


def default_limit() -> int | None:
    """``--limit``'s default: $STREAMGRU_DEMO_LIMIT if set, else no limit."""
    value = os.environ.get(LIMIT_ENV, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise CLIError(f"${LIMIT_ENV} must be a whole number of samples, got {value!r}", 2) from None


def _compile_note(seconds: float) -> str:
    """What a slow first sample means: compiled and kept, or compiled in memory."""
    if seconds <= 1.0:
        return ""
    from ..kernels import cache

    if cache.writable():
        return f" (compiled: cached in {cache.folder()} from now on)"
    return " (compiled in memory: the cache folder is not writable; see `streamgru cache`)"


def _progress(stream: TextIO, text: str, live: bool) -> None:
    if live:
        stream.write("\r" + text + "\x1b[K")
    else:
        stream.write(text + "\n")
    stream.flush()


def cmd_demo(args: argparse.Namespace) -> int:
    model = load_model(args.model or DEMO_MODEL)
    path = args.data or DEMO_STREAM
    try:
        with np.load(path, allow_pickle=False) as z:
            samples = np.ascontiguousarray(z["samples"], dtype=model.dtype)
            labels = np.asarray(z["labels"], np.int64)
            recs = np.asarray(z["recording_ids"], np.int64)
            classes = [str(c) for c in z["classes"]] if "classes" in z.files else None
    except (OSError, KeyError, ValueError) as exc:
        raise CLIError(f"{path}: not a demo stream ({exc})", 1) from None
    if samples.ndim != 2 or samples.shape[1] != model.input_size or len(labels) != len(samples):
        raise CLIError(f"{path}: samples do not fit the model's {model.input_size} inputs", 1)
    if len(labels) and (labels.min() < 0 or labels.max() >= model.output_size):
        raise CLIError(f"{path}: labels must be class indices 0..{model.output_size - 1}", 1)
    limit = default_limit() if args.limit is None else args.limit
    if limit is not None:
        if limit < 1:
            raise CLIError(f"--limit must be at least 1, got {limit}", 2)
        samples, labels, recs = samples[:limit], labels[:limit], recs[:limit]
    if args.plot:
        from .demo_plot import check_plot_path

        check_plot_path(args.plot)  # before streaming: a missing matplotlib fails fast
    n = len(samples)
    names = classes or [str(k) for k in range(model.output_size)]
    err = sys.stderr
    live = err.isatty() if args.progress == "auto" else args.progress == "live"
    quiet = args.progress == "none"
    print(f"streamgru demo: {model!r}, {model.num_parameters:,} parameters", flush=True)
    print(f"streaming {n} samples ({n / 50:.0f} s of 50 Hz smartwatch data from "
          f"{len(np.unique(recs))} held-out recordings) one at a time", flush=True)

    y = np.empty(model.output_size, model.dtype)
    # load (or, on a fresh install, compile) the kernels before timing anything
    t0 = time.perf_counter()
    model.stream().step(samples[0], out=y)
    ready = time.perf_counter() - t0
    print(f"kernels ready in {ready:.2f} s{_compile_note(ready)}", flush=True)
    s = model.stream()
    pred = np.empty(n, np.int64)
    ns = np.empty(n, np.int64)
    clock = time.perf_counter_ns
    every = max(1, n // 20)
    next_report = time.monotonic() + 0.1
    for i in range(n):
        x = samples[i]
        t0 = clock()
        s.step(x, out=y)
        ns[i] = clock() - t0
        pred[i] = y.argmax()
        if quiet:
            continue
        # live: redraw about 10 times a second; piped: a line every 5 %
        if (live and time.monotonic() >= next_report) or (not live and (i + 1) % every == 0):
            next_report = time.monotonic() + 0.1
            acc = float(np.mean(pred[: i + 1] == labels[: i + 1]))
            _progress(
                err,
                f"{i + 1:>6}/{n}  t={(i + 1) / 50:7.1f}s  now: {names[pred[i]]:<5} "
                f"(true {names[labels[i]]:<5})  accuracy so far {acc:6.1%}",
                live,
            )
    if live and not quiet:
        err.write("\n")
        err.flush()

    per_step = float(np.mean(pred == labels))
    votes = [
        np.bincount(pred[recs == r], minlength=model.output_size).argmax() == labels[recs == r][0]
        for r in np.unique(recs)
    ]
    p50, p99, mx = percentiles_us(ns)
    print(f"accuracy per sample:            {per_step:.1%} ({int((pred == labels).sum())}/{n})")
    print(f"accuracy per recording (vote):  {float(np.mean(votes)):.1%} "
          f"({int(np.sum(votes))}/{len(votes)})")
    print(f"latency per sample (step):      p50 {p50:.1f} us   p99 {p99:.1f} us   "
          f"max {mx:.1f} us")
    print(f"total streaming time:           {ns.sum() / 1e9:.2f} s for {n} samples")
    if args.plot:
        from .demo_plot import plot

        plot(args.plot, samples, labels, pred, recs, names)
        print(f"plot:                           {args.plot}")
    return 0
