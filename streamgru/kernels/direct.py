"""Direct calls of compiled kernels from an intrinsic's generated code.

Choosing a kernel while typing (by a literal mask or weight type) and
calling it from an ``@intrinsic`` costs only the call: numba code inlined
at the IR level (``inline="always"``, or an inlined overload) makes numba
compile the callee's body once as a function of its own just to type it,
then re-type and re-lower it at every call site, and every function it
compiles re-optimises and re-emits all the kernels it links.
"""

from numba import types


def resolve(typingctx, kernel, argtys):
    """(function type, signature) of calling the dispatcher ``kernel`` with
    arguments of types ``argtys`` (compiling it, or loading it from the
    disk cache, for them)."""
    fnty = typingctx.resolve_value_type(kernel)
    return fnty, typingctx.resolve_function_type(fnty, tuple(argtys), {})


def call(context, builder, fnty, sig, values, valtys):
    """Emit the call of ``resolve``'s (fnty, sig) on ``values`` (of the
    intrinsic's argument types ``valtys``, cast to the kernel's)."""
    args = [context.cast(builder, v, t, k) for v, t, k in zip(values, valtys, sig.args)]
    context.get_function(fnty, sig)(builder, args)


def literal(ty):
    """The value of an integer literal type, else None."""
    return ty.literal_value if isinstance(ty, types.IntegerLiteral) else None
