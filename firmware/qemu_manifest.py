# Frozen into the qemu firmware (`make qemu` passes it as FROZEN_MANIFEST): the
# device side of `tinytrain stream` (docs/streaming.md). Paths are relative to
# this file. (The qemu port's own default manifest freezes only its test
# modules, which tinytrain does not need.)
module("tinytrain_stream.py", base_path="../micropython_modules/tinytrain/python")
# /flash: the FAT RAM disk that qemu_flash.c mounts at boot (docs/micropython.md).
module("qemu_flash.py")
