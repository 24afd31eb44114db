"""The boot protocol (runtime/boot/protocol.py): where the device tree, OpenSBI's fw_dynamic info
block and the initrd go, checked against QEMU 7.2's virt board booting the same files (its reset
ROM read back through the QEMU monitor, its device tree dumped with `-machine dumpdtb`)."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from platforms import qemu_virt
from runtime.boot import board, fdt, protocol
from runtime.boot.loader import LoadError

MiB = 1 << 20
ROM_BASE = 0x1000  # QEMU's virt mask ROM, which holds the reset vector and fw_dynamic's info
LOOP = (0x6F).to_bytes(4, "little")  # j .


def _files(tmp_path: Path, initrd_size: int = 5000) -> dict[str, Path]:
    """A raw firmware, a raw kernel and an initrd, the same files for QEMU and Mirage."""
    files = {"firmware": tmp_path / "fw.bin", "kernel": tmp_path / "kernel.bin", "initrd": tmp_path / "initrd"}
    files["firmware"].write_bytes(LOOP)
    files["kernel"].write_bytes(LOOP)
    files["initrd"].write_bytes(bytes(range(256)) * (initrd_size // 256) + b"\x5a" * (initrd_size % 256))
    return files


def _itype_imm(word: int) -> int:
    return (word >> 20) - ((word >> 20 & 0x800) << 1)


def _qemu(qemu: str, tmp_path: Path, ram: int, files: dict[str, Path]) -> dict:
    """What QEMU hands the firmware with -bios, -kernel and -initrd: the addresses in a1 and a2
    (decoded from its reset vector: `addi a2, t0, X` and `ld a1, Y(t0)`), the info block's six
    fields and /chosen's initrd range."""
    boot = ["-bios", str(files["firmware"]), "-kernel", str(files["kernel"]), "-initrd", str(files["initrd"]),
            "-m", f"{ram >> 20}M", "-display", "none", "-serial", "none"]
    rom = tmp_path / "rom.bin"
    r = subprocess.run([qemu, "-M", "virt", *boot, "-monitor", "stdio", "-S"], cwd=tmp_path, capture_output=True,
                       input=f'pmemsave {ROM_BASE:#x} 0x100 "{rom.name}"\nquit\n'.encode(), timeout=60, check=False)
    assert rom.exists(), r.stderr.decode()
    words = struct.unpack("<8I", rom.read_bytes()[:32])
    assert words[0] & 0x7F == 0x17 and words[1] & 0x707F == 0x13 and words[3] & 0x707F == 0x3003, \
        "QEMU's reset vector is not auipc t0; addi a2; csrr a0; ld a1 as expected"
    info_off, dtb_off = _itype_imm(words[1]), _itype_imm(words[3])
    data = rom.read_bytes()
    dtb_file = tmp_path / "qemu.dtb"
    r = subprocess.run([qemu, "-M", f"virt,dumpdtb={dtb_file}", *boot], capture_output=True, timeout=60,
                       check=False)
    assert dtb_file.exists(), r.stderr.decode()
    chosen = fdt.decode(dtb_file.read_bytes())["chosen"]
    return {
        "dtb": struct.unpack_from("<Q", data, dtb_off)[0],
        "info": struct.unpack_from("<6Q", data, info_off),
        "initrd": (int.from_bytes(chosen["linux,initrd-start"], "big"),
                   int.from_bytes(chosen["linux,initrd-end"], "big")),
    }


def _mirage(ram: int, files: dict[str, Path], **kw) -> tuple:
    m = board.build(qemu_virt, ram_size=ram + 2 * MiB)
    guest = protocol.Guest(program=files["firmware"], kernel=files["kernel"], initrd=files["initrd"],
                           ram_size=ram, monitor_ram=2 * MiB, **kw)
    return m, protocol.boot(m, guest)


@pytest.mark.parametrize("ram", [64 * MiB, 255 * MiB, 256 * MiB, 1 << 30, 2 << 30, 4 << 30],
                         ids=["64M", "255M", "256M", "1G", "2G", "4G"])
