"""search / plan_under_budget: the best scheme whose exact arena fits a budget."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..compiler import Scheme, compile_model
from ..graph import QGraph
from .analysis import Analysis, contribution_analysis
from .methods import branch_and_bound, brute, dp, evolution, repair
from .report import search_report
from .schemes import make_scheme
from .space import SearchSpace

METHODS = ("exact", "dp", "evolution", "brute")


@dataclass
class SearchResult:
    """The chosen scheme and how it was found. Unpacks as (scheme, report)."""

    scheme: Scheme
    k: int
    weights: dict  # {layer: ratio} chosen (ratio > 0), backbone layers
    gain: float  # summed gain over the head alone (additive model)
    head_acc: float
    arena_size: int  # exact
    persist_size: int
    trained_params: int
    budget: int
    method: str
    optimal: bool  # proven optimal for the additive gain model under the exact arena
    compiles: int
    seconds: float
    estimate: int  # the additive memory estimate
    report: str = field(default="", repr=False)
    analysis: Analysis | None = field(default=None, repr=False)

    @property
    def predicted_acc(self) -> float:
        """Head-alone accuracy + summed gains: the additive model's figure,
        optimistic (gains chosen for being high on the validation set) and
        not capped at 1."""
        return self.head_acc + self.gain

    def __iter__(self):
        yield self.scheme
        yield self.report

    def scheme_json(self) -> dict:
        """The scheme in the JSON form `--scheme FILE.json` reads (tinytrain.schemes)."""
        s = self.scheme
        return {"bias": sorted(s.bias), "weights": {n: float(r) for n, r in s.weights.items()},
                "lr_scale": dict(s.lr_scale), "residue": s.residue, "qas": s.qas, "lr": s.lr, "loss": s.loss}


def minimum_budget(graph: QGraph, analysis: Analysis | None = None, **scheme_kw) -> int:
    """Arena bytes of training the classifier alone."""
    s = analysis.scheme(graph, 0) if analysis is not None else make_scheme(graph, 0, **scheme_kw)
    return compile_model(graph, s).arena_size


def check_budget(budget, need: int) -> int:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise TypeError(f"budget must be a number of bytes (int), not {type(budget).__name__}")
    if budget < need:
        raise ValueError(f"budget of {int(budget):,} bytes is too small: training the classifier alone "
                         f"needs {need:,} bytes of arena (the minimum)")
    return int(budget)


def search(analysis: Analysis, budget_bytes: int, graph: QGraph, *, method: str = "exact",
           max_compiles: int = 20_000, seed: int = 0, population: int = 50,
           generations: int = 40, cache: dict | None = None, progress: bool = False) -> SearchResult:
    """The scheme of highest summed gain whose exact arena fits budget_bytes.

    method: 'exact' (branch and bound, the default), 'dp' (additive memory
    estimate + repair), 'evolution' (seed, population, generations) or
    'brute'. max_compiles bounds the exact method's work. cache: a dict kept
    between calls on the same graph to reuse exact compiles (several budgets).
    progress: a progress bar counting the compiles."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    space = SearchSpace(analysis, graph, cache)
    if not progress:
        return _search(space, analysis, budget_bytes, method, max_compiles, seed, population, generations)
    from tqdm.auto import tqdm
    with tqdm(desc=f"search ({method})", unit=" compiles", dynamic_ncols=True) as bar:
        space.progress = bar
        return _search(space, analysis, budget_bytes, method, max_compiles, seed, population, generations)


def _search(space: SearchSpace, analysis: Analysis, budget_bytes: int, method: str, max_compiles: int, seed: int,
            population: int, generations: int) -> SearchResult:
    t0 = time.perf_counter()
    need = space.measure(0, space.zero)[0]
    budget = check_budget(budget_bytes, need)
    optimal = False
    dp_note = ""
    if method in ("exact", "dp"):
        found = dp(space, budget)
        if found is None:
            k, choice = 0, space.zero
        else:
            k, choice = found[2], found[3]
        est0 = space.estimate(k, choice)
        exact0 = space.measure(k, choice)[0]
        k, choice = repair(space, budget, k, choice)
        choice = tuple(choice)
        dp_note = (f"additive-memory DP: gain {100 * space.gain(found[2], found[3]) if found else 0:+.1f} pp, "
                   f"estimated {est0:,} B, exact {exact0:,} B"
                   + (f" -> repaired to gain {100 * space.gain(k, choice):+.1f} pp" if exact0 > budget else ""))
        best = (space.gain(k, choice), space.measure(k, choice)[0], k, choice)
        if method == "exact":
            best, optimal = branch_and_bound(space, budget, best, max_compiles)
    elif method == "evolution":
        best = evolution(space, budget, population=population, generations=generations, seed=seed)
    else:
        best = brute(space, budget)
        optimal = True
    gain, arena, k, choice = best
    arena, peak, persist, trained = space.measure(k, choice)
    assert arena <= budget
    result = SearchResult(space.scheme(k, choice), k, space.weights_of(choice), gain, analysis.head_acc,
                          arena, persist, trained, budget, method, optimal, space.compiles,
                          time.perf_counter() - t0, space.estimate(k, choice), analysis=analysis)
    result.report = search_report(space, result, choice, dp_note)
    return result


def plan_under_budget(graph: QGraph, budget: int, train, val, *, analysis: Analysis | None = None,
                      method: str = "exact", max_compiles: int = 20_000, **analysis_kw) -> SearchResult:
    """Contribution analysis (unless `analysis` is given) and search: the
    best scheme whose exact arena fits `budget` bytes. analysis_kw go to
    contribution_analysis (bias_ks, weight_layers, ratios, epochs, lr, jobs,
    progress, seeds, base_k, lr_scale, qas, residue). The budget is checked
    before anything is trained. The result carries `.analysis`."""
    if analysis is None:
        keep = {k: analysis_kw[k] for k in ("lr", "lr_scale", "qas", "residue") if k in analysis_kw}
        check_budget(budget, minimum_budget(graph, **keep))
        analysis = contribution_analysis(graph, train, val, **analysis_kw)
    elif analysis_kw:
        raise TypeError(f"options {sorted(analysis_kw)} apply to a new analysis, not to a given one")
    return search(analysis, budget, graph, method=method, max_compiles=max_compiles)
