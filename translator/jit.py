"""The JIT engine: IR text to native code with llvmlite's ORC LLJIT, several blocks per library.

Knows nothing of guests: it compiles modules, links them against the runtime's callout symbols,
and hands back the addresses of exported functions and globals.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import itertools
import os
import time
from dataclasses import dataclass

import llvmlite.binding as llvm

_initialized = False
# Check every module with LLVM's verifier before compiling it (the tests turn this on; it costs
# about 3% of a cold Linux boot).
VERIFY = os.environ.get("MIRAGE_VERIFY_IR", "") not in ("", "0")


def _init() -> None:
    global _initialized
    if not _initialized:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _initialized = True


# The imports library's one definition (a library needs some code of its own).
_ANCHOR = "mirage_imports_anchor"
ANCHOR_IR = f"define void @{_ANCHOR}() {{\n  ret void\n}}\n"


@dataclass
class CompileStats:
    modules: int = 0
    functions: int = 0
    seconds: float = 0.0  # Code generation (or the object-cache lookup) and linking
    background_seconds: float = 0.0  # Of `seconds`, code generation in the worker thread
    object_bytes: int = 0
    code_bytes: int = 0  # Host machine code (.text sections) of those objects
    emitted: int = 0  # Modules LLVM compiled (the others came from the object cache)
    cached: int = 0  # Modules linked from the object cache
    recycles: int = 0  # Times the translations' JIT was replaced (Engine.recycle)


def code_size(obj: bytes) -> int:
    """Bytes of machine code (.text sections) in an object file."""
    return sum(s.size() for s in llvm.ObjectFileRef.from_data(obj).sections() if s.is_text())


class Engine:
    """One LLJIT instance; `compile` turns a module's IR into linked native code."""

    def __init__(self, opt: int = 2, ir_opt: int | None = None) -> None:
        _init()
        target = llvm.Target.from_default_triple()
        self.tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                               features=llvm.get_host_cpu_features().flatten(),
                                               opt=opt, reloc="pic", codemodel="default", jit=True)
        # Translations go into `lljit`, which `recycle` replaces (freeing everything in it); code
        # that lives as long as the engine (`link(permanent=True)`) into a JIT of its own.
        self.lljit = llvm.create_lljit_compiler(self.tm)
        self._base_jit = None
        self.opt = opt
        self._tms: dict = {}
        # IR pass level (None: codegen only). A fresh pass builder per module (shared notes: reuse
        # slows down and running a pipeline twice can abort).
        self.ir_opt = ir_opt
        self.imports: dict[str, int] = {}
        self.stats = CompileStats()
        # Object code cache across runs (runtime.core.pcache.PersistentCache or None): key(text, variant),
        # get(key) -> (object, code bytes) | None, put(key, object, code bytes, seconds), reject(key).
        self.object_cache = None
        self._names = itertools.count()
        self._libs: set = set()  # Resource trackers keep code alive (`release` lets one go)
        self._permanent: list = []  # Those of permanent libraries
        self._imports_lib: str | None = None  # See _imports_library
        self._imports_keep: list = []
        # ANCHOR_IR's object code (emit_object), if the caller keeps it across runs: compiling the
        # IR in the imports library took ~4 ms of a warm start.
        self.anchor_object: bytes | None = None
        self.last_library = None  # The library the last `link` made
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None  # Background code generation
        self._unlocked: _UnlockedCompiler | None = None  # The worker's own LLVM context

    def add_import(self, name: str, address: int) -> None:
        """Registers a symbol every later module may call (callouts, the dispatcher)."""
        if self.imports.get(name) != address:
            self.imports[name] = address
            self._imports_lib = None

    def _imports_library(self) -> str:
        """The name of a library in `lljit` that defines every import, made when the imports or
        the JIT change: modules link against it instead of defining each import themselves
        (about 1 KB of LLVM memory per import and module)."""
        if self._imports_lib is None:
            builder = llvm.JITLibraryBuilder()
            if self.anchor_object is not None:
                builder.add_object_img(self.anchor_object)
            else:
                builder.add_ir(ANCHOR_IR)
            for name, addr in self.imports.items():
                builder.import_symbol(name, addr)
            builder.export_symbol(_ANCHOR)
            name = f"imports{next(self._names)}"
            self._imports_keep.append(builder.link(self.lljit, name))  # Older ones too: modules use them
            self._imports_lib = name
        return self._imports_lib

    def _tm(self, opt: int | None):
        if opt is None or opt == self.opt:
            return self.tm
        tm = self._tms.get(opt)
        if tm is None:
            tm = self._tms[opt] = self._new_tm(opt)
        return tm

    @staticmethod
    def _new_tm(opt: int):
        target = llvm.Target.from_default_triple()
        return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                            features=llvm.get_host_cpu_features().flatten(),
                                            opt=opt, reloc="pic", codemodel="default", jit=True)

    def _worker_compiler(self) -> _UnlockedCompiler:
        if self._unlocked is None:
            # Target machines of its own: the main thread's are in use concurrently.
            self._unlocked = _UnlockedCompiler(self._new_tm(0), self._new_tm(self.opt))
        return self._unlocked

    def emit_object(self, ir_text: str, opt: int | None = None) -> bytes:
        mod = llvm.parse_assembly(ir_text)
        if VERIFY:
            mod.verify()
        if self.ir_opt:
            pto = llvm.create_pipeline_tuning_options(speed_level=self.ir_opt)
            pb = llvm.create_pass_builder(self.tm, pto)
            pb.getModulePassManager().run(mod, pb)
        return self._tm(opt).emit_object(mod)

    def link(self, obj: bytes, exports: list[str], permanent: bool = False, table: str | None = None) -> dict[str, int]:
        """Links an object into a fresh library (`last_library`); returns export addresses. A
        `permanent` one (the runtime's dispatcher and callouts) survives `recycle`. With `table`,
        the object defines that array of the exports' addresses (block.module_text): one lookup,
        not one per export (about 8 us each)."""
        addrs, self.last_library = self.link_library(obj, exports, permanent, table)
        return addrs

    def link_library(self, obj: bytes, exports: list[str], permanent: bool = False,
                     table: str | None = None) -> tuple[dict[str, int], object]:
        """`link`, returning the library too. The worker thread may call it (`submit`) while the
        main thread does no LLVM work of its own that could race with it: llvmlite serializes
        calls into LLVM, and a library is only added, nothing existing is touched."""
        builder = llvm.JITLibraryBuilder().add_object_img(obj)
        if permanent:
            for name, addr in self.imports.items():
                builder.import_symbol(name, addr)
        else:
            builder.add_jit_library(self._imports_library())
        for name in (exports if table is None else (table,)):
            builder.export_symbol(name)
        if permanent:
            if self._base_jit is None:
                self._base_jit = llvm.create_lljit_compiler(self.tm)
            lib = builder.link(self._base_jit, f"lib{next(self._names)}")
            self._permanent.append(lib)
        else:
            lib = builder.link(self.lljit, f"lib{next(self._names)}")
            self._libs.add(lib)
        if table is not None:
            addrs = (ctypes.c_uint64 * len(exports)).from_address(lib[table])
            return dict(zip(exports, addrs, strict=True)), lib
        return {name: lib[name] for name in exports}, lib

    def prepare_link(self) -> None:
        """Makes what links share (the imports' library), before the worker links (`submit`)."""
        self._imports_library()

    def submit(self, fn, *args) -> concurrent.futures.Future:
        """Runs fn(*args) in the worker thread (after the compilations queued before it)."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mirage-jit")
        return self._pool.submit(fn, *args)

    def release(self, lib) -> None:
        """Unloads a library made by `link`: its code and data are freed. Only for code no thread
        can be running and nothing points into any more (the caller's to know). LLVM keeps about
        10 KB of each (the library and its symbol tables) until `recycle`."""
        if lib in self._libs:
            self._libs.discard(lib)
            lib.close()

    def recycle(self) -> None:
        """Unloads every library `link` made (but the permanent ones) and replaces the JIT that
        held them, which frees what `release` cannot. Only when no thread can be running any
        of that code and nothing points into it any more (the caller's to know)."""
        # Each library first: the JIT they belong to must outlive them.
        for lib in self._libs:
            lib.close()
        self._libs.clear()
        self.last_library = None
        for lib in self._imports_keep:
            lib.close()
        self._imports_keep.clear()
        self._imports_lib = None
        self.lljit.close()
        self.lljit = llvm.create_lljit_compiler(self.tm)
        self.stats.recycles += 1
        _trim_heap()

    def compile(self, ir_text: str, exports: list[str], n_functions: int = 1,
                opt: int | None = None) -> tuple[dict[str, int], bytes]:
        """Compiles a module at the engine's codegen level, or at `opt` (a cheaper tier). With an
        object cache, a module whose text was compiled before (in any run) is only linked."""
        return self.start(ir_text, exports, n_functions, opt, background=False).finish()

    def start(self, ir_text: str, exports: list[str], n_functions: int = 1, opt: int | None = None,
              background: bool = True, table: str | None = None) -> Compilation:
        """Begins compiling a module; `finish()` on the returned handle links it (on the calling
        thread) and returns what `compile` does. With `background`, LLVM's code generation runs in
        the engine's worker thread (llvmlite releases the GIL meanwhile), so the caller goes on
        running guest code; `ready()` says when linking will not wait."""
        t0 = time.perf_counter()
        job = Compilation(self, ir_text, exports, n_functions, opt, table)
        cache = self.object_cache
        if cache is not None:
            job.key = cache.key(ir_text, f"opt={self.opt if opt is None else opt} ir_opt={self.ir_opt}")
            job.hit = cache.get(job.key)
        if job.hit is None:
            if background:
                job.future = self.submit(job.emit, True)
            else:
                job.emit()
        job.seconds += time.perf_counter() - t0
        return job

    def shutdown(self, wait: bool = True) -> None:
        """Stops the worker thread; compilations still queued are abandoned (and, unless `wait`,
        the one running is left to finish on its own)."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None


def _trim_heap() -> None:
    """Hands the C heap's free pages back to the system (glibc's malloc_trim): most of what LLVM
    frees with a JIT is heap memory, which would otherwise stay in the process for reuse."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # Not glibc


class Compilation:
    """A module on its way to native code (Engine.start)."""

    def __init__(self, engine: Engine, ir_text: str, exports: list[str], n_functions: int,
                 opt: int | None, table: str | None = None) -> None:
        self.engine = engine
        self.table = table  # The exports' address array in the module (Engine.link)
        self.ir_text = ir_text
        self.exports = exports
        self.n_functions = n_functions
        self.opt = opt
        self.key = None
        self.stored = False  # Its object is in the object cache under `key` (hit, or put there)
        self.hit: tuple[bytes, int] | None = None  # (object, code bytes) from the object cache
        self.future: concurrent.futures.Future | None = None
        self.obj: bytes | None = None
        self.code: int | None = None  # Its machine-code bytes, once the worker measured them
        self.emit_seconds = 0.0
        self.seconds = 0.0  # On the caller's thread

    def emit(self, worker: bool = False) -> None:
        """Generates the object; in the worker thread, also measures it and stores it in the object
        cache, which the main thread need not wait for then."""
        t0 = time.perf_counter()
        eng = self.engine
        if worker and not eng.ir_opt:
            self.obj = eng._worker_compiler().emit(self.ir_text, 0 if self.opt == 0 else None)
        else:
            self.obj = eng.emit_object(self.ir_text, self.opt)
        self.emit_seconds = time.perf_counter() - t0
        if worker:
            self.code = code_size(self.obj)
            cache = eng.object_cache
            if cache is not None:
                self.stored = cache.put(self.key, self.obj, self.code, self.emit_seconds)

    def ready(self) -> bool:
        return self.future is None or self.future.done()

    def finish(self) -> tuple[dict[str, int], bytes]:
        """Links the module (waiting for its code generation if needed); its exports' addresses."""
        t0 = time.perf_counter()
        eng = self.engine
        cache = eng.object_cache
        addrs = None
        if self.hit is not None:
            obj, code = self.hit
            try:
                addrs = eng.link(obj, self.exports, table=self.table)
                eng.stats.cached += 1
                self.stored = True
            except RuntimeError:
                cache.reject(self.key)
                self.emit()
        elif self.future is not None:
            self.future.result()
        if addrs is None:
            obj = self.obj
            code = code_size(obj) if self.code is None else self.code
            addrs = eng.link(obj, self.exports, table=self.table)
            eng.stats.emitted += 1
            if cache is not None and self.code is None:
                self.stored = cache.put(self.key, obj, code, self.emit_seconds)
            if self.future is not None:
                eng.stats.background_seconds += self.emit_seconds
        self.seconds += time.perf_counter() - t0
        eng.stats.seconds += self.seconds + (self.emit_seconds if self.future is not None else 0.0)
        eng.stats.modules += 1
        eng.stats.functions += self.n_functions
        eng.stats.object_bytes += len(obj)
        eng.stats.code_bytes += code
        return addrs, obj


class _UnlockedCompiler:
    """Code generation for the worker thread that bypasses llvmlite's global lock (it serializes
    every LLVM call of the process, so the worker would stall the main thread's compiles): its
    own LLVM context, and target machines no other thread uses. LLVM allows concurrent work in
    separate contexts; only parsing, code generation and the buffers are called, directly."""

    def __init__(self, tm0, tm) -> None:
        lib = llvm.ffi.lib
        self._ctx = llvm.create_context()
        self._tms = {0: tm0, None: tm}
        self._parse = lib.LLVMPY_ParseAssembly._cfn
        self._emit = lib.LLVMPY_TargetMachineEmitToMemory._cfn
        self._start = lib.LLVMPY_GetBufferStart._cfn
        self._size = lib.LLVMPY_GetBufferSize._cfn
        self._free_buffer = lib.LLVMPY_DisposeMemoryBuffer._cfn
        self._free_module = lib.LLVMPY_DisposeModule._cfn
        self._free_string = lib.LLVMPY_DisposeString._cfn
        self._verify = lib.LLVMPY_VerifyModule._cfn

    def _error(self, what: str, err: ctypes.c_char_p) -> RuntimeError:
        text = (err.value or b"").decode(errors="replace")
        if err.value is not None:
            self._free_string(err)
        return RuntimeError(f"{what}: {text}")

    def emit(self, ir_text: str, opt: int | None) -> bytes:
        """IR text to object code (the engine's codegen level, or 0)."""
        err = ctypes.c_char_p()
        mod = self._parse(self._ctx._ptr, ir_text.encode(), ctypes.byref(err))
        if not mod:
            raise self._error("LLVM IR parsing error", err)
        try:
            if VERIFY and self._verify(mod, ctypes.byref(err)):
                raise self._error("LLVM IR verification failed", err)
            buf = self._emit(self._tms[opt]._ptr, mod, 1, ctypes.byref(err))
            if not buf:
                raise self._error("LLVM code generation error", err)
            try:
                return ctypes.string_at(self._start(buf), self._size(buf))
            finally:
                self._free_buffer(buf)
        finally:
            self._free_module(mod)
