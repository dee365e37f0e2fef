"""Train the shipped demo model: a GRU that names a shoulder exercise as it happens.

Data: the smartwatch exercise recordings shipped inside the ``seglearn`` wheel
(``seglearn/data/watch_dataset.npy``, BSD-3; Burns et al. 2018,
arXiv:1802.01489): 140 recordings of 7 shoulder exercises by 10 subjects,
6-axis accelerometer + gyroscope at 50 Hz. Subjects 1-7 train, 8-10 are held
out. The network (6 -> GRU(48) -> Linear(7)) classifies at every time step,
so a stream answers while the movement happens. The per-channel
normalisation is folded into the GRU's input weights, so raw sensor values
go in.

Writes (see weights/README.md):
    weights/watch_gru.pt          torch.save(model.state_dict())
    weights/watch_gru.onnx        torch.onnx.export of the same model
    streamgru/data/watch_gru.npz  native streamgru model (used by `streamgru demo`)
    streamgru/data/watch_test.npz held-out recordings as one stream
    weights/watch_sample.csv      a few hundred raw lines for the pipe example

Run (needs the `train` extra: ``pip install -e ".[train]"``, or
``pip install --no-deps seglearn==1.2.5`` since only its data file is read)::

    python tools/train_demo.py

It prints the accuracies that weights/README.md quotes. The run is seeded and
single-threaded with deterministic torch algorithms, so it reproduces on the
same torch version and CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(ROOT, "weights")
DATA = os.path.join(ROOT, "streamgru", "data")

TRAIN_SUBJECTS = (1, 2, 3, 4, 5, 6, 7)
TEST_SUBJECTS = (8, 9, 10)
RATE_HZ = 50


def load_watch() -> dict:
    """The watch dataset from the installed seglearn package, without importing
    seglearn (it would pull in scikit-learn for nothing: only the file is used)."""
    spec = importlib.util.find_spec("seglearn")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("seglearn is not installed: pip install --no-deps seglearn==1.2.5")
    path = os.path.join(spec.submodule_search_locations[0], "data", "watch_dataset.npy")
    # a pickled dict from a trusted, pinned package, read at training time only
    return np.load(path, allow_pickle=True).item()


def split(data: dict, subjects: tuple[int, ...]) -> tuple[list[np.ndarray], list[int]]:
    """Recordings of ``subjects``, ordered by subject then dataset index."""
    idx = sorted(
        (i for i in range(len(data["X"])) if int(data["subject"][i]) in subjects),
        key=lambda i: (int(data["subject"][i]), i),
    )
    return [np.asarray(data["X"][i], np.float64) for i in idx], [int(data["y"][i]) for i in idx]


# ----------------------------------------------------------------------------
# baseline


def window_features(x: np.ndarray, width: int) -> np.ndarray:
    """Per-channel mean and standard deviation of each non-overlapping window."""
    n = len(x) // width
    w = x[: n * width].reshape(n, width, x.shape[1])
    return np.concatenate([w.mean(axis=1), w.std(axis=1)], axis=1)


def nearest_centroid_baseline(train, test, width: int = 2 * RATE_HZ) -> float:
    """Accuracy of a nearest-centroid classifier on standardised 2-second
    window features (mean and std of each channel)."""
    def feats(recs):
        f = [window_features(x, width) for x, _ in recs]
        y = [np.full(len(fi), label) for fi, (_, label) in zip(f, recs)]
        return np.concatenate(f), np.concatenate(y)

    ftr, ytr = feats(train)
    fte, yte = feats(test)
    mu, sd = ftr.mean(axis=0), ftr.std(axis=0)
    ftr, fte = (ftr - mu) / sd, (fte - mu) / sd
    classes = np.unique(ytr)
    centroids = np.stack([ftr[ytr == c].mean(axis=0) for c in classes])
    dist = ((fte[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return float(np.mean(classes[dist.argmin(axis=1)] == yte))


# ----------------------------------------------------------------------------
# model


def build_net(torch, hidden: int, n_classes: int):
    nn = torch.nn

    class WatchGRU(nn.Module):
        """Raw 6-axis samples (batch, time, 6) -> class logits at every step."""

        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(6, hidden, batch_first=True)
            self.head = nn.Linear(hidden, n_classes)

        def forward(self, x):
            h, _ = self.gru(x)
            return self.head(h)

    return WatchGRU()


def sample_windows(rng, recs, length: int, batch: int):
    """``batch`` windows of ``length`` samples starting at a random point of a
    random recording and running on into other random recordings of the same
    subject-less pool, so the network learns to switch when the exercise
    changes (the shipped stream is the held-out recordings back to back)."""
    xs = np.empty((batch, length, 6), np.float32)
    ys = np.empty((batch, length), np.int64)
    for b in range(batch):
        filled = 0
        r = int(rng.integers(len(recs)))
        start = int(rng.integers(len(recs[r][0])))
        while filled < length:
            x, label = recs[r]
            take = min(length - filled, len(x) - start)
            xs[b, filled : filled + take] = x[start : start + take]
            ys[b, filled : filled + take] = label
            filled += take
            r, start = int(rng.integers(len(recs))), 0
    return xs, ys


def fold_normalisation(net, mean: np.ndarray, std: np.ndarray) -> None:
    """Make the GRU take raw values: W (x - m) / s + b == (W / s) x + (b - W m / s)."""
    import torch

    with torch.no_grad():
        w = net.gru.weight_ih_l0
        scale = torch.as_tensor(1.0 / std, dtype=w.dtype)
        shift = torch.as_tensor(mean / std, dtype=w.dtype)
        net.gru.bias_ih_l0 -= w @ shift
        w *= scale


def accuracies(pred: np.ndarray, labels: np.ndarray, rec_ids: np.ndarray) -> tuple[float, float]:
    """(per time step, by majority vote over each recording)."""
    per_step = float(np.mean(pred == labels))
    votes = []
    for r in np.unique(rec_ids):
        sel = rec_ids == r
        votes.append(np.bincount(pred[sel], minlength=7).argmax() == labels[sel][0])
    return per_step, float(np.mean(votes))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=48)
    ap.add_argument("--steps", type=int, default=1200, help="optimiser steps")
    ap.add_argument("--window", type=int, default=300, help="training window, samples")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv-lines", type=int, default=400)
    ap.add_argument("--weights-dir", default=WEIGHTS, help="where the .pt/.onnx/.csv go")
    ap.add_argument("--data-dir", default=DATA, help="where the demo's .npz files go")
    args = ap.parse_args(argv)
    weights_dir, data_dir = args.weights_dir, args.data_dir

    import torch

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)

    data = load_watch()
    n_classes = len(data["y_labels"])
    xtr, ytr = split(data, TRAIN_SUBJECTS)
    xte, yte = split(data, TEST_SUBJECTS)
    train = list(zip(xtr, ytr))
    test = list(zip(xte, yte))

    cat = np.concatenate(xtr)
    mean, std = cat.mean(axis=0), cat.std(axis=0)
    normed = [((x - mean) / std, y) for x, y in train]

    net = build_net(torch, args.hidden, n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    t0 = time.time()
    for step in range(1, args.steps + 1):
        xb, yb = sample_windows(rng, normed, args.window, args.batch)
        logits = net(torch.from_numpy(xb))
        loss = loss_fn(logits.reshape(-1, n_classes), torch.from_numpy(yb).reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == args.steps:
            print(f"step {step}/{args.steps}  loss {loss.item():.4f}  {time.time() - t0:.0f}s",
                  flush=True)
    train_seconds = time.time() - t0

    net.eval()
    fold_normalisation(net, mean, std)

    # the held-out recordings back to back: one stream, as the demo runs it
    samples = np.concatenate(xte).astype(np.float32)
    labels = np.concatenate([np.full(len(x), y) for x, y in test]).astype(np.int64)
    rec_ids = np.concatenate([np.full(len(x), i) for i, x in enumerate(xte)]).astype(np.int64)
    with torch.no_grad():
        logits = net(torch.from_numpy(samples)[None])[0].numpy()
    torch_step, torch_rec = accuracies(logits.argmax(axis=1), labels, rec_ids)

    os.makedirs(weights_dir, exist_ok=True)
    os.makedirs(data_dir, exist_ok=True)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    torch.save(state, os.path.join(weights_dir, "watch_gru.pt"))
    with warnings.catch_warnings():
        # the TorchScript exporter is the one that writes a plain ONNX GRU node
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.from_numpy(samples[None, :100]),),
            os.path.join(weights_dir, "watch_gru.onnx"),
            dynamo=False,
            input_names=["imu"],
            output_names=["logits"],
            # batch fixed at 1 (a stream), time free
            dynamic_axes={"imu": {1: "time"}, "logits": {1: "time"}},
            opset_version=17,
        )

    import streamgru as sg

    model = sg.Model(
        [
            sg.GRU.from_torch(*(state[f"gru.{n}_l0"].numpy() for n in
                                ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))),
            sg.Dense(state["head.weight"].numpy(), state["head.bias"].numpy()),
        ],
        metadata={
            "source": "tools/train_demo.py (PyTorch nn.GRU + nn.Linear)",
            "task": "smartwatch shoulder-exercise recognition, 50 Hz, raw ax ay az wx wy wz in",
            "classes": [str(c) for c in data["y_labels"]],
            "inputs": [str(c) for c in data["X_labels"]],
        },
    )
    sg.save(model, os.path.join(data_dir, "watch_gru.npz"))
    np.savez_compressed(
        os.path.join(data_dir, "watch_test.npz"),
        samples=samples,
        labels=labels,
        recording_ids=rec_ids,
        classes=np.array([str(c) for c in data["y_labels"]]),
        channels=np.array([str(c) for c in data["X_labels"]]),
    )
    # the first recording's opening lines, raw, with a header
    with open(os.path.join(weights_dir, "watch_sample.csv"), "w") as f:
        f.write(",".join(str(c) for c in data["X_labels"]) + "\n")
        for row in samples[: args.csv_lines]:
            f.write(",".join(repr(float(v)) for v in row) + "\n")

    sg_pred = model.stream().process(samples).argmax(axis=1)
    sg_step, sg_rec = accuracies(sg_pred, labels, rec_ids)
    baseline = nearest_centroid_baseline(train, test)

    print(f"trained {args.steps} steps in {train_seconds:.0f}s; parameters {model.num_parameters}")
    print(f"held-out samples {len(samples)}, recordings {len(xte)}")
    print(f"torch     per-step accuracy {torch_step:.4f}  per-recording (majority) {torch_rec:.4f}")
    print(f"streamgru per-step accuracy {sg_step:.4f}  per-recording (majority) {sg_rec:.4f}")
    print(f"baseline  nearest centroid on 2 s windows: {baseline:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
