/* Mirage demo: a bare-metal program in (virtual) M-mode that prints through the UART and exits
   through the SiFive test finisher. */
#include <stdint.h>

#define UART ((volatile uint8_t *)0x10000000)
#define FINISHER ((volatile uint32_t *)0x100000)

static void putc_(char c) { *UART = (uint8_t)c; }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void putu(uint64_t v) {
    char buf[24];
    int i = 0;
    do { buf[i++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (i) putc_(buf[--i]);
}

static uint64_t read_csr_mhartid(void) { uint64_t v; __asm__ volatile("csrr %0, mhartid" : "=r"(v)); return v; }
static uint64_t read_instret(void) { uint64_t v; __asm__ volatile("csrr %0, minstret" : "=r"(v)); return v; }

int main(void) {
    puts_("Hello from Mirage: a RISC-V guest in virtual M-mode on hart ");
    putu(read_csr_mhartid());
    puts_(".\n");
    /* Count primes below 20000 with a sieve. */
    static uint8_t composite[20000];
    uint64_t count = 0;
    for (uint64_t i = 2; i < 20000; i++) {
        if (composite[i]) continue;
        count++;
        for (uint64_t j = i * i; j < 20000; j += i) composite[j] = 1;
    }
    puts_("There are ");
    putu(count);
    puts_(" primes below 20000; that took ");
    putu(read_instret());
    puts_(" guest instructions.\n");
    *FINISHER = count == 2262 ? 0x5555 : ((1u << 16) | 0x3333);
    for (;;) {}
}

__attribute__((naked, section(".text.init"))) void _start(void) {
    __asm__ volatile(
        "la sp, __stack_top\n"
        "call main\n"
        "1: j 1b\n");
}
