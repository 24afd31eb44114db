"""The DTB encoder, the qemu-virt device tree (checked against QEMU 7.2's own) and `mirage dtb`."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest
from click.testing import CliRunner

from platforms import qemu_virt
from runtime.boot import fdt
from runtime.frontends.cli_dtb import dtb

QEMU = shutil.which("qemu-system-riscv64")
DTC = shutil.which("dtc")
# Missing tools fail these tests (tests/conftest.py): `just setup` installs them.
need_dtc = pytest.mark.usefixtures("dtc")
need_qemu = pytest.mark.usefixtures("qemu")

# Properties where Mirage deliberately differs from QEMU's virt board.
OURS_ONLY = {
    "riscv,isa",  # QEMU: rv64imafdch_zicsr_..._sstc; Mirage implements rv64imafdc
    "mmu-type",  # QEMU: sv48 by default; Mirage implements sv39
}
PHANDLE_PROPS = {"interrupt-parent", "regmap", "cpu"}


def dts(blob: bytes) -> str:
    r = subprocess.run([DTC, "-I", "dtb", "-O", "dts"], input=blob, capture_output=True, check=False)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


# The encoder

def test_encode_value_kinds():
    tree = {
        "cell": 0x1234,
        "cells": [1, 0xFFFF_FFFF],
        "u64": fdt.U64(0x1_2345_6789),
        "str": "hello",
        "strs": ["a", "bc"],
        "empty": True,
        "empty-list": [],
        "raw": b"\x01\x02\x03",
        "absent": None,
        "child@1": {"x": 1, "grandchild": {}},
    }
    blob = fdt.encode(tree, reserved=[(0x8000_0000, 0x1000)], pad=64)
    magic, total, off_struct, off_strings, off_rsv, version, last = struct.unpack_from(">7I", blob)
    assert magic == 0xD00DFEED and total == len(blob) and version == 17 and last == 16
    assert off_rsv == 40 and off_struct % 4 == 0 and off_strings > off_struct
    assert struct.unpack_from(">4Q", blob, off_rsv) == (0x8000_0000, 0x1000, 0, 0)
    back = fdt.decode(blob)
    assert fdt.cells(back["cell"]) == [0x1234]
    assert fdt.cells(back["cells"]) == [1, 0xFFFF_FFFF]
    assert back["u64"] == (0x1_2345_6789).to_bytes(8, "big")
    assert back["str"] == b"hello\0"
    assert fdt.strings_of(back["strs"]) == ["a", "bc"]
    assert back["empty"] == b"" and back["empty-list"] == b""
    assert back["raw"] == b"\x01\x02\x03"
    assert "absent" not in back
    assert fdt.cells(back["child@1"]["x"]) == [1] and back["child@1"]["grandchild"] == {}
    # Property names are stored once in the strings block.
    blob2 = fdt.encode({"a": {"reg": 1}, "b": {"reg": 2}})
    assert blob2.count(b"reg\0") == 1


@pytest.mark.parametrize("bad", [{"x": 1 << 32}, {"x": [-1]}, {"x": 1.5}, {"a/b": {}}, {"x": "a\0b"},
                                 {"x": [True]}])
def test_encode_rejects(bad):
    with pytest.raises(fdt.FdtError):
        fdt.encode(bad)


@need_dtc
def test_dtc_reads_encoder_output():
    text = dts(fdt.encode({"#address-cells": 2, "n@0": {"compatible": ["x,y", "z"], "p": True}}))
    assert "#address-cells = <0x02>;" in text
    assert 'compatible = "x,y\\0z";' in text
    assert "p;" in text


# The qemu-virt tree

def _tree(**kw) -> dict:
    return fdt.decode(fdt.encode(qemu_virt.device_tree(**kw)))


def test_virt_tree_shape():
    t = _tree(ram_size=512 << 20, harts=2, bootargs="console=ttyS0", initrd_start=0x8800_0000,
              initrd_end=0x8810_0000)
    assert fdt.strings_of(t["compatible"]) == ["riscv-virtio"]
    assert fdt.cells(t["#address-cells"]) == [2] and fdt.cells(t["#size-cells"]) == [2]
    ch = t["chosen"]
    assert ch["bootargs"] == b"console=ttyS0\0"
    assert ch["stdout-path"] == b"/soc/serial@10000000\0"
    assert int.from_bytes(ch["linux,initrd-start"], "big") == 0x8800_0000
    assert int.from_bytes(ch["linux,initrd-end"], "big") == 0x8810_0000
    assert fdt.cells(t["memory@80000000"]["reg"]) == [0, 0x8000_0000, 0, 512 << 20]
    cpus = t["cpus"]
    assert fdt.cells(cpus["timebase-frequency"]) == [10_000_000]
    phandles = {}
    for n in range(2):
        cpu = cpus[f"cpu@{n}"]
        assert cpu["device_type"] == b"cpu\0" and fdt.cells(cpu["reg"]) == [n]
        assert cpu["status"] == b"okay\0" and cpu["riscv,isa"] == b"rv64imafdc\0"
        assert cpu["mmu-type"] == b"riscv,sv39\0"
        intc = cpu["interrupt-controller"]
        assert intc["compatible"] == b"riscv,cpu-intc\0" and intc["interrupt-controller"] == b""
        assert fdt.cells(intc["#interrupt-cells"]) == [1]
        phandles[n] = fdt.cells(intc["phandle"])[0]
    soc = t["soc"]
    assert soc["compatible"] == b"simple-bus\0" and soc["ranges"] == b""
    ph0, ph1 = phandles[0], phandles[1]
    clint = soc["clint@2000000"]
    assert fdt.cells(clint["interrupts-extended"]) == [ph0, 3, ph0, 7, ph1, 3, ph1, 7]
    assert fdt.cells(clint["reg"]) == [0, 0x200_0000, 0, 0x1_0000]
    plic = soc["plic@c000000"]
    assert fdt.cells(plic["interrupts-extended"]) == [ph0, 11, ph0, 9, ph1, 11, ph1, 9]
    assert fdt.cells(plic["riscv,ndev"]) == [96]
    uart = soc["serial@10000000"]
    assert fdt.cells(uart["interrupt-parent"]) == fdt.cells(plic["phandle"])
    assert fdt.cells(uart["interrupts"]) == [10] and fdt.cells(uart["clock-frequency"]) == [3_686_400]
    test_ph = fdt.cells(soc["test@100000"]["phandle"])
    for node, value in (("poweroff", 0x5555), ("reboot", 0x7777)):
        assert fdt.cells(t[node]["regmap"]) == test_ph
        assert fdt.cells(t[node]["value"]) == [value] and fdt.cells(t[node]["offset"]) == [0]
    # Phandles are unique.
    all_ph = []

    def walk(node: dict) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v)
            elif k == "phandle":
                all_ph.append(fdt.cells(v)[0])
    walk(t)
    assert len(all_ph) == len(set(all_ph)) == 2 * 2 + 2


def test_virt_tree_optional_chosen():
    ch = _tree()["chosen"]
    assert "bootargs" not in ch and "linux,initrd-start" not in ch
    assert ch["stdout-path"] == b"/soc/serial@10000000\0"


# Against QEMU 7.2's own tree

def _qemu_blob(tmp_path, harts: int, mem: str, append: str | None, initrd: bool) -> bytes:
    out = tmp_path / "qemu.dtb"
    args = [QEMU, "-machine", f"virt,dumpdtb={out}", "-bios", "none", "-nographic", "-smp", str(harts),
            "-m", mem]
    if append is not None or initrd:
        kernel = tmp_path / "kernel.bin"
        kernel.write_bytes(b"\0" * 4096)
        args += ["-kernel", str(kernel)]
    if append is not None:
        args += ["-append", append]
    if initrd:
        rd = tmp_path / "initrd.bin"
        rd.write_bytes(b"\x5a" * 10000)
        args += ["-initrd", str(rd)]
    r = subprocess.run(args, capture_output=True, timeout=60, check=False)
    assert out.exists(), r.stderr.decode()
    return out.read_bytes()


def _by_phandle(tree: dict) -> dict[int, str]:
    out: dict[int, str] = {}

    def walk(node: dict, path: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{path}/{k}")
            elif k == "phandle":
                out[fdt.cells(v)[0]] = path or "/"
    walk(tree, "")
    return out


def _normalized(tree: dict) -> dict[str, object]:
    """path:property -> value with phandles replaced by node paths and numbers by ints."""
    ph = _by_phandle(tree)
    out: dict[str, object] = {}

    def walk(node: dict, path: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{path}/{k}")
                continue
            key = f"{path or '/'}:{k}"
            if k == "phandle":
                continue
            if k in PHANDLE_PROPS:
                out[key] = [ph[c] for c in fdt.cells(v)]
            elif k == "interrupts-extended":
                c = fdt.cells(v)
                # In order: the PLIC's context n is the n-th pair (Linux's irq-sifive-plic).
                out[key] = [(ph[c[i]], c[i + 1]) for i in range(0, len(c), 2)]
            elif k.startswith("linux,initrd-"):
                out[key] = int.from_bytes(v, "big")
            else:
                out[key] = v
    walk(tree, "")
    return out


@need_qemu
@pytest.mark.parametrize("harts, mem, append, initrd", [(1, "256M", None, False),
                                                       (2, "512M", "console=ttyS0 earlycon", True),
                                                       (4, "256M", None, False)])
def test_virt_tree_matches_qemu(tmp_path, harts, mem, append, initrd):
    q = fdt.decode(_qemu_blob(tmp_path, harts, mem, append, initrd))
    kw = {}
    if initrd:
        kw = {"initrd_start": int.from_bytes(q["chosen"]["linux,initrd-start"], "big"),
              "initrd_end": int.from_bytes(q["chosen"]["linux,initrd-end"], "big")}
    ours = _normalized(fdt.decode(fdt.encode(qemu_virt.device_tree(
        ram_size=int(mem[:-1]) << 20, harts=harts, bootargs=append, **kw))))
    theirs = _normalized(q)
    compared = 0
    for key, value in ours.items():
        if key.split(":")[1] in OURS_ONLY:
            continue
        assert key in theirs, f"{key} is not in QEMU's tree"
        assert value == theirs[key], f"{key}: ours {value!r}, QEMU {theirs[key]!r}"
        compared += 1
    assert compared > 40
    # QEMU's values for the properties where Mirage differs on purpose.
    assert theirs["/cpus/cpu@0:riscv,isa"].startswith(b"rv64imafdc")


@need_dtc
def test_dtc_decodes_virt_tree():
    text = dts(fdt.encode(qemu_virt.device_tree(harts=2, bootargs="console=ttyS0")))
    for needle in ('compatible = "riscv-virtio";', 'bootargs = "console=ttyS0";',
                   'stdout-path = "/soc/serial@10000000";', "cpu@1 {", 'compatible = "riscv,cpu-intc";',
                   "memory@80000000 {", "reg = <0x00 0x80000000 0x00 0x10000000>;",
                   'compatible = "sifive,clint0\\0riscv,clint0";', "plic@c000000 {",
                   'compatible = "sifive,plic-1.0.0\\0riscv,plic0";', "riscv,ndev = <0x60>;",
                   'compatible = "ns16550a";', "interrupts = <0x0a>;",
                   'compatible = "sifive,test1\\0sifive,test0\\0syscon";', 'compatible = "syscon-poweroff";',
                   "value = <0x7777>;", "timebase-frequency = <0x989680>;"):
        assert needle in text, needle


# mirage dtb

@need_dtc
def test_cli_dtb(tmp_path):
    out = tmp_path / "virt.dtb"
    r = CliRunner().invoke(dtb, ["-o", str(out), "-m", "1G", "--harts", "4", "--append", "root=/dev/vda",
                                 "--initrd-start", "0x88000000", "--initrd-end", "0x88200000"])
    assert r.exit_code == 0, r.output
    t = fdt.decode(out.read_bytes())
    assert fdt.cells(t["memory@80000000"]["reg"]) == [0, 0x8000_0000, 0, 1 << 30]
    assert "cpu@3" in t["cpus"] and "cpu@4" not in t["cpus"]
    assert t["chosen"]["bootargs"] == b"root=/dev/vda\0"
    assert int.from_bytes(t["chosen"]["linux,initrd-end"], "big") == 0x8820_0000
    assert "plic@c000000" in dts(out.read_bytes())
    r = CliRunner().invoke(dtb, ["-o", str(out)])
    assert r.exit_code == 0, r.output
    t = fdt.decode(out.read_bytes())
    assert fdt.cells(t["memory@80000000"]["reg"])[3] == 256 << 20 and "cpu@1" not in t["cpus"]


@pytest.mark.parametrize("args", [["--initrd-start", "0x88000000"], ["-m", "lots"], ["--harts", "0"],
                                  ["--initrd-start", "0x2000", "--initrd-end", "0x1000"],
                                  ["--initrd-start", "zz", "--initrd-end", "0x1000"],
                                  ["--platform", "spike"]])
def test_cli_dtb_errors(tmp_path, args):
    out = tmp_path / "x.dtb"
    r = CliRunner().invoke(dtb, ["-o", str(out), *args])
    assert r.exit_code == 2, r.output
    assert not out.exists()


def test_cli_dtb_requires_output():
    r = CliRunner().invoke(dtb, [])
    assert r.exit_code == 2 and "-o" in r.output
