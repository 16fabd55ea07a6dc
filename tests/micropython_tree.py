"""Which MicroPython tree the device and stream tests build against.

MICROPY_DIR when it is set; otherwise ../shared/micropython beside the
repository when that folder exists (the rule firmware/firmware.mk applies to
the make targets). tests/conftest.py puts the answer into the environment, so
the tests, the `make` builds they start and the CLI they call agree on it.
"""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "micropython"


def resolve() -> str:
    """The tree to use, or "" when there is none."""
    given = os.environ.get("MICROPY_DIR", "").strip()
    if given:
        return given
    return str(DEFAULT) if DEFAULT.is_dir() else ""


def export() -> str:
    """resolve(), written back to os.environ["MICROPY_DIR"] when it found a tree."""
    tree = resolve()
    if tree:
        os.environ["MICROPY_DIR"] = tree
    return tree


SKIP_REASON = ("no MicroPython tree: MICROPY_DIR is unset and ../shared/micropython does not exist "
               "(a MicroPython v1.28.0 tree, see docs/micropython.md)")
