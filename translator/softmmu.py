"""The softmmu's native side: the TLB refill that walks Sv39 page tables without Python, the TLB
scans the runtime's flushes use, and the S-mode sfence.vma with an address.

A data-TLB miss in generated code calls the memory callout (`mirage_mem`), a code-TLB miss of the
interpreter calls `mirage_fetch`; both first try `mirage_refill`: the Sv39 walk of privileged spec
4.3.2, which fills the TLB entry and performs the access when nothing needs Python: the OS world, an
aligned access, page tables and target in RAM, and a target page the access guard is known to allow
(the per-RAM-page gperm table that runtime/core/mmu.py fills from the guard, abi.GPERM_*). Everything else
(faults, bare mode, MMIO, guarded or watched pages, the firmware's MPRV accesses, -d mmu) takes the
callout into Python, whose walk (runtime/core/mmu.py `Mmu.walk`) is the complete one: the refill only
ever agrees with it or declines, which tests/test_softmmu.py checks on random page tables.

The system callout (`mirage_sys`) completes an S-mode sfence.vma with an address here when it drops
nothing but TLB entries and jump-cache slots (`_SYS`); every other system instruction, and that one
whenever the runtime keeps more for the page, goes to Python (tests/test_sfence.py).
"""

from __future__ import annotations

from translator import abi
from translator import csrs as C

PPN_MASK = (1 << 44) - 1
INVALID = -1  # abi.TLB_INVALID as a signed i64 constant
# PTE bits (privileged spec 4.3.1, Figure 4.21)
PTE_V, PTE_R, PTE_W, PTE_X, PTE_U, PTE_A, PTE_D = 1, 2, 4, 8, 16, 64, 128
ACC_R, ACC_W, ACC_X = 0, 1, 2  # Access kinds, as in the gperm bits


def _shift(n: int) -> int:
    assert n & (n - 1) == 0
    return n.bit_length() - 1


assert abi.TLB_SIZE == abi.CTLB_SIZE
# What the runtime calls: the scans, void(hart_t *, uint64_t page offset in RAM) and void(hart_t *,
# uint64_t vaddr, uint64_t MMU-index mask); and the refill, bool(hart_t *, uint64_t vaddr, uint64_t
# mmu, uint64_t access), for tests.
NATIVE_ENTRIES = ("mirage_tlb_unwrite", "mirage_tlb_flush_page", "mirage_refill")


def softmmu_ir() -> str:
    """`mirage_mem_c` (the memory callout's C entry), `mirage_fetch`, the refill, the TLB scans
    `mirage_tlb_unwrite` and `mirage_tlb_flush_page`, and `mirage_sys_c` (the system callout's C
    entry, with the native sfence.vma), as IR text."""
    return _REFILL + _MEM + _FETCH + _SCANS + _SYS


def _gep(name: str, off: int | str, base: str = "%h") -> str:
    return f"  {name} = getelementptr inbounds i8, ptr {base}, i64 {off}\n"


def _entry(name: str, mmu: str, index: str, code: bool) -> str:
    """IR: `name` = the address of entry `index` (below the TLB size) of MMU index `mmu`'s data
    TLB, or its code TLB (abi: hart_t.tlb, hart_t.ctlb)."""
    size, entry, base = ((abi.CTLB_SIZE, abi.CTLB_ENTRY, abi.OFF_CTLB) if code
                         else (abi.TLB_SIZE, abi.TLB_ENTRY, abi.OFF_TLB))
    p = name.lstrip("%")
    return (f"  %{p}_j0 = mul i64 {mmu}, {size}\n  %{p}_j = add i64 %{p}_j0, {index}\n"
            f"  %{p}_o0 = shl i64 %{p}_j, {_shift(entry)}\n  %{p}_o = add i64 %{p}_o0, {base}\n"
            + _gep(name, f"%{p}_o"))


def _maps(name: str, tag: str, leaf: str) -> str:
    """IR: `name` (i1) = the entry with `tag`, cut from a leaf of `leaf` bytes (%anysup false: a
    page, whatever it says), maps %va (translator/softmmu.py mirage_tlb_flush_page)."""
    p = name.lstrip("%")
    return f"""  %{p}_sz = select i1 %anysup, i64 {leaf}, i64 {abi.PAGE_SIZE}
  %{p}_big = icmp ugt i64 %{p}_sz, {abi.PAGE_SIZE}
  %{p}_m0 = sub i64 0, %{p}_sz
  %{p}_m = select i1 %{p}_big, i64 %{p}_m0, i64 {-abi.PAGE_SIZE}
  %{p}_x = xor i64 {tag}, %va
  %{p}_xm = and i64 %{p}_x, %{p}_m
  {name} = icmp eq i64 %{p}_xm, 0
"""


