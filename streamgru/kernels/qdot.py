"""int8 weight products as integer dot products: LLVM IR for simd.py.

An int8 weight matrix is multiplied in integers, not widened to floats.
Each vector ``v`` a product reads is rounded, per chunk of up to ``CHUNK``
inputs, to int16 with a scale of its own::

    m = max |v_j|        s = m / 32767        q_j = rint(v_j * (32767 / m))

(q = 0 when m = 0), and the product is ``acc[k] += scale[k] * s *
sum_j W8[j, k] * q_j`` with exact int32 sums. The rounding of ``v`` is
about 1.5e-5 of its largest value, far below the int8 weights' own (about
2e-3 of each row's largest weight); tests/reference.py rounds the same way.
A non-finite ``v_j`` makes every output of the chunk NaN, as float products
would (its ``v_j * 0`` is added to s).

Why: widening int8 to float costs a sign-extend, a convert and an FMA per
weight lane, so int8 was no faster than float32 wherever the weights fit in
cache. An int16 pair product (``vpmaddwd``: two inputs' products summed per
32-bit lane; AVX-512 VNNI's ``vpdpwssd`` also adds them to the sums) does
two multiply-adds per lane in one instruction, after one ``vpmovsxbw``
shared by every vector of a batch that reads the weight.

For that the int8 panels (panels.py) store input rows in pairs: in a group
of NB blocks, pair p (rows 2p, 2p+1; nr padded with a zero row to even)
holds, per block, ``W[2p, c], W[2p+1, c]`` for its L columns c: 2L bytes,
sign-extended to one ``<2L x i16>`` vector. The rounded inputs of a chunk
sit in an int16 buffer on the stack, read as one int32 (a pair) at a time
and broadcast. |q| <= 32767 and |W8| <= 128, so a chunk of 512 inputs sums
to at most 2^31 - 65536 in every lane: no overflow.

Which instructions (chosen when numba compiles for the host): x86 with
AVX-512 VNNI ``vpdpwssd`` on 512-bit vectors, with AVX-512BW ``vpmaddwd``
on 512-bit vectors, with AVX2 ``vpmaddwd`` on 256-bit ones, and elsewhere
(aarch64 included) the same sums written as plain vector IR (sign-extend, multiply,
add), which LLVM compiles for any target: the integer sums, and so the
results, are the same on every path.
"""

import llvmlite.ir as ir
from numba.core import cgutils

CHUNK = 512            # inputs per int32 sum (see the bound above)
QMAX = 32767.0         # int16 range of the rounded inputs

_I8, _I16, _I32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)


def _vec(t, n):
    return ir.VectorType(t, n)


def isa(context) -> str:
    """The integer product for the CPU numba compiles for: "vnni" (AVX-512
    VNNI), "avx512" (AVX-512BW), "avx2" or "portable" (read off the codegen's target features, so a kernel
    compiled for another CPU name or feature set gets that CPU's code)."""
    cg = context.codegen()
    tm = getattr(cg, "_tm", None)
    return isa_for(getattr(tm, "triple", "") or "", getattr(cg, "_tm_features", ""))


def isa_for(triple: str, features: str) -> str:
    """``isa``'s choice for an LLVM target triple and feature string
    (``+avx2,-avx512bw,...``)."""
    feats = set(features.split(","))
    if not triple.startswith(("x86_64", "i686", "i386")):
        return "portable"
    if "+avx512bw" in feats:
        return "vnni" if "+avx512vnni" in feats else "avx512"
    if "+avx2" in feats:
        return "avx2"
    return "portable"


def _decl(module, name, ret, args):
    return cgutils.get_or_insert_function(module, ir.FunctionType(ret, args), name)


def _pick(b, v, start, n):
    """Lanes start .. start+n-1 of vector v."""
    return b.shuffle_vector(v, v, ir.Constant(_vec(_I32, n), list(range(start, start + n))))


def dot(b, kind, acc, w16, x16):
    """acc + (w16[2i] * x16[2i] + w16[2i+1] * x16[2i+1]) per lane i:
    acc ``<L x i32>``, w16 and x16 ``<2L x i16>``."""
    L = acc.type.count
    if kind == "portable":
        def half(v, first):
            lanes = ir.Constant(_vec(_I32, L), list(range(first, 2 * L, 2)))
            return b.sext(b.shuffle_vector(v, v, lanes), _vec(_I32, L))
        return b.add(acc, b.add(b.mul(half(w16, 0), half(x16, 0)),
                                b.mul(half(w16, 1), half(x16, 1))))
    n = 16 if kind in ("vnni", "avx512") and L >= 16 else 8
    if kind == "vnni" and n == 16:  # vpdpwssd: the products and the add in one instruction
        fn = _decl(b.module, "llvm.x86.avx512.vpdpwssd.512", _vec(_I32, 16), [_vec(_I32, 16)] * 3)
        return b.call(fn, [acc, b.bitcast(w16, _vec(_I32, 16)), b.bitcast(x16, _vec(_I32, 16))])
    name = "llvm.x86.avx512.pmaddw.d.512" if n == 16 else "llvm.x86.avx2.pmadd.wd"
    fn = _decl(b.module, name, _vec(_I32, n), [_vec(_I16, 2 * n)] * 2)
    parts = [b.add(_pick(b, acc, k, n), b.call(fn, [_pick(b, w16, 2 * k, 2 * n),
                                                    _pick(b, x16, 2 * k, 2 * n)]))
             for k in range(0, L, n)]
    while len(parts) > 1:  # concatenate the pieces back into <L x i32>
        m = parts[0].type.count
        parts = [b.shuffle_vector(parts[i], parts[i + 1],
                                  ir.Constant(_vec(_I32, 2 * m), list(range(2 * m))))
                 for i in range(0, len(parts), 2)]
    return parts[0]


