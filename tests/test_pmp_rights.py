"""The access guard's page rights (`os_rights`, what the native TLB refill may do without asking)
against its own per-access decision (`check`), for random PMP configurations, with and without
policies: a right is reported only if `check` allows that access at that privilege on every byte
of the page, and, on a page one decision covers (`page_uniform`), exactly then.
"""

from __future__ import annotations

import random

import pytest

from runtime.core.hart import Hart
from runtime.core.mmu import OS_RIGHTS_S_SHIFT
from translator import csrs as C
from vfm.pmp import A_NA4, A_NAPOT, A_OFF, A_TOR, PMP_L, VirtualPmp
from vfm.policy.base import Policy, PolicyGuard
from vfm.policy.protect_payload import ProtectPayload

RAM = 0x8000_0000
PAGE = 4096
LO, HI = RAM - 8 * PAGE, RAM + 72 * PAGE  # The pages the random entries cover
PRIVS = ((C.PRV_U, 0), (C.PRV_S, OS_RIGHTS_S_SHIFT))


def _random_pmp(rng: random.Random, n: int = 8) -> tuple[list[int], list[int]]:
    """pmpcfg and pmpaddr values (privileged spec 3.7.1): every mode, bounds on and off page
    boundaries, NAPOT regions from 8 bytes to 1 MiB, empty TOR ranges, some locked entries."""
    cfg, addr = [], []
    for _ in range(n):
        a = rng.choice([A_OFF, A_TOR, A_TOR, A_NA4, A_NAPOT, A_NAPOT])
        cfg.append(a << 3 | rng.getrandbits(3) | (PMP_L if rng.random() < 0.1 else 0))
        base = RAM + rng.randrange(-8, 72) * PAGE
        if rng.random() < 0.3:
            base += rng.randrange(0, PAGE, 4)
        if a == A_NAPOT:
            size = 1 << rng.randrange(3, 21)
            addr.append((base & ~(size - 1)) >> 2 | (size >> 3) - 1)
        else:
            addr.append(base >> 2)
    return cfg, addr


class Lender(Policy):
    """A policy that keeps the OS world to reads in ranges of its own (pages it lent, say)."""

    name = "lender"

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        super().__init__()
        self.ranges = ranges

    def os_ranges(self) -> list[tuple[int, int]]:
        return self.ranges

    def os_access(self, hart, paddr, size, access, priv) -> bool:
        return access == "r"


class Monitor:
    os_memory = (RAM + 16 * PAGE, RAM + 40 * PAGE)
    machine = None


def _guard(rng: random.Random, kind: str, hart: Hart):
    reserved = [(RAM + 60 * PAGE + 0x800, 0x2000), (RAM + 70 * PAGE, PAGE)]
    pmp = VirtualPmp(reserved)
    if rng.random() < 0.9:  # Else no PMP write yet: the OS world is not restricted
        pmp.update(hart, *_random_pmp(rng))
    if kind == "pmp":
        return pmp
    pp = ProtectPayload()
    pp.attach(Monitor())
    pp.active = True
    policies: list[Policy] = [pp]
    if kind == "lender":
        lent = []
        for _ in range(3):
            lo = RAM + rng.randrange(-4, 72) * PAGE + rng.choice([0, rng.randrange(0, PAGE, 8)])
            lent.append((lo, lo + rng.randrange(8, 5 * PAGE, 8)))
        policies.append(Lender(lent))
    return PolicyGuard(pmp, policies)


def _rights_of(runs: list[tuple[int, int, int]], page: int) -> int:
    for a, b, r in runs:
        if a <= page < b:
            return r
    return 0


@pytest.mark.parametrize("kind", ["pmp", "protect-payload", "lender"])
@pytest.mark.parametrize("seed", range(3))
def test_page_rights_never_exceed_check(kind, seed):
    rng = random.Random(f"{kind}{seed}")
    hart = Hart(0)
    hart.priv = C.PRV_S  # The OS world
    granted = exact = 0
    for _ in range(25):
        guard = _guard(rng, kind, hart)
        runs = guard.os_rights(hart, LO, HI)
        # Sorted, disjoint, page-aligned runs within the range asked for
        assert all(a % PAGE == 0 and b % PAGE == 0 and a < b for a, b, _ in runs)
        assert all(x[1] <= y[0] for x, y in zip(runs, runs[1:], strict=False))
        assert not runs or (LO <= runs[0][0] and runs[-1][1] <= HI)
        for page in range(LO, HI, PAGE):
            rights = _rights_of(runs, page)
            # The one-page question gets the answer the whole range gave
            assert _rights_of(guard.os_rights(hart, page, page + PAGE), page) == rights
            for priv, shift in PRIVS:
                for i, access in enumerate("rwx"):
                    has = bool(rights >> (shift + i) & 1)
                    granted += has
                    if guard.page_uniform(hart, priv, page):
                        # One decision for the page: reported exactly
                        assert has == guard.check(hart, page + rng.randrange(PAGE), 1, access, priv)
                        exact += 1
                    elif has:
                        assert guard.check(hart, page, 1, access, priv)
        # Every byte of sampled pages, through accesses of every size
        granted_pages = [p for p in range(LO, HI, PAGE) if _rights_of(runs, p)]
        for page in rng.sample(granted_pages, min(2, len(granted_pages))):
            rights = _rights_of(runs, page)
            for priv, shift in PRIVS:
                for i, access in enumerate("rwx"):
                    if rights >> (shift + i) & 1:
                        for size in (1, 8):
                            for off in range(0, PAGE, size):
                                assert guard.check(hart, page + off, size, access, priv), (
                                    hex(page + off), size, access, priv)
    assert granted > 500 and exact > 1000  # Both outcomes are well covered
