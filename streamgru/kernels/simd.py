"""Mat-vec and small mat-mat products on panel-packed weights, in SIMD registers.

A weight matrix ``W^T`` (nr rows of inputs, nc output columns) is packed by
``pack_panels`` into *panels*: the columns are cut into blocks of ``L`` (one
64-byte vector: 16 float32 or 8 float64; nc is padded with zero columns to a
multiple of L) and the blocks into groups of up to four; a group is stored
row after row, ``nr`` rows of its (up to 4L) contiguous weights. A product
then keeps one group's outputs in vector registers for the whole reduction:
per input element it broadcasts one value and does up to four vector FMAs
on weights read in one contiguous stream, and the accumulators touch memory
only once per group. The axpy form (outputs loaded and stored for every few
rows) cost twice the memory traffic, and its scalar tail ran for every size
that was not a multiple of 32.

numba does not expose vector types, so the group loops are ``@intrinsic``s
that emit LLVM vector IR (``<L x float>`` and ``llvm.fma``); on CPUs without
AVX-512 LLVM splits each vector into two. With ``NUMBA_DISABLE_JIT=1`` the
same functions run as numpy code.
"""

import numpy as np
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic
import llvmlite.ir as ir

from numba import njit

from .config import JIT_OPTIONS, jit_fast

# the drivers are inlined into each kernel: a call boundary would cost an
# atomic reference count inc/dec per array argument, and registers
_inline = njit(inline="always", **JIT_OPTIONS)

# unsigned subscripts: numba wraps negative signed indices with a select per
# element, which stops LLVM from vectorising
U = np.uint64

VECTOR_BYTES = 64
GROUP = 4  # blocks of L columns per panel group (four vector accumulators)
ROWS = 4   # vectors (time steps or streams) sharing each weight load in gemm


def lanes(dtype) -> int:
    """Vector length L for ``dtype``: 16 for float32, 8 for float64."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def padded(nc: int, dtype) -> int:
    """``nc`` rounded up to a multiple of the vector length."""
    L = lanes(dtype)
    return -(-nc // L) * L


def pack_panels(wt: np.ndarray, dtype) -> np.ndarray:
    """``wt`` (nr, nc), i.e. W^T, as flat panels (see the module docstring);
    nc padded with zero columns to ``padded(nc)``."""
    wt = np.asarray(wt, np.float64)
    nr, nc = wt.shape
    L = lanes(dtype)
    ncp = padded(nc, dtype)
    full = np.zeros((nr, ncp))
    full[:, :nc] = wt
    parts = []
    for c0 in range(0, ncp, GROUP * L):
        parts.append(full[:, c0 : c0 + GROUP * L].reshape(-1))
    return np.concatenate(parts) if parts else np.zeros(0)


def _group_kernel(R, NB):
    """Intrinsic: for r < R and the NB blocks of one group,
    acc[a0 + r*astride + c] += sum_j v[v0 + r*vstride + j] * w[w0 + j*NB*L + c],
    c < NB*L; R*NB vector accumulators live in registers over all j < nr."""

    @intrinsic
    def group(typingctx, acc, a0, astride, v, v0, vstride, w, w0, nr):
        def codegen(context, builder, sig, args):
            acc_, a0_, as_, v_, v0_, vs_, w_, w0_, nr_ = args
            ap = context.make_array(sig.args[0])(context, builder, acc_).data
            vp = context.make_array(sig.args[3])(context, builder, v_).data
            wp = context.make_array(sig.args[6])(context, builder, w_).data
            fty = ap.type.pointee
            bits = 32 if isinstance(fty, ir.FloatType) else 64
            L = VECTOR_BYTES * 8 // bits
            vec = ir.VectorType(fty, L)
            vptr = vec.as_pointer()
            i64 = ir.IntType(64)
            align = bits // 8
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.v{L}f{bits}"
            )
            splat = ir.Constant(ir.VectorType(ir.IntType(32), L), [0] * L)
            undef = ir.Constant(vec, ir.Undefined)
            zero32 = ir.Constant(ir.IntType(32), 0)

            def c(n):
                return ir.Constant(i64, n)

            def vload(ptr, off):
                return builder.load(builder.bitcast(builder.gep(ptr, [off]), vptr), align=align)

            arow = [builder.add(a0_, builder.mul(as_, c(r))) for r in range(R)]
            vrow = [builder.add(v0_, builder.mul(vs_, c(r))) for r in range(R)]
            slots = [[cgutils.alloca_once(builder, vec) for _ in range(NB)] for _ in range(R)]
            for r in range(R):
                for b in range(NB):
                    builder.store(vload(ap, builder.add(arow[r], c(b * L))), slots[r][b])

            def rows(j, sl):
                """Add input row j's products into the accumulators ``sl``."""
                wrow = builder.add(w0_, builder.mul(j, c(NB * L)))
                ws = [vload(wp, builder.add(wrow, c(b * L))) for b in range(NB)]
                for r in range(R):
                    x = builder.load(builder.gep(vp, [builder.add(vrow[r], j)]))
                    xv = builder.shuffle_vector(builder.insert_element(undef, x, zero32), undef, splat)
                    for b in range(NB):
                        builder.store(builder.call(fma, [ws[b], xv, builder.load(sl[r][b])]), sl[r][b])

            if R >= ROWS:
                with cgutils.for_range(builder, nr_) as loop:
                    rows(loop.index, slots)
            else:
                # one vector: even and odd rows into two sets of accumulators,
                # which halves the chain of dependent FMAs (the latency of a
                # step when the weights are few and sit in L1)
                odd = [[cgutils.alloca_once(builder, vec) for _ in range(NB)] for _ in range(R)]
                zero = ir.Constant(vec, [0.0] * L)
                for r in range(R):
                    for b in range(NB):
                        builder.store(zero, odd[r][b])
                with cgutils.for_range(builder, builder.ashr(nr_, c(1))) as loop:
                    j = builder.shl(loop.index, c(1))
                    rows(j, slots)
                    rows(builder.add(j, c(1)), odd)
                with builder.if_then(builder.icmp_signed("!=", builder.and_(nr_, c(1)), c(0))):
                    rows(builder.sub(nr_, c(1)), slots)
                for r in range(R):
                    for b in range(NB):
                        builder.store(builder.fadd(builder.load(slots[r][b]), builder.load(odd[r][b])),
                                      slots[r][b])
            for r in range(R):
                for b in range(NB):
                    p = builder.bitcast(builder.gep(ap, [builder.add(arow[r], c(b * L))]), vptr)
                    builder.store(builder.load(slots[r][b]), p, align=align)
            return context.get_dummy_value()

        return types.none(acc, a0, astride, v, v0, vstride, w, w0, nr), codegen

    return group


