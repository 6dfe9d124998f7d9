/* Am85C30 MCST-BIOS-style bring-up and polled output on both channels.
 *
 * Finds the chip twice, as the E2K boot chain does: through boot_info->serial_base and
 * through PCI config space (00:02.2, 0x1FFF:0x8019, BAR1), checks that both agree, runs the
 * BIOS register sequence on both channels and prints with the older-kernel polled putc.
 * Exit codes: 0 ok, 2 bad boot_info, 3 no PCI device, 4 addresses differ, 5 bad BAR size. */
#include "drv_util.h"
#include "drv_zs.h"

static u64 zs_base;

static void putc_a(char c) { zs_putc_polled(zs_base, 0, c); }
static void putc_b(char c) { zs_putc_polled(zs_base, 1, c); }

int main(u64 hartid, u64 dtb, struct boot_info *bi)
{
    (void)hartid;
    (void)dtb;
    if (!boot_info_ok(bi))
        return 2;
    u32 size = 0;
    u64 bar = pci_find_am85c30(&size);
    if (!bar)
        return 3;
    if (bar != bi->serial_base)
        return 4;
    if (size < 4)
        return 5;
    zs_base = bar;
    /* BIOS order: the whole sequence on channel A, then on channel B (WR9 is shared). */
    zs_bios_init_channel(zs_base, 0);
    zs_bios_init_channel(zs_base, 1);

    out_str(putc_a, "am85c30: boot_info serial_base 0x");
    out_hex(putc_a, bi->serial_base, 8);
    out_str(putc_a, ", pci 00:02.2 1fff:8019 class 0x");
    out_hex(putc_a, pci_class_of_am85c30(), 6);
    out_str(putc_a, " bar1 0x");
    out_hex(putc_a, bar, 8);
    out_str(putc_a, " size 0x");
    out_hex(putc_a, size, 4);
    out_str(putc_a, "\nchannel A: polled output ok\n");
    out_str(putc_b, "channel B: polled output ok\n");
    /* wait for all-sent on both channels before leaving, as a BIOS does before handing over */
    while (!(zs_read_reg(ZS_CTL(zs_base, 0), 1) & ZS_ALL_SNT))
        ;
    while (!(zs_read_reg(ZS_CTL(zs_base, 1), 1) & ZS_ALL_SNT))
        ;
    return 0;
}
