/* e2kchar guest support: the E2K machine map for the RV64 stand-in CPU (docs/interfaces.md),
 * MMIO accessors, CSRs and the exit device. Build with -DMAP_VIRT for QEMU's
 * riscv `virt` map (benchmarks run the same driver source on both). Our own clean-room code. */
#ifndef E2K_H
#define E2K_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef unsigned long uintptr_t;
typedef unsigned long size_t;

#define RAM_BASE        0x80000000UL
#ifdef MAP_VIRT
#define COM1_BASE       0x10000000UL
#define VIRTIO_BASE     0x10001000UL
#define EXIT_BASE       0x00100000UL
#define TIMER_BASE      0x02000000UL
#define INTC_BASE       0x0c000000UL
#define IRQ_COM1        10
#define IRQ_VIRTIO(n)   (1 + (n))
#else
#define AM85C30_BASE    0x40000000UL       /* PCI BAR1 of 00:02.2 */
#define IO_BASE         0x101000000UL      /* x86-style I/O ports: port p at IO_BASE + p */
#define COM1_BASE       (IO_BASE + 0x3F8)
#define LMS_BASE        (IO_BASE + 0x300)
#define VIRTIO_BASE     0x102000000UL      /* slot n at VIRTIO_BASE + n * 0x1000 */
#define EXIT_BASE       0x110000000UL
#define TIMER_BASE      0x110010000UL      /* CLINT layout */
#define INTC_BASE       0x120000000UL      /* PLIC layout */
#define ECAM_BASE       0x200000000UL
#define IRQ_AM85C30     3
#define IRQ_COM1        4
#define IRQ_VIRTIO(n)   (16 + (n))
#endif
#define VIRTIO_SLOT(n)  (VIRTIO_BASE + (u64)(n) * 0x1000)

/* CLINT */
#define CLINT_MSIP      (TIMER_BASE + 0x0)
#define CLINT_MTIMECMP  (TIMER_BASE + 0x4000)
#define CLINT_MTIME     (TIMER_BASE + 0xBFF8)
#define TIMEBASE_HZ     10000000UL

/* PLIC (context 0 = M-mode hart 0) */
#define PLIC_PRIORITY(s)   (INTC_BASE + 4 * (s))
#define PLIC_PENDING(s)    (INTC_BASE + 0x1000 + 4 * ((s) / 32))
#define PLIC_ENABLE(c, s)  (INTC_BASE + 0x2000 + 0x80 * (c) + 4 * ((s) / 32))
#define PLIC_THRESHOLD(c)  (INTC_BASE + 0x200000 + 0x1000 * (c))
#define PLIC_CLAIM(c)      (INTC_BASE + 0x200004 + 0x1000 * (c))

static inline u8 rd8(u64 a) { return *(volatile u8 *)a; }
static inline u16 rd16(u64 a) { return *(volatile u16 *)a; }
static inline u32 rd32(u64 a) { return *(volatile u32 *)a; }
static inline u64 rd64(u64 a) { return *(volatile u64 *)a; }
static inline void wr8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline void wr16(u64 a, u16 v) { *(volatile u16 *)a = v; }
static inline void wr32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline void wr64(u64 a, u64 v) { *(volatile u64 *)a = v; }

#define csr_read(csr) ({ u64 __v; __asm__ volatile("csrr %0, " #csr : "=r"(__v)); __v; })
#define csr_write(csr, v) __asm__ volatile("csrw " #csr ", %0" ::"r"((u64)(v)))
#define csr_set(csr, v) __asm__ volatile("csrs " #csr ", %0" ::"r"((u64)(v)))
#define csr_clear(csr, v) __asm__ volatile("csrc " #csr ", %0" ::"r"((u64)(v)))

#define MSTATUS_MIE   (1UL << 3)
#define MIE_SEIE      (1UL << 9)   /* the machine drives mip.SEIP from the PLIC */
#define MIE_MTIE      (1UL << 7)
#define MIE_MEIE      (1UL << 11)
#define MCAUSE_IRQ    (1UL << 63)

static inline void wfi(void) { __asm__ volatile("wfi"); }
static inline void fence(void) { __asm__ volatile("fence" ::: "memory"); }
static inline void irq_enable(void) { csr_set(mstatus, MSTATUS_MIE); }
static inline void irq_disable(void) { csr_clear(mstatus, MSTATUS_MIE); }

/* exit device: 0x5555 pass, (code << 16) | 0x3333 fail */
static inline __attribute__((noreturn)) void e2k_exit(int code)
{
    if (code == 0)
        wr32(EXIT_BASE, 0x5555);
    else
        wr32(EXIT_BASE, ((u32)code << 16) | 0x3333);
    for (;;)
        wfi();
}

/* E2K-style boot_info block (a2 at entry) */
struct boot_info {
    u16 signature;      /* 0x8086 */
    u16 version;        /* 1 */
    u32 _pad0;
    u64 ram_size;
    u64 serial_base;    /* Am85C30 channel A control */
    u64 io_base;
    u64 virtio_base;
    u32 virtio_slots;
    u32 _pad1;
    u64 intc_base;
    u64 exit_base;
    u64 timer_base;
    u64 ram_base;
    char cmdline[256];
};

/* tiny freestanding helpers */
static inline size_t e2k_strlen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }
static inline void *e2k_memset(void *d, int c, size_t n)
{
    u8 *p = d;
    while (n--) *p++ = (u8)c;
    return d;
}
static inline void *e2k_memcpy(void *d, const void *s, size_t n)
{
    u8 *p = d;
    const u8 *q = s;
    while (n--) *p++ = *q++;
    return d;
}
static inline u64 rdtime_mtime(void) { return rd64(CLINT_MTIME); }

#endif
