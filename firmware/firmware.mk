# MicroPython builds (need MICROPY_DIR: a MicroPython v1.28.0 checkout with submodules).
