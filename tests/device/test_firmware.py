"""The STM32F746 Discovery firmware builds and fits the board.

`make firmware BOARD=TINYTRAIN_F746DISC` (once per session, reused by make's
up-to-date checks) prints its flash and SRAM figures and fails when they do
not fit. The test reads those figures and judges them itself, checks them
against the ELF (pyelftools), and checks that the fit check refuses a build
that does not fit. Needs a MicroPython tree (MICROPY_DIR or ../shared/micropython).
"""
import re

import pytest

from conftest import MICROPY_DIR, REPORT, SKIP_REASON  # noqa: E402

if not MICROPY_DIR:
    pytest.skip(SKIP_REASON, allow_module_level=True)

import mpdevice  # noqa: E402

BOARD = "TINYTRAIN_F746DISC"
ELF = mpdevice.BUILD / f"stm32-{BOARD}" / "firmware.elf"
ARENA_SIZE = 196608          # MICROPY_TINYTRAIN_ARENA_SIZE of the default build
MIN_HEAP = 48 * 1024         # firmware/firmware.mk: TT_MIN_HEAP
# The F746's 1024 KiB of flash, as boards/TINYTRAIN_F746DISC lays it out.
VECTORS_ROOM, FS, TEXT_ROOM, ROMFS = 32 * 1024, 96 * 1024, 640 * 1024, 256 * 1024
TEXT_START, ROMFS_START = 0x08020000, 0x080C0000
KIB_ROUNDING = 0.05 * 1024   # the report prints KiB with one decimal


def _kib(text: str) -> float:
    return float(text) * 1024


def parse_report(out: str) -> dict:
    """The figures `make firmware` prints, in bytes."""
    pats = {
        "vectors": r"sector 0, vectors\s+([\d.]+) KiB of\s+([\d.]+) KiB",
        "fs": r"filesystem \(FAT, sect 1-3\)\s+([\d.]+) KiB",
        "text": r"firmware text \+ \.data init\s+([\d.]+) KiB of\s+([\d.]+) KiB",
        "romfs": r"ROMFS for model files\s+([\d.]+) KiB",
        "free": r"free for the firmware\s+(-?[\d.]+) KiB",
        "static": r"MicroPython static data\s+([\d.]+) KiB",
        "arena": r"tinytrain arena \(\.bss\)\s+([\d.]+) KiB",
        "heap": r"GC heap\s+([\d.]+) KiB",
        "stack": r"stack\s+([\d.]+) KiB",
        "sram": r"total RAM \(DTCM\+SRAM1\+2\)\s+([\d.]+) KiB of\s+([\d.]+) KiB",
    }
    head = f"== {BOARD}: flash"
    assert head in out, f"`make firmware` printed no report:\n{out[-3000:]}"
    out = out[out.index(head):]
    got = {}
    for key, pat in pats.items():
        m = re.search(r"^\s*" + pat, out, re.M)
        assert m, f"`make firmware` did not print the {key} figure:\n{out[-3000:]}"
        got[key] = _kib(m.group(1))
        if m.lastindex == 2:
            got[key + "_room"] = _kib(m.group(2))
    return got


@pytest.fixture(scope="module")
def build():
    """One `make firmware` run (a no-op relink check when build/ is up to date)."""
    r = mpdevice.make("firmware", MICROPY_DIR, [f"BOARD={BOARD}"], check=False)
    if r is None:  # TINYTRAIN_DEVICE_NO_BUILD=1: the report on the build as it is
        r = mpdevice.make("firmware-report", MICROPY_DIR, [f"BOARD={BOARD}"], check=False, builds=False)
    return r


def test_f746_firmware_fits(build):
    """Each region within its room, judged from the printed figures."""
    out = build.stdout + build.stderr
    fig = parse_report(out)
    assert fig["vectors"] <= VECTORS_ROOM, "vector table overflows flash sector 0"
    assert (fig["fs"], fig["text_room"], fig["romfs"]) == (FS, TEXT_ROOM, ROMFS), "flash layout changed"
    assert fig["vectors_room"] + FS + TEXT_ROOM + ROMFS == 1024 * 1024
    assert fig["text"] <= TEXT_ROOM, f"firmware text {fig['text'] / 1024:.1f} KiB overlaps the ROMFS partition"
    assert abs(fig["free"] - (TEXT_ROOM - fig["text"])) <= 2 * KIB_ROUNDING
    parts = fig["static"] + fig["arena"] + fig["heap"] + fig["stack"]
    assert abs(parts - fig["sram"]) <= 4 * KIB_ROUNDING
    assert fig["sram"] <= fig["sram_room"], "RAM (DTCM+SRAM1+2) overcommitted"
    assert fig["heap"] >= MIN_HEAP, f"GC heap {fig['heap'] / 1024:.1f} KiB below {MIN_HEAP // 1024} KiB"
    assert build.returncode == 0 and "fits:" in build.stdout, out[-3000:]
    with open(REPORT, "a") as f:
        f.write(f"{BOARD}: firmware text {fig['text'] / 1024:.1f} KiB of {TEXT_ROOM // 1024} KiB "
                f"({fig['free'] / 1024:.1f} KiB free); SRAM {fig['sram'] / 1024:.1f} of "
                f"{fig['sram_room'] / 1024:.1f} KiB with a {fig['arena'] / 1024:.0f} KiB arena and "
                f"{fig['heap'] / 1024:.1f} KiB GC heap\n")


def test_f746_figures_match_the_elf(build):
    """The printed figures are the ELF's: the arena symbol, and the bytes
    loaded into flash from the firmware's text start up to the ROMFS."""
    from elftools.elf.elffile import ELFFile
    assert build.returncode == 0, (build.stdout + build.stderr)[-3000:]
    fig = parse_report(build.stdout)
    with open(ELF, "rb") as f:
        elf = ELFFile(f)
        arena = [s for s in elf.get_section_by_name(".symtab").iter_symbols() if s.name == "tinytrain_arena"]
        assert len(arena) == 1 and arena[0]["st_size"] == ARENA_SIZE
        flash = 0
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_filesz"] and TEXT_START <= seg["p_paddr"] < ROMFS_START:
                assert seg["p_paddr"] + seg["p_filesz"] <= ROMFS_START, "a segment runs into the ROMFS"
                flash += seg["p_filesz"]
    assert abs(fig["arena"] - ARENA_SIZE) <= KIB_ROUNDING
    assert abs(fig["text"] - flash) <= KIB_ROUNDING, (fig["text"], flash)


def test_fit_check_refuses_what_does_not_fit(build):
    """The report fails (and says why) once a limit is below what the build
    needs: a GC heap minimum 1 KiB above this build's heap."""
    assert build.returncode == 0, (build.stdout + build.stderr)[-3000:]
    heap = round(parse_report(build.stdout)["heap"])
    r = mpdevice.make("firmware-report", MICROPY_DIR, [f"BOARD={BOARD}", f"TT_MIN_HEAP={heap + 1024}"],
                      check=False, builds=False)
    assert r.returncode != 0 and "DOES NOT FIT" in r.stderr and "GC heap below" in r.stderr, r.stdout + r.stderr
