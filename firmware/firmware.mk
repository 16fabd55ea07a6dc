# MicroPython targets of tinytrain (included by the top-level Makefile).
#
# They build MicroPython v1.28.0 from a checkout given as MICROPY_DIR (see
# docs/micropython.md); nothing of MicroPython lives in this project. Every
# output goes under build/.
#
#   make firmware [BOARD=TINYTRAIN_F746DISC]  STM32F746 Discovery firmware + memory report
#   make flash [FLASH_TOOL=stlink|dfu]         write it to the board
#   make qemu                                  the qemu Cortex-M7 (MPS2_AN500) firmware
#   make qemu-pty                              run it on a pty (for mpremote)
#   make qemu-rv32                             the qemu RISC-V (VIRT_RV32) firmware
#   make qemu-rv32-pty                         run it on a pty (for mpremote)
#   make unix                                  the unix port with tinytrain
#   make natmod ARCH=armv7emsp|x64|rv32imc|... tinytrain.mpy, a dynamic native module
#                [TT_OPTIMIZED=0|lean]          (without the optimised kernels: smaller; lean: without
#                                                the depthwise and stem ones)
#   make natmod-all                            every architecture whose compiler is here
#   make stock STOCK=unix|unix32|MPS2_AN500|MPS2_AN385|VIRT_RV32 [STOCK_FS=1]  MicroPython without tinytrain
#                                               (what `tinytrain install` is tested against)
#   make test-device                           tests/device on the unix port and on qemu
#
# MICROPY_DIR defaults to ../shared/micropython when that folder exists.
#
# Options: MICROPY_TINYTRAIN_ARENA_SIZE (static arena bytes, default 196608),
# QEMU_HEAP_SIZE (qemu GC heap, default the heap the F746 build leaves),
# QEMU_FLASH_SIZE (qemu's /flash, a FAT RAM disk, default 98304 as the F746's),
# QEMU_EXTRA (more qemu arguments, e.g. -icount shift=0).

TT_FW_DIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
TT_ROOT := $(patsubst %/,%,$(dir $(TT_FW_DIR)))
TT_BUILD := $(TT_ROOT)/build
TT_USER_C ?= $(TT_ROOT)/micropython_modules
TT_PY ?= python3

# The MicroPython tree: MICROPY_DIR, else ../shared/micropython beside the
# repository when that folder exists (tests/micropython_tree.py: the same rule
# for pytest run directly).
TT_DEFAULT_MICROPY_DIR := $(abspath $(TT_ROOT)/../shared/micropython)
ifeq ($(strip $(MICROPY_DIR)),)
override MICROPY_DIR := $(if $(wildcard $(TT_DEFAULT_MICROPY_DIR)/.),$(TT_DEFAULT_MICROPY_DIR))
endif
BOARD ?= TINYTRAIN_F746DISC
ARCH ?= armv7emsp
FLASH_TOOL ?= stlink
# 192 KiB: what the F746 board gives (boards/TINYTRAIN_F746DISC/README.md), so
# that every published scheme of the paper's three models fits.
MICROPY_TINYTRAIN_ARENA_SIZE ?= 196608
# The F746 build with the default arena leaves 70 KiB of GC heap in SRAM
# (make firmware prints it); qemu gets no more than that.
QEMU_HEAP_SIZE ?= 65536
# qemu's /flash: a FAT filesystem of this many bytes (a multiple of 512, 32 KiB
# to 4 MiB) on a RAM disk in the MPS2-AN500's second SSRAM bank, which the
# firmware does not otherwise use: like the F746's 96 KiB FAT in flash, it
# takes nothing from the GC heap or the arena (micropython_modules/tinytrain/qemu_flash.c).
QEMU_FLASH_SIZE ?= 98304
QEMU_EXTRA ?=

