/*
 * codedata: a hot loop that keeps its data on its own code page.
 *
 * Firmware and small programs often keep variables next to their code. An emulator that finds
 * self-modifying code by page must not make every store to such a page slow: only a store over
 * the translated instructions themselves is a code write (Mirage: the TLB_NOTDIRTY entries of
 * translator/abi.py and the code map of runtime/core/mmu.py; QEMU: its per-page code bitmap).
 *
 * The loop function starts a 4 KiB page and its data follows it on that page (link.ld), in
 * 64-byte chunks of its own (the host build, which derives the checksums, places them as usual).
 */
#define ITERS_SMALL 1000
#define ITERS_BENCH 20000000
#define EXPECTED_SMALL 0xb63eefba8894a023ULL
#define EXPECTED_BENCH 0x3d40f4f1a2ccee5dULL

#include "bench.h"

#ifdef HOST
#define ON_CODE_PAGE_FN __attribute__((noinline))
#define ON_CODE_PAGE_DATA
#else
#define ON_CODE_PAGE_FN __attribute__((section(".codedata.fn"), noinline))
#define ON_CODE_PAGE_DATA __attribute__((section(".codedata.data"), aligned(64)))
#endif

ON_CODE_PAGE_DATA static volatile uint64_t slots[8];

ON_CODE_PAGE_FN static uint64_t run(uint64_t iters)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL, h = 0;
    for (uint64_t i = 0; i < iters; i++) {
        /* xorshift64, stored to one slot and read back from another */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        slots[i & 7] = x;
        h = h * 31 + slots[(i + 3) & 7];
    }
    return h;
}

int main(void)
{
    uint64_t sum = run(ITERS);
    for (int i = 0; i < 8; i++)
        sum = mix64(sum, slots[i]);
    return bench_check("codedata", ITERS, sum, EXPECTED_SUM);
}
