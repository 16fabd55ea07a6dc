"""Smoke run of the model fuzzer (fuzz/): builds the libFuzzer harness with
ASan and UBSan, replays every saved crash input, the crafted files of the
hardening findings and fuzzes ~25 s from the seeds. Fails on any crash.
Long runs: `make fuzz SECONDS=N`."""
import subprocess
import sys
from pathlib import Path

import pytest

import test_model_rules as rules

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fuzz"))
import run_fuzz  # noqa: E402


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory):
    clang = run_fuzz.find_clang()
    if not clang:
        pytest.skip("needs clang with libFuzzer")
    return run_fuzz.build(tmp_path_factory.mktemp("fuzz"), clang)


def test_fuzz_smoke(fuzzer, tmp_path):
    run_fuzz.make_seeds(tmp_path / "seeds")
    run_fuzz.replay(fuzzer)  # raises on a saved crash input that crashes again
    res = run_fuzz.fuzz(fuzzer, tmp_path, tmp_path / "seeds", 25, 1)
    assert res["exit_code"] == 0 and not res["crashes"], res
    assert res["executions"] > 1000 and res["coverage_edges"] > 500, res


def test_harness_runs_the_findings(fuzzer, tmp_path):
    """Each crafted file of the findings, once more through the harness (the
    whole API, sanitizers on), so a crash there fails here too."""
    exe = fuzzer
    _, _, plan = rules.netzoo.build("mbnet", "full", seed=1)
    files = []
    for i, (case, (fn, _, _)) in enumerate(sorted(rules.FINDINGS.items())):
        f = tmp_path / f"finding{i}.ttrn"
        f.write_bytes(rules.edited(plan.data, fn))
        files.append(str(f))
    good = tmp_path / "good.ttrn"
    good.write_bytes(plan.data)
    p = subprocess.run([str(exe), str(good), *files], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