_GPERM = f"""
; Does the gperm table say the RAM page at offset %off allows every access in %need (bits,
; abi.GPERM_*)? The caller checked %off is within RAM.
define internal i1 @mirage_gperm(ptr %h, i64 %off, i64 %need) #0 {{
{_gep("%tp", abi.OFF_GPERM)}  %t = load ptr, ptr %tp
  %i = lshr i64 %off, {abi.PAGE_BITS}
  %e = getelementptr inbounds i16, ptr %t, i64 %i
  %b16 = load i16, ptr %e
  %bits = zext i16 %b16 to i64
  %m = and i64 %bits, %need
  %r = icmp eq i64 %m, %need
  ret i1 %r
}}
"""

# The walk. Rules (privileged spec 4.3.2, Sv39 in 4.4.1), each also in Mmu.walk:
# - "If bits 63-39 ... do not all equal bit 38", a page fault (here: Python raises it).
# - Step 3: "If pte.v = 0, or if pte.r = 0 and pte.w = 1, or if any bits or encodings that are
#   reserved for future standard use are set within pte, stop and raise a page-fault exception".
# - Step 5: a leaf is checked against the privilege (U bit, SUM; S never executes U pages) and
#   the access (MXR makes executable pages readable); step 6: a superpage leaf with low PPN bits
#   set is misaligned; step 7: A (and D for a store) are set in the PTE, as QEMU does.
# The walk's own reads are S-mode reads for the access guard (3.7.2); the walk declines (returns
# false) wherever Python would fault or must decide.
_REFILL = _GPERM + f"""
; Fills the TLB entry of %va for MMU index %mmu (MMU_U, MMU_S or MMU_S_SUM) and access %acc
; (0 read, 1 write or AMO, 2 execute: the code TLB); false: Python must do it.
define i1 @mirage_refill(ptr %h, i64 %va, i64 %mmu, i64 %acc) #0 {{
entry:
{_gep("%wp", abi.OFF_WALK)}  %w = load i32, ptr %wp
  %won = icmp ne i32 %w, 0
{_gep("%fp", abi.OFF_FLAGS)}  %fl = load i64, ptr %fp
  %fpriv = and i64 %fl, {abi.FLAG_PRIV_MASK}
  %os = icmp ne i64 %fpriv, 3
  %mok = icmp ult i64 %mmu, {abi.MMU_M}
{_gep("%sp", abi.OFF_SATP)}  %satp = load i64, ptr %sp
  %mode = lshr i64 %satp, 60
  %sv39 = icmp eq i64 %mode, 8
  %top = ashr i64 %va, 38
  %top1 = add i64 %top, 1
  %topok = icmp ult i64 %top1, 2
  %c0 = and i1 %won, %os
  %c1 = and i1 %c0, %mok
  %c2 = and i1 %c1, %sv39
  %c3 = and i1 %c2, %topok
  br i1 %c3, label %start, label %no
start:
{_gep("%rbp", abi.OFF_RAM_BASE)}  %rb = load i64, ptr %rbp
{_gep("%rsp", abi.OFF_RAM_SIZE)}  %rs = load i64, ptr %rsp
{_gep("%rp", abi.OFF_RAM)}  %ram = load ptr, ptr %rp
  %rs8 = sub i64 %rs, 7
  %root0 = and i64 %satp, {PPN_MASK}
  %root = shl i64 %root0, 12
  br label %level
level:
  %lvl = phi i64 [ 2, %start ], [ %lvl1, %next ]
  %a = phi i64 [ %root, %start ], [ %a1, %next ]
  %l9 = mul i64 %lvl, 9
  %sh = add i64 %l9, 12
  %v0 = lshr i64 %va, %sh
  %vpn = and i64 %v0, 511
  %v8 = shl i64 %vpn, 3
  %pa = add i64 %a, %v8
  %off = sub i64 %pa, %rb
  %inram = icmp ult i64 %off, %rs8
  br i1 %inram, label %gchk, label %no
gchk:
  %gok = call i1 @mirage_gperm(ptr %h, i64 %off, i64 {1 << (3 * abi.MMU_S + ACC_R)})
  br i1 %gok, label %read, label %no
read:
  %pp = getelementptr i8, ptr %ram, i64 %off
  %pte = load i64, ptr %pp
  %pv = and i64 %pte, {PTE_V}
  %nv = icmp eq i64 %pv, 0
  %prw = and i64 %pte, {PTE_R | PTE_W}
  %wonly = icmp eq i64 %prw, {PTE_W}
  %hi = lshr i64 %pte, 54
  %rsvd = icmp ne i64 %hi, 0
  %bad0 = or i1 %wonly, %rsvd
  %bad = or i1 %bad0, %nv
  br i1 %bad, label %no, label %kind
kind:
  %prx = and i64 %pte, {PTE_R | PTE_X}
  %isleaf = icmp ne i64 %prx, 0
  %ppn0 = lshr i64 %pte, 10
  %ppn = and i64 %ppn0, {PPN_MASK}
  br i1 %isleaf, label %leaf, label %next
next:
  %a1 = shl i64 %ppn, 12
  %lvl1 = sub i64 %lvl, 1
  %more = icmp sge i64 %lvl1, 0
  br i1 %more, label %level, label %no
leaf:
  %pu = and i64 %pte, {PTE_U}
  %isu = icmp ne i64 %pu, 0
  %privu = icmp eq i64 %mmu, {abi.MMU_U}
  %sum = icmp eq i64 %mmu, {abi.MMU_S_SUM}
  %isx = icmp eq i64 %acc, {ACC_X}
  %isw = icmp eq i64 %acc, {ACC_W}
  %nsum = xor i1 %sum, true
  %xs = or i1 %isx, %nsum
  %npu = xor i1 %privu, true
  %f1a = and i1 %npu, %xs
  %f1 = and i1 %isu, %f1a
  %nisu = xor i1 %isu, true
  %f2 = and i1 %nisu, %privu
  %ufail = or i1 %f1, %f2
{_gep("%msp", abi.OFF_MSTATUS)}  %ms = load i64, ptr %msp
  %mxr0 = and i64 %ms, {C.MSTATUS_MXR}
  %mxr = icmp ne i64 %mxr0, 0
  %pr0 = and i64 %pte, {PTE_R}
  %pr = icmp ne i64 %pr0, 0
  %pw0 = and i64 %pte, {PTE_W}
  %pw = icmp ne i64 %pw0, 0
  %px0 = and i64 %pte, {PTE_X}
  %px = icmp ne i64 %px0, 0
  %mx = and i1 %mxr, %px
  %rok = or i1 %pr, %mx
  %wsel = select i1 %isw, i1 %pw, i1 %rok
  %permok = select i1 %isx, i1 %px, i1 %wsel
  %lm0 = shl i64 1, %l9
  %lm = sub i64 %lm0, 1
  %mis0 = and i64 %ppn, %lm
  %mis = icmp ne i64 %mis0, 0
  %nperm = xor i1 %permok, true
  %fail0 = or i1 %ufail, %nperm
  %fail = or i1 %fail0, %mis
  br i1 %fail, label %no, label %phys
phys:
  %leafsz = shl i64 1, %sh
  %omask = sub i64 %leafsz, 1
  %nomask = xor i64 %omask, -1
  %pbase0 = shl i64 %ppn, 12
  %pbase = and i64 %pbase0, %nomask
  %voff = and i64 %va, %omask
  %paddr = or i64 %pbase, %voff
  %ppage = and i64 %paddr, {-abi.PAGE_SIZE}
  %poff = sub i64 %ppage, %rb
  %pin = icmp ult i64 %poff, %rs
  br i1 %pin, label %pchk, label %no
pchk:
  %b3 = mul i64 %mmu, 3
  %b4 = add i64 %b3, %acc
  %bit = shl i64 1, %b4
  %pok = call i1 @mirage_gperm(ptr %h, i64 %poff, i64 %bit)
  br i1 %pok, label %wchk, label %no
wchk:
  ; A write needs a page with no code (a fast write entry) or with code but no watched word (a
  ; TLB_NOTDIRTY entry: mirage_mem_c checks each store against the code map).
  %wfast = call i1 @mirage_gperm(ptr %h, i64 %poff, i64 {abi.GPERM_WFAST})
  %wcode = call i1 @mirage_gperm(ptr %h, i64 %poff, i64 {abi.GPERM_CODE})
  %wany = or i1 %wfast, %wcode
  %nw = xor i1 %isw, true
  %wok = or i1 %nw, %wany
  br i1 %wok, label %ad, label %no
ad:
  %dbit = select i1 %isw, i64 {PTE_D}, i64 0
  %want = or i64 %dbit, {PTE_A}
  %have = and i64 %pte, %want
  %upd = icmp ne i64 %have, %want
  br i1 %upd, label %setad, label %fill
setad:
  %npte = or i64 %pte, %want
  store i64 %npte, ptr %pp
  br label %fill
fill:
  %vpage = and i64 %va, {-abi.PAGE_SIZE}
  %addend = sub i64 %poff, %vpage
  %vpn0 = lshr i64 %va, {abi.PAGE_BITS}
{_gep("%wkp", abi.OFF_STAT_WALKS)}  %wk0 = load i64, ptr %wkp
  %wk1 = add i64 %wk0, 1
  store i64 %wk1, ptr %wkp
  %sup = icmp ugt i64 %leafsz, {abi.PAGE_SIZE}
  %sup1 = zext i1 %sup to i64
{_gep("%nsp", abi.OFF_NSUPER)}  %ns0 = load i64, ptr %nsp
  %ns1 = add i64 %ns0, %sup1
  store i64 %ns1, ptr %nsp
  br i1 %isx, label %code, label %data
code:
  %ci = and i64 %vpn0, {abi.CTLB_SIZE - 1}
{_entry("%ce", "%mmu", "%ci", True)}  store i64 %vpage, ptr %ce
{_gep("%cap", abi.CTLB_ADDEND, "%ce")}  store i64 %addend, ptr %cap
{_gep("%clp", abi.CTLB_LEAF, "%ce")}  store i64 %leafsz, ptr %clp
  ret i1 true
data:
  %di = and i64 %vpn0, {abi.TLB_SIZE - 1}
{_entry("%de", "%mmu", "%di", False)}{_gep("%drp", abi.TLB_READ, "%de")}  %oread = load i64, ptr %drp
{_gep("%dwp", abi.TLB_WRITE, "%de")}  %owrite = load i64, ptr %dwp
{_gep("%dap", abi.TLB_ADDEND, "%de")}  %oadd = load i64, ptr %dap
{_gep("%dlp", abi.TLB_LEAF, "%de")}  %s1 = icmp eq i64 %oread, %vpage
  %s2 = icmp eq i64 %oadd, %addend
  %same = and i1 %s1, %s2
  %keepw = select i1 %same, i64 %owrite, i64 {INVALID}
  %vnd = or i64 %vpage, {abi.TLB_NOTDIRTY}
  %wtag = select i1 %wfast, i64 %vpage, i64 %vnd
  %nwrite = select i1 %isw, i64 %wtag, i64 %keepw
  store i64 %vpage, ptr %drp
  store i64 %nwrite, ptr %dwp
  store i64 %addend, ptr %dap
  store i64 %leafsz, ptr %dlp
  ret i1 true
no:
  ret i1 false
}}
"""


