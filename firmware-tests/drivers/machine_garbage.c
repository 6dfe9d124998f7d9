/* A hostile guest (machine tests): pseudo-random reads and writes of every size at random
 * offsets of every device window except the exit device, with interrupts off, then a
 * clean exit. The machine must neither crash nor hang. */
#include "e2k.h"

#ifndef ROUNDS
#define ROUNDS 20000
#endif

static u64 x = 0x9E3779B97F4A7C15UL;

static u64 rnd(void)
{
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

static const u64 windows[][2] = {
    {AM85C30_BASE, 0x1000},
    {IO_BASE, 0x10000},
    {VIRTIO_BASE, 0x8000},
    {TIMER_BASE, 0x10000},
    {INTC_BASE, 0x400000},
    {ECAM_BASE, 0x20000},
};

int main(void)
{
    csr_write(mtvec, 0);
    for (int i = 0; i < ROUNDS; i++) {
        u64 r = rnd();
        const u64 *w = windows[r % (sizeof(windows) / sizeof(windows[0]))];
        u64 size = 1u << ((r >> 8) & 3);
        u64 addr = w[0] + (((r >> 16) % w[1]) & ~(size - 1));
        u64 v = rnd();
        if ((r >> 40) & 1) {
            switch (size) {
            case 1: wr8(addr, (u8)v); break;
            case 2: wr16(addr, (u16)v); break;
            case 4: wr32(addr, (u32)v); break;
            default: wr64(addr, v); break;
            }
        } else {
            switch (size) {
            case 1: (void)rd8(addr); break;
            case 2: (void)rd16(addr); break;
            case 4: (void)rd32(addr); break;
            default: (void)rd64(addr); break;
            }
        }
    }
    return 0;
}
