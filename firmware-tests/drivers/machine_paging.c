/* A paging guest (machine tests): Sv39 set up in M-mode, then S-mode with satp on.
 *  - RAM is identity-mapped by a 1 GiB gigapage; an alias of it at VA 0x1_0000_0000 holds
 *    the virtual stvec (not a physical RAM address);
 *  - the I/O window is mapped at VA 0xC000_0000 (COM1 at 0xC100_03F8);
 *  - load, store and AMO page faults (stval = the address), an instruction page fault
 *    (stval = the target) and one where a 4-byte instruction crosses into an unmapped page
 *    (sepc = its start, stval = the next page) are delegated to S;
 *  - rdtime from S (mcounteren.TM), then LINES lines printed through the virtual COM1.
 * Exit code 0 = every check passed, else the number of the failed check. */
#include "e2k.h"

#ifndef LINES
#define LINES 2000
#endif

#define PTE_V 1UL
#define PTE_R 2UL
#define PTE_W 4UL
#define PTE_X 8UL
#define PTE_A 64UL
#define PTE_D 128UL
#define LEAF(pa, f) ((((u64)(pa)) >> 12) << 10 | (f) | PTE_V | PTE_A | PTE_D)
#define TABLE(pa) ((((u64)(pa)) >> 12) << 10 | PTE_V)
#define ALIAS 0x100000000UL          /* VA of the RAM alias */
#define IO_VA 0xC0000000UL           /* VA of the I/O gigapage (PA 0x1_0000_0000) */
#define VCOM1 (IO_VA + 0x10003F8UL)

static u64 root[512] __attribute__((aligned(4096)));
static u64 l1[512] __attribute__((aligned(4096)));
static u64 l0[512] __attribute__((aligned(4096)));
static u16 code_page[2048] __attribute__((aligned(4096)));   /* mapped at VA 0x6000 */

static volatile u64 s_cause, s_epc, s_tval, s_count;
static volatile int result;

void __attribute__((interrupt("machine"), aligned(4))) m_trap(void)
{
    u64 cause = csr_read(mcause);
    if (cause == 9)                           /* ecall from S: the end */
        e2k_exit(result);
    e2k_exit(200 + (int)(cause & 0xFF));      /* nothing else should reach M */
}

void __attribute__((interrupt("supervisor"), aligned(4))) s_trap(void)
{
    s_cause = csr_read(scause);
    s_epc = csr_read(sepc);
    s_tval = csr_read(stval);
    s_count++;
    if (s_cause == 12) {                      /* a fetch: go back where the jump came from */
        csr_write(sepc, csr_read(sscratch));
    } else {
        u16 lo = *(volatile u16 *)s_epc;
        csr_write(sepc, s_epc + ((lo & 3) == 3 ? 4 : 2));
    }
}

static void __attribute__((noreturn)) finish(int code)
{
    result = code;
    __asm__ volatile("ecall" ::: "memory");
    for (;;)
        ;
}

static void check(int ok, int code)
{
    if (!ok)
        finish(code);
}

static void jump_and_fault(u64 target)
{
    __asm__ volatile("lla t0, 1f\n csrw sscratch, t0\n jr %0\n 1:" :: "r"(target) : "t0", "memory");
}

static void vputc(char c)
{
    while (!(rd8(VCOM1 + 5) & 0x20))
        ;
    wr8(VCOM1, c);
}

static void s_main(void)
{
    u64 n = s_count;
    volatile u32 *p;

    p = (volatile u32 *)0x1008UL;             /* load page fault */
    (void)*p;
    check(s_count == n + 1 && s_cause == 13 && s_tval == 0x1008, 1);
    p = (volatile u32 *)0x2010UL;             /* store page fault */
    *p = 5;
    check(s_count == n + 2 && s_cause == 15 && s_tval == 0x2010, 2);
    u64 old;                                  /* AMO: a store/AMO page fault */
    __asm__ volatile("amoadd.w %0, %1, (%2)" : "=r"(old) : "r"(1), "r"(0x3000UL) : "memory");
    check(s_count == n + 3 && s_cause == 15 && s_tval == 0x3000, 3);
    jump_and_fault(0x5000);                   /* instruction page fault */
    check(s_count == n + 4 && s_cause == 12 && s_epc == 0x5000 && s_tval == 0x5000, 4);
    jump_and_fault(0x6FFE);                   /* a 4-byte instruction crossing into 0x7000 */
    check(s_count == n + 5 && s_cause == 12 && s_epc == 0x6FFE && s_tval == 0x7000, 5);
    u64 t0 = csr_read(time);
    for (volatile int i = 0; i < 1000; i++)
        ;
    check(csr_read(time) > t0, 6);
    for (int i = 0; i < LINES; i++) {
        char line[16] = "line 0000\n";
        line[5] += i / 1000 % 10;
        line[6] += i / 100 % 10;
        line[7] += i / 10 % 10;
        line[8] += i % 10;
        for (char *c = line; *c; c++)
            vputc(*c);
    }
    finish(0);
}

int main(void)
{
    root[2] = LEAF(RAM_BASE, PTE_R | PTE_W | PTE_X);          /* identity RAM */
    root[4] = LEAF(RAM_BASE, PTE_R | PTE_W | PTE_X);          /* the alias at 0x1_0000_0000 */
    root[3] = LEAF(0x100000000UL, PTE_R | PTE_W);             /* I/O at 0xC000_0000 */
    root[0] = TABLE(l1);
    l1[0] = TABLE(l0);
    l0[6] = LEAF(code_page, PTE_R | PTE_X);                   /* 0x6000; 0x7000 unmapped */
    code_page[2047] = 0x0013;                                 /* first half of a 4-byte nop */

    csr_write(mtvec, (u64)m_trap);
    csr_write(medeleg, (1UL << 12) | (1UL << 13) | (1UL << 15));
    csr_write(stvec, (u64)s_trap - RAM_BASE + ALIAS);         /* a virtual trap vector */
    csr_set(mcounteren, 2);
    csr_write(satp, (8UL << 60) | ((u64)root >> 12));
    __asm__ volatile("sfence.vma" ::: "memory");
    csr_clear(mstatus, 3UL << 11);
    csr_set(mstatus, 1UL << 11);                              /* MPP = S */
    csr_write(mepc, (u64)s_main);
    __asm__ volatile("mret");
    return 99;
}
