#!/bin/sh
# Run a bare-metal ELF on qemu's RV32 core (-machine virt) with semihosting.
#   run-qemu.sh ELF [WORKDIR]
# Semihosting fopen() paths are relative to WORKDIR (default: current dir).
# Exit status: the program's (0 ok, 1 exit(nonzero) or trap), 124 on timeout
# (QEMU_TIMEOUT seconds, default 600). stdin is /dev/null so qemu never
# waits on a terminal.
set -eu
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 ELF [WORKDIR]" >&2
    exit 2
fi
elf="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
cd "${2:-.}"
# -icount shift=0: minstret counts retired instructions (see rv32_runtime.h).
# -bios none: qemu jumps straight to the ELF's entry in RAM (0x80000000).
exec timeout "${QEMU_TIMEOUT:-600}" qemu-system-riscv32 \
    -machine virt -cpu rv32 -m 128M -bios none -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native \
    -icount shift=0 -kernel "$elf" </dev/null