def _mem_access() -> str:
    """Performs an access whose TLB entry was just filled: loads return the value extended."""
    cases = []
    for lg in range(3):
        bits = 8 << lg
        cases.append(f"""st{lg}:
  %t{lg} = trunc i64 %v to i{bits}
  store i{bits} %t{lg}, ptr %p, align 1
  ret i64 0
ld{lg}:
  %l{lg} = load i{bits}, ptr %p, align 1
  %z{lg} = zext i{bits} %l{lg} to i64
  %x{lg} = sext i{bits} %l{lg} to i64
  %r{lg} = select i1 %sg, i64 %x{lg}, i64 %z{lg}
  ret i64 %r{lg}
""")
    return "".join(cases) + """st3:
  store i64 %v, ptr %p, align 1
  ret i64 0
ld3:
  %l3 = load i64, ptr %p, align 1
  ret i64 %l3
"""


_MEM = f"""
declare i64 @mirage_mem_py(ptr, i64, i64, i64, i64)

; The memory callout (abi: desc), from generated code after a TLB miss: refill natively, else
; Python.
define i64 @mirage_mem_c(ptr %h, i64 %a, i64 %v, i64 %desc, i64 %pc) #0 {{
entry:
  %lg = and i64 %desc, 15
  %sz = shl i64 1, %lg
  %sm = sub i64 %sz, 1
  %mis = and i64 %a, %sm
  %al = icmp eq i64 %mis, 0
  br i1 %al, label %entry2, label %slow
entry2:
  %m0 = lshr i64 %desc, {abi.DESC_MMU_SHIFT}
  %mmu = and i64 %m0, 15
  %di = lshr i64 %a, {abi.PAGE_BITS}
  %di1 = and i64 %di, {abi.TLB_SIZE - 1}
{_entry("%de", "%mmu", "%di1", False)}{_gep("%dwp", abi.TLB_WRITE, "%de")}{_gep("%dap", abi.TLB_ADDEND, "%de")}  %isst0 = and i64 %desc, {abi.DESC_STORE}
  %isst = icmp ne i64 %isst0, 0
  %vpage = and i64 %a, {-abi.PAGE_SIZE}
  %vnd = or i64 %vpage, {abi.TLB_NOTDIRTY}
  %w0 = load i64, ptr %dwp
  %nd0 = icmp eq i64 %w0, %vnd
  %ndst = and i1 %isst, %nd0
  br i1 %ndst, label %notdirty, label %try
try:
  %wr0 = and i64 %desc, {abi.DESC_STORE | abi.DESC_AMO}
  %wr = icmp ne i64 %wr0, 0
  %acc = zext i1 %wr to i64
  %ok = call i1 @mirage_refill(ptr %h, i64 %a, i64 %mmu, i64 %acc)
  br i1 %ok, label %filled, label %slow
filled:
  %w1 = load i64, ptr %dwp
  %nd1 = icmp eq i64 %w1, %vnd
  %ndst1 = and i1 %isst, %nd1
  br i1 %ndst1, label %notdirty, label %fast
notdirty:
  ; A store to a page with translated code: done here unless its 64-byte chunk holds code.
  %ad0 = load i64, ptr %dap
  %roff = add i64 %a, %ad0
  %rpg = lshr i64 %roff, {abi.PAGE_BITS}
{_gep("%cmp", abi.OFF_CODE_MAP)}  %cmap = load ptr, ptr %cmp
  %cwp = getelementptr inbounds i64, ptr %cmap, i64 %rpg
  %cw = load i64, ptr %cwp
  %ch0 = lshr i64 %roff, {abi.CODE_CHUNK_BITS}
  %ch = and i64 %ch0, 63
  %cb0 = lshr i64 %cw, %ch
  %cb = and i64 %cb0, 1
  %clean = icmp eq i64 %cb, 0
  br i1 %clean, label %ndstore, label %slow
ndstore:
{_gep("%ndp", abi.OFF_STAT_NOTDIRTY)}  %nd2 = load i64, ptr %ndp
  %nd3 = add i64 %nd2, 1
  store i64 %nd3, ptr %ndp
  br label %fast
fast:
  %addend = load i64, ptr %dap
{_gep("%rp", abi.OFF_RAM)}  %ram = load ptr, ptr %rp
  %off = add i64 %a, %addend
  %p = getelementptr i8, ptr %ram, i64 %off
  %sg0 = and i64 %desc, {abi.DESC_SIGNED}
  %sg = icmp ne i64 %sg0, 0
  br i1 %isst, label %store, label %load
store:
  switch i64 %lg, label %st3 [ i64 0, label %st0 i64 1, label %st1 i64 2, label %st2 ]
load:
  switch i64 %lg, label %ld3 [ i64 0, label %ld0 i64 1, label %ld1 i64 2, label %ld2 ]
{_mem_access()}slow:
  %s = call i64 @mirage_mem_py(ptr %h, i64 %a, i64 %v, i64 %desc, i64 %pc)
  ret i64 %s
}}
"""

