"""The small networks of our own that the emulated-core benchmarks run
(bench_m7.py, bench_rv32.py): the test zoo's networks under three schemes,
and a MobileNet-style network on 32x32x3, closer to real workloads."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import netzoo  # noqa: E402
from tinytrain.builder import NetBuilder  # noqa: E402
from tinytrain.compiler import Scheme, compile_model  # noqa: E402


def mbnet32(seed=0):
    """A small MobileNet-style network on 32x32x3."""
    b = NetBuilder((32, 32, 3), seed=seed)
    b.conv(8, k=3, stride=2, act="relu6")
    for cout, stride in ((8, 1), (16, 2), (16, 1), (24, 2)):
        x = b.last
        b.pointwise(cout * 3, act="relu6")
        b.dwconv(3, stride, act="relu6")
        y = b.pointwise(cout, act=None)
        if stride == 1 and b.shapes[x] == b.shapes[y]:
            b.add(x, y)
    b.avgpool()
    b.fc(10)
    return b


def zoo_cases(steps, with_mbnet32=True):
    """(label, plan, inputs, labels) per case, `steps` samples each."""
    cases = []
    for name in ("mlp", "cnn", "mbnet"):
        for scheme in ("full", "sparse", "bias_only"):
            b, g, plan = netzoo.build(name, scheme, seed=0)
            xs, ys = netzoo.samples(b, g, steps, seed=1)
            cases.append((f"{name}/{scheme}", plan, xs, ys))
    if with_mbnet32:
        b = mbnet32()
        g = b.quantize(netzoo.calib(b))
        for label, scheme in (("last layer", Scheme.last_layers(g, 1, 1)), ("sparse", netzoo.sparse_scheme(g)),
                              ("full", Scheme.full(g))):
            xs, ys = netzoo.samples(b, g, steps, seed=1)
            cases.append((f"mbnet32/{label}", compile_model(g, scheme), xs, ys))
    return cases
