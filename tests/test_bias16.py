"""Trained biases as int16 changes (format 2.2, LF_BIAS16): the arena holds
the change of each trained bias from the file's int32 value, 2 bytes
instead of 4. The same learning as int32 biases while a change stays within
int16; past it the change saturates at the int16 limits, never wraps; the
simulator, the numpy reference and the optimised kernels (host and the
emulated Cortex-M7) agree bit for bit; the compiler picks int16 only where a
change reaches far enough."""
import struct
import zlib

import numpy as np
import pytest

import tinytrain
from tinytrain import modelfile as mf
from tinytrain import runner
from tinytrain.compiler import Scheme, compile_model
from tinytrain.compiler.place import BIAS16_MIN_REACH, bias16_reach
from tinytrain.reference import Reference

import netzoo
from test_bitexact import compare_step

LO, HI = -32768, 32767


def effective_biases(data: bytes, params: bytes) -> dict:
    """{layer: the biases the forward pass uses} from a model and its trained parameters."""
    m = mf.Model.parse(data)
    out = {}
    for li, L in enumerate(m.layers):
        if not L.flags & mf.LF_TRAIN_BIAS:
            continue
        cout = m.tensors[L.out].c
        if L.flags & mf.LF_BIAS16:
            change = np.frombuffer(params, "<i2", cout, L.b_arena).astype(np.int64)
            out[li] = m.blob_array(L.b_off, "<i4", cout).astype(np.int64) + change
        else:
            out[li] = np.frombuffer(params, "<i4", cout, L.b_arena).astype(np.int64)
    return out


def bias16_changes(data: bytes, params: bytes) -> dict:
    m = mf.Model.parse(data)
    return {li: np.frombuffer(params, "<i2", m.tensors[L.out].c, L.b_arena).astype(np.int64)
            for li, L in enumerate(m.layers) if L.flags & mf.LF_BIAS16}


@pytest.mark.parametrize("name", sorted(netzoo.ZOO))
def test_same_learning_as_int32(name):
    """20 steps: the same losses, predictions and biases as the int32 layout."""
    b, g, p16 = netzoo.build(name, "full_residue", seed=21)
    p32 = compile_model(g, netzoo.SCHEMES["full_residue"](g), bias16=False)
    m16, m32 = p16.model, p32.model
    assert any(L.flags & mf.LF_BIAS16 for L in m16.layers)
    assert not any(L.flags & mf.LF_BIAS16 for L in m32.layers)
    assert p16.persist_size < p32.persist_size
    xs, ys = netzoo.samples(b, g, 20, seed=22)
    t16, t32 = tinytrain.Trainer(p16.data), tinytrain.Trainer(p32.data)
    for x, y in zip(xs, ys):
        assert np.float32(t16.step(x.tobytes(), y)).tobytes() == np.float32(t32.step(x.tobytes(), y)).tobytes()
    assert [t16.predict(x.tobytes()) for x in xs] == [t32.predict(x.tobytes()) for x in xs]
    e16, e32 = effective_biases(p16.data, t16.params()), effective_biases(p32.data, t32.params())
    assert e16.keys() == e32.keys()
    for li in e16:
        np.testing.assert_array_equal(e16[li], e32[li])
    moved = bias16_changes(p16.data, t16.params())
    assert any(np.any(v) for v in moved.values())  # training moved some change


@pytest.mark.parametrize("name", sorted(netzoo.ZOO))
def test_every_tensor_of_a_step_int32(name):
    """The int32 layout (bias16=False) stays bit exact with the reference too."""
    b, graph, _ = netzoo.build(name, "full", seed=2)
    plan = compile_model(graph, netzoo.SCHEMES["full"](graph), reuse_memory=False, bias16=False)
    assert not any(L.flags & mf.LF_BIAS16 for L in plan.model.layers)
    xs, ys = netzoo.samples(b, graph, 1, seed=5)
    compare_step(plan, xs[0], ys[0])


def saturating(plan, factor: float = 1e9) -> bytes:
    """The plan with every int16 change's update factor (qas_b) multiplied:
    the first step drives each change with a nonzero gradient far past the
    int16 limits."""
    m = mf.Model.parse(plan.data)
    blob = bytearray(m.blob)
    for L in m.layers:
        if L.flags & mf.LF_BIAS16:
            cout = m.tensors[L.out].c
            q = np.frombuffer(bytes(blob), "<f4", cout, L.qas_b_off) * np.float32(factor)
            blob[L.qas_b_off:L.qas_b_off + 4 * cout] = q.astype("<f4").tobytes()
    m.blob = bytes(blob)
    return m.pack()


