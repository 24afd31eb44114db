/*
 * Shared support for the Mirage CPU benchmarks.
 *
 * Target build (default): bare-metal RV64GC in M-mode. Output goes byte by byte
 * to the NS16550 THR at 0x10000000 and the exit status goes to the SiFive test
 * finisher at 0x100000 (0x5555 = pass, (code << 16) | 0x3333 = fail).
 *
 * Host build (-DHOST): the same kernels compiled for the build machine with a
 * tiny stdio harness, used to derive the expected checksums.
 *
 * Each program defines ITERS_SMALL / ITERS_BENCH and its expected checksums;
 * build.py passes -DITERS=ITERS_SMALL or -DITERS=ITERS_BENCH. Other options:
 *   -DITERS=N -DEXPECTED=0x...  run a custom size with an explicit expected value
 *   -DFORCE_FAIL                corrupt the expected value (tests the self-check)
 *   -DREPORT_INSTRET            print "instret=N" (from minstret) just before exit
 *   -DSV39 [-DSV39_4K]          run main in S-mode under Sv39 (crt0.S: 2 MiB or 4 KiB pages)
 */
#ifndef MIRAGE_BENCH_H
#define MIRAGE_BENCH_H

#include <stdint.h>
#include <stddef.h>

/* Iteration count and the expected checksum for it (the program defines the per-size values). */
#ifndef BENCH_NO_CHECK
#if !defined(ITERS_SMALL) || !defined(ITERS_BENCH) || !defined(EXPECTED_SMALL) || !defined(EXPECTED_BENCH)
#error "define ITERS_SMALL, ITERS_BENCH, EXPECTED_SMALL and EXPECTED_BENCH before including bench.h"
#endif
#ifndef ITERS
#define ITERS ITERS_BENCH
#endif
#if defined(EXPECTED)
#define EXPECTED_SUM ((uint64_t)(EXPECTED))
#elif ITERS == ITERS_SMALL
#define EXPECTED_SUM ((uint64_t)(EXPECTED_SMALL))
#elif ITERS == ITERS_BENCH
#define EXPECTED_SUM ((uint64_t)(EXPECTED_BENCH))
#else
#error "no expected checksum for this ITERS: also pass -DEXPECTED=0x..."
#endif
#endif /* BENCH_NO_CHECK */

/* Exit codes passed to the test finisher (never 0: FAIL with code 0 means pass to QEMU). */
#define BENCH_EXIT_CHECK 1
#define BENCH_EXIT_TRAP 2

#ifdef HOST
#include <stdio.h>
#include <stdlib.h>
#include <math.h>

static inline void bench_putc(char c) { putchar(c); }

#else /* Target */

#define UART_THR ((volatile uint8_t *)0x10000000UL)
#define TEST_FINISHER ((volatile uint32_t *)0x100000UL)

static inline void bench_putc(char c) { *UART_THR = (uint8_t)c; }

/* The compiler may emit calls to these even with -ffreestanding. */
void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    while (n--)
        *d++ = (uint8_t)c;
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x < *y ? -1 : 1;
    return 0;
}

#endif /* HOST */

static inline void bench_puts(const char *s)
{
    while (*s)
        bench_putc(*s++);
}

static inline void bench_puthex(uint64_t v, int digits)
{
    for (int i = digits - 1; i >= 0; i--)
        bench_putc("0123456789abcdef"[(v >> (4 * i)) & 0xf]);
}

static inline void bench_putdec(uint64_t v)
{
    char buf[24];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        bench_putc(buf[--n]);
}

/* 64-bit mixing step used to fold results into a checksum (FNV-1a style, word-wise). */
static inline uint64_t mix64(uint64_t h, uint64_t v)
{
    h ^= v;
    h *= 0x100000001b3ULL;
    h ^= h >> 29;
    return h;
}

/*
 * Prints "<name>: iters=<N> checksum=0x<16 hex> OK" (or "... FAIL expected=0x...")
 * and returns the value main() should return.
 */
static inline int bench_check(const char *name, uint64_t iters, uint64_t sum, uint64_t expected)
{
#ifdef FORCE_FAIL
    expected ^= 1;
#endif
    bench_puts(name);
    bench_puts(": iters=");
    bench_putdec(iters);
    bench_puts(" checksum=0x");
    bench_puthex(sum, 16);
    if (sum == expected) {
        bench_puts(" OK\n");
        return 0;
    }
    bench_puts(" FAIL expected=0x");
    bench_puthex(expected, 16);
    bench_puts("\n");
    return BENCH_EXIT_CHECK;
}

#ifndef HOST

/*
 * Called by crt0 with main's return value (and, with REPORT_INSTRET, minstret
 * as read at _start: only differences of minstret are reproducible on QEMU).
 */
void __attribute__((noreturn, used)) bench_exit(int code, uint64_t instret_start)
{
#ifdef REPORT_INSTRET
    uint64_t n;
#ifdef SV39
    __asm__ volatile("csrr %0, instret" : "=r"(n)); /* S-mode: the user-level shadow of minstret */
#else
    __asm__ volatile("csrr %0, minstret" : "=r"(n));
#endif
    bench_puts("instret=");
    bench_putdec(n - instret_start);
    bench_puts("\n");
#else
    (void)instret_start;
#endif
    if (code == 0)
        *TEST_FINISHER = 0x5555;
    else
        *TEST_FINISHER = ((uint32_t)code << 16) | 0x3333;
    for (;;)
        __asm__ volatile("wfi");
}

/* Called by crt0's trap vector: any trap is a failure. */
void __attribute__((noreturn, used)) bench_trap(uint64_t mcause, uint64_t mepc, uint64_t mtval)
{
    bench_puts("TRAP mcause=0x");
    bench_puthex(mcause, 16);
    bench_puts(" mepc=0x");
    bench_puthex(mepc, 16);
    bench_puts(" mtval=0x");
    bench_puthex(mtval, 16);
    bench_puts("\n");
    bench_exit(BENCH_EXIT_TRAP, 0);
}

#endif /* HOST */

#endif /* MIRAGE_BENCH_H */
