"""The learning curve of a `tinytrain stream` run: a CSV and a PNG of it.

CSV columns: samples_seen, epoch, mean_loss, accuracy, measured_on. Row 0 is
the accuracy before training (measured_on 'evaluation set' or 'training
samples'); then one row per stretch of about a twentieth of an epoch, with
the mean loss of its samples and the prequential accuracy (each sample
predicted before the step on it); then at each epoch's end, when there is an
evaluation set, its accuracy.
"""
from __future__ import annotations

import csv
from pathlib import Path

STRETCHES_PER_EPOCH = 20


def rows(res: dict, marks: list, n_samples: int) -> list:
    losses = res["losses"]
    out = []
    before = res.get("before")
    if before is not None:
        out.append((0, 0, "", before["accuracy"], before["on"]))
    step = max(1, n_samples // STRETCHES_PER_EPOCH)
    bounds = sorted(set(list(range(step, len(losses), step)) + [len(losses)] +
                        [e * n_samples for e in range(1, len(losses) // max(1, n_samples) + 1)]))
    evals = {ep["epoch"] * n_samples: ep["eval_accuracy"] for ep in res["epochs"] if "eval_accuracy" in ep}
    start, hits0 = 0, 0
    for b in bounds:
        if b <= start:
            continue
        stretch = losses[start:b]
        hits = _hits_at(marks, b)
        epoch = (b - 1) // max(1, n_samples) + 1
        acc = (hits - hits0) / len(stretch) if hits is not None and hits0 is not None else ""
        out.append((b, epoch, sum(stretch) / len(stretch), acc, "prequential"))
        if b in evals:
            out.append((b, epoch, "", evals[b], "evaluation set"))
        start, hits0 = b, hits
    return out


def _hits_at(marks: list, n: int):
    """Prequential hits after n samples, if the device reported at n exactly."""
    for m, h in marks:
        if m == n:
            return h
    best = [h for m, h in marks if m <= n]
    return best[-1] if best else None


def write(path, res: dict, marks: list, n_samples: int, title: str = "") -> list:
    """Write the CSV at path and the PNG beside it; returns both paths."""
    path = Path(path)
    table = rows(res, marks, n_samples)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["samples_seen", "epoch", "mean_loss", "accuracy", "measured_on"])
        for r in table:
            w.writerow([r[0], r[1], f"{r[2]:.6g}" if r[2] != "" else "", f"{r[3]:.6g}" if r[3] != "" else "", r[4]])
    png = path.with_suffix(".png")
    plot(table, n_samples, png, title)
    return [path, png]


def plot(table: list, n_samples: int, path, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_l, ax_a) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    pre = [r for r in table if r[4] == "prequential"]
    ax_l.plot([r[0] for r in pre], [r[2] for r in pre], "-", color="#d62728", marker=".", label="mean loss per stretch")
    ax_l.set_ylabel("loss")
    ax_l.grid(alpha=0.3)
    ax_l.legend(fontsize=9)
    accs = []
    with_acc = [r for r in pre if r[3] != ""]
    if with_acc:
        ax_a.plot([r[0] for r in with_acc], [100 * r[3] for r in with_acc], "-", color="#1f77b4", marker=".",
                  label="prequential (predicted before each step)")
        accs += [100 * r[3] for r in with_acc]
    ev = [r for r in table if r[4] in ("evaluation set", "training samples")]
    if ev:
        ax_a.plot([r[0] for r in ev], [100 * r[3] for r in ev], "s--", color="#2ca02c",
                  label=f"{ev[-1][4] if ev[-1][4] != 'training samples' else 'training samples'} "
                        f"(at 0: before training)")
        accs += [100 * r[3] for r in ev]
    if accs:  # zoomed to the values: the differences are the point
        lo, hi = min(accs), max(accs)
        pad = max(1.0, 0.1 * (hi - lo))
        ax_a.set_ylim(max(0.0, lo - pad), min(100.5, hi + pad))
    for e in range(1, int(max(r[0] for r in table) // max(1, n_samples)) + 1):
        for ax in (ax_l, ax_a):
            ax.axvline(e * n_samples, color="0.85", lw=0.8, zorder=0)
    ax_a.set_ylabel("accuracy (%)")
    ax_a.set_xlabel(f"samples trained (one epoch = {n_samples})")
    ax_a.grid(alpha=0.3)
    ax_a.legend(fontsize=9, loc="lower right")
    if title:
        ax_l.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
