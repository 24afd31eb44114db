"""The virtual M-mode CSR file: data plus one legalization rule per CSR (privileged spec 1.12).

Interrupt pending/enable and delegation registers are the machine's own (the monitor *is* the
M-level of this machine), read and written through the hart; everything else M-level lives in
`VirtualCsrs`. S-level CSRs accessed from virtual M-mode go to the machine's S-level rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.core import system
from runtime.core.hart import Hart, Trap
from translator import csrs as C

MASK64 = (1 << 64) - 1

# misa: RV64 with I, M, A, F, D, C, S, U (privileged spec 3.1.1).
MISA = (2 << 62) | sum(1 << (ord(x) - ord("A")) for x in "IMAFDCSU")

# medeleg: exceptions that may be delegated; ecall from M (11) is read-only zero (spec 3.1.8).
MEDELEG_MASK = sum(1 << c for c in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 15))
# mideleg and the software-writable bits of mip: the S-level interrupts.
S_IRQS = (1 << C.IRQ_SSI) | (1 << C.IRQ_STI) | (1 << C.IRQ_SEI)
MIE_MASK = S_IRQS | (1 << C.IRQ_MSI) | (1 << C.IRQ_MTI) | (1 << C.IRQ_MEI)
# mstatus bits that live in the monitor; the S-level ones stay in the machine's mstatus.
M_BITS = (C.MSTATUS_MIE | C.MSTATUS_MPIE | C.MSTATUS_MPP | C.MSTATUS_MPRV | C.MSTATUS_TVM | C.MSTATUS_TW
          | C.MSTATUS_TSR)
S_BITS = system.SSTATUS_WRITE

NUM_PMP = 16
PMP_GRAIN = 0  # G = 0: 4-byte granularity (NA4 allowed)


# M-level CSRs whose rule is to hold bits under a write mask (or a constant: None, read-only):
# they live in CSR slots of the hart, where the firmware's code reads and writes them in place
# (Machine.map_csr, unless a policy watches them); the rules in M_CSRS serve everyone else.
SLOT_CSRS: dict[int, tuple[str, int | None]] = {
    0x340: ("mscratch", MASK64),
    0x341: ("mepc", ~1 & MASK64),  # IALIGN=16: bit 0 is zero (spec 3.1.14)
    0x342: ("mcause", MASK64),
    0x343: ("mtval", MASK64),
    0xF14: ("mhartid", None),
    0x301: ("misa", None),  # WARL, writes ignored: they take the callout
}


def _slot(name: str) -> property:
    def get(self: VirtualCsrs) -> int:
        return self.hart.slot(self.slots[name])

    def put(self: VirtualCsrs, v: int) -> None:
        self.hart.set_slot(self.slots[name], v)
    return property(get, put)


@dataclass(slots=True)
class VirtualCsrs:
    """M-level state of one hart that is not machine state. mscratch, mepc, mcause and mtval are
    in the hart's CSR slots (`bind`)."""

    hart: Hart | None = None
    slots: dict[str, int] = field(default_factory=dict)
    mstatus_m: int = 0  # Only M_BITS
    mtvec: int = 0
    mcounteren: int = 0
    menvcfg: int = 0
    tselect: int = 0
    pmpcfg: list[int] = field(default_factory=lambda: [0] * NUM_PMP)
    pmpaddr: list[int] = field(default_factory=lambda: [0] * NUM_PMP)

    mscratch = _slot("mscratch")
    mepc = _slot("mepc")
    mcause = _slot("mcause")
    mtval = _slot("mtval")

    def bind(self, hart: Hart, slots: dict[str, int]) -> None:
        """Keeps the slot CSRs in `hart`'s slots (names of SLOT_CSRS -> Machine.csr_slot)."""
        self.hart, self.slots = hart, slots
        hart.set_slot(slots["mhartid"], hart.id)
        hart.set_slot(slots["misa"], MISA)


class Access:
    """The hart and machine a rule acts on."""

    def __init__(self, monitor, hart: Hart, raw: int) -> None:
        self.mon = monitor
        self.machine = monitor.machine
        self.h = hart
        self.v: VirtualCsrs = monitor.ctx[hart.id].csr
        self.raw = raw


Rule = tuple[Callable[[Access], int], Callable[[Access, int], None] | None]


def _ro(value: Callable[[Access], int]) -> Rule:
    return (value, None)


def _field(name: str, mask: int = MASK64, after: Callable[[Access], None] | None = None) -> Rule:
    def read(a: Access) -> int:
        return getattr(a.v, name)

    def write(a: Access, val: int) -> None:
        setattr(a.v, name, val & mask)
        if after is not None:
            after(a)
    return (read, write)


