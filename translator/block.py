"""Block formation and module assembly: guest code at a pc becomes one LLVM function."""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass, field

from translator import abi
from translator.emit import EMITTERS, TERMINATORS, rvf
from translator.ir import HOT_THRESHOLD, BlockBuilder
from translator.isa import Insn, decode

MAX_BLOCK_INSNS = 64
# Forward conditional branches do not end a block: the taken path leaves through a side exit and
# translation goes on along the fall-through path. Backward ones (loops) still end it, so a loop
# body chains to itself without side-exit bookkeeping.
SIDE_EXITS = {"beq", "bne", "blt", "bge", "bltu", "bgeu"}
# A block whose last branch goes back to its own start loops inside its function.
LOOPS = True
# Forward branches to a later instruction of the same block stay inside its function.
JOINS = True
# A forward branch over at most this many of these instructions (register arithmetic that cannot
# trap or leave) is if-converted: they run on both paths and the join selects their results, so
# a data-dependent branch costs no misprediction (the CRC bit loop of tests/bench/intkernel.c).
SPECULATE = 3
_SPECULABLE = {"lui", "auipc", "add", "sub", "xor", "or", "and", "addi", "xori", "ori", "andi", "slt", "sltu",
               "slti", "sltiu", "sll", "srl", "sra", "slli", "srli", "srai", "addw", "subw", "addiw", "sllw",
               "srlw", "sraw", "slliw", "srliw", "sraiw", "mul", "mulw"}

# FP instructions need mstatus.FS != Off (privileged spec 3.1.6.6: "attempts to access the
# floating-point state ... raise an illegal-instruction exception" when FS is Off).
_FP_CSRS = (1, 2, 3)


def _is_fp(i: Insn) -> bool:
    if i.name in ("csrrw", "csrrs", "csrrc", "csrrwi", "csrrsi", "csrrci"):
        return False
    return i.name.startswith("f") and i.name not in ("fence", "fence.i")


class FetchFault(Exception):
    """Instruction fetch at `pc` cannot proceed (the runtime raises the trap when it is executed)."""

    def __init__(self, pc: int) -> None:
        super().__init__(hex(pc))
        self.pc = pc


@dataclass
class BlockCode:
    """A translated block before compilation."""

    pc: int
    flags: int
    name: str
    insns: list[tuple[int, Insn | None, int]]  # (pc, insn or None if illegal, raw)
    text: str = ""
    globals: list[str] = field(default_factory=list)
    chain_slots: list[tuple[str, int]] = field(default_factory=list)
    end_pc: int = 0
    targets: list[int] = field(default_factory=list)
    direct: list[int] = field(default_factory=list)  # Direct exits' targets
    # A region: its members' pcs and instructions, the first being this block's own
    members: list[tuple[int, list[tuple[int, Insn | None, int]]]] = field(default_factory=list)
    region: int = 0  # A region's number, set by whoever forms it (its statistics)

    @property
    def n_insns(self) -> int:
        return len(self.insns)


def scan(pc: int, flags: int, fetch16: Callable[[int], int], max_insns: int = MAX_BLOCK_INSNS,
         stop_at: Container[int] = ()) -> list[tuple[int, Insn | None, int]]:
    """Decodes from pc to the end of the block: a terminator, the page end, max_insns, or (as in
    QEMU) just before a debugger breakpoint in `stop_at`, so that a breakpoint always starts a block.
    Only the first instruction may cross a page boundary (as in QEMU)."""
    out: list[tuple[int, Insn | None, int]] = []
    page = pc >> abi.PAGE_BITS
    cur = pc
    fs_on = bool(flags & abi.FLAG_FS_ON)
    while len(out) < max_insns:
        if cur >> abi.PAGE_BITS != page or (out and cur in stop_at):
            break
        try:
            lo = fetch16(cur)
        except FetchFault:
            if not out:
                raise
            break
        if lo & 3 == 3:
            if (cur + 2) >> abi.PAGE_BITS != page and out:
                break
            try:
                hi = fetch16(cur + 2)
            except FetchFault:
                if not out:
                    raise
                break
            raw = lo | (hi << 16)
        else:
            raw = lo
        insn = decode(raw)
        if insn is not None and (insn.name not in EMITTERS or (_is_fp(insn) and not fs_on)):
            insn = None
        if insn is not None and not fs_on and insn.fmt in ("CSR", "CSRI") and insn.csr in _FP_CSRS:
            insn = None
        out.append((cur, insn, raw))
        if insn is None or (insn.name in TERMINATORS and not (insn.name in SIDE_EXITS and insn.imm > 0)):
            break
        cur += insn.length
    return out


