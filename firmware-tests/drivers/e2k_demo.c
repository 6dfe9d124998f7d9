/* The bundled default firmware: a small "E2K boot ROM" demo.
 *
 * Finds the Am85C30 the two ways an E2K boot chain does (boot_info->serial_base and PCI
 * 00:02.2 BAR1), brings both channels up with the MCST BIOS sequence, prints a banner and a
 * short boot log on channel A (mirrored to the virtio-console when one is present), then
 * runs a tiny prompt on channel A: help, echo TEXT, info, exit N. Input arrives through the
 * Am85C30 Rx interrupt (PLIC source 3); the CPU sleeps in wfi while idle.
 * Built by tools/build_firmware.py --bundled into e2kchar/machine/firmware/e2k-demo.elf. */
#include "drv_util.h"
#include "drv_zs.h"
#include "drv_virtio.h"

#define LINE_MAX 80

static u64 zs_base;
static struct boot_info *boot;
static u64 pci_bar;
static u64 virtio_dev;
static u32 virtio_slot;
static struct virtq_mem vq_mem[4] __attribute__((aligned(4096)));
static struct virtq vq_rx, vq_tx, vq_crx, vq_ctx;
static int virtio_multiport;
static u32 virtio_ports;
static int mirror;
static char mline[VQ_BUF];
static u32 mline_len;

static u8 rxbuf[256];
static volatile u32 rx_head, rx_tail;
static volatile u64 irq_count, rx_dropped;

/* ---- output -------------------------------------------------------------------------- */

static void raw_putc(char c) { zs_putc_polled(zs_base, 0, c); }

static void mirror_flush(void)
{
    if (mirror && mline_len && virtq_send(&vq_tx, mline, mline_len, virtio_spin, 2000000))
        mirror = 0;     /* the device stopped completing: give up mirroring, keep booting */
    mline_len = 0;
}

static void con_putc(char c)
{
    if (c == '\n')
        raw_putc('\r');
    raw_putc(c);
}

/* boot log: channel A and, line by line, the virtio-console */
static void log_putc(char c)
{
    con_putc(c);
    if (mirror) {
        mline[mline_len++] = c;
        if (c == '\n' || mline_len == sizeof(mline))
            mirror_flush();
    }
}

/* ---- input (Am85C30 Rx interrupt) ---------------------------------------------------- */

static void zs_rx_interrupt(void)
{
    u64 ca = ZS_CTL(zs_base, 0);
    u8 rr3;
    int guard = 0;
    while ((rr3 = zs_read_reg(ca, 3)) != 0 && guard++ < 1000) {
        if (rr3 & ZS_CHA_RX_IP) {
            while (rd8(ca) & ZS_RX_CH_AV) {
                u8 r1 = zs_read_reg(ca, 1);
                u8 c = rd8(ZS_DATA(zs_base, 0));
                if (r1 & (ZS_PAR_ERR | ZS_RX_OVR | ZS_CRC_ERR))
                    wr8(ca, ZS_ERR_RES);
                if (rx_head - rx_tail < sizeof(rxbuf))
                    rxbuf[rx_head++ % sizeof(rxbuf)] = c;
                else
                    rx_dropped++;
            }
        }
        if (rr3 & (ZS_CHA_EXT_IP | ZS_CHB_EXT_IP)) {
            wr8(ca, ZS_RES_EXT_INT);
            wr8(ZS_CTL(zs_base, 1), ZS_RES_EXT_INT);
        }
        if (rr3 & (ZS_CHA_TX_IP))
            wr8(ca, ZS_RES_TX_P);
        if (rr3 & (ZS_CHB_TX_IP))
            wr8(ZS_CTL(zs_base, 1), ZS_RES_TX_P);
        if (rr3 & ZS_CHB_RX_IP)
            (void)rd8(ZS_DATA(zs_base, 1));
        wr8(ca, ZS_RES_H_IUS);
    }
}

__attribute__((interrupt("machine"), aligned(4))) static void trap_handler(void)
{
    u64 cause = csr_read(mcause);
    if (!mcause_is_external(cause)) {
        out_str(con_putc, "\nunexpected trap, mcause 0x");
        out_hex(con_putc, cause, 16);
        out_str(con_putc, " mepc 0x");
        out_hex(con_putc, csr_read(mepc), 16);
        out_str(con_putc, "\n");
        e2k_exit(99);
    }
    u32 src;
    while ((src = plic_claim()) != 0) {
        irq_count++;
        if (src == IRQ_AM85C30)
            zs_rx_interrupt();
        plic_complete(src);
    }
}

