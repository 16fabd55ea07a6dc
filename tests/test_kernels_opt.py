"""The optimised kernels (TT_OPTIMIZED, the default) give the reference
kernels' results bit for bit: `tt_run` built twice, once with
-DTT_OPTIMIZED=0, trains and predicts alike on the zoo and on networks shaped
to reach every optimised kernel's edge cases (channel counts not a multiple
of 4, odd sizes, stride 2, padding, permuted and partly trained channels, the
fallback to the reference when the stack budget is exceeded). On the host the
plain C path runs under ASan/UBSan; on the emulated Cortex-M7 the DSP path;
on the emulated RV32 core the plain C path built by the RISC-V compiler."""
import numpy as np
import pytest

from tinytrain import modelfile as mf
from tinytrain import runner
from tinytrain.builder import NetBuilder, quantize_input
from tinytrain.compiler import Scheme, compile_model

import netzoo
from test_bitexact import compare_step

REFERENCE = ["-DTT_OPTIMIZED=0"]
# the lean .mpy's kernels (make natmod TT_OPTIMIZED=lean; kernels/tt_opt.h)
LEAN = ["-DTT_OPT_DEPTHWISE=0", "-DTT_OPT_STEM=0"]


def _exes(tmp_path_factory, target, opt_flags=()):
    missing = runner.missing_tools(target)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    ref = runner.build(target, tmp_path_factory.mktemp(f"{target}_ref"), REFERENCE)
    opt = runner.build(target, tmp_path_factory.mktemp(f"{target}_opt"), opt_flags)
    return ref, opt


@pytest.fixture(scope="module")
def host_exes(tmp_path_factory):
    return _exes(tmp_path_factory, "host")


@pytest.fixture(scope="module")
def m7_exes(tmp_path_factory):
    return _exes(tmp_path_factory, "m7")


@pytest.fixture(scope="module")
def rv32_exes(tmp_path_factory):
    return _exes(tmp_path_factory, "rv32")


@pytest.fixture(scope="module")
def rv32_lean_exes(tmp_path_factory):
    return _exes(tmp_path_factory, "rv32", LEAN)


def _same(exes, target, plan, xs, ys, evals):
    ref, opt = (runner.run(e, plan.data, list(zip(xs, ys)), evals, target=target) for e in exes)
    assert ref.status == 0, ref.message
    assert opt.status == 0, opt.message
    assert [v.tobytes() for v in opt.losses] == [v.tobytes() for v in ref.losses]
    assert opt.classes == ref.classes
    assert opt.logits == ref.logits
    assert opt.params == ref.params
    return ref, opt


# -- networks aimed at the optimised kernels' edge cases --------------------

def _pw_net(seed):
    """Pointwise with odd channel counts and pixel counts, then 1x1 stride 2."""
    b = NetBuilder((5, 7, 3), seed=seed)
    b.pointwise(5, act="relu")           # cin 3 (< 4), cout odd, 35 pixels (odd)
    b.pointwise(13, act="relu6")         # cin 5, cout 13
    b.pointwise(8, act=None)             # cin 13: a 4-chunk and a tail of 1
    b.pointwise(6, act="relu")
    b.conv(6, k=1, stride=2, act="relu")  # 1x1 stride 2: im2col path
    b.fc(3)
    return b


def _conv_net(seed):
    """k x k convs with padding, stride 1 and 2, odd sizes, channel tails."""
    b = NetBuilder((9, 11, 3), seed=seed)
    b.conv(7, k=3, stride=2, act="relu6")   # the stem shape: 27 taps
    b.conv(5, k=5, stride=1, act="relu")    # padding 2, 175 taps
    b.conv(6, k=3, stride=2, act=None, pad=(0, 0))
    b.conv(3, k=1, stride=1, act="relu")
    b.fc(4)
    return b


def _dw4_net(seed):
    """Depthwise on channel counts that are multiples of 4 (4 channels at a time)."""
    b = NetBuilder((11, 9, 3), seed=seed)
    b.conv(8, k=3, stride=1, act="relu6")
    b.dwconv(3, 1, act="relu6")
    b.dwconv(5, 2, act=None)
    b.pointwise(12, act="relu")
    b.dwconv(7, 1, act="relu6")
    b.dwconv(3, 2, act="relu6")
    b.pointwise(4, act="relu")
    b.fc(3)
    return b


