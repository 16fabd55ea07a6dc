"""The classroom examples 02-05 (examples/) in their --quick form: each runs in
a subprocess in a temporary directory, exits 0, writes its figure there by
default, and shows the one behaviour it is about in the table it prints.
(Example 01 has its own test, tests/test_example_digits.py.)"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script, png, tmp_path, *args):
    """Run an example with --quick --seed 0 in tmp_path; its stdout. The
    figure must appear there under its default name."""
    res = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", "--seed", "0", *args],
                         cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    out = tmp_path / png
    assert out.is_file() and out.stat().st_size > 10_000, sorted(p.name for p in tmp_path.iterdir())
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return res.stdout


def num(text):
    return float(text.replace(",", ""))


def test_02_qas_on_off(tmp_path):
    out = run("02_qas_on_off.py", "qas_on_off.png", tmp_path)
    # method, lr, before, accuracy after each epoch (1 with --quick)[, weights changed of N, biases changed of M]
    rows = {}
    for m in re.finditer(r"^(float|QAS|no QAS)\s+([\d.e+]+)\s+([\d.]+)\s+([\d.]+)"
                         r"(?:\s+([\d,]+) of ([\d,]+)\s+(\d+) of (\d+))?\s*$", out, re.M):
        rows[(m[1], float(m[2]))] = [num(v) if v else None for v in m.groups()[2:]]
    qas, noqas, flt = rows[("QAS", 0.01)], rows[("no QAS", 0.01)], rows[("float", 0.01)]
    # At the float learning rate, int8 SGD without QAS rounds every step away:
    # nothing changes, the accuracy stays; with QAS the model learns.
    assert noqas[2] == 0 and noqas[4] == 0 and noqas[3] > 1000 and noqas[5] > 10, noqas
    assert noqas[1] == noqas[0], noqas
    assert qas[2] > 1000 and qas[4] > 10, qas
    # quick, seeds 0-4 measured: QAS - no QAS +24.6 .. +33.0 points; |QAS - float| 0.3 .. 8.5
    assert qas[1] >= noqas[1] + 10, (qas, noqas)
    assert abs(qas[1] - flt[1]) < 12, (qas, flt)  # QAS tracks float at the same rate
    # The no-QAS sweep's rate (1000, about 1/s_w^2 times larger) trains the weights but
    # hardly the biases (seeds 0-4: 0, 0, 1, 0, 0 of 82 changed).
    sweep = rows[("no QAS", 1000.0)]
    assert sweep[2] > 1000 and sweep[4] <= 2, sweep


def test_03_sparse_vs_last_vs_all(tmp_path):
    out = run("03_sparse_vs_last_vs_all.py", "sparse_vs_last_vs_all.png", tmp_path, "--budget", "8000")
    rows = {}
    for m in re.finditer(r"^(last layer|bias last \d|searched|all layers)\s+.+?\s+([\d,]+)\s+([\d,]+)\s+(yes|NO)\s+"
                         r"([\d.]+)\s*$", out, re.M):
        rows[m[1]] = {"params": num(m[2]), "arena": num(m[3]), "fits": m[4] == "yes", "acc": num(m[5])}
    assert {"last layer", "searched", "all layers"} <= set(rows), out[-2000:]
    s, last, full = rows["searched"], rows["last layer"], rows["all layers"]
    assert s["arena"] <= 8000 and s["fits"]
    assert full["arena"] > 8000 and not full["fits"]
    assert s["acc"] >= last["acc"] + 5, rows  # quick, seeds 0-4 measured: +9.1 .. +18.2 points
    bias = [v for k, v in rows.items() if k.startswith("bias")]
    assert bias and bias[0]["arena"] <= 8000 and s["acc"] > bias[0]["acc"]


def test_04_budget_sweep(tmp_path):
    out = run("04_budget_sweep.py", "budget_sweep.png", tmp_path)
    points = [(num(m[1]), m[2].strip(), num(m[3]), num(m[5]))
              for m in re.finditer(r"^\s*([\d,]+)  (.+?)\s+([\d,]+)\s+([\d,]+)\s+[\d.]+\s+([\d.]+)\s*$", out, re.M)]
    assert len(points) == 4, out[-2000:]
    refs = {m[1]: (num(m[2]), num(m[3])) for m in
            re.finditer(r"^  (last layer|all layers)\s+arena\s+([\d,]+) B.*test\s+([\d.]+)%", out, re.M)}
    assert points[0][1] == "last layer" and points[0][0] == refs["last layer"][0]
    assert points[-1][0] == refs["all layers"][0]
    for budget, _, arena, _ in points:
        assert arena <= budget
    # quick, seeds 0-3 measured: best searched - last layer +9.1 .. +15.8 points
    assert max(p[3] for p in points) >= refs["last layer"][1] + 5, (points, refs)


def test_05_live_stream(tmp_path):
    out = run("05_live_stream.py", "live_stream.png", tmp_path)
    counts = re.findall(r"^(sets|shuffled): the device trained (\d+) of (\d+) samples streamed", out, re.M)
    assert len(counts) == 2 and all(a == b == "290" for _, a, b in counts), counts
    block = out[out.index("\nshuffled "):]
    start = num(re.search(r"start\s+([\d.]+)", block)[1])
    rounds = [(num(m[1]), num(m[2])) for m in re.finditer(r"^\s+\d\s+([\d.]+)\s+[\d.]+\s+([\d.]+)\s*$", block, re.M)]
    assert len(rounds) == 2
    # Shuffled windows: the device's held-out accuracy rises clearly and its loss falls
    # (quick, seeds 0-5 measured: +11.0 .. +17.7 points).
    assert rounds[-1][1] >= start + 5, (start, rounds)
    assert rounds[-1][0] < rounds[0][0], rounds
