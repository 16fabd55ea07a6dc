"""End-to-end check of the bare-metal Cortex-M7 harness (firmware/baremetal):
build selftest.c with arm-none-eabi-gcc, run it on qemu mps2-an500 with
semihosting, and compare its results with Python's."""
import os
import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

BAREMETAL = Path(__file__).resolve().parent.parent / "firmware" / "baremetal"
TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm", "make")
MISSING = [t for t in TOOLS if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason="needs " + ", ".join(MISSING))

RUN_TIMEOUT = 120


def build(out_dir, *cflags):
    cmd = ["make", "-s", "-C", str(BAREMETAL), "APP=selftest.c", f"OUT={out_dir}"]
    if cflags:
        cmd.append("EXTRA_CFLAGS=" + " ".join(cflags))
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    elf = Path(out_dir) / "selftest.elf"
    assert elf.is_file()
    return elf


def run(elf, workdir):
    res = subprocess.run(
        ["sh", str(BAREMETAL / "run-qemu.sh"), str(elf), str(workdir)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=RUN_TIMEOUT, env=dict(os.environ, QEMU_TIMEOUT=str(RUN_TIMEOUT - 10)))
    return res.returncode, res.stdout + res.stderr


def float_mix(data):
    """selftest.c's float_mix, one float32 rounding per operation, same order."""
    f = np.float32
    acc, w = f(0.0), f(0.5)
    for b in data:
        x = f(int(b) - 128) * f(0.0078125)
        w = w * f(0.99951171875) + x * f(0.03125)
        acc = acc + w * x / (f(1.0) + x * x)
    return struct.unpack("<I", struct.pack("<f", acc))[0]


@pytest.fixture(scope="module")
def selftest_elf(tmp_path_factory):
    return build(tmp_path_factory.mktemp("bm_build"))


def test_selftest_matches_host(selftest_elf, tmp_path):
    data = bytes(random.Random(1234).randrange(256) for _ in range(5003))
    (tmp_path / "selftest_in.bin").write_bytes(data)

    rc, log = run(selftest_elf, tmp_path)
    assert rc == 0, log
    assert "selftest: ok" in log

    out = (tmp_path / "selftest_out.bin").read_bytes()
    magic, n, crc, fbits, expected, counted, stack_hw, heap_ok = struct.unpack("<8I", out)
    assert magic == 0x54535454
    assert n == len(data)
    assert crc == zlib.crc32(data)
    assert fbits == float_mix(data), (hex(fbits), hex(float_mix(data)))
    # Counter resolution is one SysTick tick (40 instructions) plus call overhead.
    assert abs(counted - expected) <= 80, (counted, expected)
    assert 0 < stack_hw < 32 * 1024
    assert heap_ok == 1


def test_exit_status_nonzero(selftest_elf, tmp_path):
    # The output cannot be written (a folder has its name): main returns 2,
    # which must reach the host as a failure.
    (tmp_path / "selftest_out.bin").mkdir()
    rc, log = run(selftest_elf, tmp_path)
    assert rc == 1, log
    assert "cannot write selftest_out.bin" in log


def test_runs_without_an_input_file(selftest_elf, tmp_path):
    # `make m7-selftest` on a fresh checkout: no selftest_in.bin, a built-in pattern.
    rc, log = run(selftest_elf, tmp_path)
    assert rc == 0, log
    assert "built-in 4096-byte pattern" in log and "selftest: ok" in log


@pytest.mark.parametrize("kind, name", [(1, "UsageFault"), (2, "BusFault"), (3, "MemManage")])
def test_fault_reported(tmp_path, kind, name):
    elf = build(tmp_path / "build", f"-DSELFTEST_FAULT={kind}")
    rc, log = run(elf, tmp_path)
    assert rc == 1, log
    assert f"*** {name} at PC=" in log, log
    if kind == 3:
        assert "stack overflow" in log
    else:
        assert "PC=0x" in log  # stacked PC was recovered
