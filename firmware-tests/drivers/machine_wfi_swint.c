/* wfi with an interrupt pending in mip that software set itself (machine tests): SSIP and
 * STIP are set by M-mode code (OpenSBI does so for Linux), not by the CLINT or the PLIC. A
 * hart must not stall in wfi while an interrupt enabled in mie is pending, whatever the
 * global enables say; here none are on, so the trap is never taken and wfi just returns.
 * -DBIT=1 (SSIP) or 5 (STIP). Exit code 0 once both wfis returned. */
#include "e2k.h"

#ifndef BIT
#define BIT 1
#endif

int main(void)
{
    csr_write(mideleg, 0);
    csr_set(mie, 1UL << BIT);
    csr_set(mip, 1UL << BIT);
    wfi();
    wfi();
    csr_clear(mip, 1UL << BIT);
    return 0;
}
