# Frozen into the qemu RV32 firmware (`make qemu-rv32` passes it as
# FROZEN_MANIFEST): the device side of `tinytrain stream` (docs/streaming.md).
# Paths are relative to this file. (No /flash here: qemu_flash is the
# MPS2-AN500's RAM disk.)
module("tinytrain_stream.py", base_path="../micropython_modules/tinytrain/python")
