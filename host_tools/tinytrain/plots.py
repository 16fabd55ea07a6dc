"""Plots people would rather look at than read (matplotlib, written to PNG)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def check_output(path, flag: str = "--out") -> None:
    """An output file's folder must exist: found out before a run of minutes, not after it."""
    from pathlib import Path
    if path and not Path(path).resolve().parent.is_dir():
        raise ValueError(f"{flag} {path}: folder {Path(path).parent} does not exist")


def accuracy_ylim(ax, percents, pad: float = 3.0) -> None:
    """Zoom a percentage axis to the values: differences of a few points are the
    point, a 0-100 axis flattens them."""
    lo, hi = min(percents), max(percents)
    ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad) + 0.5)


def plot_memory(plan, path, title: str = "", budget=None) -> None:
    """Live bytes over the schedule: trained parameters below, working memory above
    (budget: the memory budget planned under, a line)."""
    n = len(plan.live_bytes)
    n_fwd = plan.model.header.n_fwd_ops
    fig, ax = plt.subplots(figsize=(10, 4))
    xs = range(n)
    ax.fill_between(xs, 0, [plan.persist_size / 1024] * n, step="mid", color="#8c6d31",
                    label="trained parameters")
    ax.fill_between(xs, plan.persist_size / 1024, [b / 1024 for b in plan.live_bytes], step="mid",
                    color="#6baed6", label="live tensors")
    ax.axhline(plan.arena_size / 1024, color="k", lw=1, ls="--", label=f"arena {plan.arena_size / 1024:.1f} KB")
    if budget is not None:
        ax.axhline(budget / 1024, color="#d62728", lw=1.2, ls=":", label=f"budget {budget / 1024:.1f} KB")
    ax.axvspan(-0.5, n_fwd - 0.5, color="0.92", zorder=0)
    ax.text(n_fwd / 2, plan.arena_size / 1024 * 1.02, "forward", ha="center", va="bottom", fontsize=9)
    ax.text((n_fwd + n) / 2, plan.arena_size / 1024 * 1.02, "loss + backward", ha="center", va="bottom",
            fontsize=9)
    peak = plan.peak_op()
    ax.annotate(plan.op_names[peak], (peak, plan.live_bytes[peak] / 1024), xytext=(10, -25),
                textcoords="offset points", fontsize=8, arrowprops={"arrowstyle": "->"})
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(0, max(plan.arena_size, budget or 0) / 1024 * 1.12)
    ax.set_xlabel("op in schedule")
    ax.set_ylabel("KB")
    ax.set_title(title or "memory over one training step")
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