TT_MP_GOALS := firmware flash qemu qemu-pty qemu-rv32 qemu-rv32-pty unix natmod natmod-all stock test-device mpy-cross
ifneq ($(filter $(TT_MP_GOALS),$(MAKECMDGOALS)),)
ifeq ($(strip $(MICROPY_DIR)),)
$(error set MICROPY_DIR to a MicroPython v1.28.0 checkout with its submodules, or put one at ../shared/micropython (see docs/micropython.md))
endif
ifeq ($(wildcard $(MICROPY_DIR)/py/mkenv.mk),)
$(error MICROPY_DIR=$(MICROPY_DIR) is not a MicroPython source tree (no py/mkenv.mk); see docs/micropython.md)
endif
endif
TT_MP := $(abspath $(MICROPY_DIR))

TT_MPY_CROSS := $(TT_BUILD)/mpy-cross/mpy-cross
TT_STM32_BUILD := $(TT_BUILD)/stm32-$(BOARD)
# (another heap or /flash size builds into its own folder)
TT_QEMU_BUILD := $(TT_BUILD)/qemu-MPS2_AN500$(if $(filter-out 65536,$(QEMU_HEAP_SIZE)),-heap$(QEMU_HEAP_SIZE))$(if $(filter-out 98304,$(QEMU_FLASH_SIZE)),-flash$(QEMU_FLASH_SIZE))
TT_UNIX_BUILD := $(TT_BUILD)/unix
TT_QEMU_RV32_BUILD := $(TT_BUILD)/qemu-VIRT_RV32$(if $(filter-out 65536,$(QEMU_HEAP_SIZE)),-heap$(QEMU_HEAP_SIZE))
TT_OPTIMIZED ?= 1
TT_NATMOD_SUFFIX := $(if $(filter 0,$(TT_OPTIMIZED)),-small,$(if $(filter lean,$(TT_OPTIMIZED)),-lean))
TT_NATMOD_BUILD := $(TT_BUILD)/natmod-$(ARCH)$(TT_NATMOD_SUFFIX)
TT_BOARD_DIR := $(TT_ROOT)/boards/$(BOARD)

# Settings common to every port build: our module, our mpy-cross, our arena.
TT_PORT_ARGS := USER_C_MODULES=$(TT_USER_C) MICROPY_MPYCROSS=$(TT_MPY_CROSS) \
	MICROPY_MPYCROSS_DEPENDENCY= \
	MICROPY_TINYTRAIN_ARENA_SIZE=$(MICROPY_TINYTRAIN_ARENA_SIZE)

TT_STM32_ARGS := BOARD_DIR=$(TT_BOARD_DIR) BUILD=$(TT_STM32_BUILD) $(TT_PORT_ARGS)
# qemu freezes tinytrain_stream and qemu_flash (firmware/qemu_manifest.py) instead of
# the port's test modules, and gets FAT for its /flash.
TT_QEMU_ARGS := BOARD=MPS2_AN500 BUILD=$(TT_QEMU_BUILD) MICROPY_HEAP_SIZE=$(QEMU_HEAP_SIZE) \
	FROZEN_MANIFEST=$(TT_FW_DIR)/qemu_manifest.py MICROPY_VFS_FAT=1 \
	TINYTRAIN_QEMU_FLASH_SIZE=$(QEMU_FLASH_SIZE) $(TT_PORT_ARGS)
TT_UNIX_ARGS := BUILD=$(TT_UNIX_BUILD) MICROPY_PY_BTREE=0 MICROPY_PY_SSL=0 MICROPY_PY_FFI=0 \
	$(TT_PORT_ARGS)

# VIRT_RV32 (rv32imac, the ESP32-C3/C6 class): compiled as the port does
# (-march=rv32imac_zicsr), linked against gcc's rv32imac/ilp32 multilib, since
# gcc 12's table has no _zicsr entry and would pick the rv64 libgcc.
TT_QEMU_RV32_ARGS := BOARD=VIRT_RV32 BUILD=$(TT_QEMU_RV32_BUILD) MICROPY_HEAP_SIZE=$(QEMU_HEAP_SIZE) \
	FROZEN_MANIFEST=$(TT_FW_DIR)/qemu_rv32_manifest.py LIBS="-march=rv32imac -mabi=ilp32" $(TT_PORT_ARGS)