static int getc_wait(void)
{
    while (rx_head == rx_tail)
        idle_once();
    return rxbuf[rx_tail++ % sizeof(rxbuf)];
}

/* ---- helpers ------------------------------------------------------------------------- */

static int word_is(const char *line, const char *w, const char **rest)
{
    while (*w && *line == *w) {
        line++;
        w++;
    }
    if (*w || (*line && *line != ' '))
        return 0;
    while (*line == ' ')
        line++;
    *rest = line;
    return 1;
}

static void print_info(putc_fn pc)
{
    out_str(pc, "boot_info: signature 0x");
    out_hex(pc, boot->signature, 4);
    out_str(pc, " version ");
    out_dec(pc, boot->version);
    out_str(pc, ", ram ");
    out_dec(pc, boot->ram_size >> 20);
    out_str(pc, " MiB at 0x");
    out_hex(pc, boot->ram_base, 8);
    out_str(pc, "\nam85c30: pci 00:02.2 [1fff:8019] bar1 0x");
    out_hex(pc, pci_bar, 8);
    out_str(pc, ", boot_info serial_base 0x");
    out_hex(pc, boot->serial_base, 8);
    out_str(pc, "\nvirtio-console: ");
    if (virtio_dev) {
        out_str(pc, "slot ");
        out_dec(pc, virtio_slot);
        out_str(pc, ", irq ");
        out_dec(pc, IRQ_VIRTIO(virtio_slot));
        if (virtio_multiport) {
            out_str(pc, ", ports ");
            out_dec(pc, virtio_ports);
        }
    } else {
        out_str(pc, "none");
    }
    out_str(pc, "\ncmdline: ");
    for (int i = 0; i < (int)sizeof(boot->cmdline) && boot->cmdline[i]; i++)
        pc(boot->cmdline[i]);
    out_str(pc, "\n");
}

static void ctrl_send(u32 id, u16 event, u16 value)
{
    struct virtio_console_control m = {id, event, value};
    if (virtq_send(&vq_ctx, &m, sizeof(m), virtio_spin, 2000000))
        virtio_multiport = 0;
}

/* Multiport: DEVICE_READY, then answer the device's control messages until it has been
 * quiet for a while (it answers as soon as it is notified). Only port 0 gets queues here,
 * so other ports are answered "not ready". Returns whether port 0 exists. */
