/*
 * Start-up code for the bare-metal Mirage CPU benchmarks (M-mode, no OS).
 *
 * Hart 0 sets up gp/sp, zeroes .bss, enables the FPU, installs a trap handler
 * and calls main(); main's return value goes to bench_exit(), which reports it
 * through the SiFive test finisher at 0x100000. Other harts park in wfi.
 * With -DREPORT_INSTRET, minstret at _start is passed to bench_exit() too.
 */

    .section .text.init, "ax", @progbits
    .globl _start
_start:
#ifdef REPORT_INSTRET
    /* Instruction-count builds measure from here (s1 survives the call to main). */
    csrr    s1, minstret
#endif
    csrr    t0, mhartid
    bnez    t0, .Lpark

.option push
.option norelax
    la      gp, __global_pointer$
.option pop
    la      sp, __stack_top

    /* Zero .bss (bounds are 16-byte aligned by link.ld). */
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    sd      zero, 8(t0)
    addi    t0, t0, 16
    j       1b
2:
    /* mstatus.FS = Initial: enables the F/D instructions. */
    li      t0, 0x2000
    csrs    mstatus, t0
    csrw    fcsr, zero

    /* Direct-mode trap vector. */
    la      t0, trap_entry
    csrw    mtvec, t0

    call    main
    mv      a1, s1
    call    bench_exit
    /* bench_exit does not return. */
    j       .Lpark

.Lpark:
    wfi
    j       .Lpark

    .align  4
    .globl  trap_entry
trap_entry:
    /* Any trap is fatal: report it with a fresh stack and exit with failure. */
    la      sp, __stack_top
    csrr    a0, mcause
    csrr    a1, mepc
    csrr    a2, mtval
    call    bench_trap
    j       .Lpark

    .section .bss.stack, "aw", @nobits
    .align  4
    .space  65536
__stack_top:

    /* HTIF mailboxes; present for tools that expect them, not used by these programs. */
    .section .tohost, "aw", @progbits
    .align  3
    .globl  tohost
tohost:
    .dword  0
    .align  3
    .globl  fromhost
fromhost:
    .dword  0
