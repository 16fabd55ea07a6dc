#!/usr/bin/env python3
"""Learning from a live stream: a "sensor" feeds IMU windows to the device one
at a time; the device learns from each and reports its loss.

    python examples/05_live_stream.py                   # the simulator, about 12 s
    python examples/05_live_stream.py --target qemu     # the Cortex-M7 firmware under qemu, about 2.5 min
    python examples/05_live_stream.py --quick           # a smoke run, about 6 s (qemu: 2 min)

`--target qemu` runs the same stream against the MicroPython firmware on an
emulated Cortex-M7 (qemu-system-arm); it needs the firmware built first
(`make qemu`, see README.md and docs/micropython.md); mpremote comes with
the package. A board's serial port works too (`--target
/dev/ttyACM0`). The link, not the device, sets the pace there: about 15
training samples per second through qemu's emulated UART, 7-8 with the
held-out evaluations (docs/streaming.md).

What it does
------------
The task of `tinytrain demo personalize` (`tinytrain.transfer.imu_subject`):
a 1-D CNN recognises 7 shoulder exercises from a wrist IMU (seglearn's watch
data set); it is pretrained in float on nine people and shipped as int8 with
a sparse training plan (the biases of every layer, the weights of the last
conv and the classifier; QAS, 8 fraction bits of residue). The tenth person
wears it. The "sensor" is a generator: it replays the first half of that
person's recordings (145 windows of 2 s, 50% overlap), `--rounds` times as if
they repeated the session, in two orders, each streamed from the same shipped
model:

  sets       what a wrist sensor produces: one exercise set (a recording,
             about 10 windows of the same exercise) after another, each in
             time order; the sets in a shuffled order each round
  shuffled   the same windows one by one in a random order (as if the app
             prompted a random exercise for every window)

Each window goes to the device by itself, with its label, through the
stream protocol (`tinytrain.stream`, docs/streaming.md) to `Trainer.step`;
the device first predicts it (prequential accuracy: right before learning
from it?) and replies with its loss. Every half round the device also
classifies the person's later windows, never trained on: the held-out
accuracy.

What to observe (figures of the default run in examples/README.md)
---------------
* Shuffled, the held-out accuracy measured on the device rises steadily from
  the shipped model's to well above it within a round or two.
* In sets, the stream a sensor really produces, it swings: it can fall
  below where it started during the first round, and it ends lower than
  shuffled. The model chases whatever exercise it has just seen ten times in
  a row (the loss drops within a set and jumps at the next one). A device
  learns from samples in the order life produces them, and that order
  matters.
* The prequential accuracy is not a held-out figure. In sets it runs well
  above the held-out accuracy: each window is scored just after the device
  learnt from the previous one, which overlaps it by half and shows the
  same exercise. From the second round on, every window is one the device
  has learnt from before.
* On qemu every figure is the simulator's (the same C core, the same
  samples in the same order); only the time differs.
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
from tinytrain.plots import check_output
from tinytrain import transfer
from tinytrain.compiler import compile_model
from tinytrain.demos.backends import check_target
from tinytrain.demos.personalize import make_scheme
from tinytrain.stream import TrainStats, connect
from tinytrain.stream.data import from_iterable


def sensor(task, rounds: int, order: str, seed: int):
    """(float window, label) as the wrist sensor and the user produce them:
    per round, the person's exercise sets (recordings) in a shuffled order,
    each set's windows in time order; or single windows shuffled."""
    rng = np.random.default_rng(seed)
    x, y, rec = task.train.x, task.train.y, task.train.recording
    sets = [np.flatnonzero(rec == r) for r in np.unique(rec)]  # one recording: one set, in time order
    for _ in range(rounds):
        if order == "shuffled":
            idx = rng.permutation(len(y))
        else:
            idx = np.concatenate([sets[i] for i in rng.permutation(len(sets))])
        for i in idx:
            yield x[i], int(y[i])


def moving(values, k: int):
    """Mean of the last k values at each position (fewer at the start)."""
    c = np.cumsum(np.insert(np.asarray(values, dtype=float), 0, 0.0))
    i = np.arange(1, len(c))
    return (c[i] - c[np.maximum(0, i - k)]) / np.minimum(i, k)


def stream(target, model: bytes, samples, held_out, checks, bar) -> dict:
    """Stream (int8 window, label) samples to the device one at a time; return
    what it reported: loss and prequential hit of each sample, and the
    held-out accuracy before and after the numbers of samples in checks."""
    log = {"loss": [], "hit": [], "check_at": [0], "check_acc": []}
    with connect(target, model, prequential=True) as conn:
        s = conn.session
        log["check_acc"].append(s.evaluate(held_out)[0] / len(held_out))
        stats = TrainStats()
        t0 = time.time()
        for x, label in samples:
            hits = stats.hits
            s.train([(x, label)], stats)  # one window, one request: the device steps on it and replies
            log["loss"].append(stats.losses[-1])
            log["hit"].append(stats.hits - hits)
            if stats.n in checks:
                log["check_at"].append(stats.n)
                log["check_acc"].append(s.evaluate(held_out)[0] / len(held_out))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(log['loss'][-50:]):.3f}", acc=f"{np.mean(log['hit'][-50:]):.2f}",
                            refresh=False)
        log["seconds"] = time.time() - t0
        log["counters"] = conn.end()
    return log


COLORS = {"sets": "#1f77b4", "shuffled": "#ff7f0e"}


