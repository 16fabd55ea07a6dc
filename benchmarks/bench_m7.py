"""Instructions per training step and per inference on the emulated Cortex-M7
(qemu mps2-an500, -icount shift=0: deterministic), with arena and stack bytes.

    python benchmarks/bench_m7.py [--steps N]
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import netzoo  # noqa: E402
from tinytrain import runner  # noqa: E402
from tinytrain.builder import NetBuilder  # noqa: E402
from tinytrain.compiler import Scheme, compile_model  # noqa: E402


def mbnet32(seed=0):
    """A small MobileNet-style network on 32x32x3, closer to real workloads."""
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    missing = runner.missing_tools("m7")
    if missing:
        sys.exit(f"needs {', '.join(missing)}: run make setup")
    cases = []
    for name in ("mlp", "cnn", "mbnet"):
        for scheme in ("full", "sparse", "bias_only"):
            b, g, plan = netzoo.build(name, scheme, seed=0)
            cases.append((f"{name}/{scheme}", b, g, plan))
    b = mbnet32()
    g = b.quantize(netzoo.calib(b))
    for label, scheme in (("last layer", Scheme.last_layers(g, 1, 1)),
                          ("sparse", netzoo.sparse_scheme(g)),
                          ("full", Scheme.full(g))):
        cases.append((f"mbnet32/{label}", b, g, compile_model(g, scheme)))
    with tempfile.TemporaryDirectory() as tmp:
        exe = runner.build("m7", Path(tmp))
        print(f"{'model/scheme':22s} {'instr/step':>12s} {'instr/infer':>12s} {'arena B':>8s} "
              f"{'params B':>8s} {'stack B':>8s} {'model B':>8s}")
        for label, b, g, plan in cases:
            xs, ys = netzoo.samples(b, g, args.steps, seed=1)
            r = runner.run(exe, plan.data, list(zip(xs, ys)), xs[:1], target="m7")
            if r.status:
                print(f"{label}: {r.message}")
                continue
            print(f"{label:22s} {int(np.mean(r.step_instructions)):12d} {r.predict_instructions[0]:12d} "
                  f"{plan.arena_size:8d} {plan.persist_size:8d} {r.stack_bytes:8d} {len(plan.data):8d}")


if __name__ == "__main__":
    main()
