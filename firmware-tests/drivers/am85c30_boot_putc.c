/* The 2023 MCST boot-console putc on both channels: RR1 is read, saved and written back into
 * WR1 around every character (the RR1->WR1 quirk), with the double RR0 poll and the
 * "reset Tx interrupt pending" command. The BIOS leaves WR9.MIE clear, so the chip must not
 * raise its interrupt whatever lands in WR1: the driver reports the PLIC pending bit.
 * Exit codes: 0 ok, 2 bad boot_info, 6 the Am85C30 interrupt is pending at the PLIC. */
#include "drv_util.h"
#include "drv_zs.h"

static u64 zs_base;

static void putc_a(char c) { zs_putc_2023(zs_base, 0, c); }
static void putc_b(char c) { zs_putc_2023(zs_base, 1, c); }

int main(u64 hartid, u64 dtb, struct boot_info *bi)
{
    (void)hartid;
    (void)dtb;
    if (!boot_info_ok(bi))
        return 2;
    zs_base = bi->serial_base;
    zs_bios_init_channel(zs_base, 0);
    zs_bios_init_channel(zs_base, 1);
    /* the decompressor prints a banner per channel; "dump_console=1" selects channel B */
    out_str(putc_a, "boot putc 2023 on channel A\r\n");
    out_str(putc_b, "boot putc 2023 on channel B\r\n");
    for (int i = 0; i < 3; i++) {
        out_str(putc_a, "A line ");
        out_dec(putc_a, (u64)i);
        out_str(putc_a, "\r\n");
    }
    u32 pending = rd32(PLIC_PENDING(IRQ_AM85C30)) & (1u << IRQ_AM85C30);
    out_str(putc_a, pending ? "irq pending\r\n" : "no irq\r\n");
    return pending ? 6 : 0;
}
