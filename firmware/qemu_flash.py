# /flash on the qemu firmware: a FAT filesystem on a RAM disk, as the F746's
# /flash is a FAT in flash. Frozen in by qemu_manifest.py; qemu_flash.c calls
# mount() at every boot and soft reset with a bytearray over the disk's memory
# (QEMU_FLASH_SIZE bytes outside the GC heap and the arena; see qemu_flash.c).
# The memory keeps its contents over a soft reset, so the files stay; a disk
# that holds no FAT of its size (the first boot) is formatted.
import os
import sys
import vfs

BLOCK = 512


class RAMDisk:
    """A block device (MicroPython's readblocks/writeblocks/ioctl protocol)
    over a buffer."""

    def __init__(self, mem):
        self.mem = memoryview(mem)
        self.blocks = len(mem) // BLOCK

    def _span(self, n, off, k):
        a = n * BLOCK + off
        return a if 0 <= a and a + k <= self.blocks * BLOCK else -1

    def readblocks(self, n, buf, off=0):
        a = self._span(n, off, len(buf))
        if a < 0:
            return -5  # EIO: outside the disk
        buf[:] = self.mem[a:a + len(buf)]
        return 0

    def writeblocks(self, n, buf, off=0):
        a = self._span(n, off, len(buf))
        if a < 0:
            return -5
        self.mem[a:a + len(buf)] = buf
        return 0

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return BLOCK
        if op in (1, 2, 3, 6):  # init, deinit, sync, erase: nothing to do in RAM
            return 0
        return None


def fat_blocks(mem):
    """The sector count of a FAT boot sector of 512-byte sectors; 0 if none."""
    if mem[510] != 0x55 or mem[511] != 0xAA or mem[11] | mem[12] << 8 != BLOCK:
        return 0
    return mem[19] | mem[20] << 8 or mem[32] | mem[33] << 8 | mem[34] << 16 | mem[35] << 24


def mount(mem, path="/flash"):
    disk = RAMDisk(mem)
    if fat_blocks(mem) != disk.blocks:
        vfs.VfsFat.mkfs(disk)
    try:
        fs = vfs.VfsFat(disk)
        vfs.mount(fs, path)
    except OSError:  # a damaged filesystem: start a fresh one, as a board's factory reset
        vfs.VfsFat.mkfs(disk)
        vfs.mount(vfs.VfsFat(disk), path)
    os.chdir(path)
    # the lib folder on the import path, as the STM32 port (the F746) has it:
    # where `tinytrain install` and `mpremote mip install` put modules
    if path + "/lib" not in sys.path:
        sys.path.append(path + "/lib")
