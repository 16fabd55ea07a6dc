#!/bin/sh
# Run a bare-metal ELF on qemu's Cortex-M7 (mps2-an500) with semihosting.
#   run-qemu.sh ELF [WORKDIR]
# Semihosting fopen() paths are relative to WORKDIR (default: current dir).
# Exit status: the program's (0 ok, 1 exit(nonzero) or fault), 124 on timeout
# (QEMU_TIMEOUT seconds, default 600). stdin is /dev/null so qemu never
# waits on a terminal.
set -eu
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 ELF [WORKDIR]" >&2
    exit 2
fi
elf="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
cd "${2:-.}"
# -icount shift=0: one instruction per virtual ns (see m7_runtime.h).
exec timeout "${QEMU_TIMEOUT:-600}" qemu-system-arm \
    -machine mps2-an500 -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native \
    -icount shift=0 -kernel "$elf" </dev/null