_K = {(R, NB): _group_kernel(R, NB) for R in (1, ROWS) for NB in range(1, GROUP + 1)}
_r1b1, _r1b2, _r1b3, _r1b4 = (_K[1, nb] for nb in range(1, 5))
_r4b1, _r4b2, _r4b3, _r4b4 = (_K[ROWS, nb] for nb in range(1, 5))


@_inline
def width(n, w):
    """``n`` rounded up to a whole number of vectors of ``w``'s dtype: the
    row stride of a product's outputs (products write whole vectors)."""
    L = 64 // w.itemsize
    return -(-n // L) * L


@_inline
def project(src, s0, ss, T, I, G, w, wx, bias, acc, a0):
    """acc[a0 + t*G + k] = bias[k] + sum_j src[s0 + t*ss + j] * W^T[j, k] for
    t < T, k < G: a tile's input projections (W^T panels at ``w[wx:]``, the
    bias, padded to G, at ``w[bias:]``)."""
    for t in range(T):
        row = a0 + t * G
        for k in range(G):
            acc[U(row + k)] = w[U(bias + k)]
    gemm(acc, a0, G, src, s0, ss, w, wx, I, G, T)


@jit_fast
def matvec_flat(acc, a0, v, v0, w, w0, nr, nc):
    """acc[a0 + k] += sum_j v[v0 + j] * w[w0 + j*nc + k] for k < nc, j < nr,
    on W^T stored plainly row-major (no padding: for outputs that must not
    be overrun, such as the LSTM projection written into the state).

    Rows are taken four at a time: each pass over ``acc`` then does four
    FMAs per load and store of it.
    """
    j = 0
    while j + 4 <= nr:
        x0, x1, x2, x3 = v[U(v0 + j)], v[U(v0 + j + 1)], v[U(v0 + j + 2)], v[U(v0 + j + 3)]
        r0 = w0 + j * nc
        r1 = r0 + nc
        r2 = r1 + nc
        r3 = r2 + nc
        for k in range(nc):
            acc[U(a0 + k)] += (
                x0 * w[U(r0 + k)] + x1 * w[U(r1 + k)] + x2 * w[U(r2 + k)] + x3 * w[U(r3 + k)]
            )
        j += 4
    while j < nr:
        xj = v[U(v0 + j)]
        r0 = w0 + j * nc
        for k in range(nc):
            acc[U(a0 + k)] += xj * w[U(r0 + k)]
        j += 1


@_inline
def _last_group(acc, a0, v, v0, w, w0, nr, rest):
    """The product for a group of ``rest`` < 4 blocks (the panels' last)."""
    if rest == 3:
        _r1b3(acc, a0, 0, v, v0, 0, w, w0, nr)
    elif rest == 2:
        _r1b2(acc, a0, 0, v, v0, 0, w, w0, nr)
    elif rest == 1:
        _r1b1(acc, a0, 0, v, v0, 0, w, w0, nr)


@_inline
def gemv(acc, a0, v, v0, w, w0, nr, nc):
    """acc[a0 + k] += sum_{j < nr} v[v0 + j] * W^T[j, k] for k < nc, with W^T
    packed by ``pack_panels`` at ``w[w0:]``; nc is the padded column count."""
    L = 64 // w.itemsize
    nb = nc // L
    span = nr * L  # weights per block
    b = 0
    while b + 4 <= nb:
        _r1b4(acc, a0 + b * L, 0, v, v0, 0, w, w0 + b * span, nr)
        b += 4
    _last_group(acc, a0 + b * L, v, v0, w, w0 + b * span, nr, nb - b)


@_inline
def gemv_backward(acc, a0, v, v0, w, w0, nr, nc):
    """``gemv`` visiting the weight groups last to first. A sequence
    alternates the two directions: the weights one step read last are the
    first the next step reads, while they are still in L1, so a W_hh up to
    about twice the L1's size is partly served from there."""
    L = 64 // w.itemsize
    nb = nc // L
    span = nr * L
    b = nb - nb % 4
    _last_group(acc, a0 + b * L, v, v0, w, w0 + b * span, nr, nb - b)
    while b >= 4:
        b -= 4
        _r1b4(acc, a0 + b * L, 0, v, v0, 0, w, w0 + b * span, nr)


@_inline
def gemv_step(acc, a0, v, v0, w, w0, nr, nc, t):
    """The recurrent product of step ``t`` of a sequence: ``gemv`` on even
    steps, ``gemv_backward`` on odd ones (the same sums, bit for bit), so
    each step starts on the part of W_hh still in L1."""
    if t & 1:
        gemv_backward(acc, a0, v, v0, w, w0, nr, nc)
    else:
        gemv(acc, a0, v, v0, w, w0, nr, nc)


@_inline
def gemm(acc, a0, astride, v, v0, vstride, w, w0, nr, nc, R):
    """``gemv`` for R vectors at once: row r reads ``v[v0 + r*vstride:]`` and
    adds into ``acc[a0 + r*astride:]``. Rows go four at a time, so each
    weight vector loaded feeds four FMAs."""
    L = 64 // w.itemsize
    nb = nc // L
    span = nr * L
    r = 0
    while r + 4 <= R:
        ar = a0 + r * astride
        vr = v0 + r * vstride
        b = 0
        while b + 4 <= nb:
            _r4b4(acc, ar + b * L, astride, v, vr, vstride, w, w0 + b * span, nr)
            b += 4
        rest = nb - b
        if rest == 3:
            _r4b3(acc, ar + b * L, astride, v, vr, vstride, w, w0 + b * span, nr)
        elif rest == 2:
            _r4b2(acc, ar + b * L, astride, v, vr, vstride, w, w0 + b * span, nr)
        elif rest == 1:
            _r4b1(acc, ar + b * L, astride, v, vr, vstride, w, w0 + b * span, nr)
        r += 4
    while r < R:
        gemv(acc, a0 + r * astride, v, v0 + r * vstride, w, w0, nr, nc)
        r += 1


if config.DISABLE_JIT:  # pragma: no cover - exercised only with NUMBA_DISABLE_JIT=1

    def _unpack(w, w0, nr, nc):
        L = 64 // w.itemsize
        cols = []
        for c0 in range(0, nc, GROUP * L):
            width = min(GROUP * L, nc - c0)
            cols.append(w[w0 + c0 * nr : w0 + (c0 + width) * nr].reshape(nr, width))
        return np.concatenate(cols, axis=1)

    def gemv(acc, a0, v, v0, w, w0, nr, nc):  # noqa: F811
        acc[a0 : a0 + nc] += v[v0 : v0 + nr] @ _unpack(w, w0, nr, nc)

    gemv_backward = gemv  # noqa: F811

    def gemv_step(acc, a0, v, v0, w, w0, nr, nc, t):  # noqa: F811
        gemv(acc, a0, v, v0, w, w0, nr, nc)

    def gemm(acc, a0, astride, v, v0, vstride, w, w0, nr, nc, R):  # noqa: F811
        wt = _unpack(w, w0, nr, nc)
        for r in range(R):
            o = a0 + r * astride
            s = v0 + r * vstride
            acc[o : o + nc] += v[s : s + nr] @ wt
