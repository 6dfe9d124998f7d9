/* Interrupt-driven Am85C30 echo, the l_zilog protocol: channel start-up in the driver's
 * register load order, WR9 = NV|MIE, then an interrupt handler (PLIC source 3) that reads
 * RR3 from channel A, services channel A then B (ext/status -> reset ext/status; Rx -> drain
 * reading RR1, data, RR0; Tx -> reset Tx IP and send the next byte), issues "reset highest
 * IUS" and loops while RR3 is non-zero. Tx is jump-started by writing the first byte when
 * RR0 reports the buffer empty. After start-up it prints "ready\n" (polled); then every
 * received byte is echoed; EOT (0x04) ends the run with
 * a summary line "rx=N irqs=M loops=K txints=T spurious=S" printed polled. When the echo
 * queue is full the driver throttles (Rx interrupt off, input stays in the chip) instead of
 * dropping; a handler pass is bounded to 1000 RR3 loops (flood protection).
 * ECHO_CH selects the channel (0 = A, 1 = B). EOT_EXITS=0 echoes EOT like any byte and never
 * ends the run (a loopback for pyserial's own tests, which send every byte value). Exit codes: 0 ok, 2 bad boot_info,
 * 7 unexpected trap. */
#include "drv_util.h"
#include "drv_zs.h"

#ifndef ECHO_CH
#define ECHO_CH 0
#endif
#ifndef EOT_EXITS
#define EOT_EXITS 1
#endif

static u64 zs_base;
static volatile int done;
static volatile int tx_active;
static volatile u64 rx_count, irq_count, loop_count, txint_count, ext_count, spurious;
static u8 txq[256];
static volatile u32 tx_head, tx_tail;
static volatile int rx_throttled;
static volatile u64 throttles, floods;

#define WR1_RUN (ZS_INT_ALL_RX | ZS_TX_INT_ENAB | ZS_EXT_INT_ENAB)
#define WR1_THROTTLED (ZS_TX_INT_ENAB | ZS_EXT_INT_ENAB)

static u32 txq_free(void) { return (u32)sizeof(txq) - (tx_head - tx_tail); }

static void tx_kick(u64 base, int ch)
{
    if (tx_active || tx_head == tx_tail)
        return;
    if (!(rd8(ZS_CTL(base, ch)) & ZS_TX_BUF_EMP))
        return;
    tx_active = 1;
    wr8(ZS_DATA(base, ch), txq[tx_tail++ % sizeof(txq)]);
}

static void service_channel(int ch, u8 ip)  /* ip: bit0 ext, bit1 tx, bit2 rx */
{
    u64 c = ZS_CTL(zs_base, ch), d = ZS_DATA(zs_base, ch);
    if (ip & 4) {
        for (int i = 0; i < 3; i++) {           /* the 85C30 Rx FIFO is 3 deep */
            if (txq_free() == 0) {
                /* tty-style throttle: leave input in the chip (the host side waits
                 * for FIFO room) and turn the Rx interrupt off until Tx catches up */
                zs_write_reg(c, 1, WR1_THROTTLED);
                rx_throttled = 1;
                throttles++;
                break;
            }
            u8 r1 = zs_read_reg(c, 1);
            u8 byte = rd8(d);
            if (r1 & (ZS_PAR_ERR | ZS_RX_OVR | ZS_CRC_ERR))
                wr8(c, ZS_ERR_RES);
            rx_count++;
            if (EOT_EXITS && byte == 0x04)
                done = 1;
            else
                txq[tx_head++ % sizeof(txq)] = byte;
            if (!(rd8(c) & ZS_RX_CH_AV))
                break;
        }
        tx_kick(zs_base, ch);
    }
    if (ip & 2) {
        txint_count++;
        wr8(c, ZS_RES_TX_P);
        if (tx_head != tx_tail)
            wr8(d, txq[tx_tail++ % sizeof(txq)]);
        else
            tx_active = 0;
        if (rx_throttled && txq_free() >= sizeof(txq) / 2) {
            rx_throttled = 0;
            zs_write_reg(c, 1, WR1_RUN);
        }
    }
    if (ip & 1) {
        ext_count++;
        (void)rd8(c);
        wr8(c, ZS_RES_EXT_INT);
    }
}

static void zs_interrupt(void)
{
    u64 ca = ZS_CTL(zs_base, 0);
    u8 rr3;
    int guard = 0;
    while ((rr3 = zs_read_reg(ca, 3)) != 0) {
        loop_count++;
        if (rr3 & (ZS_CHA_EXT_IP | ZS_CHA_TX_IP | ZS_CHA_RX_IP))
            service_channel(0, rr3 >> 3);
        if (rr3 & (ZS_CHB_EXT_IP | ZS_CHB_TX_IP | ZS_CHB_RX_IP))
            service_channel(1, rr3 & 7);
        wr8(ca, ZS_RES_H_IUS);
        if (++guard > 1000) {
            /* flood protection: leave the handler; the level-triggered line brings us
             * back, so other work (and other sources) get a turn */
            floods++;
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
        if (src == IRQ_AM85C30) {
            irq_count++;
            zs_interrupt();
        } else {
            spurious++;
        }
        plic_complete(src);
    }
}

static void putc_polled(char c) { zs_putc_polled(zs_base, ECHO_CH, c); }

int main(u64 hartid, u64 dtb, struct boot_info *bi)
{
    (void)hartid;
    (void)dtb;
    if (!boot_info_ok(bi))
        return 2;
    zs_base = bi->serial_base;
    irq_disable();
    zs_lzilog_startup(zs_base, 0, 0);
    zs_lzilog_startup(zs_base, 1, 0);
    out_str(putc_polled, "ready\n");
    zs_write_reg(ZS_CTL(zs_base, ECHO_CH), 1, WR1_RUN);
    zs_write_reg(ZS_CTL(zs_base, 0), 9, ZS_NV | ZS_MIE);
    plic_enable_source(IRQ_AM85C30);
    trap_install(trap_handler);
    while (!done || tx_active || tx_head != tx_tail)
        idle_once();
    /* quiesce: interrupts off at the chip, then a polled summary */
    zs_write_reg(ZS_CTL(zs_base, ECHO_CH), 1, 0);
    zs_write_reg(ZS_CTL(zs_base, 0), 9, 0);
    out_str(putc_polled, "\nrx=");
    out_dec(putc_polled, rx_count);
    out_str(putc_polled, " irqs=");
    out_dec(putc_polled, irq_count);
    out_str(putc_polled, " loops=");
    out_dec(putc_polled, loop_count);
    out_str(putc_polled, " txints=");
    out_dec(putc_polled, txint_count);
    out_str(putc_polled, " spurious=");
    out_dec(putc_polled, spurious);
    out_str(putc_polled, "\n");
    return 0;
}
