"""The native dispatcher: finds the block for (pc, flags) in the hart's jump cache and tail-calls it.

Optimized blocks tail-call the dispatcher (indirect jumps, cross-page targets, after callouts) or
each other through chain slots; cold (tier-0) blocks return to the loop in mirage_enter, either
EXIT_NEXT (dispatch again) or the function in a chain slot (called next). Either way guest code
runs block after block without returning to Python.
"""

from __future__ import annotations

import functools

from translator import abi
from translator.interp import interpreter_ir
from translator.softmmu import softmmu_ir

# Callouts: `<name>` is a trampoline with LLVM's preserve_most convention, so a block's slow path
# costs the block no callee-saved register spills on its fast path (tier 1 calls it); `<name>_c`
# the same entry with the C convention (tier 0 and the interpreter); `<name>_py` the Python
# callback (runtime/core/machine.py). The memory callout's C entry first tries the native TLB refill
# and the system callout's the native sfence.vma (translator/softmmu.py).
CALLOUTS = {
    "mirage_mem": "(ptr %h, i64 %a, i64 %b, i64 %c, i64 %d)",
    "mirage_sys": "(ptr %h, i64 %a, i64 %b, i64 %c)",
}


def _trampolines() -> str:
    out = []
    for name, params in CALLOUTS.items():
        types = ", ".join(p.split()[0] for p in params.strip("()").split(", "))
        args = params.strip("()")
        if name not in ("mirage_mem", "mirage_sys"):  # Their C entries are in softmmu.py
            out.append(f"declare i64 @{name}_py({types})\n"
                       f"define i64 @{name}_c{params} #0 {{\n"
                       f"  %r = call i64 @{name}_py({args})\n  ret i64 %r\n}}\n")
        out.append(f"define preserve_mostcc i64 @{name}{params} #1 {{\n"
                   f"  %r = call i64 @{name}_c({args})\n  ret i64 %r\n}}\n")
    return "\n".join(out)


def _probe(cmpmask: int, write: bool) -> str:
    """The TLB probe both helper kinds share: %p is the host address on the fast path."""
    tag_off = abi.TLB_WRITE if write else abi.TLB_READ
    return f"""  %i0 = lshr i64 %a, {abi.PAGE_BITS}
  %i1 = and i64 %i0, {abi.TLB_SIZE - 1}
  %i2 = shl i64 %i1, {abi.TLB_ENTRY.bit_length() - 1}
  %o0 = add i64 %i2, %tlb
  %o = add i64 %o0, {tag_off}
  %ep = getelementptr inbounds i8, ptr %h, i64 %o
  %tag = load i64, ptr %ep
  %c = and i64 %a, {cmpmask}
  %hit = icmp eq i64 %tag, %c
  br i1 %hit, label %fast, label %slow, !prof !0
fast:
  %adp = getelementptr inbounds i8, ptr %ep, i64 {abi.TLB_ADDEND - tag_off}
  %ad = load i64, ptr %adp
  %off = add i64 %a, %ad
  %rp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_RAM}
  %ram = load ptr, ptr %rp
  %p = getelementptr i8, ptr %ram, i64 %off
"""


def _mem_helpers() -> str:
    """Out-of-line loads and stores for tier-0 blocks: the same TLB probe as inline code, one copy."""
    out = []
    for size in (1, 2, 4, 8):
        bits = size * 8
        cmpmask = -abi.PAGE_SIZE | (size - 1)
        for signed in ((False, True) if size < 8 else (False,)):
            name = f"mirage_ld{size}{'s' if signed else 'u'}"
            ext = "" if size == 8 else f"  %v = {'sext' if signed else 'zext'} i{bits} %r to i64\n"
            val = "%r" if size == 8 else "%v"
            out.append(f"""
define i64 @{name}(ptr noalias %h, i64 %a, i64 %tlb, i64 %desc, i64 %pc) #0 {{
{_probe(cmpmask, False)}  %r = load i{bits}, ptr %p, align 1
{ext}  ret i64 {val}
slow:
  %s = call i64 @mirage_mem_c(ptr %h, i64 %a, i64 0, i64 %desc, i64 %pc)
  ret i64 %s
}}""")
        trunc = "" if size == 8 else f"  %t = trunc i64 %v to i{bits}\n"
        tv = "%v" if size == 8 else "%t"
        out.append(f"""
define void @mirage_st{size}(ptr noalias %h, i64 %a, i64 %v, i64 %tlb, i64 %desc, i64 %pc) #0 {{
{_probe(cmpmask, True)}{trunc}  store i{bits} {tv}, ptr %p, align 1
  ret void
slow:
  %s = call i64 @mirage_mem_c(ptr %h, i64 %a, i64 %v, i64 %desc, i64 %pc)
  ret void
}}""")
    return "\n".join(out)


def _time() -> str:
    """The time CSR's value (abi.CSR_TIME): the host's monotonic clock in timebase ticks."""
    return f"""
declare i32 @clock_gettime(i32, ptr)

define i64 @mirage_time(ptr noalias %h) #0 {{
  %ts = alloca [2 x i64], align 8
  %rc = call i32 @clock_gettime(i32 1, ptr %ts)
  %sec = load i64, ptr %ts
  %np = getelementptr inbounds i8, ptr %ts, i64 8
  %nsec = load i64, ptr %np
  %ns0 = mul i64 %sec, 1000000000
  %ns = add i64 %ns0, %nsec
  %bp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_TIME_BASE}
  %base = load i64, ptr %bp
  %mp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_TIME_MULT}
  %mult = load i64, ptr %mp
  %op = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_TIME_OFFSET}
  %off = load i64, ptr %op
  %d = sub i64 %ns, %base
  %dw = zext i64 %d to i128
  %mw = zext i64 %mult to i128
  %p = mul i128 %dw, %mw
  %q = lshr i128 %p, 32
  %t = trunc i128 %q to i64
  %r = add i64 %t, %off
  ret i64 %r
}}
"""


MEM_HELPERS = [f"mirage_ld{n}" for n in ("1u", "1s", "2u", "2s", "4u", "4s", "8u")] + \
    [f"mirage_st{n}" for n in (1, 2, 4, 8)]


@functools.cache
def dispatcher_ir() -> str:
    return _trampolines() + softmmu_ir() + _mem_helpers() + _time() + f"""
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
  %ip = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_INTERP}
  %ion = load i32, ptr %ip
  %useint = icmp ne i32 %ion, 0
  br i1 %useint, label %interp, label %out
interp:
  %ri = musttail call i64 @mirage_interp(ptr %h)
  ret i64 %ri
out:
  ret i64 {abi.EXIT_MISS}
}}

define i64 @mirage_enter(ptr noalias %h) #0 {{
entry:
  br label %again
again:
  %r0 = call i64 @mirage_dispatch(ptr %h)
  br label %check
check:
  %r = phi i64 [ %r0, %again ], [ %r1, %chain ]
  %isfn = icmp ugt i64 %r, {abi.EXIT_MAX}
  br i1 %isfn, label %chain, label %code, !prof !0
chain:
  %fn = inttoptr i64 %r to ptr
  %r1 = call i64 %fn(ptr %h)
  br label %check
code:
  %next = icmp eq i64 %r, {abi.EXIT_NEXT}
  br i1 %next, label %again, label %out, !prof !0
out:
  ret i64 %r
}}

attributes #0 = {{ nounwind "frame-pointer"="none" }}
attributes #1 = {{ noinline "frame-pointer"="none" }}
!0 = !{{!"branch_weights", i32 2000, i32 1}}
!1 = !{{!"branch_weights", i32 1, i32 2000}}
""" + interpreter_ir()
