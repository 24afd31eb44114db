"""audit: blocks nothing, records every firmware access to the OS's memory from the first hand-over
to the OS on, so a user sees what an opaque firmware touches before enforcing protect-payload.

`mirage jit-run ... --policy audit --audit-log FILE` writes FILE as JSON lines: a header
  {"mirage_audit": 1, "os_memory": [lo, hi]}
then one record per access (identical consecutive accesses are one record with a count n > 1):
  {"hart": 0, "addr": paddr, "size": 8, "access": "r"|"w"|"x", "pc": firmware pc,
   "mprv": true when made through MPRV (or a page-table walk for one), "call": the switch being
   served ("TIME.set_timer", "legacy.console_putchar", "interrupt MTI", "trap illegal_insn"), "n": 1}
`mirage audit FILE` prints the summary (`summarize`): pages touched, by SBI call.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from runtime.core.hart import Hart
from runtime.core.machine_api import PAGE_SIZE
from translator import csrs as C
from vfm.policy.base import Policy, PolicyError, Switch


class Audit(Policy):
    name = "audit"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        try:
            self.out = open(path, "w", buffering=1 << 16)  # noqa: SIM115 (open for the whole run)
        except OSError as e:
            raise PolicyError(f"{path}: {e.strerror}") from None
        self.active = False
        self.call: dict[int, str] = {}
        self.last: tuple | None = None
        self.count = 0
        self.records = 0
        self.accesses = 0

    @classmethod
    def create(cls, options: dict) -> Policy:
        if options.get("audit_log") is None:
            raise PolicyError("--policy audit needs --audit-log FILE")
        return cls(options["audit_log"])

    def firmware_ranges(self) -> list[tuple[int, int]]:
        return [self.mon.os_memory] if self.active and self.mon.os_memory else []

    def to_os(self, hart: Hart, priv: int) -> int:
        if not self.active:
            self.active = True
            lo, hi = self.mon.os_memory or (0, 0)
            self.out.write(json.dumps({"mirage_audit": 1, "os_memory": [lo, hi]}) + "\n")
            self.mon.guard_changed()
        self.call.pop(hart.id, None)
        return priv

    def to_firmware(self, hart: Hart, switch: Switch) -> None:
        self.call[hart.id] = switch.label()

    def firmware_access(self, hart: Hart, paddr: int, size: int, access: str, priv: int) -> bool:
        pc = paddr if access == "x" else hart.mem_pc
        key = (hart.id, paddr, size, access, pc, priv != C.PRV_M, self.call.get(hart.id))
        self.accesses += 1
        if key == self.last:
            self.count += 1
        else:
            self._flush()
            self.last, self.count = key, 1
        return True

    def _flush(self) -> None:
        if self.last is None:
            return
        hid, paddr, size, access, pc, mprv, call = self.last
        rec = {"hart": hid, "addr": paddr, "size": size, "access": access, "pc": pc, "mprv": mprv,
               "call": call, "n": self.count}
        self.out.write(json.dumps(rec) + "\n")
        self.records += 1
        self.last = None

    def close(self) -> None:
        if self.out.closed:
            return
        self._flush()
        if not self.active:
            self.out.write(json.dumps({"mirage_audit": 1, "os_memory": None}) + "\n")
        self.out.close()

    def stats(self) -> dict:
        return {"accesses": self.accesses, "records": self.records + (self.last is not None)}


class AuditLogError(Exception):
    pass


def summarize(path: Path) -> str:
    """The report of an audit log: per call, the OS pages the firmware touched (with r/w/x and
    the number of accesses) and the firmware pcs that touched them."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise AuditLogError(f"{path}: {e.strerror}") from None
    try:
        header = json.loads(lines[0]) if lines else None
        records = [json.loads(x) for x in lines[1:] if x.strip()]
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("mirage_audit") != 1:
        raise AuditLogError(f"{path}: not an audit log of `mirage jit-run --policy audit`")
    os_mem = header.get("os_memory")
    if os_mem is None:
        return f"{path}: the firmware never handed over to the OS: nothing audited\n"
    pages: dict[str, dict[int, dict]] = defaultdict(dict)
    total = 0
    for r in records:
        total += r["n"]
        page = r["addr"] & ~(PAGE_SIZE - 1)
        p = pages[r["call"] or "(no call)"].setdefault(page, {"access": set(), "n": 0, "pcs": set(), "mprv": False})
        p["access"].add(r["access"])
        p["n"] += r["n"]
        p["pcs"].add(r["pc"])
        p["mprv"] |= r["mprv"]
    out = [f"{path}: {total} firmware accesses to OS memory [{os_mem[0]:#x}, {os_mem[1]:#x}), "
           f"{sum(len(v) for v in pages.values())} pages touched, in {len(pages)} kinds of call"]
    for call in sorted(pages, key=lambda c: -sum(p["n"] for p in pages[c].values())):
        by_page = pages[call]
        n = sum(p["n"] for p in by_page.values())
        out.append(f"  {call}: {len(by_page)} pages, {n} accesses")
        for page in sorted(by_page):
            p = by_page[page]
            rwx = "".join(a if a in p["access"] else "-" for a in "rwx")
            pcs = ", ".join(f"{pc:#x}" for pc in sorted(p["pcs"])[:4]) + (" ..." if len(p["pcs"]) > 4 else "")
            out.append(f"    {page:#x} {rwx} {p['n']:>8} accesses{' (MPRV)' if p['mprv'] else ''}  pc {pcs}")
    return "\n".join(out) + "\n"
