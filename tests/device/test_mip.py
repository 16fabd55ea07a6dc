"""`mpremote mip install` of the .mpy package, the way docs/micropython.md
gives it, against the qemu Cortex-M7 firmware (the board mpremote can reach
that has a writable filesystem: /flash): the package.json that `make natmod`
writes installs the build's two files byte for byte, and the installed .mpy
trains as the simulator does. mip reads a local package.json and the files
beside it without a network.

Needs MICROPY_DIR; builds the qemu firmware with a 140 KiB heap and the .mpy."""
import json
import shutil

import pytest

from conftest import MICROPY_DIR, SKIP_REASON  # noqa: E402

if not MICROPY_DIR:
    pytest.skip(SKIP_REASON, allow_module_level=True)

import mpdevice  # noqa: E402
from test_micropython import host_run, prepare  # noqa: E402

# The F746's build (single-precision FPU), which this Cortex-M7 also runs;
# test_stock.py gives the AN500 its own armv7emdp build.
ARCH = "armv7emsp"
LIB = "/flash/lib"
FILES = ("tinytrain.mpy", "tinytrain_stream.mpy")


def test_mpremote_mip_install(qemu_big_heap, tmp_path):
    # the small build: with the optimised kernels the .mpy and the receiver
    # are more than a 96 KiB FAT (the F746's /flash, this firmware's) holds
    mpdevice.make("natmod", MICROPY_DIR, [f"ARCH={ARCH}", "TT_OPTIMIZED=0"])
    build = mpdevice.BUILD / f"natmod-{ARCH}-small"
    package = build / "package.json"
    assert sorted(dst for dst, _ in json.loads(package.read_text())["urls"]) == sorted(FILES)
    dev = qemu_big_heap
    dev.mpremote("exec", "import os\nfor p in ('/flash/lib/tinytrain.mpy', '/flash/lib/tinytrain_stream.py', "
                 "'/flash/lib/tinytrain_stream.mpy', "
                 "'/flash/lib/tinytrain_mip.mpy'):\n try: os.remove(p)\n except OSError: pass")
    # /flash/lib is on this firmware's sys.path (as on the F746): mip finds it without --target
    out = dev.mpremote("exec", "import sys; print('PATH', sys.path)")
    assert f"'{LIB}'" in out.split("PATH", 1)[1], out
    out = dev.mpremote("mip", "install", str(package))
    assert f"Installing: {LIB}/tinytrain.mpy" in out, out
    assert dev.file_sizes_and_crcs(LIB, FILES) == mpdevice.sizes_and_crcs(build, FILES)
    # The installed .mpy, imported from the lib folder (renamed: the module
    # built into this firmware would shadow its own name), trains bit for bit.
    dev.mpremote("exec", f"import os; os.rename('{LIB}/tinytrain.mpy', '{LIB}/tinytrain_mip.mpy')")
    prepare(tmp_path, "cnn", "full", steps=8, module="tinytrain_mip")
    shutil.copy(mpdevice.script_path("train_dump.py"), tmp_path / "train_dump.py")
    got = dev.mpremote("exec", "import tinytrain_mip; print('IMPORTED')\n"
                       "exec(open('train_dump.py').read())", workdir=tmp_path, timeout=300)
    lines = [l for l in got.splitlines() if not l.startswith("Local directory ")]
    assert lines[0] == "IMPORTED"  # (that name exists only in the lib folder)
    (tmp_path / "job.txt").write_text((tmp_path / "job.txt").read_text().replace("tinytrain_mip", "tinytrain"))
    assert lines[1:] == host_run("train_dump.py", tmp_path).splitlines()
