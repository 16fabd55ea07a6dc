"""Instructions per training step and per inference on the emulated RV32 core
(qemu-system-riscv32 -machine virt, rv32imac without FPU: the ESP32-C3/C6
class), beside the emulated Cortex-M7, both with the optimised kernels.

RV32 figures are exact retired-instruction counts (minstret under qemu
-icount); the M7's come from SysTick under -icount (resolution 40). Both are
instructions, not cycles. Printed as a table and written as JSON.

    python benchmarks/bench_rv32.py [--steps N] [--json PATH]
    python benchmarks/bench_rv32.py --variants   # the .mpy's three builds on RV32

--variants compares the kernels of the three `.mpy` builds (full, lean:
without the optimised depthwise and stem kernels, small: the reference
kernels) on RV32, compiled -Os as the .mpy is, on the test zoo and the
32x32 MobileNet-like network: instructions per step and per inference.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from tinytrain import runner  # noqa: E402
from zoo import zoo_cases  # noqa: E402

TARGETS = ("m7", "rv32")


def measure(cases, targets=TARGETS):
    """Runs every case on every target whose tools are present; returns one row
    per case: mean instructions per step and per inference for each target,
    arena, params and model bytes, and whether the targets agreed bit for bit."""
    present = [t for t in targets if not runner.missing_tools(t)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exes = {t: runner.build(t, Path(tmp) / t) for t in present}
        for label, plan, xs, ys in cases:
            row = {"case": label, "arena_bytes": plan.arena_size, "params_bytes": plan.persist_size,
                   "model_bytes": len(plan.data)}
            results = {t: runner.run(e, plan.data, list(zip(xs, ys)), xs[:1], target=t) for t, e in exes.items()}
            for t, r in results.items():
                if r.status:
                    row[t] = {"error": r.message}
                    continue
                row[t] = {"step_instructions": int(np.mean(r.step_instructions)),
                          "infer_instructions": r.predict_instructions[0], "stack_bytes": r.stack_bytes}
            done = [r for r in results.values() if not r.status]
            row["bit_identical"] = len(done) == len(results) and all(
                (r.params, r.logits, [v.tobytes() for v in r.losses]) ==
                (done[0].params, done[0].logits, [v.tobytes() for v in done[0].losses]) for r in done)
            rows.append(row)
    return {"targets": present, "missing": {t: runner.missing_tools(t) for t in targets if t not in present},
            "rows": rows}


# the .mpy builds' kernels (make natmod TT_OPTIMIZED=1 / lean / 0), at the .mpy's -Os
VARIANT_FLAGS = {"full": ["-Os"], "lean": ["-Os", "-DTT_OPT_DEPTHWISE=0", "-DTT_OPT_STEM=0"],
                 "small": ["-Os", "-DTT_OPTIMIZED=0"]}


def measure_variants(cases):
    """Per case and build variant: mean instructions per step, per inference;
    and whether the variants agreed bit for bit."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exes = {v: runner.build("rv32", Path(tmp) / v, fl) for v, fl in VARIANT_FLAGS.items()}
        for label, plan, xs, ys in cases:
            res = {v: runner.run(e, plan.data, list(zip(xs, ys)), xs[:1], target="rv32") for v, e in exes.items()}
            bad = [f"{v}: {r.message}" for v, r in res.items() if r.status]
            if bad:
                raise RuntimeError(f"{label}: " + "; ".join(bad))
            same = len({(r.params, tuple(v.tobytes() for v in r.losses)) for r in res.values()}) == 1
            rows.append({"case": label, "bit_identical": same,
                         **{v: {"step_instructions": int(np.mean(r.step_instructions)),
                                "infer_instructions": r.predict_instructions[0]} for v, r in res.items()}})
    return {"variants": list(VARIANT_FLAGS), "rows": rows}


def print_variants(result):
    vs = result["variants"]
    print(f"{'model/scheme':20s}" + "".join(f" {'step ' + v:>12s}" for v in vs) +
          "".join(f" {'infer ' + v:>12s}" for v in vs) + "  same")
    for row in result["rows"]:
        print(f"{row['case']:20s}" + "".join(f" {row[v]['step_instructions']:12d}" for v in vs) +
              "".join(f" {row[v]['infer_instructions']:12d}" for v in vs) +
              f"  {'yes' if row['bit_identical'] else 'NO'}")


def print_table(result):
    ts = result["targets"]
    head = f"{'model/scheme':20s}" + "".join(f" {'step ' + t:>12s} {'infer ' + t:>12s} {'stack ' + t:>10s}" for t in ts)
    print(head + f" {'arena B':>8s} {'params B':>8s} {'same':>5s}")
    for row in result["rows"]:
        line = f"{row['case']:20s}"
        for t in ts:
            r = row[t]
            if "error" in r:
                line += f" {'error: ' + r['error'][:34]:>36s}"
            else:
                line += f" {r['step_instructions']:12d} {r['infer_instructions']:12d} {r['stack_bytes']:10d}"
        print(line + f" {row['arena_bytes']:8d} {row['params_bytes']:8d} {'yes' if row['bit_identical'] else 'NO':>5s}")
    for t, tools in result["missing"].items():
        print(f"{t}: skipped, needs {', '.join(tools)} (make setup installs them)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json", help="default build/bench/rv32.json (--variants: rv32-variants.json)")
    ap.add_argument("--variants", action="store_true", help="the .mpy's full, lean and small kernels on RV32")
    args = ap.parse_args()
    if runner.missing_tools("rv32"):
        sys.exit(f"needs {', '.join(runner.missing_tools('rv32'))}: run make setup")
    if args.variants:
        result = measure_variants(zoo_cases(args.steps, with_mbnet32=True))
        print_variants(result)
        out = Path(args.json or ROOT / "build" / "bench" / "rv32-variants.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        print(f"written {out}")
        return
    result = measure(zoo_cases(args.steps, with_mbnet32=False))
    result["steps"] = args.steps
    print_table(result)
    out = Path(args.json or ROOT / "build" / "bench" / "rv32.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
