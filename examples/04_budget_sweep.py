#!/usr/bin/env python3
"""Accuracy against memory: the searched sparse scheme at every budget, from
the smallest arena (the last layer alone) to the full update.

    python examples/04_budget_sweep.py              # about 30 s on 2 cores
    python examples/04_budget_sweep.py --points 12  # a finer sweep
    python examples/04_budget_sweep.py --quick      # a smoke run, about 13 s

What it does
------------
The task and settings of example 03 (a CNN pretrained on upright digits,
fine-tuned in int8 on mirrored ones: `tinytrain.transfer.shifted_digits`;
QAS, batch 1, lr 0.05). The contribution analysis
(`tinytrain.planner.contribution_analysis`, on the validation images) is run
once; then for each of `--points` budgets spaced evenly from the arena of
"last layer only" to that of "all layers", `planner.plan_under_budget` with
that analysis picks the best scheme that fits (a search over exact arenas:
no training). Every distinct scheme found is then fine-tuned and scored on
the test images, together with the reference schemes: last layer only, the
biases of the last k layers (every k) and all layers.

What to observe (figures of the default run in examples/README.md)
---------------
* The curve rises steeply over the first step: at about a quarter of the
  full update's arena the search can afford the last conv's weights on a
  quarter of its input channels, which already gains some 15-20 points
  over the last layer alone.
* Then it flattens. More memory buys more channels and layers, which the
  search takes only where the analysis measured a gain; where training more
  measured a loss (early convs at this learning rate, on 300 samples) it
  leaves them frozen and the budget partly unused (the crosses, at the exact
  arenas, sit left of the budgets). The plateau is within a point or two of
  the full update, at about half its memory.
* The bias-only points stay near the last-layer one at every size: biases
  are cheap to store, but their arena still grows (the gradient has to
  travel back through every layer whose bias is trained), and on this task
  they buy a point or two. Memory is best spent on the weights of late layers.
* The searched accuracy need not rise with every budget: the search
  maximises the gains measured on the validation images (noisy, and
  assumed additive), and the test set has its own noise.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

try:
    import tinytrain  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "host_tools"))
from tinytrain.plots import accuracy_ylim, check_output
from tinytrain import planner, transfer


def plot(points, refs, before, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    ax.plot([p["budget"] for p in points], [100 * p["acc"] for p in points], "-o", color="#2ca02c", lw=2,
            label="searched scheme, at its budget")
    ax.plot([p["arena"] for p in points], [100 * p["acc"] for p in points], "x", color="#2ca02c", ms=7,
            label="searched scheme, at its exact arena")
    for k, (name, r) in enumerate(sorted(refs.items(), key=lambda kv: kv[1]["arena"])):
        color = {"last layer": "#7f7f7f", "all layers": "#d62728"}.get(name, "#9467bd")
        ax.plot([r["arena"]], [100 * r["acc"]], "s", color=color, ms=7)
        # staggered above and below the marker: neighbours in arena do not overlap
        ax.annotate(name, (r["arena"], 100 * r["acc"]), xytext=(6, 10 if k % 2 else -14), textcoords="offset points",
                    fontsize=8, color=color, arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6})
    ax.axhline(100 * before, color="k", ls=":", lw=1.2, label=f"before fine-tuning ({100 * before:.1f}%, float)")
    ax.set_xlabel("arena bytes for one training step (memory budget)")
    ax.set_ylabel("test accuracy after fine-tuning (%)")
    accuracy_ylim(ax, [100 * p["acc"] for p in points] + [100 * r["acc"] for r in refs.values()] + [100 * before])
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="pretraining, split and sample-order seed (default 0)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 budgets, 1 sample order, 2 epochs")
    ap.add_argument("--points", type=int, default=None, help="budgets in the sweep (default 8; 4 with --quick)")
    ap.add_argument("--lr", type=float, default=0.05, help="fine-tuning learning rate, QAS (default 0.05)")
    ap.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default 3; 2 with --quick)")
    ap.add_argument("--orders", type=int, default=None,
                    help="sample orders averaged per scheme (default 2; 1 with --quick)")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: every core)")
    ap.add_argument("--out", default="budget_sweep.png", help="the figure")
    args = ap.parse_args(argv)
    for flag, path in [("--out", args.out)]:  # before the run, not after it
        try:
            check_output(path, flag)
        except ValueError as e:
            ap.error(str(e))
    n_points = args.points if args.points is not None else (4 if args.quick else 8)
    if n_points < 2:
        ap.error("--points must be at least 2")
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 3)
    orders = args.orders if args.orders is not None else (1 if args.quick else 2)
    if epochs < 1 or orders < 1:
        ap.error("--epochs and --orders must be >= 1")
    seeds = tuple(range(args.seed, args.seed + orders))
    t_start = time.time()

    task = transfer.shifted_digits(args.seed)
    print(task.summary())
    g = task.graph
    refs = transfer.reference_schemes(g, lr=args.lr, qas=True, residue=False)
    arena = transfer.arenas(g, refs)
    lo, hi = arena["last layer"], arena["all layers"]

    analysis = planner.contribution_analysis(g, task.train.pair(), task.val.pair(),
                                             **transfer.analysis_options(g, lr=args.lr, epochs=epochs, seeds=seeds,
                                                                         jobs=args.jobs))
    print()
    print(analysis.table())

    budgets = [int(b) for b in np.linspace(lo, hi, n_points).round()]
    found = [planner.plan_under_budget(g, b, task.train.pair(), task.val.pair(), analysis=analysis)
             for b in budgets]
    schemes = dict(refs)
    for r in found:
        schemes.setdefault(transfer.scheme_label(g, r.k, r.weights), r.scheme)
    res = planner.evaluate_schemes(g, schemes, task.train.pair(), task.test.pair(), epochs=epochs, seeds=seeds,
                                   jobs=args.jobs)

    points = []
    for b, r in zip(budgets, found):
        label = transfer.scheme_label(g, r.k, r.weights)
        points.append(dict(budget=b, scheme=label, arena=r.arena_size, params=r.trained_params,
                           predicted=r.predicted_acc, acc=res[label]["acc"]))
    print(f"\nsearched scheme per budget; test accuracy on {len(task.test)} mirrored digits, mean of sample "
          f"orders {list(seeds)}, {epochs} epochs, lr {args.lr:g}, QAS")
    head = f"{'budget B':>9}  {'searched scheme (trained channels)':<44}{'arena B':>9}{'params':>8}" \
        f"{'val pred. %':>12}{'test %':>8}"
    print(head)
    print("-" * len(head))
    for p in points:
        print(f"{p['budget']:>9,}  {p['scheme']:<44}{p['arena']:>9,}{p['params']:>8,}{100 * p['predicted']:12.1f}"
              f"{100 * p['acc']:8.1f}")
    print("\nreference schemes:")
    for name in refs:
        r = res[name]
        print(f"  {name:<14}arena {r['arena']:>7,} B  params {r['trained_params']:>6,}  test {100 * r['acc']:5.1f}%")
    plot(points, {n: res[n] for n in refs}, task.target_acc, args.out,
         f"mirrored digits, seed {args.seed}: accuracy against the memory budget")
    print(f"plot: {args.out}")
    print(f"total run time {time.time() - t_start:.1f}s")
    return points, {n: res[n] for n in refs}


if __name__ == "__main__":
    main()
