"""System instructions: Zicsr, Zifencei and the privileged ones. They end their block and leave
through the system callout, where the runtime (and, at M-level, the monitor) performs them."""

from __future__ import annotations

from translator import abi
from translator.emit import emits
from translator.ir import BlockBuilder
from translator.isa import Insn


@emits("csrrw", "csrrs", "csrrc", "csrrwi", "csrrsi", "csrrci", "ecall", "ebreak", "mret", "sret", "wfi",
       "sfence.vma", "fence.i", terminator=True)
def system(b: BlockBuilder, i: Insn) -> None:
    b.sys_callout(i.raw, abi.SYS_INSN)
