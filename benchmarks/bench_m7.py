"""Instructions per training step and per inference on the emulated Cortex-M7
(qemu mps2-an500, -icount shift=0: deterministic), with arena and stack bytes:
the reference kernels (-DTT_OPTIMIZED=0) beside the optimised ones (default).

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


def mcunet_cases():
    """MCUNet-5fps (128x128x3) with the paper's '49kb' sparse scheme, if the
    converted model is in shared/ beside the repository: the default plan
    (fused where the arena needs it), every legal fusion, and none."""
    path = Path(__file__).resolve().parents[2] / "shared" / "models" / "tte" / "mcunet-5fps.pkl"
    if not path.exists():
        return [], f"mcunet-5fps/49kb: skipped, {path} not found"
    from tinytrain.convert import tte
    g = tte.load(str(path), n_classes=10)
    scheme = tte.published_scheme(g, "mcunet-5fps", "49kb")
    x = np.random.default_rng(0).integers(-128, 128, size=128 * 128 * 3).astype(np.int8)
    return [(f"mcunet-5fps/49kb{label}", compile_model(g, scheme, fuse=fuse), [x], [3])
            for label, fuse in (("", True), (" all fused", "all"), (" unfused", False))], None


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
            xs, ys = netzoo.samples(b, g, args.steps, seed=1)
            cases.append((f"{name}/{scheme}", plan, xs, ys))
    b = mbnet32()
    g = b.quantize(netzoo.calib(b))
    for label, scheme in (("last layer", Scheme.last_layers(g, 1, 1)),
                          ("sparse", netzoo.sparse_scheme(g)),
                          ("full", Scheme.full(g))):
        xs, ys = netzoo.samples(b, g, args.steps, seed=1)
        cases.append((f"mbnet32/{label}", compile_model(g, scheme), xs, ys))
    mcunet, note = mcunet_cases()
    cases += mcunet
    with tempfile.TemporaryDirectory() as tmp:
        # reference kernels only (-DTT_OPTIMIZED=0) and the optimised ones (the default)
        exes = {"ref": runner.build("m7", Path(tmp) / "ref", ["-DTT_OPTIMIZED=0"]),
                "opt": runner.build("m7", Path(tmp) / "opt")}
        print(f"{'model/scheme':27s} {'step ref':>12s} {'step opt':>12s} {'infer ref':>12s} {'infer opt':>12s} "
              f"{'arena B':>8s} {'params B':>8s} {'stack B':>8s} {'model B':>8s}")
        for label, plan, xs, ys in cases:
            r = {k: runner.run(e, plan.data, list(zip(xs, ys)), xs[:1], target="m7") for k, e in exes.items()}
            if r["ref"].status or r["opt"].status:
                print(f"{label}: {r['ref'].message or r['opt'].message}")
                continue
            if r["ref"].params != r["opt"].params or r["ref"].logits != r["opt"].logits:
                print(f"{label}: optimised and reference kernels differ")
                continue
            print(f"{label:27s} {int(np.mean(r['ref'].step_instructions)):12d} "
                  f"{int(np.mean(r['opt'].step_instructions)):12d} {r['ref'].predict_instructions[0]:12d} "
                  f"{r['opt'].predict_instructions[0]:12d} {plan.arena_size:8d} {plan.persist_size:8d} "
                  f"{max(r['ref'].stack_bytes, r['opt'].stack_bytes):8d} {len(plan.data):8d}")
        if note:
            print(note)


if __name__ == "__main__":
    main()