def _dw4_lean_net(seed):
    """Depthwise rows with whole windows over several columns (the unrolled
    window path, per kernel size), clamps other than the int8 range (relu),
    and pointwise layers on rows of odd width."""
    b = NetBuilder((12, 15, 4), seed=seed)
    b.conv(8, k=3, stride=1, act="relu")
    b.dwconv(3, 1, act="relu")
    b.dwconv(5, 1, act="relu6")
    b.dwconv(7, 1, act="relu")
    b.pointwise(12, act="relu")
    b.dwconv(3, 2, act=None)
    b.pointwise(7, act="relu6")
    b.fc(3)
    return b


def _dw4_edge_net(seed):
    """Depthwise on channel counts that are multiples of 4 where windows
    reach the padding (the border-window kernel): a map with more of them
    than its table holds (the C path), whole windows beside border ones,
    odd widths, stride 2, ReLU clamps, and maps narrower than the kernel
    where every window is at the border."""
    b = NetBuilder((34, 33, 4), seed=seed)
    b.dwconv(7, 1, act="relu6")           # 34x33: 372 border windows
    b.dwconv(3, 2, act="relu")            # to 17x17: rows of whole windows and border ones
    b.dwconv(5, 2, act="relu6")           # to 9x9
    b.pointwise(8, act="relu")
    b.dwconv(7, 2, act=None)              # to 5x5: every window at the border
    b.dwconv(5, 1, act="relu6")
    b.dwconv(7, 2, act="relu")            # to 3x3: kernel wider than the map
    b.dwconv(3, 1, act=None)
    b.fc(3)
    return b


def _dw_net(seed):
    """Depthwise 3/5/7, stride 1 and 2, channel counts 1..9, odd sizes."""
    b = NetBuilder((13, 9, 1), seed=seed)
    b.dwconv(3, 1, act="relu6")           # one channel
    b.pointwise(7, act="relu")
    b.dwconv(5, 2, act="relu6")
    b.pointwise(9, act="relu")
    b.dwconv(7, 1, act=None)
    b.dwconv(3, 2, act="relu6")
    b.dwconv(7, 2, act="relu6")           # more padding than input
    b.avgpool()
    b.fc(5)
    return b


def _big_net(seed):
    """Layers beyond the stack budget run the reference kernels."""
    b = NetBuilder((3, 170, 2), seed=seed)
    b.dwconv(7, 1, act="relu6")           # window rows of 177 x 7 int16: too big
    b.conv(30, k=1, act="relu")
    b.conv(4, k=5, stride=2, act="relu")  # 750 taps per pixel: too big
    b.pointwise(600, act="relu")
    b.pointwise(3, act="relu")            # trained: a permuted column of 600: too big
    b.fc(3)
    return b


def _wide_pw_net(seed):
    """A trained pointwise layer with many input channels (perm column near the budget)."""
    b = NetBuilder((2, 2, 6), seed=seed)
    b.pointwise(576, act="relu")
    b.pointwise(7, act="relu")
    b.fc(3)
    return b


def _pw_tile_net(seed):
    """Pointwise tiles: input-channel counts around the widened-weight budget
    (576) and its chunks of 8 and 4 plus a tail, odd pixel and channel counts."""
    b = NetBuilder((3, 5, 4), seed=seed)
    b.pointwise(577, act="relu")         # cin 4: one chunk of 4, no tail; 15 pixels
    b.pointwise(11, act="relu6")         # cin 577: beyond the budget (int8 weights)
    b.pointwise(20, act=None)            # cin 11: a chunk of 8 and a tail of 3
    b.pointwise(9, act="relu")           # cin 20: chunks of 8, 8 and 4
    b.pointwise(576, act="relu")         # cin 9
    b.pointwise(6, act="relu")           # cin 576: at the budget
    b.fc(3)
    return b


def _pw_perm_net(seed):
    """Pointwise layers of few input channels (inputs widened in blocks)
    with trained channels: their inputs gathered in weight storage order
    ("partial": cin 48, 24 trained; "stem": cin 8, 4 trained), over 63
    pixels (cin 48: three blocks, the last of an odd count)."""
    b = NetBuilder((7, 9, 8), seed=seed)
    b.pointwise(48, act=None)            # cin 8
    b.pointwise(24, act=None)            # cin 48
    b.pointwise(16, act="relu")          # cin 24
    b.fc(3)
    return b


