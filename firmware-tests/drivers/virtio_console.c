/* virtio-console over virtio-mmio v2, initialised in spec order: find the device (magic,
 * version 2, device id 3), reset, ACKNOWLEDGE, DRIVER, read the device features and accept
 * VERSION_1 (+ MULTIPORT when built with MULTIPORT=1), FEATURES_OK and its read-back, set up
 * the queues (QueueSel, QueueReady == 0, QueueNumMax, QueueNum, the three addresses,
 * QueueReady = 1), DRIVER_OK, then output on port 0's transmitq. Completions are waited for
 * with wfi on the device's interrupt (PLIC source 16 + slot), acknowledged through
 * InterruptStatus/InterruptACK.
 *
 * MULTIPORT=1: the control-queue handshake (DEVICE_READY; PORT_ADD -> PORT_READY;
 * CONSOLE_PORT -> PORT_OPEN; PORT_NAME; PORT_OPEN from the host), expecting EXPECT_PORTS
 * ports; then a line on every named port ("hello from port N (NAME)\n") and a port list on
 * port 0. ECHO=1: after the output, read one line from port 0's receiveq and answer
 * "got: LINE\n".
 * Exit codes: 0 ok, 2 no device, 3 features refused, 4 queue setup, 5 no completion,
 * 6 handshake incomplete, 7 unexpected trap. */
#include "drv_util.h"
#include "drv_virtio.h"

#ifndef MULTIPORT
#define MULTIPORT 0
#endif
#ifndef EXPECT_PORTS
#define EXPECT_PORTS 1
#endif
#ifndef ECHO
#define ECHO 0
#endif
#define MAXP 4

#ifdef MAP_VIRT
#define VIRTIO_SCAN_BASE VIRTIO_BASE
#define VIRTIO_SCAN_SLOTS 8
#else
#define VIRTIO_SCAN_BASE (bi->virtio_base)
#define VIRTIO_SCAN_SLOTS (bi->virtio_slots)
#endif

static struct virtq_mem qmem[2 * (MAXP + 1)] __attribute__((aligned(4096)));
static struct virtq vq[2 * (MAXP + 1)];
static u64 dev;
static u32 slot_irq;
static volatile u64 irq_count, used_irqs, config_irqs;

__attribute__((interrupt("machine"), aligned(4))) static void trap_handler(void)
{
    u64 cause = csr_read(mcause);
    if (!mcause_is_external(cause))
        e2k_exit(7);
    u32 src;
    while ((src = plic_claim()) != 0) {
        if (src == slot_irq) {
            irq_count++;
            u32 st = vm_rd(dev, VIRTIO_MMIO_INT_STATUS);
            if (st & 1)
                used_irqs++;
            if (st & 2)
                config_irqs++;
            vm_wr(dev, VIRTIO_MMIO_INT_ACK, st);
        }
        plic_complete(src);
    }
}

static void wait_irq(void) { idle_once(); }

/* port n's queues: receiveq 0/1 for port 0, control 2/3, port n >= 1 at 2n+2 / 2n+3 */
static int txq_of(int port) { return port == 0 ? 1 : 2 * port + 3; }

static int send(int port, const char *s)
{
    return virtq_send_str(&vq[txq_of(port)], s, wait_irq, 0);
}

#if MULTIPORT
static int rxq_of(int port) { return port == 0 ? 0 : 2 * port + 2; }
static int nports;          /* ports we set queues up for */
static int added[MAXP], is_console[MAXP], host_open[MAXP];
static char names[MAXP][32];
static int n_added, n_ready_done;

static void ctrl_send(u32 id, u16 event, u16 value)
{
    struct virtio_console_control m = {id, event, value};
    virtq_send(&vq[3], &m, sizeof(m), wait_irq, 0);
}

/* Handle every control message the device has queued; returns how many. */
static int ctrl_poll(void)
{
    int handled = 0;
    u32 len;
    int id;
    while ((id = virtq_next_used(&vq[2], &len)) >= 0) {
        handled++;
        struct virtio_console_control m;
        u8 *buf = qmem[2].bufs[id];
        if (len >= sizeof(m)) {
            e2k_memcpy(&m, buf, sizeof(m));
            int p = (int)m.id;
            if (p >= 0 && p < nports) {
                switch (m.event) {
                case VIRTIO_CONSOLE_PORT_ADD:
                    if (!added[p]) {
                        added[p] = 1;
                        n_added++;
                        if (p > 0)
                            virtq_fill_rx(&vq[rxq_of(p)]);
                    }
                    ctrl_send((u32)p, VIRTIO_CONSOLE_PORT_READY, 1);
                    n_ready_done++;
                    break;
                case VIRTIO_CONSOLE_CONSOLE_PORT:
                    is_console[p] = 1;
                    ctrl_send((u32)p, VIRTIO_CONSOLE_PORT_OPEN, 1);
                    break;
                case VIRTIO_CONSOLE_PORT_NAME: {
                    u32 n = len - sizeof(m);
                    if (n > sizeof(names[p]) - 1)
                        n = sizeof(names[p]) - 1;
                    e2k_memcpy(names[p], buf + sizeof(m), n);
                    names[p][n] = 0;
                    break;
                }
                case VIRTIO_CONSOLE_PORT_OPEN:
                    host_open[p] = m.value;
                    break;
                default:
                    break;
                }
            }
        }
        virtq_post(&vq[2], (u16)id, VQ_BUF, 1);
        virtq_notify(&vq[2]);
    }
    return handled;
}