def plot(logs, per_round, path, title, k: int = 50):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2, a3) = plt.subplots(3, 1, figsize=(9, 8.5), sharex=True)
    for order, log in logs.items():
        n = np.arange(1, len(log["loss"]) + 1)
        c = COLORS[order]
        a1.plot(n, log["loss"], ".", ms=2, color=c, alpha=0.35)
        a1.plot(n, moving(log["loss"], k), "-", color=c, lw=2, label=f"{order}: moving mean of {k}")
        a2.plot(n[k - 1:], 100 * moving(log["hit"], k)[k - 1:], "-", color=c, label=order)
        a3.plot(log["check_at"], [100 * a for a in log["check_acc"]], "o-", color=c, label=order)
    a1.set_ylabel("loss reported\n(dots: each sample)")
    a1.set_yscale("log")
    a2.set_ylabel(f"prequential accuracy\n(last {k}, %)")
    a3.set_ylabel("held-out accuracy\non the device (%)")
    a3.set_xlabel("samples streamed (grey lines: rounds)")
    for ax in (a1, a2, a3):
        for r in range(per_round, len(n) + 1, per_round):
            ax.axvline(r, color="0.8", lw=0.8, zorder=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if ax is not a1 else "upper right", fontsize=8)
    a2.set_ylim(0, 102)
    a3.set_ylim(min(min(log["check_acc"]) for log in logs.values()) * 100 - 5, 101)
    a1.set_title(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="sim",
                    help="sim (default: the device code in-process, on the simulator), qemu (the Cortex-M7 "
                         "firmware under qemu, after `make qemu`), or a board's serial port")
    ap.add_argument("--seed", type=int, default=0, help="pretraining and stream-order seed (default 0)")
    ap.add_argument("--quick", action="store_true", help="smoke run: shorter pretraining, 2 rounds")
    ap.add_argument("--subject", type=int, default=4, help="the new wearer, 1..10 (default 4)")
    ap.add_argument("--rounds", type=int, default=None, help="passes over the session (default 3; 2 with --quick)")
    ap.add_argument("--order", choices=("sets", "shuffled", "both"), default="both",
                    help="sets: whole exercise sets, each in time order; shuffled: single windows; "
                         "both (default): one stream of each, from the same shipped model")
    ap.add_argument("--lr", type=float, default=0.01, help="learning rate on the device (default 0.01)")
    ap.add_argument("--out", default="live_stream.png", help="the figure")
    args = ap.parse_args(argv)
    for flag, path in [("--out", args.out)]:  # before the run, not after it
        try:
            check_output(path, flag)
        except ValueError as e:
            ap.error(str(e))
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 3)
    if rounds < 1:
        ap.error("--rounds must be >= 1")
    if not 1 <= args.subject <= 10:
        ap.error(f"--subject {args.subject}: the watch data set has subjects 1..10")
    try:
        check_target(args.target)  # before a minute of work: is the firmware built, the port there?
    except ValueError as e:
        ap.error(str(e))
    orders = ("sets", "shuffled") if args.order == "both" else (args.order,)
    t_start = time.time()

    task = transfer.imu_subject(args.subject, args.seed, pretrain_epochs=6 if args.quick else 15)
    print(task.summary())
    plan = compile_model(task.graph, make_scheme(task.graph, "bias+last2", args.lr, residue=True))
    per_round = len(task.train)
    print(f"model: {len(plan.data):,} bytes, {plan.trained_params:,} trained parameters, arena {plan.arena_size:,} "
          f"bytes; each stream: {rounds} round(s) of {per_round} windows, one request per window, "
          f"target {args.target}")
    xs, ys = task.test.as_bytes()
    n_in = task.train.q.shape[1]
    held_out = [(xs[i * n_in:(i + 1) * n_in], y) for i, y in enumerate(ys)]
    checks = {int(round(per_round * h / 2)) for h in range(1, 2 * rounds + 1)}  # every half round

    from tqdm.auto import tqdm
    logs = {}
    for order in orders:
        with tqdm(total=rounds * per_round, desc=f"{order} to {args.target}", unit="sample",
                  dynamic_ncols=True, leave=False) as bar:
            samples = from_iterable(plan.data, sensor(task, rounds, order, args.seed))  # quantised as they come
            logs[order] = stream(args.target, plan.data, samples, held_out, checks, bar)

    print(f"\nheld-out: {len(held_out)} later windows of subject {args.subject}, classified on the device")
    head = f"{'order':<10}{'round':>6}{'mean loss':>11}{'prequential %':>15}{'held-out % at end':>19}"
    print(head)
    print("-" * len(head))
    for order, log in logs.items():
        print(f"{order:<10}{'start':>6}{'':>11}{'':>15}{100 * log['check_acc'][0]:19.1f}")
        for r in range(rounds):
            sl = slice(r * per_round, (r + 1) * per_round)
            acc = log["check_acc"][log["check_at"].index((r + 1) * per_round)]
            print(f"{'':<10}{r + 1:>6}{np.mean(log['loss'][sl]):11.3f}{100 * np.mean(log['hit'][sl]):15.1f}"
                  f"{100 * acc:19.1f}")
    for order, log in logs.items():
        c = log["counters"]
        print(f"{order}: the device trained {c['trained']} of {len(log['loss'])} samples streamed, "
              f"{c['hits']} predicted right before their step; {len(log['loss']) / log['seconds']:.0f} samples/s "
              f"on {args.target}, held-out evaluations included")
    plot(logs, per_round, args.out, f"subject {args.subject} streamed to {args.target}, seed {args.seed}")
    print(f"plot: {args.out}")
    print(f"total run time {time.time() - t_start:.1f}s")
    return logs


if __name__ == "__main__":
    main()