@pytest.mark.parametrize("name", ["mbnet", "cnn", "tutorial"])
def test_saturates_at_the_int16_limits(name):
    """A change driven past 32767 (or -32768) stays there, never wraps, and
    the core agrees with the reference on every step."""
    b, g, plan = netzoo.build(name, "full", seed=31)
    data = saturating(plan)
    xs, ys = netzoo.samples(b, g, 4, seed=32)
    t, ref = tinytrain.Trainer(data), Reference(data)
    x, y = xs[0], ys[0]
    assert np.float32(t.step(x.tobytes(), y)).tobytes() == np.float32(ref.step(x, label=y)).tobytes()
    assert t.params() == ref.params_bytes()
    changes = bias16_changes(data, t.params())
    pushed = 0
    for li, d in changes.items():
        A, _ = ref.weight_grad_arrays[(li, "b")]
        A = np.asarray(A, np.int64)
        # the update is -rint(A k qas): a positive gradient sum drives the change to -32768
        np.testing.assert_array_equal(d[A > 0], LO)
        np.testing.assert_array_equal(d[A < 0], HI)
        np.testing.assert_array_equal(d[A == 0], 0)
        pushed += int(np.count_nonzero(A))
    assert pushed > 0
    for x, y in zip(xs[1:], ys[1:]):
        assert np.float32(t.step(x.tobytes(), y)).tobytes() == np.float32(ref.step(x, label=y)).tobytes()
        assert t.params() == ref.params_bytes()
        for d in bias16_changes(data, t.params()).values():
            assert d.min() >= LO and d.max() <= HI
        assert t.predict(x.tobytes()) == ref.predict(x)


def test_saturated_change_from_loaded_parameters():
    """Changes loaded at the limits and pushed further stay at them (no wrap)."""
    b, g, plan = netzoo.build("mbnet", "biases", seed=41)
    data = saturating(plan, 1e4)
    t, ref = tinytrain.Trainer(data), Reference(data)
    pf = t.params_file()  # header (20 bytes), the parameters, crc32
    m = mf.Model.parse(data)
    for li, L in enumerate(m.layers):
        if L.flags & mf.LF_BIAS16:
            cout = m.tensors[L.out].c
            v = np.resize(np.array([HI, LO], "<i2"), cout)
            pf[20 + L.b_arena:20 + L.b_arena + 2 * cout] = v.tobytes()
            ref.b_tr[li] = v.astype(np.int64)
    struct.pack_into("<I", pf, len(pf) - 4, zlib.crc32(bytes(pf[:-4])))
    t.load(bytes(pf))
    assert t.params() == ref.params_bytes()
    xs, ys = netzoo.samples(b, g, 3, seed=42)
    for x, y in zip(xs, ys):
        assert np.float32(t.step(x.tobytes(), y)).tobytes() == np.float32(ref.step(x, label=y)).tobytes()
        assert t.params() == ref.params_bytes()


def test_compiler_picks_int16_only_within_reach():
    """int16 exactly where every live channel's int16 reach is at least
    BIAS16_MIN_REACH output units; a layer made to reach less keeps int32."""
    b = netzoo.mbnet(seed=3)
    g = b.quantize(netzoo.calib(b, seed=3))
    names = [layer.name for layer in g.param_layers]
    low = g.layer(names[2])
    low.w_scale = low.w_scale * np.float32(BIAS16_MIN_REACH / bias16_reach(g, low) / 2)  # half the reach needed
    plan = compile_model(g, Scheme.full(g))
    flags = {L.name: L.flags for L in plan.model.layers}
    for layer in g.param_layers:
        want = bias16_reach(g, layer) >= BIAS16_MIN_REACH
        assert bool(flags[layer.name] & mf.LF_BIAS16) == want, layer.name
    assert not flags[low.name] & mf.LF_BIAS16 and flags[low.name] & mf.LF_TRAIN_BIAS
    assert any(flags[n] & mf.LF_BIAS16 for n in names)
    # the int32 layer and the int16 ones train alike in the simulator and the reference
    xs, ys = netzoo.samples(b, g, 3, seed=4)
    t, ref = tinytrain.Trainer(plan.data), Reference(plan.data)
    for x, y in zip(xs, ys):
        assert np.float32(t.step(x.tobytes(), y)).tobytes() == np.float32(ref.step(x, label=y)).tobytes()
    assert t.params() == ref.params_bytes()


# -- the optimised kernels: the reference kernels' results, on the host and the M7 --

def _exes(tmp_path_factory, target):
    missing = runner.missing_tools(target)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    ref = runner.build(target, tmp_path_factory.mktemp(f"{target}_ref16"), ["-DTT_OPTIMIZED=0"])
    opt = runner.build(target, tmp_path_factory.mktemp(f"{target}_opt16"))
    return ref, opt


@pytest.mark.parametrize("target", ["host", "m7"])
@pytest.mark.parametrize("saturate", [False, True])
def test_optimised_kernels_agree(tmp_path_factory, target, saturate):
    b, g, plan = netzoo.build("mbnet", "full", seed=51)
    data = saturating(plan) if saturate else plan.data
    xs, ys = netzoo.samples(b, g, 3, seed=52)
    ref, opt = (runner.run(e, data, list(zip(xs, ys)), xs[:2], target=target)
                for e in _exes(tmp_path_factory, target))
    assert ref.status == 0 and opt.status == 0, ref.message + opt.message
    assert [v.tobytes() for v in opt.losses] == [v.tobytes() for v in ref.losses]
    assert (opt.classes, opt.logits, opt.params) == (ref.classes, ref.logits, ref.params)
    sim = tinytrain.Trainer(data)
    for x, y in zip(xs, ys):
        sim.step(x.tobytes(), y)
    assert bytes(opt.params) == sim.params()
    changes = bias16_changes(data, sim.params())
    if saturate:
        assert any(np.any((d == LO) | (d == HI)) for d in changes.values())