def _r_mstatus(a: Access) -> int:
    return system.fix_sd((a.h.s.mstatus & ~M_BITS) | a.v.mstatus_m | (2 << 32) | (2 << 34))


def _w_mstatus(a: Access, val: int) -> None:
    # MPP is WARL: the reserved encoding 2 keeps the previous value (spec 3.1.6.1).
    mpp = (val >> 11) & 3
    if mpp == 2:
        val = (val & ~C.MSTATUS_MPP) | (a.v.mstatus_m & C.MSTATUS_MPP)
    a.v.mstatus_m = val & M_BITS
    old = a.h.s.mstatus
    new = system.fix_sd((old & ~S_BITS) | (val & S_BITS))
    a.h.s.mstatus = new
    if (old ^ new) & C.MSTATUS_MXR:
        a.machine.flush_tlb(a.h)
    a.mon.mprv_changed(a.h)
    a.machine.request_exit(a.h)


def _w_mtvec(a: Access, val: int) -> None:
    a.v.mtvec = C.tvec(val, a.v.mtvec)


def _w_medeleg(a: Access, val: int) -> None:
    a.h.medeleg = val & MEDELEG_MASK


def _w_mideleg(a: Access, val: int) -> None:
    a.h.mideleg = val & S_IRQS
    a.machine.request_exit(a.h)


def _w_mie(a: Access, val: int) -> None:
    a.h.mie = val & MIE_MASK
    a.machine.request_exit(a.h)


def _r_mip(a: Access) -> int:
    return a.h.mip | a.mon.external_seip(a.h)


def _w_mip(a: Access, val: int) -> None:
    # SSIP, STIP and SEIP are writable from M-mode; MSIP/MTIP/MEIP come from devices (spec 3.1.9).
    a.h.mip = (a.h.mip & ~S_IRQS) | (val & S_IRQS)
    a.machine.request_exit(a.h)


def _r_counter(num: int) -> Callable[[Access], int]:
    def read(a: Access) -> int:
        # The emulated instruction trapped, so it is not counted yet: retired() is what came before.
        return a.h.counter(num, a.h.retired())
    return read


def _w_counter(num: int) -> Callable[[Access, int], None]:
    def write(a: Access, val: int) -> None:
        a.h.set_counter(num, val, a.h.retired())
    return write


def _w_countinhibit(a: Access, val: int) -> None:
    a.h.set_countinhibit(val, a.h.retired())


def _pmpcfg(n: int) -> Rule:
    # RV64: only even pmpcfg registers exist, each holding 8 entries (spec 3.7.1).
    def read(a: Access) -> int:
        return sum(a.v.pmpcfg[i] << (8 * (i - 4 * n)) for i in range(4 * n, 4 * n + 8) if i < NUM_PMP)

    def write(a: Access, val: int) -> None:
        for i in range(4 * n, min(4 * n + 8, NUM_PMP)):
            if a.v.pmpcfg[i] & 0x80:
                continue  # Locked entries ignore writes (spec 3.7.1)
            cfg = (val >> (8 * (i - 4 * n))) & 0x9F
            if cfg & 0x3 == 0x2:
                cfg &= ~0x3  # R=0, W=1 is reserved: drop W (WARL)
            a.v.pmpcfg[i] = cfg
        a.mon.pmp_changed(a.h)
    return (read, write)


def _pmpaddr(i: int) -> Rule:
    def read(a: Access) -> int:
        return a.v.pmpaddr[i] if i < NUM_PMP else 0

    def write(a: Access, val: int) -> None:
        if i >= NUM_PMP:
            return
        locked = a.v.pmpcfg[i] & 0x80
        # A locked TOR entry also locks the address below it (spec 3.7.1).
        nxt_tor_locked = i + 1 < NUM_PMP and a.v.pmpcfg[i + 1] & 0x80 and (a.v.pmpcfg[i + 1] >> 3) & 3 == 1
        if locked or nxt_tor_locked:
            return
        a.v.pmpaddr[i] = val & ((1 << 54) - 1)
        a.mon.pmp_changed(a.h)
    return (read, write)


def _tselect_read(a: Access) -> int:
    # No triggers: tselect reads back a value other than the one written (debug spec 5.7.1).
    return (~a.v.tselect) & MASK64


# CSRs whose rules read the retired-instruction count (the accessing instruction not included).
COUNTERS = frozenset((0xB00, 0xB02, 0xC00, 0xC02, 0x320))

