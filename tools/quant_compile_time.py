"""Compile time of a first quantized model: a float32 GRU (I=16, H=64) +
Dense(4) model's first step and first process(), then the same model's with
its weights in each reduced type, in one process (CPU and wall seconds).

    STREAMGRU_CACHE_DIR=$(mktemp -d) python tools/quant_compile_time.py int8 float16 bfloat16

With an empty cache folder the float32 row is a cold start; each reduced
type then compiles only its own kernels (the float ones are not reused,
nor recompiled). With a warm cache every row loads in well under a second.
"""

import sys
import time

import numpy as np

import streamgru as sg


def main() -> None:
    rng = np.random.default_rng(0)
    H, I = 64, 16
    m = sg.Model([sg.GRU.from_torch(rng.normal(size=(3 * H, I)) / 4, rng.normal(size=(3 * H, H)) / 8),
                  sg.Dense(rng.normal(size=(4, H)) / 8)])
    x, X = np.ones(I, np.float32), np.ones((50, I), np.float32)
    for kind in ["float32"] + sys.argv[1:]:
        q = m if kind == "float32" else m.quantize(kind)
        w0, c0 = time.perf_counter(), time.process_time()
        s = q.stream()
        s.step(x)
        w1, c1 = time.perf_counter(), time.process_time()
        s.process(X)
        w2, c2 = time.perf_counter(), time.process_time()
        print(f"{kind:>9}: first step {c1 - c0:6.1f} s CPU ({w1 - w0:6.1f} s wall), "
              f"first process {c2 - c1:6.1f} s CPU ({w2 - w1:6.1f} s wall)", flush=True)


if __name__ == "__main__":
    main()
