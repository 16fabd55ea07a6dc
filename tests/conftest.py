"""Session-wide settings of the test suite: the MicroPython tree and
hypothesis' determinism.

The MicroPython tree (tests/micropython_tree.py) is decided once, here, before
any test module is imported: tests/device and the MicroPython tests of
tests/test_stream.py run when there is one and skip with one line when not."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import micropython_tree  # noqa: E402

micropython_tree.export()

# Property-based tests draw the same examples on every run (a suite that passes
# passes again): examples derived from each test, no example database. A local
# exploration can still ask for fresh ones: pytest --hypothesis-profile=explore.
from hypothesis import settings  # noqa: E402

settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("deterministic")