def _dw_small_net(seed):
    """Depthwise input gradients at stride 1 on small maps, odd sizes, over
    (frozen) or apart from (trained) the gradient: 3x3 over a zero-bordered
    copy of the gradient, 5x5 and 7x7 by tap ranges; the first pass of an
    in-place gradient skips the channel groups bounded below its largest sum.
    The pointwise input gradients on 42 pixels start their shift from one
    pixel's sums."""
    b = NetBuilder((6, 7, 8), seed=seed)
    b.dwconv(5, 1, act="relu6")
    b.pointwise(12, act="relu")
    b.dwconv(7, 1, act="relu6")
    b.dwconv(3, 1, act="relu")
    b.dwconv(3, 2, act="relu6")          # to 3x4
    b.pointwise(16, act="relu")
    b.dwconv(5, 1, act="relu6")
    b.dwconv(7, 1, act="relu")
    b.fc(4)
    return b


def _bwd_net(seed):
    """Backward kernels: trained pointwise layers beyond the weight
    gradient's pixel budget (196), on an odd pixel count (49) and within it
    (16); an input gradient through 520 output channels (int32 sums folded
    into int64); depthwise input gradients apart from and over (frozen,
    stride 1) their output gradient."""
    b = NetBuilder((14, 14, 4), seed=seed)
    b.pointwise(8, act="relu")           # 196 pixels
    b.dwconv(3, 2, act="relu6")          # to 7x7
    b.pointwise(12, act="relu")          # 49 pixels
    b.dwconv(3, 2, act="relu6")          # to 4x4
    b.pointwise(520, act="relu6")        # 16 pixels, cout 520
    b.pointwise(16, act=None)            # cin 520
    b.dwconv(3, 1, act="relu")
    b.pointwise(8, act="relu")
    b.fc(4)
    return b


SHAPED = {"pw": _pw_net, "pw_perm": _pw_perm_net, "dw_small": _dw_small_net, "bwd": _bwd_net, "pw_tile": _pw_tile_net, "conv": _conv_net, "dw": _dw_net, "dw4": _dw4_net, "dw4_lean": _dw4_lean_net,
          "dw4_edge": _dw4_edge_net, "big": _big_net, "wide_pw": _wide_pw_net}


def _schemes(graph):
    names = [layer.name for layer in graph.param_layers]
    return {
        "full": Scheme.full(graph),
        "full_residue": Scheme.full(graph, residue=True),
        # partly trained layers: n_train not a multiple of 4, perm everywhere
        "partial": Scheme(bias=set(names[::2]), weights={n: r for n, r in zip(names, (0.3, 0.5, 0.75, 1.0) * 9)}),
        "sparse": netzoo.sparse_scheme(graph),
        "frozen": Scheme.last_layers(graph, n_bias=1, n_weights=0),
        # frozen middle (no perm there) with gradients flowing through it to the stem
        "stem": Scheme(bias=set(names), weights={names[0]: 0.5, names[-1]: 1.0}),
    }


def _samples(b, graph, n, seed):
    rng = np.random.default_rng(seed)
    xs = quantize_input(graph, rng.uniform(-1, 1, size=(n,) + b.input_shape))
    ncls = graph.tensors[graph.output].numel
    return [x.reshape(-1) for x in xs], [int(v) for v in rng.integers(0, ncls, size=n)]


def _shaped_case(name, scheme, seed=0, **kw):
    b = SHAPED[name](seed)
    graph = b.quantize(netzoo.calib(b, n=8, seed=seed))
    plan = compile_model(graph, _schemes(graph)[scheme], **kw)
    xs, ys = _samples(b, graph, 3, seed + 1)
    return plan, xs, ys


@pytest.mark.parametrize("name", sorted(netzoo.ZOO))
@pytest.mark.parametrize("scheme", sorted(netzoo.SCHEMES))
def test_zoo_host(host_exes, name, scheme):
    b, g, plan = netzoo.build(name, scheme, seed=11)
    xs, ys = netzoo.samples(b, g, 4, seed=12)
    _same(host_exes, "host", plan, xs, ys, xs[:2])