def _is_self_loop(pc: int, insns: list[tuple[int, Insn | None, int]]) -> bool:
    last_pc, last, _ = insns[-1]
    if last is None or last.name not in SIDE_EXITS or last_pc + last.imm != pc:
        return False
    return all(i is not None and (i.name not in TERMINATORS or i.name in SIDE_EXITS) for _, i, _ in insns)


def _has_internal_branch(insns: list[tuple[int, Insn | None, int]]) -> bool:
    pcs = {ipc for ipc, _, _ in insns}
    return any(i is not None and i.name in SIDE_EXITS and i.imm > 0 and ipc + i.imm in pcs
               for ipc, i, _ in insns[:-1])


def _emit(b: BlockBuilder, insns: list[tuple[int, Insn | None, int]], internal: bool) -> None:
    if internal:
        # Forward branches land inside the block (registers preloaded, so joins can merge them).
        b.internal = {ipc: idx for idx, (ipc, _, _) in enumerate(insns)}
        if SPECULATE:
            b.speculable = {idx for idx, (_, i, _) in enumerate(insns) if i is not None and i.name in _SPECULABLE}
            b.speculate = SPECULATE
    for idx, (ipc, insn, raw) in enumerate(insns):
        b.join(idx)
        b.index = idx
        b.insn_pc = ipc
        b.insn_len = 2 if raw & 3 != 3 else 4
        if insn is None:
            b.sys_callout(raw & 0xFFFFFFFF, abi.SYS_ILLEGAL)
            break
        EMITTERS[insn.name](b, insn)
        if b.terminated:
            break


def build(pc: int, flags: int, insns: list[tuple[int, Insn | None, int]], name: str,
          loops: bool = True, tier: int = 1, hot: int = HOT_THRESHOLD, debug: bool = False) -> BlockCode:
    """Emits the IR function for a scanned block (`loops`: self-loops may iterate inside it;
    `tier` 0: compact cold code that counts its executions, 1: optimized). `debug`: pc holds a
    debugger breakpoint; the block is only a debug-stop callout for its first instruction."""
    mmu = (flags >> abi.FLAG_MMU_SHIFT) & 7
    if debug:
        insns = insns[:1]
        b = BlockBuilder(name, pc, mmu, flags, 1, tier, hot)
        b.sys_callout(0, abi.SYS_DEBUG)
        _, first, raw = insns[0]
        end = pc + (first.length if first is not None else (2 if raw & 3 != 3 else 4))
        return BlockCode(pc, flags, name, insns, b.function_text(), b.globals, [], end, [])
    b = BlockBuilder(name, pc, mmu, flags, len(insns), tier, hot)
    loop = LOOPS and loops and tier > 0 and _is_self_loop(pc, insns)
    internal = JOINS and tier > 0 and _has_internal_branch(insns)
    if loop or internal:
        # A dry run finds the registers the block touches: loaded at entry (so their values
        # dominate every join) and, in a self-loop, carried around in phis.
        probe = BlockBuilder(name, pc, mmu, flags, len(insns))
        _emit(probe, insns, internal)
        if loop:
            b.begin_loop(probe.touched, written=probe.written)
        else:
            b.preload(probe.touched)
    _emit(b, insns, loop or internal)
    end = insns_end(insns)
    if not b.terminated:
        b.exit_direct(end)
    if loop:
        b.finish_loop()
    return BlockCode(pc, flags, name, insns, b.function_text(), b.globals, b.chain_slots, end, b.targets,
                     b.direct)


def insns_end(insns: list[tuple[int, Insn | None, int]]) -> int:
    """The pc after the last scanned instruction."""
    last_pc, last, raw = insns[-1]
    return last_pc + (last.length if last is not None else (2 if raw & 3 != 3 else 4))


