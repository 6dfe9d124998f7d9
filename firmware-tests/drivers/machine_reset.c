/* Guest-requested reset (machine tests): prints a line on COM1, then writes 0x7777 to
 * the exit device. */
#include "e2k.h"

int main(void)
{
    const char *s = "boot\n";
    while (*s) {
        while (!(rd8(COM1_BASE + 5) & 0x20))
            ;
        wr8(COM1_BASE, (u8)*s++);
    }
    wr32(EXIT_BASE, 0x7777);
    for (;;)
        wfi();
}