@pytest.mark.parametrize("name", sorted(SHAPED))
@pytest.mark.parametrize("scheme", ["full", "full_residue", "partial", "sparse", "frozen", "stem"])
def test_shaped_host(host_exes, name, scheme):
    plan, xs, ys = _shaped_case(name, scheme)
    ref, opt = _same(host_exes, "host", plan, xs, ys, xs[:2])
    if scheme != "frozen":
        assert len(set(ref.losses)) > 1  # training moved something


@pytest.mark.parametrize("name", sorted(SHAPED))
@pytest.mark.parametrize("scheme", ["full", "partial", "sparse", "frozen", "stem"])
def test_shaped_every_tensor(name, scheme):
    """Every activation, mask, saved input and gradient of a step of the
    simulator (the optimised kernels' plain C path) equals the numpy reference."""
    plan, xs, ys = _shaped_case(name, scheme, reuse_memory=False)
    compare_step(plan, xs[0], ys[0])


@pytest.mark.parametrize("seed", range(6))
def test_random_shapes_host(host_exes, seed):
    """Random chains of every layer kind; shapes drawn per seed."""
    rng = np.random.default_rng(100 + seed)
    h, w = (int(v) for v in rng.integers(3, 12, size=2))
    b = NetBuilder((h, w, int(rng.integers(1, 6))), seed=seed)
    for _ in range(int(rng.integers(2, 5))):
        hh, ww = b.shapes[b.last][:2]
        kind = rng.choice(["pw", "dw", "conv"])
        if kind == "pw":
            b.pointwise(int(rng.integers(1, 11)), act=rng.choice([None, "relu", "relu6"]))
        elif kind == "dw":
            k = int(rng.choice([3, 5, 7]))
            b.dwconv(k, int(rng.choice([1, 2])) if min(hh, ww) > 2 else 1, act=rng.choice([None, "relu6"]))
        else:
            b.conv(int(rng.integers(1, 9)), k=int(rng.choice([1, 3, 5])),
                   stride=int(rng.choice([1, 2])) if min(hh, ww) > 2 else 1, act="relu")
    b.fc(int(rng.integers(2, 6)))
    graph = b.quantize(netzoo.calib(b, n=8, seed=seed))
    for scheme in (Scheme.full(graph, residue=bool(seed % 2)), _schemes(graph)["partial"]):
        plan = compile_model(graph, scheme)
        xs, ys = _samples(b, graph, 2, seed)
        _same(host_exes, "host", plan, xs, ys, xs[:1])


def _retuned_adds(plan, extra_shift, lo, hi):
    """The plan with every add's shift raised (its result scaled down) and its
    clamp narrowed: add shifts >= 32 and mask bits of 0 are rare otherwise."""
    m = mf.Model.parse(plan.data)
    for layer in m.layers:
        if layer.kind == mf.L_ADD:
            layer.shift = min(layer.shift + extra_shift, 62)
            layer.act_min, layer.act_max = lo, hi
    return m.pack()


@pytest.mark.parametrize("target", ["host", "m7"])
@pytest.mark.parametrize("extra_shift,lo,hi", [(0, -128, 127), (1, -5, 9), (3, -30, 2), (6, 0, 127)])
def test_add_shifts_and_clamps(request, target, extra_shift, lo, hi):
    exes = request.getfixturevalue(f"{target}_exes")
    b, g, plan = netzoo.build("mbnet", "full", seed=15)
    data = _retuned_adds(plan, extra_shift, lo, hi)
    xs, ys = netzoo.samples(b, g, 3, seed=16)
    ref, opt = (runner.run(e, data, list(zip(xs, ys)), xs[:2], target=target) for e in exes)
    assert ref.status == 0 and opt.status == 0, ref.message + opt.message
    assert [v.tobytes() for v in opt.losses] == [v.tobytes() for v in ref.losses]
    assert (opt.logits, opt.params) == (ref.logits, ref.params)


