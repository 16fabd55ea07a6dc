// HAL configuration for the STM32F746G-DISCO: its oscillators, then the
// port's common F7 settings.
#ifndef TINYTRAIN_F746DISC_HAL_CONF_H
#define TINYTRAIN_F746DISC_HAL_CONF_H

#define HSE_VALUE (25000000)            // X2, 25 MHz crystal
#define LSE_VALUE (32768)               // X1, 32.768 kHz crystal
#define EXTERNAL_CLOCK_VALUE (12288000) // I2S/SAI clock input (unused)
#define HSE_STARTUP_TIMEOUT (5000)
#define LSE_STARTUP_TIMEOUT (5000)

#include "boards/stm32f7xx_hal_conf_base.h"

#endif
