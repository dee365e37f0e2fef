#!/usr/bin/env python
"""Which instructions each CPU family gets for reduced-precision weights.

streamgru's products widen stored weights to float32 in registers and sum
with float32 FMAs (streamgru/kernels/simd.py emits LLVM vector IR: int8
``sext`` + ``sitofp``, float16 ``fpext`` from half, bfloat16 ``zext`` +
``shl 16`` + ``bitcast``), and LLVM picks the instructions for the CPU it
compiles on. This compiles one 16-wide step of each pattern (load, widen,
FMA) with numba's own LLVM for this host, an AVX2 x86 core (Haswell) and two aarch64 cores
(Raspberry Pi 4's Cortex-A72, Neoverse N1) and prints the instructions:
the README's "which instructions each CPU family uses" comes from here.

Usage: python tools/quant_isa.py
"""

import llvmlite.binding as llvm

WIDEN = {
    "int8": ("<16 x i8>", "  %i = sext <16 x i8> %r to <16 x i32>\n  %f = sitofp <16 x i32> %i to <16 x float>"),
    "float16": ("<16 x i16>", "  %h = bitcast <16 x i16> %r to <16 x half>\n  %f = fpext <16 x half> %h to <16 x float>"),
    "bfloat16": ("<16 x i16>", "  %i = zext <16 x i16> %r to <16 x i32>\n  %s = shl <16 x i32> %i, "
                 + "<" + ", ".join(["i32 16"] * 16) + ">\n  %f = bitcast <16 x i32> %s to <16 x float>"),
}
TARGETS = [(None, None), ("x86_64-unknown-linux-gnu", "haswell"), ("aarch64-unknown-linux-gnu", "cortex-a72"), ("aarch64-unknown-linux-gnu", "neoverse-n1")]


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
            tm = llvm.Target.from_triple(triple).create_target_machine(cpu=cpu, features=feats, opt=3)
        except RuntimeError as exc:
            print(f"{cpu}: no LLVM target ({exc})")
            continue
        mod = llvm.parse_assembly(module())
        mod.triple = triple
        asm = tm.emit_assembly(mod)
        for name in WIDEN:
            body = asm.split(f"\n{name}:")[1].split(".Lfunc_end")[0]
            ops = [ln.split()[0] for ln in body.splitlines()
                   if ln.startswith("\t") and not ln.strip().startswith((".", "#", "//"))]
            print(f"{cpu:12s} {name:9s} {' '.join(ops)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