@pytest.mark.parametrize("target", ["host", "m7"])
@pytest.mark.parametrize("scheme", ["stem", "sparse", "frozen"])
@pytest.mark.parametrize("lo,hi", [(-5, 9), (0, 127), (-128, -20)])
def test_dwconv_clamps(request, target, scheme, lo, hi):
    """Depthwise clamps narrower than int8 (the bytewise clamp and the mask
    bits of values on either side of it), on windows at the border and
    whole ones, with and without a mask."""
    plan, xs, ys = _shaped_case("dw4_edge", scheme, seed=3)
    m = mf.Model.parse(plan.data)
    for layer in m.layers:
        if layer.kind == mf.L_DWCONV:
            layer.act_min, layer.act_max = lo, hi
    data = m.pack()
    exes = request.getfixturevalue(f"{target}_exes")
    ref, opt = (runner.run(e, data, list(zip(xs, ys)), xs[:2], target=target) for e in exes)
    assert ref.status == 0 and opt.status == 0, ref.message + opt.message
    assert [v.tobytes() for v in opt.losses] == [v.tobytes() for v in ref.losses]
    assert (opt.logits, opt.params) == (ref.logits, ref.params)


def _wide_ig_net(seed):
    """An input gradient through 520 output channels (260 channel pairs,
    beyond the 256 that always sum in int32): input channels 0 and 1 carry
    weights of 127 in every output channel (sum |w| above 65535: the int64
    sums), the others small ones (int32 sums beyond 256 pairs)."""
    b = NetBuilder((4, 4, 6), seed=seed)
    b.pointwise(8, act="relu")
    w = b.rng.normal(0.0, 0.01, size=(520, 1, 1, 8))
    w[:, :, :, :2] = 1.0
    b.pointwise(520, act="relu6", weight=w)
    b.pointwise(16, act=None)
    b.fc(3)
    return b


@pytest.mark.parametrize("target", ["host", "m7"])
@pytest.mark.parametrize("scheme", ["full", "full_residue", "stem"])
def test_wide_input_grad(request, target, scheme):
    b = _wide_ig_net(7)
    graph = b.quantize(netzoo.calib(b, n=8, seed=7))
    plan = compile_model(graph, _schemes(graph)[scheme])
    xs, ys = _samples(b, graph, 3, 8)
    ref, _ = _same(request.getfixturevalue(f"{target}_exes"), target, plan, xs, ys, xs[:2])
    assert len(set(ref.losses)) > 1


@pytest.mark.parametrize("target", ["host", "m7"])
@pytest.mark.parametrize("lr", [30.0, 3e4])
def test_update_saturates(request, target, lr):
    """Learning rates that drive weight and bias steps to their limits (the
    rounding's saturation) and the residue path."""
    for scheme in ("full", "full_residue"):
        plan, xs, ys = _shaped_case("bwd", scheme, seed=4)
        ref, opt = (runner.run(e, plan.data, list(zip(xs, ys)), xs[:2], lr=lr, target=target)
                    for e in request.getfixturevalue(f"{target}_exes"))
        assert ref.status == 0 and opt.status == 0, ref.message + opt.message
        assert [v.tobytes() for v in opt.losses] == [v.tobytes() for v in ref.losses]
        assert (opt.logits, opt.params) == (ref.logits, ref.params)


def _small_cin_net(seed, shape):
    """A k x k conv and an fc over a spatial input, both on few input
    channels: the column is then laid out as the weights are stored (every
    channel trained, perm order; trained part and frozen part; frozen)."""
    b = NetBuilder(shape, seed=seed)
    b.conv(shape[2], k=3, act="relu")    # cin -> cin: 2 x 2 tiles, 9 taps
    b.fc(5, act="relu")                  # kernel over the whole input: one pixel, h * w taps
    b.fc(3)
    return b


@pytest.mark.parametrize("target", ["host", "m7"])
@pytest.mark.parametrize("shape", [(5, 6, 1), (5, 6, 2), (5, 6, 3), (8, 8, 6)])
@pytest.mark.parametrize("scheme", ["full", "partial", "frozen", "stem"])
def test_small_cin(request, target, shape, scheme):
    """Few input channels per kernel tap, n_train == cin and n_train < cin
    with a perm, and frozen without one (8x8x6: a column too long for the
    byte buffer, filled element by element)."""
    b = _small_cin_net(5, shape)
    graph = b.quantize(netzoo.calib(b, n=8, seed=5))
    plan = compile_model(graph, _schemes(graph)[scheme])
    cin = shape[2]
    conv, fc = mf.Model.parse(plan.data).layers[:2]
    part = cin if cin == 1 else None  # None: 0 < n_train < cin
    want = {"full": (cin, cin), "partial": (part, part), "frozen": (0, 0), "stem": (part, 0)}[scheme]
    for layer, nt in zip((conv, fc), want):
        if nt is None:
            assert 0 < layer.n_train < cin
        else:
            assert layer.n_train == nt
        assert (layer.perm_off != mf.NO_OFFSET) == (layer.n_train > 0)
    xs, ys = _samples(b, graph, 3, 6)
    ref, _ = _same(request.getfixturevalue(f"{target}_exes"), target, plan, xs, ys, xs[:2])
    if scheme != "frozen":
        assert len(set(ref.losses)) > 1  # training moved something


