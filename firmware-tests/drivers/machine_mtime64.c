/* 64-bit MMIO under kicks (machine tests): unicorn splits each ld/sd into two 32-bit
 * accesses; the CLINT latches mtime on the low half. The guest reads mtime with ld and
 * writes/reads mtimecmp with sd/ld ROUNDS times; every mtime read must be >= the previous
 * one and every mtimecmp read-back must equal what was written. Exit: 0, 1 (mtime went
 * backwards), 2 (mtimecmp mismatch). */
#include "e2k.h"

#ifndef ROUNDS
#define ROUNDS 50000
#endif

int main(void)
{
    u64 last = 0;
    for (u64 i = 0; i < ROUNDS; i++) {
        u64 t = rd64(CLINT_MTIME);
        if (t < last)
            return 1;
        last = t;
        u64 cmp = 0xFFFFFFFF00000000UL | (i * 0x10001UL);
        wr64(CLINT_MTIMECMP, cmp);
        if (rd64(CLINT_MTIMECMP) != cmp)
            return 2;
    }
    return 0;
}
