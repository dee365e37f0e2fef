"""streamgru quickstart: build a small GRU + Dense model, stream samples
through it one at a time, snapshot and restore a stream's state, run many
streams at once, and save/load the model.

    python tools/quickstart.py
"""

import os
import tempfile
import time

import numpy as np

import streamgru as sg


def main() -> None:
    rng = np.random.default_rng(0)
    I, H, O = 4, 32, 2

    # A GRU in PyTorch's layout (gate rows r, z, n), then a Dense head.
    gru = sg.GRU.from_torch(
        rng.normal(size=(3 * H, I)) / np.sqrt(I),
        rng.normal(size=(3 * H, H)) / np.sqrt(H),
        rng.normal(size=3 * H) * 0.1,
        rng.normal(size=3 * H) * 0.1,
    )
    head = sg.Dense(rng.normal(size=(O, H)) / np.sqrt(H), np.zeros(O), "tanh")
    model = sg.Model([gru, head])
    print(f"model: {model}  ({model.num_parameters} parameters)")

    # A sensor signal, one sample at a time.
    t = np.arange(200)
    signal = np.stack([np.sin(t / 10), np.cos(t / 7), np.sin(t / 3), np.ones_like(t)], 1)
    signal = signal.astype(np.float32)

    s = model.stream()
    y = np.empty(O, np.float32)  # reused: step() writes into it, allocating nothing
    s.step(signal[0], out=y)  # the first call loads the compiled kernels
    s.reset()
    t0 = time.perf_counter()
    for x in signal:
        s.step(x, out=y)
    per_step = (time.perf_counter() - t0) / len(signal)
    print(f"after {len(signal)} samples: y = {np.array2string(y, precision=4)}"
          f"  ({per_step * 1e6:.1f} us per step, including Python's loop)")

    # Snapshot, run ahead, restore: the same inputs give the same outputs.
    snap = s.get_state()
    ahead = s.process(signal[:10])
    s.set_state(snap)
    again = s.process(signal[:10])
    print(f"restored state reproduces outputs: {np.array_equal(ahead, again)}")

    # Bad input is refused and the state is left as it was.
    bad = signal[0].copy()
    bad[1] = np.nan
    try:
        s.step(bad)
    except sg.InputError as exc:
        print(f"refused: {exc}")

    # Many independent streams sharing one set of weights.
    batch = model.streams(3)
    Y = batch.process(np.stack([signal, signal[::-1], signal * 0.5]))
    print(f"3 streams, last outputs:\n{np.array2string(Y[:, -1], precision=4)}")
    s.reset()
    single = s.process(signal)
    print(f"stream 0 of the batch equals a single stream: "
          f"{np.allclose(Y[0], single, atol=1e-6)}")

    # Native format: loads back bit-exact.
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.safetensors")
        sg.save(model, path)
        back = sg.load(path)
        print(f"saved and loaded {os.path.basename(path)}: identical = {back == model}")


if __name__ == "__main__":
    main()
