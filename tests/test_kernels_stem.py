"""The few-tap conv kernel (kernels/tt_stem_opt.c: at most 32 window taps
kh * kw * cin, e.g. the paper models' 3x3 3-channel stem) gives the
reference kernels' results bit for bit, on the host (its plain C path, under
ASan/UBSan) and on the emulated Cortex-M7 (its DSP path): alone and as the
producer of a fused op (row by row, its output rows kept in a ring), with
the int8 clamp and a ReLU's, padding, stride 1 and 2, odd pixel counts, up
to the kernel's 32 output channels and past them (im2col then), frozen and
with a trained bias (the clamp mask written)."""
import pytest

from tinytrain.builder import NetBuilder
from tinytrain.compiler import Scheme, compile_model

import netzoo
from test_fusion import fused_ops
from test_kernels_opt import _same, _samples, host_exes, m7_exes  # noqa: F401

# input shape, kernel, stride, output channels, activation
CASES = {
    "stem3x3s2": ((17, 15, 3), 3, 2, 16, "relu6"),
    "stem3x3s1": ((9, 11, 3), 3, 1, 8, None),
    "5x5x1": ((8, 8, 1), 5, 1, 6, "relu"),
    "3x3x2_32": ((7, 9, 2), 3, 2, 32, None),
    "past_32": ((7, 9, 3), 3, 2, 34, "relu"),
    "1x1s2": ((6, 7, 3), 1, 2, 4, None),
}


def _net(shape, k, stride, cout, act, fused, seed=3):
    b = NetBuilder(shape, seed=seed)
    b.conv(cout, k=k, stride=stride, act=act)
    if fused:  # a frozen depthwise and a 1x1 after it: one fused op, row by row
        b.dwconv(3, 1, act="relu6")
        b.pointwise(4, act=None)
    b.fc(3)  # over every output pixel: an error in one shows (a pool would average it away)
    return b


def _scheme(graph, trained_stem):
    names = [layer.name for layer in graph.param_layers]
    if trained_stem:
        return Scheme(bias={names[0], names[-1]}, weights={names[-1]: 1.0})
    return Scheme.last_layers(graph, n_bias=1, n_weights=1)


@pytest.mark.parametrize("target", ["host", "m7"])
@pytest.mark.parametrize("fused", [False, True], ids=["alone", "fused"])
@pytest.mark.parametrize("trained_stem", [False, True], ids=["frozen", "bias"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_stem_kernel(request, target, case, fused, trained_stem):
    b = _net(*CASES[case], fused=fused)
    graph = b.quantize(netzoo.calib(b, n=8, seed=4))
    plan = compile_model(graph, _scheme(graph, trained_stem), fuse="all" if fused else False)
    if fused and not trained_stem:
        assert fused_ops(plan), "the stem should produce a fused op's input rows"
    xs, ys = _samples(b, graph, 3, 7)
    ref, _ = _same(request.getfixturevalue(f"{target}_exes"), target, plan, xs, ys, xs[:2])
    assert len(set(ref.losses)) > 1  # training moved something