_FETCH = f"""
declare i64 @mirage_fetch_py(ptr, i64)

; The half-word of code at %va (even) through the code TLB of the fetch view %fm, refilled on a
; miss; false: Python must fetch.
define internal i1 @mirage_code_half(ptr %h, i64 %va, i64 %fm, ptr %out) #0 {{
entry:
  %ci0 = lshr i64 %va, {abi.PAGE_BITS}
  %ci = and i64 %ci0, {abi.CTLB_SIZE - 1}
{_entry("%ce", "%fm", "%ci", True)}  %tag = load i64, ptr %ce
  %vpage = and i64 %va, {-abi.PAGE_SIZE}
  %hit = icmp eq i64 %tag, %vpage
  br i1 %hit, label %read, label %refill
refill:
  %ok = call i1 @mirage_refill(ptr %h, i64 %va, i64 %fm, i64 {ACC_X})
  br i1 %ok, label %read, label %no
read:
{_gep("%cap", abi.CTLB_ADDEND, "%ce")}  %addend = load i64, ptr %cap
{_gep("%rp", abi.OFF_RAM)}  %ram = load ptr, ptr %rp
  %off = add i64 %va, %addend
  %p = getelementptr i8, ptr %ram, i64 %off
  %w = load i16, ptr %p, align 1
  %w64 = zext i16 %w to i64
  store i64 %w64, ptr %out
  ret i1 true
no:
  ret i1 false
}}

; The interpreter's fetch when its inline code-TLB probe missed or pc is in the last half-word of
; a page (where a 32-bit instruction may cross into the next): the instruction at %pc (16 or 32
; bits); Python takes a misaligned pc and whatever the refill declines (faults included).
define i64 @mirage_fetch(ptr %h, i64 %pc) #0 {{
entry:
  %buf = alloca i64
  %odd0 = and i64 %pc, 1
  %odd = icmp ne i64 %odd0, 0
  br i1 %odd, label %slow, label %lo
lo:
{_gep("%fp", abi.OFF_FLAGS)}  %fl = load i64, ptr %fp
  %fm = and i64 %fl, {abi.FLAG_PRIV_MASK}
  %ok1 = call i1 @mirage_code_half(ptr %h, i64 %pc, i64 %fm, ptr %buf)
  br i1 %ok1, label %got1, label %slow
got1:
  %h1 = load i64, ptr %buf
  %q = and i64 %h1, 3
  %is32 = icmp eq i64 %q, 3
  br i1 %is32, label %hi, label %done16
done16:
  ret i64 %h1
hi:
  %pc2 = add i64 %pc, 2
  %ok2 = call i1 @mirage_code_half(ptr %h, i64 %pc2, i64 %fm, ptr %buf)
  br i1 %ok2, label %got2, label %slow
got2:
  %h2 = load i64, ptr %buf
  %h2s = shl i64 %h2, 16
  %w = or i64 %h1, %h2s
  ret i64 %w
slow:
  %r = call i64 @mirage_fetch_py(ptr %h, i64 %pc)
  ret i64 %r
}}
"""

