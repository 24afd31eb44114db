"""The contract between generated code and the runtime: hart struct layout, exit codes, callouts.

Generated code reaches hart state only through the offsets below; the runtime allocates the same
struct with cffi. Nothing here knows about the monitor: privileged work leaves through callouts.
"""

from __future__ import annotations

from pathlib import Path

from translator import cffi_cache

# Softmmu TLB geometry (per hart, per MMU index), as QEMU's CPUTLBEntry: read and write tags, addend.
TLB_BITS = 10
TLB_SIZE = 1 << TLB_BITS
TLB_ENTRY = 32
# The interpreter's code TLB (per hart, per MMU index): tag and addend of pages it fetches from,
# apart from the data TLB so that code and data pages at the same index do not evict each other.
CTLB_BITS = 10
CTLB_SIZE = 1 << CTLB_BITS
CTLB_ENTRY = 32
# What the access guard allows the OS world on each RAM page, read by the native TLB refill
# (translator/softmmu.py): per hart, a uint16_t per page of RAM (index: page number within RAM),
# filled by the runtime (runtime/core/mmu.py) from the guard whenever its decisions may change.
# Bit 3 * mmu + access (0 read, 1 write, 2 execute) for MMU_U, MMU_S and MMU_S_SUM: every such
# access to the page is allowed in the OS world; GPERM_WFAST: the page may get fast write entries
# (it holds no translated code and no watched word).
GPERM_WFAST = 1 << 9
# The page holds translated code or a watched word: the refill may give it a TLB_NOTDIRTY entry.
GPERM_CODE = 1 << 10
# CSRs generated code reads and writes in place, without a callout (the runtime's plain S-level
# CSRs and whatever the monitor maps, Machine.map_csr): per hart, values in slots with a write
# mask, and per privilege (0 U, 1 S, 3 the firmware world) and CSR number a byte: 0 (take the
# callout) or the slot + 1, with CSR_READ_ONLY when a write must take the callout.
CSR_SLOTS = 16
CSR_READ_ONLY = 0x80
# An entry that is not a slot: the platform timer (the time CSR), read by mirage_time.
CSR_TIME = 0x7F
PAGE_BITS = 12
PAGE_SIZE = 1 << PAGE_BITS
# A tag that never matches an address (bits 3-11 are never set in a compared address).
TLB_INVALID = (1 << 64) - 1
# A write tag with this bit: the page holds translated code or a watched word, so stores leave the
# inline fast path and the memory callout's native entry does them unless they overlap those
# bytes (the code map: per RAM page a 64-bit mask of the 64-byte chunks that hold them).
TLB_NOTDIRTY = 1 << 11
CODE_CHUNK_BITS = 6

# MMU indices (the data-access view a block is compiled for).
MMU_U = 0  # U-mode through satp
MMU_S = 1  # S-mode through satp, SUM=0
MMU_S_SUM = 2  # S-mode through satp, SUM=1
MMU_M = 3  # Firmware (virtual M-mode): physical addresses, monitor's protection
NUM_MMU = 4

# Virtual-pc jump cache in front of the translation cache (QEMU: TB_JMP_CACHE_BITS).
JC_BITS = 16
JC_SIZE = 1 << JC_BITS
JC_ENTRY = 32
# What an sfence.vma with an address must see of the runtime's Python-side translation state (its
# device-page translations and the blocks in a jump cache that cross into a page), counted per
# hart by virtual page number modulo SFENCE_PAGES, so native code can tell where it has none.
SFENCE_PAGES = 1024

