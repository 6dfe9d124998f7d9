/* No trap handler (machine tests): mtvec = 0, then an illegal instruction (or, with
 * -DSTORM, a handler that returns to the faulting instruction forever). */
#include "e2k.h"

#ifdef STORM
static void __attribute__((interrupt("machine"), aligned(4))) trap(void)
{
    /* returns to the same illegal instruction: a trap storm */
}
#endif

int main(void)
{
#ifdef STORM
    csr_write(mtvec, (u64)trap);
#else
    csr_write(mtvec, 0);
#endif
    __asm__ volatile(".globl bad_insn\nbad_insn: .4byte 0xc0001073");
    return 7;
}
