#!/bin/sh
# Run a bare-metal ELF of firmware/baremetal under qemu with semihosting.
#   TARGET=m7|rv32 run-qemu.sh ELF [WORKDIR]      (TARGET default: m7)
# Semihosting fopen() paths are relative to WORKDIR (default: current dir).
# Exit status: the program's (0 ok, 1 exit(nonzero), a fault or a trap), 124
# on timeout (QEMU_TIMEOUT seconds, default 600). stdin is /dev/null so qemu
# never waits on a terminal.
set -eu
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: TARGET=m7|rv32 $0 ELF [WORKDIR]" >&2
    exit 2
fi
# -icount shift=0 on both: one instruction per virtual ns, which the M7's
# SysTick and the RV32's minstret count (m7/m7_runtime.h, rv32/rv32_runtime.h).
case "${TARGET:-m7}" in
m7) qemu="qemu-system-arm -machine mps2-an500" ;;
# -bios none: qemu jumps straight to the ELF's entry in RAM (0x80000000)
rv32) qemu="qemu-system-riscv32 -machine virt -cpu rv32 -m 128M -bios none" ;;
*) echo "TARGET=$TARGET: the targets are m7 and rv32" >&2; exit 2 ;;
esac
elf="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
cd "${2:-.}"
exec timeout "${QEMU_TIMEOUT:-600}" $qemu -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native \
    -icount shift=0 -kernel "$elf" </dev/null
