/* Boot contract (machine tests): a0 = hart id 0, a1 = device tree, a2 = boot_info; PCI
 * config space of 00:02.2 with BAR1 size probing; virtio-mmio slot ids. Prints a report
 * on COM1 (polled) and exits 0 when every check passed, else the number of the check. */
#include "e2k.h"

#define LSR 5
#define LSR_THRE 0x20

static void putc16550(char c)
{
    while (!(rd8(COM1_BASE + LSR) & LSR_THRE))
        ;
    wr8(COM1_BASE, (u8)c);
}

static void puts16550(const char *s)
{
    while (*s)
        putc16550(*s++);
}

static void puthex(u64 v)
{
    char buf[19];
    buf[0] = '0';
    buf[1] = 'x';
    for (int i = 0; i < 16; i++)
        buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
    buf[18] = 0;
    puts16550(buf);
}

#define ECAM_FN(d, f) (ECAM_BASE + ((u64)(d) << 15) + ((u64)(f) << 12))

int main(u64 hartid, u64 dtb, struct boot_info *bi)
{
    if (hartid != 0)
        return 1;
    if (rd32(dtb) != 0xedfe0dd0)      /* 0xd00dfeed, big-endian */
        return 2;
    if (bi->signature != 0x8086 || bi->version != 1)
        return 3;
    if (bi->ram_base != RAM_BASE || (u64)bi != RAM_BASE + bi->ram_size - 0x1000)
        return 4;
    if (dtb != RAM_BASE + bi->ram_size - 0x200000)
        return 5;
    if (bi->serial_base != AM85C30_BASE || bi->io_base != IO_BASE ||
        bi->virtio_base != VIRTIO_BASE || bi->virtio_slots != 8 ||
        bi->intc_base != INTC_BASE || bi->exit_base != EXIT_BASE ||
        bi->timer_base != TIMER_BASE)
        return 6;
    puts16550("cmdline=");
    puts16550(bi->cmdline);
    puts16550("\n");
    u64 fn = ECAM_FN(2, 2);
    u32 id = rd32(fn);
    puts16550("pci 00:02.2 id=");
    puthex(id);
    puts16550(" class=");
    puthex(rd32(fn + 8) >> 8);
    u32 bar1 = rd32(fn + 0x14);
    wr32(fn + 0x14, 0xffffffff);
    u32 mask = rd32(fn + 0x14);
    wr32(fn + 0x14, bar1);
    puts16550(" bar1=");
    puthex(bar1);
    puts16550(" size=");
    puthex((u64)(~(mask & ~0xfu) + 1));
    puts16550("\n");
    if (id != 0x80191fff || rd32(ECAM_FN(0, 0)) != 0xffffffff)
        return 7;
    if (rd32(fn + 0x14) != 0x40000000)
        return 8;
    puts16550("virtio");
    for (int n = 0; n < 8; n++) {
        puts16550(" ");
        puthex(rd32(VIRTIO_SLOT(n) + 8));
    }
    puts16550("\n");
    if (rd32(VIRTIO_SLOT(0)) != 0x74726976 || rd32(VIRTIO_SLOT(3) + 8) != 0)
        return 9;
    return 0;
}
