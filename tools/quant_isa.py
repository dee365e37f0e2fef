#!/usr/bin/env python
"""Which instructions each CPU family gets for reduced-precision weights.

streamgru's products (streamgru/kernels/simd.py and qdot.py emit LLVM IR;
LLVM picks the instructions for the CPU it compiles on):

- int8: integer dot products. The inputs are rounded to int16 per call,
  the weights sign-extended to int16, and pairs of products summed into
  int32 lanes: ``vpmaddwd`` on x86 (fused with the add into ``vpdpwssd``
  where AVX-512 VNNI is present), plain vector IR elsewhere (aarch64
  included), which qdot.py emits through the same function printed here.
- float16 and bfloat16: widened to float32 in registers (``fpext`` from
  half; ``zext`` + ``shl 16`` + ``bitcast``) and summed with float32 FMAs.

This compiles one 16-output step of each pattern with numba's own LLVM
for this host, an AVX2 x86 core (Haswell), two AVX-512 VNNI cores (Ice Lake
server, Zen 4) and two aarch64 cores (Raspberry Pi 4's Cortex-A72,
Neoverse N1) and prints the instructions: the README's "which instructions
each CPU family uses" comes from here.

Usage: python tools/quant_isa.py
"""

import importlib.util
import sys
from pathlib import Path

import llvmlite.binding as llvm
import llvmlite.ir as ir

if importlib.util.find_spec("streamgru") is None:
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # run from a checkout
from streamgru.kernels import qdot


WIDEN = {
    "float16": ("<16 x i16>", "  %h = bitcast <16 x i16> %r to <16 x half>\n  %f = fpext <16 x half> %h to <16 x float>"),
    "bfloat16": ("<16 x i16>", "  %i = zext <16 x i16> %r to <16 x i32>\n  %s = shl <16 x i32> %i, "
                 + "<" + ", ".join(["i32 16"] * 16) + ">\n  %f = bitcast <16 x i32> %s to <16 x float>"),
}
TARGETS = [(None, None), ("x86_64-unknown-linux-gnu", "haswell"),
           ("x86_64-unknown-linux-gnu", "icelake-server"), ("x86_64-unknown-linux-gnu", "znver4"),
           ("aarch64-unknown-linux-gnu", "cortex-a72"), ("aarch64-unknown-linux-gnu", "neoverse-n1")]
NAMES = ("int8",) + tuple(WIDEN)


def int8_module(kind: str) -> str:
    """One pair of input rows of a 16-column int8 block: qdot.dot on the
    weights (32 int8, sign-extended) and a broadcast pair of int16 inputs."""
    mod = ir.Module()
    i32v, i16w = ir.VectorType(ir.IntType(32), 16), ir.VectorType(ir.IntType(16), 32)
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [
        ir.VectorType(ir.IntType(8), 32).as_pointer(), i32v.as_pointer(), ir.IntType(32)]), "int8")
    b = ir.IRBuilder(fn.append_basic_block())
    wp, accp, pair = fn.args
    w16 = b.sext(b.load(wp, align=1), i16w)
    undef = ir.Constant(i32v, ir.Undefined)
    x = b.shuffle_vector(b.insert_element(undef, pair, ir.Constant(ir.IntType(32), 0)), undef,
                         ir.Constant(i32v, [0] * 16))
    b.store(qdot.dot(b, kind, b.load(accp), w16, b.bitcast(x, i16w)), accp)
    b.ret_void()
    return str(mod)


def module() -> str:
    fns = [f"""define void @{name}({ty}* %p, <16 x float>* %acc, <16 x float> %x) {{
  %r = load {ty}, {ty}* %p
{widen}
  %a = load <16 x float>, <16 x float>* %acc
  %m = call <16 x float> @llvm.fma.v16f32(<16 x float> %f, <16 x float> %x, <16 x float> %a)
  store <16 x float> %m, <16 x float>* %acc
  ret void
}}""" for name, (ty, widen) in WIDEN.items()]
    return "\n".join(fns) + "\ndeclare <16 x float> @llvm.fma.v16f32(<16 x float>, <16 x float>, <16 x float>)\n"


def main() -> int:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    for init in ("initialize_all_targets", "initialize_all_asmprinters"):
        getattr(llvm, init, lambda: None)()
    for triple, cpu in TARGETS:
        feats = ""
        if triple is None:
            triple, cpu, feats = llvm.get_process_triple(), llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
        try:
            target = llvm.Target.from_triple(triple)
            tm = target.create_target_machine(cpu=cpu, features=feats, opt=3)
        except RuntimeError as exc:
            print(f"{cpu}: no LLVM target ({exc})")
            continue
        if not feats and triple.startswith("x86_64"):
            # the named CPU's features that qdot.isa_for reads (llvmlite tells only the host's)
            feats = "+avx2,+avx512bw,+avx512vnni" if cpu in ("icelake-server", "znver4") else "+avx2"
        asm = ""
        for text in (int8_module(qdot.isa_for(triple, feats)), module()):
            mod = llvm.parse_assembly(text)
            mod.triple = triple
            # numba's O3 passes first: they fuse vpmaddwd's add into vpdpwssd on VNNI cores
            pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
            pb.getModulePassManager().run(mod, pb)
            asm += tm.emit_assembly(mod)
        for name in NAMES:
            body = asm.split(f"\n{name}:")[1].split(".Lfunc_end")[0]
            ops = [ln.split()[0] for ln in body.splitlines()
                   if ln.startswith("\t") and not ln.strip().startswith((".", "#", "//"))]
            print(f"{cpu:12s} {name:9s} {' '.join(ops)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
