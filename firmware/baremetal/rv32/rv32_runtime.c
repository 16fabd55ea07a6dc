/* Instruction counter (minstret) and stack high-water for the RV32 harness. */
#include "rv32_runtime.h"

/* picolibc.ld: the stack is the top __stack_size bytes of RAM, ending at
 * __stack; the heap ends where the stack begins. */
extern char __stack[], __heap_end[];

static uint64_t counter_zero;

/* minstret/minstreth read as a consistent 64-bit pair (re-read on carry). */
static uint64_t instret(void)
{
    uint32_t hi, lo, hi2;
    do {
        __asm__ volatile("csrr %0, minstreth" : "=r"(hi));
        __asm__ volatile("csrr %0, minstret" : "=r"(lo));
        __asm__ volatile("csrr %0, minstreth" : "=r"(hi2));
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
}

void rv32_counter_start(void)
{
    counter_zero = instret();
}

uint64_t rv32_counter_instructions(void)
{
    return instret() - counter_zero;
}

/* Runs from picolibc's crt0 before main: paint the stack below the current
 * frame (less a margin for this function's own frame). */
__attribute__((constructor)) static void paint_stack(void)
{
    uint32_t *p = (uint32_t *)(void *)__heap_end;
    char *sp = (char *)__builtin_frame_address(0) - 256;
    while ((char *)p < sp) {
        *p++ = RV32_STACK_PAINT;
    }
}

size_t rv32_stack_high_water(void)
{
    const uint32_t *p = (const uint32_t *)(const void *)__heap_end;
    while ((const char *)p < __stack && *p == RV32_STACK_PAINT) {
        p++;
    }
    return (size_t)(__stack - (const char *)p);
}

size_t rv32_stack_size(void)
{
    return (size_t)(__stack - __heap_end);
}

static uintptr_t stack_mark;

/* The stack one call uses, as on the M7: repaint the free stack below the
 * caller (this function's own frame included) and remember where it starts. */
__attribute__((noinline)) void rv32_stack_mark(void)
{
    uint32_t *p = (uint32_t *)(void *)__heap_end;
    uint32_t *sp = (uint32_t *)__builtin_frame_address(0);
    stack_mark = (uintptr_t)sp;
    while (p < sp - 16) {
        *p++ = RV32_STACK_PAINT;
    }
}

size_t rv32_stack_since_mark(void)
{
    const uint32_t *p = (const uint32_t *)(const void *)__heap_end;
    while ((uintptr_t)p < stack_mark && *p == RV32_STACK_PAINT) {
        p++;
    }
    return (uintptr_t)p < stack_mark ? (size_t)(stack_mark - (uintptr_t)p) : 0u;
}
