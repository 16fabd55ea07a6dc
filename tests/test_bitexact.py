"""The C core equals the independent numpy reference bit for bit: every
forward activation, mask and saved input, every gradient, the loss, and the
trained weights, fraction bits and biases after each step; on randomised
networks covering every kernel, kernel size, stride and training scheme."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinytrain
from tinytrain import modelfile as mf
from tinytrain.builder import NetBuilder, quantize_input
from tinytrain.compiler import Scheme, compile_model
from tinytrain.reference import Reference

import netzoo


def fused_scratch(m, ref):
    """What each fused op leaves in its ring and row buffer, from the
    reference's full tensors: {tensor id: {row slot: bytes}}. The ring holds
    rows [b, h1) of the producer's output in slots from 0, moved down when the
    next rows would not fit (docs/format.md); the row buffer the last row."""
    want = {}
    for op in m.ops[:m.header.n_fwd_ops]:
        if op.kind != mf.OP_FWD_FUSED:
            continue
        B = m.layers[op.layer]
        if op.t[mf.FUSED_RING] != mf.NONE:
            x = ref.acts[B.inp]
            rh = m.tensors[op.t[mf.FUSED_RING]].h
            slots, b, h1 = {}, 0, 0
            for oh in range(m.tensors[B.out].h):
                v0 = oh * B.stride - B.pad_top
                lo, end = max(v0, 0), min(v0 + B.kh, x.shape[0])
                if h1 < lo:
                    b = h1 = lo
                elif end - b > rh:
                    for r in range(lo, h1):
                        slots[r - lo] = x[r].tobytes()
                    b = lo
                for r in range(h1, end):
                    slots[r - b] = x[r].tobytes()
                h1 = max(h1, end)
            want[op.t[mf.FUSED_RING]] = slots
        if op.t[mf.FUSED_ROW] != mf.NONE:
            want[op.t[mf.FUSED_ROW]] = {0: ref.acts[B.out][-1].tobytes()}
    return want


def compare_step(plan, x, label):
    """One step on both; compare everything the step left in the arena."""
    t = tinytrain.Trainer(plan.data)
    ref = Reference(plan.data)
    loss_c = np.float32(t.step(x.tobytes(), label))
    loss_r = ref.step(x, label=label)
    assert loss_c.tobytes() == np.float32(loss_r).tobytes()
    m = plan.model
    scratch = fused_scratch(m, ref)
    for tid, rec in enumerate(m.tensors):
        if rec.flags & mf.TF_STREAMED:
            with pytest.raises(ValueError, match="no arena storage"):
                t.tensor(tid, rec.size)
            continue
        got = t.tensor(tid, rec.size)
        if tid in scratch:
            row = rec.w * rec.c
            for slot, want in scratch[tid].items():
                assert got[slot * row:(slot + 1) * row] == want, f"{plan.tensors[tid].name} slot {slot} differs"
            continue
        if rec.kind == mf.T_ACT:
            want = ref.acts[tid].astype(np.int8).tobytes()
        elif rec.kind == mf.T_MASK:
            want = np.asarray(ref.masks[tid], np.uint8).tobytes()
        elif rec.kind == mf.T_SAVED:
            want = ref.saved[tid].astype(np.int8).tobytes()
        else:
            if tid not in ref.grads:
                continue
            scale, g = ref.grads[tid]
            want = np.float32(scale).tobytes() + np.asarray(g, "<i2").tobytes()
        assert got == want, f"tensor {tid} ({plan.tensors[tid].name}) differs"
    assert t.params() == ref.params_bytes()
    return t, ref


def random_net(draw):
    """A random network: stem conv, blocks of the kinds the core supports, head."""
    h = draw(st.integers(5, 11))
    c = draw(st.sampled_from([1, 2, 3, 4]))
    b = NetBuilder((h, h, c), seed=draw(st.integers(0, 2 ** 16)))
    b.conv(draw(st.integers(2, 6)), k=draw(st.sampled_from([1, 3, 5])), stride=draw(st.sampled_from([1, 2])),
           act=draw(st.sampled_from([None, "relu", "relu6"])))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["dw", "pw", "conv", "res"]))
        hh = b.shapes[b.last][0]
        if kind == "dw":
            k = draw(st.sampled_from([3, 5, 7]))
            b.dwconv(k, draw(st.sampled_from([1, 2])) if hh > 2 else 1, act=draw(st.sampled_from([None, "relu6"])))
        elif kind == "pw":
            b.pointwise(draw(st.integers(2, 8)), act=draw(st.sampled_from([None, "relu"])))
        elif kind == "conv":
            b.conv(draw(st.integers(2, 6)), k=draw(st.sampled_from([1, 3])),
                   stride=draw(st.sampled_from([1, 2])) if hh > 2 else 1, act="relu")
        else:
            skip = b.last
            b.pointwise(draw(st.integers(3, 8)), act="relu6")
            b.dwconv(3, 1, act="relu6")
            y = b.pointwise(b.shapes[skip][2], act=None)
            b.add(skip, y, act=draw(st.sampled_from([None, "relu"])))
    if draw(st.booleans()):
        b.avgpool()
    b.fc(draw(st.integers(2, 6)))
    return b


@st.composite
def nets_and_schemes(draw):
    b = random_net(draw)
    graph = b.quantize(netzoo.calib(b, n=16, seed=draw(st.integers(0, 99))))
    names = [layer.name for layer in graph.param_layers]
    bias = {n for n in names if draw(st.booleans())}
    weights = {n: draw(st.sampled_from([0, 0.25, 0.5, 1.0])) for n in names}
    weights[names[-1]] = 1.0
    scheme = Scheme(bias=bias, weights={n: r for n, r in weights.items() if r}, residue=draw(st.booleans()),
                    qas=draw(st.booleans()), lr=draw(st.sampled_from([0.01, 0.1, 1.0])))
    return b, graph, scheme, draw(st.integers(0, 2 ** 16))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nets_and_schemes())
def test_random_networks_bit_exact(case):
    b, graph, scheme, seed = case
    plan = compile_model(graph, scheme, reuse_memory=False)
    rng = np.random.default_rng(seed)
    ncls = graph.tensors[graph.output].numel
    t = tinytrain.Trainer(plan.data)
    ref = Reference(plan.data)
    for _ in range(3):
        x = quantize_input(graph, rng.uniform(-1, 1, size=b.input_shape)).reshape(-1)
        y = int(rng.integers(0, ncls))
        assert np.float32(t.step(x.tobytes(), y)).tobytes() == np.float32(ref.step(x, label=y)).tobytes()
        assert t.params() == ref.params_bytes()
        assert t.predict(x.tobytes()) == ref.predict(x)


@pytest.mark.parametrize("name", sorted(netzoo.ZOO))
@pytest.mark.parametrize("scheme", sorted(netzoo.SCHEMES))
def test_every_tensor_of_a_step(name, scheme):
    b, graph, _ = netzoo.build(name, scheme, seed=2)
    plan = compile_model(graph, netzoo.SCHEMES[scheme](graph), reuse_memory=False)
    xs, ys = netzoo.samples(b, graph, 1, seed=5)
    compare_step(plan, xs[0], ys[0])


@pytest.mark.parametrize("name", sorted(netzoo.ZOO))
def test_twenty_steps_with_memory_reuse(name):
    """The planned (reusing) arena gives the same training as the reference."""
    b, graph, plan = netzoo.build(name, "full_residue", seed=7)
    xs, ys = netzoo.samples(b, graph, 20, seed=8)
    t = tinytrain.Trainer(plan.data)
    ref = Reference(plan.data)
    for x, y in zip(xs, ys):
        assert np.float32(t.step(x.tobytes(), y)).tobytes() == np.float32(ref.step(x, label=y)).tobytes()
    assert t.params() == ref.params_bytes()
    assert [t.predict(x.tobytes()) for x in xs] == [ref.predict(x) for x in xs]


def test_mse_head_bit_exact():
    b = NetBuilder((6, 6, 2), seed=3)
    b.conv(4, k=3, stride=2, act="relu")
    b.fc(3)
    graph = b.quantize(netzoo.calib(b))
    plan = compile_model(graph, Scheme.full(graph, loss="mse", lr=0.05), reuse_memory=False)
    rng = np.random.default_rng(0)
    t, ref = tinytrain.Trainer(plan.data), Reference(plan.data)
    for _ in range(5):
        x = quantize_input(graph, rng.uniform(-1, 1, size=(6, 6, 2))).reshape(-1)
        target = rng.integers(-100, 100, size=3).astype(np.int8)
        assert np.float32(t.step(x.tobytes(), target.tobytes())).tobytes() == \
            np.float32(ref.step(x, target=target)).tobytes()
    assert t.params() == ref.params_bytes()
