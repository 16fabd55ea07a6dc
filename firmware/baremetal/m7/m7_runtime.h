/* Runtime services for C programs on the emulated Cortex-M7 (qemu mps2-an500). */
#ifndef M7_RUNTIME_H
#define M7_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

/* qemu -icount shift=0 retires one instruction per virtual ns and SysTick
 * (CPU clock source) runs at 25 MHz, so one tick is 40 instructions. */
#define M7_INSTR_PER_TICK 40u

/* Instruction counter: start() sets the zero point, instructions() returns
 * instructions retired since (resolution 40). The 24-bit SysTick laps every
 * ~671M instructions; its interrupt keeps count, so don't mask interrupts
 * (PRIMASK) for that long. */
void m7_counter_start(void);
uint64_t m7_counter_instructions(void);

/* Most bytes of the main stack used so far (stack is painted at reset). */
size_t m7_stack_high_water(void);
size_t m7_stack_size(void);

/* The stack one call uses: m7_stack_mark() repaints the free stack below the
 * caller; m7_stack_since_mark() then gives the most bytes used below the
 * caller's frame since (the call's own frames: its locals, spills, callees). */
void m7_stack_mark(void);
size_t m7_stack_since_mark(void);

/* Put a big zero-initialised static buffer in the 16 MB PSRAM instead of the
 * 4 MB RAM: static uint8_t buf[N] M7_PSRAM; */
#define M7_PSRAM __attribute__((section(".psram")))

/* Called by startup.c before main; not for applications. */
#define M7_STACK_PAINT 0xDEADBEEFu
void m7_counter_init(void);

#endif
