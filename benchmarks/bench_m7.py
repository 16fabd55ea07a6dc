"""Instructions per training step and per inference on the emulated Cortex-M7
(qemu mps2-an500, -icount shift=0: deterministic), and the whole-step SRAM
(arena + input + stack), for every published sparse scheme of the paper's
three models on real inputs, beside the paper's figures; then the host
simulator against PyTorch on the same MCUNet step.

    python benchmarks/bench_m7.py [--steps N] [--evals M] [--quick] [--out DIR]

Per case: the median over N training steps on N different digits (upscaled
to 128x128x3) and over M inferences; the stack the core's calls used (the
most of any call); instructions per op kind from one more step and one
inference with a per-op counter (-DTT_OP_PROFILE, a separate build: the
medians come from the build without it). The M7's trained parameters and
logits are checked bit for bit against the host simulator. With the
frozen-prefix cache (bench_cache.py): the mean instructions a step over
--cache-epochs epochs (default 3) of the same samples, the first epoch
paying the prefix. Small networks
of our own run first with the reference kernels beside the optimised ones.
Writes DIR/m7.json and DIR/m7.md (default benchmarks/results; --quick writes
nothing unless --out is given). Run time on 2 shared cores: about 7 minutes
in full, 3 with --quick (2 steps, 1 inference, the 49kb scheme of each model).
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
import bench_cache  # noqa: E402
import paper_models  # noqa: E402
import report  # noqa: E402
from zoo import zoo_cases  # noqa: E402
from tinytrain import runner  # noqa: E402
from tinytrain.sram import step_sram  # noqa: E402
from tinytrain import modelfile as mf  # noqa: E402
from tinytrain.trainer import Trainer  # noqa: E402


def crc_of(data: bytes) -> int:
    return mf.Header.unpack(data).crc32


def run_zoo(exes, steps):
    """Reference and optimised kernels side by side, bit-identical."""
    rows = []
    print(f"{'network/scheme':22s} {'step ref':>10s} {'step opt':>10s} {'infer ref':>10s} {'infer opt':>10s} "
          f"{'arena B':>8s} {'stack B':>8s}")
    for label, plan, xs, ys in zoo_cases(steps):
        r = {k: runner.run(exes[k], plan.data, list(zip(xs, ys)), xs[:1], target="m7") for k in ("ref", "opt")}
        if r["ref"].status or r["opt"].status:
            sys.exit(f"{label}: {r['ref'].message or r['opt'].message}")
        if r["ref"].params != r["opt"].params or r["ref"].logits != r["opt"].logits:
            sys.exit(f"{label}: optimised and reference kernels differ")
        row = {"case": label, "model_crc32": crc_of(plan.data),
               "step_ref": statistics.median(r["ref"].step_instructions),
               "step_opt": statistics.median(r["opt"].step_instructions),
               "inference_ref": r["ref"].predict_instructions[0], "inference_opt": r["opt"].predict_instructions[0],
               "arena": plan.arena_size, "stack": max(r["ref"].stack_bytes, r["opt"].stack_bytes)}
        rows.append(row)
        print(f"{label:22s} {row['step_ref']:10.0f} {row['step_opt']:10.0f} {row['inference_ref']:10d} "
              f"{row['inference_opt']:10d} {row['arena']:8d} {row['stack']:8d}")
    return rows


def check_against_simulator(case, steps, evals, res):
    t = Trainer(case.plan.data)
    losses = [t.step(x, y) for x, y in zip(case.xs[:steps], case.ys[:steps])]
    logits = [t.logits(x) for x in case.xs[:evals]]
    if t.params() != res.params or logits != res.logits or \
            np.float32(losses).tobytes() != np.float32(res.losses).tobytes():
        sys.exit(f"{case.model}/{case.scheme}: the M7 and the simulator differ")


def run_paper(exes, steps, evals, only, cache_epochs=3):
    rows = []
    for case in paper_models.cases(max(steps, evals), only):
        t0 = time.time()
        res = runner.run(exes["opt"], case.plan.data, list(zip(case.xs[:steps], case.ys[:steps])),
                         case.xs[:evals], target="m7", timeout=3600)
        if res.status:
            sys.exit(f"{case.model}/{case.scheme}: {res.message}")
        check_against_simulator(case, steps, evals, res)
        prof = runner.run(exes["prof"], case.plan.data, [(case.xs[0], case.ys[0])], case.xs[:1], target="m7",
                          timeout=3600)
        sram = step_sram(case.plan.data, {crc_of(case.plan.data): res.stack_bytes})
        row = {"model": case.model, "scheme": case.scheme, "model_crc32": crc_of(case.plan.data),
               "samples": steps, "step_instructions": statistics.median(res.step_instructions),
               "step_instructions_all": res.step_instructions,
               "inference_instructions": statistics.median(res.predict_instructions),
               "inference_instructions_all": res.predict_instructions,
               "arena": sram.arena, "input": sram.input, "input_bytes": sram.input_bytes, "stack": sram.stack,
               "step_sram": sram.total, "trained_params": case.plan.trained_params,
               "step_breakdown": paper_models.breakdown(case.plan.model, prof.step_ops[0]),
               "inference_breakdown": paper_models.breakdown(case.plan.model, prof.predict_ops[0]),
               "paper_kb": paper_models.PAPER_KB[case.model], "paper_ms": paper_models.PAPER_MS[case.model]}
        if cache_epochs:
            cached = bench_cache.measure(exes["opt"], case, steps, cache_epochs)
            row.update({k: cached[k] for k in ("cached_step_instructions", "feature_bytes")})
            row["cache_epochs"] = cache_epochs
        rows.append(row)
        print(f"{case.model:15s} {case.scheme:6s} {sram.line()}")
        print(f"{'':22s} step {row['step_instructions'] / 1e6:.1f}M instructions (median of {steps}), "
              f"inference {row['inference_instructions'] / 1e6:.1f}M; "
              + (f"{row['cached_step_instructions'] / 1e6:.1f}M a step with the prefix cache over {cache_epochs} "
                 f"epochs; " if cache_epochs else "") + "checked against the simulator; "
              f"{time.time() - t0:.0f} s")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="training steps (digits) per case: the median's samples")
    ap.add_argument("--evals", type=int, default=3, help="inferences per case")
    ap.add_argument("--quick", action="store_true", help="2 steps, 1 inference, each model's 49kb scheme")
    ap.add_argument("--out", help="folder for m7.json and m7.md (default benchmarks/results; --quick: none)")
    ap.add_argument("--no-host", action="store_true", help="skip the simulator-against-PyTorch table")
    ap.add_argument("--cache-epochs", type=int, default=3,
                    help="epochs of the frozen-prefix cache column (0: skip it)")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.evals = 2, 1
    out = Path(args.out) if args.out else (None if args.quick else HERE / "results")
    missing = runner.missing_tools("m7")
    if missing:
        sys.exit(f"needs {', '.join(missing)}: run make setup")
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        exes = {"ref": runner.build("m7", Path(tmp) / "ref", ["-DTT_OPTIMIZED=0"]),
                "opt": runner.build("m7", Path(tmp) / "opt"),
                "prof": runner.build("m7", Path(tmp) / "prof", ["-DTT_OP_PROFILE"])}
        zoo = run_zoo(exes, 3)
        note = paper_models.missing()
        paper = []
        if note:
            print(f"paper models skipped: {note}")
        else:
            only = {m: ["49kb"] for m in paper_models.MODELS} if args.quick else None
            paper = run_paper(exes, args.steps, args.evals, only, args.cache_epochs)
    host = None
    if not args.no_host and not note:
        import host_vs_torch
        host = host_vs_torch.run(steps=3 if args.quick else 10)
    results = {"steps": args.steps, "evals": args.evals, "cases": paper + zoo, "host": host,
               "seconds": round(time.time() - t_start)}
    print(report.markdown(results))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "m7.json").write_text(json.dumps(results, indent=1) + "\n")
        (out / "m7.md").write_text(report.markdown(results))
        print(f"wrote {out / 'm7.json'} and {out / 'm7.md'}")


if __name__ == "__main__":
    main()
