/* A sloppy virtio-console driver in the style of small embedded drivers (sDDF-like): it
 * writes Status values non-cumulatively (ACK, then DRIVER, then FEATURES_OK, then DRIVER_OK,
 * each on its own), notifies a queue before making it ready, asks for 512-entry queues
 * whatever QueueNumMax says, sends 1-byte descriptors, never waits for FEATURES_OK and polls
 * without interrupts. SLOPPY_FEATURES=0 (default) never writes DriverFeatures (so VERSION_1
 * is not accepted); SLOPPY_FEATURES=1 writes VERSION_1 and nothing else.
 * The driver reports what it saw through the exit code, so a test can check the device's
 * reaction: 10 + (Status read-back after FEATURES_OK has FEATURES_OK ? 1 : 0)
 * + (the transmitted bytes completed ? 2 : 0) + (NEEDS_RESET seen ? 4 : 0); 2 = no device. */
#include "drv_util.h"
#include "drv_virtio.h"

#ifndef SLOPPY_FEATURES
#define SLOPPY_FEATURES 0
#endif
#define SLOPPY_QSIZE 512

struct big_desc { struct virtq_desc d[SLOPPY_QSIZE]; };
struct big_avail { u16 flags, idx, ring[SLOPPY_QSIZE], used_event; };
struct big_used { u16 flags, idx; struct virtq_used_elem ring[SLOPPY_QSIZE]; u16 avail_event; };

static struct big_desc desc[2] __attribute__((aligned(4096)));
static struct big_avail avail[2] __attribute__((aligned(4096)));
static struct big_used used[2] __attribute__((aligned(4096)));
static u8 bytes[64];

static void setup_queue(u64 b, u32 q)
{
    vm_wr(b, VIRTIO_MMIO_QUEUE_SEL, q);
    vm_wr(b, VIRTIO_MMIO_QUEUE_NUM, SLOPPY_QSIZE);
    u64 d = (u64)&desc[q], a = (u64)&avail[q], u = (u64)&used[q];
    vm_wr(b, VIRTIO_MMIO_QUEUE_DESC_LO, (u32)d);
    vm_wr(b, VIRTIO_MMIO_QUEUE_DESC_HI, (u32)(d >> 32));
    vm_wr(b, VIRTIO_MMIO_QUEUE_AVAIL_LO, (u32)a);
    vm_wr(b, VIRTIO_MMIO_QUEUE_AVAIL_HI, (u32)(a >> 32));
    vm_wr(b, VIRTIO_MMIO_QUEUE_USED_LO, (u32)u);
    vm_wr(b, VIRTIO_MMIO_QUEUE_USED_HI, (u32)(u >> 32));
    vm_wr(b, VIRTIO_MMIO_QUEUE_NOTIFY, q);          /* notify before ready */
    vm_wr(b, VIRTIO_MMIO_QUEUE_READY, 1);
}

int main(u64 hartid, u64 dtb, struct boot_info *bi)
{
    (void)hartid;
    (void)dtb;
#ifdef MAP_VIRT
    (void)bi;
    u64 b = virtio_find(VIRTIO_BASE, 8, VIRTIO_ID_CONSOLE);
#else
    if (!boot_info_ok(bi))
        return 2;
    u64 b = virtio_find(bi->virtio_base, bi->virtio_slots, VIRTIO_ID_CONSOLE);
#endif
    if (!b)
        return 2;
    int result = 10;
    int needs_reset = 0;
    vm_wr(b, VIRTIO_MMIO_STATUS, 0);
    vm_wr(b, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACK);
    vm_wr(b, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_DRIVER);
#if SLOPPY_FEATURES
    vm_wr(b, VIRTIO_MMIO_DRV_FEAT_SEL, 1);
    vm_wr(b, VIRTIO_MMIO_DRV_FEATURES, 1u << (VIRTIO_F_VERSION_1 - 32));
#endif
    vm_wr(b, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_FEATURES_OK);
    u32 st = vm_rd(b, VIRTIO_MMIO_STATUS);
    if (st & VIRTIO_STATUS_FEATURES_OK)
        result += 1;
    needs_reset |= (st & VIRTIO_STATUS_NEEDS_RESET) != 0;
    setup_queue(b, 0);
    setup_queue(b, 1);
    vm_wr(b, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_DRIVER_OK);
    /* one byte per descriptor */
    const char *msg = "sloppy\n";
    u16 n = 0;
    for (; msg[n]; n++) {
        bytes[n] = (u8)msg[n];
        desc[1].d[n].addr = (u64)&bytes[n];
        desc[1].d[n].len = 1;
        desc[1].d[n].flags = 0;
        desc[1].d[n].next = 0;
        avail[1].ring[n] = n;
    }
    fence();
    *(volatile u16 *)&avail[1].idx = n;
    fence();
    vm_wr(b, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    int completed = 0;
    for (u32 i = 0; i < 200000; i++) {
        if (*(volatile u16 *)&used[1].idx == n) {
            completed = 1;
            break;
        }
    }
    if (completed)
        result += 2;
    st = vm_rd(b, VIRTIO_MMIO_STATUS);
    needs_reset |= (st & VIRTIO_STATUS_NEEDS_RESET) != 0;
    if (needs_reset)
        result += 4;
    vm_wr(b, VIRTIO_MMIO_INT_ACK, vm_rd(b, VIRTIO_MMIO_INT_STATUS));
    return result;
}
