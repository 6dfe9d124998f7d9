/* Shared helpers for the firmware engineer's guest drivers: number formatting onto any putc,
 * the PLIC/trap plumbing, and the E2K discovery paths (boot_info, PCI ECAM). Our own code. */
#ifndef DRV_UTIL_H
#define DRV_UTIL_H
#include "e2k.h"

typedef void (*putc_fn)(char c);

static inline void out_str(putc_fn pc, const char *s)
{
    while (*s)
        pc(*s++);
}

static inline void out_dec(putc_fn pc, u64 v)
{
    char buf[24];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        pc(buf[--n]);
}

/* zero-padded decimal of a fixed width (the stream driver's line numbers) */
static inline void out_dec_w(putc_fn pc, u64 v, int width)
{
    char buf[24];
    for (int i = width - 1; i >= 0; i--) {
        buf[i] = (char)('0' + v % 10);
        v /= 10;
    }
    for (int i = 0; i < width; i++)
        pc(buf[i]);
}

static inline void out_hex(putc_fn pc, u64 v, int digits)
{
    static const char hx[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--)
        pc(hx[(v >> (4 * i)) & 0xF]);
}

/* ---- PLIC (context 0 = M-mode hart 0) ------------------------------------------------- */

static inline void plic_enable_source(u32 src)
{
    wr32(PLIC_PRIORITY(src), 1);
    u64 en = PLIC_ENABLE(0, src);
    wr32(en, rd32(en) | (1u << (src % 32)));
    wr32(PLIC_THRESHOLD(0), 0);
}

static inline u32 plic_claim(void) { return rd32(PLIC_CLAIM(0)); }
static inline void plic_complete(u32 src) { wr32(PLIC_CLAIM(0), src); }

#define MCAUSE_EXTERNAL_S (MCAUSE_IRQ | 9)   /* mip.SEIP driven by the PLIC */
#define MCAUSE_EXTERNAL_M (MCAUSE_IRQ | 11)

static inline int mcause_is_external(u64 cause)
{
    return cause == MCAUSE_EXTERNAL_S || cause == MCAUSE_EXTERNAL_M;
}

/* Install a machine-mode handler (direct mode) and enable external interrupts. */
static inline void trap_install(void (*handler)(void))
{
    csr_write(mtvec, (u64)handler);
    csr_set(mie, MIE_SEIE | MIE_MEIE);
}

/* Sleep until an interrupt has been taken: wfi wakes on a pending enabled interrupt even with
 * mstatus.MIE clear, so the check-then-sleep has no lost-wakeup window; the pending interrupt
 * is then taken in the short MIE-on window. Call with MIE clear. */
static inline void idle_once(void)
{
    wfi();
    irq_enable();
    __asm__ volatile("nop");
    irq_disable();
}

/* ---- E2K discovery ------------------------------------------------------------------- */

#define BOOT_INFO_SIGNATURE 0x8086

static inline int boot_info_ok(const struct boot_info *bi)
{
    return bi && bi->signature == BOOT_INFO_SIGNATURE && bi->version >= 1;
}

#ifndef MAP_VIRT
#define ECAM_ADDR(bus, dev, fn, off) \
    (ECAM_BASE + ((u64)(bus) << 20) + ((u64)(dev) << 15) + ((u64)(fn) << 12) + (off))
#define PCI_VENDOR_MCST_TMP   0x1FFF
#define PCI_DEVICE_MCST_SERIAL 0x8019

/* Find the Am85C30 at 00:02.2 by its ids and return BAR1 (bit 0 stripped, as the MCST BIOS
 * does, plus the memory-BAR flag bits); 0 if absent. Also sizes the BAR the standard way
 * (write all-ones, read back, restore) into *size when size is not NULL, and turns on
 * memory decoding. */
static inline u64 pci_find_am85c30(u32 *size)
{
    u32 id = rd32(ECAM_ADDR(0, 2, 2, 0x00));
    if ((id & 0xFFFF) != PCI_VENDOR_MCST_TMP || (id >> 16) != PCI_DEVICE_MCST_SERIAL)
        return 0;
    u64 bar_addr = ECAM_ADDR(0, 2, 2, 0x14);
    u32 bar = rd32(bar_addr);
    if (size) {
        wr32(bar_addr, 0xFFFFFFFFu);
        u32 mask = rd32(bar_addr);
        wr32(bar_addr, bar);
        *size = (mask & ~0xFu) ? (~(mask & ~0xFu) + 1) : 0;
    }
    u64 cmd = ECAM_ADDR(0, 2, 2, 0x04);
    wr16(cmd, rd16(cmd) | 0x2);     /* memory space enable */
    return (u64)(bar & ~0xFu);
}

static inline u32 pci_class_of_am85c30(void)
{
    return rd32(ECAM_ADDR(0, 2, 2, 0x08)) >> 8;   /* class, subclass, prog-if */
}
#endif

#endif