def _tree(b, v, op):
    """op over the lanes of v, halving the vector each time (log2 L steps,
    not a chain of L): lane 0 of the result."""
    n = v.type.count
    while n > 1:
        n //= 2
        hi = b.shuffle_vector(v, v, ir.Constant(_vec(_I32, v.type.count),
                                                list(range(n, 2 * n)) * (v.type.count // n)))
        v = op(v, hi)
    return b.extract_element(v, ir.Constant(_I32, 0))


def rows_per_pass(kind: str) -> int:
    """Vectors that share one pass over a product's weights: a group's
    sums are 4 blocks of ``<16 x i32>`` per vector, which AVX2's 16 ymm
    registers (two per block) hold for one vector and AVX-512's 32 zmm for
    four (more would spill the sums to the stack on every pair)."""
    return 4 if kind in ("vnni", "avx512") else 1


class Rounded:
    """A chunk of one vector rounded to int16 on the stack: ``buf`` (CHUNK
    + 2 int16, a zero after an odd count) and its scale ``s``."""

    def __init__(self, o):
        b = o.builder
        self.buf = b.bitcast(cgutils.alloca_once(b, ir.ArrayType(_I16, CHUNK + 2)),
                             _I16.as_pointer())
        self.pairs = b.bitcast(self.buf, _I32.as_pointer())
        self.s = None

    def fill(self, o, off, n):
        """Round v[off : off + n] (n <= CHUNK, a run-time value) into buf."""
        b, c, L, vec = o.builder, o.c, o.L, o.vec
        fty = vec.element
        fabs_v = _decl(b.module, f"llvm.fabs.v{L}f{o.bits}", vec, [vec])
        maxnum_v = _decl(b.module, f"llvm.maxnum.v{L}f{o.bits}", vec, [vec, vec])
        rint_v = _decl(b.module, f"llvm.rint.v{L}f{o.bits}", vec, [vec])
        fabs = _decl(b.module, f"llvm.fabs.f{o.bits}", fty, [fty])
        maxnum = _decl(b.module, f"llvm.maxnum.f{o.bits}", fty, [fty, fty])
        rint = _decl(b.module, f"llvm.rint.f{o.bits}", fty, [fty])
        zero_v = ir.Constant(vec, [0.0] * L)
        zero = ir.Constant(fty, 0.0)
        full = b.mul(b.sdiv(n, c(L)), c(L))
        mv = cgutils.alloca_once_value(b, zero_v)
        bad_v = cgutils.alloca_once_value(b, zero_v)   # sum of v * 0: NaN if any v is not finite
        with cgutils.for_range_slice(b, c(0), full, c(L)) as (j, _):
            x = o.vload(o.vp, b.add(off, j))
            b.store(b.call(maxnum_v, [b.load(mv), b.call(fabs_v, [x])]), mv)
            b.store(b.fadd(b.load(bad_v), b.fmul(x, zero_v)), bad_v)
        m = cgutils.alloca_once_value(b, _tree(b, b.load(mv), lambda x, y: b.call(maxnum_v, [x, y])))
        bad = cgutils.alloca_once_value(b, _tree(b, b.load(bad_v), b.fadd))
        with cgutils.for_range_slice(b, full, n, c(1)) as (j, _):
            x = b.load(b.gep(o.vp, [b.add(off, j)]))
            b.store(b.call(maxnum, [b.load(m), b.call(fabs, [x])]), m)
            b.store(b.fadd(b.load(bad), b.fmul(x, zero)), bad)
        top = b.load(m)
        qmax = ir.Constant(fty, QMAX)
        inv = b.select(b.fcmp_ordered(">", top, zero), b.fdiv(qmax, top), zero)
        inv_v = b.shuffle_vector(b.insert_element(ir.Constant(vec, ir.Undefined), inv, c(0)),
                                 ir.Constant(vec, ir.Undefined),
                                 ir.Constant(_vec(_I32, L), [0] * L))
        with cgutils.for_range_slice(b, c(0), full, c(L)) as (j, _):
            x = o.vload(o.vp, b.add(off, j))
            q = b.trunc(b.fptosi(b.call(rint_v, [b.fmul(x, inv_v)]), _vec(_I32, L)), _vec(_I16, L))
            b.store(q, b.bitcast(b.gep(self.buf, [j]), _vec(_I16, L).as_pointer()), align=2)
        with cgutils.for_range_slice(b, full, n, c(1)) as (j, _):
            x = b.load(b.gep(o.vp, [b.add(off, j)]))
            b.store(b.trunc(b.fptosi(b.call(rint, [b.fmul(x, inv)]), _I32), _I16),
                    b.gep(self.buf, [j]))
        b.store(ir.Constant(_I16, 0), b.gep(self.buf, [n]))   # an odd count's partner
        self.s = b.fadd(b.fdiv(top, qmax), b.load(bad))


def emit_group(o, R, NB, a0, astride, w0, pairs, rows, s0):
    """acc[a0 + r*astride + c] += scale[c] * rows[r].s * sum_p W8 pair p .
    rows[r] pair p, for r < R, c < NB*L: the group's int8 pair panel from
    stored byte ``w0`` (``pairs`` pairs of this chunk), its scales at
    ``w[s0:]``."""
    b, c, L = o.builder, o.c, o.L
    kind = o.qdot
    i32v, i16w = _vec(_I32, L), _vec(_I16, 2 * L)
    zero = ir.Constant(i32v, [0] * L)
    undef = ir.Constant(i32v, ir.Undefined)
    splat = ir.Constant(i32v, [0] * L)
    wp = b.bitcast(o.wp, _I8.as_pointer())
    # the sums' chain is the add: one cycle (vpaddd), except where VNNI fuses
    # it into vpdpwssd (several): there one vector's even and odd pairs
    # go to two sets of accumulators (on AVX2 two sets would not fit its 16 registers)
    sets = 2 if R == 1 and kind == "vnni" else 1
    slots = [[[cgutils.alloca_once_value(b, zero) for _ in range(NB)] for _ in range(R)]
             for _ in range(sets)]

    def pair(p, sl):
        row = b.add(w0, b.mul(p, c(NB * 2 * L)))
        ws = [b.sext(b.load(b.bitcast(b.gep(wp, [b.add(row, c(k * 2 * L))]),
                                      _vec(_I8, 2 * L).as_pointer()), align=1), i16w)
              for k in range(NB)]
        for r in range(R):
            x = b.load(b.gep(rows[r].pairs, [p]))
            xv = b.bitcast(b.shuffle_vector(b.insert_element(undef, x, ir.Constant(_I32, 0)),
                                            undef, splat), i16w)
            for k in range(NB):
                b.store(dot(b, kind, b.load(sl[r][k]), ws[k], xv), sl[r][k])

    if sets == 1:
        with cgutils.for_range(b, pairs) as loop:
            pair(loop.index, slots[0])
    else:
        with cgutils.for_range(b, b.ashr(pairs, c(1))) as loop:
            p = b.shl(loop.index, c(1))
            pair(p, slots[0])
            pair(b.add(p, c(1)), slots[1])
        with b.if_then(b.icmp_signed("!=", b.and_(pairs, c(1)), c(0))):
            pair(b.sub(pairs, c(1)), slots[0])
    for r in range(R):
        sv = b.shuffle_vector(b.insert_element(ir.Constant(o.vec, ir.Undefined), rows[r].s, c(0)),
                              ir.Constant(o.vec, ir.Undefined), splat)
        for k in range(NB):
            total = b.load(slots[0][r][k])
            if sets == 2:
                total = b.add(total, b.load(slots[1][r][k]))
            scale = b.fmul(o.vload(o.wp, b.add(s0, c(k * L))), sv)
            p = b.bitcast(b.gep(o.ap, [b.add(b.add(a0, b.mul(astride, c(r))), c(k * L))]),
                          o.vec.as_pointer())
            acc = b.load(p, align=o.bits // 8)
            b.store(b.call(o.fma, [b.sitofp(total, o.vec), scale, acc]), p, align=o.bits // 8)


def emit_rows(o, R, astride, v0, vstride, nr, groups):
    """acc[a + r*astride + k] += sum_j v[v0 + r*vstride + j] * W[j, k] for
    r < R (a Python int) and every padded column k of every group, chunk by
    chunk: each chunk of the R vectors is rounded once, then every group
    adds its sums. ``groups(body)`` calls ``body(NB, a, w, s)`` per group
    (its blocks, acc offset, first stored weight and scale offset)."""
    b, c, L = o.builder, o.c, o.L
    rows = [Rounded(o) for _ in range(R)]
    chunks = b.sdiv(b.add(nr, c(CHUNK - 1)), c(CHUNK))
    with cgutils.for_range(b, chunks) as loop:
        j0 = b.mul(loop.index, c(CHUNK))
        n = b.sub(nr, j0)
        n = b.select(b.icmp_signed(">", n, c(CHUNK)), c(CHUNK), n)
        for r in range(R):
            rows[r].fill(o, b.add(b.add(v0, b.mul(vstride, c(r))), j0), n)
        pairs = b.ashr(b.add(n, c(1)), c(1))

        def body(NB, a, wb, sb):
            # this chunk's pairs start j0 / 2 pairs (j0 * NB * L bytes) into the group
            emit_group(o, R, NB, a, astride, b.add(wb, b.mul(j0, c(NB * L))), pairs, rows, sb)

        groups(body)
