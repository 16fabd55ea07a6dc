"""The API misuse table (tests/misuse_cases.py) on the host simulator: every
row raises the exception and message the table states, and leaves the
trainer and the files as its checks say. The very same script runs on the
MicroPython ports (tests/device/test_misuse_device.py)."""
import subprocess
import sys

import pytest

import misuse_cases
import netzoo
from tinytrain.compiler import Scheme, compile_model


def write_models(d) -> None:
    """model.ttm (cross-entropy) and mse.ttm, the files the script reads."""
    (d / "model.ttm").write_bytes(netzoo.build("cnn", "full", seed=3)[2].data)
    b = netzoo.ZOO["mlp"](3)
    g = b.quantize(netzoo.calib(b, seed=3))
    (d / "mse.ttm").write_bytes(compile_model(g, Scheme.full(g, loss="mse")).data)


def run_script(d, cases) -> str:
    (d / "misuse.py").write_text(misuse_cases.script(cases))
    r = subprocess.run([sys.executable, "misuse.py"], cwd=d, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def host_rows(tmp_path_factory):
    d = tmp_path_factory.mktemp("misuse")
    write_models(d)
    return misuse_cases.parse(run_script(d, misuse_cases.CASES))


def test_table_size():
    names = [c.name for c in misuse_cases.CASES]
    assert len(names) == len(set(names))
    assert sum(not c.host_only for c in misuse_cases.CASES) >= 40


@pytest.mark.parametrize("case", misuse_cases.CASES, ids=lambda c: c.name)
def test_misuse_on_host(host_rows, case):
    assert misuse_cases.mismatches([case], host_rows) == []
