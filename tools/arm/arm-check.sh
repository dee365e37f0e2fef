#!/bin/bash
# One-shot ARM (aarch64) check of streamgru from an x86-64 Debian machine, as root:
#   builds the arm64 bookworm root once (~6-7 min), then per run: copies the source,
#   installs it in the arm venv, runs the smoke test (float32 and every quantized weight type)
#   cold+warm under qemu-user and compares with the same smoke test run natively on x86
#   (exit 1 if max|diff| > TOL, or TOL_Q for quantized models).
#   RUN_TESTS=1 also runs a test subset under emulation (04-tests.sh).
# Env: SRC (default $(pwd)), ROOT ($W/root), TOL (1e-4), TOL_Q (quantized models, default TOL),
#      QEMU_CPU (e.g. cortex-a72)
set -euo pipefail
W=${ARM_WORK:-${TMPDIR:-/tmp}/sg-arm}; mkdir -p "$W"; export ARM_WORK=$W
cd "$(dirname "$0")"; HERE=$(pwd)   # $0 may be relative to the old directory
export SRC=${SRC:-$OLDPWD} ROOT=${ROOT:-$W/root}
TOL=${TOL:-1e-4}
TOL_Q=${TOL_Q:-$TOL}   # reduced-precision weights (int8, float16, bfloat16)
export TOL TOL_Q
./01-bootstrap.sh                       # no-op after the first time (marker $ROOT/.stage2-done)
./02-venv.sh                            # re-copies SRC and reinstalls it (wheels cached by pip)
# x86 reference from the same source
[ -x $W/x86venv/bin/python ] || { python3 -m venv $W/x86venv; $W/x86venv/bin/pip install -q numpy==2.4.6 numba==0.68.1; }
# pip builds in-tree: install from a copy, never from SRC itself (may be read-only)
rm -rf $W/sg-src; mkdir -p $W/sg-src
tar -C "$SRC" --exclude=__pycache__ --exclude='*.egg-info' --exclude=build --exclude=.git -cf - . | tar -C $W/sg-src -xf -
$W/x86venv/bin/pip install -q --force-reinstall --no-deps $W/sg-src
$W/x86venv/bin/python "$HERE"/smoke.py $W/out-x86.npz > $W/x86-smoke.log
./03-smoke.sh | tee $W/arm-smoke.log
grep -q '"fast_is_builtin": true' $W/arm-smoke.log || { echo "FAIL: fast path off on arm64"; exit 1; }
$W/x86venv/bin/python "$HERE"/compare.py $W/out-x86.npz $W/out-${TAG:-arm}.npz "$TOL" "$TOL_Q" | grep "max |x86"
if [ -n "${RUN_TESTS:-}" ]; then ./04-tests.sh; fi
