/* A small virtio-mmio (version 2) split-virtqueue driver core for the console tests and the
 * demo firmware: discovery, the spec-order initialisation, synchronous transmit, receive
 * buffers. Written from the virtio 1.x spec layout; our own code. */
#ifndef DRV_VIRTIO_H
#define DRV_VIRTIO_H
#include "e2k.h"

#define VIRTIO_MMIO_MAGIC          0x000
#define VIRTIO_MMIO_VERSION        0x004
#define VIRTIO_MMIO_DEVICE_ID      0x008
#define VIRTIO_MMIO_VENDOR_ID      0x00C
#define VIRTIO_MMIO_DEV_FEATURES   0x010
#define VIRTIO_MMIO_DEV_FEAT_SEL   0x014
#define VIRTIO_MMIO_DRV_FEATURES   0x020
#define VIRTIO_MMIO_DRV_FEAT_SEL   0x024
#define VIRTIO_MMIO_QUEUE_SEL      0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX  0x034
#define VIRTIO_MMIO_QUEUE_NUM      0x038
#define VIRTIO_MMIO_QUEUE_READY    0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY   0x050
#define VIRTIO_MMIO_INT_STATUS     0x060
#define VIRTIO_MMIO_INT_ACK        0x064
#define VIRTIO_MMIO_STATUS         0x070
#define VIRTIO_MMIO_QUEUE_DESC_LO  0x080
#define VIRTIO_MMIO_QUEUE_DESC_HI  0x084
#define VIRTIO_MMIO_QUEUE_AVAIL_LO 0x090
#define VIRTIO_MMIO_QUEUE_AVAIL_HI 0x094
#define VIRTIO_MMIO_QUEUE_USED_LO  0x0A0
#define VIRTIO_MMIO_QUEUE_USED_HI  0x0A4
#define VIRTIO_MMIO_CONFIG_GEN     0x0FC
#define VIRTIO_MMIO_CONFIG         0x100

#define VIRTIO_MAGIC_VALUE 0x74726976u
#define VIRTIO_ID_CONSOLE  3

#define VIRTIO_STATUS_ACK         1
#define VIRTIO_STATUS_DRIVER      2
#define VIRTIO_STATUS_DRIVER_OK   4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED      0x80

#define VIRTIO_CONSOLE_F_SIZE        0
#define VIRTIO_CONSOLE_F_MULTIPORT   1
#define VIRTIO_CONSOLE_F_EMERG_WRITE 2
#define VIRTIO_F_VERSION_1           32

#define VIRTQ_DESC_F_NEXT  1
#define VIRTQ_DESC_F_WRITE 2

/* control messages */
#define VIRTIO_CONSOLE_DEVICE_READY 0
#define VIRTIO_CONSOLE_PORT_ADD     1
#define VIRTIO_CONSOLE_PORT_REMOVE  2
#define VIRTIO_CONSOLE_PORT_READY   3
#define VIRTIO_CONSOLE_CONSOLE_PORT 4
#define VIRTIO_CONSOLE_RESIZE       5
#define VIRTIO_CONSOLE_PORT_OPEN    6
#define VIRTIO_CONSOLE_PORT_NAME    7

struct virtio_console_control {
    u32 id;
    u16 event;
    u16 value;
};

struct virtq_desc {
    u64 addr;
    u32 len;
    u16 flags;
    u16 next;
};

#ifndef VQ_MAX
#define VQ_MAX 16           /* entries per queue (power of two) */
#endif
#define VQ_BUF 128          /* bytes per buffer */

struct virtq_avail {
    u16 flags;
    u16 idx;
    u16 ring[VQ_MAX];
    u16 used_event;
};

struct virtq_used_elem {
    u32 id;
    u32 len;
};

struct virtq_used {
    u16 flags;
    u16 idx;
    struct virtq_used_elem ring[VQ_MAX];
    u16 avail_event;
};

/* one queue's memory, a page each part is plenty */
struct virtq_mem {
    struct virtq_desc desc[VQ_MAX] __attribute__((aligned(16)));
    struct virtq_avail avail __attribute__((aligned(16)));
    struct virtq_used used __attribute__((aligned(16)));
    u8 bufs[VQ_MAX][VQ_BUF];
};

struct virtq {
    u64 mmio;
    u32 index;
    u16 num;
    u16 avail_idx;      /* driver's next avail index */
    u16 last_used;      /* next used index to look at */
    struct virtq_mem *mem;
};

static inline u32 vm_rd(u64 base, u32 off) { return rd32(base + off); }
static inline void vm_wr(u64 base, u32 off, u32 v) { wr32(base + off, v); }

static inline u16 vq_used_idx(struct virtq *q)
{
    return *(volatile u16 *)&q->mem->used.idx;
}

/* Scan the virtio-mmio slots for a device id; 0 if none. */
static inline u64 virtio_find(u64 base, u32 slots, u32 device_id)
{
    for (u32 i = 0; i < slots; i++) {
        u64 b = base + (u64)i * 0x1000;
        if (vm_rd(b, VIRTIO_MMIO_MAGIC) != VIRTIO_MAGIC_VALUE)
            continue;
        if (vm_rd(b, VIRTIO_MMIO_VERSION) != 2)
            continue;
        if (vm_rd(b, VIRTIO_MMIO_DEVICE_ID) == device_id)
            return b;
    }
    return 0;
}

static inline u64 virtio_device_features(u64 b)
{
    vm_wr(b, VIRTIO_MMIO_DEV_FEAT_SEL, 1);
    u64 hi = vm_rd(b, VIRTIO_MMIO_DEV_FEATURES);
    vm_wr(b, VIRTIO_MMIO_DEV_FEAT_SEL, 0);
    u64 lo = vm_rd(b, VIRTIO_MMIO_DEV_FEATURES);
    return (hi << 32) | lo;
}