TT_QEMU_RV32_CMD := qemu-system-riscv32 -machine virt -bios none -nographic -monitor null -semihosting \
	$(QEMU_EXTRA) -serial pty -kernel $(TT_QEMU_RV32_BUILD)/firmware.elf

# How qemu runs the MPS2_AN500 firmware (as ports/qemu does for `make run`).
TT_QEMU_CMD := qemu-system-arm -machine mps2-an500 -nographic -monitor null -semihosting \
	$(QEMU_EXTRA) -serial pty -kernel $(TT_QEMU_BUILD)/firmware.elf

.PHONY: $(TT_MP_GOALS)

# mpy-cross, built into build/ (the ports need it for their frozen modules).
mpy-cross: $(TT_MPY_CROSS)
$(TT_MPY_CROSS):
	$(MAKE) -C $(TT_MP)/mpy-cross BUILD=$(TT_BUILD)/mpy-cross

# ---------------------------------------------------------------------------
# STM32F746 Discovery: build, then check that it fits and say by how much.
#
# Flash (1024 KiB): sector 0 (32K) vector table, sectors 1-3 (96K) the FAT
# filesystem, firmware text from 0x08020000, and the last 256K sector a ROMFS
# partition for model files (TINYTRAIN_ROMFS_* in the board's mpconfigboard.h).
# SRAM (320 KiB): DTCM's first 32K (filesystem cache), then 288K (DTCM's last
# 32K + SRAM1 + SRAM2) = .data + .bss (MicroPython + arena) + GC heap + 16K stack.
TT_FLASH_TEXT_START := 0x08020000
TT_ROMFS_START := 0x080C0000
TT_MIN_HEAP ?= 49152

firmware: $(TT_MPY_CROSS)
	$(MAKE) -C $(TT_MP)/ports/stm32 $(TT_STM32_ARGS)
	@$(MAKE) --no-print-directory firmware-report

.PHONY: firmware-report
firmware-report:
	@elf=$(TT_STM32_BUILD)/firmware.elf; \
	sym() { v=$$(arm-none-eabi-nm $$elf | awk -v s="$$1" '$$3 == s { print $$1 }'); echo $$((0x$$v)); }; \
	sec() { arm-none-eabi-size -A $$elf | awk -v s="$$1" '$$1 == s { v = $$2 } END { print v + 0 }'; }; \
	isr=$$(( $$(sec .isr_vector) + $$(sec .isr_extratext) )); \
	text=$$(( $$(sec .text) + $$(sec .data) + $$(sec .ARM) + $$(sec .gc.blocks.table) )); \
	fs=$$(( 96 * 1024 )); romfs=$$(( 256 * 1024 )); \
	text_room=$$(( $(TT_ROMFS_START) - $(TT_FLASH_TEXT_START) )); \
	arena=$$(( 0x$$(arm-none-eabi-nm -S $$elf | awk '$$4 == "tinytrain_arena" { print $$2 }') )); \
	heap=$$(( $$(sym _heap_end) - $$(sym _heap_start) )); \
	stack=$$(( $$(sym _estack) - $$(sym _sstack) )); \
	ram=$$(( $$(sym _estack) - $$(sym _ram_start) )); \
	mp=$$(( $$(sym _heap_start) - $$(sym _ram_start) - arena )); \
	cache=$$(( $$(sym _micropy_hw_internal_flash_storage_ram_cache_end) - $$(sym _micropy_hw_internal_flash_storage_ram_cache_start) )); \
	k() { awk -v n="$$1" 'BEGIN { printf "%7.1f KiB", n / 1024 }'; }; \
	echo "== $(BOARD): flash (1024 KiB) =="; \
	echo "  sector 0, vectors          $$(k $$isr) of $$(k 32768)"; \
	echo "  filesystem (FAT, sect 1-3) $$(k $$fs)"; \
	echo "  firmware text + .data init $$(k $$text) of $$(k $$text_room) (0x08020000-0x080BFFFF)"; \
	echo "  ROMFS for model files      $$(k $$romfs) (0x080C0000-0x080FFFFF)"; \
	echo "  free for the firmware      $$(k $$(( text_room - text )))"; \
	echo "== $(BOARD): SRAM (320 KiB) =="; \
	echo "  DTCM: filesystem cache     $$(k $$cache)"; \
	echo "  MicroPython static data    $$(k $$mp) (vector table copy, .data, .bss)"; \
	echo "  tinytrain arena (.bss)     $$(k $$arena)"; \
	echo "  GC heap                    $$(k $$heap)"; \
	echo "  stack                      $$(k $$stack)"; \
	echo "  total RAM (DTCM+SRAM1+2)   $$(k $$(( mp + arena + heap + stack ))) of $$(k $$ram) (+8 bytes reserved)"; \
	fail=; \
	[ $$isr -le 32768 ] || fail="$$fail vectors overflow sector 0;"; \
	[ $$text -le $$text_room ] || fail="$$fail firmware overlaps the ROMFS partition;"; \
	[ $$(( mp + arena + heap + stack )) -le $$ram ] || fail="$$fail RAM overcommitted;"; \
	[ $$heap -ge $(TT_MIN_HEAP) ] || fail="$$fail GC heap below $(TT_MIN_HEAP) bytes (lower MICROPY_TINYTRAIN_ARENA_SIZE);"; \
	if [ -n "$$fail" ]; then echo "DOES NOT FIT:$$fail" >&2; exit 1; fi; \
	echo "fits: $(TT_STM32_BUILD)/firmware.{elf,hex,dfu}"

