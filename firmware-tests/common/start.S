/* Entry for e2kchar guest drivers: hart 0 only, a stack, a clean bss, then
 * main(hartid, dtb, bootinfo); main's return value goes to the exit device. */
    .section .text.init, "ax"
    .globl _start
_start:
    csrr    t0, mhartid
    bnez    t0, .Lpark
    la      sp, _stack_top
    la      t0, _bss_start
    la      t1, _bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  call    main
    call    _e2k_exit
.Lpark:
    wfi
    j       .Lpark
