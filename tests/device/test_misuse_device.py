"""The API misuse table (tests/misuse_cases.py) on the MicroPython unix port,
the qemu Cortex-M7 and the qemu RV32 (VIRT_RV32): every row not marked host-only raises the table's
exception and message, and the output is the host simulator's line for line
(the same type and message; OSError: the same errno). Needs MICROPY_DIR."""
import os

import pytest

from conftest import SKIP_REASON  # noqa: E402

if not os.environ.get("MICROPY_DIR"):
    pytest.skip(SKIP_REASON, allow_module_level=True)

import misuse_cases  # noqa: E402

BOARD = misuse_cases.BOARD_CASES
CHUNK = 12


@pytest.mark.parametrize("port", ["unix", "qemu", "qemu_rv32"])
def test_misuse_table_on_device(request, port, tmp_path):
    device = request.getfixturevalue(port)
    host, dev = tmp_path / "host", tmp_path / "device"
    host.mkdir()
    dev.mkdir()
    misuse_cases.write_models(host)
    misuse_cases.write_models(dev)
    want = misuse_cases.run_host(host, BOARD)
    got = ""
    for i in range(0, len(BOARD), CHUNK):  # qemu's heap compiles a dozen rows at a time
        misuse_cases.write_script(dev, BOARD[i:i + CHUNK])
        got += device.run(dev / "misuse.py", dev, timeout=600)
    assert misuse_cases.mismatches(BOARD, misuse_cases.parse(got)) == []
    assert got.splitlines() == want.splitlines()
    assert not any(name.endswith(".tmp") for name in os.listdir(dev))
