"""streamgru smoke test, for comparing machines (x86-64 natively, aarch64 under qemu).

For the shipped demo model and for a seeded GRU and LSTM (I=16, H=64), each
in float32 and (where ``Model.quantize`` exists) int8, float16 and bfloat16
weights: ``process`` over N samples, a ``step`` loop over the same samples
(the fast path), the checked step (numba dispatcher) and a 3-stream
``StreamBatch``. Prints a JSON summary and saves every output (argv[1],
.npz, keys ``<model>_<weights>_<path>``) for tools/arm/compare.py.

Env knobs, to keep a cold run under emulation short (each model, weight
type and path compiles its own kernels): SMOKE_MODELS (default
"demo,gru,lstm"), SMOKE_WEIGHTS (default every type), SMOKE_PATHS (default
"process,step,checked,batch"; process always runs).
"""
import json
import os
import platform
import sys
import time

t0 = time.perf_counter()
import llvmlite.binding as llb  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402

import streamgru as sg  # noqa: E402
from streamgru.data import WATCH_GRU, WATCH_TEST  # noqa: E402
from streamgru.kernels import fastcall  # noqa: E402

t_import = time.perf_counter() - t0
N = 2000
WEIGHTS = ["float32"] + (["int8", "float16", "bfloat16"] if hasattr(sg.Model, "quantize") else [])
WEIGHTS = [w for w in WEIGHTS if w in os.environ.get("SMOKE_WEIGHTS", ",".join(WEIGHTS)).split(",")]
MODELS = os.environ.get("SMOKE_MODELS", "demo,gru,lstm").split(",")
PATHS = set(os.environ.get("SMOKE_PATHS", "process,step,checked,batch").split(",")) | {"process"}


def seeded(kind, I=16, H=64):
    """A model from seeded weights (no torch in the arm venv)."""
    rng = np.random.default_rng(5)
    G = 3 if kind == "gru" else 4
    w = [rng.uniform(-1, 1, s).astype(np.float32) / np.sqrt(H) for s in [(G * H, I), (G * H, H), (G * H,), (G * H,)]]
    layer = (sg.GRU if kind == "gru" else sg.LSTM).from_torch(*w)
    return sg.Model([layer, sg.Dense(rng.uniform(-1, 1, (5, H)).astype(np.float32) / np.sqrt(H))])


with np.load(WATCH_TEST) as d:
    X_demo = d["samples"][:N]
X_seed = np.random.default_rng(6).standard_normal((N, 16)).astype(np.float32)
models = {"demo": lambda: (sg.load(WATCH_GRU), X_demo), "gru": lambda: (seeded("gru"), X_seed),
          "lstm": lambda: (seeded("lstm"), X_seed)}
models = {k: v() for k, v in models.items() if k in MODELS}

outputs, info, times = {}, {}, {}
fast_builtin = {}
for name, (base, X) in models.items():
    for wt in WEIGHTS:
        m = base if wt == "float32" else base.quantize(wt)
        key = f"{name}_{wt}"
        t = time.perf_counter()
        s = m.stream()
        Yp = s.process(X)
        outputs[f"{key}_process"] = Yp
        if "step" in PATHS:
            s2 = m.stream()
            Ys = np.stack([s2.step(x).copy() for x in X])
            outputs[f"{key}_step"] = Ys
            info[f"{key}_process_vs_step"] = float(np.max(np.abs(Yp.astype(np.float64) - Ys)))
            fast_builtin[key] = type(s._fast).__name__ == "builtin_function_or_method"
        if "checked" in PATHS:
            # the checked (numba dispatcher) path, to compare with the fast path
            s3 = m.stream()
            out = np.empty(Yp.shape[1], Yp.dtype)
            Yc = np.stack([s3._step_checked(np.ascontiguousarray(x, m.dtype), out).copy() for x in X])
            outputs[f"{key}_checked"] = Yc
            info[f"{key}_checked_vs_process"] = float(np.max(np.abs(Yp.astype(np.float64) - Yc)))
        if "batch" in PATHS:
            b = m.streams(3)
            Yb = b.process(np.stack([X, X[::-1], X * 0.5], axis=0))
            outputs[f"{key}_batch"] = Yb
            info[f"{key}_batch0_vs_process"] = float(np.max(np.abs(Yb[0].astype(np.float64) - Yp)))
        times[key] = round(time.perf_counter() - t, 2)
        if wt != "float32" and f"{name}_float32_process" in outputs:
            info[f"{key}_vs_float32"] = float(np.max(np.abs(Yp.astype(np.float64) - outputs[f"{name}_float32_process"])))

summary = dict(
    machine=platform.machine(), python=sys.version.split()[0], numpy=np.__version__,
    numba=numba.__version__, llvm_host_cpu=llb.get_host_cpu_name(),
    llvm_triple=llb.get_process_triple(), weights=WEIGHTS, fast_layout_ok=fastcall._usable,
    # the key arm-check.sh greps for: every model's fast step is the builtin
    fast_is_builtin=bool(fast_builtin) and all(fast_builtin.values()), fast_builtin=fast_builtin,
    t_import=round(t_import, 2), seconds=times, **info,
)
try:
    feats = llb.get_host_cpu_features().flatten()
    summary["llvm_host_features_sample"] = ",".join(
        f for f in feats.split(",") if f[1:] in ("neon", "sve", "sve2", "fp-armv8", "dotprod", "i8mm", "bf16",
                                                 "fullfp16", "avx2", "avx512f", "avx512vnni", "avx512bf16",
                                                 "avx512fp16", "f16c", "fma"))
except Exception as e:  # noqa: BLE001
    summary["llvm_host_features_sample"] = repr(e)
print(json.dumps(summary, indent=1))
if len(sys.argv) > 1:
    np.savez(sys.argv[1], **outputs)
