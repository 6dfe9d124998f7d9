/* Interrupt-driven 16550 echo through the interrupt controller (COM1 = PLIC source 4 on the
 * E2K map). Linux-style: IER = RDI|RLSI, the handler loops on IIR until "no interrupt",
 * drains RBR while LSR.DR, and transmits from a queue on THRI (up to the 16-byte FIFO),
 * turning THRI on when there is something to send (a 16550A re-arms the THRE interrupt
 * when THRI is enabled while THRE is set) and off when the queue is empty.
 * It prints "ready\n" (polled) before enabling interrupts. EOT (0x04) ends the run with a
 * summary "rx=N irqs=M thri=T spurious=S".
 * When the echo queue is full the driver throttles (RDI off) instead of dropping input.
 * FCR_VALUE sets the FIFO control (default: FIFOs on, trigger 1 byte).
 * EOT_EXITS=0 echoes EOT like any byte and never ends the run (a loopback for pyserial's
 * own tests, which send every byte value).
 * MODEM_LOOP=1 also loops the modem lines back as a loopback plug does: the modem status
 * interrupt is on and every change of CTS or DSR is mirrored on RTS and DTR (so a client at
 * the far end of a null-modem line sees its own RTS on its CTS and its DTR on its DSR).
 * Exit codes: 0 ok, 7 unexpected trap. */
#include "drv_util.h"
#include "drv_uart.h"

#define B COM1_BASE
#ifndef EOT_EXITS
#define EOT_EXITS 1
#endif
#ifndef MODEM_LOOP
#define MODEM_LOOP 0
#endif
#define UART_MSR_CTS 0x10
#define UART_MSR_DSR 0x20
#ifndef FCR_VALUE
#define FCR_VALUE (UART_FCR_ENABLE | UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT)
#endif

static volatile int done;
static volatile u64 rx_count, irq_count, thri_count, lsr_count, msr_count, spurious;
static u8 txq[256];
static volatile u32 tx_head, tx_tail;
static volatile u8 ier_shadow;
static volatile u64 throttles;

static u32 txq_free(void) { return (u32)sizeof(txq) - (tx_head - tx_tail); }

static void set_ier(u8 v)
{
    ier_shadow = v;
    uart_out(B, UART_IER, v);
}

static void mirror_modem_lines(void)
{
    u8 msr = uart_in(B, UART_MSR);
    uart_out(B, UART_MCR, (u8)(UART_MCR_OUT2 | (msr & UART_MSR_CTS ? UART_MCR_RTS : 0)
                                             | (msr & UART_MSR_DSR ? UART_MCR_DTR : 0)));
}

static void uart_interrupt(void)
{
    u8 iir;
    int guard = 0;
    while (!((iir = uart_in(B, UART_IIR)) & 0x01) && ++guard <= 1000) {
        switch (iir & 0x0E) {
        case 0x06:                              /* receiver line status */
            lsr_count++;
            (void)uart_in(B, UART_LSR);
            break;
        case 0x04:                              /* Rx data */
        case 0x0C:                              /* character timeout */
            while (uart_in(B, UART_LSR) & UART_LSR_DR) {
                if (txq_free() == 0) {
                    /* throttle: Rx interrupts off, input waits in the FIFO (and the host
                     * side waits for FIFO room) until the echo queue drains */
                    set_ier(ier_shadow & (u8)~UART_IER_RDI);
                    throttles++;
                    break;
                }
                u8 c = uart_in(B, UART_RBR);
                rx_count++;
                if (EOT_EXITS && c == 0x04)
                    done = 1;
                else
                    txq[tx_head++ % sizeof(txq)] = c;
            }
            if (tx_head != tx_tail && !(ier_shadow & UART_IER_THRI))
                set_ier(ier_shadow | UART_IER_THRI);
            break;
        case 0x02:                              /* THR empty */
            thri_count++;
            for (int n = 0; n < 16 && tx_head != tx_tail; n++)
                uart_out(B, UART_THR, txq[tx_tail++ % sizeof(txq)]);
            if (tx_head == tx_tail)
                set_ier(ier_shadow & (u8)~UART_IER_THRI);
            if (!(ier_shadow & UART_IER_RDI) && txq_free() >= sizeof(txq) / 2)
                set_ier(ier_shadow | UART_IER_RDI);
            break;
        default:                                /* modem status */
            msr_count++;
            if (MODEM_LOOP)
                mirror_modem_lines();
            else
                (void)uart_in(B, UART_MSR);
            break;
        }
    }
}

__attribute__((interrupt("machine"), aligned(4))) static void trap_handler(void)
{
    u64 cause = csr_read(mcause);
    if (!mcause_is_external(cause))
        e2k_exit(7);
    u32 src;
    while ((src = plic_claim()) != 0) {
        if (src == IRQ_COM1) {
            irq_count++;
            uart_interrupt();
        } else {
            spurious++;
        }
        plic_complete(src);
    }
}

static void putc_polled(char c) { uart_putc_early(B, c); }

int main(void)
{
    irq_disable();
    uart_out(B, UART_IER, 0);
    uart_out(B, UART_LCR, UART_LCR_WLEN8);
    uart_set_divisor(B, 1);
    uart_out(B, UART_FCR, FCR_VALUE);
    (void)uart_in(B, UART_LSR);
    (void)uart_in(B, UART_RBR);
    (void)uart_in(B, UART_IIR);
    (void)uart_in(B, UART_MSR);
    uart_out(B, UART_MCR, UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT2);
    out_str(putc_polled, "ready\n");
    plic_enable_source(IRQ_COM1);
    trap_install(trap_handler);
    set_ier(UART_IER_RDI | UART_IER_RLSI | (MODEM_LOOP ? UART_IER_MSI : 0));
    if (MODEM_LOOP)
        mirror_modem_lines();
    while (!done || tx_head != tx_tail)
        idle_once();
    set_ier(0);
    while ((uart_in(B, UART_LSR) & UART_LSR_BOTH_EMPTY) != UART_LSR_BOTH_EMPTY)
        ;
    out_str(putc_polled, "\nrx=");
    out_dec(putc_polled, rx_count);
    out_str(putc_polled, " irqs=");
    out_dec(putc_polled, irq_count);
    out_str(putc_polled, " thri=");
    out_dec(putc_polled, thri_count);
    out_str(putc_polled, " spurious=");
    out_dec(putc_polled, spurious);
    out_str(putc_polled, "\n");
    return 0;
}