M_CSRS: dict[int, Rule] = {
    0xF11: _ro(lambda a: 0),  # mvendorid: non-commercial implementation
    0xF12: _ro(lambda a: 0),  # marchid
    0xF13: _ro(lambda a: 0),  # mimpid
    0xF14: _ro(lambda a: a.h.id),  # mhartid
    0xF15: _ro(lambda a: 0),  # mconfigptr: no configuration structure
    0x300: (_r_mstatus, _w_mstatus),
    0x301: (lambda a: MISA, lambda a, v: None),  # misa: WARL, writes ignored
    0x302: (lambda a: a.h.medeleg, _w_medeleg),
    0x303: (lambda a: a.h.mideleg, _w_mideleg),
    0x304: (lambda a: a.h.mie, _w_mie),
    0x305: (lambda a: a.v.mtvec, _w_mtvec),
    0x306: _field("mcounteren", 0x7, after=lambda a: a.machine.set_counteren(a.h, a.v.mcounteren)),
    0x30A: _field("menvcfg", 0x1),
    0x320: (lambda a: a.h.countinhibit, _w_countinhibit),
    0x340: _field("mscratch"),
    0x341: _field("mepc", ~1 & MASK64),
    0x342: _field("mcause"),
    0x343: _field("mtval"),
    0x344: (_r_mip, _w_mip),
    0xB00: (_r_counter(0), _w_counter(0)),
    0xB02: (_r_counter(2), _w_counter(2)),
    0xC00: _ro(_r_counter(0)),
    0xC01: _ro(lambda a: system.platform_mtime(a.machine)),
    0xC02: _ro(_r_counter(2)),
    0x7A0: (_tselect_read, lambda a, v: setattr(a.v, "tselect", v)),
}
for _n in range(3, 32):
    M_CSRS[0xB00 + _n] = (lambda a: 0, lambda a, v: None)  # mhpmcounterN: WARL zero
    M_CSRS[0x320 + _n] = (lambda a: 0, lambda a, v: None)  # mhpmeventN
    M_CSRS[0xC00 + _n] = _ro(lambda a: 0)  # hpmcounterN
for _n in range(0, 16, 2):
    M_CSRS[0x3A0 + _n] = _pmpcfg(_n)
for _n in range(64):
    M_CSRS[0x3B0 + _n] = _pmpaddr(_n)


def fast_op(insn) -> Callable[[Access, memoryview], None] | None:
    """One firmware CSR instruction on an M-level CSR, specialized into a function of the rule
    context and the hart's registers (a 64-bit view of its native state, x at index 0) that
    performs it, rd included, with the same rules as `read_write`; None when it needs the general
    path (S-level CSRs, or a write that raises an illegal instruction)."""
    num = insn.csr
    rule = M_CSRS.get(num)
    if rule is None:
        return None
    read, write = rule
    z = system.Zicsr.of(insn)
    if z.writes and (write is None or num >> 10 == 3):
        return None
    reads, writes, rd, source, new = z.reads, z.writes, z.rd, z.source, z.new

    def run(a: Access, x: memoryview) -> None:
        old = read(a) if reads else 0
        if writes:
            write(a, new(old, source(x.__getitem__)))
        if rd:
            x[rd] = old & MASK64
    return run


def read_write(monitor, hart: Hart, num: int, raw: int, z: system.Zicsr, src: int) -> int:
    """Performs one CSR instruction from virtual M-mode (z, with its source value); returns the old
    value for rd."""
    rule = M_CSRS.get(num)
    if rule is None:
        srule = system.S_CSRS.get(num)
        if srule is None:
            raise Trap(C.ILLEGAL_INSN, raw)
        # S-level CSRs: M-mode may access them with S-level rules.
        read, write = srule[0], srule[1]
        acc = system.CsrContext(monitor.machine, hart, raw)
    else:
        read, write = rule
        acc = Access(monitor, hart, raw)
    if z.writes and (write is None or num >> 10 == 3):
        raise Trap(C.ILLEGAL_INSN, raw)
    saved = hart.priv
    try:
        if rule is None:
            hart.priv = C.PRV_S  # Let the S-level rule see a privileged access
        old = read(acc) if z.reads else 0
        if z.writes:
            new = z.new(old, src)
            watchers = monitor.csr_watch.get(num)
            if watchers:
                for p in watchers:  # Policies may change or drop the firmware's write
                    if new is not None:
                        new = p.csr_write(hart, num, new)
            if new is not None:
                write(acc, new)
    finally:
        hart.priv = saved
    if z.writes and num == 0x100:
        monitor.mprv_changed(hart)  # sstatus.SUM chooses the MMU of MPRV accesses with MPP = S
    return old
