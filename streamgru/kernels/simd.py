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

numba does not expose vector types, so the products (``qgemv``, ``qgemm``,
``qproject`` and their float forms) are ``@intrinsic``s that emit LLVM
vector IR (``<L x float>`` and ``llvm.fma``) straight into the kernel that
calls them; on CPUs without AVX-512 LLVM splits each vector into two. Being
intrinsics, they cost the kernels no numba typing or IR inlining (as numba
functions inlined with ``inline="always"`` they took most of a first
compile). With ``NUMBA_DISABLE_JIT=1`` the same functions run as numpy code.

Reduced-precision weights (``q``, a compile-time weight type: WQ_INT8,
WQ_FLOAT16, WQ_BFLOAT16 from layout.py; WQ_FLOAT is the model's own float)
use the same panels with the same L (a block is L stored values), stored as
raw bytes inside ``w`` from a 64-byte boundary (``pack_stored``). float16
and bfloat16 vectors are loaded as ``<L x i16>`` and widened in registers
(``fpext`` from half; zero-extend, shift left 16, bitcast to float), so the
products read half the bytes: on x86 F16C ``vcvtph2ps``, on aarch64
``fcvtl``. int8 products are integer dot products (qdot.py: the inputs
rounded to int16 per call, int32 sums, one scale per output column, the
scales stored as L-padded floats of the model's dtype just before the
panel, at ``w0 - nc``).
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
from . import qdot
from .panels import GROUP, VECTOR_BYTES, lanes, pack_panels, pack_stored, padded  # noqa: F401

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


class _Operands:
    """What a product's code needs, read off an intrinsic's arguments: the
    data pointers of acc, v and w, the float type, the vector type and its
    length L, and the weight type ``wq``."""

    def __init__(self, context, builder, wq, acc_ty, acc, v_ty, v, w_ty, w):
        self.builder = builder
        self.wq = wq
        self.ap = context.make_array(acc_ty)(context, builder, acc).data
        self.vp = context.make_array(v_ty)(context, builder, v).data
        self.wp = context.make_array(w_ty)(context, builder, w).data
        fty = self.ap.type.pointee
        self.bits = 32 if isinstance(fty, ir.FloatType) else 64
        self.L = VECTOR_BYTES * 8 // self.bits
        self.vec = ir.VectorType(fty, self.L)
        self.fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.vec, [self.vec] * 3),
            f"llvm.fma.v{self.L}f{self.bits}")
        # int8 products are integer dot products (qdot.py), for this CPU
        self.qdot = qdot.isa(context) if wq == WQ_INT8 else None

    def c(self, n):
        return ir.Constant(ir.IntType(64), n)

    def vload(self, ptr, off):
        b = self.builder
        return b.load(b.bitcast(b.gep(ptr, [off]), self.vec.as_pointer()), align=self.bits // 8)

    def wload(self, off):
        """The weight vector at stored element ``off`` of w, as floats."""
        if self.wq == WQ_FLOAT:
            return self.vload(self.wp, off)
        b = self.builder
        ety = ir.IntType(8 if self.wq == WQ_INT8 else 16)
        qp = b.bitcast(self.wp, ety.as_pointer())
        raw = b.load(b.bitcast(b.gep(qp, [off]), ir.VectorType(ety, self.L).as_pointer()),
                     align=ety.width // 8)
        return _widen(b, raw, self.wq, self.vec)

    def stored(self, w0):
        """The offset ``w0`` (in w's float elements) in stored elements."""
        if self.wq == WQ_FLOAT:
            return w0
        per = self.bits // (8 if self.wq == WQ_INT8 else 16)
        return self.builder.mul(w0, self.c(per))


def _emit_group(o, R, NB, a0, astride, v0, vstride, w0, nr):
    """Code for, r < R and the NB blocks of one group:
    acc[a0 + r*astride + c] += sum_j v[v0 + r*vstride + j] * W[j*NB*L + c],
    c < NB*L, with R*NB vector accumulators held in registers over all
    j < nr. W starts at stored element ``w0`` (float16, bfloat16 or the
    model's float: int8 goes to qdot.py)."""
    b, c, L = o.builder, o.c, o.L
    undef = ir.Constant(o.vec, ir.Undefined)
    splat = ir.Constant(ir.VectorType(ir.IntType(32), L), [0] * L)
    zero32 = ir.Constant(ir.IntType(32), 0)
    zero = ir.Constant(o.vec, [0.0] * L)
    arow = [b.add(a0, b.mul(astride, c(r))) for r in range(R)]
    vrow = [b.add(v0, b.mul(vstride, c(r))) for r in range(R)]
    slots = [[cgutils.alloca_once(b, o.vec) for _ in range(NB)] for _ in range(R)]
    for r in range(R):
        for k in range(NB):
            b.store(o.vload(o.ap, b.add(arow[r], c(k * L))), slots[r][k])

    def rows(j, sl):
        """Add input row j's products into the accumulators ``sl``."""
        wrow = b.add(w0, b.mul(j, c(NB * L)))
        ws = [o.wload(b.add(wrow, c(k * L))) for k in range(NB)]
        for r in range(R):
            x = b.load(b.gep(o.vp, [b.add(vrow[r], j)]))
            xv = b.shuffle_vector(b.insert_element(undef, x, zero32), undef, splat)
            for k in range(NB):
                b.store(b.call(o.fma, [ws[k], xv, b.load(sl[r][k])]), sl[r][k])

    if R >= ROWS:
        with cgutils.for_range(b, nr) as loop:
            rows(loop.index, slots)
    else:
        # one vector: even and odd rows into two sets of accumulators, which
        # halves the chain of dependent FMAs (the latency of a step when the
        # weights are few and sit in L1)
        odd = [[cgutils.alloca_once(b, o.vec) for _ in range(NB)] for _ in range(R)]
        for r in range(R):
            for k in range(NB):
                b.store(zero, odd[r][k])
        with cgutils.for_range(b, b.ashr(nr, c(1))) as loop:
            j = b.shl(loop.index, c(1))
            rows(j, slots)
            rows(b.add(j, c(1)), odd)
        with b.if_then(b.icmp_signed("!=", b.and_(nr, c(1)), c(0))):
            rows(b.sub(nr, c(1)), slots)
        for r in range(R):
            for k in range(NB):
                b.store(b.fadd(b.load(slots[r][k]), b.load(odd[r][k])), slots[r][k])
    for r in range(R):
        for k in range(NB):
            p = b.bitcast(b.gep(o.ap, [b.add(arow[r], c(k * L))]), o.vec.as_pointer())
            b.store(b.load(slots[r][k]), p, align=o.bits // 8)


class _Panels:
    """Where a product's blocks are: for W^T's panels at ``w[w0:]`` (nr rows,
    nc padded columns), the number of whole groups of four blocks
    (``groups``), the blocks left in the last group (``rest``) and its first
    block (``tail``)."""

    def __init__(self, o, w0, nr, nc):
        b, c = o.builder, o.c
        self.o = o
        nb = b.sdiv(nc, c(o.L))
        if o.wq == WQ_INT8:  # rows in pairs (qdot.py): nr padded to even
            nr = b.and_(b.add(nr, c(1)), c(-2))
        self.span = b.mul(nr, c(o.L))  # weights per block
        self.ws = o.stored(w0)
        self.s0 = b.sub(w0, nc)  # int8 scales (unused otherwise)
        self.groups = b.ashr(nb, c(2))
        self.tail = b.shl(self.groups, c(2))
        self.rest = b.sub(nb, self.tail)

    def at(self, a0, blk):
        """(acc offset, stored weight offset, scale offset) of block ``blk``
        for outputs starting at ``a0``."""
        b, c, L = self.o.builder, self.o.c, self.o.L
        return (b.add(a0, b.mul(blk, c(L))), b.add(self.ws, b.mul(blk, self.span)),
                b.add(self.s0, b.mul(blk, c(L))))

    def each_group(self, a0, backward, body):
        """``body(NB, acc offset, stored weight offset, scale offset)`` for
        each group of the panels (NB its blocks), outputs from ``a0``; from
        the first or, ``backward``, from the last. The last group's block
        count is known only at run time: one branch per possible count."""
        b, c = self.o.builder, self.o.c

        def full(i):
            body(GROUP, *self.at(a0, b.shl(i, c(2))))

        def last():
            for n in (3, 2, 1):
                with b.if_then(b.icmp_signed("==", self.rest, c(n))):
                    body(n, *self.at(a0, self.tail))

        if backward:
            last()
            with cgutils.for_range(b, self.groups) as loop:
                full(b.sub(b.sub(self.groups, c(1)), loop.index))
        else:
            with cgutils.for_range(b, self.groups) as loop:
                full(loop.index)
            last()


def _emit_gemv(o, a0, v0, w0, nr, nc, backward=False):
    """acc[a0 + k] += sum_{j < nr} v[v0 + j] * W^T[j, k], k < nc (padded),
    W^T's panels at w[w0:] (scales just before them for int8), group by
    group from the first or, ``backward``, from the last."""
    p = _Panels(o, w0, nr, nc)
    c = o.c
    if o.qdot:
        qdot.emit_rows(o, 1, c(0), v0, c(0), nr, lambda body: p.each_group(a0, backward, body))
        return
    p.each_group(a0, backward,
                 lambda NB, a, wb, sb: _emit_group(o, 1, NB, a, c(0), v0, c(0), wb, nr))


def _emit_gemm(o, a0, astride, v0, vstride, w0, nr, nc, R):
    """``_emit_gemv`` for R vectors: row r reads v[v0 + r*vstride:] and adds
    into acc[a0 + r*astride:]; rows go four at a time, so each weight vector
    loaded feeds four products, and the last R % 4 one by one."""
    b, c = o.builder, o.c
    p = _Panels(o, w0, nr, nc)
    quads = b.ashr(R, c(2))
    with cgutils.for_range(b, quads) as rl:
        r = b.shl(rl.index, c(2))
        ar = b.add(a0, b.mul(r, astride))
        vr = b.add(v0, b.mul(r, vstride))
        if o.qdot:
            # each pass over the weights serves as many vectors as the registers hold
            per = qdot.rows_per_pass(o.qdot)
            for k in range(0, ROWS, per):
                a_k, v_k = b.add(ar, b.mul(astride, c(k))), b.add(vr, b.mul(vstride, c(k)))
                qdot.emit_rows(o, per, astride, v_k, vstride, nr,
                               lambda body, a_k=a_k: p.each_group(a_k, False, body))
        else:
            p.each_group(ar, False, lambda NB, a, wb, sb: _emit_group(
                o, ROWS, NB, a, astride, vr, vstride, wb, nr))
    with cgutils.for_range(b, b.sub(R, b.shl(quads, c(2)))) as rl:
        r = b.add(b.shl(quads, c(2)), rl.index)
        _emit_gemv(o, b.add(a0, b.mul(r, astride)), b.add(v0, b.mul(r, vstride)), w0, nr, nc)


# The drivers are intrinsics (see the module docstring): numba functions
# inlined at the IR level re-run numba's front end and deep-copy the callee's
# IR at every call site, then type the result again.
_I64 = types.int64


def _weight_type(q):
    """The literal weight type ``q``'s value (None if not a literal)."""
    return q.literal_value if isinstance(q, types.IntegerLiteral) else None


def _gemv_typing(q, acc, v, w, extra, emit):
    """Typing and code of a ``qgemv``-shaped intrinsic (arguments q, acc, a0,
    v, v0, w, w0, nr, nc, then ``extra`` int64s): ``emit(o, args)`` writes
    the product's code."""
    wq = _weight_type(q)
    if wq is None:
        return None

    def codegen(context, builder, sig, args):
        emit(_Operands(context, builder, wq, sig.args[1], args[1], sig.args[3], args[3],
                       sig.args[5], args[5]), args)
        return context.get_dummy_value()

    return types.none(q, acc, _I64, v, _I64, w, _I64, _I64, _I64, *extra), codegen


@intrinsic
def qgemv(typingctx, q, acc, a0, v, v0, w, w0, nr, nc):
    """acc[a0 + k] += sum_{j < nr} v[v0 + j] * W^T[j, k] for k < nc, with W^T
    packed by ``pack_panels`` (weight type ``q``, a literal: ``pack_stored``)
    at ``w[w0:]``; nc is the padded column count."""
    return _gemv_typing(q, acc, v, w, (), lambda o, a: _emit_gemv(o, a[2], a[4], a[6], a[7], a[8]))


@intrinsic
def qgemv_backward(typingctx, q, acc, a0, v, v0, w, w0, nr, nc):
    """``qgemv`` visiting the weight groups last to first. A sequence
    alternates the two directions: the weights one step read last are the
    first the next step reads, while they are still in L1, so a W_hh up to
    about twice the L1's size is partly served from there."""
    return _gemv_typing(q, acc, v, w, (), lambda o, a: _emit_gemv(o, a[2], a[4], a[6], a[7], a[8],
                                                                 backward=True))


def _emit_gemv_step(o, a):
    """Forward on even steps ``a[9]``, backward on odd ones."""
    b = o.builder
    with b.if_else(b.icmp_signed("!=", b.and_(a[9], o.c(1)), o.c(0))) as (odd, even):
        with odd:
            _emit_gemv(o, a[2], a[4], a[6], a[7], a[8], backward=True)
        with even:
            _emit_gemv(o, a[2], a[4], a[6], a[7], a[8])


@intrinsic
def qgemv_step(typingctx, q, acc, a0, v, v0, w, w0, nr, nc, t):
    """The recurrent product of step ``t`` of a sequence: ``qgemv`` on even
    steps, ``qgemv_backward`` on odd ones (the same sums, bit for bit), so
    each step starts on the part of W_hh still in L1."""
    return _gemv_typing(q, acc, v, w, (_I64,), _emit_gemv_step)


@intrinsic
def qgemm(typingctx, q, acc, a0, astride, v, v0, vstride, w, w0, nr, nc, R):
    """``qgemv`` for R vectors at once: row r reads ``v[v0 + r*vstride:]`` and
    adds into ``acc[a0 + r*astride:]``. Rows go four at a time, so each
    weight vector loaded feeds four FMAs."""
    wq = _weight_type(q)
    if wq is None:
        return None

    def codegen(context, builder, sig, args):
        _, acc_, a0_, as_, v_, v0_, vs_, w_, w0_, nr_, nc_, R_ = args
        o = _Operands(context, builder, wq, sig.args[1], acc_, sig.args[4], v_, sig.args[7], w_)
        _emit_gemm(o, a0_, as_, v0_, vs_, w0_, nr_, nc_, R_)
        return context.get_dummy_value()

    return types.none(q, acc, _I64, _I64, v, _I64, _I64, w, _I64, _I64, _I64, _I64), codegen


@intrinsic
def qproject(typingctx, q, src, s0, ss, T, I, G, w, wx, bias, acc, a0):
    """acc[a0 + t*G + k] = bias[k] + sum_j src[s0 + t*ss + j] * W^T[j, k] for
    t < T, k < G: a tile's input projections (W^T panels of weight type
    ``q`` at ``w[wx:]``, the bias, padded to G, at ``w[bias:]``)."""
    wq = _weight_type(q)
    if wq is None:
        return None

    def codegen(context, builder, sig, args):
        _, src_, s0_, ss_, T_, I_, G_, w_, wx_, bias_, acc_, a0_ = args
        o = _Operands(context, builder, wq, sig.args[10], acc_, sig.args[1], src_, sig.args[7], w_)
        b = builder
        with cgutils.for_range(b, T_) as tl:
            row = b.add(a0_, b.mul(tl.index, G_))
            with cgutils.for_range(b, G_) as kl:
                b.store(b.load(b.gep(o.wp, [b.add(bias_, kl.index)])),
                        b.gep(o.ap, [b.add(row, kl.index)]))
        _emit_gemm(o, a0_, G_, s0_, ss_, wx_, I_, G_, T_)
        return context.get_dummy_value()

    return (types.none(q, src, _I64, _I64, _I64, _I64, _I64, w, _I64, _I64, acc, _I64),
            codegen)


@_inline
def width(n, w):
    """``n`` rounded up to a whole number of vectors of ``w``'s dtype: the
    row stride of a product's outputs (products write whole vectors)."""
    L = 64 // w.itemsize
    return -(-n // L) * L


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
    # the same products as numpy code
    from .simd_numpy import (  # noqa: F401
        gemm, gemv, gemv_backward, gemv_step, qgemm, qgemv, qgemv_backward, qgemv_step, qproject,
    )
