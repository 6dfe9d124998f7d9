/* Hotswap stream: prints numbered lines "line NNNNNN\n" forever (until the host stops the
 * machine), so a test can swap the console backend mid-stream and check that no line is
 * lost or doubled. STREAM_DEV: 0 = Am85C30 channel A (default), 1 = COM1 16550.
 * STREAM_LINES > 0 stops after that many lines (exit 0). */
#include "drv_util.h"
#include "drv_zs.h"
#include "drv_uart.h"

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

static void putc_dev(char c)
{
#if STREAM_DEV == 1
    while (!(uart_in(COM1_BASE, UART_LSR) & UART_LSR_THRE))
        ;
    uart_out(COM1_BASE, UART_THR, (u8)c);
#else
    zs_putc_polled(zs_base, 0, c);
#endif
}

int main(u64 hartid, u64 dtb, struct boot_info *bi)
{
    (void)hartid;
    (void)dtb;
#if STREAM_DEV == 0
    if (!boot_info_ok(bi))
        return 2;
    zs_base = bi->serial_base;
    zs_bios_init_channel(zs_base, 0);
#else
    (void)bi;
#endif
    for (u64 n = 0; STREAM_LINES == 0 || n < (u64)STREAM_LINES; n++) {
        out_str(putc_dev, "line ");
        out_dec_w(putc_dev, n % 1000000, 6);
        putc_dev('\n');
    }
    return 0;
}
