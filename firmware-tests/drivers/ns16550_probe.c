/* NS16550A detection and polled output, replaying the probes real kernels run on COM1:
 * the Linux 8250 autoconfig (IER read-back test, MCR loopback -> MSR 0x90 test, EFR/FCR/IIR
 * identification as a 16550A, the 16750 and XScale checks, FIFO clear) and the Xen
 * existence probe, then the Linux-early-console init and putc (write, wait BOTH_EMPTY).
 * Also checks loopback data (a byte sent with MCR.LOOP is received locally, not sent).
 * Exit codes: 0 ok; 2 IER test, 3 loopback MSR test, 4 not a 16550A, 5 Xen probe,
 * 6 loopback data, 7 scratch register. */
#include "drv_util.h"
#include "drv_uart.h"

#define B COM1_BASE

static void putc_com1(char c) { uart_putc_early(B, c); }

static int linux_autoconfig(void)
{
    /* IER: writes of 0 and 0x0F must read back in the low nibble */
    u8 save_ier = uart_in(B, UART_IER);
    uart_out(B, UART_IER, 0);
    u8 s1 = uart_in(B, UART_IER);
    uart_out(B, UART_IER, 0x0F);
    u8 s2 = uart_in(B, UART_IER);
    uart_out(B, UART_IER, save_ier);
    if ((s1 & 0x0F) != 0 || (s2 & 0x0F) != 0x0F)
        return 2;
    /* loopback: OUT2 -> DCD, RTS -> CTS must show as MSR 0x90 */
    u8 save_mcr = uart_in(B, UART_MCR);
    uart_out(B, UART_MCR, UART_MCR_LOOP | 0x0A);
    u8 msr = uart_in(B, UART_MSR) & 0xF0;
    uart_out(B, UART_MCR, save_mcr);
    if (msr != 0x90)
        return 3;
    /* identification: EFR cleared in config mode B, FIFO on, IIR bits 7..6 */
    u8 save_lcr = uart_in(B, UART_LCR);
    uart_out(B, UART_LCR, UART_LCR_CONF_MODE_B);
    uart_out(B, UART_EFR, 0);
    uart_out(B, UART_LCR, 0);
    uart_out(B, UART_FCR, UART_FCR_ENABLE);
    u8 scratch = uart_in(B, UART_IIR) >> 6;
    if (scratch != 3) {
        uart_out(B, UART_LCR, save_lcr);
        return 4;
    }
    /* 16550A path: EFR visible with DLAB set? (a 16650 would read 0 here) */
    uart_out(B, UART_LCR, UART_LCR_CONF_MODE_A);
    (void)uart_in(B, UART_EFR);
    uart_out(B, UART_LCR, UART_LCR_CONF_MODE_B);
    (void)uart_in(B, UART_EFR);
    /* XScale UUE bit (IER bit 6) must not stick on a 16550A */
    uart_out(B, UART_LCR, 0);
    u8 ier = uart_in(B, UART_IER);
    uart_out(B, UART_IER, ier | 0x40);
    u8 uue = uart_in(B, UART_IER) & 0x40;
    uart_out(B, UART_IER, ier);
    /* 16750: 64-byte FIFO bit in IIR bit 5 must stay clear */
    uart_out(B, UART_FCR, UART_FCR_ENABLE | UART_FCR_64BYTE);
    u8 s750 = uart_in(B, UART_IIR) >> 5;
    uart_out(B, UART_FCR, UART_FCR_ENABLE);
    uart_out(B, UART_LCR, save_lcr);
    if (uue || s750 == 7)
        return 4;
    /* clear FIFOs, then read the status registers to drop anything pending */
    uart_out(B, UART_FCR, UART_FCR_ENABLE);
    uart_out(B, UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT);
    uart_out(B, UART_FCR, 0);
    (void)uart_in(B, UART_LSR);
    (void)uart_in(B, UART_RBR);
    (void)uart_in(B, UART_IIR);
    (void)uart_in(B, UART_MSR);
    return 0;
}

static int xen_check_existence(void)
{
    u8 scratch = uart_in(B, UART_IER);
    uart_out(B, UART_IER, 0);
    u8 s2 = uart_in(B, UART_IER) & 0x0F;
    uart_out(B, UART_IER, 0x0F);
    u8 s3 = uart_in(B, UART_IER) & 0x0F;
    uart_out(B, UART_IER, scratch);
    if (s2 != 0 || s3 != 0x0F)
        return 5;
    uart_out(B, UART_MCR, UART_MCR_LOOP | 0x0A);
    u8 status = uart_in(B, UART_MSR) & 0xF0;
    return status == 0x90 ? 0 : 5;
}

static int loopback_data(void)
{
    /* still in loopback from the Xen probe: a sent byte comes back, nothing reaches the host */
    uart_out(B, UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT);
    uart_out(B, UART_THR, 'Z');
    for (int i = 0; i < 100000; i++) {
        if (uart_in(B, UART_LSR) & UART_LSR_DR)
            return uart_in(B, UART_RBR) == 'Z' ? 0 : 6;
    }
    return 6;
}

int main(void)
{
    int rc = linux_autoconfig();
    if (rc)
        return rc;
    rc = xen_check_existence();
    if (rc)
        return rc;
    rc = loopback_data();
    if (rc)
        return rc;
    uart_out(B, UART_SCR, 0xA5);
    if (uart_in(B, UART_SCR) != 0xA5)
        return 7;
    /* Xen / Linux early init: 8N1, 115200 (divisor 1), DTR|RTS, no interrupts, FIFOs on */
    uart_out(B, UART_LCR, UART_LCR_WLEN8);
    uart_set_divisor(B, 1);
    uart_out(B, UART_MCR, UART_MCR_DTR | UART_MCR_RTS);
    uart_out(B, UART_IER, 0);
    uart_out(B, UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT |
             UART_FCR_TRIGGER_14);
    out_str(putc_com1, "ns16550: 16550A at 0x");
    out_hex(putc_com1, COM1_BASE, 9);
    out_str(putc_com1, " (linux autoconfig ok, xen probe ok, loopback ok)\n");
    return 0;
}
