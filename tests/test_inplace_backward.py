"""The backward of a frozen stride-1 depthwise layer writes its input gradient
over its output gradient (compiler.in_place): the trained parameters and
losses stay those of the numpy reference, which keeps every tensor apart."""
import numpy as np
import pytest

import tinytrain
from tinytrain import modelfile as mf
from tinytrain.compiler import compile_model
from tinytrain.reference import Reference

import netzoo
from test_compiler import check_plan

STEPS = 4


def _train(data, xs, ys):
    t = tinytrain.Trainer(data)
    losses = [np.float32(t.step(x.tobytes(), y)).tobytes() for x, y in zip(xs, ys)]
    return losses, t.params()


def _reference(data, xs, ys):
    r = Reference(data)
    losses = [np.float32(r.step(x, label=y)).tobytes() for x, y in zip(xs, ys)]
    return losses, r.params_bytes()


@pytest.fixture(scope="module", params=["cnn", "mbnet"])
def case(request):
    b = netzoo.ZOO[request.param](0)
    g = b.quantize(netzoo.calib(b))
    plan = compile_model(g, netzoo.SCHEMES["biases"](g))
    xs, ys = netzoo.samples(b, g, STEPS, seed=1)
    return g, plan, xs, ys


def test_plan_shares_the_gradient_bytes(case):
    g, plan, _, _ = case
    assert plan.in_place, "the scheme has a frozen stride-1 depthwise layer with an input gradient"
    check_plan(plan)
    apart = compile_model(g, netzoo.SCHEMES["biases"](g), reuse_memory=False)
    assert not apart.in_place
    # the pair needs the output gradient plus the gap at its op, not both tensors
    byname = {t.name: t for t in plan.tensors}
    for dx, (gname, gap) in plan.in_place.items():
        op = byname[dx].first
        both = byname[dx].rec.size + byname[gname].rec.size
        assert plan.live_bytes[op] == sum(t.rec.size for t in plan.live_at(op)) + plan.persist_size - both + \
            gap + byname[gname].rec.size


def test_in_place_trains_as_the_reference(case):
    _, plan, xs, ys = case
    got = _train(plan.data, xs, ys)
    assert got == _reference(plan.data, xs, ys)
    assert got[1] != tinytrain.Trainer(plan.data).params()  # training changed something


def test_a_gap_one_row_short_is_caught(case):
    """Negative control: with the input gradient one row closer the kernel
    would overwrite output-gradient rows it still reads; the model reader
    refuses such a plan at open, naming the op and both tensors."""
    _, plan, xs, ys = case
    ids = {t.name: i for i, t in enumerate(plan.tensors)}
    assert plan.in_place
    for dx in plan.in_place:
        m = mf.Model.parse(plan.data)
        t = m.tensors[ids[dx]]
        t.arena_off += 2 * t.w * t.c
        with pytest.raises(ValueError, match=rf"t0 \(tensor \d+\) and t3 \(tensor {ids[dx]}\) share arena bytes"):
            _train(m.pack(), xs, ys)


def test_a_chain_of_in_place_layers():
    """Two frozen stride-1 depthwise layers in a row: the first one's output
    gradient is written over the second's, its input gradient over its own,
    so three gradients form one unit; still the reference, bit for bit."""
    from tinytrain.builder import NetBuilder
    from tinytrain.compiler import Scheme
    b = NetBuilder((6, 6, 2), seed=3)
    b.conv(4, k=3, stride=1, act="relu")
    b.dwconv(3, 1, act="relu6")
    b.dwconv(3, 1, act="relu6")
    b.pointwise(4, act="relu")
    b.avgpool()
    b.fc(3)
    g = b.quantize(netzoo.calib(b))
    scheme = Scheme(bias={layer.name for layer in g.param_layers}, weights={g.param_layers[-1].name: 1.0})
    plan = compile_model(g, scheme)
    chained = [dx for dx, (gname, _) in plan.in_place.items() if gname in plan.in_place]
    assert chained, plan.in_place
    check_plan(plan)
    xs, ys = netzoo.samples(b, g, STEPS, seed=2)
    got = _train(plan.data, xs, ys)
    assert got == _reference(plan.data, xs, ys)
