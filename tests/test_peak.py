"""The arena the compiler plans is the arena the core touches.

Which numbers must be equal: the simulator's high-water mark (the end of the
last arena byte a training step leaves written; trainer.measure_peak, two
runs with different canaries so a byte that happens to equal one canary is
still seen) equals the plan's last placed byte, Plan.used_bytes = the end of
the highest tensor (or of the trained parameters); the arena in the file,
Plan.arena_size, is that rounded up to 4 (ALIGN). It need not equal
Plan.peak_live, the most bytes live at one op: the placement may leave gaps.
"""
import re
from pathlib import Path

import numpy as np
import pytest

from tinytrain import cli, planner
from tinytrain import modelfile as mf
from tinytrain.compiler import ALIGN, compile_model
from tinytrain.trainer import Trainer, measure_peak

import netzoo

TTE = Path(__file__).resolve().parents[2] / "shared" / "models" / "tte"
MCUNET = TTE / "mcunet-5fps.pkl"
NEED_MCUNET = pytest.mark.skipif(not MCUNET.exists(), reason="the paper's models are not in ../shared")
MCUNET_LABELS = ("49kb", "74kb", "99kb", "124kb", "148kb")


def aligned(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def planner_schemes(g):
    """Searched-scheme shapes: bias-only of the last k layers, plus a partial weight layer."""
    backbone, _ = planner.split_layers(g)
    convs = [n for n in backbone if g.layer(n).kind == "conv"]
    return {"k1": planner.make_scheme(g, 1),
            "k_all": planner.make_scheme(g, len(backbone)),
            "k2_w": planner.make_scheme(g, min(2, len(backbone)), {convs[-1]: 0.5}),
            "k1_wfirst": planner.make_scheme(g, 1, {convs[0]: 0.25})}


def cases():
    for name in netzoo.ZOO:
        for scheme in list(netzoo.SCHEMES) + ["k1", "k_all", "k2_w", "k1_wfirst"]:
            for fuse in (True, "all", False):
                yield name, scheme, fuse


@pytest.mark.parametrize("name,scheme,fuse", list(cases()))
def test_measured_peak_is_the_plans_last_byte(name, scheme, fuse):
    b = netzoo.ZOO[name](0)
    g = b.quantize(netzoo.calib(b))
    s = netzoo.SCHEMES[scheme](g) if scheme in netzoo.SCHEMES else planner_schemes(g)[scheme]
    plan = compile_model(g, s, fuse=fuse)
    xs, ys = netzoo.samples(b, g, 3)
    measured = measure_peak(plan.data, list(zip(xs, ys)))
    assert measured == plan.used_bytes
    assert plan.arena_size == aligned(measured) == Trainer(plan.data).info()["arena_bytes"]
    assert plan.peak_live <= measured


def test_fused_cases_are_fused():
    """The parametrisation above really covers fused plans, of both kinds."""
    kinds = set()
    for name, scheme, fuse in cases():
        if fuse is False:
            continue
        b = netzoo.ZOO[name](0)
        g = b.quantize(netzoo.calib(b))
        s = netzoo.SCHEMES[scheme](g) if scheme in netzoo.SCHEMES else planner_schemes(g)[scheme]
        plan = compile_model(g, s, fuse=fuse)
        for a, c in plan.fusions.values():
            kinds.update(["producer"] * (a is not None) + ["consumer"] * (c is not None))
            assert any(op.kind == mf.OP_FWD_FUSED for op in plan.model.ops)
    assert kinds == {"producer", "consumer"}


def test_one_canary_can_under_report_two_cannot():
    """A trainer whose canary equals the last byte written reports a short
    peak; measure_peak's second canary sees it."""
    b = netzoo.mbnet(0)
    g = b.quantize(netzoo.calib(b))
    plan = compile_model(g, netzoo.SCHEMES["sparse"](g))
    xs, ys = netzoo.samples(b, g, 2)
    t = Trainer(plan.data)
    for x, y in zip(xs, ys):
        t.step(x, y)
    last = plan.used_bytes - 1
    value = t._arena[last]  # the byte the step leaves at the plan's last position
    fooled = Trainer(plan.data, canary=value)
    for x, y in zip(xs, ys):
        fooled.step(x, y)
    assert fooled.info()["peak_bytes"] < plan.used_bytes
    other = (value + 1) % 256
    assert measure_peak(plan.data, list(zip(xs, ys)), canaries=(value, other)) == plan.used_bytes
    with pytest.raises(ValueError, match="two different"):
        measure_peak(plan.data, list(zip(xs, ys)), canaries=(value, value))


@pytest.fixture(scope="module")
def mcunet():
    from tinytrain.builder import quantize_input
    from tinytrain.convert import tte

    g = tte.load(MCUNET, n_classes=10)
    rng = np.random.default_rng(0)
    xs = quantize_input(g, rng.uniform(-1, 1, size=(2,) + g.tensors[g.input].shape)).reshape(2, -1)
    return g, list(zip(xs, (3, 7)))


@NEED_MCUNET
@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("label", MCUNET_LABELS)
def test_mcunet_published_schemes_measured_peak(mcunet, label, fuse):
    from tinytrain.convert import tte

    g, samples = mcunet
    plan = compile_model(g, tte.published_scheme(g, "mcunet-5fps", label), fuse=fuse)
    assert measure_peak(plan.data, samples) == plan.used_bytes
    assert plan.arena_size == aligned(plan.used_bytes)


@NEED_MCUNET
@pytest.mark.parametrize("label", MCUNET_LABELS)
def test_cli_reports_mcunet_peaks(label, tmp_path, capsys):
    out = tmp_path / "m.ttm"
    assert cli.main(["plan", str(MCUNET), "--classes", "10", "--scheme", f"mcunet-5fps:{label}", "--check-peak",
                     "-o", str(out)]) == 0
    text = capsys.readouterr().out
    arena = int(re.search(r"^arena (\d+) bytes", text, re.M).group(1))
    peak = int(re.search(r"^peak live (\d+) bytes", text, re.M).group(1))
    touched = int(re.search(r"touched ([\d,]+) arena bytes", text).group(1).replace(",", ""))
    model = out.read_bytes()
    assert mf.Model.parse(model).header.arena_size == arena
    # measured here, independently of the command's own check
    xs = np.zeros((2, 128 * 128 * 3), np.int8)
    assert measure_peak(model, [(xs[0], 1), (xs[1], 2)]) == touched == arena
    # the most bytes live at once; first fit may leave a gap below the arena's end
    assert peak <= arena
