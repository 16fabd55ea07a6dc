"""The C core's compiler flags, read from the one list every build uses
(micropython_modules/tinytrain/core/core_flags.mk). No import of the package:
setup.py loads this file on its own."""
from pathlib import Path

CORE_DIR = Path(__file__).resolve().parents[2] / "micropython_modules" / "tinytrain" / "core"
FLAGS_FILE = CORE_DIR / "core_flags.mk"


def core_sources(core=CORE_DIR) -> list:
    """Every C file of the core: its top level and kernels/ (the Makefiles' wildcard, in Python)."""
    return sorted(str(p) for p in [*Path(core).glob("*.c"), *Path(core).glob("kernels/*.c")])


def core_cflags(path=FLAGS_FILE) -> list:
    """The flags of `TT_CORE_CFLAGS := ...` (continuation lines joined, comments dropped)."""
    text = Path(path).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        name, sep, value = line.split("#", 1)[0].partition(":=")
        if sep and name.strip() == "TT_CORE_CFLAGS":
            return value.split()
    raise ValueError(f"{path}: no TT_CORE_CFLAGS := line")
