# S-mode test support, prepended to the body of a test program by tests/test_smode.py.
#
# The program starts as firmware (virtual M-mode). SMODE_BOOT builds Sv39 page tables in .bss,
# delegates every exception but ecall-from-S (medeleg) and the S-level interrupts (mideleg),
# points stvec at s_trap and mret's into S-mode (satp still Bare; VM_ON turns Sv39 on).
# SMODE_SUPPORT emits the trap handlers and the data; the test body goes between the two.
#
# Virtual layout once VM_ON ran (privileged spec 4.4, Sv39):
#   L2[0]  0x0000_0000 -> PA 0x0000_0000  1 GiB, S RWX   (devices: test finisher, CLINT, UART)
#   L2[1]  0x4000_0000 -> PA 0x8000_0000  1 GiB, U RWX   (user alias of the program: LA_U)
#   L2[2]  0x8000_0000 -> PA 0x8000_0000  1 GiB, S RWX   (the program itself, identity)
#   L2[3]  0xC000_0000 -> pt_l1: L1[0] -> pt_l0 (4 KiB pages at TEST_VA + n * 4 KiB),
#                        other L1 entries (2 MiB pages at 0xC000_0000 + n * 2 MiB) per test
#   L2[4+] free for tests (1 GiB each at n << 30)
#
# Register conventions. t0-t2: scratch of the PTE macros; t3-t6: the check macros and handlers.
# Expected traps (TRY_S, TRY_M, TRY_U, TRY_UM): s11 = where to resume (0: a trap is unexpected), s6 = the
# level expected to take it (0 = S, 1 = firmware). The handler records s7 = sstatus/mstatus,
# s8 = cause, s9 = epc, s10 = tval and resumes in S-mode at s11; s5 = address of the instruction
# that was tried. Unexpected traps end the run with FAIL 1000000000 (S) or 2000000000 (firmware)
# + cause * 2^20 + the low 20 bits of the epc (cause + 32 for interrupts).
# S-level interrupts are logged by s_trap (irq_area: count, then causes and epcs) and masked in sie.
# Firmware services for S-mode (an SBI of sorts): a7 = function, a0 = argument, see m_ecall.

  .option norvc
  .option norelax

  .equ PTE_V, 0x01
  .equ PTE_R, 0x02
  .equ PTE_W, 0x04
  .equ PTE_X, 0x08
  .equ PTE_U, 0x10
  .equ PTE_G, 0x20
  .equ PTE_A, 0x40
  .equ PTE_D, 0x80
  .equ PTE_SRWX, PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D
  .equ PTE_URWX, PTE_SRWX | PTE_U

  .equ SSTATUS_SIE, 1 << 1
  .equ SSTATUS_SPIE, 1 << 5
  .equ SSTATUS_SPP, 1 << 8
  .equ SSTATUS_SUM, 1 << 18
  .equ SSTATUS_MXR, 1 << 19
  .equ MSTATUS_MPP, 3 << 11
  .equ MSTATUS_MPP_S, 1 << 11
  .equ MSTATUS_TVM, 1 << 20
  .equ MSTATUS_TW, 1 << 21
  .equ MSTATUS_TSR, 1 << 22
  .equ MIP_SSIP, 1 << 1
  .equ MIP_STIP, 1 << 5
  .equ MIP_MTIP, 1 << 7
  .equ MIP_SEIP, 1 << 9
  .equ IRQ, 1 << 63

  .equ USER_OFFSET, 0x40000000      # U alias VA = PA - USER_OFFSET
  .equ TEST_VA, 0xC0000000          # pt_l0 maps TEST_VA + n * 4 KiB
  .equ CLINT_MTIMECMP, 0x2004000
  .equ CLINT_MTIME, 0x200BFF8
  # Exceptions delegated by default: all but ecall from S (9), which reaches the firmware.
  .equ MEDELEG_ALL, 0xB3FF
  .equ MEDELEG_DEFAULT, MEDELEG_ALL & ~(1 << 9)

  # Firmware services (a7)
  .equ SBI_MEDELEG, 1               # medeleg = a0
  .equ SBI_MIDELEG, 2               # mideleg = a0
  .equ SBI_MIP_SET, 3               # mip |= a0
  .equ SBI_MIP_CLEAR, 4             # mip &= ~a0
  .equ SBI_SET_TIMER, 5             # mtimecmp = a0, clear STIP, enable MTIE (as OpenSBI does)
  .equ SBI_MSTATUS_SET, 6           # mstatus |= a0
  .equ SBI_MSTATUS_CLEAR, 7         # mstatus &= ~a0
  .equ SBI_STORE_WORD, 8            # 32-bit store of a1 at physical address a0
  .equ SBI_MCOUNTEREN, 9            # mcounteren = a0

  # Checks: the number comes first (tests/test_smode.py numbers them).
  .macro CHECK n, reg, val
  li t4, \val
  beq \reg, t4, 71f
  FAIL \n
71:
  .endm
  .macro CHECK_EQ n, a, b
  beq \a, \b, 71f
  FAIL \n
