/* Am85C30 (Z85C30-compatible) access helpers in MCST order: channel A control at +0, data
 * +1, channel B control +2, data +3. Replays the access sequences documented in
 * e2k-serial-hardware.md 1.2 (BIOS init, boot putc, l_zilog protocol); our own code. */
#ifndef DRV_ZS_H
#define DRV_ZS_H
#include "e2k.h"

#define ZS_CTL(base, ch) ((base) + 2 * (u64)(ch))
#define ZS_DATA(base, ch) ((base) + 2 * (u64)(ch) + 1)

/* WR0 commands (bits 5..3) */
#define ZS_RES_EXT_INT   0x10
#define ZS_RES_RX_INT_FC 0x20   /* enable int on next Rx char */
#define ZS_RES_TX_P      0x28
#define ZS_ERR_RES       0x30
#define ZS_RES_H_IUS     0x38

/* RR0 */
#define ZS_RX_CH_AV  0x01
#define ZS_TX_BUF_EMP 0x04
#define ZS_DCD       0x08
#define ZS_CTS       0x20
#define ZS_BRK_ABRT  0x80
/* RR1 */
#define ZS_ALL_SNT   0x01
#define ZS_PAR_ERR   0x10
#define ZS_RX_OVR    0x20
#define ZS_CRC_ERR   0x40
/* RR3 (channel A only) */
#define ZS_CHB_EXT_IP 0x01
#define ZS_CHB_TX_IP  0x02
#define ZS_CHB_RX_IP  0x04
#define ZS_CHA_EXT_IP 0x08
#define ZS_CHA_TX_IP  0x10
#define ZS_CHA_RX_IP  0x20
/* WR1 */
#define ZS_EXT_INT_ENAB 0x01
#define ZS_TX_INT_ENAB  0x02
#define ZS_PAR_SPEC     0x04
#define ZS_INT_ALL_RX   0x10
/* WR9 */
#define ZS_NV     0x02
#define ZS_MIE    0x08
#define ZS_CHRB   0x40
#define ZS_CHRA   0x80
#define ZS_FHWRES 0xC0

/* Register write: point, then write (register numbers 8..15 encode "point high"). */
static inline void zs_write_reg(u64 ctl, u8 reg, u8 val)
{
    wr8(ctl, reg);
    wr8(ctl, val);
}

/* read_zsreg idiom: only point when the register is not 0. */
static inline u8 zs_read_reg(u64 ctl, u8 reg)
{
    if (reg)
        wr8(ctl, reg);
    return rd8(ctl);
}

/* Boot-console idiom: always point, even for register 0. */
static inline u8 zs_read_reg_always(u64 ctl, u8 reg)
{
    wr8(ctl, reg);
    return rd8(ctl);
}

/* MCST BIOS initialisation of one channel (polled, interrupts off), in the BIOS order. */
static inline void zs_bios_init_channel(u64 base, int ch)
{
    u64 c = ZS_CTL(base, ch);
    zs_write_reg(c, 9, ZS_FHWRES);
    zs_write_reg(c, 1, 0x00);
    zs_write_reg(c, 4, 0x44);   /* x16 clock, 1 stop bit, no parity */
    zs_write_reg(c, 7, 0x80);   /* MCST xN mode enable */
    zs_write_reg(c, 6, 0x15);   /* xN multiplier */
    zs_write_reg(c, 3, 0xC0);   /* 8 bits, Rx off */
    zs_write_reg(c, 5, 0x60);   /* 8 bits, Tx off */
    zs_write_reg(c, 10, 0x00);  /* NRZ */
    zs_write_reg(c, 11, 0x50);  /* Tx and Rx clock = BRG */
    zs_write_reg(c, 12, 0x1E);
    zs_write_reg(c, 13, 0x00);
    zs_write_reg(c, 14, 0x00);
    zs_write_reg(c, 3, 0xC1);   /* Rx on */
    zs_write_reg(c, 5, 0x68);   /* Tx on */
}

/* Older-kernel boot putc: poll RR0 Tx empty, write the data port. */
static inline void zs_putc_polled(u64 base, int ch, char c)
{
    while (!(rd8(ZS_CTL(base, ch)) & ZS_TX_BUF_EMP))
        ;
    wr8(ZS_DATA(base, ch), (u8)c);
}

static inline int zs_getc_polled(u64 base, int ch)
{
    while (!(rd8(ZS_CTL(base, ch)) & ZS_RX_CH_AV))
        ;
    return rd8(ZS_DATA(base, ch));
}

/* 2023 kernel boot console / decompressor putc: read RR1, save it, write WR1 with the
 * Ext/Tx/Rx interrupt enables cleared, poll Tx empty, write, poll again, reset Tx IP, then
 * write the saved RR1 value back into WR1 (the quirk the model must survive). */
static inline void zs_putc_2023(u64 base, int ch, char c)
{
    u64 ctl = ZS_CTL(base, ch);
    u8 saved = zs_read_reg_always(ctl, 1);
    zs_write_reg(ctl, 1, saved & (u8)~(ZS_EXT_INT_ENAB | ZS_TX_INT_ENAB | 0x18));
    while (!(zs_read_reg_always(ctl, 0) & ZS_TX_BUF_EMP))
        ;
    wr8(ZS_DATA(base, ch), (u8)c);
    while (!(zs_read_reg_always(ctl, 0) & ZS_TX_BUF_EMP))
        ;
    wr8(ctl, ZS_RES_TX_P);
    zs_write_reg(ctl, 1, saved);
}

/* l_zilog-style channel start-up for interrupt-driven use; wr1 = the interrupt enables. */
static inline void zs_lzilog_startup(u64 base, int ch, u8 wr1)
{
    u64 c = ZS_CTL(base, ch);
    zs_write_reg(c, 9, ch == 0 ? ZS_CHRA : ZS_CHRB);   /* channel reset */
    zs_write_reg(c, 9, 0);
    wr8(c, ZS_ERR_RES);
    wr8(c, ZS_RES_H_IUS);
    wr8(c, ZS_RES_H_IUS);
    zs_write_reg(c, 1, 0);          /* R1 with interrupts off */
    zs_write_reg(c, 4, 0x44);
    zs_write_reg(c, 10, 0);
    zs_write_reg(c, 3, 0xC0);       /* without Rx enable */
    zs_write_reg(c, 5, 0x60);       /* without Tx enable */
    zs_write_reg(c, 15, 0x01);      /* WR7' access on */
    zs_write_reg(c, 7, 0x20);       /* WR7' */
    zs_write_reg(c, 15, 0x00);      /* and off again */
    zs_write_reg(c, 6, 0x15);
    zs_write_reg(c, 7, 0x80);
    zs_write_reg(c, 14, 0x00);      /* without BRG enable */
    zs_write_reg(c, 11, 0x50);
    zs_write_reg(c, 12, 0x1E);
    zs_write_reg(c, 13, 0x00);
    zs_write_reg(c, 14, 0x01);      /* BRG on */
    wr8(c, ZS_RES_EXT_INT);
    wr8(c, ZS_RES_EXT_INT);
    zs_write_reg(c, 3, 0xC1);
    zs_write_reg(c, 5, 0xEA);       /* DTR, 8 bits, Tx on, RTS */
    zs_write_reg(c, 1, wr1);
}

#endif
