"""Per-sample time of Stream.step(x, out=y) and of Stream.process(X, out=Y)
for a float32 GRU with I=16 inputs and H=64 units (best of several repeats).

    python tools/time_step.py [--hidden 64] [--inputs 16] [--steps 20000] [--repeats 5]
                              [--weights float32 int8 float16 bfloat16] [--batch 1024]

``--weights`` times the same model with its weights stored in each type
(``Model.quantize``); ``--batch N`` adds ``StreamBatch.step`` of N streams.

A starting point for the speed work, not a benchmark against other
runtimes (tools/bench.py does that). Numbers are noisy on a shared machine:
the best of the repeats is the least disturbed.
"""

import argparse
import time

import numpy as np

import streamgru as sg


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--inputs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--weights", nargs="+", default=["float32"],
                    choices=["float32", "int8", "float16", "bfloat16"])
    ap.add_argument("--batch", type=int, default=0, help="also time StreamBatch.step of N streams")
    args = ap.parse_args()
    I, H, N = args.inputs, args.hidden, args.steps

    rng = np.random.default_rng(0)
    gru = sg.GRU.from_torch(
        rng.normal(size=(3 * H, I)) / np.sqrt(I), rng.normal(size=(3 * H, H)) / np.sqrt(H),
        rng.normal(size=3 * H) * 0.1, rng.normal(size=3 * H) * 0.1,
    )
    X = rng.normal(size=(N, I)).astype(np.float32)
    print(f"float32 GRU I={I} H={H}; best of {args.repeats} x {N} samples")
    for weights, name, layers in (
        (weights, name, layers) for weights in args.weights for name, layers in (
            ("GRU", [gru]),
            ("GRU + Dense(4)", [gru, sg.Dense(rng.normal(size=(4, H)) / np.sqrt(H))]),
        )
    ):
        model = sg.Model(layers, dtype=np.float32)
        if weights != "float32":
            model = model.quantize(weights)
        name = f"{weights} {name}"
        s = model.stream()
        y = np.empty(model.output_size, np.float32)
        Y = np.empty((N, model.output_size), np.float32)
        s.step(X[0], out=y)  # load / compile the kernels before timing
        s.process(X[:2], out=Y[:2])
        rows = list(X)  # row views made once, outside the timed loop

        def steps():
            step = s.step
            for x in rows:
                step(x, out=y)

        t_step = best_of(steps, args.repeats) / N
        t_proc = best_of(lambda: s.process(X, out=Y), args.repeats) / N
        line = (f"{name:>24}: step(x, out=y) {t_step * 1e6:7.2f} us/step   "
                f"process(X, out=Y) {t_proc * 1e6:7.3f} us/sample")
        if args.batch:
            b = model.streams(args.batch)
            XB = rng.normal(size=(args.batch, I)).astype(np.float32)
            YB = np.empty((args.batch, model.output_size), np.float32)
            b.step(XB, out=YB)
            reps = max(1, N // args.batch)

            def batch():
                for _ in range(reps):
                    b.step(XB, out=YB)

            t_batch = best_of(batch, args.repeats) / reps
            line += f"   StreamBatch({args.batch}).step {t_batch * 1e6:8.1f} us"
        print(line)


if __name__ == "__main__":
    main()
