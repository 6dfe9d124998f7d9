/* Trap delivery across privilege modes (machine tests), per the RISC-V privileged spec:
 *  1. an M-mode exception saves MIE in MPIE, clears MIE, sets MPP = M; mret restores MIE;
 *  2. vectored mtvec: exceptions enter at the base, interrupts at base + 4 * cause (software
 *     3, timer 7, supervisor external 9 from the PLIC, machine external 11 when only MEIE
 *     is enabled);
 *  3. S-mode: delegated exceptions (medeleg) reach stvec with scause/sepc/stval and
 *     sstatus SPP/SPIE/SIE; the rest reach mtvec with MPP = S; rdtime from S obeys
 *     mcounteren.TM; an ecall from S is cause 9 in M;
 *  4. U-mode: a delegated ecall from U reaches stvec as cause 8 with SPP = U.
 * Exit code 0 = every check passed, else 10 * check + what failed. */
#include "e2k.h"

#define MSTATUS_SIE   (1UL << 1)
#define MSTATUS_SPIE  (1UL << 5)
#define MSTATUS_MPIE  (1UL << 7)
#define MSTATUS_SPP   (1UL << 8)
#define MSTATUS_MPP   (3UL << 11)
#define MIE_MSIE      (1UL << 3)
#define UART_IER      (COM1_BASE + 1)

/* what the last trap saw */
static volatile u64 m_cause, m_epc, m_tval, m_status, m_vec, m_count;
static volatile u64 s_cause, s_epc, s_tval, s_status, s_count;
/* what the M-mode ecall handler is asked to do (set by S/U code before its ecall) */
static volatile int m_cmd;
static volatile int result;

static void m_record(u64 vec)
{
    m_cause = csr_read(mcause);
    m_epc = csr_read(mepc);
    m_tval = csr_read(mtval);
    m_status = csr_read(mstatus);
    m_vec = vec;
    m_count++;
}

static void skip_insn(void)
{
    u64 epc = csr_read(mepc);
    u16 lo = *(volatile u16 *)epc;
    csr_write(mepc, epc + ((lo & 3) == 3 ? 4 : 2));
}

void __attribute__((interrupt("machine"), aligned(4))) vec_exc(void)
{
    m_record(0);
    if (m_cause == 9 && m_cmd == 1) {          /* from S: turn on mcounteren.TM */
        csr_set(mcounteren, 2);
        m_cmd = 0;
    } else if (m_cause == 9 && m_cmd == 2) {   /* from S: the end */
        e2k_exit(result);
    }
    skip_insn();
}

void __attribute__((interrupt("machine"), aligned(4))) vec_msi(void)
{
    m_record(3);
    wr32(CLINT_MSIP, 0);
}

void __attribute__((interrupt("machine"), aligned(4))) vec_mti(void)
{
    m_record(7);
    wr64(CLINT_MTIMECMP, ~0UL);
}

static void ext_irq(u64 vec)
{
    m_record(vec);
    u32 src = rd32(PLIC_CLAIM(0));
    if (src == IRQ_COM1)
        wr8(UART_IER, 0);                      /* THRE interrupt off: the line drops */
    if (src)
        wr32(PLIC_CLAIM(0), src);
}

void __attribute__((interrupt("machine"), aligned(4))) vec_sei(void) { ext_irq(9); }
void __attribute__((interrupt("machine"), aligned(4))) vec_mei(void) { ext_irq(11); }
void __attribute__((interrupt("machine"), aligned(4))) vec_bad(void) { e2k_exit(250); }

__asm__(".option push\n.option norvc\n"
        ".section .text.vtable, \"ax\"\n.balign 256\n.globl vtable\nvtable:\n"
        "j vec_exc\nj vec_bad\nj vec_bad\nj vec_msi\nj vec_bad\nj vec_bad\nj vec_bad\n"
        "j vec_mti\nj vec_bad\nj vec_sei\nj vec_bad\nj vec_mei\n"
        ".option pop\n.text\n");
extern char vtable[];

void __attribute__((interrupt("supervisor"), aligned(4))) s_trap(void)
{
    s_cause = csr_read(scause);
    s_epc = csr_read(sepc);
    s_tval = csr_read(stval);
    s_status = csr_read(sstatus);
    s_count++;
    if (s_cause == 8 && m_cmd == 2)             /* U wants the test to end: ask M */
        __asm__ volatile("ecall" ::: "memory");
    u16 lo = *(volatile u16 *)s_epc;
    csr_write(sepc, s_epc + ((lo & 3) == 3 ? 4 : 2));
}

/* the address of the instruction at label 1 in `insn` after running it */
#define AT(insn) ({ u64 __a; __asm__ volatile("lla %0, 1f\n1: " insn "\n" : "=&r"(__a) :: "memory"); __a; })

static int s_fail(int code)
{
    result = code;
    m_cmd = 2;
    __asm__ volatile("ecall" ::: "memory");
    for (;;)
        ;
}

static void u_main(void)
{
    u64 n = s_count;
    u64 a = AT("ecall");
    if (s_count != n + 1 || s_cause != 8 || s_epc != a)
        s_fail(81);
    if (s_status & MSTATUS_SPP)                 /* came from U */
        s_fail(82);
    /* back to S through an ecall the S handler does not expect: make it end the test */
    s_fail(0);
}

