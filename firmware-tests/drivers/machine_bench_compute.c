/* Compute speed (tools/bench_machine.py): insertion sort of N pseudo-random words,
 * REPEAT times (branches plus RAM loads/stores; no MMIO until the exit). */
#include "e2k.h"

#ifndef N
#define N 4096
#endif
#ifndef REPEAT
#define REPEAT 4
#endif

static u32 a[N];

int main(void)
{
    u64 x = 88172645463325252UL;
    for (int r = 0; r < REPEAT; r++) {
        for (int i = 0; i < N; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            a[i] = (u32)x;
        }
        for (int i = 1; i < N; i++) {
            u32 v = a[i];
            int j = i - 1;
            while (j >= 0 && a[j] > v) {
                a[j + 1] = a[j];
                j--;
            }
            a[j + 1] = v;
        }
        for (int i = 1; i < N; i++)
            if (a[i - 1] > a[i])
                return 1;
    }
    return 0;
}
