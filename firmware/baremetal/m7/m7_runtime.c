/* Instruction counter (SysTick) and stack high-water for the M7 harness. */
#include "m7_runtime.h"

#define REG(a) (*(volatile uint32_t *)(a))
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define SYST_MAX 0xFFFFFFu

extern uint32_t __stack_bottom[], __stack_top[];

void SysTick_Handler(void);

static uint32_t last_cvr;
static uint64_t total_ticks, counter_zero;

/* Extend the 24-bit down-counter in software: add the distance travelled
 * since the previous read, modulo the 2^24 period. The SysTick interrupt
 * reads once per period so no lap is missed. (Counting laps in the handler
 * and adding VAL was tried: near a lap qemu gave reads one lap too high.) */
static uint64_t ticks(void)
{
    uint32_t primask;
    __asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask) : : "memory");
    uint32_t v = SYST_CVR;
    total_ticks += (last_cvr - v) & SYST_MAX;
    last_cvr = v;
    uint64_t t = total_ticks;
    __asm__ volatile("msr primask, %0" : : "r"(primask) : "memory");
    return t;
}

void SysTick_Handler(void)
{
    (void)ticks();
}

void m7_counter_init(void)
{
    SYST_RVR = SYST_MAX;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* enable, interrupt, CPU clock (the 1 MHz refclk is too coarse) */
    last_cvr = SYST_CVR;
}

void m7_counter_start(void)
{
    counter_zero = ticks();
}

uint64_t m7_counter_instructions(void)
{
    return (ticks() - counter_zero) * M7_INSTR_PER_TICK;
}

size_t m7_stack_high_water(void)
{
    const uint32_t *p = __stack_bottom;
    while (p < __stack_top && *p == M7_STACK_PAINT)
        p++;
    return (size_t)((const char *)__stack_top - (const char *)p);
}

size_t m7_stack_size(void)
{
    return (size_t)((const char *)__stack_top - (const char *)__stack_bottom);
}

static uintptr_t stack_mark;

void m7_stack_mark(void)
{
    uint32_t *p = __stack_bottom, *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    /* this leaf function's frame is below the caller's: its sp is the mark */
    stack_mark = (uintptr_t)sp;
    while (p < sp - 4)
        *p++ = M7_STACK_PAINT;
}

size_t m7_stack_since_mark(void)
{
    const uint32_t *p = __stack_bottom;
    while ((uintptr_t)p < stack_mark && *p == M7_STACK_PAINT)
        p++;
    return (uintptr_t)p < stack_mark ? (size_t)(stack_mark - (uintptr_t)p) : 0u;
}
