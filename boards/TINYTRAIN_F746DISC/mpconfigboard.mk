# tinytrain on the STM32F746G-DISCO: pass this folder as BOARD_DIR
# (`make firmware` in the project does).
MCU_SERIES = f7
CMSIS_MCU = STM32F746xx
AF_FILE = boards/stm32f746_af.csv
# Our memory map: the stock F746 layout with the firmware text limited to
# 640 KiB and the last 256 KiB sector kept for ROMFS (model files).
LD_FILES = $(BOARD_DIR)/tinytrain_f746.ld boards/common_ifs.ld
TEXT0_ADDR = 0x08000000
TEXT1_ADDR = 0x08020000

# No networking: no lwIP, no TLS, no network bundle (manifest.py).
MICROPY_PY_LWIP = 0
MICROPY_PY_SSL = 0
MICROPY_HW_ENABLE_ISR_UART_FLASH_FUNCS_IN_RAM = 1

FROZEN_MANIFEST = $(BOARD_DIR)/manifest.py
