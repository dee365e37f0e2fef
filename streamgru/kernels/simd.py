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

Reduced-precision weights (``q``, a compile-time weight type: WQ_INT8,
WQ_FLOAT16, WQ_BFLOAT16 from layout.py; WQ_FLOAT is the model's own float)
use the same panels with the same L (a block is L stored values: 16 int8
bytes for a float32 model), stored as raw bytes inside ``w`` from a 64-byte
boundary (``pack_stored``). Each weight vector is loaded as ``<L x i8>`` or
``<L x i16>`` and widened in registers (int8: sign-extend and convert;
float16: ``fpext`` from half; bfloat16: zero-extend, shift left 16, bitcast
to float), so the products read a quarter or half of the bytes. For int8
the group's sums start at zero and are scaled once at the end (acc +=
scale * sum, one scale per output column); the scales are L-padded floats
of the model's dtype stored just before the panel (at ``w0 - nc``). Which
instructions that becomes is LLVM's choice for the host: on x86 with
AVX-512 ``vpmovsxbd``/``vcvtdq2ps``, F16C ``vcvtph2ps``; on aarch64
``sxtl``/``scvtf``/``fcvtl``.
"""

import numpy as np
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic
import llvmlite.ir as ir

from numba import njit

from .config import JIT_OPTIONS, jit_fast
from .layout import WQ_FLOAT, WQ_FLOAT16, WQ_INT8
# the packing side, in panels.py (re-exported: the packers and tests use it here)
from .panels import GROUP, VECTOR_BYTES, lanes, pack_panels, pack_stored, padded, unstored  # noqa: F401

# the drivers are inlined into each kernel: a call boundary would cost an
# atomic reference count inc/dec per array argument, and registers
_inline = njit(inline="always", **JIT_OPTIONS)

# unsigned subscripts: numba wraps negative signed indices with a select per
# element, which stops LLVM from vectorising
U = np.uint64

ROWS = 4   # vectors (time steps or streams) sharing each weight load in gemm


def _widen(builder, raw, q, vec):
    """The stored weight vector ``raw`` (``<L x i8>`` or ``<L x i16>``) as
    the float vector ``vec``, exactly."""
    L = vec.count
    if q == WQ_INT8:
        return builder.sitofp(raw, vec)
    if q == WQ_FLOAT16:
        return builder.fpext(builder.bitcast(raw, ir.VectorType(ir.HalfType(), L)), vec)
    # bfloat16: the top half of a float32's bits
    wide = builder.zext(raw, ir.VectorType(ir.IntType(32), L))
    bits = builder.shl(wide, ir.Constant(ir.VectorType(ir.IntType(32), L), [16] * L))
    f32 = builder.bitcast(bits, ir.VectorType(ir.FloatType(), L))
    return f32 if isinstance(vec.element, ir.FloatType) else builder.fpext(f32, vec)


def _group_kernel(R, NB):
    """Intrinsic: for r < R and the NB blocks of one group,
    acc[a0 + r*astride + c] += sum_j v[v0 + r*vstride + j] * W[j*NB*L + c],
    c < NB*L; R*NB vector accumulators live in registers over all j < nr.

    ``q`` (a literal) is the stored weight type. WQ_FLOAT: W starts at
    ``w[w0]``. Otherwise W's values start at stored element ``w0`` of ``w``'s
    bytes (seen as int8 or 16-bit elements), and for WQ_INT8 the sums are
    multiplied by the scales ``w[s0 + c]`` before they are added to acc."""

    @intrinsic
    def group(typingctx, q, acc, a0, astride, v, v0, vstride, w, w0, nr, s0):
        if not isinstance(q, types.IntegerLiteral):
            return None
        wq = q.literal_value

        def codegen(context, builder, sig, args):
            _, acc_, a0_, as_, v_, v0_, vs_, w_, w0_, nr_, s0_ = args
            ap = context.make_array(sig.args[1])(context, builder, acc_).data
            vp = context.make_array(sig.args[4])(context, builder, v_).data
            wp = context.make_array(sig.args[7])(context, builder, w_).data
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

            if wq == WQ_FLOAT:
                def wload(off):
                    return vload(wp, off)
            else:
                ety = ir.IntType(8 if wq == WQ_INT8 else 16)
                qp = builder.bitcast(wp, ety.as_pointer())
                qvptr = ir.VectorType(ety, L).as_pointer()

                def wload(off):
                    raw = builder.load(builder.bitcast(builder.gep(qp, [off]), qvptr),
                                       align=ety.width // 8)
                    return _widen(builder, raw, wq, vec)

            zero = ir.Constant(vec, [0.0] * L)
            arow = [builder.add(a0_, builder.mul(as_, c(r))) for r in range(R)]
            vrow = [builder.add(v0_, builder.mul(vs_, c(r))) for r in range(R)]
            slots = [[cgutils.alloca_once(builder, vec) for _ in range(NB)] for _ in range(R)]
            for r in range(R):
                for b in range(NB):
                    # int8 sums start at zero: they are scaled once, at the end
                    start = zero if wq == WQ_INT8 else vload(ap, builder.add(arow[r], c(b * L)))
                    builder.store(start, slots[r][b])

            def rows(j, sl):
                """Add input row j's products into the accumulators ``sl``."""
                wrow = builder.add(w0_, builder.mul(j, c(NB * L)))
                ws = [wload(builder.add(wrow, c(b * L))) for b in range(NB)]
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
            scales = ([vload(wp, builder.add(s0_, c(b * L))) for b in range(NB)]
                      if wq == WQ_INT8 else None)
            for r in range(R):
                for b in range(NB):
                    p = builder.bitcast(builder.gep(ap, [builder.add(arow[r], c(b * L))]), vptr)
                    total = builder.load(slots[r][b])
                    if scales is not None:
                        total = builder.call(fma, [total, scales[b], builder.load(p, align=align)])
                    builder.store(total, p, align=align)
            return context.get_dummy_value()

        return types.none(q, acc, a0, astride, v, v0, vstride, w, w0, nr, s0), codegen

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
def _stored(q, w, w0):
    """The offset ``w0`` (in ``w``'s elements) in elements of weight type ``q``."""
    if q == WQ_FLOAT:
        return w0
    if q == WQ_INT8:
        return w0 * w.itemsize
    return w0 * (w.itemsize // 2)


@_inline
def qproject(q, src, s0, ss, T, I, G, w, wx, bias, acc, a0):
    """acc[a0 + t*G + k] = bias[k] + sum_j src[s0 + t*ss + j] * W^T[j, k] for
    t < T, k < G: a tile's input projections (W^T panels of weight type
    ``q`` at ``w[wx:]``, the bias, padded to G, at ``w[bias:]``)."""
    for t in range(T):
        row = a0 + t * G
        for k in range(G):
            acc[U(row + k)] = w[U(bias + k)]
    qgemm(q, acc, a0, G, src, s0, ss, w, wx, I, G, T)


@_inline
def project(src, s0, ss, T, I, G, w, wx, bias, acc, a0):
    """``qproject`` of float weights."""
    qproject(WQ_FLOAT, src, s0, ss, T, I, G, w, wx, bias, acc, a0)


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
def _last_group(q, acc, a0, v, v0, w, w0, nr, rest, s0):
    """The product for a group of ``rest`` < 4 blocks (the panels' last)."""
    if rest == 3:
        _r1b3(q, acc, a0, 0, v, v0, 0, w, w0, nr, s0)
    elif rest == 2:
        _r1b2(q, acc, a0, 0, v, v0, 0, w, w0, nr, s0)
    elif rest == 1:
        _r1b1(q, acc, a0, 0, v, v0, 0, w, w0, nr, s0)


@_inline
def qgemv(q, acc, a0, v, v0, w, w0, nr, nc):
    """acc[a0 + k] += sum_{j < nr} v[v0 + j] * W^T[j, k] for k < nc, with W^T
    packed by ``pack_panels`` (weight type ``q``: ``pack_stored``) at
    ``w[w0:]``; nc is the padded column count."""
    L = 64 // w.itemsize
    nb = nc // L
    span = nr * L  # weights per block
    ws = _stored(q, w, w0)
    s0 = w0 - nc  # int8 scales (unused otherwise)
    b = 0
    while b + 4 <= nb:
        _r1b4(q, acc, a0 + b * L, 0, v, v0, 0, w, ws + b * span, nr, s0 + b * L)
        b += 4
    _last_group(q, acc, a0 + b * L, v, v0, w, ws + b * span, nr, nb - b, s0 + b * L)


@_inline
def qgemv_backward(q, acc, a0, v, v0, w, w0, nr, nc):
    """``qgemv`` visiting the weight groups last to first. A sequence
    alternates the two directions: the weights one step read last are the
    first the next step reads, while they are still in L1, so a W_hh up to
    about twice the L1's size is partly served from there."""
    L = 64 // w.itemsize
    nb = nc // L
    span = nr * L
    ws = _stored(q, w, w0)
    s0 = w0 - nc
    b = nb - nb % 4
    _last_group(q, acc, a0 + b * L, v, v0, w, ws + b * span, nr, nb - b, s0 + b * L)
    while b >= 4:
        b -= 4
        _r1b4(q, acc, a0 + b * L, 0, v, v0, 0, w, ws + b * span, nr, s0 + b * L)


@_inline
def qgemv_step(q, acc, a0, v, v0, w, w0, nr, nc, t):
    """The recurrent product of step ``t`` of a sequence: ``qgemv`` on even
    steps, ``qgemv_backward`` on odd ones (the same sums, bit for bit), so
    each step starts on the part of W_hh still in L1."""
    if t & 1:
        qgemv_backward(q, acc, a0, v, v0, w, w0, nr, nc)
    else:
        qgemv(q, acc, a0, v, v0, w, w0, nr, nc)


@_inline
def qgemm(q, acc, a0, astride, v, v0, vstride, w, w0, nr, nc, R):
    """``qgemv`` for R vectors at once: row r reads ``v[v0 + r*vstride:]`` and
    adds into ``acc[a0 + r*astride:]``. Rows go four at a time, so each
    weight vector loaded feeds four FMAs."""
    L = 64 // w.itemsize
    nb = nc // L
    span = nr * L
    ws = _stored(q, w, w0)
    s0 = w0 - nc
    r = 0
    while r + 4 <= R:
        ar = a0 + r * astride
        vr = v0 + r * vstride
        b = 0
        while b + 4 <= nb:
            _r4b4(q, acc, ar + b * L, astride, v, vr, vstride, w, ws + b * span, nr, s0 + b * L)
            b += 4
        rest = nb - b
        o, wb, sb = ar + b * L, ws + b * span, s0 + b * L
        if rest == 3:
            _r4b3(q, acc, o, astride, v, vr, vstride, w, wb, nr, sb)
        elif rest == 2:
            _r4b2(q, acc, o, astride, v, vr, vstride, w, wb, nr, sb)
        elif rest == 1:
            _r4b1(q, acc, o, astride, v, vr, vstride, w, wb, nr, sb)
        r += 4
    while r < R:
        qgemv(q, acc, a0 + r * astride, v, v0 + r * vstride, w, w0, nr, nc)
        r += 1


# the float forms (conv.py and every float kernel)
@_inline
def gemv(acc, a0, v, v0, w, w0, nr, nc):
    qgemv(WQ_FLOAT, acc, a0, v, v0, w, w0, nr, nc)


@_inline
def gemv_backward(acc, a0, v, v0, w, w0, nr, nc):
    qgemv_backward(WQ_FLOAT, acc, a0, v, v0, w, w0, nr, nc)


@_inline
def gemv_step(acc, a0, v, v0, w, w0, nr, nc, t):
    qgemv_step(WQ_FLOAT, acc, a0, v, v0, w, w0, nr, nc, t)


@_inline
def gemm(acc, a0, astride, v, v0, vstride, w, w0, nr, nc, R):
    qgemm(WQ_FLOAT, acc, a0, astride, v, v0, vstride, w, w0, nr, nc, R)


if config.DISABLE_JIT:  # pragma: no cover - exercised only with NUMBA_DISABLE_JIT=1

    def _unpack(q, w, w0, nr, nc):
        L = 64 // w.itemsize
        if q == WQ_FLOAT:
            flat = w[w0 : w0 + nr * nc]
        else:
            flat = unstored(q, w, w0, nr * nc, w.dtype)
            if q == WQ_INT8:
                flat = flat.reshape(-1, nr, L) * w[w0 - nc : w0].reshape(-1, 1, L)
        flat = flat.reshape(-1)
        cols = []
        for c0 in range(0, nc, GROUP * L):
            width = min(GROUP * L, nc - c0)
            cols.append(flat[c0 * nr : (c0 + width) * nr].reshape(nr, width))
        return np.concatenate(cols, axis=1)

    def qgemv(q, acc, a0, v, v0, w, w0, nr, nc):  # noqa: F811
        acc[a0 : a0 + nc] += v[v0 : v0 + nr] @ _unpack(q, w, w0, nr, nc)

    qgemv_backward = qgemv  # noqa: F811

    def qgemv_step(q, acc, a0, v, v0, w, w0, nr, nc, t):  # noqa: F811
        qgemv(q, acc, a0, v, v0, w, w0, nr, nc)

    def qgemm(q, acc, a0, astride, v, v0, vstride, w, w0, nr, nc, R):  # noqa: F811
        wt = _unpack(q, w, w0, nr, nc)
        for r in range(R):
            o = a0 + r * astride
            s = v0 + r * vstride
            acc[o : o + nc] += v[s : s + nr] @ wt

    def gemv(acc, a0, v, v0, w, w0, nr, nc):  # noqa: F811
        qgemv(WQ_FLOAT, acc, a0, v, v0, w, w0, nr, nc)

    gemv_backward = gemv  # noqa: F811

    def gemv_step(acc, a0, v, v0, w, w0, nr, nc, t):  # noqa: F811
        qgemv(WQ_FLOAT, acc, a0, v, v0, w, w0, nr, nc)

    def gemm(acc, a0, astride, v, v0, vstride, w, w0, nr, nc, R):  # noqa: F811
        qgemm(WQ_FLOAT, acc, a0, astride, v, v0, vstride, w, w0, nr, nc, R)
