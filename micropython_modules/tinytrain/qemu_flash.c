// The qemu firmware's /flash: a FAT filesystem on a RAM disk, like the F746's
// /flash (a FAT in flash sectors 1-3). Built only into the qemu firmwares
// (micropython.mk, when firmware/firmware.mk sets TINYTRAIN_QEMU_FLASH_SIZE):
// tinytrain's, and the stock ones with a filesystem (`make stock STOCK_FS=1`),
// which stand in for a board whose firmware lacks the module.
//
// The disk is TINYTRAIN_QEMU_FLASH_SIZE bytes at the start of the MPS2-AN500's
// second SSRAM bank (ZBT SSRAM2/3, 4 MiB at 0x20000000), which the firmware
// does not otherwise use (its code, data, arena, GC heap and stack are all in
// SSRAM1 at 0): as the F746's filesystem lives in flash, this one takes
// nothing from the GC heap or the arena. It is not cleared at boot: a soft
// reset keeps the files, and the host can load a disk image there before qemu
// starts and save it when it stops (tinytrain.stream.targets.QemuProcess), as
// flash keeps them across power cycles. The frozen module qemu_flash
// (firmware/qemu_flash.py) does the mounting.
#include "py/runtime.h"

#if defined(TINYTRAIN_QEMU_FLASH_SIZE)

// Where the disk lies and how much memory is there (firmware/firmware.mk sets
// both for other machines: VIRT_RV32's RAM beyond the firmware's).
#ifndef TINYTRAIN_QEMU_FLASH_ADDR
#define TINYTRAIN_QEMU_FLASH_ADDR (0x20000000)
#endif
#ifndef TINYTRAIN_QEMU_FLASH_BANK
#define TINYTRAIN_QEMU_FLASH_BANK (4 * 1024 * 1024)
#endif

#if TINYTRAIN_QEMU_FLASH_SIZE < 32768 || TINYTRAIN_QEMU_FLASH_SIZE > TINYTRAIN_QEMU_FLASH_BANK \
    || TINYTRAIN_QEMU_FLASH_SIZE % 512 != 0
#error "QEMU_FLASH_SIZE must be a multiple of 512 bytes, from 32768 to 4194304"
#endif

void tinytrain_qemu_flash_init(void) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        // a bytearray over the disk's memory (the object is on the heap, the
        // bytes are not)
        mp_obj_t mem = mp_obj_new_bytearray_by_ref(TINYTRAIN_QEMU_FLASH_SIZE,
            (void *)TINYTRAIN_QEMU_FLASH_ADDR);
        mp_obj_t mod = mp_import_name(MP_QSTR_qemu_flash, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
        mp_call_function_1(mp_load_attr(mod, MP_QSTR_mount), mem);
        nlr_pop();
    } else {
        // the REPL still starts, without /flash, and says why
        mp_printf(&mp_plat_print, "/flash not mounted: ");
        mp_obj_print_exception(&mp_plat_print, MP_OBJ_FROM_PTR(nlr.ret_val));
    }
}

#endif
