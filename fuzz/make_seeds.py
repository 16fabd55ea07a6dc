"""Seed corpus for the model fuzzer: valid model files of every op kind,
layer kind, training scheme, loss and fusion, from the test networks."""
import argparse
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "host_tools"), str(ROOT / "tests")]

import netzoo  # noqa: E402
from tinytrain import modelfile as mf  # noqa: E402
from tinytrain.compiler import compile_model  # noqa: E402


def seeds():
    """(name, model bytes) for each network x scheme x fusion, and MSE variants."""
    for net, scheme, fuse in itertools.product(netzoo.ZOO, netzoo.SCHEMES, (False, "all")):
        b = netzoo.ZOO[net](0)
        g = b.quantize(netzoo.calib(b))
        s = netzoo.SCHEMES[scheme](g)
        variants = [("ce", s)]
        if scheme in ("full", "bias_only"):
            s2 = netzoo.SCHEMES[scheme](g)
            s2.loss = "mse"
            variants.append(("mse", s2))
        for loss, sc in variants:
            try:
                data = compile_model(g, sc, fuse=fuse).data
            except ValueError:
                continue  # a fusion this network does not have
            yield f"{net}-{scheme}-{'fused' if fuse else 'plain'}-{loss}", data


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    kinds, n = set(), 0
    seen = set()
    for name, data in seeds():
        if data in seen:
            continue
        seen.add(data)
        m = mf.Model.parse(data)
        kinds |= {("op", op.kind) for op in m.ops} | {("layer", L.kind) for L in m.layers}
        kinds.add(("loss", m.header.loss_kind))
        (out / f"{name}.ttrn").write_bytes(data)
        n += 1
    print(f"{n} seed models in {out}: op kinds {sorted(k for t, k in kinds if t == 'op')}, "
          f"layer kinds {sorted(k for t, k in kinds if t == 'layer')}, "
          f"loss kinds {sorted(k for t, k in kinds if t == 'loss')}")


if __name__ == "__main__":
    main()
