"""CSR numbers and names (privileged spec 1.12, Tables 2.2-2.6) and trap causes."""

from __future__ import annotations

CSR_NAMES: dict[int, str] = {
    0x001: "fflags", 0x002: "frm", 0x003: "fcsr",
    0xC00: "cycle", 0xC01: "time", 0xC02: "instret",
    0x100: "sstatus", 0x104: "sie", 0x105: "stvec", 0x106: "scounteren", 0x10A: "senvcfg",
    0x140: "sscratch", 0x141: "sepc", 0x142: "scause", 0x143: "stval", 0x144: "sip", 0x180: "satp",
    0xF11: "mvendorid", 0xF12: "marchid", 0xF13: "mimpid", 0xF14: "mhartid", 0xF15: "mconfigptr",
    0x300: "mstatus", 0x301: "misa", 0x302: "medeleg", 0x303: "mideleg", 0x304: "mie", 0x305: "mtvec",
    0x306: "mcounteren", 0x30A: "menvcfg", 0x320: "mcountinhibit",
    0x340: "mscratch", 0x341: "mepc", 0x342: "mcause", 0x343: "mtval", 0x344: "mip",
    0x747: "mseccfg", 0xB00: "mcycle", 0xB02: "minstret", 0x7A0: "tselect", 0x7A1: "tdata1",
}
for _i in range(3, 32):
    CSR_NAMES[0xC00 + _i] = f"hpmcounter{_i}"
    CSR_NAMES[0xB00 + _i] = f"mhpmcounter{_i}"
    CSR_NAMES[0x320 + _i] = f"mhpmevent{_i}"
for _i in range(16):
    CSR_NAMES[0x3A0 + _i] = f"pmpcfg{_i}"
for _i in range(64):
    CSR_NAMES[0x3B0 + _i] = f"pmpaddr{_i}"
CSR_NUMBERS: dict[str, int] = {v: k for k, v in CSR_NAMES.items()}

# Exception causes (privileged spec, Table 3.6)
INSN_MISALIGNED = 0
INSN_ACCESS = 1
ILLEGAL_INSN = 2
BREAKPOINT = 3
LOAD_MISALIGNED = 4
LOAD_ACCESS = 5
STORE_MISALIGNED = 6
STORE_ACCESS = 7
ECALL_U = 8
ECALL_S = 9
ECALL_M = 11
INSN_PAGE_FAULT = 12
LOAD_PAGE_FAULT = 13
STORE_PAGE_FAULT = 15

# Interrupts (bit numbers in mip/mie)
IRQ_SSI, IRQ_MSI, IRQ_STI, IRQ_MTI, IRQ_SEI, IRQ_MEI = 1, 3, 5, 7, 9, 11
INTERRUPT_BIT = 1 << 63

# mstatus fields (privileged spec 3.1.6)
MSTATUS_SIE = 1 << 1
MSTATUS_MIE = 1 << 3
MSTATUS_SPIE = 1 << 5
MSTATUS_UBE = 1 << 6
MSTATUS_MPIE = 1 << 7
MSTATUS_SPP = 1 << 8
MSTATUS_MPP = 3 << 11
MSTATUS_FS = 3 << 13
MSTATUS_XS = 3 << 15
MSTATUS_MPRV = 1 << 17
MSTATUS_SUM = 1 << 18
MSTATUS_MXR = 1 << 19
MSTATUS_TVM = 1 << 20
MSTATUS_TW = 1 << 21
MSTATUS_TSR = 1 << 22
MSTATUS_UXL = 3 << 32
MSTATUS_SXL = 3 << 34
MSTATUS_SD = 1 << 63

PRV_U, PRV_S, PRV_M = 0, 1, 3

# sstatus is a restricted view of mstatus (privileged spec 4.1.1); reads show UXL = 2 (64-bit)
# and SD summarizing FS/XS (3.1.6.6). The runtime's CSR rule (runtime/core/system.py) and the
# translator's inline sstatus path (translator/emit/system.py) both use these.
SSTATUS_READ = (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_UBE | MSTATUS_SPP | MSTATUS_FS | MSTATUS_XS
                | MSTATUS_SUM | MSTATUS_MXR | MSTATUS_UXL | MSTATUS_SD)
SSTATUS_WRITE = MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_FS | MSTATUS_SUM | MSTATUS_MXR
SSTATUS_UXL = 2 << 32


def fix_sd(mstatus: int) -> int:
    """SD summarizes FS/XS dirty state (privileged spec 3.1.6.6)."""
    dirty = (mstatus & MSTATUS_FS) == MSTATUS_FS or (mstatus & MSTATUS_XS) == MSTATUS_XS
    return (mstatus & ~MSTATUS_SD) | (MSTATUS_SD if dirty else 0)


def tvec(new: int, old: int) -> int:
    """A write of `new` to mtvec or stvec (privileged spec 3.1.7 and 4.1.2: MODE 0 is direct, 1
    vectored, values >= 2 reserved): a reserved mode keeps the previous one (WARL); BASE is the
    rest, 4-byte aligned."""
    mode = new & 3
    if mode > 1:
        mode = old & 3
    return (new & ~3 & ((1 << 64) - 1)) | mode


def csr_name(num: int) -> str:
    return CSR_NAMES.get(num, f"csr{num:#x}")
