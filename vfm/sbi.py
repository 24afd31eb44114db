"""SBI numbers and names (RISC-V Supervisor Binary Interface, v2.0): what the OS world asks of the
firmware through ecall (a7 = extension ID, a6 = function ID, a0.. = arguments; the firmware
returns an error code in a0 and a value in a1)."""

from __future__ import annotations

# Standard error codes (SBI 3.2)
SUCCESS = 0
ERR_FAILED = -1
ERR_NOT_SUPPORTED = -2
ERR_INVALID_PARAM = -3

# Extension IDs
EID_LEGACY_SET_TIMER = 0x00
EID_LEGACY_CONSOLE_PUTCHAR = 0x01
EID_BASE = 0x10
EID_TIME = 0x54494D45
EID_IPI = 0x735049
EID_RFNC = 0x52464E43
EID_HSM = 0x48534D
EID_SRST = 0x53525354
EID_PMU = 0x504D55
EID_DBCN = 0x4442434E
EID_SUSP = 0x53555350
EID_CPPC = 0x43505043

# Legacy extensions (SBI chapter 5): the EID is the function; they return only a0.
LEGACY = {0x00: "set_timer", 0x01: "console_putchar", 0x02: "console_getchar", 0x03: "clear_ipi",
          0x04: "send_ipi", 0x05: "remote_fence_i", 0x06: "remote_sfence_vma",
          0x07: "remote_sfence_vma_asid", 0x08: "shutdown"}

EXTENSIONS: dict[int, tuple[str, dict[int, str]]] = {
    EID_BASE: ("BASE", {0: "get_spec_version", 1: "get_impl_id", 2: "get_impl_version",
                        3: "probe_extension", 4: "get_mvendorid", 5: "get_marchid", 6: "get_mimpid"}),
    EID_TIME: ("TIME", {0: "set_timer"}),
    EID_IPI: ("IPI", {0: "send_ipi"}),
    EID_RFNC: ("RFNC", {0: "remote_fence_i", 1: "remote_sfence_vma", 2: "remote_sfence_vma_asid",
                        3: "remote_hfence_gvma_vmid", 4: "remote_hfence_gvma",
                        5: "remote_hfence_vvma_asid", 6: "remote_hfence_vvma"}),
    EID_HSM: ("HSM", {0: "hart_start", 1: "hart_stop", 2: "hart_get_status", 3: "hart_suspend"}),
    EID_SRST: ("SRST", {0: "system_reset"}),
    EID_PMU: ("PMU", {0: "num_counters", 1: "counter_get_info", 2: "counter_config_matching",
                      3: "counter_start", 4: "counter_stop", 5: "counter_fw_read",
                      6: "counter_fw_read_hi", 7: "snapshot_set_shmem"}),
    EID_DBCN: ("DBCN", {0: "console_write", 1: "console_read", 2: "console_write_byte"}),
    EID_SUSP: ("SUSP", {0: "system_suspend"}),
    EID_CPPC: ("CPPC", {0: "probe", 1: "read", 2: "read_hi", 3: "write"}),
}


# Strings every build of these SBI implementations carries (their boot banners).
SBI_FIRMWARE_MARKS = (b"OpenSBI", b"RustSBI")


def implements_sbi(image: bytes) -> bool:
    """Whether a firmware image is an SBI implementation (so the monitor may answer SBI calls for
    it): one of the known ones, recognized by its banner."""
    return firmware_name(image) is not None


def firmware_name(image: bytes) -> str | None:
    """Which known SBI implementation a firmware image is ("OpenSBI", "RustSBI"), by its banner."""
    return next((mark.decode() for mark in SBI_FIRMWARE_MARKS if mark in image), None)


def call_name(eid: int, fid: int) -> tuple[str, str]:
    """(extension, function) names of an SBI call, e.g. (0x54494D45, 0) -> ("TIME", "set_timer");
    legacy calls are ("legacy", name); unknown numbers are spelled in hex / decimal."""
    if eid in LEGACY:
        return "legacy", LEGACY[eid]
    ext = EXTENSIONS.get(eid)
    if ext is None:
        return f"{eid:#x}", str(fid)
    return ext[0], ext[1].get(fid, str(fid))


# Argument registers each call takes (a0..a(n-1)), from the function signatures of SBI v2.0:
# what a policy that hides the OS's registers from the firmware lets through (a6, a7 always).
LEGACY_ARGS = {0x00: 1, 0x01: 1, 0x02: 0, 0x03: 0, 0x04: 1, 0x05: 1, 0x06: 3, 0x07: 4, 0x08: 0}
ARGS: dict[tuple[int, int], int] = {
    (EID_BASE, 0): 0, (EID_BASE, 1): 0, (EID_BASE, 2): 0, (EID_BASE, 3): 1, (EID_BASE, 4): 0,
    (EID_BASE, 5): 0, (EID_BASE, 6): 0,
    (EID_TIME, 0): 1,
    (EID_IPI, 0): 2,
    (EID_RFNC, 0): 2, (EID_RFNC, 1): 4, (EID_RFNC, 2): 5, (EID_RFNC, 3): 5, (EID_RFNC, 4): 4,
    (EID_RFNC, 5): 5, (EID_RFNC, 6): 4,
    (EID_HSM, 0): 3, (EID_HSM, 1): 0, (EID_HSM, 2): 1, (EID_HSM, 3): 3,
    (EID_SRST, 0): 2,
    (EID_PMU, 0): 0, (EID_PMU, 1): 1, (EID_PMU, 2): 5, (EID_PMU, 3): 4, (EID_PMU, 4): 3,
    (EID_PMU, 5): 1, (EID_PMU, 6): 1, (EID_PMU, 7): 3,
    (EID_DBCN, 0): 3, (EID_DBCN, 1): 3, (EID_DBCN, 2): 1,
    (EID_SUSP, 0): 3,
    (EID_CPPC, 0): 1, (EID_CPPC, 1): 1, (EID_CPPC, 2): 1, (EID_CPPC, 3): 2,
}


def arg_count(eid: int, fid: int) -> int:
    """How many of a0..a5 the call (eid, fid) takes; 0 for calls the specification does not define
    (as Miralis does: an unknown call gets nothing of the OS)."""
    if eid in LEGACY:
        return LEGACY_ARGS[eid]
    return ARGS.get((eid, fid), 0)
