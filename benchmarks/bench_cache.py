"""Instructions per training step with the frozen-prefix cache on the
emulated Cortex-M7 (qemu mps2-an500, -icount shift=0), averaged over
several epochs on stored samples: the first epoch runs the prefix and keeps
each sample's cut (in PSRAM, as the board's SDRAM), the later ones start
from it (tt_run's cached jobs, firmware/baremetal/tt_run.c).

    python benchmarks/bench_cache.py [--samples N] [--epochs E] [--case MODEL:SCHEME ...] [--out FILE]

Per case: N digits (upscaled to 128x128x3) trained E epochs in order, with
the cache and without; the mean instructions per step of each, the first
epoch's and the later epochs' means, the bytes a sample's cut takes; the
cached run's parameters, losses and logits are checked bit for bit against
the uncached run and the host simulator's tinytrain.epochs. bench_m7.py
reports the same figure as its own column. Default: MCUNet-5fps 49kb, 5
samples, 3 epochs (about 3 minutes on 2 shared cores).
"""
import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import paper_models  # noqa: E402
import tinytrain  # noqa: E402
from tinytrain import runner  # noqa: E402


def measure(exe, case, samples: int, epochs: int) -> dict:
    """The cached and uncached runs of one case; exits if they differ."""
    pairs = list(zip(case.xs[:samples], case.ys[:samples]))
    steps = pairs * epochs
    runs = {c: runner.run(exe, case.plan.data, steps, case.xs[:1], target="m7", timeout=3600, cache=c)
            for c in (False, True)}
    for r in runs.values():
        if r.status:
            sys.exit(f"{case.model}/{case.scheme}: {r.message}")
    t = tinytrain.Trainer(case.plan.data)
    losses = tinytrain.epochs(t, [x.tobytes() for x, _ in pairs], [y for _, y in pairs], epochs)
    c, p = runs[True], runs[False]
    if c.params != p.params or c.logits != p.logits or c.params != t.params() or \
            np.float32(c.losses).tobytes() != np.float32(losses).tobytes():
        sys.exit(f"{case.model}/{case.scheme}: the cached steps differ from the uncached ones or the simulator")
    n = len(pairs)
    return {"model": case.model, "scheme": case.scheme, "samples": n, "epochs": epochs,
            "feature_bytes": t.feature_bytes(),
            "cached_step_instructions": statistics.mean(c.step_instructions),
            "cached_first_epoch": statistics.mean(c.step_instructions[:n]),
            "cached_later_epochs": statistics.mean(c.step_instructions[n:]) if epochs > 1 else None,
            "uncached_step_instructions": statistics.mean(p.step_instructions)}


def line(r: dict) -> str:
    later = f", later epochs {r['cached_later_epochs'] / 1e6:.1f}M" if r["cached_later_epochs"] else ""
    return (f"{r['model']} {r['scheme']}: {r['cached_step_instructions'] / 1e6:.1f}M instructions a step with the "
            f"cache over {r['epochs']} epochs of {r['samples']} samples (first epoch {r['cached_first_epoch'] / 1e6:.1f}M"
            f"{later}; {r['uncached_step_instructions'] / 1e6:.1f}M without; {r['feature_bytes']:,} B a sample)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--case", action="append", help="MODEL:SCHEME (default mcunet-5fps:49kb); repeatable")
    ap.add_argument("--out", help="JSON file to write (default: none)")
    args = ap.parse_args()
    missing = runner.missing_tools("m7") or paper_models.missing()
    if missing:
        sys.exit(f"needs {missing}")
    only = {}
    for c in args.case or ["mcunet-5fps:49kb"]:
        m, s = c.split(":")
        only.setdefault(m, []).append(s)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exe = runner.build("m7", Path(tmp) / "opt")
        for case in paper_models.cases(args.samples, only):
            rows.append(measure(exe, case, args.samples, args.epochs))
            print(line(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
