"""LLVM IR text builder for one guest block, in parts: IR text (text.py), registers (regs.py),
memory access (memory.py), exits and callouts (exits.py), self-loops (loops.py).

Guest registers live in the hart struct; within a block the builder keeps them in SSA values and
writes back dirty ones at exits and on slow paths, so the fast path carries no redundant stores.
IR is built as text (templates are far cheaper than llvmlite.ir builders, see shared notes).
"""

from __future__ import annotations

from translator import abi
from translator.ir.exits import Exits
from translator.ir.loops import Loops
from translator.ir.memory import MemoryAccess
from translator.ir.regs import Registers
from translator.ir.text import I64_MASK, IrText, const

__all__ = ["HOT_THRESHOLD", "I64_MASK", "BlockBuilder", "const"]

# Executions of a tier-0 block before it is recompiled at tier 1 (default). An optimized
# compile costs about 2.5 ms per block and saves about 1 ns per guest instruction, so it pays
# off only for blocks that run hundreds of thousands of instructions: a Linux boot spent 16 s
# promoting 5,700 blocks at 200 and 1.3 s promoting 290 at 20,000, with no loss on the CPU
# benchmarks (tests/bench).
HOT_THRESHOLD = 20000


class BlockBuilder(Loops, Exits, MemoryAccess, Registers, IrText):
    """Builds the body of one block function `i64 @name(ptr %h)` from its parts: IR text
    (text.py), registers (regs.py), memory access (memory.py), exits (exits.py) and self-loops
    (loops.py). The interpreter (translator/interp.py) is this builder with run-time fields."""

    def __init__(self, name: str, pc: int, mmu: int, flags: int, n_insns: int, tier: int = 1,
                 hot: int = HOT_THRESHOLD) -> None:
        self.name = name
        self.hot = hot
        # Tier 0 (cold code): compact IR compiled fast. Registers are written through to the hart
        # struct, memory accesses call the shared helpers, and a counter promotes hot blocks.
        self.tier = tier
        self._xout = False
        self.pc = pc
        self.mmu = mmu
        self.flags = flags
        self.n_insns = n_insns
        self.lines: list[str] = []
        self.globals: list[str] = []
        self._tmp = 0
        self._label = 0
        self.x_cache: dict[int, str] = {}
        self.x_dirty: set[int] = set()
        self.f_cache: dict[int, str] = {}
        self.f_dirty: set[int] = set()
        self.ram: str | None = None
        self.chain_slots: list[tuple[str, int]] = []  # (global name, target pc)
        self.targets: list[int] = []  # Static successors (direct exits, call return sites)
        self.terminated = False
        # Index of the instruction being emitted and its pc (for slow paths and traps).
        self.index = 0
        self.insn_pc = pc
        self.insn_len = 4
        self.uses_fp = False
        # Registers the block reads or writes (kind, number), for self-loop formation.
        self.touched: set[tuple[str, int]] = set()
        self.written: set[tuple[str, int]] = set()  # Those it writes
        # Loop mode (loops.py): a self-loop or a region; its members' pcs (a direct exit to one
        # branches to its header), registers, the budget and iteration counters flow along those
        # edges in SSA (phis), and leave through exits.
        self.loop = False
        self.members: dict[int, int] = {}
        self.member_insns: list[int] = []
        self.member_pcs: list[int] = []
        self.carried: list[tuple[str, int]] = []
        self.fixed: dict[tuple[str, int], str] = {}  # Registers no member writes: loaded once
        self.counts: dict[int, str] = {}
        self.budget: str | None = None
        # Header phis: (member, (kind, number), phi value, its line in `lines`), and each member's
        # incoming edges (label, values by key), completed by finish_loop.
        self._phis: list[tuple[int, tuple[str, int], str, int]] = []
        self._incoming: dict[int, list[tuple[str, dict]]] = {}
        # Direct exits' targets (also those that became in-function edges).
        self.direct: list[int] = []
        # The prologue counts the first instruction sequence (the first member of a loop).
        self.n_first = n_insns
        # Forward branches inside the block: pc -> instruction index, and the states waiting at
        # each landing index (label, x cache, f cache, budget).
        self.internal: dict[int, int] = {}
        self.pending: dict[int, list[tuple[str, dict, dict, str | None]]] = {}
        # If-conversion (regs.py `join`): indices of instructions that may run on both paths of a
        # forward branch over at most `speculate` of them, and the branches waiting at each landing
        # index (condition, x cache, f cache, instructions the taken path skips).
        self.speculable: set[int] = set()
        self.speculate = 0
        self.spec: dict[int, list[tuple[str, dict, dict, int]]] = {}

    # Facts known at translation time in a block and at run time in the interpreter
    def priv(self) -> int:
        """The privilege the code runs at."""
        return self.flags & abi.FLAG_PRIV_MASK

    def function_text(self) -> str:
        """The block function: prologue (instruction budget, which exit requests zero) plus the body."""
        head = [
            f"define internal i64 @{self.name}(ptr noalias %h) #0 {{",
            "entry:",
            f"  %bp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_BUDGET}",
            "  %b0 = load i64, ptr %bp",
            f"  %b1 = sub i64 %b0, {self.n_first}",
            "  store i64 %b1, ptr %bp",
            "  %stop = icmp slt i64 %b1, 0",
            "  br i1 %stop, label %poll, label %body, !prof !1",
            "poll:",
            "  store i64 %b0, ptr %bp",
            f"  ret i64 {abi.EXIT_POLL}",
            "body:",
        ]
        if self.tier == 0:
            # Execution counter: at the threshold, hand the block back for promotion untouched.
            head[-1:] = [
                "count:",
                f"  %hc = load i32, ptr @{self.name}_n",
                "  %hc1 = add i32 %hc, 1",
                f"  store i32 %hc1, ptr @{self.name}_n",
                f"  %hot = icmp eq i32 %hc1, {self.hot}",
                "  br i1 %hot, label %promote, label %body, !prof !1",
                "promote:",
                "  store i64 %b0, ptr %bp",
                f"  ret i64 {abi.EXIT_HOT}",
                "body:",
            ]
            head[head.index("  br i1 %stop, label %poll, label %body, !prof !1")] = (
                "  br i1 %stop, label %poll, label %count, !prof !1")
        else:
            # Execution counter (statistics, read at the end of a run): entries, and in a
            # loop each member's in-function entries in @<name>_l, @<name>_l1, ...
            head += [
                f"  %hc = load i64, ptr @{self.name}_n",
                "  %hc1 = add i64 %hc, 1",
                f"  store i64 %hc1, ptr @{self.name}_n",
            ]
            if self.loop:
                head += [f"  %lce{k} = load i64, ptr @{self.name}_l{k or ''}" for k in range(len(self.member_pcs))]
        if self.ram is not None:
            head += [
                f"  %ramp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_RAM}",
                "  %ram = load ptr, ptr %ramp",
            ]
        tail = ["xout:", f"  ret i64 {abi.EXIT_CALLOUT}"] if self._xout else []
        self.globals.append(f"@{self.name}_n = internal global i{32 if self.tier == 0 else 64} 0")
        if self.loop:
            self.globals += [f"@{self.name}_l{k or ''} = internal global i64 0" for k in range(len(self.member_pcs))]
        return "\n".join(head + self.lines + tail + ["}"])
