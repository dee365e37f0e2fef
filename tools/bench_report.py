"""tools/bench.py's tables, targets and chart, from the measured results."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench_peers import LABEL, PEERS
from bench_sys import FMA_PER_CYCLE, int8_macs_per_cycle

PATHS = ("step", "process", "batch")
# issue 14's one-sample targets name the GRU grid: H from 16 to 256 (I=16, and I=32 at H=256)
STEP_TARGET_KINDS = ("gru",)


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _ratio(peer, ours) -> str:
    return "–" if peer is None else f"{peer / ours:.1f}"


def targets(r: dict, wt: str, path: str, sgt: float) -> list:
    """(name, met) of issue 7's float32 targets and issue 14's int8 ones."""
    ort, torch_, rt = r.get(f"ort_{path}"), r.get(f"torch_{path}"), r["rtneural"]
    checks = []
    if wt == "float32":
        if path == "step":
            checks += [("10x ORT", ort and ort / sgt >= 10), ("15x torch", torch_ and torch_ / sgt >= 15)]
            if rt is not None:
                checks.append(("RTNeural+0.5us", sgt <= rt + 0.5))
        elif path == "process":
            checks.append(("1.5x ORT", ort and ort / sgt >= 1.5))
            if rt is not None:
                checks.append(("< RTNeural", sgt < rt))
        else:
            checks.append(("2x ORT", ort and ort / sgt >= 2))
    elif wt == "int8":
        lite, ov = r.get(f"litert_{path}"), r.get(f"ov_{path}")
        if path == "step" and r["kind"] in STEP_TARGET_KINDS:
            checks.append(("10x ORT", ort is not None and ort / sgt >= 10))
            if lite is not None:
                checks.append(("3x LiteRT", lite / sgt >= 3))
        if path == "batch" and ov is not None:
            checks.append(("1.5x OpenVINO", ov / sgt >= 1.5))
    return [(name, bool(ok)) for name, ok in checks]


def rows(results: list, ghz: float, flags: set, weights: list) -> list:
    """One row per config, path and weight type, with ratios to each peer."""
    out = []
    for r in results:
        label = f"{r['kind'].upper()} I={r['I']} H={r['H']}"
        flop = 2 * r["fma_per_sample"]
        for path in PATHS:
            for wt in weights:
                sgt = r.get(f"sg_{wt}_{path}")
                if sgt is None:
                    continue
                # float16/bfloat16 are widened to float32 in registers and summed with fp32
                # FMAs; int8 uses integer dot products (int8_macs_per_cycle)
                peak = 2 * FMA_PER_CYCLE * ghz
                dot = int8_macs_per_cycle(flags) if wt == "int8" else None
                one_stream = path != "batch"  # one stream reads every weight once per sample
                out.append({
                    "model": label, "path": path, "weights": wt, "sg_us": sgt,
                    "vs": {p: (r[f"{p}_{path}"] / sgt if r.get(f"{p}_{path}") else None) for p in PEERS},
                    "gflops": flop / sgt / 1e3, "peak_pct": 100 * flop / sgt / 1e3 / peak,
                    "dot_pct": None if dot is None else 100 * flop / sgt / 1e3 / (2 * dot * ghz),
                    "weight_gbs": r["weight_bytes"][wt] / sgt / 1e3 if one_stream else None,
                    "roof_gbs": r["read_roof_gbs"][wt],
                    "targets": targets(r, wt, path, sgt),
                })
    return out


def peer_table(results: list) -> str:
    """Each peer's microseconds per sample (per stream for batch)."""
    head = "| model | path | " + " | ".join(f"{LABEL[p]} µs" for p in PEERS) + " | RTNeural µs* |"
    lines = [head, "|" + "---|" * (3 + len(PEERS))]
    for r in results:
        for path in PATHS:
            rt = r["rtneural"] if path != "batch" else None
            lines.append(f"| {r['kind'].upper()} I={r['I']} H={r['H']} | {path} | "
                         + " | ".join(_fmt(r.get(f"{p}_{path}")) for p in PEERS) + f" | {_fmt(rt)} |")
    return "\n".join(lines)


