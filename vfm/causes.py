"""Names of M-level trap causes and interrupts, as the monitor's statistics and policies spell them."""

from __future__ import annotations

from translator import csrs as C

CAUSE_NAMES = {
    C.INSN_MISALIGNED: "insn_misaligned", C.INSN_ACCESS: "insn_access_fault", C.ILLEGAL_INSN: "illegal_insn",
    C.BREAKPOINT: "breakpoint", C.LOAD_MISALIGNED: "load_misaligned", C.LOAD_ACCESS: "load_access_fault",
    C.STORE_MISALIGNED: "store_misaligned", C.STORE_ACCESS: "store_access_fault", C.ECALL_U: "ecall_u",
    C.ECALL_S: "ecall_s", C.ECALL_M: "ecall_m", C.INSN_PAGE_FAULT: "insn_page_fault",
    C.LOAD_PAGE_FAULT: "load_page_fault", C.STORE_PAGE_FAULT: "store_page_fault",
}
IRQ_NAMES = {C.IRQ_SSI: "SSI", C.IRQ_MSI: "MSI", C.IRQ_STI: "STI", C.IRQ_MTI: "MTI", C.IRQ_SEI: "SEI",
             C.IRQ_MEI: "MEI"}


def cause_name(cause: int) -> str:
    return CAUSE_NAMES.get(cause, str(cause))


def irq_name(irq: int) -> str:
    return IRQ_NAMES.get(irq, str(irq))
