"""The native dispatcher: finds the block for (pc, flags) in the hart's jump cache and tail-calls it.

Blocks tail-call the dispatcher (indirect jumps, cross-page targets, after callouts) or each other
through chain slots, so guest code runs block after block without returning to Python.
"""

from __future__ import annotations

from translator import abi

# Callouts reach Python through trampolines with LLVM's preserve_most convention, so a block's
# slow path costs the block no callee-saved register spills on its fast path.
CALLOUTS = {
    "mirage_mem": "(ptr %h, i64 %a, i64 %b, i64 %c, i64 %d)",
    "mirage_sys": "(ptr %h, i64 %a, i64 %b, i64 %c)",
    "mirage_helper": "(ptr %h, i64 %a, i64 %b, i64 %c)",
}


def _trampolines() -> str:
    out = []
    for name, params in CALLOUTS.items():
        types = ", ".join(p.split()[0] for p in params.strip("()").split(", "))
        args = params.strip("()")
        out.append(f"declare i64 @{name}_c({types})\n"
                   f"define preserve_mostcc i64 @{name}{params} #1 {{\n"
                   f"  %r = call i64 @{name}_c({args})\n  ret i64 %r\n}}\n")
    return "\n".join(out)


def dispatcher_ir() -> str:
    return _trampolines() + f"""
define i64 @mirage_dispatch(ptr noalias %h) #0 {{
entry:
  %sp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_STAT_DISPATCH}
  %s0 = load i64, ptr %sp
  %s1 = add i64 %s0, 1
  store i64 %s1, ptr %sp
  %pcp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_PC}
  %pc = load i64, ptr %pcp
  %fp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_FLAGS}
  %flags = load i64, ptr %fp
  %i0 = lshr i64 %pc, 1
  %i1 = and i64 %i0, {abi.JC_SIZE - 1}
  %o0 = shl i64 %i1, 5
  %o1 = add i64 %o0, {abi.OFF_JC}
  %e = getelementptr inbounds i8, ptr %h, i64 %o1
  %tag = load i64, ptr %e
  %ef = getelementptr inbounds i8, ptr %e, i64 8
  %eflags = load i64, ptr %ef
  %c1 = icmp eq i64 %tag, %pc
  %c2 = icmp eq i64 %eflags, %flags
  %hit = and i1 %c1, %c2
  br i1 %hit, label %go, label %miss, !prof !0
go:
  %fnp = getelementptr inbounds i8, ptr %e, i64 16
  %fn = load ptr, ptr %fnp
  %r = musttail call i64 %fn(ptr %h)
  ret i64 %r
miss:
  %mp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_STAT_JC_MISS}
  %m0 = load i64, ptr %mp
  %m1 = add i64 %m0, 1
  store i64 %m1, ptr %mp
  ret i64 {abi.EXIT_MISS}
}}

attributes #0 = {{ nounwind "frame-pointer"="none" }}
attributes #1 = {{ noinline "frame-pointer"="none" }}
!0 = !{{!"branch_weights", i32 2000, i32 1}}
"""