static char line[128];
static int line_len;
static void lput(char c) { if (line_len < (int)sizeof(line) - 1) line[line_len++] = c; }
static void lflush(int port) { line[line_len] = 0; send(port, line); line_len = 0; }
#endif

#if ECHO
static int echo_line(void)
{
    char got[VQ_BUF + 8];
    int n = 0;
    struct virtq *rq = &vq[0];
    for (;;) {
        u32 len;
        int id;
        while ((id = virtq_next_used(rq, &len)) < 0)
            idle_once();
        u8 *buf = rq->mem->bufs[id];
        int nl = 0;
        for (u32 i = 0; i < len && n < VQ_BUF; i++) {
            if (buf[i] == '\n') {
                nl = 1;
                break;
            }
            got[n++] = (char)buf[i];
        }
        virtq_post(rq, (u16)id, VQ_BUF, 1);
        virtq_notify(rq);
        if (nl)
            break;
    }
    got[n] = 0;
    send(0, "got: ");
    send(0, got);
    return send(0, "\n");
}
#endif

int main(u64 hartid, u64 dtb, struct boot_info *bi)
{
    (void)hartid;
    (void)dtb;
#ifndef MAP_VIRT
    if (!boot_info_ok(bi))
        return 2;
#else
    (void)bi;
#endif
    irq_disable();
    dev = virtio_find(VIRTIO_SCAN_BASE, VIRTIO_SCAN_SLOTS, VIRTIO_ID_CONSOLE);
    if (!dev)
        return 2;
    slot_irq = IRQ_VIRTIO((dev - VIRTIO_SCAN_BASE) / 0x1000);
    u64 want = MULTIPORT ? (1UL << VIRTIO_CONSOLE_F_MULTIPORT) : 0;
    u64 feat = virtio_init_features(dev, want);
    if (!feat)
        return 3;
    int nq = 2;
#if MULTIPORT
    if (!(feat & (1UL << VIRTIO_CONSOLE_F_MULTIPORT)))
        return 3;
    u32 maxp = vm_rd(dev, VIRTIO_MMIO_CONFIG + 4);
    nports = maxp < MAXP ? (int)maxp : MAXP;
    nq = 2 * (nports + 1);
#endif
    for (int i = 0; i < nq; i++)
        if (virtq_setup(&vq[i], dev, (u32)i, &qmem[i]))
            return 4;
    plic_enable_source(slot_irq);
    trap_install(trap_handler);
    virtio_driver_ok(dev);
    virtq_fill_rx(&vq[0]);
#if MULTIPORT
    virtq_fill_rx(&vq[2]);
    ctrl_send(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
    /* the device answers on the control receiveq; wait (bounded) until every expected port
     * was added and, for named ports, its name arrived */
    for (u64 spins = 0;; spins++) {
        ctrl_poll();
        int complete = n_added >= EXPECT_PORTS;
        for (int p = 1; p < nports && complete; p++)
            if (added[p] && !names[p][0])
                complete = 0;
        if (complete && n_ready_done >= n_added)
            break;
        if (spins > 2000000)
            return 6;
    }
    ctrl_poll();
    out_str(lput, "virtio-console: ");
    out_dec(lput, (u64)n_added);
    out_str(lput, " ports\n");
    lflush(0);
    for (int p = 0; p < nports; p++) {
        if (!added[p])
            continue;
        out_str(lput, "port ");
        out_dec(lput, (u64)p);
        out_str(lput, is_console[p] ? " console" : " generic");
        if (names[p][0]) {
            out_str(lput, " name ");
            out_str(lput, names[p]);
        }
        out_str(lput, "\n");
        lflush(0);
    }
    for (int p = 1; p < nports; p++) {
        if (!added[p] || !names[p][0])
            continue;
        ctrl_send((u32)p, VIRTIO_CONSOLE_PORT_OPEN, 1);   /* the guest opens the port */
        out_str(lput, "hello from port ");
        out_dec(lput, (u64)p);
        out_str(lput, " (");
        out_str(lput, names[p]);
        out_str(lput, ")\n");
        lflush(p);
    }
#endif
    if (send(0, "virtio console: hello from port 0\n"))
        return 5;
    if (send(0, "second buffer\n"))
        return 5;
#if ECHO
    echo_line();
#endif
    return 0;
}