# Write the firmware with the port's own deploy rules: ST-LINK (st-flash
# --connect-under-reset: firmware0.bin at 0x08000000, firmware1.bin at
# 0x08020000; the filesystem sectors in between and the ROMFS sector are left
# alone) or the STM32 system DFU bootloader on USB FS/CN13 (dfu-util -a 0 -D
# firmware.dfu; enter it with machine.bootloader() from the REPL).
flash: firmware
ifeq ($(FLASH_TOOL),dfu)
	$(MAKE) -C $(TT_MP)/ports/stm32 $(TT_STM32_ARGS) USE_PYDFU=0 deploy
else
	$(MAKE) -C $(TT_MP)/ports/stm32 $(TT_STM32_ARGS) deploy-stlink
endif

# ---------------------------------------------------------------------------
# qemu Cortex-M7 (MPS2_AN500), GC heap capped at what the F746 leaves.
# MicroPython's make does not track -D flags: a build folder made before its
# objects had FAT and the /flash boot hook (no stamp) is rebuilt from scratch.
TT_QEMU_STAMP := $(TT_QEMU_BUILD)/tinytrain-vfs-fat-flash.stamp
qemu: $(TT_MPY_CROSS)
	@if [ -d $(TT_QEMU_BUILD) ] && [ ! -e $(TT_QEMU_STAMP) ]; then \
	  echo "$(TT_QEMU_BUILD) was built without /flash: rebuilding it"; rm -rf $(TT_QEMU_BUILD); fi
	$(MAKE) -C $(TT_MP)/ports/qemu $(TT_QEMU_ARGS)
	@touch $(TT_QEMU_STAMP)

# Run it with the REPL on a pseudo-terminal; connect with mpremote.
qemu-pty: qemu
	@echo "starting $(TT_QEMU_CMD)"
	@$(TT_QEMU_CMD) 2>&1 | while IFS= read -r line; do \
	  echo "$$line"; \
	  case "$$line" in *"/dev/pts/"*) pts=$$(echo "$$line" | grep -o '/dev/pts/[0-9]*'); \
	    echo "REPL on $$pts: mpremote connect $$pts   (Ctrl-C here stops qemu)";; esac; \
	done

# ---------------------------------------------------------------------------
# qemu RISC-V (VIRT_RV32), GC heap capped as for the M7.
qemu-rv32: $(TT_MPY_CROSS)
	$(MAKE) -C $(TT_MP)/ports/qemu $(TT_QEMU_RV32_ARGS)

