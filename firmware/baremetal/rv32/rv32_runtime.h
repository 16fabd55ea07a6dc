/* Runtime services for C programs on the emulated RV32 core
 * (qemu-system-riscv32 -machine virt, picolibc with semihosting). */
#ifndef RV32_RUNTIME_H
#define RV32_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

/* Instruction counter: start() sets the zero point, instructions() returns
 * instructions retired since. It reads the minstret CSR, which qemu derives
 * from its instruction count under -icount (exact, resolution 1); without
 * -icount qemu returns host time there, so run-qemu.sh always passes it. */
void rv32_counter_start(void);
uint64_t rv32_counter_instructions(void);

/* Most bytes of the stack used so far (the unused part is painted before
 * main) and the stack's size. */
size_t rv32_stack_high_water(void);
size_t rv32_stack_size(void);

/* The stack one call uses: rv32_stack_mark() repaints the free stack below the
 * caller; rv32_stack_since_mark() then gives the most bytes used below it. */
void rv32_stack_mark(void);
size_t rv32_stack_since_mark(void);

#define RV32_STACK_PAINT 0xDEADBEEFu

#endif
