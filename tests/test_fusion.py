"""Layer fusion (compile_model(..., fuse=...), docs/format.md "Fused ops"): a
frozen depthwise layer runs row by row together with the conv producing its
input (kept as a ring of kernel-height rows) and/or the 1x1 conv consuming
its output (one row), so those tensors never exist in full. Every result is
bit-identical to running the layers one after the other: checked in the
simulator against the unfused plan and the numpy reference (every stored
tensor and the ring's rows), in tt_run on the host (ASan/UBSan, reference and
optimised kernels) and on the emulated Cortex-M7."""
import functools
import operator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinytrain
from tinytrain import modelfile as mf
from tinytrain import runner
from tinytrain.builder import NetBuilder, quantize_input
from tinytrain.compiler import Scheme, compile_model
from tinytrain.reference import Reference

import fused_rows
import netzoo
from test_bitexact import compare_step
from test_compiler import check_plan
from test_kernels_opt import SHAPED, _same, _samples, _schemes, host_exes, m7_exes  # noqa: F401

TTE = Path(__file__).resolve().parents[2] / "shared" / "models" / "tte"
F746_ARENA = 160 * 1024  # boards/TINYTRAIN_F746DISC: the firmware's static arena


def fused_ops(plan):
    return [op for op in plan.model.ops if op.kind == mf.OP_FWD_FUSED]


def run_sim(plan, xs, ys):
    t = tinytrain.Trainer(plan.data)
    losses = [np.float32(t.step(x.tobytes(), y)).tobytes() for x, y in zip(xs, ys)]
    return losses, t.params(), [t.logits(x.tobytes()) for x in xs], [t.predict(x.tobytes()) for x in xs]


def same_as_unfused(graph, scheme, xs, ys, fuse="all"):
    fused = compile_model(graph, scheme, fuse=fuse)
    plain = compile_model(graph, scheme, fuse=False)
    assert not fused_ops(plain)
    assert run_sim(fused, xs, ys) == run_sim(plain, xs, ys)
    return fused, plain


# -- what the compiler fuses --------------------------------------------------

def test_fusions_of_mbnet():
    b = netzoo.mbnet(0)
    g = b.quantize(netzoo.calib(b))
    head = g.param_layers[-1].name
    plan = compile_model(g, Scheme(bias={head}, weights={head: 1.0}), fuse="all")
    names = [n for n in plan.op_names if "+" in n]
    # expand + depthwise + project twice; conv7 then feeds dwconv8 too, but a
    # layer takes part in one fused op only (the first that claims it)
    assert names == ["forward conv1+dwconv2+conv3", "forward conv5+dwconv6+conv7"]
    streamed = {t.name for t in plan.tensors if t.rec.flags & mf.TF_STREAMED}
    assert streamed == {"conv1", "dwconv2", "conv5", "dwconv6"}
    for op in fused_ops(plan):
        ring = plan.model.tensors[op.t[mf.FUSED_RING]]
        assert ring.h == plan.model.layers[op.layer].kh  # kernel-height rows, not the whole tensor
    check_plan(plan)
    assert compile_model(g, Scheme(bias={head}, weights={head: 1.0}), fuse="producer").arena_size <= \
        compile_model(g, Scheme(bias={head}, weights={head: 1.0}), fuse=False).arena_size


def test_trained_layers_are_not_fused():
    b = netzoo.mbnet(0)
    g = b.quantize(netzoo.calib(b))
    names = [layer.name for layer in g.param_layers]
    # dwconv6 bias-trained: its output needs a mask (fine) but its input and
    # output must not need gradients; conv5 trained: its output needs a mask
    plan = compile_model(g, Scheme(bias={"dwconv6", names[-1]}, weights={"conv5": 0.5, names[-1]: 1.0}),
                         fuse="all")
    ops = {n for n in plan.op_names if "+" in n}
    assert ops == {"forward conv1+dwconv2+conv3"}
    plan = compile_model(g, Scheme(bias={"dwconv6", names[-1]}, weights={names[-1]: 1.0}), fuse="all")
    assert {n for n in plan.op_names if "+" in n} == {"forward conv1+dwconv2+conv3", "forward conv5+dwconv6"}
    op = next(op for op in fused_ops(plan) if plan.model.layers[op.layer].name == "dwconv6")
    assert op.t[mf.FUSED_MASK] != mf.NONE  # the bias update needs dwconv6's mask
    assert op.t[mf.FUSED_C] == mf.NONE


