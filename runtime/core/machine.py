"""The machine: harts, physical memory, softmmu, translation cache, callouts and the run loop.

Native code runs guest blocks back to back; the loop here only handles translation misses, polls
(device time, interrupts, instruction limits) and stops. Everything at M-level (traps that are
not delegated, firmware privileged instructions) goes to the monitor through `Monitor`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from time import perf_counter

from runtime.core.device import Device
from runtime.core.hart import RUNTIME_SLOTS, GuestExit, Hart, Trap
from runtime.core.machine_api import Monitor, SysHook
from runtime.core.memory import PhysicalMemory
from runtime.core.mmu import AccessGuard, Mmu
from runtime.core.system import PLAIN_S_CSRS, execute
from runtime.core.tcache import TranslationCache
from runtime.core.trapguard import TrapGuard
from translator import abi
from translator import csrs as C
from translator.abi import ffi
from translator.block import MAX_BLOCK_INSNS, FetchFault
from translator.dispatch import CALLOUTS, MEM_HELPERS, dispatcher_ir
from translator.interp import HEADS_SIZE, WARM_THRESHOLD, rvc_table
from translator.isa import decode
from translator.jit import ANCHOR_IR, Engine
from translator.softmmu import NATIVE_ENTRIES

MASK64 = (1 << 64) - 1
SLICE = 1 << 22  # Instructions between polls of devices and timers
# With several harts (-smp N), the guest instructions a hart runs before the next one's turn (they
# take turns in this thread, switching between blocks): short enough that a hart spinning on a lock
# another holds, or waiting for another's answer to an IPI, does not wait long.
SMP_SLICE = 1 << 14
PENDING_SLICE = 1 << 16  # ... while the worker thread compiles code that is to be installed
TIME_SAMPLE = 8  # Callouts are timed during one run-loop slice in TIME_SAMPLE
TIME_CSR = C.CSR_NUMBERS["time"]


_RUNTIME_OBJECTS: dict[str, bytes] = {}


def _runtime_build(what: str, variant: str, make) -> bytes:
    """A build product kept in <cache root>/runtime/ (keyed by pcache.environment: translator
    sources, LLVM and host CPU, whatever --no-pcache says: it is part of the build, not a
    translation) and once per process."""
    from runtime.core.pcache import PersistentCache, cache_root

    data = _RUNTIME_OBJECTS.get(what + variant)
    if data is None:
        cache = PersistentCache()
        cache.dir = cache_root() / "runtime"
        key = cache.key(what, variant)
        hit = cache.get(key)
        if hit is not None:
            data = hit[0]
        else:
            t0 = perf_counter()
            data = make()
            cache.put(key, data, 0, perf_counter() - t0)
        _RUNTIME_OBJECTS[what + variant] = data
    return data


def _rvc_table() -> bytes:
    """The interpreter's compressed-word expansions (256 KiB, 0.15 s to make): kept beside the
    runtime object as <cache root>/runtime/rvc-<translator version>.bin, checked by its SHA-256
    (not in the object cache, whose entries must be objects), and once per process."""
    import hashlib
    import os

    from runtime.core.pcache import cache_root, translator_version

    data = _RUNTIME_OBJECTS.get("rvc")
    if data is not None:
        return data
    path = cache_root() / "runtime" / f"rvc-{translator_version()}.bin"
    try:
        blob = path.read_bytes()
        if hashlib.sha256(blob[32:]).digest() == blob[:32] and len(blob) == 32 + 4 * 65536:
            data = blob[32:]
    except OSError:
        pass
    if data is None:
        data = rvc_table()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(hashlib.sha256(data).digest() + data)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
    _RUNTIME_OBJECTS["rvc"] = data
    return data


def _runtime_object(engine: Engine) -> bytes:
    """The object code of the dispatcher, helpers and interpreter."""
    return _runtime_build("mirage runtime module", f"opt={engine.opt}",
                          lambda: engine.emit_object(dispatcher_ir()))


def _anchor_object(engine: Engine) -> bytes:
    """The object code of the engine's imports library (translator/jit.py ANCHOR_IR)."""
    return _runtime_build("mirage imports anchor", f"opt={engine.opt}", lambda: engine.emit_object(ANCHOR_IR))


