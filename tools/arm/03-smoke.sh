#!/bin/bash
# Run smoke.py in the arm64 root (cold numba cache, then warm) and compare with x86 output.
set -euo pipefail
W=${ARM_WORK:-${TMPDIR:-/tmp}/sg-arm}; mkdir -p "$W"; export ARM_WORK=$W
ROOT=${ROOT:-$W/root}
OUT=${OUT:-$W}
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT
CH="env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 ${QEMU_CPU:+QEMU_CPU=$QEMU_CPU} ${EXTRA_ENV:-} /usr/sbin/chroot $ROOT"
TAG=${TAG:-arm}
if [ "${COLD:-1}" = 1 ]; then   # COLD=0 keeps the numba cache
  find "$ROOT/venv/lib/python3.11/site-packages/streamgru" -name '*.nb[ic]' -delete
fi
echo "== cold (first compile) =="; /usr/bin/time -f 'wall %e s, maxrss %M KB' $CH /venv/bin/python /smoke.py /out-$TAG-cold.npz
echo "== warm (numba cache) ==";   /usr/bin/time -f 'wall %e s, maxrss %M KB' $CH /venv/bin/python /smoke.py /out-$TAG.npz
cp "$ROOT/out-$TAG-cold.npz" "$ROOT/out-$TAG.npz" "$OUT/"
echo "== compare with x86 =="
# every key; arm-check.sh applies the tolerances
$W/x86venv/bin/python "$(dirname "$0")"/compare.py $W/out-x86.npz "$OUT/out-$TAG.npz" "${TOL:-1e-4}" "${TOL_Q:-${TOL:-1e-4}}" || true