def test_default_keeps_only_fusions_the_arena_needs():
    b = netzoo.mbnet(0)
    g = b.quantize(netzoo.calib(b))
    scheme = Scheme.last_layers(g, n_bias=3, n_weights=0)
    every = compile_model(g, scheme, fuse="all")
    default = compile_model(g, scheme)
    none = compile_model(g, scheme, fuse=False)
    assert default.arena_size <= every.arena_size < none.arena_size
    assert 0 < len(fused_ops(default)) <= len(fused_ops(every))
    with pytest.raises(ValueError, match="fuse must be"):
        compile_model(g, scheme, fuse="maybe")


def test_graph_from_fused_model_plans_again():
    from tinytrain.compiler import graph_from_model
    _, g, plan = netzoo.build("mbnet", "bias_only")
    assert fused_ops(plan)
    g2 = graph_from_model(plan.data)
    assert len(g2.layers) == len(g.layers) and len(g2.tensors) == len(g.tensors)
    assert compile_model(g2, Scheme.last_layers(g2, n_bias=3, n_weights=0)).arena_size == plan.arena_size


# -- bit-identical: simulator, reference ----------------------------------------

@pytest.mark.parametrize("name", ["cnn", "mbnet"])
@pytest.mark.parametrize("scheme", ["bias_only", "sparse", "full"])
def test_zoo_fused_equals_unfused(name, scheme):
    b, g, _ = netzoo.build(name, scheme, seed=4)
    xs, ys = netzoo.samples(b, g, 5, seed=5)
    fused, _ = same_as_unfused(g, netzoo.SCHEMES[scheme](g), xs, ys)
    if scheme == "bias_only":
        assert fused_ops(fused)


@pytest.mark.parametrize("label,n_fused", [("ir/frozen", 3), ("ir/dw_bias", 1), ("ir/late_bias", 3)])
def test_ir_fused_every_tensor(label, n_fused):
    b, g, scheme = FUSED_CASES[label]
    xs, ys = _samples(b, g, 3, 1)
    fused, _ = same_as_unfused(g, scheme, xs, ys)
    assert len(fused_ops(fused)) == n_fused
    compare_step(compile_model(g, scheme, reuse_memory=False, fuse="all"), xs[0], ys[0])


@pytest.mark.parametrize("name", ["cnn", "mbnet"])
@pytest.mark.parametrize("scheme", ["bias_only", "sparse"])
def test_zoo_fused_every_tensor(name, scheme):
    b, g, _ = netzoo.build(name, scheme, seed=2)
    plan = compile_model(g, netzoo.SCHEMES[scheme](g), reuse_memory=False, fuse="all")
    xs, ys = netzoo.samples(b, g, 1, seed=5)
    compare_step(plan, xs[0], ys[0])


@pytest.mark.parametrize("name", ["big", "dw", "dw4"])
@pytest.mark.parametrize("scheme", ["frozen", "stem", "sparse"])
def test_shaped_fused(name, scheme):
    """The kernels' edge-case networks (odd sizes, channel tails, stride 2,
    padding beyond the input, the stack-budget fallbacks) fused wherever legal."""
    b = SHAPED[name](0)
    g = b.quantize(netzoo.calib(b, n=8, seed=0))
    xs, ys = _samples(b, g, 3, 1)
    fused, _ = same_as_unfused(g, _schemes(g)[scheme], xs, ys)
    plan = compile_model(g, _schemes(g)[scheme], reuse_memory=False, fuse="all")
    compare_step(plan, xs[0], ys[0])


