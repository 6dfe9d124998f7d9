/* Host interrupts into a computing guest (machine tests): the guest runs a register-only
 * loop while the host raises PLIC source COUNT_IRQ; the handler acks it at the counting
 * device (+0xC). Exits once it has taken NIRQ interrupts. */
#include "e2k.h"

#ifndef COUNT_BASE
#define COUNT_BASE 0x130000000UL
#endif
#ifndef COUNT_IRQ
#define COUNT_IRQ 20
#endif
#ifndef NIRQ
#define NIRQ 20
#endif

static volatile int irqs;

static void __attribute__((interrupt("machine"), aligned(4))) trap(void)
{
    u32 src = rd32(PLIC_CLAIM(0));
    if (src == COUNT_IRQ) {
        wr32(COUNT_BASE + 0xC, 1);
        irqs++;
    }
    if (src)
        wr32(PLIC_CLAIM(0), src);
}

int main(void)
{
    csr_write(mtvec, (u64)trap);
    wr32(PLIC_PRIORITY(COUNT_IRQ), 1);
    wr32(PLIC_ENABLE(0, COUNT_IRQ), 1u << (COUNT_IRQ % 32));
    csr_set(mie, MIE_SEIE);
    irq_enable();
    wr32(COUNT_BASE + 0x14, 1);   /* ready */
    volatile u64 x = 88172645463325252UL;
    while (irqs < NIRQ) {
        u64 y = x;
        for (int i = 0; i < 100000; i++) {
            y ^= y << 13;
            y ^= y >> 7;
            y ^= y << 17;
        }
        x = y;
    }
    return 0;
}
