"""``streamgru demo --plot FILE.png``: what the model does, as a picture.

For a few recordings (a different exercise each where possible): the wrist's
acceleration and rotation over time, and below it the class the model names
at each sample against the true class. matplotlib is an optional extra.
"""

from __future__ import annotations

import os

import numpy as np

from .common import CLIError

PIP = 'pip install matplotlib  (or: pip install "streamgru[plot]")'
RECORDINGS = 4


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise CLIError(f"--plot needs matplotlib, which is not installed: {PIP}", 2) from None
    return plt


def check_plot_path(path: str) -> None:
    """Fail before streaming if the plot cannot be written."""
    if os.path.splitext(path)[1].lower() not in (".png", ".pdf", ".svg"):
        raise CLIError(f"--plot {path}: use a .png, .pdf or .svg file name", 2)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CLIError(f"--plot {path}: no folder {folder}", 2)
    _pyplot()


def _pick(labels: np.ndarray, recs: np.ndarray) -> list[int]:
    """Up to RECORDINGS recording ids, one per true class first."""
    ids = list(dict.fromkeys(recs.tolist()))
    chosen, seen = [], set()
    for r in ids:
        c = int(labels[recs == r][0])
        if c not in seen:
            seen.add(c)
            chosen.append(r)
    chosen += [r for r in ids if r not in chosen]
    return chosen[:RECORDINGS]


def plot(path: str, samples: np.ndarray, labels: np.ndarray, pred: np.ndarray,
         recs: np.ndarray, names: list[str], rate: float = 50.0) -> None:
    """Write the figure to ``path``."""
    plt = _pyplot()
    chosen = _pick(labels, recs)
    fig, axes = plt.subplots(2, len(chosen), figsize=(4.2 * len(chosen), 5.6), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2]}, sharey="row")
    for k, r in enumerate(chosen):
        rows = recs == r
        t = np.arange(int(rows.sum())) / rate
        top, bottom = axes[0, k], axes[1, k]
        for j, name in enumerate(("ax", "ay", "az", "wx", "wy", "wz")[: samples.shape[1]]):
            top.plot(t, samples[rows, j], lw=0.8, label=name, ls="-" if j < 3 else ":")
        truth = names[int(labels[rows][0])]
        right = float(np.mean(pred[rows] == labels[rows]))
        top.set_title(f"recording {r}: {truth} ({right:.0%} of samples right)", fontsize=9)
        bottom.step(t, pred[rows], where="post", lw=1.2, label="model")
        bottom.step(t, labels[rows], where="post", lw=1.2, ls="--", color="k", label="true")
        bottom.set_xlabel("time (s)")
        bottom.set_yticks(range(len(names)), names, fontsize=8)
    axes[0, 0].set_ylabel("sensor (raw units)")
    axes[1, 0].set_ylabel("class")
    axes[0, -1].legend(fontsize=7, ncol=2, loc="upper right")
    axes[1, -1].legend(fontsize=7, loc="lower right")
    fig.suptitle("streamgru demo: the shipped GRU naming the exercise sample by sample", fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise CLIError(f"--plot {path}: cannot write ({exc.strerror or exc})", 1) from None
    finally:
        plt.close(fig)
