#!/usr/bin/env python
"""Accuracy of reduced-precision weights: streamgru's int8 / float16 /
bfloat16 against PyTorch's and ONNX Runtime's dynamic quantization, in one run.

1. The benchmark models (tools/bench.py's grid, seeded torch GRU/LSTM
   layers): the largest absolute difference of the output from the float32
   model over 10,000 steps of standard-normal input, for each weight type of
   ``model.quantize``, for ``torch.ao.quantization.quantize_dynamic`` (int8)
   and for ``onnxruntime.quantization.quantize_dynamic`` (int8, per channel;
   the GRU as its MatMul cell, since ONNX Runtime has no quantized GRU
   operator: see tools/bench_peers.py).
2. The shipped demo model (streamgru/data/watch_gru.npz = weights/watch_gru.pt
   = weights/watch_gru.onnx) on the held-out stream: accuracy per sample and
   per recording (majority vote over the recording), as ``streamgru demo``
   computes them, for each weight type and each engine, and the largest logit
   difference from the float32 model. Issue 14's targets: int8 within 0.3
   points of float32 per sample, float16 and bfloat16 within 0.1.

streamgru streams with ``Stream.process`` over the whole sequence, which
equals ``step`` sample by sample within float rounding (tests/test_stream.py).

Prints two markdown tables ready for the README. Takes a minute or two.

Usage: python tools/quant_accuracy.py [--steps 10000] [--json docs/quant_accuracy.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("streamgru") is None:
    sys.path.insert(1, str(ROOT))  # run from a checkout

from bench_peers import (export_gru_cell_onnx, export_onnx, ort_quantize, ort_session,  # noqa: E402
                         torch_models, torch_quantized)

GRID = [("gru", 16, 16), ("gru", 16, 64), ("gru", 16, 128), ("gru", 16, 256), ("gru", 32, 256),
        ("lstm", 16, 64), ("lstm", 16, 128)]
WEIGHTS = ("int8", "float16", "bfloat16")
TOLERANCE_POINTS = {"int8": 0.3, "float16": 0.1, "bfloat16": 0.1}


def ort_cell_run(path: Path, X: np.ndarray, H: int, out: str = "hn") -> np.ndarray:
    """Step an ONNX cell model (x, h -> hn[, y]) over X, returning ``out`` per step."""
    sess = ort_session(path)
    names = [o.name for o in sess.get_outputs()]
    h = np.zeros((1, H), np.float32)
    ys = []
    for x in X:
        res = dict(zip(names, sess.run(None, {"x": x[None], "h": h})))
        h = res["hn"]
        ys.append(res[out][0])
    return np.array(ys)


def bench_model_errors(kind: str, I: int, H: int, steps: int, weights: list, tmp: Path) -> dict:
    """Max abs output error against the float32 model over ``steps`` steps."""
    import torch

    import streamgru as sg

    layer, cell = torch_models(kind, I, H)
    m = sg.from_torch(layer)
    X = np.random.default_rng(7).standard_normal((steps, I)).astype(np.float32)
    ref = m.stream().process(X).astype(np.float64)
    err = {wt: float(np.abs(m.quantize(wt).stream().process(X) - ref).max()) for wt in weights}
    with torch.inference_mode():
        yq = torch_quantized(layer)(torch.from_numpy(X).reshape(steps, 1, I))[0]
    err["torch int8"] = float(np.abs(yq.reshape(steps, H).numpy() - ref).max())
    if kind == "gru":
        cellf = tmp / "cell.onnx"
        export_gru_cell_onnx(*[getattr(cell, n).detach().numpy()
                               for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")], cellf)
        ort_quantize(cellf, tmp / "cell_q.onnx")
        yo = ort_cell_run(tmp / "cell_q.onnx", X, H)
    else:
        export_onnx(kind, layer, I, H, tmp / "m.onnx")
        ort_quantize(tmp / "m.onnx", tmp / "m_q.onnx")
        feeds = {"x": X.reshape(steps, 1, I), "h": np.zeros((1, 1, H), np.float32),
                 "c": np.zeros((1, 1, H), np.float32)}
        yo = ort_session(tmp / "m_q.onnx").run(None, feeds)[0].reshape(steps, H)
    err["ORT int8"] = float(np.abs(yo - ref).max())
    return err


def scores(logits: np.ndarray, labels: np.ndarray, recs: np.ndarray) -> dict:
    """Per-sample accuracy and per-recording vote, as ``streamgru demo`` counts them."""
    pred = logits.argmax(axis=1)
    votes = [np.bincount(pred[recs == r], minlength=logits.shape[1]).argmax() == labels[recs == r][0]
             for r in np.unique(recs)]
    return {"per_sample": float(np.mean(pred == labels)), "recordings_right": int(np.sum(votes)),
            "recordings": len(votes)}


def demo_accuracy(weights: list, tmp: Path) -> list:
    """(engine, weights, scores, max logit diff from float32) for the demo model."""
    import torch

    import streamgru as sg
    from streamgru.data import WATCH_GRU, WATCH_TEST

    with np.load(WATCH_TEST) as z:
        X, labels, recs = z["samples"].astype(np.float32), z["labels"], z["recording_ids"]
    m = sg.load(WATCH_GRU)
    ref = m.stream().process(X)
    out = [("streamgru", "float32", ref)]
    out += [("streamgru", wt, m.quantize(wt).stream().process(X)) for wt in weights]

    sd = torch.load(ROOT / "weights" / "watch_gru.pt", weights_only=True)
    gru, head = torch.nn.GRU(6, 48, batch_first=True), torch.nn.Linear(48, 7)
    gru.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("gru.")})
    head.load_state_dict({"weight": sd["head.weight"], "bias": sd["head.bias"]})
    net = torch.nn.Sequential()
    net.gru, net.head = gru, head  # quantize_dynamic swaps both children
    with torch.inference_mode():
        xt = torch.from_numpy(X)[None]
        out.append(("PyTorch", "float32", head(gru(xt)[0])[0].numpy()))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = torch.ao.quantization.quantize_dynamic(net, {torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8)
        out.append(("PyTorch quantize_dynamic", "int8", q.head(q.gru(xt)[0])[0].numpy()))

    onnx_file = ROOT / "weights" / "watch_gru.onnx"
    run = lambda p: ort_session(p).run(None, {"imu": X[None]})[0][0]  # noqa: E731
    out.append(("ONNX Runtime", "float32", run(onnx_file)))
    ort_quantize(onnx_file, tmp / "watch_q.onnx")
    out.append(("ONNX Runtime quantize_dynamic (GRU node stays float32, head int8)", "int8",
                run(tmp / "watch_q.onnx")))
    w = [sd[f"gru.{n}_l0"].numpy() for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    export_gru_cell_onnx(*w, tmp / "watch_cell.onnx", head=(sd["head.weight"].numpy(), sd["head.bias"].numpy()))
    ort_quantize(tmp / "watch_cell.onnx", tmp / "watch_cell_q.onnx")
    out.append(("ONNX Runtime quantize_dynamic, GRU as MatMul cell", "int8",
                ort_cell_run(tmp / "watch_cell_q.onnx", X, 48, out="y")))
    return [(eng, wt, scores(y, labels, recs), float(np.abs(y - ref).max())) for eng, wt, y in out]


def tables(errors: dict, demo: list, weights: list, steps: int) -> str:
    cols = list(weights) + ["torch int8", "ORT int8"]
    names = {"torch int8": "PyTorch int8 (quantize_dynamic)", "ORT int8": "ONNX Runtime int8 (quantize_dynamic)"}
    lines = [f"Largest |output - float32 model's output| over {steps:,} steps (standard-normal input):", "",
             "| model | " + " | ".join(f"streamgru {c}" if c in weights else names[c] for c in cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for (kind, I, H), err in errors.items():
        lines.append(f"| {kind.upper()} I={I} H={H} | " + " | ".join(f"{err[c]:.1e}" for c in cols) + " |")
    base = demo[0][2]["per_sample"]
    lines += ["", "Shipped demo model (GRU 6 -> 48 -> Linear 7) on the 77,198 held-out samples:", "",
              "| engine | weights | per sample | per recording | vs float32 (points) | largest logit difference | target |",
              "|---|---|---|---|---|---|---|"]
    for eng, wt, sc, diff in demo:
        delta = 100 * (sc["per_sample"] - base)
        tol = TOLERANCE_POINTS.get(wt) if eng == "streamgru" else None
        target = "–" if tol is None else f"within {tol} {'yes' if abs(delta) <= tol else 'NO'}"
        lines.append(f"| {eng} | {wt} | {100 * sc['per_sample']:.2f}% | {sc['recordings_right']}/{sc['recordings']} "
                     f"| {delta:+.2f} | {diff:.1e} | {target} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=10_000, help="steps per benchmark model")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    import torch

    import streamgru as sg

    torch.set_num_threads(1)
    weights = list(WEIGHTS) if hasattr(sg.Model, "quantize") else []
    if not weights:
        print("streamgru here has no Model.quantize: peers only", file=sys.stderr)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        errors = {}
        for kind, I, H in GRID:
            print(f"  {kind} I={I} H={H} ...", file=sys.stderr, flush=True)
            errors[(kind, I, H)] = bench_model_errors(kind, I, H, args.steps, weights, tmp)
        print("  demo model ...", file=sys.stderr, flush=True)
        demo = demo_accuracy(weights, tmp)
    print(tables(errors, demo, weights, args.steps))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "steps": args.steps, "errors": {f"{k}_{i}_{h}": v for (k, i, h), v in errors.items()},
            "demo": [{"engine": e, "weights": w, **s, "max_logit_diff": x} for e, w, s, x in demo]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
