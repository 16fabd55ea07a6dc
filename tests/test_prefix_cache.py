"""The frozen-prefix cache (docs/micropython.md, "Epochs on stored samples"):
the core finds the cut at open (tt_cut.c); features() is the numpy
reference's activation of that tensor; epochs trained from stored features
give the losses, parameters and logits of epochs trained on the inputs, bit
for bit: in the simulator on the zoo, on random fused networks and on the
paper's MCUNet-5fps, and in tt_run on the host (ASan/UBSan) and on the
emulated Cortex-M7."""
import sys
from pathlib import Path

import numpy as np
import pytest

import tinytrain
from tinytrain import _native
from tinytrain import modelfile as mf
from tinytrain import runner
from tinytrain.builder import quantize_input
from tinytrain.compiler import compile_model
from tinytrain.reference import Reference

import netzoo
from test_fusion import inverted_residual_net, mostly_frozen, numpy_pick

NONE = mf.NONE
ZOO = [(n, s) for n in ("mlp", "cnn", "mbnet") for s in ("sparse", "bias_only", "biases", "full")]


# -- an independent search for the cut: live sets, one candidate at a time ---

def _op_output(m, op):
    if op.kind == mf.OP_FWD_FUSED and op.t[mf.FUSED_C] != NONE:
        return m.layers[op.t[mf.FUSED_C]].out
    return m.layers[op.layer].out


def _op_layers(op):
    if op.kind == mf.OP_FWD_FUSED:
        return [i for i in (op.t[mf.FUSED_A], op.layer, op.t[mf.FUSED_C]) if i != NONE]
    return [op.layer]


def _writes(m, op):
    """The tensors a forward op writes (none for the other kinds)."""
    if op.kind == mf.OP_FWD:
        return {_op_output(m, op), op.t[mf.FWD_MASK], op.t[mf.FWD_SAVED]} - {NONE}
    if op.kind == mf.OP_FWD_FUSED:
        return {_op_output(m, op), *(op.t[s] for s in (mf.FUSED_RING, mf.FUSED_ROW, mf.FUSED_MASK))} - {NONE}
    return set()


def _reads(m, op):
    if op.kind == mf.OP_FWD:
        L = m.layers[op.layer]
        return {L.inp, L.in2} - {NONE}
    if op.kind == mf.OP_FWD_FUSED:
        return {m.layers[_op_layers(op)[0]].inp}
    if op.kind == mf.OP_LOSS:
        return {op.t[mf.LOSS_LOGITS]}
    if op.kind == mf.OP_BWD:
        return {op.t[1], op.t[2]} - {NONE}
    return set()


def expected_cut(m):
    """(cut_op, tensor) or (0, NONE): of the k where the forward ops [0, k)
    keep nothing for the backward, train and differentiate no layer, and
    leave exactly one tensor (op k-1's output) to the ops after them, the
    one of fewest elements, then the latest."""
    nf = m.header.n_fwd_ops
    bwd = {op.layer for op in m.ops[nf:] if op.kind == mf.OP_BWD}

    def frozen(op):
        keeps = op.t[:2] if op.kind == mf.OP_FWD else [op.t[mf.FUSED_MASK]]
        return all(t == NONE for t in keeps) and all(
            m.layers[li].n_train == 0 and not m.layers[li].flags & 1 and li not in bwd for li in _op_layers(op))

    kmax = 0
    while kmax < nf and frozen(m.ops[kmax]):
        kmax += 1
    best = (0, NONE)
    for k in range(1, kmax + 1):
        written = {m.header.input_tensor}.union(*(_writes(m, op) for op in m.ops[:k]))
        later = set().union(*(_reads(m, op) - set().union(*(_writes(m, o) for o in m.ops[k:j]))
                              for j, op in enumerate(m.ops[k:], k)))
        x = _op_output(m, m.ops[k - 1])
        t = m.tensors[x]
        if later & written == {x} and t.kind == mf.T_ACT and not t.flags & 3:
            if best[0] == 0 or t.numel <= m.tensors[best[1]].numel:
                best = (k, x)
    return best


