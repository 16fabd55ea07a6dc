"""The API misuse table (tests/misuse_cases.py) on the host simulator: every
row raises the exception and message the table states, and leaves the
trainer and the files as its checks say. The very same script runs on the
MicroPython ports (tests/device/test_misuse_device.py)."""
import pytest

import misuse_cases


@pytest.fixture(scope="module")
def host_rows(tmp_path_factory):
    d = tmp_path_factory.mktemp("misuse")
    misuse_cases.write_models(d)
    return misuse_cases.parse(misuse_cases.run_host(d, misuse_cases.CASES))


def test_table_size():
    names = [c.name for c in misuse_cases.CASES]
    assert len(names) == len(set(names))
    assert len(misuse_cases.BOARD_CASES) >= 40


@pytest.mark.parametrize("case", misuse_cases.CASES, ids=lambda c: c.name)
def test_misuse_on_host(host_rows, case):
    assert misuse_cases.mismatches([case], host_rows) == []