qemu-rv32-pty: qemu-rv32
	@echo "starting $(TT_QEMU_RV32_CMD)"
	@$(TT_QEMU_RV32_CMD) 2>&1 | while IFS= read -r line; do \
	  echo "$$line"; \
	  case "$$line" in *"/dev/pts/"*) pts=$$(echo "$$line" | grep -o '/dev/pts/[0-9]*'); \
	    echo "REPL on $$pts: mpremote connect $$pts   (Ctrl-C here stops qemu)";; esac; \
	done

# ---------------------------------------------------------------------------
# Stock MicroPython, no tinytrain inside: build/stock-$(STOCK)/ (firmware.elf,
# or micropython for unix; unix32: the unix port as a 32-bit x86 program, the
# x86 .mpy's host, which needs gcc-multilib).
# STOCK_FS=1 (qemu boards): the same with a FAT /flash of STOCK_FS_SIZE bytes
# (default 1 MiB; /flash/lib on sys.path, as the STM32 port has it) on a RAM
# disk outside the firmware's memory, which qemu_flash.c mounts at boot and
# nothing else: a board with a filesystem whose firmware lacks tinytrain, for
# `tinytrain install`, `mpremote mip install` and streamed sessions.
# build/stock-fs-$(STOCK)/.
STOCK ?= unix
STOCK_FS ?= 0
STOCK_FS_SIZE ?= 1048576
TT_STOCK_BUILD := $(TT_BUILD)/stock-$(if $(filter 1,$(STOCK_FS)),fs-)$(STOCK)
# the RAM disk: the MPS2 boards' second SSRAM bank (4 MiB at 0x20000000), or
# VIRT_RV32's RAM 8 MiB past the firmware's start (its image, data and stack
# end below 0x80610000; qemu's virt machine has 128 MiB)
TT_STOCK_FS_ADDR := $(if $(filter VIRT_RV32,$(STOCK)),0x80800000,0x20000000)
TT_STOCK_FS_ARGS := USER_C_MODULES=$(TT_USER_C) TINYTRAIN_MODULE=0 MICROPY_VFS_FAT=1 \
	TINYTRAIN_QEMU_FLASH_SIZE=$(STOCK_FS_SIZE) TINYTRAIN_QEMU_FLASH_ADDR=$(TT_STOCK_FS_ADDR) \
	FROZEN_MANIFEST=$(TT_FW_DIR)/stock_fs_manifest.py
stock: $(TT_MPY_CROSS)
ifneq ($(filter unix unix32,$(STOCK)),)
	$(MAKE) -C $(TT_MP)/ports/unix BUILD=$(TT_STOCK_BUILD) $(if $(filter unix32,$(STOCK)),MICROPY_FORCE_32BIT=1) \
	  MICROPY_PY_BTREE=0 MICROPY_PY_SSL=0 MICROPY_PY_FFI=0 MICROPY_MPYCROSS=$(TT_MPY_CROSS) MICROPY_MPYCROSS_DEPENDENCY=
else
	$(MAKE) -C $(TT_MP)/ports/qemu BOARD=$(STOCK) BUILD=$(TT_STOCK_BUILD) MICROPY_MPYCROSS=$(TT_MPY_CROSS) \
	  MICROPY_MPYCROSS_DEPENDENCY= $(if $(filter VIRT_RV32,$(STOCK)),LIBS="-march=rv32imac -mabi=ilp32") \
	  $(if $(filter 1,$(STOCK_FS)),$(TT_STOCK_FS_ARGS))
endif

# ---------------------------------------------------------------------------
# unix port (no btree, ssl, ffi: nothing beyond lib/micropython-lib is needed).
unix: $(TT_MPY_CROSS)
	$(MAKE) -C $(TT_MP)/ports/unix $(TT_UNIX_ARGS)

# ---------------------------------------------------------------------------
# Dynamic native module: build/natmod-$(ARCH)/tinytrain.mpy.
natmod: $(TT_MPY_CROSS)
	@$(TT_PY) -c "import elftools, ar" 2>/dev/null || { echo "natmod needs the Python packages pyelftools and ar: pip install pyelftools ar" >&2; exit 1; }
	@mkdir -p $(TT_NATMOD_BUILD)
	@ln -sf $(TT_USER_C)/tinytrain/natmod/Makefile $(TT_NATMOD_BUILD)/Makefile
	$(MAKE) -C $(TT_NATMOD_BUILD) MPY_DIR=$(TT_MP) ARCH=$(ARCH) BUILD=$(TT_NATMOD_BUILD) TT_OPTIMIZED=$(TT_OPTIMIZED) MPY_CROSS=$(TT_MPY_CROSS)

