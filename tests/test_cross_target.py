"""The same C core on the host (ASan/UBSan), on the Cortex-M7 and on the RV32
core (both under qemu) gives the simulator's results bit for bit."""
import numpy as np
import pytest

import tinytrain
from tinytrain import runner

import netzoo

STEPS = 24


def simulate(plan, xs, labels, evals):
    t = tinytrain.Trainer(plan.data)
    losses = [np.float32(t.step(x.tobytes(), y)) for x, y in zip(xs, labels)]
    classes = [t.predict(x.tobytes()) for x in evals]
    logits = [t.logits(x.tobytes()) for x in evals]
    return losses, classes, logits, t.params()


@pytest.fixture(scope="module")
def host_exe(tmp_path_factory):
    if runner.missing_tools("host"):
        pytest.skip("needs a C compiler")
    return runner.build("host", tmp_path_factory.mktemp("host"))


@pytest.fixture(scope="module")
def m7_exe(tmp_path_factory):
    missing = runner.missing_tools("m7")
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (make setup installs them)")
    return runner.build("m7", tmp_path_factory.mktemp("m7"))


@pytest.fixture(scope="module")
def rv32_exe(tmp_path_factory):
    missing = runner.missing_tools("rv32")
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (make setup installs them)")
    return runner.build("rv32", tmp_path_factory.mktemp("rv32"))


# mbnet/bias_only runs fused ops (expand + depthwise + project); test_fusion.py has more;
# */biases take depthwise input gradients in place
CASES = [("mlp", "full_residue"), ("cnn", "full"), ("mbnet", "sparse"), ("mbnet", "full_residue"),
         ("cnn", "bias_only"), ("mbnet", "bias_only"), ("cnn", "biases"), ("mbnet", "biases")]


def _check(exe, target, name, scheme):
    b, g, plan = netzoo.build(name, scheme, seed=3)
    xs, labels = netzoo.samples(b, g, STEPS, seed=4)
    evals = xs[:4]
    want = simulate(plan, xs, labels, evals)
    got = runner.run(exe, plan.data, list(zip(xs, labels)), evals, target=target)
    assert got.status == 0, got.message
    assert [l.tobytes() for l in got.losses] == [l.tobytes() for l in want[0]]
    assert got.classes == want[1]
    assert got.logits == want[2]
    assert got.params == want[3]
    # training did change something, so the comparison is not vacuous
    assert got.params != tinytrain.Trainer(plan.data).params()
    return got


@pytest.mark.parametrize("name,scheme", CASES)
def test_host_sanitized_matches_simulator(host_exe, name, scheme):
    _check(host_exe, "host", name, scheme)


@pytest.mark.parametrize("name,scheme", CASES)
def test_cortex_m7_matches_simulator(m7_exe, name, scheme):
    got = _check(m7_exe, "m7", name, scheme)
    assert len(got.step_instructions) == STEPS and min(got.step_instructions) > 0


@pytest.mark.parametrize("name,scheme", CASES)
def test_rv32_matches_simulator(rv32_exe, name, scheme):
    """rv32imac without an FPU: the float parts of the core run on libgcc's soft float."""
    got = _check(rv32_exe, "rv32", name, scheme)
    assert len(got.step_instructions) == STEPS and min(got.step_instructions) > 0