def core_cut(trainer):
    return _native.lib.tts_cut_op(trainer._model), _native.lib.tts_cut_tensor(trainer._model)


# -- helpers ---------------------------------------------------------------

def three_epochs(data, xs, ys, cache, seed=0):
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(xs)).tolist() for _ in range(3)]
    t = tinytrain.Trainer(data)
    losses = tinytrain.epochs(t, [x.tobytes() for x in xs], ys, 3, cache=cache, orders=orders)
    return (np.float32(losses).tobytes(), t.params(), [t.logits(x.tobytes()) for x in xs])


def check_cache(data, xs, ys):
    """The cut is the one expected, its bytes the reference's activation, and
    three shuffled epochs from the cache equal three on the inputs."""
    t = tinytrain.Trainer(data)
    m = mf.Model.parse(data)
    k, x = expected_cut(m)
    assert core_cut(t) == (k, x if k else 0xFFFF)
    if not k:
        assert t.feature_bytes() == 0
        return False
    assert t.feature_bytes() == m.tensors[x].numel
    ref = Reference(data)
    for xi in xs[:2]:
        want = ref.forward(xi)[x].astype(np.int8).tobytes()
        assert bytes(t.features(xi.tobytes()).cast("B")) == want
    assert three_epochs(data, xs, ys, cache=True) == three_epochs(data, xs, ys, cache=False)
    return True


@pytest.mark.parametrize("name,scheme", ZOO)
def test_zoo_cache_equals_inputs(name, scheme):
    b, g, plan = netzoo.build(name, scheme, seed=0)
    xs, ys = netzoo.samples(b, g, 5, seed=1)
    has_cut = check_cache(plan.data, xs, ys)
    # every scheme that leaves the first layer frozen has a prefix in these nets
    first = plan.model.layers[plan.model.ops[0].layer]
    assert has_cut == (first.n_train == 0 and not first.flags & 1)


@pytest.mark.parametrize("seed", range(30))
def test_random_fused_networks_cache(seed, cut_count):
    pick = numpy_pick(seed)
    b = inverted_residual_net(pick)
    g = b.quantize(netzoo.calib(b, n=12, seed=seed))
    scheme = mostly_frozen(g, pick)
    plan = compile_model(g, scheme, fuse=pick(["all", "producer", "consumer", False]))
    rng = np.random.default_rng(seed)
    ncls = g.tensors[g.output].numel
    xs = [quantize_input(g, rng.uniform(-1, 1, size=b.input_shape)).reshape(-1) for _ in range(4)]
    ys = [int(rng.integers(0, ncls)) for _ in xs]
    cut_count.append(check_cache(plan.data, xs, ys))


@pytest.fixture(scope="module")
def cut_count():
    """Whether each random network had a prefix: most must (else the test says little)."""
    seen = []
    yield seen
    if len(seen) == 30:
        assert sum(seen) >= 15, f"only {sum(seen)} of 30 random networks had a frozen prefix"


def test_features_api_checks():
    b, g, plan = netzoo.build("mbnet", "sparse", seed=0)
    xs, ys = netzoo.samples(b, g, 2, seed=1)
    t = tinytrain.Trainer(plan.data)
    n = t.feature_bytes()
    f = bytes(t.features(xs[0].tobytes()).cast("B"))
    out = bytearray(n)
    assert t.features(xs[0].tobytes(), out=out) is out and bytes(out) == f
    with pytest.raises(ValueError):
        t.features(xs[0].tobytes(), out=bytearray(n + 1))
    with pytest.raises(ValueError):
        t.step_features(f[:-1], ys[0])
    with pytest.raises(ValueError):
        t.step_features(f, 10 ** 6)
    with pytest.raises(TypeError):
        t.step_features(f, 1.5)
    # the slot filled in place, then features() without x
    t.input()[:] = memoryview(xs[1].tobytes()).cast("b")
    assert bytes(t.features().cast("B")) == bytes(t.features(xs[1].tobytes()).cast("B"))
    assert t.predict_features(f) == t.predict(xs[0].tobytes())
    _, _, full = netzoo.build("mbnet", "full", seed=0)
    tf = tinytrain.Trainer(full.data)
    assert tf.feature_bytes() == 0
    with pytest.raises(ValueError, match="no frozen prefix"):
        tf.features(xs[0].tobytes())
    with pytest.raises(ValueError, match="no frozen prefix"):
        tinytrain.epochs(tf, [xs[0].tobytes()], [ys[0]], 1)