CDEF = f"""
typedef struct {{
    uint64_t read, write;
    uint64_t leaf;           /* Size of the page-table leaf it was cut from (superpages: > 4 KiB) */
    uint64_t addend;
}} tlb_entry_t;

typedef struct {{
    uint64_t tag, addend, leaf, pad;
}} ctlb_entry_t;

typedef struct {{
    uint64_t vpc, flags;
    void *fn;
    uint64_t pad;
}} jc_entry_t;

typedef struct {{
    uint64_t x[32];
    uint64_t f[32];
    uint64_t pc;
    int64_t budget;          /* Instructions left before returning to the run loop; zeroed to
                                request an exit at the next block boundary */
    uint32_t exit_now;       /* Set by a callout: the calling block must return at once */
    uint32_t interp;         /* Nonzero: jump-cache misses run in the interpreter (translator/interp.py) */
    uint64_t flags;          /* Translation flags of the current mode (part of every block key) */
    uint8_t *ram;            /* Host address of guest RAM */
    uint64_t resv;           /* LR reservation (guest address), all ones when none */
    uint32_t fflags;         /* Accrued FP exception flags (fcsr[4:0]) */
    uint32_t frm;            /* Dynamic rounding mode (fcsr[7:5]) */
    uint64_t mstatus;        /* Physical mstatus (S and U views, FS dirty tracking) */
    uint64_t mip, mie;       /* Physical interrupt pending and enable bits */
    uint64_t mideleg;        /* Interrupts delegated to S-mode (set by the monitor) */
    uint64_t hartid;
    uint64_t stat_dispatch;  /* Native dispatch lookups */
    uint64_t stat_jc_miss;   /* Lookups that missed the jump cache */
    uint64_t stat_chain;     /* Block-to-block transitions through chain slots */
    uint64_t stat_interp;    /* Instructions run by the interpreter */
    uint64_t stat_interp_cycles; /* Host cycle counter ticks spent in the interpreter */
    uint64_t in_interp;      /* Nonzero while the interpreter runs (callouts are attributed to it) */
    int32_t *heads;          /* The interpreter's tables, shared by a machine's harts (through */
    uint64_t *btab;          /* pointers: generated code never refers to data sections, which */
    uint32_t *rvc;           /* the JIT may place beyond a 32-bit offset): head counters, block */
    int64_t warm;            /* table, compressed-word expansions; and the warm threshold */
    uint64_t satp;           /* S-mode address translation and protection (Sv39 or bare) */
    uint64_t ram_base, ram_size; /* Guest RAM in physical addresses */
    uint32_t walk;           /* Nonzero: TLB misses try the native refill first (translator/softmmu.py) */
    uint32_t sfence;         /* Nonzero: an S-mode sfence.vma with an address may complete natively */
    uint64_t nsuper;         /* TLB entries cut from superpages since the last full flush */
    uint64_t stat_walks;     /* Page walks by the native refill that filled an entry */
    uint64_t *code_map;      /* Per RAM page, the 64-byte chunks holding translated code (TLB_NOTDIRTY) */
    uint64_t stat_notdirty;  /* Stores to pages with code done natively (they missed no code) */
    uint32_t tvm;            /* mstatus.TVM as it binds S-mode now (Hart.tvm) */
    uint32_t want_exit;      /* Hart.want_exit: the run loop is wanted once this instruction completes */
    uint64_t stat_sfence;    /* sfence.vma with an address completed natively (translator/softmmu.py) */
    uint64_t io_super;       /* Device-page translations the runtime keeps (Mmu._io) cut from superpages */
    uint32_t io_pages[{SFENCE_PAGES}];    /* ... the others, by virtual page number mod SFENCE_PAGES */
    uint32_t cross_pages[{SFENCE_PAGES}]; /* Pages that blocks in the jump cache cross into
                                (TranslationCache.jc_cross), by page number mod SFENCE_PAGES */
    uint16_t *gperm;         /* Per RAM page, what the access guard allows (GPERM_* in translator/abi.py) */
    uint64_t scratch[8];
    uint64_t csr[{CSR_SLOTS}];          /* CSR slots (CSR_SLOTS in translator/abi.py) */
    uint64_t csr_wmask[{CSR_SLOTS}];
    uint8_t csr_fast[4][4096];
    uint64_t time_base;      /* The time CSR (CSR_TIME): mtime = ((CLOCK_MONOTONIC ns - time_base) */
    uint64_t time_mult;      /* * time_mult >> 32) + time_offset, as Machine.time computes it */
    uint64_t time_offset;
    tlb_entry_t tlb[{NUM_MMU}][{TLB_SIZE}];
    ctlb_entry_t ctlb[{NUM_MMU}][{CTLB_SIZE}];
    jc_entry_t jc[{JC_SIZE}];
}} hart_t;
"""

# Built from a module kept next to this file (translator/cffi_cache.py): parsing CDEF at every start
# would take ~20 ms.
ffi = cffi_cache.load("abi", CDEF, Path(__file__).parent / "__pycache__")


def offset(field: str) -> int:
    """Byte offset of a hart_t field (dotted paths and indices are not needed by emitters)."""
    return ffi.offsetof("hart_t", field)


