#!/usr/bin/env python3
"""Int8 fine-tuning with and without quantisation-aware scaling (QAS).

    python examples/02_qas_on_off.py            # under a minute on 2 cores
    python examples/02_qas_on_off.py --quick    # a smoke run, about 10 s

What it does
------------
A small CNN is pretrained in float on upright digits and quantised to int8;
the target task is the same digits mirrored (`tinytrain.transfer.shifted_digits`:
300 training and 297 test images). Every weight and bias is then fine-tuned,
one sample at a time, with the same sample order for every run, at several
learning rates, three ways:

  float     float64 SGD in numpy (`tinytrain.floatnet`), from the float weights
  QAS       int8 in the simulator, `Scheme(qas=True)`: the gradient of each
            int8 weight is divided by s_w^2 (bias: (s_w s_x)^2), which makes
            the step on the integer weight  lr * dL/dW_real / s_w : float SGD
            on the real weight, expressed in integer units
  no QAS    int8, `Scheme(qas=False)`: plain SGD on the integer parameters,
            W_int -= lr * dL/dW_int  with  dL/dW_int = s_w * dL/dW_real

So at one learning rate a no-QAS weight step is s_w^2 times the QAS step and
a bias step (s_w s_x)^2 times (docs/arithmetic.md). The script prints those
factors for this model, then sweeps the no-QAS learning rate on its own scale.

What to observe (figures of the default run, seed 0, in examples/README.md)
---------------
* At the float learning rates, no-QAS training stalls: its steps are far
  below half an integer unit and round to zero. Not one weight or bias
  changes (the table's last columns) and the accuracy stays where it began.
* QAS at the same learning rates follows the float curves within the noise
  of batch-1 SGD. At the smallest rate it falls behind: many QAS steps are
  also under half a unit and are rounded away (8 fraction bits of residue
  keep them: examples/01_digits_qas.py).
* Without QAS the learning rate has to be found again, on a scale about
  1/s_w^2 larger (the printed factors): the sweep shows it learning slowly,
  then training the weights about as well as QAS, then diverging. Where
  the weights train best, the biases barely move or not at all: their factor
  (s_w s_x)^2 is s_x^2, thousands of times, smaller again, and by the rate at
  which they move the weights have diverged. QAS needs no search: the float
  learning rate carries over, to weights and biases alike.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

try:
    import tinytrain
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "host_tools"))
    import tinytrain
from tinytrain.plots import check_output
from tinytrain import transfer
from tinytrain import modelfile as mf
from tinytrain.compiler import Scheme, compile_model
from tinytrain.floatnet import FloatNet, train as float_train


def scale_factors(graph):
    """Per layer with parameters: median s_w^2 and (s_w s_x)^2, the factors
    by which a no-QAS step is smaller than a QAS step at the same lr."""
    rows = []
    for layer in graph.param_layers:
        s_w = layer.w_scale.astype(np.float64)
        s_x = graph.tensors[layer.inputs[0]].scale
        rows.append((layer.name, s_w.min(), s_w.max(), np.median(s_w ** 2), np.median((s_w * s_x) ** 2)))
    return rows


def changed(plan, before: bytes, after: bytes) -> dict:
    """How many trained int8 weights and biases differ between two
    snapshots of the trained parameters (Trainer.params(): the arena's
    persistent area, where the model file places each layer's trained
    weights and biases, int32 or, with the flag BIAS16, int16 changes;
    docs/format.md)."""
    out = {"weights": 0, "of weights": 0, "biases": 0, "of biases": 0}
    for L in plan.model.layers:
        cout = plan.model.tensors[L.out].shape[-1]
        if L.w_arena != mf.NO_OFFSET:
            n = L.n_train * L.kh * L.kw * (cout if L.kind == mf.L_CONV else 1)
            a, b = (np.frombuffer(p, np.int8, n, L.w_arena) for p in (before, after))
            out["weights"] += int((a != b).sum())
            out["of weights"] += n
        if L.b_arena != mf.NO_OFFSET:
            dtype = np.int16 if L.flags & mf.LF_BIAS16 else np.int32
            a, b = (np.frombuffer(p, dtype, cout, L.b_arena) for p in (before, after))
            out["biases"] += int((a != b).sum())
            out["of biases"] += cout
    return out


def int8_run(graph, scheme, task, orders, marks, bar):
    """(test accuracy before and after the numbers of samples in marks;
    counts of changed parameters)."""
    plan = compile_model(graph, scheme)
    t = tinytrain.Trainer(plan.data)
    xs_te, ys_te = task.test.as_bytes()
    p0 = t.params()
    accs, seen = [t.evaluate(xs_te, ys_te)], 0
    for order in orders:
        for i in order:
            t.step(task.train.q[i], int(task.train.y[i]))
            seen += 1
            if seen in marks:
                accs.append(t.evaluate(xs_te, ys_te))
            bar.update(1)
    return accs, changed(plan, p0, t.params())


def float_run(task, lr, orders, marks, bar):
    net = FloatNet(task.builder)
    accs = [net.accuracy(task.test.x, task.test.y)]

    def record(step, seen):
        bar.update(1)
        if seen in marks:
            accs.append(net.accuracy(task.test.x, task.test.y))

    float_train(net, task.train.x, task.train.y, lr=lr, batch_size=1, momentum=0.0, weight_decay=0.0,
                lr_schedule="constant", orders=orders, callback=record, write_back=False)
    return accs


def plot(runs, lrs, noqas_lrs, marks, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(lrs) + 1
    cols = min(panels, 3)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), sharey=True, squeeze=False)
    style = {"float": ("--", "#ff7f0e"), "QAS": ("-", "#1f77b4"), "no QAS": ("-", "#d62728")}

    def xs(accs):
        return [0] + marks[:len(accs) - 1]

    for ax, lr in zip(axes.flat, lrs):
        for method in ("float", "QAS", "no QAS"):
            r = runs[(method, lr)]
            ls, c = style[method]
            ax.plot(xs(r["accs"]), [100 * a for a in r["accs"]], ls, color=c, marker="o", ms=2.5,
                    label=f"{method} ({100 * r['accs'][-1]:.1f}%)")
        ax.set_title(f"lr {lr:g}, same for all three", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    ax = axes.flat[len(lrs)]
    cmap = plt.get_cmap("Reds")
    for j, lr in enumerate(noqas_lrs):
        r = runs[("no QAS", lr)]
        shade = cmap(0.35 + 0.65 * j / max(1, len(noqas_lrs) - 1))
        ax.plot(xs(r["accs"]), [100 * a for a in r["accs"]], "-", color=shade, marker="o", ms=2.5,
                label=f"no QAS, lr {lr:g} ({100 * r['accs'][-1]:.1f}%)")
    best = max(lrs, key=lambda lr: runs[("QAS", lr)]["accs"][-1])
    r = runs[("QAS", best)]
    ax.plot(xs(r["accs"]), [100 * a for a in r["accs"]], ":", color=style["QAS"][1],
            label=f"QAS, lr {best:g} ({100 * r['accs'][-1]:.1f}%)")
    ax.set_title("no QAS, its own learning-rate sweep", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    for ax in axes.flat[panels:]:
        ax.axis("off")
    for ax in axes.flat[:panels]:
        ax.set_xlabel("samples seen")
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 100)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (%)")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def floats(text):
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="pretraining, split and sample-order seed (default 0)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 epoch, fewer learning rates")
    ap.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default 3; 1 with --quick)")
    ap.add_argument("--lrs", type=floats, default=None,
                    help="learning rates run float, QAS and no QAS alike (default 0.003,0.01,0.03,0.1)")
    ap.add_argument("--noqas-lrs", type=floats, default=None,
                    help="the no-QAS sweep (default 100,300,1000,3000,10000)")
    ap.add_argument("--out", default="qas_on_off.png", help="the figure (default qas_on_off.png)")
    args = ap.parse_args(argv)
    for flag, path in [("--out", args.out)]:  # before the run, not after it
        try:
            check_output(path, flag)
        except ValueError as e:
            ap.error(str(e))
    epochs = args.epochs if args.epochs is not None else (1 if args.quick else 3)
    lrs = args.lrs or ([0.01, 0.1] if args.quick else [0.003, 0.01, 0.03, 0.1])
    noqas_lrs = args.noqas_lrs or ([1000.0] if args.quick else [100.0, 300.0, 1000.0, 3000.0, 10000.0])
    if epochs < 1 or min(lrs + noqas_lrs) <= 0:
        ap.error("epochs and learning rates must be positive")
    t_start = time.time()

    task = transfer.shifted_digits(args.seed)
    print(task.summary())
    graph = task.graph
    n = len(task.train)
    ends = [n * (e + 1) for e in range(epochs)]
    marks = sorted(set(range(50, n * epochs + 1, 50)) | set(ends))  # test accuracy after these samples
    orders = [np.random.default_rng([args.seed, e]).permutation(len(task.train)) for e in range(epochs)]

    print("\nwhy no QAS moves less: its step is the QAS step times these factors (median over channels)")
    print(f"  {'layer':<8}{'s_w min':>10}{'s_w max':>10}{'s_w^2':>11}{'(s_w s_x)^2':>13}")
    for name, lo, hi, f_w, f_b in scale_factors(graph):
        print(f"  {name:<8}{lo:10.4f}{hi:10.4f}{f_w:11.2e}{f_b:13.2e}")

    jobs = [(m, lr) for lr in lrs for m in ("float", "QAS", "no QAS")] + \
        [("no QAS", lr) for lr in noqas_lrs if lr not in lrs]
    from tqdm.auto import tqdm
    bar = tqdm(total=len(jobs) * epochs * len(task.train), desc="fine-tuning runs", unit="step",
               dynamic_ncols=True, leave=False)
    runs = {}
    for method, lr in jobs:
        bar.set_postfix_str(f"{method}, lr {lr:g}")
        t0 = time.time()
        if method == "float":
            runs[(method, lr)] = {"accs": float_run(task, lr, orders, marks, bar), "changed": None}
        else:
            scheme = Scheme.full(graph, qas=method == "QAS", lr=lr)
            accs, moved = int8_run(graph, scheme, task, orders, marks, bar)
            runs[(method, lr)] = {"accs": accs, "changed": moved}
        runs[(method, lr)]["seconds"] = time.time() - t0
    bar.close()

    n_te = len(task.test)
    print(f"\ntest accuracy (%) on {n_te} mirrored digits; {epochs} epoch(s) of {len(task.train)} samples, "
          f"batch 1, every weight and bias trained, seed {args.seed}")
    head = f"{'method':<8}{'lr':>8}{'before':>8}" + "".join(f"{'ep' + str(e + 1):>7}" for e in range(epochs)) + \
        f"{'weights changed':>20}{'biases changed':>16}"
    print(head)
    print("-" * len(head))
    def line(method, lr):
        r = runs[(method, lr)]
        eps = "".join(f"{100 * r['accs'][1 + marks.index(end)]:7.1f}" for end in ends)
        c = r["changed"]
        moved = "" if c is None else f"{c['weights']:>11,} of {c['of weights']:,}{c['biases']:>9} of {c['of biases']}"
        print(f"{method:<8}{lr:>8g}{100 * r['accs'][0]:8.1f}{eps}{moved}")

    for lr in lrs:
        for m in ("float", "QAS", "no QAS"):
            line(m, lr)
    for lr in noqas_lrs:
        if lr not in lrs:
            line("no QAS", lr)

    best_q = max(lrs, key=lambda lr: runs[("QAS", lr)]["accs"][-1])
    best_n = max(noqas_lrs, key=lambda lr: runs[("no QAS", lr)]["accs"][-1])
    print(f"\nbest final accuracy: QAS {100 * runs[('QAS', best_q)]['accs'][-1]:.1f}% (lr {best_q:g}), "
          f"no QAS {100 * runs[('no QAS', best_n)]['accs'][-1]:.1f}% (lr {best_n:g}, its own sweep), "
          f"float {100 * max(runs[('float', lr)]['accs'][-1] for lr in lrs):.1f}%")
    plot(runs, lrs, noqas_lrs, marks, args.out,
         f"fine-tuning every layer on mirrored digits, seed {args.seed}: float vs int8 with and without QAS")
    print(f"plot: {args.out}")
    print(f"total run time {time.time() - t_start:.1f}s")
    return runs


if __name__ == "__main__":
    main()
