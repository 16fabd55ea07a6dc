"""Behavioural smoke test of examples/01_digits_qas.py: a --quick run trains
the int8 MLP from random init with QAS well above chance (10%)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "01_digits_qas.py"


def test_digits_quick(tmp_path):
    png, js = tmp_path / "digits.png", tmp_path / "digits.json"
    res = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--seed", "0",
                          "--out", str(png), "--json", str(js)],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "test accuracy" in res.stdout
    assert png.is_file() and png.stat().st_size > 0

    out = json.loads(js.read_text())
    rows = {r["name"]: r for r in out["rows"]}
    assert out["epochs"] == 3
    for r in rows.values():
        assert len(r["accs"]) == out["epochs"] + 1  # before training + each epoch

    qas = rows["QAS, residue (fp32 lr)"]
    assert qas["qas"] is True and qas["residue"] is True
    assert qas["accs"][-1] > 0.70, qas["accs"]
    assert qas["accs"][-1] > qas["accs"][0] + 0.5  # it learned, not a lucky init
    assert rows["fp32 SGD (float64 numpy)"]["accs"][-1] > 0.70