static void s_main(void)
{
    u64 n, a;
    /* 3a: a delegated exception (illegal instruction) goes to stvec */
    csr_set(sstatus, MSTATUS_SIE);
    n = s_count;
    a = AT(".4byte 0xc0001073");
    if (s_count != n + 1 || s_cause != 2 || s_epc != a || s_tval != 0xc0001073)
        s_fail(31);
    if (!(s_status & MSTATUS_SPP) || !(s_status & MSTATUS_SPIE) || (s_status & MSTATUS_SIE))
        s_fail(32);
    if (!(csr_read(sstatus) & MSTATUS_SIE))     /* sret restored SIE */
        s_fail(33);
    csr_clear(sstatus, MSTATUS_SIE);
    /* 3b: a non-delegated exception (ebreak) goes to mtvec with MPP = S */
    n = m_count;
    a = AT("ebreak");
    if (m_count != n + 1 || m_cause != 3 || m_epc != a || m_tval != a || m_vec != 0)
        s_fail(34);
    if ((m_status & MSTATUS_MPP) != (1UL << 11))
        s_fail(35);
    /* 3c: an unmapped load from S (not delegated): load access fault in M */
    n = m_count;
    {
        u64 bad = 0x300000000UL;
        __asm__ volatile("lla %0, 1f\n1: ld t0, 0(%1)\n" : "=&r"(a) : "r"(bad) : "t0", "memory");
        if (m_count != n + 1 || m_cause != 5 || m_epc != a || m_tval != bad)
            s_fail(36);
        if ((m_status & MSTATUS_MPP) != (1UL << 11))
            s_fail(37);
    }
    /* 3d: rdtime with mcounteren.TM = 0 is an illegal instruction (delegated: to S) */
    n = s_count;
    __asm__ volatile("lla %0, 1f\n1: rdtime t0\n" : "=&r"(a) :: "t0", "memory");
    if (s_count != n + 1 || s_cause != 2 || s_epc != a)
        s_fail(38);
    /* 3e: ecall from S is cause 9 in M; the handler turns on mcounteren.TM */
    m_cmd = 1;
    n = m_count;
    a = AT("ecall");
    if (m_count != n + 1 || m_cause != 9 || m_epc != a || (m_status & MSTATUS_MPP) != (1UL << 11))
        s_fail(39);
    n = s_count;
    u64 t = csr_read(time);
    if (s_count != n || t == 0)
        s_fail(40);
    /* 4: drop to U-mode (SPP = U) */
    csr_clear(sstatus, MSTATUS_SPP);
    csr_write(sepc, (u64)u_main);
    __asm__ volatile("sret");
    for (;;)
        ;
}

static int wait_count(u64 n)
{
    for (int i = 0; i < 2000000 && m_count == n; i++)
        ;
    return m_count != n;
}

int main(void)
{
    u64 n, a;
    /* 1: direct mtvec, M-mode exception with MIE set */
    csr_write(mtvec, (u64)vec_exc);
    csr_write(mie, 0);
    irq_enable();
    n = m_count;
    a = AT(".4byte 0xc0001073");
    if (m_count != n + 1 || m_cause != 2 || m_epc != a || m_tval != 0xc0001073)
        return 11;
    if ((m_status & MSTATUS_MPP) != MSTATUS_MPP)
        return 12;
    if (!(m_status & MSTATUS_MPIE) || (m_status & MSTATUS_MIE))
        return 13;
    if (!(csr_read(mstatus) & MSTATUS_MIE))
        return 14;

    /* 2: vectored mtvec */
    csr_write(mtvec, (u64)vtable | 1);
    n = m_count;
    a = AT("ecall");
    if (m_count != n + 1 || m_cause != 11 || m_epc != a || m_vec != 0)
        return 21;
    /* software interrupt */
    n = m_count;
    csr_set(mie, MIE_MSIE);
    wr32(CLINT_MSIP, 1);
    if (!wait_count(n))
        return 22;
    if (m_cause != (MCAUSE_IRQ | 3) || m_vec != 3)
        return 23;
    csr_clear(mie, MIE_MSIE);
    /* timer interrupt, due at once */
    n = m_count;
    csr_set(mie, MIE_MTIE);
    wr64(CLINT_MTIMECMP, 0);
    if (!wait_count(n))
        return 24;
    if (m_cause != (MCAUSE_IRQ | 7) || m_vec != 7)
        return 25;
    csr_clear(mie, MIE_MTIE);
    /* PLIC context 0 -> mip.SEIP: the 16550's THRE interrupt */
    wr32(PLIC_PRIORITY(IRQ_COM1), 1);
    wr32(PLIC_ENABLE(0, IRQ_COM1), 1u << IRQ_COM1);
    wr32(PLIC_THRESHOLD(0), 0);
    n = m_count;
    csr_set(mie, MIE_SEIE);
    wr8(UART_IER, 2);
    if (!wait_count(n))
        return 26;
    if (m_cause != (MCAUSE_IRQ | 9) || m_vec != 9)
        return 27;
    csr_clear(mie, MIE_SEIE);
    /* ... and with only MEIE enabled, as machine external interrupt 11 */
    n = m_count;
    csr_set(mie, MIE_MEIE);
    wr8(UART_IER, 2);
    if (!wait_count(n))
        return 28;
    if (m_cause != (MCAUSE_IRQ | 11) || m_vec != 11)
        return 29;
    csr_clear(mie, MIE_MEIE);
    irq_disable();

    /* 3, 4: S-mode with illegal instructions and U ecalls delegated */
    csr_write(medeleg, (1UL << 2) | (1UL << 8));
    csr_write(mideleg, 0);
    csr_write(mcounteren, 0);
    csr_write(stvec, (u64)s_trap);
    u64 ms = csr_read(mstatus);
    ms = (ms & ~MSTATUS_MPP) | (1UL << 11);
    csr_write(mstatus, ms);
    csr_write(mepc, (u64)s_main);
    __asm__ volatile("mret");
    return 100;
}
