# Frozen into the stock qemu firmwares with a filesystem (`make stock STOCK_FS=1`):
# only the /flash mount that qemu_flash.c calls at boot (docs/micropython.md).
module("qemu_flash.py")
