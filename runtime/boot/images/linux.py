"""The `linux-shell` image: OpenSBI 1.1 fw_jump, Linux 6.1 and a busybox initramfs.

Everything comes from Debian's package registry: the `opensbi` binary package, the
`linux-source-6.1` tarball, busybox's source package (fetched through a private deb-src list, /etc/apt
is never touched) and the riscv64 cross toolchain. Results are cached under
~/.cache/mirage/images/linux-shell ($MIRAGE_CACHE_DIR or $MIRAGE_IMAGES_DIR move it), each named
by a hash of its inputs: package versions, config fragments and init script (platforms/), toolchain
version and RECIPE.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import platforms
from platforms import qemu_virt
from runtime.boot import protocol
from runtime.boot.images import Boot, ImageError, images_root
from runtime.boot.loader import LoadError
from runtime.core.pcache import cache_root

# Bump when a build step changes in a way that changes its output (every key changes with it).
RECIPE = "2"
PLATFORMS = Path(platforms.__file__).resolve().parent
KERNEL_FRAGMENT = PLATFORMS / "linux-virt.config"
BUSYBOX_FRAGMENT = PLATFORMS / "busybox.config"
INIT_SCRIPT = PLATFORMS / "linux-shell-init.sh"
BOOTARGS = "console=ttyS0 earlycon=sbi"

OPENSBI_PKG = "opensbi"
OPENSBI_FW = Path("/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf")
LINUX_PKG = "linux-source-6.1"
LINUX_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
# Pinned so the cache key is known without asking the archive; if Debian replaces it (a point
# release), the download fails naming the versions it has.
BUSYBOX_VERSION = "1:1.35.0-4+deb12u1"
DEB_SRC = """Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
CROSS = "riscv64-linux-gnu-"
CROSS_PKGS = ["gcc-riscv64-linux-gnu", "binutils-riscv64-linux-gnu", "libc6-dev-riscv64-cross"]
HOST_PKGS = ["make", "gcc", "libc6-dev", "xz-utils"]
KERNEL_PKGS = [LINUX_PKG, *CROSS_PKGS, *HOST_PKGS, "flex", "bison", "bc"]
BUSYBOX_PKGS = [*CROSS_PKGS, *HOST_PKGS, "dpkg-dev", "bzip2", "debian-archive-keyring"]

# Fixed build stamps for Linux and busybox: the same inputs give the same bytes.
BUILD_ENV = {"SOURCE_DATE_EPOCH": "0", "KBUILD_BUILD_TIMESTAMP": "1970-01-01", "KBUILD_BUILD_USER": "mirage",
             "KBUILD_BUILD_HOST": "mirage", "LC_ALL": "C"}
# How often a long step says it is still running.
PROGRESS_INTERVAL = 20.0
TAIL_LINES = 25


class BuildError(ImageError):
    """A build command failed: the message names it and ends with the last lines of its output."""


# Kconfig fragments

_ASSIGN = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_config(text: str) -> dict[str, str | None]:
    """Kconfig assignments in a .config or a fragment: CONFIG_X=v gives "v"; `# CONFIG_X is not
    set` and CONFIG_X=n give None. Other comments and blank lines are skipped."""
    out: dict[str, str | None] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := _ASSIGN.match(line):
            out[m[1]] = None if m[2] == "n" else m[2]
        elif m := _UNSET.match(line):
            out[m[1]] = None
    return out


def verify_config(fragment: str, config: str) -> list[str]:
    """What `fragment` asks for that `config` (a final .config) does not have, one line per option.
    An option asked to be off may also be missing altogether."""
    have = parse_config(config)
    problems = []
    for name, want in parse_config(fragment).items():
        got = have.get(name)
        if want is None:
            if got is not None:
                problems.append(f"{name} should be off but the .config has {name}={got}")
        elif got != want:
            now = "it is not set" if got is None else f"the .config has {name}={got}"
            problems.append(f"{name}={want} was asked for but {now}")
    return problems


