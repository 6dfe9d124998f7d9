/* Timer interrupts (machine tests): TICKS machine-timer interrupts PERIOD mtime ticks
 * apart, taken while the guest sleeps in wfi (default) or computes (-DCOMPUTE=1).
 * -DLATE_ENABLE=1: the first deadline has passed before the guest unmasks the timer.
 * Exit code 0 = the right number of ticks, never early. */
#include "e2k.h"

#ifndef TICKS
#define TICKS 20
#endif
#ifndef PERIOD
#define PERIOD 10000   /* 1 ms at 10 MHz */
#endif

static volatile int ticks;
static volatile int early;
static volatile u64 next_deadline;

static void __attribute__((interrupt("machine"), aligned(4))) trap(void)
{
    u64 cause = csr_read(mcause);
    if (cause != (MCAUSE_IRQ | 7))
        e2k_exit(90 + (int)(cause & 0xf));
    u64 now = rd64(CLINT_MTIME);
    if (now < next_deadline)
        early++;
    ticks++;
    if (ticks < TICKS) {
        next_deadline = now + PERIOD;
        wr64(CLINT_MTIMECMP, next_deadline);
    } else {
        wr64(CLINT_MTIMECMP, ~0UL);
    }
}

int main(void)
{
    u64 start = rd64(CLINT_MTIME);
    csr_write(mtvec, (u64)trap);
#if LATE_ENABLE
    /* the timer expires while masked; enabling it later must still deliver it */
    next_deadline = 0;
    wr64(CLINT_MTIMECMP, 0);
    for (volatile int i = 0; i < 300000; i++)
        ;
    start = 0;
#else
    next_deadline = start + PERIOD;
    wr64(CLINT_MTIMECMP, next_deadline);
#endif
    csr_set(mie, MIE_MTIE);
    irq_enable();
#if COMPUTE
    volatile u64 x = 88172645463325252UL;
    while (ticks < TICKS) {
        u64 y = x;
        for (int i = 0; i < 1000; i++) {
            y ^= y << 13;
            y ^= y >> 7;
            y ^= y << 17;
        }
        x = y;
    }
#else
    while (ticks < TICKS)
        wfi();
#endif
    irq_disable();
    u64 elapsed = rd64(CLINT_MTIME) - start;
    if (early)
        return 1;
    if (elapsed < (u64)TICKS * PERIOD)
        return 2;
    return 0;
}