class Machine:
    """A machine; what the monitor may use of it is runtime/core/machine_api.py `MachineInterface`."""

    def __init__(self, ram_base: int = 0x8000_0000, ram_size: int = 256 << 20, harts: int = 1,
                 opt: int = 2, icount: bool = False, timebase_hz: int = 10_000_000) -> None:
        self.mem = PhysicalMemory(ram_base, ram_size)
        self.mmu = Mmu(self.mem)
        self.harts = [Hart(i) for i in range(harts)]
        self.engine = Engine(opt=opt)
        self.icount = icount
        self.timebase_hz = timebase_hz
        # The platform timer: ticks = (CLOCK_MONOTONIC ns since _t0_ns) * _tmult >> 32, the formula
        # generated code uses for the time CSR (translator/dispatch.py mirage_time).
        self._t0_ns = time.monotonic_ns()
        self._tmult = (timebase_hz << 32) // 1_000_000_000
        self.halted: GuestExit | None = None
        self.monitor: Monitor | None = None
        self.max_insns: int | None = None
        self.callout_error: BaseException | None = None
        self.misaligned_trap = True
        self.pollers: list = []  # Polled between slices: fn(machine) -> None (devices, front ends)
        self.devices: dict[str, Device] = {}  # By name (add_device)
        self._roles: dict[str, Device] = {}  # The first device of each role
        self.trace = None  # runtime.frontends.trace.Tracer when -d is given
        self.sys_hook: SysHook | None = None  # The monitor's fast path for system instructions
        self.debug_stop: Hart | None = None  # A hart that reached a debugger breakpoint (runtime/frontends/gdbstub.py)
        self.stats_callouts = {"mem": 0, "sys": 0, "miss": 0, "poll": 0, "fetch": 0, "warm": 0}
        # Host seconds of those Python entries by cause ("hot": promotions), the part spent in
        # callouts the interpreter made, and the time in native code (callouts included).
        self.stats_seconds = dict.fromkeys([*self.stats_callouts, "hot"], 0.0)
        self._timing = False
        self._samples = {cause: [0, 0.0, 0.0] for cause in ("mem", "sys", "fetch")}  # n, s, interp s
        self.native_seconds = 0.0
        self.cycles_per_second = 0.0  # The host cycle counter's rate, measured over a run
        # Cold code runs in the native interpreter (translator/interp.py) until a block head has
        # run `warm_threshold` times; 0 translates every block on its first execution instead.
        self.warm_threshold = WARM_THRESHOLD
        self.store_watchers: list = []  # fn(hart, paddr, size) after slow-path stores to watched words
        self._watch_pages: set[int] = set()
        self.timer_sources: list[Device] = []  # Devices with a deadline
        self.waiters: list = []  # fn(seconds): block until input may have arrived
        self.trap_guard = TrapGuard(self)  # Idle traps count as instructions; trap loops stop
        self._install_callouts()
        import ctypes

        self.engine.add_import("clock_gettime", ctypes.cast(ctypes.CDLL(None).clock_gettime, ctypes.c_void_p).value)
        exports = ["mirage_dispatch", "mirage_enter", "mirage_interp", "mirage_cycles", "mirage_time", *CALLOUTS,
                   *(f"{name}_c" for name in CALLOUTS), *MEM_HELPERS, *NATIVE_ENTRIES]
        rt = self.engine.link(_runtime_object(self.engine), exports, permanent=True)
        self.engine.anchor_object = _anchor_object(self.engine)
        self.runtime_symbols = rt  # Name -> address of the runtime code's entries
        # The interpreter's tables (translator/interp.py), shared by the harts.
        self._heads = ffi.new("int32_t[]", HEADS_SIZE)
        self._btab = ffi.new("uint64_t[]", 4 * HEADS_SIZE)
        self.heads_addr = int(ffi.cast("uintptr_t", self._heads))
        self._rvc = ffi.new("uint32_t[]", 65536)
        ffi.memmove(self._rvc, _rvc_table(), 4 * 65536)
        self.cycles = ffi.cast("uint64_t(*)(void)", rt["mirage_cycles"])
        self.dispatch_addr = rt["mirage_dispatch"]
        for name, addr in rt.items():
            self.engine.add_import(name, addr)
        self._enter = ffi.cast("int64_t(*)(hart_t *)", rt["mirage_enter"])
        self.mmu.unwrite = ffi.cast("void(*)(hart_t *, uint64_t)", rt["mirage_tlb_unwrite"])
        self.mmu.flush_page_native = ffi.cast("void(*)(hart_t *, uint64_t, uint64_t)", rt["mirage_tlb_flush_page"])
        # TLB misses of the OS world refill natively (translator/softmmu.py); off: every miss
        # walks in Python (-d mmu turns it off to log each walk).
        self.native_refill = True
        # An S-mode sfence.vma with an address completes natively where nothing Python keeps needs
        # it (translator/softmmu.py mirage_sys_c); off: every one takes the system callout (and
        # -d turns it off, so that whatever is traced sees each).
        self.native_sfence = True
        self._native_sfences = 0  # Of those, the ones already on the statistics' time line
        # At the end of a run, compile what the next run would translate again (the front end sets
        # it when it saves a warm set: runtime/core/tcache.py finish_warm).
        self.finish_translations = False
        self.tcache = TranslationCache(self.engine, self.dispatch_addr)
        self.tcache.on_pages = self._code_installed
        self.tcache.read_phys = self.mem.read_bytes
        self.tcache.heads, self.tcache.btab = self.heads_addr, int(ffi.cast("uintptr_t", self._btab))
        self.tcache.ram_base = self.mem.ram_base
        for h in self.harts:
            # The interpreter fills jump caches natively: reap must clear every hart's.
            self.tcache.jc_harts[h.ptr] = h
            h.s.ram = ffi.cast("uint8_t *", self.mem.host_base)
            h.s.heads, h.s.btab = self._heads, self._btab
            h.s.rvc = self._rvc
            h.s.ram_base, h.s.ram_size = self.mem.ram_base, self.mem.ram_size
            h.s.code_map = self.mmu.code_map
            self.mmu.add_hart(h)
            h.s.time_base, h.s.time_mult = self._t0_ns, self._tmult
            self.mmu.guard_changed(h)
            self.tcache.jc_flush(h, "reset")
            h.update_flags()
        self.tcache.invalidations.clear()
        self._slots_used = RUNTIME_SLOTS
        for num, (_attr, slot, mask) in PLAIN_S_CSRS.items():
            self.map_csr(C.PRV_S, num, slot, mask)
        self.update_time_csr()

    # Devices
    def add_device(self, name: str, base: int, size: int, dev: Device) -> None:
        """Maps `dev` at [base, base + size) and wires what it declares (runtime/devices `Device`):
        its poller, its deadline, its role."""
        self.mem.add_device(base, size, dev, name)
        self.devices[name] = dev
        if dev.polled():
            self.pollers.append(dev.poll)
        if dev.timed():
            self.timer_sources.append(dev)
        if dev.role:
            self._roles.setdefault(dev.role, dev)

    def device(self, role: str) -> Device | None:
        """The device that plays `role` ("timer", "interrupt-controller", ...), if there is one."""
        return self._roles.get(role)

    # Callouts from generated code
    def _install_callouts(self) -> None:
        # Callouts from native code. An exception is reported after native code returns (the
        # block stops). During one run-loop slice in TIME_SAMPLE they are timed (`_timed`);
        # timing every one would add about 0.2 us to each.
        @ffi.callback("uint64_t(hart_t *, uint64_t, uint64_t, uint64_t, uint64_t)")
        def mem_cb(hp, vaddr, value, desc, pc):
            if self._timing:
                return self._timed("mem", hp, self._mem_slow, vaddr, value, desc, pc)
            try:
                return self._mem_slow(self._hart_of(hp), vaddr, value, desc, pc)
            except BaseException as e:  # noqa: BLE001 (reported after native code returns)
                return self._callout_failed(hp, e)

        @ffi.callback("int64_t(hart_t *, uint64_t, uint64_t, uint64_t)")
        def sys_cb(hp, raw, pc, desc):
            if self._timing:
                return self._timed("sys", hp, self._sys, raw, pc, desc)
            try:
                self._sys(self._hart_of(hp), raw, pc, desc)
            except BaseException as e:  # noqa: BLE001
                return self._callout_failed(hp, e)
            return 0

        @ffi.callback("uint64_t(hart_t *, uint64_t)")
        def fetch_cb(hp, pc):
            if self._timing:
                return self._timed("fetch", hp, self._fetch, pc)
            try:
                return self._fetch(self._hart_of(hp), pc)
            except BaseException as e:  # noqa: BLE001
                return self._callout_failed(hp, e)

        self._callbacks = (mem_cb, sys_cb, fetch_cb)
        for name, cb in (("mirage_mem_py", mem_cb), ("mirage_sys_py", sys_cb), ("mirage_fetch_py", fetch_cb)):
            self.engine.add_import(name, int(ffi.cast("uintptr_t", cb)))
        self._by_ptr: dict[int, Hart] = {}

    def _timed(self, cause: str, hp, fn, *args) -> int:
        """A callout made while timing is on: its host time and count (and the interpreter's
        share), from which `callout_seconds` estimates all of that cause's callouts."""
        t0 = perf_counter()
        try:
            return fn(self._hart_of(hp), *args) or 0
        except BaseException as e:  # noqa: BLE001
            return self._callout_failed(hp, e)
        finally:
            dt = perf_counter() - t0
            sample = self._samples[cause]
            sample[0] += 1
            sample[1] += dt
            if hp.in_interp:
                sample[2] += dt

    def callout_seconds(self) -> tuple[dict[str, float], float]:
        """Estimated host seconds of the callouts by cause (from the timed ones), and of those
        the interpreter made."""
        out, interp = {}, 0.0
        for cause, (n, secs, in_interp) in self._samples.items():
            scale = self.stats_callouts[cause] / n if n else 0.0
            out[cause] = secs * scale
            interp += in_interp * scale
        return out, interp

    def _hart_of(self, hp) -> Hart:
        if len(self.harts) == 1:
            return self.harts[0]
        ptr = int(ffi.cast("uintptr_t", hp))
        h = self._by_ptr.get(ptr)
        if h is None:
            self._by_ptr = {x.ptr: x for x in self.harts}
            h = self._by_ptr[ptr]
        return h

    def _callout_failed(self, hp, e: BaseException) -> int:
        if self.callout_error is None:
            self.callout_error = e
        hp.exit_now = 1
        return 0

    # Memory slow path
    def _mem_slow(self, hart: Hart, vaddr: int, value: int, desc: int, pc: int) -> int:
        self.stats_callouts["mem"] += 1
        size = 1 << (desc & 15)
        store = bool(desc & abi.DESC_STORE)
        mmu = (desc >> abi.DESC_MMU_SHIFT) & 15
        remain = (desc >> abi.DESC_REMAIN_SHIFT) & 0xFF
        amo = bool(desc & abi.DESC_AMO)
        access = "w" if (store or amo) else "r"
        hart.mem_pc = pc  # For access guards that report where an access came from
        try:
            if vaddr & (size - 1):
                if self.misaligned_trap or amo:
                    raise Trap(C.STORE_MISALIGNED if access == "w" else C.LOAD_MISALIGNED, vaddr)
                if store:
                    self.misaligned_store(hart, vaddr, size, value, mmu)
                    return 0
                v = self.misaligned_load(hart, vaddr, size, mmu)
                if desc & abi.DESC_SIGNED and v >> (8 * size - 1):
                    v -= 1 << (8 * size)
                return v & MASK64
            paddr = self.mmu.translate(hart, vaddr, access, mmu, size)
            if store:
                if not self.mem.write(paddr, size, value):
                    raise Trap(C.STORE_ACCESS, vaddr)
                self._after_store(hart, paddr, size)
                if self.mem.is_ram(paddr, size):
                    self.mmu.fill(hart, mmu, vaddr, paddr, True)
                self._stop_if_wanted(hart, pc, desc, remain)
                return 0
            v = self.mem.read(paddr, size)
            if v is None:
                raise Trap(C.STORE_ACCESS if amo else C.LOAD_ACCESS, vaddr)
            if self.mem.is_ram(paddr, size):
                self.mmu.fill(hart, mmu, vaddr, paddr, amo)
            if desc & abi.DESC_SIGNED and v >> (8 * size - 1):
                v -= 1 << (8 * size)
            # A load does not stop its block even if the device asked for the run loop (e.g. a
            # PLIC claim lowering SEIP): the block must still write the loaded value to rd, so the
            # request waits for the next store, system instruction or poll.
            return v & MASK64
        except Trap as t:
            hart.uncount(remain + 1)
            self.take_trap(hart, t.cause, t.tval, pc)
            hart.s.exit_now = 1
            return 0

    def _stop_if_wanted(self, hart: Hart, pc: int, desc: int, remain: int) -> None:
        """A device asked for the run loop (e.g. an interrupt line rose): the access completes and
        the block stops after this instruction. Not after the store of an AMO or SC (DESC_AMO):
        the instruction writes rd after it, so the request waits, as for loads."""
        if hart.want_exit and not hart.s.exit_now and not desc & abi.DESC_AMO:
            hart.pc = pc + (2 if desc & abi.DESC_COMPRESSED else 4)
            hart.uncount(remain)
            hart.s.exit_now = 1

    def misaligned_load(self, hart: Hart, vaddr: int, size: int, mmu: int | None = None) -> int:
        """A load of `size` bytes at vaddr done a byte at a time through `hart`'s data view (or
        TLB `mmu`), zero-extended; raises Trap on a fault. Privileged spec 3.1.16: for a fault of
        a misaligned access, tval is "the virtual address of the portion of the access that
        caused the fault"."""
        if mmu is None:
            mmu = hart.data_mmu()
        out = 0
        for i in range(size):
            a = (vaddr + i) & MASK64
            b = self.mem.read(self.mmu.translate(hart, a, "r", mmu), 1)
            if b is None:
                raise Trap(C.LOAD_ACCESS, a)
            out |= b << (8 * i)
        return out

    def misaligned_store(self, hart: Hart, vaddr: int, size: int, value: int, mmu: int | None = None) -> None:
        """A store of `size` bytes at vaddr done a byte at a time, as `misaligned_load`. Every byte
        is translated first: a store that faults changes no memory. Code it overwrites is dropped
        and store watchers run, as for any slow-path store."""
        if mmu is None:
            mmu = hart.data_mmu()
        paddrs = [self.mmu.translate(hart, (vaddr + i) & MASK64, "w", mmu) for i in range(size)]
        for i, p in enumerate(paddrs):
            if not self.mem.write(p, 1, value >> (8 * i)):
                raise Trap(C.STORE_ACCESS, (vaddr + i) & MASK64)
            self._after_store(hart, p, 1)

    def _after_store(self, hart: Hart, paddr: int, size: int) -> None:
        """A store reached RAM through the slow path: invalidate code it overwrote, run watchers."""
        ppn = paddr >> abi.PAGE_BITS
        if ppn in self.mmu.write_watch:
            if self.tcache.page_has_code(ppn):
                n = self.tcache.invalidate_range(paddr, size, "code-write", self.harts)
                if n:
                    hart.want_exit = True  # The running block may be among them

                if not self.tcache.page_has_code(ppn) and ppn not in self._watch_pages:
                    self.mmu.unwatch_page(ppn)
            if ppn in self._watch_pages:
                for watch in self.store_watchers:
                    watch(hart, paddr, size)

    def _code_installed(self, pages: tuple[int, ...], lo: int, hi: int) -> None:
        """A translation of physical bytes [lo, hi) on `pages` went in: stores over them must
        reach Python (on a second page, not contiguous with the first, the whole page counts)."""
        for ppn in pages:
            self.mmu.watch_page(ppn, self.harts)
        first = lo >> abi.PAGE_BITS
        self.mmu.mark_code(lo, min(hi, (first + 1) << abi.PAGE_BITS))
        for ppn in pages:
            if ppn != first:
                self.mmu.mark_code(ppn << abi.PAGE_BITS, (ppn + 1) << abi.PAGE_BITS)

    def watch_store(self, paddr: int, fn, size: int = 8) -> None:
        """Calls fn(hart, paddr, size) after every store that overlaps [paddr, paddr + size) (e.g.
        HTIF tohost), and maybe after others to its page."""
        self.store_watchers.append(fn)
        ppn = paddr >> abi.PAGE_BITS
        self._watch_pages.add(ppn)
        self.mmu.watch_page(ppn, self.harts)
        self.mmu.mark_code(paddr, paddr + size)

    # Instruction fetch for the interpreter (its code-TLB misses)
    def _fetch(self, hart: Hart, pc: int) -> int:
        """The instruction at pc (16 or 32 bits), filling the code TLB for its page; or takes the
        fetch trap (privileged spec 3.1.15: tval is the faulting half's address) and stops."""
        self.stats_callouts["fetch"] += 1
        try:
            return self.fetch_insn(hart, pc, fill=True)
        except Trap as t:
            hart.uncount(1)
            self.take_trap(hart, t.cause, t.tval, pc)
            hart.s.exit_now = 1
            return 0

    def fetch_insn(self, hart: Hart, pc: int, fill: bool = False) -> int:
        """The instruction at pc (16 or 32 bits) as `hart` fetches it now; raises Trap on a fault
        (privileged spec 3.1.15: tval is the faulting half's address). `fill`: its pages go in the
        interpreter's code TLB."""
        if pc & 1:
            raise Trap(C.INSN_MISALIGNED, pc)
        raw = 0
        for half in (0, 2):
            va = (pc + half) & MASK64
            paddr = self.mmu.fetch_translate(hart, va)
            if not self.mem.is_ram(paddr, 2):
                raise Trap(C.INSN_ACCESS, va)
            if fill:
                self.mmu.fill_code(hart, hart.s.flags & abi.FLAG_PRIV_MASK, va, paddr)  # The fetch view
            raw |= self.mem.read(paddr, 2) << (8 * half)
            if raw & 3 != 3:
                break
        return raw

    # Instruction fetch for the translator
    def _fetcher(self, hart: Hart):
        page_cache: dict[int, int] = {}

        def fetch16(vaddr: int) -> int:
            vpage = vaddr >> abi.PAGE_BITS
            base = page_cache.get(vpage)
            if base is None:
                try:
                    paddr = self.mmu.fetch_translate(hart, vaddr)
                except Trap as t:
                    raise FetchFault(vaddr) from t
                base = (paddr >> abi.PAGE_BITS) << abi.PAGE_BITS
                page_cache[vpage] = base
            paddr = base | (vaddr & (abi.PAGE_SIZE - 1))
            if not self.mem.is_ram(paddr, 2):
                raise FetchFault(vaddr)
            return self.mem.read(paddr, 2)
        return fetch16

    def _code_phys(self, hart: Hart):
        def to_phys(vaddr: int) -> int | None:
            try:
                p = self.mmu.fetch_translate(hart, vaddr)
            except Trap:
                return None
            return p if self.mem.is_ram(p, 2) else None
        return to_phys

    def _second_frame(self, hart: Hart, pc: int) -> int | None:
        """The frame (RAM) the page after pc's maps to for `hart`'s fetches, which a block at pc
        crossing into it reads from (any frame: not necessarily the one after pc's); None if that
        fetch faults."""
        try:
            p2 = self.mmu.fetch_translate(hart, (pc + 2) & MASK64)
        except Trap:
            return None
        return p2 & ~(abi.PAGE_SIZE - 1) if self.mem.is_ram(p2, 2) else None

    def _translate_at(self, hart: Hart, step: bool = False, warm: bool = False):
        """Finds or translates the block at hart.pc; returns it, or None if fetching it trapped.
        `step`: the one-instruction single-step block, kept out of the jump cache. `warm`: a head
        the interpreter found warm: that block alone (its successors warm up on their own)."""
        self.stats_callouts["warm" if warm else "miss"] += 1
        pc = hart.pc
        flags = hart.s.flags | (abi.FLAG_STEP if step else 0)
        if pc & 1:
            self.take_trap(hart, C.INSN_MISALIGNED, pc, pc)
            return
        try:
            ppc = self.mmu.fetch_translate(hart, pc)
        except Trap as t:
            self.take_trap(hart, t.cause, t.tval, pc)
            return
        if not self.mem.is_ram(ppc, 2):
            self.take_trap(hart, C.INSN_ACCESS, pc, pc)
            return
        blk = self.tcache.lookup(pc, ppc, flags)
        if blk is None and self.tcache.prepared and not step and self.tcache.restore(pc, ppc, flags):
            blk = self.tcache.lookup(pc, ppc, flags)
        if blk is not None and blk.second is not None and blk.second != self._second_frame(hart, pc):
            # Cross-page block: valid only while its second page maps to the frame it was read from.
            self.tcache._drop(blk)
            blk = None
        if blk is None:
            second = None
            if pc & (abi.PAGE_SIZE - 1) == abi.PAGE_SIZE - 2 and self.mem.read(ppc, 2) & 3 == 3:
                second = self._second_frame(hart, pc)  # A 32-bit instruction crossing into it
            fetch16 = self._fetcher(hart)
            try:
                blk = self.tcache.translate(hart, pc, ppc, flags, fetch16, self._code_phys(hart),
                                            batch=1 if warm else None, second=second)
                if warm:
                    self.tcache.warm_heads += 1
                    self.tcache.warm_blocks += 1
                    blk.interpreted = self.tcache.warm_threshold
            except FetchFault as f:
                try:
                    self.mmu.fetch_translate(hart, f.pc)
                    cause = C.INSN_ACCESS
                except Trap as t:
                    cause = t.cause
                self.take_trap(hart, cause, f.pc, pc)
                return
        if step or (self.trace is not None and self.trace.exec_on):
            return blk  # Executed one at a time by the run loop, never from the jump cache
        self.tcache.jc_insert(hart, blk)
        return blk

    # Traps
    def take_trap(self, hart: Hart, cause: int, tval: int, epc: int) -> None:
        """Raises a synchronous exception at epc: to S-mode if delegated, else to the monitor."""
        hart.s.resv = MASK64
        if self.trace is not None:
            self.trace.trap(hart, cause, tval, epc, False)
        self.trap_guard.trap(hart, cause, epc)
        if hart.priv != C.PRV_M and hart.medeleg >> cause & 1:
            self.trap_to_s(hart, cause, tval, epc)
        else:
            self.require_monitor().on_trap(hart, cause, tval, epc)

    def trap_to_s(self, hart: Hart, cause: int, tval: int, epc: int) -> None:
        """S-mode trap entry (privileged spec 4.1.1 and 3.1.6.1)."""
        s = hart.s
        ms = s.mstatus
        ms = (ms & ~C.MSTATUS_SPP) | (C.MSTATUS_SPP if hart.priv == C.PRV_S else 0)
        ms = (ms & ~C.MSTATUS_SPIE) | (C.MSTATUS_SPIE if ms & C.MSTATUS_SIE else 0)
        ms &= ~C.MSTATUS_SIE
        s.mstatus = ms
        hart.sepc = epc
        hart.scause = cause
        hart.stval = tval & MASK64
        base = hart.stvec & ~3
        if cause & C.INTERRUPT_BIT and hart.stvec & 1:
            hart.pc = base + 4 * (cause & 0x3F)
        else:
            hart.pc = base
        self.set_priv(hart, C.PRV_S)

    def set_access_guard(self, guard: AccessGuard | None) -> None:
        """Installs the monitor's access guard (PMP and memory policies, runtime/core/mmu.py) and drops
        what was filled or looked up under the previous one: every hart's TLBs and, if there was
        a guard, jump cache (blocks are checked for fetch when looked up)."""
        had = self.mmu.pmp_check is not None
        self.mmu.set_guard(guard)
        for h in self.harts:
            self.mmu.guard_changed(h)
            if had:
                self.tcache.jc_flush(h, "pmp")

    # The monitor (runtime/core/machine_api.py MachineInterface)
    def attach_monitor(self, monitor: Monitor, sys_hook: SysHook | None = None) -> None:
        """Puts `monitor` at M-level: it takes every trap that is not delegated to S and every
        M-level interrupt; `sys_hook(hart, raw, pc)` is offered every system instruction that
        reaches the system callout first (True: done)."""
        self.monitor = monitor
        self.sys_hook = sys_hook

    def reg_view(self, hart: Hart) -> memoryview:
        """`hart`'s native state as 64-bit words: x1..x31 at 1..31, the pc at REG_PC, the LR
        reservation at REG_RESV (runtime/core/machine_api.py)."""
        return memoryview(ffi.buffer(hart.s)).cast("Q")

    def set_mprv(self, hart: Hart, priv: int | None) -> bool:
        """The firmware's loads and stores are translated and protected as at `priv` (mstatus.MPRV
        with MPP = priv, privileged spec 3.1.6.3; S with sstatus.SUM), or as its own (None, or
        M). Returns whether they now go through a view of the OS world they did not use before."""
        mmu = None
        if priv == C.PRV_U:
            mmu = abi.MMU_U
        elif priv == C.PRV_S:
            mmu = abi.MMU_S_SUM if hart.s.mstatus & C.MSTATUS_SUM else abi.MMU_S
        changed = mmu != hart.fw_data_mmu
        hart.fw_data_mmu = mmu
        hart.update_flags()
        return changed and mmu is not None

    def flush_tlb(self, hart: Hart, which: str = "all") -> None:
        """Drops TLB entries of `hart`: "all"; "os", the OS world's (U, S and S with SUM); "mprv",
        those of the view the firmware's MPRV accesses use (`set_mprv`), if any."""
        if which == "all":
            self.mmu.flush(hart)
        elif which == "os":
            self.mmu.flush(hart, (abi.MMU_U, abi.MMU_S, abi.MMU_S_SUM))
        elif which == "mprv":
            if hart.fw_data_mmu is not None:
                self.mmu.flush(hart, (hart.fw_data_mmu,))
        else:
            raise ValueError(f"no TLB set {which!r}")

    def sfence_vma(self, hart: Hart, vaddr: int | None = None) -> None:
        """sfence.vma (privileged spec 4.2.1) on `hart`: the OS world's translations of the page of
        vaddr (None: of every page) and the jump-cache entries looked up through them. No ASIDs:
        every form flushes all address spaces."""
        if vaddr is None:
            self.mmu.flush(hart, (abi.MMU_U, abi.MMU_S, abi.MMU_S_SUM))
            self.tcache.jc_flush(hart, "sfence.vma")
        else:
            self.mmu.flush_page(hart, vaddr, (abi.MMU_U, abi.MMU_S, abi.MMU_S_SUM))
            self.tcache.jc_flush_page(hart, vaddr, "sfence.vma")

    def guard_changed(self, hart: Hart) -> None:
        """The access guard's decisions changed for `hart` (a PMP write): drop its TLB entries and
        jump-cache entries filled under the old ones (fetches are checked when a block is looked up)."""
        self.mmu.guard_changed(hart)
        self.tcache.jc_flush(hart, "pmp")

    def write_phys(self, paddr: int, data: bytes) -> bool:
        """Writes `data` to RAM at paddr, untranslated and unguarded, before the guest runs from it
        (no code-write check); False, and nothing written, if it is not all RAM."""
        if not self.mem.is_ram(paddr, len(data)):
            return False
        self.mem.load_bytes(paddr, data)
        return True

    # CSRs accessed in place by generated code (abi.CSR_SLOTS)
    def csr_slot(self) -> int:
        """A CSR slot of every hart for the caller (Hart.slot and set_slot reach its value)."""
        if self._slots_used == abi.CSR_SLOTS:
            raise RuntimeError("no CSR slot left")
        self._slots_used += 1
        return self._slots_used - 1

    def map_csr(self, priv: int, num: int, slot: int, write_mask: int | None) -> None:
        """Generated code running at `priv` (PRV_M: the firmware world) performs CSR `num` on
        `slot` itself: reads return the slot, writes store what Zicsr computes under write_mask
        (None: read-only, a write takes the system callout). Only for CSRs whose rule is exactly
        that; nothing else sees these accesses."""
        entry = (slot + 1) | (abi.CSR_READ_ONLY if write_mask is None else 0)
        for h in self.harts:
            h.s.csr_fast[priv][num] = entry
            h.s.csr_wmask[slot] = 0 if write_mask is None else write_mask

    def translation_options(self) -> str:
        """What decides the translations this machine makes besides the guest code: codegen levels,
        tier thresholds, the interpreter's warm threshold, loops and chaining."""
        e, tc = self.engine, self.tcache
        return (f"opt={e.opt} ir_opt={e.ir_opt} tier0_opt={tc.tier0_opt} tier={tc.tier} hot={tc.hot_threshold} "
                f"warm={self.warm_threshold} loops={tc.loops} chaining={tc.chaining}")

    def set_counteren(self, hart: Hart, v: int) -> None:
        """Sets `hart`'s physical mcounteren (the monitor does): which counters S-mode may read."""
        hart.counteren = v
        self.update_time_csr()

    def update_time_csr(self) -> None:
        """Lets generated code read the time CSR itself where a read is legal (privileged spec
        3.1.11: at S-mode if mcounteren.TM, at U-mode if scounteren.TM too), unless time counts
        instructions (--icount); elsewhere, and for writes, it takes the callout."""
        entry = abi.CSR_TIME | abi.CSR_READ_ONLY
        for h in self.harts:
            fast = h.s.csr_fast
            fast[C.PRV_M][TIME_CSR] = 0 if self.icount else entry
            s_ok = not self.icount and h.counteren >> 1 & 1
            fast[C.PRV_S][TIME_CSR] = entry if s_ok else 0
            fast[C.PRV_U][TIME_CSR] = entry if s_ok and h.scounteren >> 1 & 1 else 0

    def set_time_offset(self, offset: int) -> None:
        """mtime = time() + offset from now on (the timer device moved mtime); the time CSR follows."""
        for h in self.harts:
            h.s.time_offset = offset & MASK64

    def unmap_csr(self, priv: int, num: int | None = None) -> None:
        """Sends CSR `num` (None: every CSR) at `priv` back to the system callout."""
        for h in self.harts:
            if num is None:
                ffi.memmove(h.s.csr_fast[priv], bytes(4096), 4096)
            else:
                h.s.csr_fast[priv][num] = 0

    def set_priv(self, hart: Hart, priv: int) -> None:
        hart.priv = priv
        hart.update_flags()

    def require_monitor(self) -> Monitor:
        if self.monitor is None:
            raise RuntimeError("no monitor attached to take an M-level trap")
        return self.monitor

    # System instructions (the system callout)
    def _sys(self, hart: Hart, raw: int, pc: int, desc: int) -> None:
        self.stats_callouts["sys"] += 1
        hook = self.sys_hook
        if hook is not None and desc & 0xFF == abi.SYS_INSN and hook(hart, raw, pc):
            if hart.want_exit:
                hart.s.exit_now = 1
            return
        kind = desc & 0xFF
        remain = (desc >> abi.DESC_REMAIN_SHIFT) & 0xFF
        length = 2 if desc & abi.DESC_COMPRESSED else 4
        if kind == abi.SYS_DEBUG:
            # A debugger breakpoint: stop before the instruction at pc runs; the debugger's poller
            # takes it from there.
            hart.uncount(remain + 1)
            hart.pc = pc
            self.debug_stop = hart
            hart.s.exit_now = 1
            return
        try:
            if kind == abi.SYS_ILLEGAL:
                raise Trap(C.ILLEGAL_INSN, raw)
            insn = decode(raw)
            if insn is None:
                raise Trap(C.ILLEGAL_INSN, raw)
            hart.pc = pc + length
            execute(self, hart, insn, pc)
        except Trap as t:
            hart.uncount(remain + 1)
            self.take_trap(hart, t.cause, t.tval, pc)
        if self.halted is not None or self.callout_error is not None or hart.want_exit:
            hart.s.exit_now = 1

    # Time
    def time(self) -> int:
        """The platform timer (mtime) in timebase ticks."""
        if self.icount:
            return self.retired() // 10
        return ((time.monotonic_ns() - self._t0_ns) * self._tmult) >> 32

    # The run loop
    def request_exit(self, hart: Hart | None = None) -> None:
        for h in (self.harts if hart is None else [hart]):
            h.want_exit = True

    def run(self, hart_index: int = 0) -> GuestExit:
        """Runs until the guest stops the machine; returns how it stopped. Several harts take turns
        in this thread, starting with `hart_index` (`_next_hart`)."""
        harts = self.harts
        smp = len(harts) > 1
        hart = harts[hart_index]
        enter = self._enter
        s = hart.s
        tc = self.tcache
        stall_left = stall_retired = None
        cal = (perf_counter(), self.cycles())
        slices = 0
        tc.set_warm_threshold(self.warm_threshold)
        for h in harts:
            h.s.warm = min(max(1, tc.warm_threshold), (1 << 31) - 1)
            h.s.walk = int(self.native_refill and self.mmu.trace is None)
            h.s.sfence = int(self.native_sfence and self.trace is None)
        turn_end = hart.retired() + SMP_SLICE  # Where the running hart's turn ends (several harts)
        turn_over = False
        timer_stall = False  # The last slice, cut short for a timer, was too short for a block
        while self.halted is None:
            if smp and (turn_over or hart.wfi):
                nxt = self._next_hart(hart)
                if nxt is None:
                    self._wait_for_interrupt(hart)  # Every hart waits for an interrupt
                    continue
                hart, s = nxt, nxt.s
                turn_end = hart.retired() + SMP_SLICE
                turn_over = False
            budget = SLICE
            if tc.pending:
                tc.install_ready(harts)
                # Code on its way: come back soon to put it in (the interpreter may be running
                # a hot loop that waits for it).
                budget = PENDING_SLICE
            left = None
            if self.max_insns is not None:
                retired = self.retired() + self.trap_guard.idle
                left = self.max_insns - retired
                # Also stop when what is left is less than the next block: blocks run whole.
                if left <= 0 or (left == stall_left and retired == stall_retired):
                    self.halted = GuestExit(3, f"instruction limit reached ({self.max_insns} instructions) "
                                               f"at pc {hart.pc:#x}")
                    break
                budget = min(budget, left)
                stall_left, stall_retired = None, None
            timer_cut = False
            if self.timer_sources:
                to_timer = self._insns_to_next_timer()
                if to_timer < budget:
                    # Blocks run whole: when the deadline is nearer than the next block, that
                    # block runs and the deadline is noticed just after it.
                    budget = max(to_timer, MAX_BLOCK_INSNS) if timer_stall else to_timer
                    timer_cut = True
            timer_stall = False
            turn_left = turn_end - hart.retired()
            if smp and budget >= turn_left:
                budget = max(1, turn_left)
            hart.set_budget(budget)
            s.interp = 1 if self.warm_threshold and not tc.breakpoints else 0
            if hart.wfi:
                self._wait_for_interrupt(hart)
                continue
            hart.want_exit = False
            before = hart.retired()
            slices += 1
            self._timing = not slices % TIME_SAMPLE
            t0 = perf_counter()
            code = enter(s) if self.trace is None or not self.trace.exec_on else self._step_block(hart)
            t1 = perf_counter()
            self.native_seconds += t1 - t0
            if self.callout_error is not None:
                err, self.callout_error = self.callout_error, None
                if isinstance(err, GuestExit):
                    self.halted = err
                    break
                raise err
            if smp and hart.wfi:
                # A wfi ends the hart's turn even if an interrupt is already pending (the poll
                # below resumes it): a hart waiting in a wfi loop lets the others run.
                turn_over = True
            if code == abi.EXIT_MISS:
                self._translate_at(hart)
                cause = "miss"
            elif code == abi.EXIT_WARM:
                self._warm(hart)
                cause = "warm"
            elif code == abi.EXIT_HOT:
                self._promote(hart)
                cause = "hot"
            elif code == abi.EXIT_POLL:
                self.stats_callouts["poll"] += 1
                if left is not None and budget == left:
                    stall_left, stall_retired = left, self.retired() + self.trap_guard.idle
                # The turn is over when its budget ran out or its next block does not fit in it.
                turn_over = turn_over or (smp and budget >= turn_left)
                timer_stall = timer_cut and hart.retired() == before
                self.poll(hart)
                cause = "poll"
            elif code == abi.EXIT_CALLOUT:
                s.exit_now = 0
                self.poll(hart)
                cause = "poll"
            else:
                continue
            self.stats_seconds[cause] += perf_counter() - t1
        for h in harts:
            h.set_budget(0)
        self._timing = False
        self.note_native_invalidations()
        if self.finish_translations and self.halted is not None:
            tc.finish_warm(harts)
        tc.install_ready(harts)
        tc.abandon()
        dt = perf_counter() - cal[0]
        if dt > 0:
            self.cycles_per_second = (self.cycles() - cal[1]) / dt
        return self.halted

    def retired(self) -> int:
        """Instructions retired by all harts."""
        harts = self.harts
        return harts[0].retired() if len(harts) == 1 else sum(h.retired() for h in harts)

    def _next_hart(self, hart: Hart) -> Hart | None:
        """The hart whose turn comes after `hart`'s (round robin by hart id, `hart` itself last),
        skipping harts that wait for an interrupt; None if every hart waits. Each one's pending
        interrupts are taken first (another hart may have raised them: an IPI, a PLIC claim).

        LR/SC (unprivileged spec, "A" extension, "Load-Reserved/Store-Conditional Instructions"):
        "The SC must fail if a store to the reservation set from another hart can be observed to
        occur between the LR and SC", and "An SC may succeed only if no store from another hart to
        the reservation set can be observed to have occurred between the LR and the SC". Harts
        switch only here, between blocks, so the rule is: a hart that hands over to another loses
        its reservation (as the spec's note asks of "a preemptive context switch"). A store made
        by another hart before it runs again then fails its SC; an SC whose LR came before the
        switch fails even without one, which "may succeed only if" allows, and its retry succeeds
        (a turn is far longer than an LR/SC loop, so constrained loops still succeed eventually).
        AMOs are atomic with respect to the other harts: no switch happens inside an instruction."""
        harts = self.harts
        n = len(harts)
        for k in range(1, n + 1):
            h = harts[(hart.id + k) % n]
            self.check_interrupts(h)
            if not h.wfi:
                if h is not hart:
                    hart.s.resv = MASK64
                return h
        return None

    def _warm(self, hart: Hart) -> None:
        """The interpreter found the block head at hart.pc warm: its translation goes in the jump
        cache if it exists, else is made (in the worker thread when there is one)."""
        try:
            ppc = self.mmu.fetch_translate(hart, hart.pc)
        except Trap:
            self.stats_callouts["warm"] += 1
            return  # The interpreter takes the fault when it runs the instruction
        if self.tcache.keep_interpreted(hart.pc, ppc, hart.s.flags):
            self.stats_callouts["warm"] += 1
        elif (self.tcache.prepared and self.mem.is_ram(ppc, 2)
              and self.tcache.restore(hart.pc, ppc, hart.s.flags)):
            self._translate_at(hart, warm=True)  # Found in the cache, put in the jump cache
        elif self.tcache.primed and self.tcache.unprime(hart.pc, ppc, hart.s.flags):
            self.stats_callouts["warm"] += 1
        elif (not self.tcache.background or (hart.pc, ppc, hart.s.flags) in self.tcache.blocks
              or ppc & (abi.PAGE_SIZE - 1) > abi.PAGE_SIZE - 4):
            # No worker; or translated but not found natively (it crosses a page), or its first
            # instruction may: the main thread does it.
            self._translate_at(hart, warm=True)
        elif self.mem.is_ram(ppc, 2):
            self.stats_callouts["warm"] += 1
            self.tcache.warm(hart, hart.pc, ppc)

    def _promote(self, hart: Hart) -> None:
        """A tier-0 block at hart.pc reached its threshold: recompile it at tier 1."""
        try:
            ppc = self.mmu.fetch_translate(hart, hart.pc)
        except Trap:
            return  # The mapping changed under it: the next run translates afresh
        old = self.tcache.lookup(hart.pc, ppc, hart.s.flags)
        if old is not None and old.tier == 0:
            self.tcache.promote(old, hart, self.harts, self._fetcher(hart))

    def _insns_to_next_timer(self) -> int:
        """Caps the next slice so a timer deadline is noticed when it is due, not up to a slice
        late: exactly under --icount (10 instructions a tick), else assuming at most 100."""
        deadline = None
        for d in self.timer_sources:
            t = d.deadline()
            if t is not None and (deadline is None or t < deadline):
                deadline = t
        if deadline is None:
            return SLICE
        ticks = deadline - self.time()
        if self.icount:
            return max(1, ticks * 10)
        return max(2000, ticks * 100)

    def _step_block(self, hart: Hart) -> int:
        """-d exec: runs one block through Python so each execution is logged."""
        blk = self._translate_at(hart)
        if blk is None:
            return abi.EXIT_CALLOUT  # Fetch trapped and the trap is taken: go on from the handler
        self.trace.exec(hart, blk)
        return ffi.cast("int64_t(*)(hart_t *)", blk.fn)(hart.s)

    def step_insn(self, hart: Hart) -> None:
        """Executes exactly one instruction of `hart`, breakpoints ignored (the debugger's single
        step): a one-instruction block run with a budget of one, so whatever it exits to stops at
        its prologue. A trap it raises is taken: pc is then the handler's first instruction."""
        if self.halted is not None:
            return
        hart.wfi = False  # A pending wfi completes as a no-op (privileged spec 3.3.3 allows it)
        hart.want_exit = False
        blk = self._translate_at(hart, step=True)
        if blk is not None:
            hart.set_budget(1)
            ffi.cast("int64_t(*)(hart_t *)", blk.fn)(hart.s)
            hart.s.exit_now = 0
            hart.set_budget(0)
        if self.callout_error is not None:
            err, self.callout_error = self.callout_error, None
            if not isinstance(err, GuestExit):
                raise err
            self.halted = err

    def poll(self, hart: Hart) -> None:
        for p in self.pollers:
            p(self)
        self.check_interrupts(hart)
        self.note_native_invalidations()

    def native_invalidations(self) -> dict[str, int]:
        """Invalidations native code made, by cause (tcache.invalidations has the others)."""
        return {"sfence.vma": sum(h.s.stat_sfence for h in self.harts)}

    def note_native_invalidations(self) -> None:
        """Puts the native sfence.vma since the last call on the statistics' time line (at the
        time of the call: polls come at least every SLICE instructions)."""
        n = self.native_invalidations()["sfence.vma"]
        if n != self._native_sfences:
            self.tcache.note_event("sfence.vma", n - self._native_sfences)
            self._native_sfences = n

    def check_interrupts(self, hart: Hart) -> None:
        """Takes the highest-priority pending and enabled interrupt (privileged spec 3.1.9)."""
        mon = self.monitor
        if mon is not None:
            irq = mon.pending_m_interrupt(hart)
            if irq is not None:
                hart.wfi = False
                if self.trace is not None:
                    self.trace.trap(hart, C.INTERRUPT_BIT | irq, 0, hart.pc, True)
                mon.on_interrupt(hart, irq)
                return
        pending = hart.mip & hart.mie & hart.mideleg
        if not pending:
            return
        # wfi resumes on any locally enabled pending interrupt, whatever the global enables
        # (privileged spec 3.3.3).
        hart.wfi = False
        if hart.priv == C.PRV_M:
            return
        if hart.priv == C.PRV_S and not hart.s.mstatus & C.MSTATUS_SIE:
            return
        for irq in (C.IRQ_SEI, C.IRQ_SSI, C.IRQ_STI):
            if pending >> irq & 1:
                hart.wfi = False
                if self.trace is not None:
                    self.trace.trap(hart, C.INTERRUPT_BIT | irq, 0, hart.pc, True)
                self.trap_to_s(hart, C.INTERRUPT_BIT | irq, 0, hart.pc)
                return

    def _wait_for_interrupt(self, hart: Hart) -> None:
        """wfi: sleep the host until a device or timer may have raised an interrupt."""
        deadline = None
        for d in self.timer_sources:
            t = d.deadline()
            if t is not None and (deadline is None or t < deadline):
                deadline = t
        if self.icount:
            if deadline is None:
                self.halted = GuestExit(4, "wfi with no possible wake-up in --icount mode")
                return
            # Time advances with instructions: skip ahead.
            now = self.time()
            if deadline > now:
                hart.retired_base += (deadline - now) * 10
        else:
            wait = 0.01
            if deadline is not None:
                wait = max(0.0, min(wait, (deadline - self.time()) / self.timebase_hz))
            for w in self.waiters:
                w(wait)
                wait = 0
            if wait:
                time.sleep(wait)
        self.poll(hart)
        if not hart.wfi:
            return

    def finish_output(self) -> None:
        sys.stdout.flush()
