"""Compare two smoke.py outputs (x86 and arm64): per key, then the largest
difference per weight type. Exit 1 if float32 keys differ by more than TOL
(argv[3], default 1e-4) or reduced-precision keys by more than TOL_Q
(argv[4], default TOL): x86 may use other instructions (VNNI, F16C) than
the portable path, but both compute from the same stored weights."""
import sys

import numpy as np

a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
tol_q = float(sys.argv[4]) if len(sys.argv) > 4 else tol
worst: dict = {}
missing = sorted(set(a.files) ^ set(b.files))
for k in sorted(set(a.files) & set(b.files)):
    x, y = a[k].astype(np.float64), b[k].astype(np.float64)
    d = np.abs(x - y)
    print(f"{k:24s} shape={x.shape} max_abs_diff={d.max():.3e} "
          f"max_rel={np.max(d / np.maximum(np.abs(x), 1e-30)):.3e} bitwise_equal={np.array_equal(a[k], b[k])}")
    wt = k.split("_")[1]
    worst[wt] = max(worst.get(wt, 0.0), float(d.max()))
ok = not missing
for wt, v in worst.items():
    limit = tol if wt == "float32" else tol_q
    ok &= v <= limit
    print(f"max |x86 - arm64| {wt:9s} = {v:.3e} (tol {limit:g})")
if missing:
    print("keys in only one file:", ", ".join(missing))
sys.exit(0 if ok else 1)
