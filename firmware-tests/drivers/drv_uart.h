/* NS16550A register helpers (stride 1, COM1 on the E2K I/O-port window or QEMU virt). */
#ifndef DRV_UART_H
#define DRV_UART_H
#include "e2k.h"

#define UART_RBR 0
#define UART_THR 0
#define UART_DLL 0
#define UART_IER 1
#define UART_DLM 1
#define UART_IIR 2
#define UART_FCR 2
#define UART_EFR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define UART_IER_RDI  0x01
#define UART_IER_THRI 0x02
#define UART_IER_RLSI 0x04
#define UART_IER_MSI  0x08

#define UART_LSR_DR   0x01
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_LSR_BOTH_EMPTY (UART_LSR_THRE | UART_LSR_TEMT)

#define UART_MCR_DTR  0x01
#define UART_MCR_RTS  0x02
#define UART_MCR_OUT2 0x08
#define UART_MCR_LOOP 0x10

#define UART_LCR_DLAB 0x80
#define UART_LCR_WLEN8 0x03
#define UART_LCR_CONF_MODE_A 0x80
#define UART_LCR_CONF_MODE_B 0xBF

#define UART_FCR_ENABLE 0x01
#define UART_FCR_CLEAR_RCVR 0x02
#define UART_FCR_CLEAR_XMIT 0x04
#define UART_FCR_64BYTE 0x20
#define UART_FCR_TRIGGER_14 0xC0

static inline u8 uart_in(u64 base, int reg) { return rd8(base + reg); }
static inline void uart_out(u64 base, int reg, u8 v) { wr8(base + reg, v); }

/* Program 8N1 at baudbase / divisor. */
static inline void uart_set_divisor(u64 base, u16 div)
{
    u8 lcr = uart_in(base, UART_LCR);
    uart_out(base, UART_LCR, lcr | UART_LCR_DLAB);
    uart_out(base, UART_DLL, (u8)div);
    uart_out(base, UART_DLM, (u8)(div >> 8));
    uart_out(base, UART_LCR, lcr & (u8)~UART_LCR_DLAB);
}

/* Linux early console: write, then wait until both THR and shift register are empty. */
static inline void uart_putc_early(u64 base, char c)
{
    uart_out(base, UART_THR, (u8)c);
    while ((uart_in(base, UART_LSR) & UART_LSR_BOTH_EMPTY) != UART_LSR_BOTH_EMPTY)
        ;
}

#endif
