/* Harness self-test (run by tests/test_baremetal_harness.py): semihosted file
 * I/O, CRC32, bit-exact float32, instruction counter, stack high-water, heap.
 * Reads selftest_in.bin (absent, as on a fresh checkout's `make m7-selftest`:
 * a built-in 4096-byte pattern), writes selftest_out.bin as little-endian uint32:
 *   magic "TTST", nbytes, crc32, float bits, calib loop instructions
 *   (expected, counted), stack high-water bytes, heap ok.
 * -DSELFTEST_FAULT=1/2/3 crashes instead (divide by zero / bus error /
 * stack overflow) to check that faults are reported and qemu exits 1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "m7_runtime.h"

#define MAX_IN 65536u
#define CALIB_ITERS 350000000u /* 700M instructions: spans a SysTick lap */

static uint8_t data[MAX_IN];

static uint32_t crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

/* Each step rounds to float32 in this exact order (-ffp-contract=off keeps
 * mul+add from fusing); the test repeats it with numpy.float32. */
static float float_mix(const uint8_t *b, size_t n)
{
    float acc = 0.0f, w = 0.5f;
    for (size_t i = 0; i < n; i++) {
        float x = (float)((int)b[i] - 128) * 0.0078125f;
        w = w * 0.99951171875f + x * 0.03125f;
        acc = acc + w * x / (1.0f + x * x);
    }
    return acc;
}

#ifdef SELFTEST_FAULT
volatile int fault_num = 7, fault_zero = 0; /* both volatile: gcc folds 1/x */
volatile int fault_depth = 1 << 30;

static int recurse(int n)
{
    volatile uint8_t pad[200];
    pad[0] = (uint8_t)n;
    if (n < fault_depth)
        return recurse(n + 1) + pad[0];
    return pad[0];
}

static void fault(void)
{
    if (SELFTEST_FAULT == 1)
        printf("%d\n", fault_num / fault_zero);
    else if (SELFTEST_FAULT == 2)
        printf("%u\n", (unsigned)*(volatile uint32_t *)0x30000000u); /* unmapped */
    else
        printf("%d\n", recurse(0));
}
#endif

int main(void)
{
    printf("selftest: start\n");
#ifdef SELFTEST_FAULT
    fault();
    printf("selftest: fault did not trap\n");
    return 3;
#endif

    FILE *f = fopen("selftest_in.bin", "rb");
    size_t n = 0, got;
    if (f) {
        while (n < MAX_IN && (got = fread(data + n, 1, 1000 < MAX_IN - n ? 1000 : MAX_IN - n, f)) > 0)
            n += got;
        fclose(f);
    } else {
        uint32_t x = 1u;
        for (n = 0; n < 4096u; n++) {
            x = x * 1103515245u + 12345u;
            data[n] = (uint8_t)(x >> 24);
        }
        printf("selftest: no selftest_in.bin, using a built-in %u-byte pattern\n", (unsigned)n);
    }

    uint32_t crc = crc32(data, n);
    float mix = float_mix(data, n);
    uint32_t mix_bits;
    memcpy(&mix_bits, &mix, sizeof mix_bits);

    /* 2 instructions per iteration (subs, bne); check with objdump. */
    uint32_t iters = CALIB_ITERS;
    m7_counter_start();
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(iters) : : "cc");
    uint64_t counted = m7_counter_instructions();
    uint32_t expected = 2u * CALIB_ITERS;

    /* Heap is PSRAM; touch the whole block. */
    uint32_t heap_ok = 0;
    uint8_t *h = malloc(1u << 20);
    if (h && (uintptr_t)h >= 0x60000000u) {
        memset(h, 0x5A, 1u << 20);
        heap_ok = h[0] == 0x5A && h[(1u << 20) - 1] == 0x5A;
    }
    free(h);

    uint32_t hw = (uint32_t)m7_stack_high_water();
    printf("selftest: %u bytes crc32=0x%08lx float=0x%08lx\n", (unsigned)n, (unsigned long)crc,
           (unsigned long)mix_bits);
    printf("selftest: calib loop %lu instructions, counted %lu (ratio %lu ppm)\n",
           (unsigned long)expected, (unsigned long)counted,
           (unsigned long)(counted * 1000000u / expected));
    printf("selftest: stack high-water %lu of %lu bytes, heap %s\n", (unsigned long)hw,
           (unsigned long)m7_stack_size(), heap_ok ? "ok" : "FAILED");

    uint32_t out[8] = {0x54535454u, (uint32_t)n, crc, mix_bits, expected, (uint32_t)counted, hw,
                       heap_ok};
    f = fopen("selftest_out.bin", "wb");
    if (!f || fwrite(out, sizeof out, 1, f) != 1 || fclose(f) != 0) {
        printf("selftest: cannot write selftest_out.bin\n");
        return 2;
    }
    /* the counter's resolution is 40 instructions: allow two ticks */
    if (!heap_ok || counted + 80u < expected || counted > expected + 80u) {
        printf("selftest: FAILED\n");
        return 1;
    }
    printf("selftest: ok\n");
    return 0;
}
