// tinytrain on the STM32F746G-DISCO (32F746GDISCOVERY).
//
// MicroPython without networking; the GC heap and the training arena are both
// in on-chip SRAM, so what a model needs here is what it needs on any F746.
// The 8 MB SDRAM is not initialised (see README.md for the memory map).

#define MICROPY_HW_BOARD_NAME       "F746DISC-tinytrain"
#define MICROPY_HW_MCU_NAME         "STM32F746"

#define MICROPY_HW_HAS_SWITCH       (1)
#define MICROPY_HW_HAS_FLASH        (1)
#define MICROPY_HW_ENABLE_RNG       (1)
#define MICROPY_HW_ENABLE_RTC       (1)
#define MICROPY_HW_ENABLE_USB       (1)
#define MICROPY_HW_ENABLE_SDCARD    (1)

// Model files in flash, read in place: a ROMFS partition in the last 256 KiB
// sector (addresses from tinytrain_f746.ld), written by `mpremote romfs deploy`.
#define MICROPY_HW_ROMFS_ENABLE_INTERNAL_FLASH (1)
#define MICROPY_HW_ROMFS_ENABLE_PART0 (1)

#define MICROPY_BOARD_EARLY_INIT    tinytrain_f746disc_early_init
void tinytrain_f746disc_early_init(void);

// Clocks: HSE 25 MHz / PLLM 25 * PLLN 432 = 432 MHz VCO; / PLLP 2 = 216 MHz
// SYSCLK (the SDRAM, which would cap it at 200 MHz, is not used); / PLLQ 9 =
// 48 MHz for USB, SDMMC and the RNG. 216 MHz needs 7 flash wait states.
#define MICROPY_HW_CLK_PLLM         (25)
#define MICROPY_HW_CLK_PLLN         (432)
#define MICROPY_HW_CLK_PLLP         (RCC_PLLP_DIV2)
#define MICROPY_HW_CLK_PLLQ         (9)
#define MICROPY_HW_FLASH_LATENCY    FLASH_LATENCY_7

// REPL on USART1, wired to the ST-LINK virtual COM port (CN14 USB).
#define MICROPY_HW_UART1_TX         (pin_A9)
#define MICROPY_HW_UART1_RX         (pin_B7)
#define MICROPY_HW_UART6_TX         (pin_C6)   // Arduino D1
#define MICROPY_HW_UART6_RX         (pin_C7)   // Arduino D0
#define MICROPY_HW_UART_REPL        PYB_UART_1
#define MICROPY_HW_UART_REPL_BAUD   115200

// I2C1 on the Arduino header (D15/D14), SPI2 on D10-D13.
#define MICROPY_HW_I2C1_SCL         (pin_B8)
#define MICROPY_HW_I2C1_SDA         (pin_B9)
#define MICROPY_HW_SPI2_NSS         (pin_I0)
#define MICROPY_HW_SPI2_SCK         (pin_I1)
#define MICROPY_HW_SPI2_MISO        (pin_B14)
#define MICROPY_HW_SPI2_MOSI        (pin_B15)

// User button B1 (high when pressed) and the green user LED LD1.
#define MICROPY_HW_USRSW_PIN        (pin_I11)
#define MICROPY_HW_USRSW_PULL       (GPIO_NOPULL)
#define MICROPY_HW_USRSW_EXTI_MODE  (GPIO_MODE_IT_RISING)
#define MICROPY_HW_USRSW_PRESSED    (1)
#define MICROPY_HW_LED1             (pin_I1)
#define MICROPY_HW_LED_ON(pin)      (mp_hal_pin_high(pin))
#define MICROPY_HW_LED_OFF(pin)     (mp_hal_pin_low(pin))

// microSD slot (SDMMC1), card-detect switch closes to ground.
#define MICROPY_HW_SDCARD_DETECT_PIN        (pin_C13)
#define MICROPY_HW_SDCARD_DETECT_PULL       (GPIO_PULLUP)
#define MICROPY_HW_SDCARD_DETECT_PRESENT    (GPIO_PIN_RESET)

// USB OTG FS on CN13 (a fast REPL: USB CDC). VBUS is not on PA9 (that is the
// ST-LINK UART), so there is no hardware VBUS detection.
#define MICROPY_HW_USB_FS           (1)
#define MICROPY_HW_USB_OTG_ID_PIN   (pin_A10)
