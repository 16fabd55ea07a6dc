"""The C core's compiler flags live in one list (core/core_flags.mk) that every
build of the core reads: no build keeps a copy that could drift (the sanitizer
build once lacked -fsingle-precision-constant)."""
import re
from pathlib import Path

from tinytrain import runner
from tinytrain.core_flags import FLAGS_FILE, core_cflags

ROOT = Path(__file__).resolve().parents[1]
MOD = ROOT / "micropython_modules" / "tinytrain"
BUILDS = [ROOT / "setup.py", ROOT / "host_tools" / "tinytrain" / "runner.py", ROOT / "firmware" / "baremetal" / "Makefile",
          MOD / "micropython.mk", MOD / "micropython.cmake", MOD / "natmod" / "Makefile"]


def test_the_list_holds_the_bit_exactness_and_warning_flags():
    flags = core_cflags()
    for f in ("-std=c99", "-Werror", "-Wdouble-promotion", "-Wfloat-conversion", "-ffp-contract=off",
              "-fsingle-precision-constant", "-fno-fast-math"):
        assert f in flags


def test_every_build_reads_the_list_and_copies_none_of_it():
    flags = core_cflags()
    for path in BUILDS:
        text = path.read_text()
        assert re.search(r"core_flags", text), f"{path.name} does not read {FLAGS_FILE.name}"
        copies = [f for f in flags if f in text]
        assert not copies, f"{path.name} lists core flags of its own: {copies}"


def test_sanitizer_build_uses_the_list():
    assert runner.HOST_FLAGS[:len(core_cflags())] == core_cflags()