71:
  .endm
  # (reg & mask) == val
  .macro CHECK_BITS n, reg, mask, val
  li t4, \mask
  and t4, \reg, t4
  li t3, \val
  beq t4, t3, 71f
  FAIL \n
71:
  .endm

  # Runs one instruction that must trap to S-mode (TRY_S) or to the firmware (TRY_M).
  .macro TRY_S n, insn:vararg
  la s11, 77f
  li s6, 0
76: \insn
  FAIL \n
77: la s5, 76b
  .endm
  .macro TRY_M n, insn:vararg
  la s11, 77f
  li s6, 1
76: \insn
  FAIL \n
77: la s5, 76b
  .endm
  # Runs the code at `label` in U-mode (through the user alias); it must trap to S-mode.
  .macro TRY_U n, label
  la s11, 77f
  li s6, 0
  LA_U t0, \label
  csrw sepc, t0
  li t0, SSTATUS_SPP
  csrc sstatus, t0
  sret
  FAIL \n
77:
  .endm
  # The same, but the trap must reach the firmware (resumes in S-mode too).
  .macro TRY_UM n, label
  la s11, 77f
  li s6, 1
  LA_U t0, \label
  csrw sepc, t0
  li t0, SSTATUS_SPP
  csrc sstatus, t0
  sret
  FAIL \n
77:
  .endm
  # reg = the user-alias virtual address of label (from S-mode code; U code runs at the alias
  # already, so its own `la` gives alias addresses).
  .macro LA_U reg, label
  la \reg, \label
  li t3, USER_OFFSET
  sub \reg, \reg, t3
  .endm

  # table[index] = leaf PTE for the physical address in register pa (clobbers t0, t1).
  .macro PTE table, index, pa, flags
  srli t0, \pa, 12
  slli t0, t0, 10
  ori t0, t0, \flags
  la t1, \table
  li t3, (\index) * 8
  add t1, t1, t3
  sd t0, 0(t1)
  .endm
  # table[index] = pointer to the next-level table `child`.
  .macro PTE_PTR table, index, child
  la t2, \child
  PTE \table, \index, t2, PTE_V
  .endm
  # reg = address of table[index]
  .macro PTE_ADDR reg, table, index
  la \reg, \table
  li t0, (\index) * 8
  add \reg, \reg, t0
  .endm

  .macro VM_ON
  la t0, pt_root
  srli t0, t0, 12
  li t1, 8 << 60
  or t0, t0, t1
  csrw satp, t0
  sfence.vma
  .endm

  .macro SBI fn
  li a7, \fn
  ecall
  .endm

  # Firmware: page tables, delegation, S-mode entry at s_main.
  .macro SMODE_BOOT
  la t0, m_trap
  csrw mtvec, t0
  li s6, 0
  li s11, 0
  li t2, 0
  PTE pt_root, 0, t2, PTE_SRWX
  li t2, 0x80000000
  PTE pt_root, 1, t2, PTE_URWX
  PTE pt_root, 2, t2, PTE_SRWX
  PTE_PTR pt_root, 3, pt_l1
  PTE_PTR pt_l1, 0, pt_l0
  # PMP: one NAPOT entry over all of memory, RWX, as OpenSBI leaves it for S and U (with no active
  # entry S/U accesses fail, privileged spec 3.7.1, and QEMU refuses the mret).
  li t0, -1
  csrw pmpaddr0, t0
  li t0, 0x1f
  csrw pmpcfg0, t0
  li t0, MEDELEG_DEFAULT
  csrw medeleg, t0
  li t0, MIP_SSIP | MIP_STIP | MIP_SEIP
  csrw mideleg, t0
  li t0, 7
  csrw mcounteren, t0
  la t0, s_trap
  csrw stvec, t0
  li t0, MSTATUS_MPP
  csrc mstatus, t0
  li t0, MSTATUS_MPP_S
  csrs mstatus, t0
  la t0, s_main
  csrw mepc, t0
  mret
s_main:
  .endm

  .macro SMODE_SUPPORT
  # S-level trap handler: expected exceptions resume in S at s11; interrupts are logged.
  .align 2
s_trap:
  csrw sscratch, t6
  la t6, s_save
  sd t5, 0(t6)
  csrr t5, scause
  bltz t5, s_irq
  bnez s6, s_unexpected
  beqz s11, s_unexpected
  mv s8, t5
  csrr s7, sstatus
  csrr s9, sepc
  csrr s10, stval
  csrw sepc, s11
  li s11, 0
  li t6, SSTATUS_SPP
  csrs sstatus, t6
  sret
s_irq:
  sd t0, 8(t6)
  la t6, irq_area
  ld t0, 0(t6)
  addi t0, t0, 1
  sd t0, 0(t6)
  andi t0, t0, 15
  slli t0, t0, 3
  add t6, t6, t0
  sd t5, 0(t6)
  csrr t0, sepc
  sd t0, 128(t6)
  andi t5, t5, 63
  li t0, 1
  sll t0, t0, t5
  csrc sie, t0
  la t6, s_save
  ld t5, 0(t6)
  ld t0, 8(t6)
  csrr t6, sscratch
  sret
