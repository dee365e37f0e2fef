"""Calls of layer kernels through the table of C functions (calls.py).

The entry points, the graph runner and a rows kernel that falls back to
its seq kernel call a layer through ``call_layer(address, *layer call
form)``, and every kernel applies an activation through ``activation``:
an indirect call of a C function that the caller does not link, so its
code is compiled once, not again inside every function calling it (numba
links a callee's code into each caller and optimises and emits it there
anew).
"""

import llvmlite.ir as ir
import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from .activations import IDENTITY
from .config import JIT_OPTIONS
from .layout import FN_APPLY, FN_CODES, FN_SEQ, H_FNS
from .pointers import array_at

_I64 = types.int64
_inline = njit(inline="always", **JIT_OPTIONS)


@_inline
def functions(meta):
    """The table of layer C functions the plan ``meta`` runs with."""
    return array_at(meta[H_FNS], 2 * FN_CODES, np.int64)


@_inline
def seq_function(meta, code):
    """The address of kind ``code``'s seq C function (0 if not prepared)."""
    return functions(meta)[2 * code + FN_SEQ]


def _data(context, builder, ty, value):
    """An array argument's data address as an int64."""
    return builder.ptrtoint(context.make_array(ty)(context, builder, value).data, ir.IntType(64))


@intrinsic
def call_layer(typingctx, fn, src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    """Call the layer C function at address ``fn`` with the layer call
    form's arguments, arrays as their data addresses (calls.py)."""
    arrays = (1, 4, 8, 9, 11, 14)  # positions of src, dst, w, meta, st, sc in the arguments
    sig = types.none(_I64, src, _I64, _I64, dst, _I64, _I64, _I64, w, meta, _I64, st, _I64, _I64,
                     sc)

    def codegen(context, builder, signature, args):
        vals = [_data(context, builder, signature.args[i], a) if i in arrays else a
                for i, a in enumerate(args)]
        i64 = ir.IntType(64)
        ptr = builder.inttoptr(vals[0], ir.FunctionType(ir.VoidType(), [i64] * 14).as_pointer())
        builder.call(ptr, vals[1:])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _call_apply(typingctx, fn, buf, lo, hi, code, alpha, beta):
    """Call the activations.apply C function at address ``fn`` (calls.py)."""
    if not isinstance(buf, types.Array):
        return None
    # alpha and beta in the buffer's float type: the C function's, for its dtype
    sig = types.none(_I64, buf, _I64, _I64, _I64, buf.dtype, buf.dtype)

    def codegen(context, builder, signature, args):
        f = context.get_value_type(buf.dtype)
        i64 = ir.IntType(64)
        vals = [_data(context, builder, signature.args[1], args[1])] + list(args[2:])
        ptr = builder.inttoptr(args[0], ir.FunctionType(ir.VoidType(), [i64] * 4 + [f, f])
                               .as_pointer())
        builder.call(ptr, vals)
        return context.get_dummy_value()

    return sig, codegen


@_inline
def activation(meta, buf, lo, hi, code, alpha, beta):
    """``activations.apply(buf, lo, hi, code, alpha, beta)`` through the
    plan's table (one compiled copy, not one linked into every kernel); the
    identity returns without a call."""
    if code != IDENTITY:
        _call_apply(functions(meta)[FN_APPLY], buf, lo, hi, code, alpha, beta)