# Scans for the runtime (runtime/core/mmu.py): whole-TLB walks that would cost milliseconds in Python.
_SCANS = f"""
; A physical page now holds code or a watched word: drop every fast write entry of this hart that
; maps it (%pkey: its offset in RAM); the data TLB entries themselves stay for reads.
define void @mirage_tlb_unwrite(ptr %h, i64 %pkey) #0 {{
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %cont ]
  %o0 = shl i64 %i, {_shift(abi.TLB_ENTRY)}
  %o = add i64 %o0, {abi.OFF_TLB}
{_gep("%e", "%o")}{_gep("%wp", abi.TLB_WRITE, "%e")}  %w = load i64, ptr %wp
{_gep("%ap", abi.TLB_ADDEND, "%e")}  %ad = load i64, ptr %ap
  %k0 = add i64 %w, %ad
  %k = and i64 %k0, {-abi.PAGE_SIZE}
  %valid = icmp ne i64 %w, {INVALID}
  %match = icmp eq i64 %k, %pkey
  %hit = and i1 %valid, %match
  br i1 %hit, label %drop, label %cont
drop:
  store i64 {INVALID}, ptr %wp
  br label %cont
cont:
  %i1 = add i64 %i, 1
  %done = icmp eq i64 %i1, {abi.NUM_MMU * abi.TLB_SIZE}
  br i1 %done, label %out, label %loop
out:
  ret void
}}

; sfence.vma with an address for the MMU indices in %mask (bit per index): drop the entries of the
; page of %va and, if any entry was cut from a superpage since the last full flush, every entry
; cut from a superpage that contains %va (privileged spec 4.2.1). The data and code TLBs have the
; same geometry (abi), so one index walks both.
define void @mirage_tlb_flush_page(ptr %h, i64 %va, i64 %mask) #0 {{
entry:
  %vpage = and i64 %va, {-abi.PAGE_SIZE}
{_gep("%nsp", abi.OFF_NSUPER)}  %ns = load i64, ptr %nsp
  %anysup = icmp ne i64 %ns, 0
  %vi0 = lshr i64 %va, {abi.PAGE_BITS}
  %vi = and i64 %vi0, {abi.TLB_SIZE - 1}
  %vi1 = add i64 %vi, 1
  %lo = select i1 %anysup, i64 0, i64 %vi
  %hi = select i1 %anysup, i64 {abi.TLB_SIZE}, i64 %vi1
  br label %mmu
mmu:
  %m = phi i64 [ 0, %entry ], [ %m1, %mnext ]
  %mb0 = lshr i64 %mask, %m
  %mb = and i64 %mb0, 1
  %on = icmp ne i64 %mb, 0
  br i1 %on, label %scan, label %mnext
scan:
  br label %ent
ent:
  %i = phi i64 [ %lo, %scan ], [ %i1, %econt ]
{_entry("%de", "%m", "%i", False)}{_gep("%drp", abi.TLB_READ, "%de")}  %rd = load i64, ptr %drp
{_gep("%dwp", abi.TLB_WRITE, "%de")}  %wr = load i64, ptr %dwp
{_gep("%dlp", abi.TLB_LEAF, "%de")}  %dl = load i64, ptr %dlp
{_maps("%dhit0", "%rd", "%dl")}  %wx = icmp eq i64 %wr, %vpage
  %dhit = or i1 %dhit0, %wx
  br i1 %dhit, label %ddrop, label %code
ddrop:
  store i64 {INVALID}, ptr %drp
  store i64 {INVALID}, ptr %dwp
  br label %code
code:
{_entry("%ce", "%m", "%i", True)}  %ct = load i64, ptr %ce
{_gep("%clp", abi.CTLB_LEAF, "%ce")}  %cl = load i64, ptr %clp
{_maps("%chit", "%ct", "%cl")}  br i1 %chit, label %cdrop, label %econt
cdrop:
  store i64 {INVALID}, ptr %ce
  br label %econt
econt:
  %i1 = add i64 %i, 1
  %edone = icmp eq i64 %i1, %hi
  br i1 %edone, label %mnext, label %ent
mnext:
  %m1 = add i64 %m, 1
  %mdone = icmp eq i64 %m1, {abi.NUM_MMU}
  br i1 %mdone, label %out, label %mmu
out:
  ret void
}}
"""

