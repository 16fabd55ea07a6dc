"""End-to-end check of the bare-metal RV32 harness (firmware/baremetal-rv32):
build selftest.c with the RISC-V compiler and picolibc, run it on
qemu-system-riscv32 -machine virt with semihosting, and check the instruction
counter, soft-float rounding, files, the stack mark and trap reporting."""
import os
import random
import re
import subprocess
from pathlib import Path

import pytest

from tinytrain import runner
from test_baremetal_harness import float_mix

HARNESS = Path(__file__).resolve().parent.parent / "firmware" / "baremetal-rv32"
MISSING = runner.missing_tools("rv32")
pytestmark = pytest.mark.skipif(bool(MISSING), reason="needs " + ", ".join(MISSING))

RUN_TIMEOUT = 120


def build(out_dir, *cflags):
    cmd = ["make", "-s", "-C", str(HARNESS), "APP=selftest.c", f"OUT={out_dir}"]
    if cflags:
        cmd.append("EXTRA_CFLAGS=" + " ".join(cflags))
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    return Path(out_dir) / "selftest.elf"


def run(elf, workdir):
    res = subprocess.run(["sh", str(HARNESS / "run-qemu.sh"), str(elf), str(workdir)],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                         env=dict(os.environ, QEMU_TIMEOUT=str(RUN_TIMEOUT - 10)))
    return res.returncode, res.stdout + res.stderr


def test_selftest(tmp_path):
    data = bytes(random.Random(99).randrange(256) for _ in range(4099))
    (tmp_path / "selftest_in.bin").write_bytes(data)
    code, out = run(build(tmp_path / "build"), tmp_path)
    assert code == 0, out
    calib = {int(n): int(c) for n, c in re.findall(r"calib (\d+): (\d+) instructions", out)}
    assert len(calib) == 3, out
    # the loop is 2 instructions per turn: the counter is exact, whatever the
    # fixed cost of reading it
    fixed = {c - 2 * n for n, c in calib.items()}
    assert len(fixed) == 1 and 0 < fixed.pop() < 40, calib
    assert f"read {len(data)} bytes" in out
    assert int(re.search(r"float bits 0x([0-9a-f]+)", out).group(1), 16) == float_mix(data)
    used, size = map(int, re.search(r"stack high-water (\d+) bytes of (\d+)", out).groups())
    assert size == 32768 and 40 * 256 < used < size  # deep(40) has 256-byte frames


@pytest.mark.parametrize("kind,cause", [(1, 2), (2, 5)])  # illegal instruction, load access fault
def test_trap_is_reported(tmp_path, kind, cause):
    code, out = run(build(tmp_path / "build", f"-DSELFTEST_FAULT={kind}"), tmp_path)
    assert code == 1, out
    assert "no trap" not in out
    assert int(re.search(r"mcause:\s+0x([0-9a-f]+)", out).group(1), 16) == cause
