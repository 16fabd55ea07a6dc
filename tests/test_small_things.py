"""The small things a newcomer meets: examples' --help says what they show,
outputs are checked before a run, plots of personalize --subject all and of
memory under a budget."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("0*.py"))
ENV = {"PYTHONPATH": str(ROOT / "host_tools"), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}


def _doc(path: Path) -> str:
    import ast
    return ast.get_docstring(ast.parse(path.read_text()), clean=False)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_help_prints_its_whole_doc(path):
    r = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0
    last = [line.strip() for line in _doc(path).strip().splitlines() if line.strip()][-1]
    assert last in r.stdout  # the end of the doc, not its first line cut mid-sentence


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_out_checked_before_the_run(path, tmp_path):
    r = subprocess.run([sys.executable, str(path), "--quick", "--out", str(tmp_path / "no" / "x.png")],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_personalize_all_plot(tmp_path):
    from tinytrain.demos.personalize import Result, plot_all
    rs = [Result(s, 0, "sim", "bias+last", 100, 50, 0.76 + s / 100, 0.80 + s / 100, 0.75, 0.83) for s in (1, 2, 3)]
    plot_all(rs, tmp_path / "all.png")
    assert (tmp_path / "all.png").read_bytes()[:4] == b"\x89PNG"


def test_demo_outputs_checked_first(tmp_path, capsys):
    from tinytrain import cli
    assert cli.main(["demo", "personalize", "--plot", str(tmp_path / "no" / "p.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["demo", "personalize", "--subject", "all", "--save-model", str(tmp_path / "m.ttm")]) == 2
    assert "give --subject N" in capsys.readouterr().err


def test_memory_plot_with_budget(tmp_path):
    import netzoo
    from tinytrain.plots import plot_memory
    plan = netzoo.build("cnn", "sparse")[2]
    plot_memory(plan, tmp_path / "m.png", budget=plan.arena_size + 1000)
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
