/* The few libc symbols compilers emit calls to, even in freestanding code. */
#include "e2k.h"

void *memset(void *d, int c, size_t n) { return e2k_memset(d, c, n); }
void *memcpy(void *d, const void *s, size_t n) { return e2k_memcpy(d, s, n); }
void *memmove(void *d, const void *s, size_t n)
{
    u8 *p = d;
    const u8 *q = s;
    if (p < q) {
        while (n--) *p++ = *q++;
    } else {
        p += n;
        q += n;
        while (n--) *--p = *--q;
    }
    return d;
}
int memcmp(const void *a, const void *b, size_t n)
{
    const u8 *p = a, *q = b;
    for (; n; n--, p++, q++)
        if (*p != *q)
            return *p - *q;
    return 0;
}
size_t strlen(const char *s) { return e2k_strlen(s); }

/* start.S hands main's return value here */
void __attribute__((noreturn)) _e2k_exit(int code) { e2k_exit(code); }
