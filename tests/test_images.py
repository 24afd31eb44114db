"""The linux-shell image pipeline (runtime/boot/images/linux.py) without building anything: the cpio
writer, config fragments, cache keys, initrd placement and `mirage images`."""

from __future__ import annotations

import gzip
import os
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from platforms import qemu_virt
from runtime.boot import fdt, protocol
from runtime.boot.images import build, linux
from runtime.boot.loader import LoadError
from runtime.frontends.cli import main
from tests.conftest import mirage

INIT = b"#!/bin/sh\necho hello\n"
LINKS = ["/linuxrc", "/bin/sh", "/bin/ls", "/sbin/poweroff", "/usr/bin/setsid", "/usr/sbin/chroot"]


def by_name(entries: list[linux.CpioEntry]) -> dict[str, linux.CpioEntry]:
    return {e.name: e for e in entries}


# The cpio writer

def test_newc_round_trip():
    entries = [
        linux.CpioEntry("bin", stat.S_IFDIR | 0o755),
        linux.CpioEntry("bin/x", stat.S_IFREG | 0o755, b"12345"),  # data needs padding
        linux.CpioEntry("bin/longer-name", stat.S_IFLNK | 0o777, b"x"),
        linux.CpioEntry("dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3)),
    ]
    blob = linux.write_newc(entries)
    assert len(blob) % 4 == 0
    assert blob.count(b"070701") == len(entries) + 1  # and the trailer
    assert b"TRAILER!!!\0" in blob
    assert linux.read_newc(blob) == entries


def test_rootfs_init_busybox_and_symlinks():
    entries = linux.rootfs(b"\x7fELF busybox", LINKS, INIT)
    files = by_name(linux.read_newc(gzip.decompress(gzip.compress(linux.write_newc(entries)))))
    init = files["init"]
    assert stat.S_ISREG(init.mode) and stat.S_IMODE(init.mode) == 0o755
    assert init.data == INIT and init.uid == 0 and init.gid == 0
    assert stat.S_IMODE(files["bin/busybox"].mode) == 0o755
    assert files["bin/busybox"].data == b"\x7fELF busybox"
    targets = {n: e.data.decode() for n, e in files.items() if stat.S_ISLNK(e.mode)}
    assert targets == {
        "bin/sh": "busybox",
        "bin/ls": "busybox",
        "sbin/poweroff": "../bin/busybox",
        "usr/bin/setsid": "../../bin/busybox",
        "usr/sbin/chroot": "../../bin/busybox",
    }
    assert "linuxrc" not in files
    console = files["dev/console"]
    assert stat.S_ISCHR(console.mode) and console.rdev == (5, 1)
    for d in ("proc", "sys", "dev", "tmp", "root"):
        assert stat.S_ISDIR(files[d].mode)
    assert stat.S_IMODE(files["tmp"].mode) == 0o1777
    # Every symlink's directory comes before it (cpio extraction order).
    names = [e.name for e in entries]
    for n in targets:
        assert names.index(n.rsplit("/", 1)[0]) < names.index(n)


def test_gnu_cpio_reads_the_archive(cpio):
    blob = linux.write_newc(linux.rootfs(b"bb", LINKS, INIT))
    r = subprocess.run([cpio, "-itv", "--quiet"], input=blob, capture_output=True, check=True)
    listing = r.stdout.decode()
    assert "-rwxr-xr-x" in next(line for line in listing.splitlines() if line.endswith(" init"))
    assert "usr/bin/setsid -> ../../bin/busybox" in listing


def test_initramfs_is_reproducible(tmp_path):
    """The image builder's initrd step, twice, on inputs made at different times: the same bytes."""
    blobs = []
    for i in range(2):
        art = linux.artifacts(fake_inputs(), tmp_path / f"build{i}")
        art.busybox.parent.mkdir(parents=True)
        art.busybox.write_bytes(b"\x7fELF busybox")
        art.busybox.with_name("busybox.links").write_text("\n".join(LINKS) + "\n")
        os.utime(art.busybox, (1_000_000 * (i + 1), 1_000_000 * (i + 1)))
        art.initrd.parent.mkdir(parents=True, exist_ok=True)
        linux.build_initrd(art, fake_inputs(), linux.Reporter(out=open(os.devnull, "w")))
        blobs.append(art.initrd.read_bytes())
    assert blobs[0] == blobs[1]
    # No clock inside: the gzip header's MTIME is 0, "no time stamp is available" (RFC 1952 2.3.1),
    # and so is every newc header's c_mtime (at offset 46).
    assert blobs[0][4:8] == bytes(4)
    archive = gzip.decompress(blobs[0])
    headers = [i for i in range(0, len(archive), 2) if archive.startswith(b"070701", i)]
    assert len(headers) > len(LINKS) and all(archive[h + 46:h + 54] == b"0" * 8 for h in headers)
    files = by_name(linux.read_newc(archive))
    assert files["init"].data == INIT and files["bin/busybox"].data == b"\x7fELF busybox"


# Config fragments

def test_verify_config_reports_what_is_missing():
    fragment = 'CONFIG_A=y\nCONFIG_B=n\n# CONFIG_C is not set\nCONFIG_D="x y"\n# a comment\nCONFIG_E=y\n'
    config = 'CONFIG_B=y\n# CONFIG_A is not set\nCONFIG_D="x"\nCONFIG_E=y\n'
    problems = linux.verify_config(fragment, config)
    assert len(problems) == 3
    assert any("CONFIG_A=y" in p and "not set" in p for p in problems)
    assert any("CONFIG_B should be off" in p for p in problems)
    assert any('CONFIG_D="x y"' in p and 'CONFIG_D="x"' in p for p in problems)


def test_verify_the_linux_fragment():
    fragment = linux.KERNEL_FRAGMENT.read_text()
    wanted = linux.parse_config(fragment)
    assert wanted["CONFIG_BLK_DEV_INITRD"] == "y"
    # A .config with everything the fragment asks for passes; one without the initrd support fails.
    full = "\n".join(f"{k}={v}" for k, v in wanted.items() if v is not None)
    assert linux.verify_config(fragment, full) == []
    missing = full.replace("CONFIG_BLK_DEV_INITRD=y", "# CONFIG_BLK_DEV_INITRD is not set")
    problems = linux.verify_config(fragment, missing)
    assert len(problems) == 1 and "CONFIG_BLK_DEV_INITRD" in problems[0]


def test_busybox_fragment_applies():
    fragment = linux.BUSYBOX_FRAGMENT.read_text()
    defconfig = "# CONFIG_STATIC is not set\nCONFIG_PIE=y\nCONFIG_ASH=y\nCONFIG_OTHER=y\n"
    merged = linux.apply_fragment(defconfig, fragment)
    assert "CONFIG_STATIC=y" in merged and "# CONFIG_PIE is not set" in merged
    assert "CONFIG_OTHER=y" in merged and merged.count("CONFIG_ASH=y") == 1
    assert linux.verify_config(fragment, merged) == []


# Cache keys

def fake_inputs(**changes) -> linux.Inputs:
    base = linux.Inputs(opensbi="1.1-2", linux="6.1.1-1", busybox="1:1.35.0-4", toolchain="gcc 12",
                        kernel_config=b"CONFIG_A=y\n", busybox_config=b"CONFIG_STATIC=y\n", init=INIT,
                        board=b"board")
    return replace(base, **changes)


def test_cache_keys_follow_their_inputs(tmp_path):
    a = linux.artifacts(fake_inputs(), tmp_path)
    assert a == linux.artifacts(fake_inputs(), tmp_path)
    for p in (a.firmware, a.kernel, a.busybox, a.initrd, a.dtb):
        assert tmp_path in p.parents

    def changed(**kw) -> set[str]:
        b = linux.artifacts(fake_inputs(**kw), tmp_path)
        return {k for k in ("firmware", "kernel", "busybox", "initrd", "dtb") if getattr(a, k) != getattr(b, k)}

    assert changed(init=INIT + b"echo more\n") == {"initrd", "dtb"}
    assert changed(kernel_config=b"CONFIG_A=n\n") == {"kernel"}
    assert changed(busybox_config=b"") == {"busybox", "initrd", "dtb"}
    assert changed(toolchain="gcc 13") == {"kernel", "busybox", "initrd", "dtb"}
    assert changed(linux="6.1.2-1") == {"kernel"}
    assert changed(opensbi="1.2-1") == {"firmware"}
    assert changed(bootargs="console=hvc0") == {"dtb"}
    assert changed(ram_size=512 << 20) == {"dtb"}


def test_current_inputs_read_platforms():
    inp = linux.Inputs.current()
    assert inp.init == linux.INIT_SCRIPT.read_bytes()
    assert inp.kernel_config == linux.KERNEL_FRAGMENT.read_bytes()
    assert inp.init.startswith(b"#!/bin/sh\n")


def test_installed_versions_are_asked_again_only_when_dpkg_or_the_tools_change(tmp_path, monkeypatch):
    """Package versions and the cross tools' version lines are kept between starts while dpkg's
    database and the tools' files stay as they were; a change to either asks again."""
    monkeypatch.setenv("MIRAGE_IMAGES_DIR", str(tmp_path / "images"))
    status, updates = tmp_path / "status", tmp_path / "updates"
    status.write_text("Package: opensbi\n")
    updates.mkdir()
    monkeypatch.setattr(linux, "DPKG_DB", (status, updates))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def tool(name: str, version: str) -> None:
        # A new file, as an upgrade installs it (a new inode and modification time).
        new = bin_dir / f".{name}.new"
        new.write_text(f"#!/bin/sh\necho '{name} {version}'\n")
        new.chmod(0o755)
        new.replace(bin_dir / name)

    for name in linux.PROBE_TOOLS:
        tool(name, "12.2.0")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    asked = []
    version = {"opensbi": "1.1-2"}
    real_run = linux._run_quiet

    def run(cmd):
        asked.append(cmd[0])
        if cmd[0] == "dpkg-query":
            return f"install ok installed\t{version[cmd[-1]]}"
        return real_run(cmd)

    monkeypatch.setattr(linux, "_run_quiet", run)
    gcc = linux.PROBE_TOOLS[0]
    first = (linux.package_version("opensbi"), linux.toolchain_version())
    assert first[0] == "1.1-2" and first[1].startswith(f"{gcc} 12.2.0; ")
    assert sorted(asked) == sorted(["dpkg-query", *linux.PROBE_TOOLS])
    asked.clear()
    assert (linux.package_version("opensbi"), linux.toolchain_version()) == first
    assert asked == []  # Nothing ran
    # An upgrade of the package: dpkg's status file is replaced.
    version["opensbi"] = "1.2-1"
    status.write_text("Package: opensbi\nVersion: 1.2-1\n")
    assert linux.package_version("opensbi") == "1.2-1" and asked == ["dpkg-query"]
    # A pending dpkg journal entry counts too.
    version["opensbi"] = "1.3-1"
    (updates / "0001").write_text("x")
    assert linux.package_version("opensbi") == "1.3-1"
    # A new compiler.
    asked.clear()
    tool(gcc, "13.1.0")
    assert linux.toolchain_version().startswith(f"{gcc} 13.1.0; ") and gcc in asked


# Initrd placement and the DTB

def test_initrd_placement():
    assert protocol.initrd_range(256 << 20, 1000) == (0x8820_0000, 0x8820_0000 + 1000)
    assert protocol.initrd_range(1 << 30, 10)[0] == 0x8820_0000  # at most 128 MiB above the kernel
    assert protocol.initrd_range(128 << 20, 10)[0] == 0x8420_0000
    assert protocol.initrd_range(64 << 20, 10)[0] == 0x8240_0000  # above fw_jump's DTB copy
    with pytest.raises(LoadError, match="does not fit"):
        protocol.initrd_range(256 << 20, 125 << 20)
    with pytest.raises(build.ImageError, match="does not fit"):
        linux.dtb_blob(256 << 20, 125 << 20, "console=ttyS0")


def test_dtb_carries_initrd_and_bootargs():
    tree = fdt.decode(linux.dtb_blob(256 << 20, 4096, "console=ttyS0"))
    chosen = tree["chosen"]
    assert fdt.strings_of(chosen["bootargs"]) == ["console=ttyS0"]
    assert fdt.cells(chosen["linux,initrd-start"]) == [0, 0x8820_0000]
    assert fdt.cells(chosen["linux,initrd-end"]) == [0, 0x8820_1000]


def test_patch_chosen():
    blob = fdt.encode(qemu_virt.device_tree(bootargs="old"))
    tree = fdt.decode(protocol.patch_chosen(blob, "new args", (0x8820_0000, 0x8830_0000)))
    assert fdt.strings_of(tree["chosen"]["bootargs"]) == ["new args"]
    assert fdt.cells(tree["chosen"]["linux,initrd-end"]) == [0, 0x8830_0000]
    assert "serial@10000000" in tree["soc"]


# Running build commands

def test_build_command_failure_names_command_and_output(tmp_path):
    rep = linux.Reporter(out=open(tmp_path / "progress", "w"))
    with pytest.raises(linux.BuildError) as e:
        rep.run(["sh", "-c", "echo first; echo last words; exit 3"], tmp_path, tmp_path / "log")
    msg = str(e.value)
    assert "sh -c 'echo first; echo last words; exit 3'" in msg
    assert "exit status 3" in msg and "| last words" in msg
    assert "last words" in (tmp_path / "log").read_text()


# `mirage images`

def test_images_prints_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MIRAGE_IMAGES_DIR", raising=False)
    r = CliRunner().invoke(main, ["images"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert [line.split(": ")[0] for line in lines] == ["firmware", "kernel", "initrd", "dtb"]
    paths = [Path(line.split(": ", 1)[1]) for line in lines]
    assert all(tmp_path / "images" / "linux-shell" in p.parents for p in paths)
    assert "not built yet: firmware, kernel, initrd, dtb" in r.stderr
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    r = CliRunner().invoke(main, ["images", "paths"])
    assert r.exit_code == 0 and r.stdout.splitlines() == lines and r.stderr == ""


def test_images_dir_override(tmp_path, monkeypatch):
    # $MIRAGE_IMAGES_DIR moves the images and nothing else (the tests point it at the user's).
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path / "root"))
    monkeypatch.setenv("MIRAGE_IMAGES_DIR", str(tmp_path / "img"))
    assert linux.image_dir() == tmp_path / "img" / "linux-shell"
    assert tmp_path / "img" / "linux-shell" in linux.artifacts(fake_inputs()).kernel.parents
    from runtime.core import pcache

    assert pcache.tcache_dir() == tmp_path / "root" / "tcache"
    monkeypatch.delenv("MIRAGE_IMAGES_DIR")
    assert linux.image_dir() == tmp_path / "root" / "images" / "linux-shell"


def test_images_build_failure_exits_2(monkeypatch):
    def broken(*args, **kwargs):
        raise linux.BuildError("`make Image` failed with exit status 2; the last lines of its output:\n  | oops")

    monkeypatch.setattr(linux, "build_all", broken)
    r = CliRunner().invoke(main, ["images", "build"])
    assert r.exit_code == 2
    assert "make Image" in r.stderr and "oops" in r.stderr


def test_named_images_resolve():
    assert "linux-shell" in build.NAMED
    boot = build.Boot(firmware=Path("fw"))
    assert boot.kernel is None and boot.initrd is None and boot.append is None


# `mirage jit-run --initrd --append`: what the firmware receives

DUMP_DTB_AND_INITRD = r"""
  mv s0, a1                 # the DTB, as firmware gets it
  la t0, begin_signature
  li t1, 4096
1: ld t2, 0(s0)
  sd t2, 0(t0)
  addi s0, s0, 8
  addi t0, t0, 8
  addi t1, t1, -8
  bnez t1, 1b
  li s0, 0x88200000         # initrd_range(256 MiB, ...)[0]
  ld t2, 0(s0)
  sd t2, 0(t0)
  ld t2, 8(s0)
  sd t2, 8(t0)
  PASS
  .data
  .align 3
begin_signature:
  .fill 4096 + 16, 1, 0
end_signature:
"""


@pytest.mark.parametrize("given_dtb", [False, True], ids=["generated-dtb", "given-dtb"])
def test_jit_run_initrd_and_append(asm, tmp_path, given_dtb):
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"0123456789abcdef" + bytes(1000))
    sig = tmp_path / "sig"
    extra = []
    if given_dtb:  # --dtb: its /chosen gets the initrd range and the command line, as in QEMU
        (tmp_path / "virt.dtb").write_bytes(fdt.encode(qemu_virt.device_tree(bootargs="replaced")))
        extra = ["--dtb", str(tmp_path / "virt.dtb")]
    r = mirage("jit-run", str(asm(DUMP_DTB_AND_INITRD)), "--initrd", str(initrd), "--append", "console=ttyS0 x=1",
               "--signature", str(sig), "--signature-granularity", "8", "--max-insns", "100000", *extra)
    assert r.returncode == 0, r.stderr.decode()
    data = b"".join(int(w, 16).to_bytes(8, "little") for w in sig.read_text().split())
    chosen = fdt.decode(data[:4096])["chosen"]
    assert fdt.strings_of(chosen["bootargs"]) == ["console=ttyS0 x=1"]
    start, end = protocol.initrd_range(256 << 20, initrd.stat().st_size)
    assert fdt.cells(chosen["linux,initrd-start"]) == [0, start]
    assert fdt.cells(chosen["linux,initrd-end"]) == [0, end]
    assert data[4096:] == b"0123456789abcdef"
