// Early board setup: switch the LCD backlight (PK3, LCD_BL_CTRL) off, since
// this firmware does not drive the display.
#include "py/mphal.h"

void tinytrain_f746disc_early_init(void) {
    mp_hal_pin_output(pin_K3);
    mp_hal_pin_low(pin_K3);
}
