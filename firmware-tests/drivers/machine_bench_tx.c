/* Output throughput (tools/bench_machine.py): BYTES bytes of text, polled, through
 * DEV 0 = COM1 NS16550A (LSR poll + THR), 1 = Am85C30 channel A (RR0 poll + data),
 * 2 = virtio-console port 0 (128-byte buffers, busy wait on the used ring). */
#include "drv_util.h"
#include "drv_virtio.h"
#include "drv_zs.h"

#ifndef DEV
#define DEV 0
#endif
#ifndef BYTES
#define BYTES (1 << 20)
#endif

static const char line[64] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n";

#if DEV == 2
static struct virtq_mem qmem[2] __attribute__((aligned(4096)));
static struct virtq vq[2];
static void spin(void) { virtio_spin(); }
#endif

int main(u64 hartid, u64 dtb, struct boot_info *bi)
{
    (void)hartid;
    (void)dtb;
    u64 left = BYTES;
#if DEV == 0
    while (left) {
        for (int i = 0; i < 64 && left; i++, left--) {
            while (!(rd8(COM1_BASE + 5) & 0x20))
                ;
            wr8(COM1_BASE, (u8)line[i]);
        }
    }
#elif DEV == 1
    u64 base = bi->serial_base;
    zs_bios_init_channel(base, 0);
    while (left) {
        for (int i = 0; i < 64 && left; i++, left--)
            zs_putc_polled(base, 0, line[i]);
    }
#else
    u64 dev = virtio_find(bi->virtio_base, bi->virtio_slots, VIRTIO_ID_CONSOLE);
    if (!dev)
        return 3;
    if (!virtio_init_features(dev, 0))
        return 4;
    for (int i = 0; i < 2; i++)
        if (virtq_setup(&vq[i], dev, (u32)i, &qmem[i]))
            return 5;
    virtio_driver_ok(dev);
    static char chunk[VQ_BUF];
    for (int i = 0; i < VQ_BUF; i++)
        chunk[i] = line[i % 64];
    while (left) {
        u32 n = left > VQ_BUF ? VQ_BUF : (u32)left;
        if (virtq_send(&vq[1], chunk, n, spin, 0))
            return 6;
        left -= n;
    }
#endif
    return 0;
}
