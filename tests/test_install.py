"""`tinytrain install` chooses the .mpy a board can load: its architecture
from sys.implementation._mpy, a build that core runs when its own is absent,
and a clear error naming the make command (or the compiler) otherwise.
(The install itself, on MicroPython ports, is in tests/device/test_stock.py.)"""
import pytest

from tinytrain import install


def sys_mpy(arch_index, version=6, sub=3, flags=0):
    """sys.implementation._mpy as py/modsys.c builds it."""
    return version | (sub << 8) | ((arch_index | flags) << 10)


@pytest.mark.parametrize("arch", [a for a in install.ARCHS if a])
def test_decode_every_architecture(arch):
    assert install.decode_sys_mpy(sys_mpy(install.ARCHS.index(arch))) == (6, arch)
    # arch flags above the 4-bit number (VIRT_RV32 sets one) do not change it
    assert install.decode_sys_mpy(sys_mpy(install.ARCHS.index(arch), flags=64)) == (6, arch)


def test_decode_what_virt_rv32_reports():
    assert install.decode_sys_mpy(77574) == (6, "rv32imc")


def _builds(tmp_path, *archs, suffix=""):
    for a in archs:
        d = tmp_path / f"natmod-{a}{suffix}"
        d.mkdir()
        (d / "tinytrain.mpy").write_bytes(b"M")
    return tmp_path


def test_own_build_first(tmp_path):
    b = _builds(tmp_path, "armv7emsp", "armv7m", "armv7emdp")
    assert install.find_build("armv7emdp", build=b).name == "natmod-armv7emdp"


@pytest.mark.parametrize("board,have,want", [("armv7emdp", ["armv7emsp", "armv7m"], "armv7emsp"),
                                             ("armv7em", ["armv7m", "armv6m"], "armv7m"),
                                             ("armv7m", ["armv6m"], "armv6m")])
def test_fallback_to_a_build_the_core_runs(tmp_path, board, have, want):
    assert install.find_build(board, build=_builds(tmp_path, *have)).name == f"natmod-{want}"


def test_no_cross_family_fallback(tmp_path):
    b = _builds(tmp_path, "armv7emsp", "x64")
    with pytest.raises(install.InstallError, match="make natmod ARCH=rv32imc"):
        install.find_build("rv32imc", build=b)
    with pytest.raises(install.InstallError, match="ARCH=armv6m"):  # armv6m cannot run Armv7-M code
        install.find_build("armv6m", build=b)


@pytest.mark.parametrize("variant,option", [("small", "TT_OPTIMIZED=0"), ("lean", "TT_OPTIMIZED=lean")])
def test_small_and_lean_builds(tmp_path, variant, option):
    """Each variant is its own folder: the full build does not stand in for
    it, and the error names the make option that builds it."""
    b = _builds(tmp_path, "rv32imc")
    with pytest.raises(install.InstallError, match=option):
        install.find_build("rv32imc", variant, build=b)
    _builds(tmp_path, "rv32imc", suffix=f"-{variant}")
    assert install.find_build("rv32imc", variant, build=b).name == f"natmod-rv32imc-{variant}"
    with pytest.raises(install.InstallError, match="unknown build 'tiny'"):
        install.install("unix:micropython", "tiny", build=b)


def test_xtensawin_names_espressifs_compiler(tmp_path):
    with pytest.raises(install.InstallError, match="Espressif's xtensa-esp32-elf-gcc"):
        install.find_build("xtensawin", build=tmp_path)
