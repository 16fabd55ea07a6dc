"""End-to-end check of the bare-metal harness (firmware/baremetal) on each of
its targets: build the target's selftest.c, run it under qemu with
semihosting, and compare its results with Python's: files, float32 rounding
(hard float on the M7, soft float on RV32), the instruction counter, the
stack high-water mark, and faults or traps reported with exit status 1."""
import os
import random
import re
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from tinytrain import runner

BAREMETAL = Path(__file__).resolve().parent.parent / "firmware" / "baremetal"
RUN_TIMEOUT = 120


def needs(target):
    missing = runner.missing_tools(target)
    return pytest.param(target, marks=pytest.mark.skipif(bool(missing), reason="needs " + ", ".join(missing)))


def build(target, out_dir, *cflags):
    cmd = ["make", "-s", "-C", str(BAREMETAL), f"TARGET={target}", f"APP={target}/selftest.c", f"OUT={out_dir}"]
    if cflags:
        cmd.append("EXTRA_CFLAGS=" + " ".join(cflags))
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    elf = Path(out_dir) / "selftest.elf"
    assert elf.is_file()
    return elf


def run(target, elf, workdir):
    res = subprocess.run(
        ["sh", str(BAREMETAL / "run-qemu.sh"), str(elf), str(workdir)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=RUN_TIMEOUT,
        env=dict(os.environ, QEMU_TIMEOUT=str(RUN_TIMEOUT - 10), TARGET=target))
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


def check_m7(data, log, workdir):
    """m7/selftest.c writes its results to selftest_out.bin."""
    assert "selftest: ok" in log
    out = (workdir / "selftest_out.bin").read_bytes()
    magic, n, crc, fbits, expected, counted, stack_hw, heap_ok = struct.unpack("<8I", out)
    assert magic == 0x54535454
    assert n == len(data)
    assert crc == zlib.crc32(data)
    assert fbits == float_mix(data), (hex(fbits), hex(float_mix(data)))
    # Counter resolution is one SysTick tick (40 instructions) plus call
    # overhead; the loop spans a lap of the 24-bit SysTick.
    assert abs(counted - expected) <= 80, (counted, expected)
    assert 0 < stack_hw < 32 * 1024
    assert heap_ok == 1


def check_rv32(data, log, workdir):
    """rv32/selftest.c prints its results."""
    calib = {int(n): int(c) for n, c in re.findall(r"calib (\d+): (\d+) instructions", log)}
    assert len(calib) == 3, log
    # the loop is 2 instructions per turn: the counter is exact, whatever the
    # fixed cost of reading it
    fixed = {c - 2 * n for n, c in calib.items()}
    assert len(fixed) == 1 and 0 < fixed.pop() < 40, calib
    assert f"read {len(data)} bytes" in log
    assert int(re.search(r"float bits 0x([0-9a-f]+)", log).group(1), 16) == float_mix(data)
    used, size = map(int, re.search(r"stack high-water (\d+) bytes of (\d+)", log).groups())
    assert size == 32768 and 40 * 256 < used < size  # deep(40) has 256-byte frames


CHECKS = {"m7": check_m7, "rv32": check_rv32}
# (target, SELFTEST_FAULT, a pattern of what the report must say)
FAULTS = [("m7", 1, r"\*\*\* UsageFault at PC=0x"), ("m7", 2, r"\*\*\* BusFault at PC=0x"),
          ("m7", 3, r"\*\*\* MemManage at PC=.*stack overflow"),
          ("rv32", 1, r"mcause:\s+0x0*2\b"),   # illegal instruction
          ("rv32", 2, r"mcause:\s+0x0*5\b")]   # load access fault


@pytest.fixture(scope="module")
def selftest_elf(tmp_path_factory):
    elves = {}

    def get(target):
        if target not in elves:
            elves[target] = build(target, tmp_path_factory.mktemp(f"bm_{target}"))
        return elves[target]
    return get


@pytest.mark.parametrize("target", [needs(t) for t in runner.EMULATED])
def test_selftest_matches_host(selftest_elf, tmp_path, target):
    data = bytes(random.Random(1234).randrange(256) for _ in range(5003))
    (tmp_path / "selftest_in.bin").write_bytes(data)
    rc, log = run(target, selftest_elf(target), tmp_path)
    assert rc == 0, log
    CHECKS[target](data, log, tmp_path)


@pytest.mark.parametrize("target", [needs("m7")])
def test_exit_status_nonzero(selftest_elf, tmp_path, target):
    # The output cannot be written (a folder has its name): main returns 2,
    # which must reach the host as a failure.
    (tmp_path / "selftest_out.bin").mkdir()
    rc, log = run(target, selftest_elf(target), tmp_path)
    assert rc == 1, log
    assert "cannot write selftest_out.bin" in log


@pytest.mark.parametrize("target", [needs("m7")])
def test_runs_without_an_input_file(selftest_elf, tmp_path, target):
    # `make m7-selftest` on a fresh checkout: no selftest_in.bin, a built-in pattern.
    rc, log = run(target, selftest_elf(target), tmp_path)
    assert rc == 0, log
    assert "built-in 4096-byte pattern" in log and "selftest: ok" in log


@pytest.mark.parametrize("target, kind, report",
                         [pytest.param(*f, marks=needs(f[0]).marks) for f in FAULTS],
                         ids=[f"{t}-{k}" for t, k, _ in FAULTS])
def test_fault_reported(tmp_path, target, kind, report):
    rc, log = run(target, build(target, tmp_path / "build", f"-DSELFTEST_FAULT={kind}"), tmp_path)
    assert rc == 1, log
    assert re.search(report, log), log
    assert "no trap" not in log and "did not trap" not in log