# sfence.vma (privileged spec 4.2.1) is 0001001 rs2 rs1 000 00000 1110011.
SFENCE_MASK, SFENCE_MATCH = 0xFE007FFF, 0x12000073
OS_MMUS = (1 << abi.MMU_U) | (1 << abi.MMU_S) | (1 << abi.MMU_S_SUM)

# The system callout's C entry (abi: desc), from generated code and the interpreter. An S-mode
# sfence.vma with an address completes here, doing what runtime/core/system.py does with it
# (Machine.sfence_vma), when that is all it would do:
# - Privileged spec 3.1.6.5: "When TVM=1, attempts to read or write the satp CSR or execute an
#   SFENCE.VMA or SINVAL.VMA instruction while executing in S-mode will raise an
#   illegal-instruction exception. When TVM=0, these operations are permitted in S-mode."
#   TVM set (hart_t.tvm), U-mode (where it is illegal too) and the firmware world take Python.
# - 4.2.1: "If rs1≠x0 and rs2=x0, the fence ... invalidates all address-translation cache
#   entries that contain leaf page table entries corresponding to the virtual address in rs1,
#   for all address spaces." With no ASIDs every rs2 gets that ("It is always legal to
#   over-fence"): the OS world's TLB entries of the page and of any superpage holding it
#   (mirage_tlb_flush_page), and the jump-cache slots of blocks starting on the page, whose
#   instructions were fetched through the old translation.
# - Python goes on with whatever else it keeps for the page: device-page translations (Mmu._io)
#   and jump-cache blocks crossing into the page (TranslationCache.jc_cross), both counted per
#   page in hart_t (abi.SFENCE_PAGES); and with a pending request for the run loop (want_exit),
#   which a system instruction honours. hart_t.sfence off (tracing, or Machine.native_sfence
#   false) sends every one there.
_SYS = f"""
declare i64 @mirage_sys_py(ptr, i64, i64, i64)
declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)

define i64 @mirage_sys_c(ptr %h, i64 %raw, i64 %pc, i64 %desc) #0 {{
entry:
  %kind = and i64 %desc, {0xFF | abi.DESC_COMPRESSED}
  %isinsn = icmp eq i64 %kind, {abi.SYS_INSN}
  %op = and i64 %raw, {SFENCE_MASK}
  %issf = icmp eq i64 %op, {SFENCE_MATCH}
  %rs1a = lshr i64 %raw, 15
  %rs1 = and i64 %rs1a, 31
  %hasaddr = icmp ne i64 %rs1, 0
{_gep("%fp", abi.OFF_FLAGS)}  %fl = load i64, ptr %fp
  %priv = and i64 %fl, {abi.FLAG_PRIV_MASK}
  %sup = icmp eq i64 %priv, {C.PRV_S}
{_gep("%onp", abi.OFF_SFENCE)}  %on = load i32, ptr %onp
{_gep("%tvmp", abi.OFF_TVM)}  %tvm = load i32, ptr %tvmp
{_gep("%wxp", abi.OFF_WANT_EXIT)}  %wx = load i32, ptr %wxp
  %ok0 = and i1 %isinsn, %issf
  %ok1 = and i1 %ok0, %hasaddr
  %ok2 = and i1 %ok1, %sup
  %onok = icmp ne i32 %on, 0
  %ok3 = and i1 %ok2, %onok
  %tvmw = or i32 %tvm, %wx
  %tvmok = icmp eq i32 %tvmw, 0
  %ok4 = and i1 %ok3, %tvmok
  br i1 %ok4, label %addr, label %slow
addr:
  %xo0 = shl i64 %rs1, 3
  %xo = add i64 %xo0, {abi.OFF_X}
{_gep("%xp", "%xo")}  %va = load i64, ptr %xp
  %vpn = lshr i64 %va, {abi.PAGE_BITS}
  %bk = and i64 %vpn, {abi.SFENCE_PAGES - 1}
  %bo = shl i64 %bk, 2
  %ioo = add i64 %bo, {abi.OFF_IO_PAGES}
{_gep("%iop", "%ioo")}  %io = load i32, ptr %iop
  %cro = add i64 %bo, {abi.OFF_CROSS_PAGES}
{_gep("%crp", "%cro")}  %cr = load i32, ptr %crp
{_gep("%isp", abi.OFF_IO_SUPER)}  %iosup = load i64, ptr %isp
  %iocr = or i32 %io, %cr
  %iocr64 = zext i32 %iocr to i64
  %py = or i64 %iocr64, %iosup
  %none = icmp eq i64 %py, 0
  br i1 %none, label %fence, label %slow
fence:
  call void @mirage_tlb_flush_page(ptr %h, i64 %va, i64 {OS_MMUS})
  %vpage = and i64 %va, {-abi.PAGE_SIZE}
  %j0 = lshr i64 %vpage, 1
  %j1 = and i64 %j0, {abi.JC_SIZE - 1}
  %jo0 = shl i64 %j1, {_shift(abi.JC_ENTRY)}
  %jo = add i64 %jo0, {abi.OFF_JC}
{_gep("%jp", "%jo")}  call void @llvm.memset.p0.i64(ptr %jp, i8 -1, i64 {(abi.PAGE_SIZE >> 1) * abi.JC_ENTRY}, i1 false)
{_gep("%scp", abi.OFF_STAT_SFENCE)}  %sc0 = load i64, ptr %scp
  %sc1 = add i64 %sc0, 1
  store i64 %sc1, ptr %scp
  %npc = add i64 %pc, 4
{_gep("%pcp", abi.OFF_PC)}  store i64 %npc, ptr %pcp
  ret i64 0
slow:
  %r = call i64 @mirage_sys_py(ptr %h, i64 %raw, i64 %pc, i64 %desc)
  ret i64 %r
}}
"""