def test_epochs_store_anywhere(tmp_path):
    """The store may be any writable buffer: here a memory-mapped file."""
    import mmap
    b, g, plan = netzoo.build("mbnet", "sparse", seed=0)
    xs, ys = netzoo.samples(b, g, 4, seed=2)
    t = tinytrain.Trainer(plan.data)
    size = tinytrain.cache.feature_store_bytes(t, len(xs))
    path = tmp_path / "features.bin"
    path.write_bytes(bytes(size))
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), size) as mm:
        losses = tinytrain.epochs(t, [x.tobytes() for x in xs], ys, 3, store=mm)
    ref = tinytrain.Trainer(plan.data)
    assert losses == tinytrain.epochs(ref, [x.tobytes() for x in xs], ys, 3, cache=False)
    assert t.params() == ref.params()
    assert path.read_bytes() == b"".join(bytes(ref.features(x.tobytes()).cast("B")) for x in xs)


# -- the paper's model ---------------------------------------------------------

@pytest.fixture(scope="module")
def mcunet_49kb():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import paper_models
    if paper_models.missing():
        pytest.skip(paper_models.missing())
    return next(paper_models.cases(4, {"mcunet-5fps": ["49kb"]}))


def test_mcunet_49kb_cache(mcunet_49kb):
    c = mcunet_49kb
    t = tinytrain.Trainer(c.plan.data)
    assert t.feature_bytes() == 2560  # the 8x8x40 output of the block before the first trained layer
    assert check_cache(c.plan.data, c.xs, c.ys)


# -- tt_run: host (sanitizers) and the emulated Cortex-M7 ---------------------

def _tt_run_cached(target, tmp_path, plan, xs, ys, evals):
    missing = runner.missing_tools(target)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    exe = runner.build(target, tmp_path / target)
    steps = [(xs[i], ys[i]) for _ in range(3) for i in range(len(xs))]
    plain = runner.run(exe, plan.data, steps, evals, target=target, timeout=1800)
    cached = runner.run(exe, plan.data, steps, evals, target=target, timeout=1800, cache=True)
    assert plain.status == 0 and cached.status == 0, plain.message + cached.message
    assert cached.params == plain.params and cached.logits == plain.logits
    assert np.float32(cached.losses).tobytes() == np.float32(plain.losses).tobytes()
    t = tinytrain.Trainer(plan.data)
    tinytrain.epochs(t, [x.tobytes() for x in xs], ys, 3)
    assert t.params() == cached.params
    return plain, cached


@pytest.mark.parametrize("name,scheme", [("mbnet", "sparse"), ("cnn", "bias_only")])
def test_tt_run_host_cache(tmp_path, name, scheme):
    b, g, plan = netzoo.build(name, scheme, seed=0)
    xs, ys = netzoo.samples(b, g, 3, seed=1)
    _tt_run_cached("host", tmp_path, plan, xs, ys, xs[:1])


def test_tt_run_m7_cache_mcunet(tmp_path, mcunet_49kb):
    c = mcunet_49kb
    plain, cached = _tt_run_cached("m7", tmp_path, c.plan, c.xs[:2], c.ys[:2], c.xs[:1])
    # from the second epoch on a step skips the prefix
    n = 2
    assert max(cached.step_instructions[n:]) < 0.8 * min(plain.step_instructions)