def inverted_residual_net(pick):
    """Stems and inverted-residual blocks in every fusable shape: expand (or
    not), depthwise 3/5/7 stride 1/2 with or without padding, project (or
    not), skip adds; channel counts off multiples of 4, odd sizes.
    pick(options) chooses one of a list (hypothesis or a seeded generator)."""
    h, w = pick(range(5, 15)), pick(range(5, 15))
    b = NetBuilder((h, w, pick(range(1, 5))), seed=pick(range(2 ** 16)))
    b.conv(pick(range(2, 10)), k=pick([1, 3, 5]), stride=pick([1, 2]), act=pick([None, "relu", "relu6"]))
    for _ in range(pick([1, 2, 3])):
        hh, ww, c = b.shapes[b.last]
        skip = b.last
        if pick([True, False]):
            b.pointwise(pick(range(1, 14)), act=pick([None, "relu6"]))
        k = pick([3, 5, 7] if min(hh, ww) >= 3 else [3])
        pad = pick([None, 0]) if min(hh, ww) >= k else None
        stride = pick([1, 2]) if min(hh, ww) > 2 else 1
        b.dwconv(k, stride, act=pick([None, "relu6"]), pad=pad)
        if pick([True, False]):
            y = b.pointwise(c if pick([True, False]) else pick(range(1, 10)), act=None)
            if b.shapes[y] == b.shapes[skip]:
                b.add(skip, y, act=pick([None, "relu"]))
    if pick([True, False]):
        b.avgpool()
    b.fc(pick(range(2, 6)))
    return b