def apply_fragment(config: str, fragment: str) -> str:
    """`config` with every assignment of `fragment` applied (replaced in place, or appended)."""
    want = parse_config(fragment)

    def line_of(name: str, value: str | None) -> str:
        return f"# {name} is not set" if value is None else f"{name}={value}"

    out, done = [], set()
    for line in config.splitlines():
        m = _ASSIGN.match(line.strip()) or _UNSET.match(line.strip())
        if m and m[1] in want:
            out.append(line_of(m[1], want[m[1]]))
            done.add(m[1])
        else:
            out.append(line)
    out += [line_of(name, value) for name, value in want.items() if name not in done]
    return "\n".join(out) + "\n"


# The initramfs: cpio "newc" (the format Linux unpacks, Documentation/driver-api/early-userspace)

@dataclass
class CpioEntry:
    """One archive member. `mode` includes the file type bits (stat.S_IFREG | 0o755 ...); a
    symlink's data is its target; `rdev` is (major, minor) for device nodes."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)
    uid: int = 0
    gid: int = 0


CPIO_MAGIC = b"070701"
CPIO_TRAILER = "TRAILER!!!"


def write_newc(entries: Iterable[CpioEntry], mtime: int = 0) -> bytes:
    """A newc archive of `entries` (owned by root unless they say otherwise, all with `mtime`),
    with sequential inode numbers and no hard links."""
    out = bytearray()

    def member(ino: int, e: CpioEntry) -> None:
        name = e.name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(e.mode) else 1
        fields = (ino, e.mode, e.uid, e.gid, nlink, mtime, len(e.data), 0, 0, e.rdev[0], e.rdev[1],
                  len(name), 0)
        out.extend(CPIO_MAGIC + b"".join(b"%08X" % f for f in fields) + name)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(e.data)
        out.extend(b"\0" * (-len(out) % 4))

    ino = 0
    for ino, e in enumerate(entries, 1):
        if e.name.startswith("/") or not e.name or e.name == CPIO_TRAILER:
            raise ValueError(f"bad cpio member name {e.name!r}")
        member(ino, e)
    member(ino + 1, CpioEntry(CPIO_TRAILER, 0))
    return bytes(out)


def read_newc(blob: bytes) -> list[CpioEntry]:
    """The members of a newc archive, up to its trailer (the inverse of write_newc)."""
    entries, pos = [], 0
    while True:
        if blob[pos:pos + 6] != CPIO_MAGIC:
            raise ValueError(f"no newc header at offset {pos}")
        f = [int(blob[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, uid, gid, size, rmaj, rmin, namesize = f[1], f[2], f[3], f[6], f[9], f[10], f[11]
        pos += 110
        name = blob[pos:pos + namesize - 1].decode()
        pos += namesize + (-(pos + namesize) % 4)
        data = blob[pos:pos + size]
        pos += size + (-(pos + size) % 4)
        if name == CPIO_TRAILER:
            return entries
        entries.append(CpioEntry(name, mode, data, (rmaj, rmin), uid, gid))


def rootfs(busybox: bytes, links: Iterable[str], init: bytes) -> list[CpioEntry]:
    """The linux-shell root filesystem: busybox at /bin/busybox, a relative symlink to it for every
    applet in `links` (busybox.links: absolute paths), `init` at /init and /dev/console (so the
    kernel has a console for /init before devtmpfs is mounted)."""
    d, r, x = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644, stat.S_IFREG | 0o755
    dirs = ["bin", "dev", "etc", "mnt", "proc", "root", "run", "sbin", "sys", "tmp", "usr", "usr/bin",
            "usr/sbin"]
    mode = {"root": stat.S_IFDIR | 0o700, "tmp": stat.S_IFDIR | 0o1777}
    entries = [CpioEntry(n, mode.get(n, d)) for n in dirs]
    entries += [
        CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        CpioEntry("etc/passwd", r, b"root:x:0:0:root:/root:/bin/sh\n"),
        CpioEntry("etc/group", r, b"root:x:0:\n"),
        CpioEntry("etc/hostname", r, b"mirage\n"),
        CpioEntry("init", x, init),
        CpioEntry("bin/busybox", x, busybox),
    ]
    seen = {e.name for e in entries}
    for link in sorted(set(links)):
        name = link.strip().lstrip("/")
        if not name or name in seen or "/" not in name:  # "/linuxrc": /init is ours
            continue
        if name.rsplit("/", 1)[0] not in dirs:
            raise ImageError(f"busybox wants an applet in an unexpected place: /{name}")
        target = "busybox" if name.startswith("bin/") else "../" * name.count("/") + "bin/busybox"
        entries.append(CpioEntry(name, stat.S_IFLNK | 0o777, target.encode()))
        seen.add(name)
    return entries


# Inputs and where their results go

def _run_quiet(cmd: list[str]) -> str | None:
    import subprocess  # Here and in Reporter.run: a start that builds nothing does not import it

    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError:
        return None
    return r.stdout if r.returncode == 0 else None


# What the answers of _probe's commands are a function of: dpkg's database (an install or upgrade
# replaces the status file, or leaves journal entries in updates/ until it does) and the cross
# tools' files, as found on PATH.
DPKG_DB = (Path("/var/lib/dpkg/status"), Path("/var/lib/dpkg/updates"))
PROBE_TOOLS = (f"{CROSS}gcc", f"{CROSS}as")
PROBES = "probes.json"


def _host_state() -> list[str]:
    def identity(path: Path | str | None) -> str:
        try:
            st = os.stat(path)
        except (OSError, TypeError):
            return f"{path} missing"
        return f"{os.path.realpath(path)} {st.st_ino} {st.st_size} {st.st_mtime_ns}"

    return [identity(p) for p in DPKG_DB] + [identity(shutil.which(t)) for t in PROBE_TOOLS]


def _probe(cmd: list[str]) -> str | None:
    """_run_quiet(cmd) for a command that only reports what is installed: its answer is kept in
    <image dir>/probes.json while dpkg's database and the cross tools stay as they were (the five
    processes a linux-shell start ran otherwise took ~20 ms)."""
    state = _host_state()
    path = image_dir() / PROBES
    try:
        doc = json.loads(path.read_text())
        outputs = doc["outputs"] if doc["state"] == state else {}
    except (OSError, ValueError, KeyError, TypeError):
        outputs = {}
    name = json.dumps(cmd)
    if isinstance(outputs, dict) and name in outputs and isinstance(outputs[name], str | None):
        return outputs[name]
    out = _run_quiet(cmd)
    if _host_state() == state:  # Else it changed meanwhile: not kept
        outputs = {**outputs, name: out} if isinstance(outputs, dict) else {name: out}
        tmp = path.with_name(f".{PROBES}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"state": state, "outputs": outputs}))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
    return out


def package_version(pkg: str) -> str | None:
    """The installed version of a Debian package, or None."""
    out = _probe(["dpkg-query", "-W", "-f=${Status}\t${Version}", pkg])
    if out is None or not out.startswith("install ok installed\t"):
        return None
    return out.split("\t", 1)[1]


def toolchain_version() -> str:
    """The cross compiler's and assembler's version lines ("missing" if not installed)."""
    lines = []
    for tool in PROBE_TOOLS:
        out = _probe([tool, "--version"])
        lines.append(out.splitlines()[0] if out else f"{tool} missing")
    return "; ".join(lines)


@dataclass(frozen=True)
class Inputs:
    """Everything the images depend on; the cache keys are a function of these alone."""

    opensbi: str
    linux: str
    busybox: str
    toolchain: str
    kernel_config: bytes
    busybox_config: bytes
    init: bytes
    ram_size: int = qemu_virt.DEFAULT_RAM
    bootargs: str = BOOTARGS
    board: bytes = b""

    @classmethod
    def current(cls) -> Inputs:
        """The inputs on this machine now (packages not installed count as "missing")."""
        from runtime.boot import fdt

        return cls(
            opensbi=package_version(OPENSBI_PKG) or "missing",
            linux=package_version(LINUX_PKG) or "missing",
            busybox=BUSYBOX_VERSION,
            toolchain=toolchain_version(),
            kernel_config=_read(KERNEL_FRAGMENT),
            busybox_config=_read(BUSYBOX_FRAGMENT),
            init=_read(INIT_SCRIPT),
            board=b"".join(Path(mod.__file__).read_bytes() for mod in (qemu_virt, fdt, protocol)),
        )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: {e.strerror}") from None


def key(*parts: str | bytes | int) -> str:
    """A short hash of `parts` (length-prefixed, so part boundaries count)."""
    h = hashlib.sha256(RECIPE.encode())
    for p in parts:
        b = p if isinstance(p, bytes) else str(p).encode()
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()[:16]


def _safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", version)


@dataclass(frozen=True)
class Artifacts:
    """Where the built images are (or will be) for a set of Inputs."""

    firmware: Path
    kernel: Path
    busybox: Path
    initrd: Path
    dtb: Path
    append: str = BOOTARGS

    def paths(self) -> dict[str, Path]:
        """What `mirage images` prints, in its order."""
        return {"firmware": self.firmware, "kernel": self.kernel, "initrd": self.initrd, "dtb": self.dtb}


def image_dir() -> Path:
    return images_root() / "linux-shell"


def artifacts(inp: Inputs, root: Path | None = None) -> Artifacts:
    """The cache paths for `inp` (under `root`, by default image_dir())."""
    root = image_dir() if root is None else root
    k_fw = key("opensbi", inp.opensbi)
    k_linux = key("linux", inp.linux, inp.toolchain, inp.kernel_config)
    k_bb = key("busybox", inp.busybox, inp.toolchain, inp.busybox_config)
    k_initrd = key("initrd", k_bb, inp.init)
    k_dtb = key("dtb", k_initrd, inp.ram_size, inp.bootargs, inp.board)
    upstream = inp.busybox.split(":")[-1].split("-")[0]
    return Artifacts(
        firmware=root / f"opensbi-{_safe(inp.opensbi)}-{k_fw}" / "fw_jump.elf",
        kernel=root / f"linux-{_safe(inp.linux)}-{k_linux}" / "Image",
        busybox=root / f"busybox-{_safe(upstream)}-{k_bb}" / "busybox",
        initrd=root / f"initramfs-{k_initrd}.cpio.gz",
        dtb=root / f"linux-shell-{k_dtb}.dtb",
        append=inp.bootargs,
    )


# Running the build steps, with progress

@dataclass
class Reporter:
    """Progress lines on `out` (stderr): one per step with its elapsed time, and a periodic line
    with the latest output while a long command runs. `show_cached`: also list skipped steps."""

    out: TextIO = field(default_factory=lambda: sys.stderr)
    show_cached: bool = False
    interval: float = PROGRESS_INTERVAL

    def say(self, message: str) -> None:
        print(f"images: {message}", file=self.out, flush=True)

    def cached(self, what: str, path: Path) -> None:
        if self.show_cached:
            self.say(f"{what}: cached {path}")

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        t0 = time.monotonic()
        self.say(f"{what} ...")
        yield
        self.say(f"{what}: done in {_elapsed(time.monotonic() - t0)}")

    def run(self, cmd: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None,
            stdin_text: str | None = None) -> None:
        """Runs `cmd` in `cwd`, its output appended to `log`; a failure raises BuildError with the
        command and the last lines of its output. `stdin_text`: lines fed to its stdin."""
        import subprocess

        full_env = {**os.environ, **BUILD_ENV, **(env or {})}
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        t0 = time.monotonic()
        with open(log, "ab") as logf:
            logf.write(f"$ (cd {cwd} && {shlex.join(cmd)})\n".encode())
            logf.flush()
            try:
                p = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.PIPE if stdin_text else subprocess.DEVNULL)
            except OSError as e:
                raise BuildError(f"cannot run `{shlex.join(cmd)}`: {e.strerror}") from None

            def pump() -> None:
                for raw in p.stdout:
                    logf.write(raw)
                    tail.append(raw.decode(errors="replace").rstrip())

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            if stdin_text:
                try:
                    p.stdin.write(stdin_text.encode())
                    p.stdin.close()
                except BrokenPipeError:
                    pass
            next_note = t0 + self.interval
            while True:
                try:
                    rc = p.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    pass
                except KeyboardInterrupt:
                    p.terminate()
                    p.wait()
                    raise
                now = time.monotonic()
                if now >= next_note:
                    last = tail[-1] if tail else ""
                    self.say(f"  ... still building ({_elapsed(now - t0)}){': ' + last.strip() if last else ''}")
                    next_note = now + self.interval
            reader.join()
        if rc != 0:
            lines = "\n".join(f"  | {line}" for line in tail)
            raise BuildError(f"`{shlex.join(cmd)}` (in {cwd}) failed with exit status {rc}; the last "
                             f"lines of its output:\n{lines}\nfull log: {log}")


def _elapsed(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.rename(dst)


def _atomic_write(dst: Path, data: bytes) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_bytes(data)
    tmp.rename(dst)


def ensure_packages(pkgs: list[str], why: str, rep: Reporter) -> None:
    """Installs the Debian packages of `pkgs` that are missing, with apt-get, saying so."""
    missing = [p for p in dict.fromkeys(pkgs) if package_version(p) is None]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and shutil.which("sudo") is None:
        raise ImageError(f"{why} needs {' '.join(missing)}: install them with "
                         f"`apt-get install {' '.join(missing)}` (as root)")
    rep.say(f"{why} needs {' '.join(missing)}: installing them with apt-get (first use only)")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    log = images_root() / "apt.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        rep.run(install, Path.cwd(), log, env)
    except BuildError:
        # Perhaps the package lists are stale or were never fetched.
        rep.run([*sudo, "apt-get", "update", "-q"], Path.cwd(), log, env)
        rep.run(install, Path.cwd(), log, env)


@contextmanager
def _lock(root: Path, rep: Reporter) -> Iterator[None]:
    """One build at a time per cache directory."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            rep.say(f"waiting for another build in {root} ...")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _remove_tree(work: Path, what: str, rep: Reporter) -> None:
    """Removes a finished build tree (rm is much faster than shutil.rmtree on a kernel tree)."""
    with rep.step(f"{what}: removing the build tree"):
        rep.run(["rm", "-rf", "--one-file-system", str(work)], work.parent, work.parent / f"{work.name}.rm.log")
    (work.parent / f"{work.name}.rm.log").unlink(missing_ok=True)