def build_region(members: list[tuple[int, list[tuple[int, Insn | None, int]]]], flags: int, name: str,
                 hot: int = HOT_THRESHOLD) -> BlockCode | None:
    """Emits one tier-1 function for several scanned blocks of a page (a region), entered at the
    first: each block is a member with its own header (translator/ir/loops.py), so a direct exit
    to a member is a branch inside the function, and a loop over them iterates without leaving
    it. Exits to other code are the members' exits as in their own blocks. None if some member is
    never branched to from another (it would be unreachable)."""
    pc, insns = members[0]
    mmu = (flags >> abi.FLAG_MMU_SHIFT) & 7
    touched: set[tuple[str, int]] = set()
    written: set[tuple[str, int]] = set()
    for mpc, minsns in members:
        probe = BlockBuilder(name, mpc, mmu, flags, len(minsns))
        _emit(probe, minsns, JOINS and _has_internal_branch(minsns))
        touched |= probe.touched
        written |= probe.written
    b = BlockBuilder(name, pc, mmu, flags, len(insns), 1, hot)
    # Registers no member writes are loaded once and never written back.
    b.begin_loop(touched, [(mpc, len(minsns)) for mpc, minsns in members], written)
    for k, (_, minsns) in enumerate(members):
        if k:
            b.enter_member(k)
        # Values the FP emitters keep for a block do not reach the other members.
        rvf.forget_state(b)
        _emit(b, minsns, True)
        if not b.terminated:
            b.exit_direct(insns_end(minsns))
    if not b.finish_loop():
        return None
    all_insns = [i for _, minsns in members for i in minsns]
    return BlockCode(pc, flags, name, all_insns, b.function_text(), b.globals, b.chain_slots,
                     insns_end(insns), b.targets, b.direct, members)


MODULE_HEADER = """
declare i64 @mirage_dispatch(ptr)
declare preserve_mostcc i64 @mirage_mem(ptr, i64, i64, i64, i64)
declare preserve_mostcc i64 @mirage_sys(ptr, i64, i64, i64)
declare i64 @mirage_mem_c(ptr, i64, i64, i64, i64)
declare i64 @mirage_sys_c(ptr, i64, i64, i64)
declare i64 @mirage_time(ptr)
declare i64 @mirage_ld1u(ptr, i64, i64, i64, i64)
declare i64 @mirage_ld1s(ptr, i64, i64, i64, i64)
declare i64 @mirage_ld2u(ptr, i64, i64, i64, i64)
declare i64 @mirage_ld2s(ptr, i64, i64, i64, i64)
declare i64 @mirage_ld4u(ptr, i64, i64, i64, i64)
declare i64 @mirage_ld4s(ptr, i64, i64, i64, i64)
declare i64 @mirage_ld8u(ptr, i64, i64, i64, i64)
declare void @mirage_st1(ptr, i64, i64, i64, i64, i64)
declare void @mirage_st2(ptr, i64, i64, i64, i64, i64)
declare void @mirage_st4(ptr, i64, i64, i64, i64, i64)
declare void @mirage_st8(ptr, i64, i64, i64, i64, i64)
declare void @llvm.x86.sse.ldmxcsr(ptr)
declare void @llvm.x86.sse.stmxcsr(ptr)
"""

MODULE_FOOTER = """
attributes #0 = { nounwind "frame-pointer"="none" }
!0 = !{!"branch_weights", i32 2000, i32 1}
!1 = !{!"branch_weights", i32 1, i32 2000}
"""


def module_text(blocks: list[BlockCode], extra_decls: str = "", table: tuple[str, list[str]] | None = None) -> str:
    """The module of `blocks`; with `table` (name, symbols), also a constant array of those
    symbols' addresses, so that linking looks up one symbol, not each (Engine.link). The blocks'
    functions and globals have internal linkage (translator/ir): the table is how they are
    reached, and a module with fewer global symbols links faster (about 15% on linux-shell's)."""
    parts = [MODULE_HEADER, extra_decls]
    for blk in blocks:
        parts.extend(blk.globals)
    if table is not None:
        name, symbols = table
        parts.append(f"@{name} = constant [{len(symbols)} x ptr] [{', '.join(f'ptr @{s}' for s in symbols)}]")
    for blk in blocks:
        parts.append(blk.text)
    parts.append(MODULE_FOOTER)
    return "\n".join(parts)