static inline void virtio_driver_features(u64 b, u64 f)
{
    vm_wr(b, VIRTIO_MMIO_DRV_FEAT_SEL, 1);
    vm_wr(b, VIRTIO_MMIO_DRV_FEATURES, (u32)(f >> 32));
    vm_wr(b, VIRTIO_MMIO_DRV_FEAT_SEL, 0);
    vm_wr(b, VIRTIO_MMIO_DRV_FEATURES, (u32)f);
}

/* Spec-order queue setup; returns 0 or a negative error. */
static inline int virtq_setup(struct virtq *q, u64 mmio, u32 index, struct virtq_mem *mem)
{
    q->mmio = mmio;
    q->index = index;
    q->mem = mem;
    q->avail_idx = 0;
    q->last_used = 0;
    e2k_memset(mem, 0, sizeof(*mem));
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_SEL, index);
    if (vm_rd(mmio, VIRTIO_MMIO_QUEUE_READY) != 0)
        return -1;
    u32 max = vm_rd(mmio, VIRTIO_MMIO_QUEUE_NUM_MAX);
    if (max == 0)
        return -2;
    q->num = max < VQ_MAX ? (u16)max : VQ_MAX;
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_NUM, q->num);
    u64 d = (u64)mem->desc, a = (u64)&mem->avail, u = (u64)&mem->used;
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_DESC_LO, (u32)d);
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_DESC_HI, (u32)(d >> 32));
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_AVAIL_LO, (u32)a);
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_AVAIL_HI, (u32)(a >> 32));
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_USED_LO, (u32)u);
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_USED_HI, (u32)(u >> 32));
    vm_wr(mmio, VIRTIO_MMIO_QUEUE_READY, 1);
    return 0;
}

/* Make buffer slot `slot` available (len bytes; device-writable if `writable`). */
static inline void virtq_post(struct virtq *q, u16 slot, u32 len, int writable)
{
    struct virtq_mem *m = q->mem;
    m->desc[slot].addr = (u64)m->bufs[slot];
    m->desc[slot].len = len;
    m->desc[slot].flags = writable ? VIRTQ_DESC_F_WRITE : 0;
    m->desc[slot].next = 0;
    m->avail.ring[q->avail_idx % q->num] = slot;
    fence();
    q->avail_idx++;
    *(volatile u16 *)&m->avail.idx = q->avail_idx;
    fence();
}

static inline void virtq_notify(struct virtq *q)
{
    fence();
    vm_wr(q->mmio, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
}

/* Post every buffer of a receive queue. */
static inline void virtq_fill_rx(struct virtq *q)
{
    for (u16 i = 0; i < q->num; i++)
        virtq_post(q, i, VQ_BUF, 1);
    virtq_notify(q);
}

/* Next used element, or -1 if none yet. */
static inline int virtq_next_used(struct virtq *q, u32 *len)
{
    if (vq_used_idx(q) == q->last_used)
        return -1;
    fence();
    struct virtq_used_elem e = q->mem->used.ring[q->last_used % q->num];
    q->last_used++;
    if (len)
        *len = e.len;
    return (int)e.id;
}

/* Hook to wait for the device: drivers may replace it with an interrupt sleep. */
typedef void (*virtio_wait_fn)(void);

static inline void virtio_spin(void) { __asm__ volatile("nop"); }

/* Synchronous transmit of up to VQ_BUF bytes on a transmit queue: one descriptor, wait
 * until the device has used it. Returns 0, or -1 if the device never completes within
 * `spins` waits (0 = wait forever). */
static inline int virtq_send(struct virtq *q, const void *data, u32 len, virtio_wait_fn wait,
                             u64 spins)
{
    u16 slot = q->avail_idx % q->num;
    if (len > VQ_BUF)
        len = VQ_BUF;
    e2k_memcpy(q->mem->bufs[slot], data, len);
    virtq_post(q, slot, len, 0);
    virtq_notify(q);
    u64 n = 0;
    while (vq_used_idx(q) != q->avail_idx) {
        if (spins && ++n > spins)
            return -1;
        wait();
    }
    q->last_used = q->avail_idx;
    return 0;
}

static inline int virtq_send_str(struct virtq *q, const char *s, virtio_wait_fn wait, u64 spins)
{
    u32 len = (u32)e2k_strlen(s);
    while (len) {
        u32 n = len > VQ_BUF ? VQ_BUF : len;
        if (virtq_send(q, s, n, wait, spins))
            return -1;
        s += n;
        len -= n;
    }
    return 0;
}

/* Spec-order device initialisation up to (not including) queue setup: reset, ACK, DRIVER,
 * feature negotiation (VERSION_1 plus `wanted` & offered), FEATURES_OK and its check.
 * Returns the negotiated features, or 0 when the device refused them. */
static inline u64 virtio_init_features(u64 b, u64 wanted)
{
    vm_wr(b, VIRTIO_MMIO_STATUS, 0);
    vm_wr(b, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACK);
    vm_wr(b, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER);
    u64 offered = virtio_device_features(b);
    u64 take = (offered & wanted) | (1UL << VIRTIO_F_VERSION_1);
    virtio_driver_features(b, take);
    vm_wr(b, VIRTIO_MMIO_STATUS,
          VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    if (!(vm_rd(b, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK)) {
        vm_wr(b, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_FAILED);
        return 0;
    }
    return take;
}

static inline void virtio_driver_ok(u64 b)
{
    vm_wr(b, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER |
          VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

#endif