def mostly_frozen(graph, pick):
    """Layers from a random cut on trained at random (fusions legal before
    it), sometimes the biases of a depthwise layer before it (a fused op that
    writes its clamp mask)."""
    names = [layer.name for layer in graph.param_layers]
    cut = pick(range(len(names) // 2, len(names)))
    bias = {n for n in names[cut:-1] if pick(range(3)) == 0} | {names[-1]}
    weights = {n: r for n in names[cut:-1] if (r := pick([0, 0, 0.5, 1.0]))}
    weights[names[-1]] = 1.0
    dws = [layer.name for layer in graph.param_layers[:cut] if layer.kind == "dwconv"]
    if dws and pick([True, False]):
        bias.add(pick(dws))
    return Scheme(bias=bias, weights=weights, residue=pick([True, False]), lr=pick([0.05, 0.5]))


def numpy_pick(seed):
    rng = np.random.default_rng(seed)
    return lambda options: list(options)[int(rng.integers(len(options)))]


@st.composite
def fusable_nets(draw):
    def pick(options):
        return draw(st.sampled_from(list(options)))
    b = inverted_residual_net(pick)
    graph = b.quantize(netzoo.calib(b, n=12, seed=pick(range(100))))
    return b, graph, mostly_frozen(graph, pick), pick(range(2 ** 16))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fusable_nets())
def test_random_fused_networks(case):
    b, graph, scheme, seed = case
    rng = np.random.default_rng(seed)
    ncls = graph.tensors[graph.output].numel
    xs = [quantize_input(graph, rng.uniform(-1, 1, size=b.input_shape)).reshape(-1) for _ in range(3)]
    ys = [int(rng.integers(0, ncls)) for _ in xs]
    fused, _ = same_as_unfused(graph, scheme, xs, ys)
    check_plan(fused)
    ref = Reference(fused.data)
    t = tinytrain.Trainer(fused.data)
    for x, y in zip(xs, ys):
        assert np.float32(t.step(x.tobytes(), y)).tobytes() == np.float32(ref.step(x, label=y)).tobytes()
        assert t.params() == ref.params_bytes()
        assert t.predict(x.tobytes()) == ref.predict(x)
    every = compile_model(graph, scheme, reuse_memory=False, fuse="all")
    compare_step(every, xs[0], ys[0])


def over_input_ops(plan) -> list:
    """Indices of the fused ops whose output the plan placed over their input."""
    byname = {t.name: t for t in plan.tensors}
    return [byname[x].last for x, _ in plan.over_input.values()]


def test_output_over_input_at_the_limit():
    """A fused op's output placed as far up over its input as the row rule
    allows (fused_rows walks the op's row loop) trains as the numpy
    reference, which keeps every tensor apart; and the compiler's own plan
    overlaps them. Random stems and blocks, every fusion mode."""
    n = 0
    for seed in range(10):
        pick = numpy_pick(seed)
        b = inverted_residual_net(pick)
        g = b.quantize(netzoo.calib(b, n=8, seed=seed))
        scheme = mostly_frozen(g, pick)
        rng = np.random.default_rng(seed)
        xs = [quantize_input(g, rng.uniform(-1, 1, size=b.input_shape)).reshape(-1) for _ in range(2)]
        ys = [int(rng.integers(0, g.tensors[g.output].numel)) for _ in xs]
        for mode in ("all", "producer", "consumer"):
            plan = compile_model(g, scheme, fuse=mode)
            check_plan(plan)
            for i in over_input_ops(plan):
                op = plan.model.ops[i]
                x, y = (plan.model.tensors[t] for t in fused_rows.fused_io(plan.model, op))
                assert x.arena_off < y.arena_off + y.size and y.arena_off < x.arena_off + x.size
                shift = min(fused_rows.largest_shift(plan.model, op), x.size) // 4 * 4
                data = fused_rows.with_output_at(plan.data, i, shift)
                t, ref = tinytrain.Trainer(data), Reference(data)
                for xv, yv in zip(xs, ys):
                    assert np.float32(t.step(xv.tobytes(), yv)).tobytes() == \
                        np.float32(ref.step(xv, label=yv)).tobytes()
                    assert t.params() == ref.params_bytes()
                    assert t.predict(xv.tobytes()) == ref.predict(xv)
                n += 1
    assert n >= 10, n


def taller_rings(plan, extra):
    """The plan with every ring `extra` rows taller, placed after the arena
    (the reader takes rings of at least the kernel height; the kernel then
    moves rows down less often)."""
    m = mf.Model.parse(plan.data)
    end = m.header.arena_size
    for op in m.ops:
        if op.kind == mf.OP_FWD_FUSED and op.t[mf.FUSED_RING] != mf.NONE:
            r = m.tensors[op.t[mf.FUSED_RING]]
            r.h += extra
            r.size = r.h * r.w * r.c
            r.arena_off = end
            end += (r.size + 3) // 4 * 4
    m.header.arena_size = end
    return m.pack()


@pytest.mark.parametrize("extra", [1, 2, 5])
def test_taller_ring_same_results(extra):
    b = SHAPED["dw4"](0)
    g = b.quantize(netzoo.calib(b, n=8, seed=0))
    plan = compile_model(g, _schemes(g)["frozen"], fuse="all")
    assert fused_ops(plan)
    xs, ys = _samples(b, g, 3, 1)

    assert run_sim(SimpleNamespace(data=taller_rings(plan, extra)), xs, ys) == run_sim(plan, xs, ys)


# -- the C core elsewhere: host (sanitizers), Cortex-M7 ---------------------------

def ir_net(seed=0):
    """Each fused kernel path: the stem conv (im2col rows) into a depthwise
    on 6 channels (per-channel kernel), expand into 5x5 stride 2 on 12
    channels (4 at a time), 7x7 with more padding than rows, a depthwise
    without padding, projects; odd widths, so a row of a 6- or 5-channel
    output does not start a mask byte (the optimised kernels leave those rows
    to the reference)."""
    b = NetBuilder((15, 13, 3), seed=seed)
    b.conv(6, k=3, stride=2, act="relu6")  # 8 x 7 x 6
    b.dwconv(3, 1, act="relu6")
    b.pointwise(5, act=None)
    b.pointwise(12, act="relu6")
    b.dwconv(5, 2, act="relu6")            # 4 x 4 x 12
    b.pointwise(6, act=None)
    b.pointwise(8, act="relu6")
    b.dwconv(7, 1, act="relu6")            # pad 3 on 4 rows
    b.pointwise(7, act=None)
    b.dwconv(3, 2, act=None, pad=0)        # 1 x 1 x 7
    b.fc(3)
    return b


def _fused_cases():
    b = ir_net(1)
    g = b.quantize(netzoo.calib(b, n=8, seed=1))
    names = [layer.name for layer in g.param_layers]
    dws = {layer.name for layer in g.param_layers if layer.kind == "dwconv"}
    cases = [("ir/frozen", b, g, Scheme(bias={names[-1]}, weights={names[-1]: 1.0})),
             ("ir/dw_bias", b, g, Scheme(bias=dws | {names[-1]}, weights={names[-1]: 1.0})),
             ("ir/late_bias", b, g, Scheme(bias={"dwconv7", names[-1]}, weights={names[-1]: 1.0}))]
    for name, scheme in (("mbnet", "bias_only"), ("mbnet", "sparse"), ("cnn", "bias_only")):
        b, g, _ = netzoo.build(name, scheme, seed=6)
        cases.append((f"{name}/{scheme}", b, g, netzoo.SCHEMES[scheme](g)))
    for name in ("big", "dw", "dw4"):
        b = SHAPED[name](2)
        g = b.quantize(netzoo.calib(b, n=8, seed=2))
        cases.append((f"{name}/frozen", b, g, _schemes(g)["frozen"]))
    return cases


def _random_cases(n, seed0):
    cases = []
    for seed in range(seed0, seed0 + n):
        pick = numpy_pick(seed)
        b = inverted_residual_net(pick)
        g = b.quantize(netzoo.calib(b, n=8, seed=seed))
        cases.append((f"random{seed}", b, g, mostly_frozen(g, pick)))
    return cases


FUSED_CASES = {label: (b, g, s) for label, b, g, s in _fused_cases() + _random_cases(8, 0)}
M7_CASES = ["ir/frozen", "ir/dw_bias", "ir/late_bias", "mbnet/bias_only", "mbnet/sparse", "cnn/bias_only", "big/frozen",
            "dw/frozen", "dw4/frozen", "random0", "random2", "random5"]


def _check_target(exes, target, label):
    b, g, scheme = FUSED_CASES[label]
    xs, ys = _samples(b, g, 3, 7)
    fused = compile_model(g, scheme, fuse="all")
    plain = compile_model(g, scheme, fuse=False)
    ref, opt = _same(exes, target, fused, xs, ys, xs[:2])  # reference kernels = optimised kernels
    sim = run_sim(plain, xs, ys)                            # = the unfused simulator
    assert [v.tobytes() for v in opt.losses] == sim[0]
    assert opt.params == sim[1]
    assert opt.logits == sim[2][:2]
    return fused, plain, opt


@pytest.mark.parametrize("label", sorted(FUSED_CASES))
def test_fused_host_sanitized(host_exes, label):
    _check_target(host_exes, "host", label)


def at_the_limit(plan) -> list:
    """The plan once per fused op over its input, that op's output moved as
    far up over its input as the row rule allows."""
    out = []
    for i in over_input_ops(plan):
        op = plan.model.ops[i]
        x = plan.model.tensors[fused_rows.fused_io(plan.model, op)[0]]
        shift = min(fused_rows.largest_shift(plan.model, op), x.size) // 4 * 4
        out.append(SimpleNamespace(data=fused_rows.with_output_at(plan.data, i, shift)))
    return out


@pytest.mark.parametrize("target,labels", [("host", ["ir/frozen", "mbnet/bias_only", "dw4/frozen", "random0"]),
                                           ("m7", ["ir/frozen", "random0"])])
def test_output_over_input_at_the_limit_on_targets(request, target, labels):
    """The optimised kernels (host under sanitizers, the emulated Cortex-M7)
    keep the row order the overlap relies on: at the limit, the reference and
    optimised kernels give the simulator's results for the compiled plan."""
    exes = request.getfixturevalue(f"{target}_exes")
    n = 0
    for label in labels:
        b, g, scheme = FUSED_CASES[label]
        xs, ys = _samples(b, g, 3, 7)
        plan = compile_model(g, scheme, fuse="all")
        sim = run_sim(plan, xs, ys)
        for edited in at_the_limit(plan):
            _, opt = _same(exes, target, edited, xs, ys, xs[:2])
            assert [v.tobytes() for v in opt.losses] == sim[0]
            assert opt.params == sim[1]
            n += 1
    assert n >= len(labels)


@pytest.mark.parametrize("label", M7_CASES)
def test_fused_cortex_m7(m7_exes, label):
    fused, plain, opt = _check_target(m7_exes, "m7", label)
    assert len(opt.step_instructions) == 3 and min(opt.step_instructions) > 0


# -- the paper's models ------------------------------------------------------------

@pytest.mark.skipif(not (TTE / "mcunet-5fps.pkl").exists(), reason="the paper's models are not in ../shared")
def test_mcunet_49kb_fits_the_f746_arena():
    from tinytrain.convert import tte
    g = tte.load(str(TTE / "mcunet-5fps.pkl"), n_classes=10)
    scheme = tte.published_scheme(g, "mcunet-5fps", "49kb")
    plain = compile_model(g, scheme, fuse=False)
    plan = compile_model(g, scheme)
    assert plain.arena_size > F746_ARENA  # the problem: the 131 KB expand output of the first block
    assert plan.arena_size < F746_ARENA
    check_plan(plan)
    x = np.random.default_rng(0).integers(-128, 128, size=128 * 128 * 3).astype(np.int8)
    for p in (plain, plan):
        p.sim = run_sim(p, [x], [3])
    assert plan.sim == plain.sim


@pytest.mark.skipif(not (TTE / "mcunet-5fps.pkl").exists(), reason="the paper's models are not in ../shared")
def test_mcunet_49kb_cortex_m7(m7_exes):
    """On the M7 the fused plan trains and predicts bit for bit like the
    unfused one. (What the fusions cost in instructions is measured by
    benchmarks/bench_m7.py, not asserted here.)"""
    from tinytrain.convert import tte
    g = tte.load(str(TTE / "mcunet-5fps.pkl"), n_classes=10)
    scheme = tte.published_scheme(g, "mcunet-5fps", "49kb")
    x = np.random.default_rng(1).integers(-128, 128, size=128 * 128 * 3).astype(np.int8)
    runs = [runner.run(m7_exes[1], compile_model(g, scheme, fuse=f).data, [(x, 2)], [x], target="m7")
            for f in (False, True)]
    plain, fused = runs
    assert plain.status == 0 and fused.status == 0, plain.message + fused.message
    assert [v.tobytes() for v in fused.losses] == [v.tobytes() for v in plain.losses]
    assert (fused.params, fused.logits, fused.classes) == (plain.params, plain.logits, plain.classes)


# -- prepared constants (format 2.3, docs/format.md "Prepared constants") -----------

def _prep_net(seed, width, k, stride, act):
    """Fused blocks whose layers can all have prepared constants (1x1 layers
    of 8, 16, 24 input channels, depthwise 3x3 / 5x5 / 7x7), rows of the
    given width (odd: a last pixel alone), clamps act."""
    b = NetBuilder((9, width, 8), seed=seed)
    b.pointwise(16, act=act)
    b.dwconv(k, stride, act=act)
    b.pointwise(24, act=act)
    b.pointwise(16, act=act)
    b.dwconv(3, 1, act=act)
    b.pointwise(8, act=act)
    b.fc(3)
    return b


PREP_CASES = {f"prep/w{w}k{k}s{s}{a or ''}": (w, k, s, a)
              for w, k, s, a in ((8, 3, 1, None), (7, 5, 2, None), (11, 7, 1, None), (9, 3, 2, "relu6"))}


def _prep_case(label, scheme_name="frozen"):
    """frozen: the last layer's bias trained; biases: the last 3 layers'
    (the second block's depthwise and consumer: their prepared constants
    hold the biases of the step, their masks are written)."""
    w, k, s, a = PREP_CASES[label]
    b = _prep_net(3, w, k, s, a)
    g = b.quantize(netzoo.calib(b, n=8, seed=3))
    biases = Scheme.last_layers(g, n_bias=3, n_weights=0)
    return b, g, {"frozen": _schemes(g)["frozen"], "biases": biases}[scheme_name]


@pytest.mark.parametrize("label", sorted(FUSED_CASES))
def test_compiler_puts_prepared_constants_in_gaps(label):
    """prep=True changes nothing of the plan but the slots: the arena and every
    other tensor's place stay, each slot lies in bytes no tensor live at its op
    uses, below the last byte used, with the parts its flags name."""
    _, g, scheme = FUSED_CASES[label]
    with_prep, without = compile_model(g, scheme, fuse="all"), compile_model(g, scheme, fuse="all", prep=False)
    m, m0 = with_prep.model, without.model
    assert m.header.arena_size == m0.header.arena_size and with_prep.used_bytes == without.used_bytes
    assert [t.pack() for t in m.tensors[:len(m0.tensors)]] == [t.pack() for t in m0.tensors]
    for i, op in enumerate(m.ops):
        slot = {mf.OP_FWD: mf.FWD_PREP, mf.OP_FWD_FUSED: mf.FUSED_PREP}.get(op.kind)
        if slot is None or op.t[slot] == mf.NONE:
            assert op.flags == 0 and (slot is None or op.t[slot] == mf.NONE)
            continue
        p = m.tensors[op.t[slot]]
        parts = dict(fused_rows.prep_parts(m, op))
        assert p.size == sum(parts[f] for f in parts if op.flags & f or f == 0) and op.flags & ~sum(parts) == 0
        assert p.arena_off % 4 == 0 and p.arena_off + p.size <= with_prep.used_bytes
        for t in with_prep.live_at(i):
            if t.rec is not p and not t.rec.flags & mf.TF_STREAMED:
                assert p.arena_off + p.size <= t.rec.arena_off or t.rec.arena_off + t.rec.size <= p.arena_off


def test_prepared_constants_every_part_somewhere():
    """The nets above give every part (A, B, C, a forward op's 1x1 layer) its constants."""
    flags, fwd = 0, 0
    for label in PREP_CASES:
        for name in ("frozen", "biases"):
            _, g, scheme = _prep_case(label, name)
            data, n = fused_rows.with_all_prepared(compile_model(g, scheme, fuse="all").data)
            ops = mf.Model.parse(data).ops
            flags |= functools.reduce(operator.or_, (op.flags for op in ops))
            fwd += sum(op.kind == mf.OP_FWD and op.t[mf.FWD_PREP] != mf.NONE for op in ops)
            assert n >= 2
    assert flags == mf.FUSED_PREP_A | mf.FUSED_PREP_B | mf.FUSED_PREP_C and fwd


def _check_prepared(exes, target, b, g, scheme, scheme_steps=3):
    """Every fused op with every part it can have: the reference and optimised
    kernels give the unfused simulator's results, training and predicting."""
    xs, ys = _samples(b, g, scheme_steps, 7)
    data, n = fused_rows.with_all_prepared(compile_model(g, scheme, fuse="all").data)
    assert n
    sim = run_sim(compile_model(g, scheme, fuse=False), xs, ys)
    _, opt = _same(exes, target, SimpleNamespace(data=data), xs, ys, xs[:2])
    assert [v.tobytes() for v in opt.losses] == sim[0]
    assert opt.params == sim[1]
    assert opt.logits == sim[2][:2]
    return data, xs, ys, opt


@pytest.mark.parametrize("label", sorted(PREP_CASES))
@pytest.mark.parametrize("scheme_name", ["frozen", "biases"])
def test_prepared_constants_host_sanitized(host_exes, label, scheme_name):
    _check_prepared(host_exes, "host", *_prep_case(label, scheme_name))


@pytest.mark.parametrize("label", sorted(PREP_CASES) + ["ir/frozen", "dw4/frozen", "random0", "random5"])
def test_prepared_constants_cortex_m7(m7_exes, label):
    """On the M7, where the optimised kernels take the constants: the same
    results as the unfused simulator, and (every layer of these nets able
    to take them) fewer instructions than making them at every row."""
    if label in PREP_CASES:
        _check_prepared(m7_exes, "m7", *_prep_case(label, "biases"))
    b, g, scheme = _prep_case(label) if label in PREP_CASES else FUSED_CASES[label]
    data, xs, ys, opt = _check_prepared(m7_exes, "m7", b, g, scheme)
    if label in PREP_CASES and PREP_CASES[label][3] is None:
        rows = runner.run(m7_exes[1], compile_model(g, scheme, fuse="all", prep=False).data, list(zip(xs, ys)),
                          xs[:2], target="m7")
        assert sum(opt.step_instructions) < sum(rows.step_instructions)


@pytest.mark.skipif(not (TTE / "mcunet-5fps.pkl").exists(), reason="the paper's models are not in ../shared")
def test_mcunet_prepared_constants_cortex_m7(m7_exes):
    """MCUNet-5fps 49kb: the compiler finds room for prepared constants at
    every fused op without growing the arena; on the M7 they give the same
    training and predictions as making them at every row, in fewer
    instructions."""
    from tinytrain.convert import tte
    g = tte.load(str(TTE / "mcunet-5fps.pkl"), n_classes=10)
    scheme = tte.published_scheme(g, "mcunet-5fps", "49kb")
    plans = [compile_model(g, scheme, prep=p) for p in (False, True)]
    assert plans[0].arena_size == plans[1].arena_size
    assert all(op.t[mf.FUSED_PREP] != mf.NONE for op in fused_ops(plans[1]))
    assert any(op.kind == mf.OP_FWD and op.t[mf.FWD_PREP] != mf.NONE for op in plans[1].model.ops)
    x = np.random.default_rng(1).integers(-128, 128, size=128 * 128 * 3).astype(np.int8)
    rows, prep = [runner.run(m7_exes[1], p.data, [(x, 2)], [x], target="m7") for p in plans]
    assert rows.status == 0 and prep.status == 0, rows.message + prep.message
    assert [v.tobytes() for v in prep.losses] == [v.tobytes() for v in rows.losses]
    assert (prep.params, prep.logits, prep.classes) == (rows.params, rows.logits, rows.classes)
    assert prep.step_instructions[0] < rows.step_instructions[0] - 1_000_000