def _workdir(root: Path, name: str) -> Path:
    work = root / "build" / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return work


# The steps

def build_firmware(art: Artifacts, rep: Reporter) -> None:
    if art.firmware.exists():
        return rep.cached("firmware (OpenSBI fw_jump)", art.firmware)
    with rep.step(f"firmware: OpenSBI fw_jump from Debian's {OPENSBI_PKG}"):
        if not OPENSBI_FW.exists():
            raise ImageError(f"{OPENSBI_FW} is missing although {OPENSBI_PKG} is installed")
        _atomic_copy(OPENSBI_FW, art.firmware)


def build_kernel(art: Artifacts, rep: Reporter, jobs: int) -> None:
    if art.kernel.exists():
        return rep.cached("kernel (Linux 6.1)", art.kernel)
    root = art.kernel.parent.parent
    work = _workdir(root, art.kernel.parent.name)
    log = work / "build.log"
    rep.say(f"kernel: building Linux from {LINUX_TARBALL} in {work} (log: {log})")
    make = ["make", "ARCH=riscv", f"CROSS_COMPILE={CROSS}"]
    top = LINUX_TARBALL.name.removesuffix(".tar.xz")
    # The other architectures' sources and the documentation are 30% of the tree's files (unpacking
    # and removing them is slow); Kconfig still reads their Kconfig files, which stay.
    excludes = [f"--exclude={top}/arch/[!rK]*/*.{ext}" for ext in ("c", "h", "S", "dts", "dtsi")]
    excludes.append(f"--exclude={top}/Documentation/[!K]*")
    with rep.step(f"kernel: unpacking {LINUX_TARBALL.name}"):
        rep.run(["tar", "-xf", str(LINUX_TARBALL), "-C", str(work), "--anchored", "--wildcards", *excludes],
                work, log)
    src = work / top
    if not src.is_dir():
        raise BuildError(f"{LINUX_TARBALL} has no {top}/ directory")
    with rep.step(f"kernel: tinyconfig + {KERNEL_FRAGMENT.name}"):
        rep.run([*make, "tinyconfig"], src, log)
        rep.run(["scripts/kconfig/merge_config.sh", "-m", ".config", str(KERNEL_FRAGMENT)], src, log,
                {"ARCH": "riscv", "CROSS_COMPILE": CROSS})
        rep.run([*make, "olddefconfig"], src, log)
        config = (src / ".config").read_text()
    problems = verify_config(KERNEL_FRAGMENT.read_text(), config)
    if problems:
        raise BuildError(f"the Linux .config lacks what {KERNEL_FRAGMENT} asks for (a dependency "
                         "missing from the fragment, or an option this kernel does not have):\n"
                         + "\n".join(f"  {p}" for p in problems) + f"\n.config: {src / '.config'}")
    with rep.step(f"kernel: make -j{jobs} Image"):
        rep.run([*make, f"-j{jobs}", "Image"], src, log)
    # The ELF and the symbol map (small for this config) are kept for debugging: gdb, -d traces.
    for name in (".config", "System.map", "vmlinux"):
        _atomic_copy(src / name, art.kernel.with_name(name.lstrip(".")))
    _atomic_copy(src / "arch/riscv/boot/Image", art.kernel)
    _remove_tree(work, "kernel", rep)


