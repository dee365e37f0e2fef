"""The model-level post-op: residual input skip and output gain.

After the last layer has written T rows of ``dst``, each row becomes

    y = gain * (y + x[a : a + O])      with the skip (meta[H_SKIP] = a >= 0)
    y = gain * y                       without it

(the add first, then the gain: AIDA-X's order). ``meta[H_GAIN]`` is the
offset of ``gain`` in ``w``, or -1 for a gain of 1. A model with neither
never calls this.
"""

from .config import jit
from .layout import H_GAIN, H_OUTPUT, H_SKIP
from .simd import U


@jit
def apply(src, s0, ss, dst, d0, ds, T, w, meta):
    """Apply the skip and gain to T rows of ``dst`` (row t at ``d0 + t*ds``),
    whose inputs are the rows of ``src`` (row t at ``s0 + t*ss``)."""
    O = meta[H_OUTPUT]
    a = meta[H_SKIP]
    gp = meta[H_GAIN]
    for t in range(T):
        o = d0 + t * ds
        if a >= 0:
            x = s0 + t * ss + a
            for k in range(O):
                dst[U(o + k)] += src[U(x + k)]
        if gp >= 0:
            g = w[gp]
            for k in range(O):
                dst[U(o + k)] *= g