def test_placement_matches_qemu(qemu, tmp_path, ram):
    files = _files(tmp_path)
    q = _qemu(qemu, tmp_path, ram, files)
    m, booted = _mirage(ram, files)
    # The device tree where QEMU puts it (below 3 GiB for the bigger guests), and the tree there.
    assert booted.dtb_addr == q["dtb"]
    tree = fdt.decode(m.mem.read_bytes(booted.dtb_addr, 1 << 16))
    assert fdt.cells(tree["chosen"]["linux,initrd-start"]) == [0, booted.initrd[0]]
    # fw_dynamic's info block: the same six fields (include/sbi/fw_dynamic.h, version 2).
    info = struct.unpack("<6Q", m.mem.read_bytes(booted.info_addr, 48))
    assert info == q["info"]
    # In fw_dynamic.h's order: magic FW_DYNAMIC_INFO_MAGIC_VALUE ("OSBI"), version 2, the payload
    # address, FW_DYNAMIC_INFO_NEXT_MODE_S (1), no options, boot hart 0.
    fields = dict(zip(protocol.FW_DYNAMIC_FIELDS, info, strict=True))
    assert fields == {"magic": 0x4942534F, "version": 2, "next_addr": qemu_virt.PAYLOAD_ADDR, "next_mode": 1,
                      "options": 0, "boot_hart": 0}
    # It lies in guest RAM below the tree, clear of everything else placed there.
    assert booted.ram[0] <= booted.info_addr and booted.info_addr + 48 <= booted.dtb_addr
    # The initrd where QEMU puts it, but never below where fw_jump copies the DTB (2 MiB up from
    # FW_JUMP_FDT_ADDR, 0x82200000): QEMU's rule alone puts it there below 68 MiB of RAM.
    start, end = q["initrd"]
    if start >= 0x8240_0000:
        assert booted.initrd == (start, end)
    else:
        assert booted.initrd == (0x8240_0000, 0x8240_0000 + end - start)
    assert m.mem.read_bytes(booted.initrd[0], 5000) == files["initrd"].read_bytes()
    assert booted.reset_args(3) == (3, booted.dtb_addr, booted.info_addr)
    # The monitor's RAM right above the guest's; the OS's from the payload address up.
    assert booted.monitor_ram == (qemu_virt.RAM_BASE + ram, 2 * MiB)
    assert booted.os_memory == (0x8020_0000, qemu_virt.RAM_BASE + ram)


def test_largest_initrd_ends_at_the_info_block(tmp_path):
    # 80 MiB: the initrd starts 40 MiB above the payload; the largest one ends where the boot
    # info block below the device tree begins, one byte more is refused with a one-line error.
    ram = 80 * MiB
    start = 0x8020_0000 + ram // 2
    _, probe = _mirage(ram, _files(tmp_path))
    largest = probe.info_addr - start
    _, booted = _mirage(ram, _files(tmp_path, largest))
    assert booted.initrd == (start, probe.info_addr)
    with pytest.raises(LoadError) as e:
        _mirage(ram, _files(tmp_path, largest + 1))
    assert str(e.value) == (f"an initrd of {largest + 1} bytes does not fit at {start:#x} below "
                            f"{probe.info_addr:#x} with 80 MiB of RAM: give the guest more memory (-m)")


def test_initrd_in_small_ram_is_refused(tmp_path):
    # 16 MiB ends below 0x82400000, the lowest an initrd goes.
    with pytest.raises(LoadError, match=r"does not fit at 0x82400000 below 0x80[0-9a-f]+ with 16 MiB of RAM"):
        _mirage(16 * MiB, _files(tmp_path))


def test_device_tree_over_firmware_is_refused(tmp_path):
    # A raw firmware reaching into the top 2 MiB of an 8 MiB guest: the tree has no room left.
    ram = 8 * MiB
    fw = tmp_path / "fw.bin"
    fw.write_bytes(LOOP * ((7 * MiB) // 4))
    m = board.build(qemu_virt, ram_size=ram)
    with pytest.raises(LoadError) as e:
        protocol.boot(m, protocol.Guest(program=fw, ram_size=ram))
    msg = str(e.value)
    assert msg.startswith("the device tree [0x80600000, ") and f"overlaps {fw} [0x80000000, 0x80700000)" in msg
    assert msg.endswith("(with 8 MiB of RAM; -m gives more)")


def test_kernel_above_guest_ram_is_refused(tmp_path):
    # A raw kernel from the payload address up past the guest's RAM must not reach the monitor's
    # RAM above it: it may take the 6 MiB from 0x80200000 to 0x80800000, not a byte more.
    ram = 8 * MiB
    files = _files(tmp_path)
    files["kernel"].write_bytes(LOOP * ((6 * MiB) // 4) + b"\x13")
    m = board.build(qemu_virt, ram_size=ram + 2 * MiB)
    with pytest.raises(LoadError, match="larger than the 6,291,456 bytes of guest RAM it must fit in"):
        protocol.boot(m, protocol.Guest(program=files["firmware"], kernel=files["kernel"], ram_size=ram,
                                        monitor_ram=2 * MiB))
