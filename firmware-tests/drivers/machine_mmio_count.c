/* MMIO access counting (machine tests): a known number of reads and writes to a counting
 * device that the test maps at COUNT_BASE, while the host kicks the CPU (pause/resume,
 * interrupts on PLIC source COUNT_IRQ). The device hands out 0, 1, 2, ... on reads; the
 * guest writes each value back, so the host can tell a duplicated or lost access.
 * -DTRAPS=1: an ecall before every read, so kicks land right after traps the harness
 * delivered (unicorn then stops imprecisely unless emu_start ended at the trap).
 * -DRDTIME=1: an rdtime before every read (emulated in a hook, so kicks land right after
 * it; time must never go backwards: a step back counts as a gap).
 * Registers: +0 R next value, +4 W echo, +8 W gaps seen, +0xC W irq ack, +0x10 W irq count,
 * +0x14 W done, +0x18 W external-interrupt entries (== irq count: no spurious entries).
 * Exit code: number of gaps (0 = pass). */
#include "e2k.h"

#ifndef COUNT_BASE
#define COUNT_BASE 0x130000000UL
#endif
#ifndef ITERATIONS
#define ITERATIONS 200000
#endif
#ifndef COUNT_IRQ
#define COUNT_IRQ 20
#endif
#ifndef SPIN
#define SPIN 0          /* register-only loop rounds every 256 iterations (compute phases) */
#endif
#ifndef TRAPS
#define TRAPS 0         /* an ecall (handled by the guest) before every read */
#endif
#ifndef RDTIME
#define RDTIME 0        /* an rdtime before every read */
#endif

static volatile u32 irqs, entries;

static void __attribute__((interrupt("machine"), aligned(4))) trap(void)
{
    u64 cause = csr_read(mcause);
    if (cause == (MCAUSE_IRQ | 9)) {
        entries++;
        u32 src = rd32(PLIC_CLAIM(0));
        if (src == COUNT_IRQ) {
            wr32(COUNT_BASE + 0xC, 1);
            irqs++;
        }
        if (src)
            wr32(PLIC_CLAIM(0), src);
        return;
    }
    if (cause == 11) {                          /* ecall: step over it */
        csr_write(mepc, csr_read(mepc) + 4);
        return;
    }
    e2k_exit(200);
}

int main(void)
{
    u32 expect = 0, gaps = 0;
    u64 last_time = 0;
    csr_write(mtvec, (u64)trap);
    wr32(PLIC_PRIORITY(COUNT_IRQ), 1);
    wr32(PLIC_ENABLE(0, COUNT_IRQ), 1u << (COUNT_IRQ % 32));
    wr32(PLIC_THRESHOLD(0), 0);
    csr_set(mie, MIE_SEIE);
    irq_enable();
    for (u32 i = 0; i < ITERATIONS; i++) {
        if (TRAPS)
            __asm__ volatile("ecall" ::: "memory");
        if (RDTIME) {
            u64 t;
            __asm__ volatile("rdtime %0" : "=r"(t) :: "memory");
            if (t < last_time)
                gaps++;
            last_time = t;
        }
        u32 v = rd32(COUNT_BASE);
        if (v != expect)
            gaps++;
        expect = v + 1;
        wr32(COUNT_BASE + 4, v);
        if (SPIN && (i & 255) == 255) {
            u64 x = i + 1;
            for (u32 k = 0; k < SPIN; k++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            __asm__ volatile("" ::"r"(x));
        }
    }
    irq_disable();
    wr32(COUNT_BASE + 8, gaps);
    wr32(COUNT_BASE + 0x10, irqs);
    wr32(COUNT_BASE + 0x18, entries);
    wr32(COUNT_BASE + 0x14, 1);
    return gaps > 255 ? 255 : (int)gaps;
}