@pytest.mark.parametrize("target", ["m7", "rv32"])
@pytest.mark.parametrize("name,scheme", [("mbnet", "sparse"), ("cnn", "full_residue")])
def test_zoo_emulated(request, target, name, scheme):
    b, g, plan = netzoo.build(name, scheme, seed=13)
    xs, ys = netzoo.samples(b, g, 3, seed=14)
    ref, opt = _same(request.getfixturevalue(f"{target}_exes"), target, plan, xs, ys, xs[:1])
    assert sum(opt.step_instructions) < sum(ref.step_instructions)


@pytest.mark.parametrize("name", sorted(SHAPED))
@pytest.mark.parametrize("scheme", ["partial", "sparse", "frozen", "stem"])
def test_shaped_m7(m7_exes, name, scheme):
    """The DSP path (SXTB16/SMLAD) on the emulated Cortex-M7."""
    plan, xs, ys = _shaped_case(name, scheme, seed=3)
    _same(m7_exes, "m7", plan, xs, ys, xs[:1])


@pytest.mark.parametrize("scheme", ["full", "full_residue"])
def test_backward_kernels_m7(m7_exes, scheme):
    """Every layer trained (n_train a multiple of 4): the SMLAD weight gradient and
    the one-pass input gradients on the emulated Cortex-M7."""
    plan, xs, ys = _shaped_case("bwd", scheme, seed=5)
    _same(m7_exes, "m7", plan, xs, ys, xs[:1])


@pytest.mark.parametrize("name", sorted(SHAPED))
def test_shaped_rv32(rv32_exes, name):
    """The plain C optimised path as the RISC-V compiler builds it (32-bit, no DSP)."""
    plan, xs, ys = _shaped_case(name, "partial", seed=3)
    _same(rv32_exes, "rv32", plan, xs, ys, xs[:1])


@pytest.mark.parametrize("name", sorted(SHAPED))
def test_shaped_rv32_lean(rv32_lean_exes, name):
    """The lean build: the reference depthwise and stem kernels beside the
    other optimised ones (the dispatch's fallbacks), the same results."""
    plan, xs, ys = _shaped_case(name, "partial", seed=4)
    _same(rv32_lean_exes, "rv32", plan, xs, ys, xs[:1])


@pytest.mark.parametrize("name,scheme", [("mbnet", "sparse"), ("mbnet", "full"), ("cnn", "full_residue")])
def test_zoo_rv32_lean(rv32_lean_exes, name, scheme):
    b, g, plan = netzoo.build(name, scheme, seed=15)
    xs, ys = netzoo.samples(b, g, 3, seed=16)
    ref, lean = _same(rv32_lean_exes, "rv32", plan, xs, ys, xs[:1])
    assert sum(lean.step_instructions) < sum(ref.step_instructions)


# -- the host simulator's kernels (TT_HOST_SIMD, kernels/tt_*_host.c) --------

@pytest.fixture(scope="module")
def host_simd_exes(tmp_path_factory):
    """The reference kernels and the optimised ones as the simulator's
    library builds them (-DTT_HOST_SIMD=1: the host-only kernels, AVX2 where
    the host has it), both under ASan/UBSan."""
    missing = runner.missing_tools("host")
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    ref = runner.build("host", tmp_path_factory.mktemp("host_ref"), REFERENCE)
    opt = runner.build("host", tmp_path_factory.mktemp("host_simd"), ["-DTT_HOST_SIMD=1"])
    return ref, opt