def apt_options(apt_dir: Path) -> list[str]:
    """apt-get options for the private deb-src list under `apt_dir` (sources/, lists/, cache/)."""
    opts = ["-q", "-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={apt_dir / 'sources'}",
            "-o", f"Dir::State::Lists={apt_dir / 'lists'}", "-o", f"Dir::Cache={apt_dir / 'cache'}"]
    if os.geteuid() == 0:
        # The unprivileged _apt user may not be able to write where we download.
        opts += ["-o", "APT::Sandbox::User=root"]
    return opts


def fetch_busybox_source(work: Path, rep: Reporter, log: Path) -> Path:
    """Downloads busybox's source package (BUSYBOX_VERSION) into `work`; returns its .dsc."""
    apt_dir = cache_root() / "apt"
    for sub in ("sources", "lists/partial", "cache/archives/partial"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    sources = apt_dir / "sources" / "debian-src.sources"
    if not sources.exists() or sources.read_text() != DEB_SRC:
        sources.write_text(DEB_SRC)
    opts = apt_options(apt_dir)
    get = ["apt-get", *opts, "source", "--download-only", f"busybox={BUSYBOX_VERSION}"]
    if not any(apt_dir.joinpath("lists").glob("*_Sources*")):
        rep.run(["apt-get", *opts, "update"], work, log)
    try:
        rep.run(get, work, log)
    except BuildError:
        # The lists may be stale: refresh them once, then name what the archive has.
        rep.run(["apt-get", *opts, "update"], work, log)
        try:
            rep.run(get, work, log)
        except BuildError as e:
            have = _run_quiet(["apt-cache", *opts, "showsrc", "busybox"]) or ""
            versions = sorted(set(re.findall(r"^Version: (.*)$", have, re.M)))
            raise BuildError(f"{e}\nbusybox {BUSYBOX_VERSION} is not in the archive (it has: "
                             f"{', '.join(versions) or 'none'}); update BUSYBOX_VERSION in "
                             f"{__file__}") from None
    dsc = sorted(work.glob("busybox_*.dsc"))
    if not dsc:
        raise BuildError(f"apt-get source left no busybox .dsc in {work}")
    return dsc[0]


def build_busybox(art: Artifacts, rep: Reporter, jobs: int) -> None:
    links = art.busybox.with_name("busybox.links")
    if art.busybox.exists() and links.exists():
        return rep.cached("busybox", art.busybox)
    root = art.busybox.parent.parent
    work = _workdir(root, art.busybox.parent.name)
    log = work / "build.log"
    rep.say(f"busybox: building {BUSYBOX_VERSION} (Debian source package) in {work} (log: {log})")
    with rep.step("busybox: fetching the source package"):
        dsc = fetch_busybox_source(work, rep, log)
        # apt-get checked the files against the archive's signed index already.
        rep.run(["dpkg-source", "--no-check", "-x", dsc.name, "src"], work, log)
    src = work / "src"
    make = ["make", "ARCH=riscv", f"CROSS_COMPILE={CROSS}"]
    with rep.step(f"busybox: defconfig + {BUSYBOX_FRAGMENT.name}"):
        rep.run([*make, "defconfig"], src, log)
        fragment = BUSYBOX_FRAGMENT.read_text()
        (src / ".config").write_text(apply_fragment((src / ".config").read_text(), fragment))
        # Options the fragment makes visible get their defaults.
        rep.run([*make, "oldconfig"], src, log, stdin_text="\n" * 1000)
    problems = verify_config(fragment, (src / ".config").read_text())
    if problems:
        raise BuildError(f"the busybox .config lacks what {BUSYBOX_FRAGMENT} asks for:\n"
                         + "\n".join(f"  {p}" for p in problems) + f"\n.config: {src / '.config'}")
    with rep.step(f"busybox: make -j{jobs}"):
        rep.run([*make, f"-j{jobs}", "busybox", "busybox.links"], src, log)
    _atomic_copy(src / ".config", art.busybox.with_name("config"))
    _atomic_copy(src / "busybox.links", links)
    _atomic_copy(src / "busybox", art.busybox)
    art.busybox.chmod(0o755)
    _remove_tree(work, "busybox", rep)


def build_initrd(art: Artifacts, inp: Inputs, rep: Reporter) -> None:
    if art.initrd.exists():
        return rep.cached("initrd", art.initrd)
    with rep.step("initrd: packing busybox and /init (newc cpio, gzip)"):
        links = art.busybox.with_name("busybox.links").read_text().split()
        entries = rootfs(art.busybox.read_bytes(), links, inp.init)
        # mtime 0 in the archive and in the gzip header: the same inputs give the same bytes.
        _atomic_write(art.initrd, gzip.compress(write_newc(entries), compresslevel=9, mtime=0))


def dtb_blob(ram_size: int, initrd_size: int, bootargs: str, harts: int = 1) -> bytes:
    """The qemu-virt DTB jit-run generates for a kernel with an initrd of `initrd_size` bytes."""
    try:
        return protocol.device_tree_blob(ram_size, harts, bootargs, protocol.initrd_range(ram_size, initrd_size))
    except LoadError as e:
        raise ImageError(str(e)) from None


def build_dtb(art: Artifacts, inp: Inputs, rep: Reporter) -> None:
    if art.dtb.exists():
        return rep.cached("dtb", art.dtb)
    with rep.step(f"dtb: qemu-virt, {inp.ram_size >> 20} MiB, bootargs {inp.bootargs!r}"):
        _atomic_write(art.dtb, dtb_blob(inp.ram_size, art.initrd.stat().st_size, inp.bootargs))


def build_all(rep: Reporter | None = None, jobs: int | None = None) -> Artifacts:
    """Builds what is missing from the cache (installing Debian packages on first use) and returns
    where everything is. Raises ImageError (BuildError for a failed command)."""
    rep = rep or Reporter()
    jobs = jobs or os.cpu_count() or 1
    t0 = time.monotonic()
    with _lock(image_dir(), rep):
        ensure_packages([OPENSBI_PKG], "the firmware", rep)
        inp = Inputs.current()
        art = artifacts(inp)
        if art.kernel.exists() and art.busybox.exists() and art.initrd.exists() and art.dtb.exists() \
                and art.firmware.exists():
            for what, path in art.paths().items():
                rep.cached(what, path)
            return art
        ensure_packages(KERNEL_PKGS + BUSYBOX_PKGS, "building Linux and busybox", rep)
        # Trees of earlier failed builds (kept for inspection until now).
        shutil.rmtree(image_dir() / "build", ignore_errors=True)
        inp = Inputs.current()  # Versions of what was just installed
        art = artifacts(inp)
        build_firmware(art, rep)
        build_kernel(art, rep, jobs)
        build_busybox(art, rep, jobs)
        build_initrd(art, inp, rep)
        build_dtb(art, inp, rep)
    if time.monotonic() - t0 > 5:
        rep.say(f"all images ready in {_elapsed(time.monotonic() - t0)}")
    return art


def linux_shell() -> Boot:
    """The `linux-shell` named image for jit-run (built first if needed, with progress)."""
    art = build_all(Reporter())
    return Boot(firmware=art.firmware, kernel=art.kernel, initrd=art.initrd, append=art.append)
