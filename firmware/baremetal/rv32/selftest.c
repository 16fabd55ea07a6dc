/* Harness self-test (run by tests/test_baremetal_harness.py): the instruction
 * counter, the stack high-water mark, semihosted files and float32 rounding
 * on the soft-float RV32 core. Prints
 *   calib N: C instructions      (a loop of exactly 2N+1 instructions)
 *   float bits 0xXXXXXXXX         (float_mix of selftest_in.bin)
 *   stack high-water B bytes
 * -DSELFTEST_FAULT=1/2 traps instead (illegal instruction / load from an
 * unmapped address) to check that traps are reported and qemu exits 1. */
#include <stdint.h>
#include <stdio.h>
#include "rv32_runtime.h"

/* The loop is written out so the compiler cannot change its length:
 * li + N x (addi, bnez). */
static uint64_t count_loop(uint32_t n)
{
    uint64_t c;
    rv32_counter_start();
    __asm__ volatile("mv t0, %0\n1:\taddi t0, t0, -1\n\tbnez t0, 1b" : : "r"(n) : "t0");
    c = rv32_counter_instructions();
    return c;
}

/* The same rounding sequence as the M7 selftest; the test repeats it with
 * numpy.float32. */
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

static uint32_t deep(uint32_t n)
{
    volatile uint8_t pad[256];
    pad[0] = (uint8_t)n;
    return n ? deep(n - 1) + pad[0] : pad[0];
}

#ifdef SELFTEST_FAULT
volatile uint32_t fault_address = 0x4u; /* below the boot ROM: nothing mapped */
#endif

int main(void)
{
    static uint8_t data[65536];
    const uint32_t ns[] = {1000u, 100000u, 10000000u};
    FILE *f;
    size_t n = 0;
    float r;
    uint32_t bits;
#ifdef SELFTEST_FAULT
    if (SELFTEST_FAULT == 1) {
        __asm__ volatile(".word 0x00000000"); /* illegal instruction */
    } else {
        volatile uint32_t *unmapped = (volatile uint32_t *)(uintptr_t)fault_address;
        printf("%u\n", (unsigned)*unmapped);
    }
    printf("no trap\n");
    return 0;
#endif
    for (unsigned i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        printf("calib %lu: %llu instructions\n", (unsigned long)ns[i], (unsigned long long)count_loop(ns[i]));
    }
    f = fopen("selftest_in.bin", "rb");
    if (!f) {
        printf("cannot read selftest_in.bin\n");
        return 1;
    }
    n = fread(data, 1, sizeof data, f);
    fclose(f);
    r = float_mix(data, n);
    __builtin_memcpy(&bits, &r, 4);
    printf("read %lu bytes\n", (unsigned long)n);
    printf("float bits 0x%08lx\n", (unsigned long)bits);
    printf("deep %lu\n", (unsigned long)deep(40));
    printf("stack high-water %lu bytes of %lu\n", (unsigned long)rv32_stack_high_water(),
           (unsigned long)rv32_stack_size());
    return 0;
}
