# tinytrain as a MicroPython user C module (make-based ports: stm32, qemu, unix).
#   make USER_C_MODULES=<project>/micropython_modules [MICROPY_TINYTRAIN_ARENA_SIZE=bytes]
TINYTRAIN_MOD_DIR := $(USERMOD_DIR)

# Size of the static training arena (.bss). 160 KiB fits the STM32F746 next
# to MicroPython (see boards/TINYTRAIN_F746DISC/README.md).
MICROPY_TINYTRAIN_ARENA_SIZE ?= 163840

# TINYTRAIN_MODULE=0 leaves the module out and keeps only the qemu /flash below:
# `make stock STOCK_FS=1`, stock MicroPython with a filesystem.
TINYTRAIN_MODULE ?= 1

# The qemu firmware's /flash, a FAT RAM disk mounted at boot (qemu_flash.c):
# only when firmware/firmware.mk passes TINYTRAIN_QEMU_FLASH_SIZE (and
# MICROPY_VFS_FAT=1). The header sets the FAT options and the boot hook.
ifneq ($(TINYTRAIN_QEMU_FLASH_SIZE),)
SRC_USERMOD_C += $(TINYTRAIN_MOD_DIR)/qemu_flash.c
# (VfsFat's stat needs MicroPython's time conversions, which the qemu port lacks)
SRC_C += shared/timeutils/timeutils.c
CFLAGS_USERMOD += -include $(TINYTRAIN_MOD_DIR)/qemu_flash.h -DTINYTRAIN_QEMU_FLASH_SIZE=$(TINYTRAIN_QEMU_FLASH_SIZE)
ifneq ($(TINYTRAIN_QEMU_FLASH_ADDR),)
CFLAGS_USERMOD += -DTINYTRAIN_QEMU_FLASH_ADDR=$(TINYTRAIN_QEMU_FLASH_ADDR)
endif
endif

ifneq ($(TINYTRAIN_MODULE),0)
# The binding is scanned for qstrs; the portable core is plain C.
SRC_USERMOD_C += $(TINYTRAIN_MOD_DIR)/modtinytrain.c
TINYTRAIN_CORE_C := $(sort $(wildcard $(TINYTRAIN_MOD_DIR)/core/*.c $(TINYTRAIN_MOD_DIR)/core/kernels/*.c))
SRC_USERMOD_LIB_C += $(TINYTRAIN_CORE_C)

CFLAGS_USERMOD += -I$(TINYTRAIN_MOD_DIR)/core -DMICROPY_TINYTRAIN_ARENA_SIZE=$(MICROPY_TINYTRAIN_ARENA_SIZE)

# The core's own flags (one list for every build: C99, warnings, and bit-exact
# with the host simulator: no FMA contraction, float literals), on the core only.
include $(TINYTRAIN_MOD_DIR)/core/core_flags.mk
$(addprefix $(BUILD)/,$(patsubst $(USER_C_MODULES)/%.c,%.o,$(TINYTRAIN_CORE_C))): \
	CFLAGS += $(TT_CORE_CFLAGS)

# Rebuild the binding when the arena size changes (make does not track -D
# flags): its object depends on a stamp named after the size.
TINYTRAIN_BIND_O := $(BUILD)/$(patsubst $(USER_C_MODULES)/%.c,%.o,$(TINYTRAIN_MOD_DIR)/modtinytrain.c)
TINYTRAIN_STAMP := $(dir $(TINYTRAIN_BIND_O))arena_size_$(MICROPY_TINYTRAIN_ARENA_SIZE).stamp
$(TINYTRAIN_BIND_O): $(TINYTRAIN_STAMP)
$(TINYTRAIN_STAMP):
	$(Q)mkdir -p $(@D)
	$(Q)rm -f $(@D)/arena_size_*.stamp
	$(Q)touch $@
endif
