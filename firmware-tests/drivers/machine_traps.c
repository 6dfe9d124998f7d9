/* Trap delivery (machine tests): exceptions reach the guest's mtvec with the cause, mepc
 * and mtval the RISC-V privileged spec gives; the handler skips the faulting instruction.
 * Exit code 0 = every check passed, else 10 * check + what failed. */
#include "e2k.h"

static volatile u64 t_cause, t_epc, t_tval, resume_addr;
static volatile int t_count;

static void __attribute__((interrupt("machine"), aligned(4))) trap(void)
{
    u64 cause = csr_read(mcause), epc = csr_read(mepc);
    t_cause = cause;
    t_epc = epc;
    t_tval = csr_read(mtval);
    t_count++;
    if (cause & MCAUSE_IRQ)
        e2k_exit(99);
    if (cause == 1) {            /* instruction access fault: go back to the caller */
        csr_write(mepc, resume_addr);
        return;
    }
    u16 lo = *(volatile u16 *)epc;
    csr_write(mepc, epc + ((lo & 3) == 3 ? 4 : 2));
}

static int check(int n, u64 addr, u64 cause, u64 tval, int check_tval, int before)
{
    if (t_count != before + 1)
        return 10 * n + 1;
    if (t_cause != cause)
        return 10 * n + 2;
    if (t_epc != addr)
        return 10 * n + 3;
    if (check_tval && t_tval != tval)
        return 10 * n + 4;
    return 0;
}

#define TRY(n, insn, cause, tval, check_tval)                                          \
    do {                                                                               \
        u64 a;                                                                         \
        int before = t_count;                                                          \
        __asm__ volatile("lla %0, 1f\n1: " insn "\n" : "=&r"(a) :: "memory");          \
        int r = check(n, a, cause, (tval) == (u64)-1 ? a : (tval), check_tval, before); \
        if (r)                                                                         \
            return r;                                                                  \
    } while (0)

int main(void)
{
    csr_write(mtvec, (u64)trap);
    TRY(1, ".4byte 0xc0001073", 2, 0xc0001073, 1);    /* unimp: csrrw x0, cycle, x0 */
    TRY(2, ".2byte 0x0000", 2, 0, 1);                 /* c.unimp (16-bit) */
    TRY(3, "ecall", 11, 0, 0);
    TRY(4, "ebreak", 3, (u64)-1, 1);                  /* mtval = pc */
    TRY(5, ".2byte 0x9002", 3, (u64)-1, 1);           /* c.ebreak */
    TRY(6, "csrr t0, 0x3c0", 2, 0, 0);                /* CSR probe (pmpaddr16) */
    {   /* load and store to an unmapped address: access faults with mtval = address */
        u64 a, bad = 0x300000000UL;
        int before = t_count;
        __asm__ volatile("lla %0, 1f\n1: ld t0, 0(%1)\n" : "=&r"(a) : "r"(bad) : "t0", "memory");
        int r = check(7, a, 5, bad, 1, before);
        if (r)
            return r;
        before = t_count;
        __asm__ volatile("lla %0, 1f\n1: sd zero, 8(%1)\n" : "=&r"(a) : "r"(bad) : "memory");
        r = check(8, a, 7, bad + 8, 1, before);
        if (r)
            return r;
    }
    {   /* jump to an unmapped address: instruction access fault, mepc = mtval = target */
        u64 bad = 0x300001000UL;
        int before = t_count;
        __asm__ volatile("lla t0, 2f\n sd t0, %0\n jr %1\n2:\n"
                         : "=m"(resume_addr) : "r"(bad) : "t0", "memory");
        int r = check(9, bad, 1, bad, 1, before);
        if (r)
            return r;
    }
    {   /* the time CSR is emulated from mtime and never traps */
        int before = t_count;
        u64 t1 = csr_read(time);
        for (volatile int i = 0; i < 100000; i++)
            ;
        u64 t2 = csr_read(time);
        u64 m = rd64(CLINT_MTIME);
        if (t_count != before)
            return 101;
        if (!(t2 >= t1 && m >= t2))
            return 102;
    }
    {   /* interrupts still work after all this: mstatus.MIE was restored by mret */
        if (csr_read(mstatus) & MSTATUS_MIE)
            return 111;
    }
    return 0;
}
