/*
 * empty: exits immediately through the test finisher. The benchmark runner uses
 * it to measure QEMU's own start-up and shutdown time.
 */
#define BENCH_NO_CHECK
#include "bench.h"

int main(void)
{
    return 0;
}
