/* Hotswap stream: prints numbered lines "line NNNNNN\n" forever (until the host stops the
 * machine), so a test can swap the console backend mid-stream and check that no line is
 * lost or doubled. STREAM_DEV: 0 = Am85C30 channel A (default), 1 = COM1 16550 (polled),
 * 2 = virtio-console port 0 (one buffer per line, waiting for each completion), 3 = the LMS
 * console (32-bit busy poll, byte, strobe).
 * STREAM_LINES > 0 stops after that many lines (exit 0). */
#include "drv_util.h"
#include "drv_zs.h"
#include "drv_uart.h"
#include "drv_virtio.h"

#ifndef STREAM_DEV
#ifdef MAP_VIRT
#define STREAM_DEV 1
#else
#define STREAM_DEV 0
#endif
#endif
#ifndef STREAM_LINES
#define STREAM_LINES 0
#endif

static u64 zs_base;
static char line[16];
static int line_len;

#if STREAM_DEV == 2
static struct virtq_mem vq_mem[2] __attribute__((aligned(4096)));
static struct virtq vq_rx, vq_tx;

static int stream_init(struct boot_info *bi)
{
#ifdef MAP_VIRT
    (void)bi;
    u64 dev = virtio_find(VIRTIO_BASE, 8, VIRTIO_ID_CONSOLE);
#else
    u64 dev = virtio_find(bi->virtio_base, bi->virtio_slots, VIRTIO_ID_CONSOLE);
#endif
    if (!dev || !virtio_init_features(dev, 0))
        return 2;
    if (virtq_setup(&vq_rx, dev, 0, &vq_mem[0]) || virtq_setup(&vq_tx, dev, 1, &vq_mem[1]))
        return 3;
    virtio_driver_ok(dev);
    return 0;
}

static void emit_line(void) { virtq_send(&vq_tx, line, (u32)line_len, virtio_spin, 0); }
#else
static int stream_init(struct boot_info *bi)
{
#if STREAM_DEV == 0
    if (!boot_info_ok(bi))
        return 2;
    zs_base = bi->serial_base;
    zs_bios_init_channel(zs_base, 0);
#else
    (void)bi;
#endif
    return 0;
}

static void emit_line(void)
{
    for (int i = 0; i < line_len; i++) {
#if STREAM_DEV == 1
        while (!(uart_in(COM1_BASE, UART_LSR) & UART_LSR_THRE))
            ;
        uart_out(COM1_BASE, UART_THR, (u8)line[i]);
#elif STREAM_DEV == 3
        while (rd32(LMS_BASE) != 0)
            ;
        wr8(LMS_BASE, (u8)line[i]);
        wr8(LMS_BASE, 0);
#else
        zs_putc_polled(zs_base, 0, line[i]);
#endif
    }
}
#endif

static void lput(char c) { line[line_len++] = c; }

int main(u64 hartid, u64 dtb, struct boot_info *bi)
{
    (void)hartid;
    (void)dtb;
    int rc = stream_init(bi);
    if (rc)
        return rc;
    for (u64 n = 0; STREAM_LINES == 0 || n < (u64)STREAM_LINES; n++) {
        line_len = 0;
        out_str(lput, "line ");
        out_dec_w(lput, n % 1000000, 6);
        lput('\n');
        emit_line();
    }
    return 0;
}