s_unexpected:
  csrr t5, scause
  srli t6, t5, 63
  slli t6, t6, 5
  andi t5, t5, 63
  or t5, t5, t6
  slli t5, t5, 20
  csrr t6, sepc
  slli t6, t6, 44
  srli t6, t6, 44
  or t5, t5, t6
  li t6, 1000000000
  add t6, t6, t5
  slli t6, t6, 1
  ori t6, t6, 1
  la t5, tohost
  sd t6, 0(t5)
79: j 79b

  # Firmware trap handler: expected traps, services for S-mode, the M timer (forwarded as STIP).
  .align 2
m_trap:
  csrw mscratch, t6
  la t6, m_save
  sd t5, 0(t6)
  csrr t5, mcause
  bltz t5, m_irq
  li t6, 1
  bne s6, t6, m_service
  beqz s11, m_service
  mv s8, t5
  csrr s7, mstatus
  csrr s9, mepc
  csrr s10, mtval
  csrw mepc, s11
  li s11, 0
  li s6, 0
  li t6, MSTATUS_MPP
  csrc mstatus, t6
  li t6, MSTATUS_MPP_S
  csrs mstatus, t6
  mret
m_service:
  addi t6, t5, -8
  beqz t6, m_ecall
  addi t6, t5, -9
  beqz t6, m_ecall
  j m_unexpected
m_ecall:
  # Every service call leaves its mcause, mepc and previous privilege for the test to check.
  la t6, m_ecall_info
  sd t5, 0(t6)
  csrr t5, mepc
  sd t5, 8(t6)
  addi t5, t5, 4
  csrw mepc, t5
  csrr t5, mstatus
  srli t5, t5, 11
  andi t5, t5, 3
  sd t5, 16(t6)
  li t6, SBI_MEDELEG
  bne a7, t6, 1f
  csrw medeleg, a0
  j m_ret
1: li t6, SBI_MIDELEG
  bne a7, t6, 1f
  csrw mideleg, a0
  j m_ret
1: li t6, SBI_MIP_SET
  bne a7, t6, 1f
  csrs mip, a0
  j m_ret
1: li t6, SBI_MIP_CLEAR
  bne a7, t6, 1f
  csrc mip, a0
  j m_ret
1: li t6, SBI_SET_TIMER
  bne a7, t6, 1f
  li t6, CLINT_MTIMECMP
  sd a0, 0(t6)
  li t6, MIP_STIP
  csrc mip, t6
  li t6, MIP_MTIP
  csrs mie, t6
  j m_ret
1: li t6, SBI_MSTATUS_SET
  bne a7, t6, 1f
  csrs mstatus, a0
  j m_ret
1: li t6, SBI_MSTATUS_CLEAR
  bne a7, t6, 1f
  csrc mstatus, a0
  j m_ret
1: li t6, SBI_STORE_WORD
  bne a7, t6, 1f
  sw a1, 0(a0)
  j m_ret
1: li t6, SBI_MCOUNTEREN
  bne a7, t6, 1f
  csrw mcounteren, a0
  j m_ret
1: csrr t5, mcause
  j m_unexpected
m_irq:
  slli t6, t5, 1
  srli t6, t6, 1
  addi t6, t6, -7
  bnez t6, m_unexpected
  # Machine timer: count it, note where it hit, and hand it to S-mode as STIP (like an SBI).
  la t6, m_timer_info
  ld t5, 0(t6)
  addi t5, t5, 1
  sd t5, 0(t6)
  csrr t5, mepc
  sd t5, 8(t6)
  csrr t5, mstatus
  srli t5, t5, 11
  andi t5, t5, 3
  sd t5, 16(t6)
  csrr t5, mcause
  sd t5, 24(t6)
  li t6, MIP_STIP
  csrs mip, t6
  li t6, MIP_MTIP
  csrc mie, t6
m_ret:
  la t6, m_save
  ld t5, 0(t6)
  csrr t6, mscratch
  mret
m_unexpected:
  srli t6, t5, 63
  slli t6, t6, 5
  andi t5, t5, 63
  or t5, t5, t6
  slli t5, t5, 20
  csrr t6, mepc
  slli t6, t6, 44
  srli t6, t6, 44
  or t5, t5, t6
  li t6, 2000000000
  add t6, t6, t5
  slli t6, t6, 1
  ori t6, t6, 1
  la t5, tohost
  sd t6, 0(t5)
78: j 78b

  .data
  .align 3
s_save: .dword 0, 0, 0, 0
m_save: .dword 0, 0, 0, 0
  # mcause, mepc, previous privilege of the last firmware service call
m_ecall_info: .dword 0, 0, 0
  # count, mepc, previous privilege, mcause of the machine timer interrupts
m_timer_info: .dword 0, 0, 0, 0
  # S-level interrupts: count at +0, cause n (1-based) at +8n, its sepc at +128+8n
irq_area: .fill 34, 8, 0

  .bss
  .align 12
pt_root: .space 4096
pt_l1: .space 4096
pt_l0: .space 4096
  .text
  .endm
