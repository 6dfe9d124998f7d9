/* Busy-polling guests for the idle back-off (test_idle.py; docs/idle.md). COM1 with its
 * interrupts off, as U-Boot's prompt has it.
 *
 * MODE 0 (echo): poll LSR for a byte and echo it; 'q' exits 0. -DTIMER=N also arms the
 *   machine timer N mtime ticks ahead (MTIE on): its interrupt prints "T" and disarms it.
 * MODE 1 (delay): ROUNDS times, write the scratch register, then read LSR READS times as a
 *   delay loop; exit 0.
 * MODE 2 (compute): ROUNDS times, read LSR, then run WORK rounds of a xorshift (about 10
 *   instructions each) in registers; exit 0. */
#include "e2k.h"

#ifndef MODE
#define MODE 0
#endif
#ifndef TIMER
#define TIMER 0
#endif
#ifndef ROUNDS
#define ROUNDS 100
#endif
#ifndef READS
#define READS 500
#endif
#ifndef WORK
#define WORK 10000
#endif

#define THR 0
#define SCR 7
#define LSR 5
#define LSR_DR 0x01
#define LSR_THRE 0x20

static void putc16550(char c)
{
    while (!(rd8(COM1_BASE + LSR) & LSR_THRE))
        ;
    wr8(COM1_BASE + THR, (u8)c);
}

static void __attribute__((interrupt("machine"), aligned(4))) trap(void)
{
    if (csr_read(mcause) != (MCAUSE_IRQ | 7))
        e2k_exit(90);
    wr64(CLINT_MTIMECMP, ~0UL);
    putc16550('T');
}

static volatile u64 sink;

int main(void)
{
#if MODE == 0
    putc16550('>');
#if TIMER
    csr_write(mtvec, (u64)trap);
    wr64(CLINT_MTIMECMP, rd64(CLINT_MTIME) + TIMER);
    csr_set(mie, MIE_MTIE);
    irq_enable();
#endif
    for (;;) {
        while (!(rd8(COM1_BASE + LSR) & LSR_DR))
            ;
        char c = (char)rd8(COM1_BASE + THR);
        if (c == 'q')
            return 0;
        putc16550(c);
    }
#elif MODE == 1
    for (int r = 0; r < ROUNDS; r++) {
        wr8(COM1_BASE + SCR, (u8)r);
        for (int i = 0; i < READS; i++)
            (void)rd8(COM1_BASE + LSR);
    }
    return 0;
#else
    u64 x = 88172645463325252UL;
    for (int r = 0; r < ROUNDS; r++) {
        x += rd8(COM1_BASE + LSR);
        for (int i = 0; i < WORK; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
    }
    sink = x;
    return 0;
#endif
}
