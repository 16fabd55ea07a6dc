"""Session-wide settings of the test suite.

The MicroPython tree (tests/micropython_tree.py) is decided once, here, before
any test module is imported: tests/device and the MicroPython tests of
tests/test_stream.py run when there is one and skip with one line when not."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import micropython_tree  # noqa: E402

micropython_tree.export()