static int virtio_handshake(void)
{
    int port0 = 0;
    virtq_fill_rx(&vq_crx);
    ctrl_send(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
    for (u32 quiet = 0; quiet < 20000 && virtio_multiport; quiet++) {
        u32 len;
        int id = virtq_next_used(&vq_crx, &len);
        if (id < 0)
            continue;
        quiet = 0;
        struct virtio_console_control m;
        if (len >= sizeof(m)) {
            e2k_memcpy(&m, vq_mem[2].bufs[id], sizeof(m));
            if (m.event == VIRTIO_CONSOLE_PORT_ADD) {
                virtio_ports++;
                if (m.id == 0)
                    port0 = 1;
                ctrl_send(m.id, VIRTIO_CONSOLE_PORT_READY, m.id == 0);
            } else if (m.event == VIRTIO_CONSOLE_CONSOLE_PORT && m.id == 0) {
                ctrl_send(0, VIRTIO_CONSOLE_PORT_OPEN, 1);
            }
        }
        virtq_post(&vq_crx, (u16)id, VQ_BUF, 1);
        virtq_notify(&vq_crx);
    }
    return port0 && virtio_multiport;
}

static void virtio_mirror_init(void)
{
    virtio_dev = virtio_find(boot->virtio_base, boot->virtio_slots, VIRTIO_ID_CONSOLE);
    if (!virtio_dev)
        return;
    virtio_slot = (u32)((virtio_dev - boot->virtio_base) / 0x1000);
    u64 feat = virtio_init_features(virtio_dev, 1UL << VIRTIO_CONSOLE_F_MULTIPORT);
    if (!feat)
        return;
    virtio_multiport = (feat >> VIRTIO_CONSOLE_F_MULTIPORT) & 1;
    if (virtq_setup(&vq_rx, virtio_dev, 0, &vq_mem[0]) ||
        virtq_setup(&vq_tx, virtio_dev, 1, &vq_mem[1]))
        return;
    if (virtio_multiport && (virtq_setup(&vq_crx, virtio_dev, 2, &vq_mem[2]) ||
                             virtq_setup(&vq_ctx, virtio_dev, 3, &vq_mem[3])))
        return;
    virtio_driver_ok(virtio_dev);
    if (virtio_multiport)
        mirror = virtio_handshake();
    else
        mirror = 1;             /* without MULTIPORT, port 0 always exists */
}

/* ---- the prompt ---------------------------------------------------------------------- */

static int read_line(char *line)
{
    int n = 0;
    static int last_cr;
    for (;;) {
        int c = getc_wait();
        if (c == '\n' && last_cr) {         /* CR LF from a terminal: one line end */
            last_cr = 0;
            continue;
        }
        last_cr = c == '\r';
        if (c == '\r' || c == '\n') {
            out_str(con_putc, "\n");
            line[n] = 0;
            return n;
        }
        if (c == 0x7F || c == 0x08) {
            if (n > 0) {
                n--;
                out_str(con_putc, "\b \b");
            }
        } else if (c == 0x03) {
            out_str(con_putc, "^C\n");
            line[0] = 0;
            return 0;
        } else if (c >= 0x20 && c < 0x7F && n < LINE_MAX) {
            line[n++] = (char)c;
            con_putc((char)c);
        }
    }
}

static void run_command(const char *line)
{
    const char *rest;
    if (!*line)
        return;
    if (word_is(line, "help", &rest)) {
        out_str(con_putc, "commands: help, echo TEXT, info, exit [N]\n");
    } else if (word_is(line, "echo", &rest)) {
        out_str(con_putc, rest);
        out_str(con_putc, "\n");
    } else if (word_is(line, "info", &rest)) {
        print_info(con_putc);
        out_str(con_putc, "interrupts: ");
        out_dec(con_putc, irq_count);
        out_str(con_putc, "\n");
    } else if (word_is(line, "exit", &rest)) {
        u64 code = 0;
        const char *p = rest;
        while (*p >= '0' && *p <= '9' && code <= 0xFFFF)
            code = code * 10 + (u64)(*p++ - '0');
        if (*p || code > 0xFFFF) {
            out_str(con_putc, "exit: N must be a number from 0 to 65535\n");
            return;
        }
        out_str(con_putc, "halting, exit code ");
        out_dec(con_putc, code);
        out_str(con_putc, "\n");
        while (!(zs_read_reg(ZS_CTL(zs_base, 0), 1) & ZS_ALL_SNT))
            ;
        e2k_exit((int)code);
    } else {
        out_str(con_putc, "unknown command: ");
        out_str(con_putc, line);
        out_str(con_putc, " (try help)\n");
    }
}

int main(u64 hartid, u64 dtb, struct boot_info *bi)
{
    (void)hartid;
    (void)dtb;
    irq_disable();
    if (!boot_info_ok(bi))
        return 2;
    boot = bi;
    pci_bar = pci_find_am85c30(0);
    zs_base = pci_bar ? pci_bar : bi->serial_base;
    if (!zs_base)
        return 3;
    /* channel B first: its WR9 hardware reset also resets channel A, which must end up
     * with its receiver on for the prompt */
    zs_bios_init_channel(zs_base, 1);
    zs_bios_init_channel(zs_base, 0);
    virtio_mirror_init();

    out_str(log_putc, "E2K boot ROM (e2kchar demo)\n");
    print_info(log_putc);
    if (pci_bar != bi->serial_base)
        out_str(log_putc, "warning: boot_info and PCI disagree on the Am85C30 address\n");
    out_str(log_putc, "console: am85c30 channel A, type help\n");
    mirror_flush();

    /* Rx interrupt on all characters, master interrupt enable, PLIC source 3 */
    zs_write_reg(ZS_CTL(zs_base, 0), 1, ZS_INT_ALL_RX);
    zs_write_reg(ZS_CTL(zs_base, 0), 9, ZS_NV | ZS_MIE);
    plic_enable_source(IRQ_AM85C30);
    trap_install(trap_handler);

    static char line[LINE_MAX + 1];
    for (;;) {
        out_str(con_putc, "e2k> ");
        read_line(line);
        run_command(line);
    }
}
