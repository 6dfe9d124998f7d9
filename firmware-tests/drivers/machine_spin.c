/* A guest that never exits (machine tests: run timeout, stop, pause). Counts loop rounds
 * in RAM at `spin_count` so the host can see it progress. */
#include "e2k.h"

volatile u64 spin_count;

int main(void)
{
    for (;;)
        spin_count++;
}
