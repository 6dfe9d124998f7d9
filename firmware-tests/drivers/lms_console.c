/* LMS simulator console output: probe with a 32-bit read of port 0x300 (0xFFFFFFFF means no
 * console), then per character spin while a 32-bit read of 0x300 is non-zero (busy), write
 * the byte and strobe with a 0 byte, as the E2K kernels and BIOS do.
 * Exit codes: 0 ok, 2 no LMS console present. */
#include "drv_util.h"

#define LMS_DATA   (LMS_BASE + 0)
#define LMS_STATUS (LMS_BASE + 1)

static u64 busy_polls;

static void lms_putc(char c)
{
    while (rd32(LMS_DATA) != 0)
        busy_polls++;
    wr8(LMS_DATA, (u8)c);
    wr8(LMS_DATA, 0);
}

int main(void)
{
    if (rd32(LMS_DATA) == 0xFFFFFFFFu)
        return 2;
    out_str(lms_putc, "LMS console: hello from the simulator port\n");
    out_str(lms_putc, "second line\n");
    return 0;
}
