/* Polled 16550 output: wait for THRE, write THR (what OpenSBI / U-Boot consoles do). */
#include "e2k.h"

#define LSR 5
#define LSR_THRE 0x20

static void putc16550(char c)
{
    while (!(rd8(COM1_BASE + LSR) & LSR_THRE))
        ;
    wr8(COM1_BASE, (u8)c);
}

int main(void)
{
    const char *s = "hello from the e2k machine\n";
    while (*s)
        putc16550(*s++);
    return 0;
}