def sg_table(rows_: list) -> str:
    """streamgru per weight type, with its ratio to each peer and its roofs."""
    head = ("| model | path | weights | streamgru µs | " + " | ".join(f"×{LABEL[p]}" for p in PEERS)
            + " | GFLOP/s (% fp32 FMA peak; int8: % int8 dot peak) | weights GB/s (% roof) | targets |")
    lines = [head, "|" + "---|" * (7 + len(PEERS))]
    for r in rows_:
        gbs = (f"{r['weight_gbs']:.0f} ({100 * r['weight_gbs'] / r['roof_gbs']:.0f}%)"
               if r["weight_gbs"] is not None else "–")
        tg = ", ".join(f"{n} {'yes' if ok else 'NO'}" for n, ok in r["targets"]) or "–"
        vn = "" if r["dot_pct"] is None else f"; {r['dot_pct']:.0f}% int8 dot"
        lines.append(
            f"| {r['model']} | {r['path']} | {r['weights']} | {r['sg_us']:.3f} | "
            + " | ".join("–" if r["vs"][p] is None else f"{r['vs'][p]:.1f}" for p in PEERS)
            + f" | {r['gflops']:.1f} ({r['peak_pct']:.0f}%{vn}) | {gbs} | {tg} |")
    return "\n".join(lines)


def memory_lines(results: list) -> list:
    """Issue 14's memory target: int8 weight matrices a quarter of float32's,
    as stored in the model and as packed by the kernels."""
    out = []
    for r in results:
        mb, mat, packed = r["model_bytes"], r["matrix_bytes"], r["packed_bytes"]
        if "int8" not in mb:
            continue
        kb = lambda b: "–" if b is None else f"{b / 1024:.1f} KB"  # noqa: E731
        line = (f"{r['kind'].upper()} {r['I']}/{r['H']}: stored (matrices, scales, biases) "
                + ", ".join(f"{wt} {kb(b)}" for wt, b in mb.items())
                + "; packed by the kernels " + ", ".join(f"{wt} {kb(b)}" for wt, b in packed.items()))
        ratio = mat["int8"] / mat["float32"]
        line += f"; int8 matrices {ratio:.3f}x float32's"
        if packed.get("int8") and packed.get("float32"):
            # a quarter of float32's packed matrices, plus int8's scales and the biases (floats)
            floats_f32, floats_q = mb["float32"] - mat["float32"], mb["int8"] - mat["int8"]
            quarter = (packed["float32"] - floats_f32) / 4 + floats_q
            ok = packed["int8"] <= 1.05 * quarter + 512  # the plan aligns each panel block to 64 bytes
            line += (f", packed {packed['int8'] / packed['float32']:.3f}x (a quarter, scales and biases "
                     f"aside: {'yes' if ok else 'NO'})")
        out.append(line)
    return out


def summary(rows_: list) -> list:
    """Each target name with how many rows meet it."""
    count: dict = {}
    for r in rows_:
        for name, ok in r["targets"]:
            key = (r["weights"], r["path"], name)
            met, n = count.get(key, (0, 0))
            count[key] = (met + ok, n + 1)
    return [f"{wt} {path} {name}: {met}/{n} rows" for (wt, path, name), (met, n) in count.items()]


SERIES = [("sg_float32", "streamgru float32", "#1b9e77"), ("sg_int8", "streamgru int8", "#66c2a5"),
          ("ort", "ONNX Runtime", "#7570b3"), ("torch", "PyTorch", "#d95f02"),
          ("ov", "OpenVINO (stateful)", "#e7298a"), ("litert", "LiteRT (XNNPACK)", "#e6ab02")]


def chart(results: list, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['kind'].upper()} {r['I']}/{r['H']}" for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.4))
    for ax, (p, name) in zip(axes, [("step", "step (one sample from Python)"),
                                    ("process", "process (per sample)"),
                                    ("batch", "batch (per stream)")]):
        series = [s for s in SERIES if any(r.get(f"{s[0]}_{p}") for r in results)]
        if p != "batch":
            series.append(("rtneural", "RTNeural (quoted)", "#999999"))
        xs = np.arange(len(results))
        width = 0.8 / len(series)
        for k, (key, lab, col) in enumerate(series):
            vals = [(r["rtneural"] if key == "rtneural" else r.get(f"{key}_{p}")) for r in results]
            ax.bar(xs + (k - (len(series) - 1) / 2) * width,
                   [np.nan if v is None else v for v in vals], width, label=lab, color=col)
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, fontsize=8, rotation=30, ha="right")
        ax.set_xlabel("cell I/H")
        ax.set_title(name)
        ax.set_ylabel("µs (lower is better)")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
