/* tools/bench output workloads: BYTES bytes of a fixed 64-byte text line, repeated, so the
 * host can check the output byte for byte. Same source for the E2K map and QEMU's `virt`
 * map (-DMAP_VIRT), so e2kchar and qemu-system-riscv64 run identical guest code.
 *   BENCH_DEV 0: NS16550A (COM1), polled: LSR.THRE poll, then THR
 *   BENCH_DEV 1: Am85C30 channel A, polled (RR0 poll, data); E2K map only
 *   BENCH_DEV 2: virtio-console port 0 (virtio-mmio v2): big buffers, VQN descriptors in
 *                flight, completions polled in RAM (no interrupt, no MMIO while waiting)
 *   BENCH_DEV 3: NS16550A, numbered lines "NNNNNNNN\n" forever (BYTES == 0) or until BYTES
 *                bytes: the hotswap workload; the host checks that no line is lost or doubled
 * Exit codes: 0 ok, 2 no virtio-console, 3 features refused, 4 queue setup failed,
 * 9 device not on this map. */
#include "drv_util.h"
#include "drv_uart.h"
#include "drv_virtio.h"
#include "drv_zs.h"

#ifndef BENCH_DEV
#define BENCH_DEV 0
#endif
#ifndef BYTES
#define BYTES (1 << 20)
#endif
#ifndef CHUNK
#define CHUNK 65536     /* bytes per virtio descriptor; a multiple of 64 keeps the pattern */
#endif
#ifndef VQN
#define VQN 64            /* virtio descriptors in flight (power of two, <= both queue sizes) */
#endif

static const char line[64] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n";

static inline void uart_put(u8 c)
{
    while (!(rd8(COM1_BASE + UART_LSR) & UART_LSR_THRE))
        ;
    wr8(COM1_BASE + UART_THR, c);
}

#if BENCH_DEV == 2
/* a queue of our own (drv_virtio.h's buffers are 128 bytes: too small to measure DMA) */
struct bq {
    struct virtq_desc desc[VQN] __attribute__((aligned(16)));
    struct {
        u16 flags, idx, ring[VQN], used_event;
    } avail __attribute__((aligned(16)));
    struct {
        u16 flags, idx;
        struct virtq_used_elem ring[VQN];
        u16 avail_event;
    } used __attribute__((aligned(16)));
};
static struct bq txq __attribute__((aligned(4096)));
static struct bq rxq __attribute__((aligned(4096)));
static char chunk[CHUNK] __attribute__((aligned(64)));

static int bq_setup(u64 mmio, u32 index, struct bq *q)
{
    e2k_memset(q, 0, sizeof(*q));
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_SEL, index);
    if (vm_rd(mmio, VIRTIO_MMIO_QUEUE_READY) != 0 || vm_rd(mmio, VIRTIO_MMIO_QUEUE_NUM_MAX) < VQN)
        return -1;
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_NUM, VQN);
    u64 d = (u64)q->desc, a = (u64)&q->avail, u = (u64)&q->used;
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_DESC_LO, (u32)d);
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_DESC_HI, (u32)(d >> 32));
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_AVAIL_LO, (u32)a);
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_AVAIL_HI, (u32)(a >> 32));
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_USED_LO, (u32)u);
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_USED_HI, (u32)(u >> 32));
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_READY, 1);
    return 0;
}

static int virtio_tx(struct boot_info *bi)
{
#ifdef MAP_VIRT
    (void)bi;
    u64 dev = virtio_find(VIRTIO_BASE, 8, VIRTIO_ID_CONSOLE);   /* QEMU fills the top slot */
#else
    u64 dev = virtio_find(bi->virtio_base, bi->virtio_slots, VIRTIO_ID_CONSOLE);
#endif
    if (!dev)
        return 2;
    if (!virtio_init_features(dev, 0))
        return 3;
    if (bq_setup(dev, 0, &rxq) || bq_setup(dev, 1, &txq))
        return 4;
    virtio_driver_ok(dev);
    for (u32 i = 0; i < CHUNK; i++)
        chunk[i] = line[i % 64];
    u64 left = BYTES;
    u16 posted = 0, done = 0;
    while (left || posted != done) {
        int added = 0;
        while (left && (u16)(posted - done) < VQN) {
            u32 n = left > CHUNK ? CHUNK : (u32)left;
            u16 slot = posted % VQN;
            txq.desc[slot].addr = (u64)chunk;
            txq.desc[slot].len = n;
            txq.desc[slot].flags = 0;
            txq.desc[slot].next = 0;
            txq.avail.ring[slot] = slot;
            posted++;
            left -= n;
            added = 1;
        }
        if (added) {
            fence();
            *(volatile u16 *)&txq.avail.idx = posted;
            fence();
            vm_wr(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
        }
        while (*(volatile u16 *)&txq.used.idx == done)
            ;
        fence();
        done = *(volatile u16 *)&txq.used.idx;
    }
    return 0;
}
#endif

int main(u64 hartid, u64 dtb, struct boot_info *bi)
{
    (void)hartid;
    (void)dtb;
    (void)bi;
#if BENCH_DEV == 0
    for (u64 i = 0; i < (u64)BYTES; i++)
        uart_put((u8)line[i % 64]);
    /* the last byte has left the shift register before the exit write */
    while ((rd8(COM1_BASE + UART_LSR) & UART_LSR_BOTH_EMPTY) != UART_LSR_BOTH_EMPTY)
        ;
    return 0;
#elif BENCH_DEV == 1
#ifdef MAP_VIRT
    return 9;
#else
    u64 base = bi->serial_base;
    zs_bios_init_channel(base, 0);
    for (u64 i = 0; i < (u64)BYTES; i++)
        zs_putc_polled(base, 0, line[i % 64]);
    return 0;
#endif
#elif BENCH_DEV == 2
    return virtio_tx(bi);
#else
    char buf[9];
    u64 sent = 0;
    for (u64 n = 0; BYTES == 0 || sent < (u64)BYTES; n++) {
        u64 v = n;
        for (int i = 7; i >= 0; i--) {
            buf[i] = (char)('0' + v % 10);
            v /= 10;
        }
        buf[8] = '\n';
        for (int i = 0; i < 9 && (BYTES == 0 || sent < (u64)BYTES); i++, sent++)
            uart_put((u8)buf[i]);
    }
    return 0;
#endif
}
