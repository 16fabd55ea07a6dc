"""The analysis table and the search report, as printed by `tinytrain plan`."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .schemes import fmt_ratio

if TYPE_CHECKING:
    from .analysis import Analysis
    from .search import SearchResult
    from .space import SearchSpace


def analysis_table(a: Analysis) -> str:
    """The measured gains and exact arenas, one line a configuration."""
    s = a.settings
    n_runs = len(a.bias) + len(a.weight)
    lines = [f"contribution analysis: {s['n_train']} train / {s['n_val']} validation samples, "
             f"{s['epochs']} epoch(s), lr {s['lr']:g}"
             + (f" (backbone x{s['lr_scale']:g})" if isinstance(s["lr_scale"], (int, float)) else "")
             + f", {'QAS' if s['qas'] else 'no QAS'}{', residue' if s['residue'] else ''}, "
             f"seeds {s['seeds']}; {n_runs} configurations, {s.get('runs', n_runs)} runs, "
             f"{s.get('seconds', 0):.0f} s on {s.get('jobs', 1)} worker(s)",
             f"head only (classifier weights + bias): validation {100 * a.head_acc:.1f}%, "
             f"arena {a.bias[0].arena:,} B",
             "", "biases of the last k layers before the classifier (+ head):",
             f"  {'k':>4} {'val %':>7} {'gain pp':>8} {'arena B':>10}"]
    for k in sorted(a.bias):
        c = a.bias[k]
        mark = "  <- base" if k == a.base_k else ""
        lines.append(f"  {k:>4} {100 * c.acc:7.1f} {100 * a.bias_gain(k):+8.1f} {c.arena:>10,}{mark}")
    if a.weight:
        base = a.bias[a.base_k]
        lines += ["", f"weights on top of k = {a.base_k} ({a.base_choice}; validation "
                      f"{100 * base.acc:.1f}%, arena {base.arena:,} B): extra gain pp / arena B"]
        head = f"  {'layer':<14}" + "".join(f"{fmt_ratio(r):>20}" for r in a.ratios)
        lines.append(head)
        for name in a.weight_layers:
            cells = []
            for r in a.ratios:
                c = a.weight.get((name, float(r)))
                cells.append(f"{100 * a.weight_gain(name, r):+7.1f} {c.arena:>10,}" if c else "-")
            lines.append(f"  {name:<14}" + "".join(f"{cell:>20}" for cell in cells))
    return "\n".join(lines)


def search_report(space: SearchSpace, r: SearchResult, choice, dp_note: str) -> str:
    a = space.analysis
    how = {"exact": "branch and bound", "dp": "additive-memory DP + repair",
           "evolution": "evolutionary search", "brute": "brute force"}[r.method]
    proof = " (optimal for the additive gain model)" if r.optimal else \
        (" (compile limit reached: best found)" if r.method == "exact" else "")
    lines = [f"scheme searched under {r.budget:,} bytes: {how}{proof}; {r.compiles} compiles, {r.seconds:.1f} s"]
    if dp_note:
        lines.append(f"  {dp_note}")
    lines += ["", f"  {'part':<34} {'ratio':>6} {'gain pp':>8} {'bytes (additive est.)':>22}",
              f"  {'classifier weights + bias':<34} {'1':>6} {'':>8} {a.bias[0].arena:>22,}"
              f"   (head alone: validation {100 * a.head_acc:.1f}%)"]
    if r.k:
        lines.append(f"  {f'biases of the last {r.k} layers':<34} {'-':>6} {100 * space.gk[r.k]:+8.1f} "
                     f"{a.bias[r.k].arena:>22,}")
    for name, rs, g, d, c in zip(space.layers, space.ratios, space.gains, space.dmem, choice):
        if c:
            lines.append(f"  {name + ' weights':<34} {fmt_ratio(rs[c]):>6} {100 * g[c]:+8.1f} {'+' + f'{d[c]:,}':>22}")
    lines += [f"  {'total':<34} {'':>6} {100 * r.gain:+8.1f} {r.estimate:>22,}",
              "",
              f"  predicted validation accuracy {100 * r.predicted_acc:.1f}% (head alone {100 * a.head_acc:.1f}% + "
              f"summed gains: additive, optimistic, can pass 100%)",
              f"  exact arena {r.arena_size:,} bytes (budget {r.budget:,}, {r.budget - r.arena_size:,} spare): "
              f"{r.persist_size:,} B trained parameters ({r.trained_params:,}) + "
              f"{r.arena_size - r.persist_size:,} B working memory"]
    return "\n".join(lines)