OFF_X = offset("x")
OFF_F = offset("f")
OFF_PC = offset("pc")
OFF_BUDGET = offset("budget")
OFF_EXIT_NOW = offset("exit_now")
OFF_INTERP = offset("interp")
OFF_FLAGS = offset("flags")
OFF_RAM = offset("ram")
OFF_RESV = offset("resv")
OFF_FFLAGS = offset("fflags")
OFF_FRM = offset("frm")
OFF_MSTATUS = offset("mstatus")
OFF_MIP = offset("mip")
OFF_MIE = offset("mie")
OFF_MIDELEG = offset("mideleg")
OFF_STAT_DISPATCH = offset("stat_dispatch")
OFF_STAT_JC_MISS = offset("stat_jc_miss")
OFF_STAT_CHAIN = offset("stat_chain")
OFF_STAT_INTERP = offset("stat_interp")
OFF_STAT_INTERP_CYCLES = offset("stat_interp_cycles")
OFF_IN_INTERP = offset("in_interp")
OFF_HEADS = offset("heads")
OFF_BTAB = offset("btab")
OFF_RVC = offset("rvc")
OFF_WARM = offset("warm")
OFF_SATP = offset("satp")
OFF_RAM_BASE = offset("ram_base")
OFF_RAM_SIZE = offset("ram_size")
OFF_WALK = offset("walk")
OFF_NSUPER = offset("nsuper")
OFF_STAT_WALKS = offset("stat_walks")
OFF_CODE_MAP = offset("code_map")
OFF_STAT_NOTDIRTY = offset("stat_notdirty")
OFF_SFENCE = offset("sfence")
OFF_TVM = offset("tvm")
OFF_WANT_EXIT = offset("want_exit")
OFF_STAT_SFENCE = offset("stat_sfence")
OFF_IO_SUPER = offset("io_super")
OFF_IO_PAGES = offset("io_pages")
OFF_CROSS_PAGES = offset("cross_pages")
OFF_GPERM = offset("gperm")
OFF_CSR = offset("csr")
OFF_CSR_WMASK = offset("csr_wmask")
OFF_CSR_FAST = offset("csr_fast")
OFF_TIME_BASE = offset("time_base")
OFF_TIME_MULT = offset("time_mult")
OFF_TIME_OFFSET = offset("time_offset")
OFF_TLB = offset("tlb")
OFF_CTLB = offset("ctlb")
OFF_JC = offset("jc")
HART_SIZE = ffi.sizeof("hart_t")
# Layout of a TLB entry (tlb_entry_t): tags by access kind, then the addend; of a code TLB entry.
TLB_READ = ffi.offsetof("tlb_entry_t", "read")
TLB_WRITE = ffi.offsetof("tlb_entry_t", "write")
TLB_ADDEND = ffi.offsetof("tlb_entry_t", "addend")
TLB_LEAF = ffi.offsetof("tlb_entry_t", "leaf")
CTLB_ADDEND = ffi.offsetof("ctlb_entry_t", "addend")
CTLB_LEAF = ffi.offsetof("ctlb_entry_t", "leaf")
assert ffi.sizeof("tlb_entry_t") == TLB_ENTRY and ffi.sizeof("jc_entry_t") == JC_ENTRY
assert ffi.sizeof("ctlb_entry_t") == CTLB_ENTRY

# Values a block or the dispatcher returns to the run loop.
EXIT_NEXT = 0  # Go on at pc (tier-0 blocks return it to the loop in mirage_enter)
EXIT_MISS = 1  # No translation for (pc, flags) in the jump cache
EXIT_POLL = 2  # Budget spent or exit requested: pc is the next block to run
EXIT_CALLOUT = 3  # A callout asked to stop (trap taken, code invalidated, machine halted)
EXIT_HOT = 4  # A tier-0 block reached its execution threshold: pc is its start, nothing ran
EXIT_WARM = 5  # The interpreter reached a warm block head: pc is the head, nothing ran
EXIT_MAX = 255  # Larger values a block returns are the next block's function (tier-0 chaining)

# Memory slow path: i64 mirage_mem(ptr hart, i64 vaddr, i64 value, i64 desc, i64 pc).
# desc packs the access: bits 0-3 log2(size), bit 4 store, bit 5 sign-extend, bit 6 fetch-as-AMO,
# bits 8-11 MMU index, bits 16-23 instructions left in the block after this one, bit 24 length 2.
DESC_STORE = 1 << 4
DESC_SIGNED = 1 << 5
DESC_AMO = 1 << 6
DESC_MMU_SHIFT = 8
DESC_REMAIN_SHIFT = 16
DESC_COMPRESSED = 1 << 24

# System callout: i64 mirage_sys(ptr hart, i64 insn_raw, i64 pc, i64 desc); desc bits 16-23 as above.
# It performs the instruction (or raises its trap) and sets pc; the block then dispatches.

# Translation flags (hart.flags): the mode a block was compiled for.
FLAG_PRIV_MASK = 0x3  # 0 U, 1 S, 3 firmware (virtual M)
FLAG_MMU_SHIFT = 2  # 3 bits: data MMU index
FLAG_FS_ON = 1 << 5  # FP unit enabled (mstatus.FS != Off)
# Single-step translation (only in block keys, never in hart.flags): one-instruction blocks that
# ignore breakpoints and never chain, run one at a time by Machine.step_insn for the debugger.
FLAG_STEP = 1 << 6

# System callout desc, low bits: what kind of instruction the callout performs.
SYS_INSN = 0  # A privileged/CSR/fence.i/ecall/ebreak instruction, given by its raw bits
SYS_ILLEGAL = 1  # Undecodable or unavailable: raise illegal instruction with tval = raw bits
SYS_FETCH_FAULT = 2  # Fetch of the next instruction faults: raise it at pc
SYS_DEBUG = 3  # A debugger breakpoint at pc: stop before the instruction runs (runtime/frontends/gdbstub.py)