# Every MicroPython native architecture, each with the compiler it needs;
# one line for each that cannot be built here and why.
TT_NATMOD_ARCHS := x64:gcc x86:gcc armv6m:arm-none-eabi-gcc armv7m:arm-none-eabi-gcc \
	armv7emsp:arm-none-eabi-gcc armv7emdp:arm-none-eabi-gcc rv32imc:riscv64-unknown-elf-gcc \
	xtensawin:xtensa-esp32-elf-gcc
natmod-all:
	@for pair in $(TT_NATMOD_ARCHS); do a=$${pair%%:*}; cc=$${pair#*:}; \
	  if ! command -v $$cc >/dev/null; then \
	    case $$a in xtensawin) echo "natmod $$a: skipped, needs Espressif's $$cc (ESP-IDF's toolchain, see docs/micropython.md)";; \
	    *) echo "natmod $$a: skipped, needs $$cc";; esac; continue; fi; \
	  if [ $$a = x86 ] && ! gcc -m32 -print-file-name=crtbegin.o | grep -q /32/; then \
	    echo "natmod $$a: skipped, needs gcc-multilib (32-bit libgcc)"; continue; fi; \
	  out=$$($(MAKE) --no-print-directory natmod ARCH=$$a TT_OPTIMIZED=$(TT_OPTIMIZED) 2>&1) || \
	    { echo "$$out" | tail -n 20; echo "natmod $$a: FAILED" >&2; exit 1; }; \
	  echo "natmod $$a: $$(wc -c < $(TT_BUILD)/natmod-$$a$(TT_NATMOD_SUFFIX)/tinytrain.mpy) bytes"; \
	done

# ---------------------------------------------------------------------------
test-device: unix qemu
	cd $(TT_ROOT) && MICROPY_DIR=$(TT_MP) $(TT_PY) -m pytest -q -ra tests/device

# ---------------------------------------------------------------------------
# ESP32 boards (stock MicroPython + the .mpy; docs/micropython.md, "ESP32").
# No MICROPY_DIR needed: FIRMWARE is the .bin from
# https://micropython.org/download/ESP32_GENERIC_C3/ (or _C6, ESP32_GENERIC,
# ESP32_GENERIC_S3), written with esptool (pip install "tinytrain[device]").
#   make esp32-flash PORT=/dev/ttyUSB0 CHIP=esp32c3 FIRMWARE=ESP32_GENERIC_C3-...-v1.28.0.bin
#   make esp32-install PORT=/dev/ttyUSB0     (= tinytrain install --target PORT)
CHIP ?= esp32c3
PORT ?=
# Where the image starts: after the 4 KiB reserved block on the ESP32 and
# ESP32-S2, at 0 on the C3, C6, S3 and H2.
TT_ESP_ADDR = $(if $(filter esp32 esp32s2,$(CHIP)),0x1000,0x0)
.PHONY: esp32-flash esp32-install
esp32-flash:
	@[ -n "$(PORT)" ] && [ -f "$(FIRMWARE)" ] || { echo "usage: make esp32-flash PORT=/dev/ttyUSB0 CHIP=esp32c3|esp32c6|esp32|esp32s3 FIRMWARE=file.bin (from micropython.org/download)" >&2; exit 2; }
	$(TT_PY) -m esptool --chip $(CHIP) --port $(PORT) erase_flash
	$(TT_PY) -m esptool --chip $(CHIP) --port $(PORT) --baud 460800 write_flash $(TT_ESP_ADDR) $(FIRMWARE)
esp32-install:
	@[ -n "$(PORT)" ] || { echo "usage: make esp32-install PORT=/dev/ttyUSB0" >&2; exit 2; }
	tinytrain install --target $(PORT)
