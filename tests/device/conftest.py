"""Fixtures for the MicroPython device tests (test_micropython.py, test_firmware.py).

The tree is MICROPY_DIR or ../shared/micropython (tests/micropython_tree.py).
Without one nothing here builds or starts anything: the test modules skip
themselves with one line saying why."""
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # netzoo
sys.path.insert(0, str(HERE))         # mpdevice

import mpdevice  # noqa: E402
from micropython_tree import SKIP_REASON, resolve  # noqa: E402,F401 (SKIP_REASON: for the test modules)

MICROPY_DIR = resolve()
REPORT = mpdevice.BUILD / "device-report.txt"  # figures the tests measure, printed at the end
if MICROPY_DIR:
    REPORT.unlink(missing_ok=True)


def _built(path, target):
    """Build (or bring up to date) the port with the project's Makefile."""
    mpdevice.make(target, MICROPY_DIR)
    return path


# The emulators the fixtures started. An idle MicroPython REPL under qemu polls
# its UART, so each one left running takes most of a core: they stop as soon
# as the device tests are over, not when the whole suite ends.
_RUNNING = []


def _started(dev):
    _RUNNING.append(dev)
    return dev


def pytest_runtest_teardown(item, nextitem):
    if nextitem is None or HERE not in nextitem.path.resolve().parents:
        while _RUNNING:
            _RUNNING.pop().close()


@pytest.fixture(scope="session")
def unix():
    return mpdevice.Unix(_built(mpdevice.UNIX_EXE, "unix"))


@pytest.fixture(scope="session")
def qemu():
    dev = _started(mpdevice.Qemu(_built(mpdevice.QEMU_ELF, "qemu")))
    yield dev
    dev.close()


@pytest.fixture(scope="session")
def qemu_rv32():
    """MicroPython's VIRT_RV32 board (rv32imac, the ESP32-C3/C6 class) with the module."""
    from tinytrain.stream.targets import RV32_VIRT
    dev = _started(mpdevice.Qemu(_built(mpdevice.QEMU_RV32_ELF, "qemu-rv32"), machine=RV32_VIRT, name="qemu_rv32"))
    yield dev
    dev.close()


@pytest.fixture(scope="session")
def qemu_big_heap():
    """qemu with the qemu port's own 140 KiB heap: room for a natmod's code."""
    elf = mpdevice.BUILD / "qemu-MPS2_AN500-heap143360" / "firmware.elf"
    mpdevice.make("qemu", MICROPY_DIR, ["QEMU_HEAP_SIZE=143360"])
    dev = _started(mpdevice.Qemu(elf))
    yield dev
    dev.close()


@pytest.fixture(scope="session", params=["unix", "qemu", "qemu_rv32"])
def device(request):
    """Each test that takes `device` runs on every target."""
    return request.getfixturevalue(request.param)


def pytest_terminal_summary(terminalreporter, config):
    """Why the folder skipped (unless -rs/-ra already says it), or the figures
    the device tests measured (build/device-report.txt)."""
    if not MICROPY_DIR:
        chars = config.option.reportchars or ""
        if not any(c in chars for c in "saA"):
            terminalreporter.write_line(f"SKIPPED tests/device: {SKIP_REASON}")
        return
    if REPORT.exists():
        terminalreporter.section("tinytrain on MicroPython: measured")
        for line in REPORT.read_text().splitlines():
            terminalreporter.write_line(line)
