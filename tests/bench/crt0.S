/*
 * Start-up code for the bare-metal Mirage CPU benchmarks (M-mode, no OS).
 *
 * Hart 0 sets up gp/sp, zeroes .bss, enables the FPU, installs a trap handler
 * and calls main(); main's return value goes to bench_exit(), which reports it
 * through the SiFive test finisher at 0x100000. Other harts park in wfi.
 * With -DREPORT_INSTRET, minstret at _start is passed to bench_exit() too.
 *
 * With -DSV39, main runs in S-mode under Sv39 instead: an identity map of the
 * first GiB (devices, one gigapage) and of RAM's first GiB with 2 MiB pages
 * (-DSV39_4K: 4 KiB pages for the first 2 MiB, where the program lives). Every
 * trap still goes to the M-mode trap vector (nothing is delegated).
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

#ifdef SV39
    /* Page tables (.bss is zero). PTE = PPN << 10 | flags; leaves are RWX with A and D set. */
    .equ    PTE_PTR, 0x01
    .equ    PTE_LEAF, 0xcf
    la      t0, pt_root
    /* root[0]: 0 - 1 GiB identity, one gigapage (UART, test finisher). */
    li      t1, PTE_LEAF
    sd      t1, 0(t0)
    /* root[2] -> pt_l1: RAM at 0x80000000. */
    la      t1, pt_l1
    srli    t1, t1, 2
    ori     t1, t1, PTE_PTR
    sd      t1, 16(t0)
    /* pt_l1[i]: 2 MiB pages at 0x80000000 + i * 2 MiB. */
    la      t0, pt_l1
    li      t1, (0x80000000 >> 2) | PTE_LEAF
    li      t2, 0x200000 >> 2
    li      t3, 512
1:  sd      t1, 0(t0)
    add     t1, t1, t2
    addi    t0, t0, 8
    addi    t3, t3, -1
    bnez    t3, 1b
#ifdef SV39_4K
    /* pt_l1[0] -> pt_l0: the first 2 MiB of RAM in 4 KiB pages. */
    la      t0, pt_l0
    li      t1, (0x80000000 >> 2) | PTE_LEAF
    li      t2, 0x1000 >> 2
    li      t3, 512
1:  sd      t1, 0(t0)
    add     t1, t1, t2
    addi    t0, t0, 8
    addi    t3, t3, -1
    bnez    t3, 1b
    la      t0, pt_l1
    la      t1, pt_l0
    srli    t1, t1, 2
    ori     t1, t1, PTE_PTR
    sd      t1, 0(t0)
#endif
    la      t0, pt_root
    srli    t0, t0, 12
    li      t1, 8 << 60
    or      t0, t0, t1
    csrw    satp, t0
    sfence.vma
    /* PMP: one NAPOT entry granting S-mode everything (without an active entry S-mode may
       access nothing, and QEMU refuses the mret). */
    li      t0, -1
    csrw    pmpaddr0, t0
    li      t0, 0x1f
    csrw    pmpcfg0, t0
    /* Counters readable from S-mode (instret for REPORT_INSTRET). */
    li      t0, 7
    csrw    mcounteren, t0
    /* mret to S-mode at .Lsmode. */
    li      t0, 3 << 11
    csrc    mstatus, t0
    li      t0, 1 << 11
    csrs    mstatus, t0
    la      t0, .Lsmode
    csrw    mepc, t0
    mret
.Lsmode:
#endif
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

#ifdef SV39
    .section .bss.pagetables, "aw", @nobits
    .align  12
pt_root:
    .space  4096
pt_l1:
    .space  4096
pt_l0:
    .space  4096
#endif

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
