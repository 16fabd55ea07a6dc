// The qemu firmware's /flash (docs/micropython.md): `make qemu` force-includes
// this header into every file of the qemu build (firmware/firmware.mk, through
// micropython.mk), with MICROPY_VFS_FAT=1 and TINYTRAIN_QEMU_FLASH_SIZE set.
#ifndef TINYTRAIN_QEMU_FLASH_H
#define TINYTRAIN_QEMU_FLASH_H

// FAT as the STM32 port configures it for the F746's /flash (long names,
// needed for `params.ttp.tmp`; relative paths, for os.chdir), without a
// real-time clock: files carry FatFs's fixed timestamp.
#define MICROPY_FATFS_ENABLE_LFN       (2)
#define MICROPY_FATFS_LFN_CODE_PAGE    437
#define MICROPY_FATFS_USE_LABEL        (1)
#define MICROPY_FATFS_RPATH            (2)
#define MICROPY_FATFS_NORTC            (1)

// The qemu port's main() runs no boot script: mp_init() calls this at every
// boot and soft reset to mount the RAM disk at /flash (qemu_flash.c).
#define MICROPY_PORT_INIT_FUNC tinytrain_qemu_flash_init()

#ifndef __ASSEMBLER__
void tinytrain_qemu_flash_init(void);
#endif

#endif