def _host_simd_net(seed):
    """The host kernels' blocks of 32 channels and their tails: a 3x3 conv of
    63 taps (odd) into 40 channels; pointwise layers of 33, 70 and 31
    channels (odd and over one block); an input gradient through 515 output
    channels (int32 chunks of 256 pairs, one of 1 pair, then the odd channel
    alone) and through 33 (one int32 sum with the odd channel), input
    channels odd and over a block; depthwise layers on 70 channels (blocks of
    32, 32 and 6) and 31 (one block, two halves)."""
    b = NetBuilder((6, 5, 7), seed=seed)
    b.conv(40, k=3, stride=1, act="relu")  # cin 7: 63 taps, cout 40
    b.pointwise(33, act="relu")          # cin 40, cout 33: a block and one lane
    b.pointwise(70, act="relu6")         # cin 33, cout 70: 2 blocks and 6 lanes
    b.dwconv(5, 2, act="relu6")          # 70 channels, stride 2
    b.pointwise(515, act=None)           # cout 515
    b.pointwise(31, act="relu")          # cin 515: 17 blocks of input channels
    b.dwconv(3, 1, act="relu6")          # 31 channels
    b.pointwise(9, act="relu")
    b.fc(3)
    return b


def _lower_shifts(plan):
    """Every third channel of each conv and depthwise layer with its shift
    lowered by 2 (below 33 where it was 33 or 34): the per-lane requantisation."""
    m = mf.Model.parse(plan.data)
    blob = bytearray(m.blob)
    for layer in m.layers:
        if layer.kind in (mf.L_CONV, mf.L_DWCONV):
            cout = m.tensors[layer.out].c
            for c in range(0, cout, 3):
                blob[layer.shift_off + c] = max(1, blob[layer.shift_off + c] - 2)
    m.blob = bytes(blob)
    return m.pack()


@pytest.mark.parametrize("name", sorted(SHAPED) + ["host_simd"])
@pytest.mark.parametrize("scheme", ["full", "partial", "sparse", "frozen", "stem"])
def test_shaped_host_simd(host_simd_exes, name, scheme):
    if name == "host_simd":
        b = _host_simd_net(0)
        graph = b.quantize(netzoo.calib(b, n=8, seed=0))
        plan = compile_model(graph, _schemes(graph)[scheme])
        xs, ys = _samples(b, graph, 3, 1)
    else:
        plan, xs, ys = _shaped_case(name, scheme)
    _same(host_simd_exes, "host", plan, xs, ys, xs[:2])


@pytest.mark.parametrize("scheme", ["stem", "frozen"])
def test_dwconv_low_shifts_m7(m7_exes, scheme):
    """Depthwise layers with some shifts below 33 (not every channel
    SMMLA-requantisable): the general 4-channel path beside the border-window
    kernel, on the emulated Cortex-M7."""
    plan, xs, ys = _shaped_case("dw4_edge", scheme, seed=3)
    data = _lower_shifts(plan)
    ref, opt = (runner.run(e, data, list(zip(xs, ys)), xs[:2], target="m7") for e in m7_exes)
    assert ref.status == 0 and opt.status == 0, ref.message + opt.message
    assert [v.tobytes() for v in opt.losses] == [v.tobytes() for v in ref.losses]
    assert (opt.logits, opt.params) == (ref.logits, ref.params)


@pytest.mark.parametrize("name,scheme", [("mbnet", "full"), ("mbnet", "sparse"), ("cnn", "full_residue")])
def test_zoo_host_simd(host_simd_exes, name, scheme):
    b, g, plan = netzoo.build(name, scheme, seed=11)
    xs, ys = netzoo.samples(b, g, 4, seed=12)
    _same(host_simd_exes, "host", plan, xs, ys, xs[:2])


@pytest.mark.parametrize("scheme", ["full", "partial"])
def test_host_simd_low_shifts(host_simd_exes, scheme):
    b = _host_simd_net(2)
    graph = b.quantize(netzoo.calib(b, n=8, seed=2))
    data = _lower_shifts(compile_model(graph, _schemes(graph)[scheme]))
    xs, ys = _samples(b, graph, 3, 3)
    ref, opt = (runner.run(e, data, list(zip(xs, ys)), xs[:2], target="host") for e in host_simd_exes)
    assert ref.status == 0 and opt.status == 0, ref.message + opt.message
    assert [v.tobytes() for v in opt.losses] == [v.tobytes() for v in ref.losses]
    assert (opt.logits, opt.params) == (ref.logits, ref.params)
