/* MMIO access counting: a known number of reads and writes to the machine's counting
 * device (mapped by the test at COUNT_BASE) while the host kicks the CPU. The device
 * hands out 0, 1, 2, ... on reads; the guest writes each value back, so the host can
 * check that no access was duplicated or lost. Returns the number of gaps seen. */
#include "e2k.h"

#ifndef COUNT_BASE
#define COUNT_BASE 0x130000000UL
#endif
#ifndef ITERATIONS
#define ITERATIONS 200000
#endif

int main(void)
{
    u32 expect = 0, gaps = 0;
    for (u32 i = 0; i < ITERATIONS; i++) {
        u32 v = rd32(COUNT_BASE);
        if (v != expect)
            gaps++;
        expect = v + 1;
        wr32(COUNT_BASE + 4, v);
    }
    wr32(COUNT_BASE + 8, gaps);
    return gaps > 255 ? 255 : (int)gaps;
}
