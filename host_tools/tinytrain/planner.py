"""Sparse-update planning: contribution analysis, then a scheme search under a
memory budget (the method of "On-Device Training Under 256KB Memory", Sec. 3.3,
whose analysis and search code the paper never published).

1. `contribution_analysis` measures, in the simulator (the C core the device
   runs), what fine-tuning each part of the network is worth:

   - the classifier alone (its weights and bias; always trained: "the head");
   - for each k in `bias_ks`: the biases of the last k layers with parameters
     *before the classifier* (k counts backbone layers, as the paper's
     `n_bias_update` does, so k = 0 is the head alone; the project's scheme
     spec `bias:K` counts the classifier too: our k is `bias:{k+1}`), plus the
     head. Gain = accuracy - accuracy of the head alone;
   - for each (layer, ratio) in `weight_layers` x `ratios`: the *extra* gain of
     also training that layer's weights at that ratio of its input channels
     (depthwise: channels), on top of a base bias setting. The base is the k
     with the best measured accuracy (ties: the smaller k) unless `base_k`
     says otherwise ('largest' or a number). The best k is the setting a
     searched scheme ends up near when memory allows, and it is the setting
     whose accuracy is least likely to be lifted by a weight update merely
     because that update gives the backbone more freedom.

   Every configuration is also compiled, and its exact arena (the bytes the
   device needs, `compile_model(...).arena_size`) is recorded. Runs are
   independent and go to a multiprocessing pool of `jobs` workers. Each run
   trains from the same initial model with the sample order of `seed` (one
   permutation of the training set per epoch), so two runs differ only in
   what they train and the gains are paired differences; several seeds
   average out the order. Results do not depend on `jobs`.

2. `search` picks the scheme (k, one ratio per analysed layer, 0 = frozen) of
   highest summed gain, gain(k) + sum of the layers' extra gains (additive, as
   the paper assumes), whose exact arena fits the budget:

   - `method="exact"` (default): branch and bound. The incumbent comes from the
     additive-memory dynamic programme below; then every k and every prefix of
     layer decisions is a node whose scheme (the undecided layers frozen) is
     compiled. A node is pruned when no completion can fit or beat the
     incumbent, from two properties of the compiler's plan: training more
     weights never removes a tensor nor shortens a lifetime (it may undo a
     fusion, which only adds bytes), so the peak of live bytes (a lower bound
     of the arena) grows by at least the added persistent bytes; and the
     persistent bytes of weights are exactly additive. The first is a property
     of compile_model, not a law: tests/test_planner.py checks it on random
     scheme pairs (so a compiler change that broke it would show). The bound
     on the remaining gain is a knapsack over those persistent bytes. Every
     scheme reached is checked with its exact arena, so the answer is optimal
     for the additive gain model under the EXACT memory, which brute force
     confirms on small cases (tests). A compile limit stops it early (then
     `optimal` is False and the best found is returned).
   - `method="dp"`: the cheap approximation: memory estimated additively,
     arena(k) + sum over layers of the measured extra arena of (layer, ratio)
     at the base k; a multiple-choice knapsack solved exactly by dynamic
     programming; then verified with `compile_model` and, if the exact arena
     exceeds the budget, repaired by the cheapest downgrade (least gain lost
     per byte saved) until it fits.
   - `method="evolution"`: an evolutionary search like the paper's
     (population, uniform crossover, mutation, elitism; fitness = summed gain
     if the exact arena fits, else rejected).
   - `method="brute"`: every combination, each compiled (small spaces only).

`plan_under_budget(graph, budget, train, val, **kw)` runs both (as
`tinytrain plan MODEL --budget BYTES --data FILE.npz` does, in
tinytrain/plancmd.py);
`evaluate_schemes` trains and scores any schemes the same way (held-out test).

The gains are measurements of short batch-1 fine-tuning runs and carry the
noise of the sample order (several points on a few hundred samples): average
several `seeds`, and expect the additive prediction to be optimistic (the
search picks the gains that came out high).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import multiprocessing as mp
import os
import time
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .compiler import ALIGN, Scheme, compile_model
from .graph import QGraph

DEFAULT_RATIOS = (1 / 8, 1 / 4, 1 / 2, 1.0)
METHODS = ("exact", "dp", "evolution", "brute")
_EPS = 1e-12


# -- schemes ------------------------------------------------------------------
def split_layers(graph: QGraph) -> tuple:
    """(backbone layer names with parameters, input to output; classifier name)."""
    names = [layer.name for layer in graph.param_layers]
    if len(names) < 1:
        raise ValueError("the graph has no layer with parameters")
    return names[:-1], names[-1]


def _lr_scale_dict(graph: QGraph, lr_scale) -> dict:
    backbone, head = split_layers(graph)
    if lr_scale is None:
        return {}
    if isinstance(lr_scale, (int, float)):
        return {n: float(lr_scale) for n in backbone}
    out = {}
    for name, v in dict(lr_scale).items():
        graph.layer(name)
        out[name] = float(v)
    return out


def make_scheme(graph: QGraph, k: int, weights: dict | None = None, *, lr: float = 0.05,
                lr_scale=None, qas: bool = True, residue: bool = False) -> Scheme:
    """Biases of the last k backbone layers, the classifier's weights and bias,
    and `weights` {layer: ratio} (ratio 0 = frozen). lr_scale: a number for
    every layer but the classifier, or {layer: scale}."""
    backbone, head = split_layers(graph)
    if not 0 <= int(k) <= len(backbone):
        raise ValueError(f"k = {k}: the model has {len(backbone)} layers with parameters "
                         "before the classifier")
    w = {head: 1.0}
    for name, r in (weights or {}).items():
        if float(r) > 0:
            w[name] = float(r)  # a float: Scheme reads an int as a channel count
    return Scheme(bias=set(backbone[len(backbone) - int(k):]) | {head}, weights=w, lr=float(lr),
                  qas=bool(qas), residue=bool(residue), lr_scale=_lr_scale_dict(graph, lr_scale))


def _resolve_layer(graph: QGraph, key) -> str:
    """A backbone layer by name or by index among the layers with parameters."""
    backbone, head = split_layers(graph)
    names = backbone + [head]
    if isinstance(key, (int, np.integer)) or (isinstance(key, str) and key.lstrip("-").isdigit()):
        i = int(key)
        if not -len(names) <= i < len(names):
            raise ValueError(f"layer index {i} out of range: {len(names)} layers have parameters")
        key = names[i]
    if key == head:
        raise ValueError(f"{key} is the classifier, which is always trained: leave it out of weight_layers")
    if key not in backbone:
        known = ", ".join(backbone)
        raise ValueError(f"unknown layer {key!r}: layers with parameters before the classifier are {known}")
    return key


def default_bias_ks(graph: QGraph) -> list:
    """0 and about every eighth of the backbone up to all of it."""
    n = len(split_layers(graph)[0])
    return sorted({0} | {max(1, round(n * i / 8)) for i in range(1, 9)} if n else {0})


def default_weight_layers(graph: QGraph, count: int = 8) -> list:
    """The last `count` non-depthwise convolutions before the classifier."""
    convs = [layer.name for layer in graph.param_layers[:-1] if layer.kind == "conv"]
    return convs[-count:]


def _fmt_ratio(r: float) -> str:
    if r == 0:
        return "-"
    f = Fraction(r).limit_denominator(64)
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def graph_fingerprint(graph: QGraph) -> str:
    h = hashlib.sha1()
    for layer in graph.layers:
        h.update(f"{layer.name}|{layer.kind}|{graph.tensors[layer.output].shape}|".encode())
        if layer.weight is not None:
            h.update(layer.weight.tobytes())
    return h.hexdigest()[:16]


# -- data ----------------------------------------------------------------------
def as_dataset(data, graph: QGraph, what: str = "data") -> tuple:
    """(inputs int8 (N, input bytes), labels int64 (N,)) from a pair
    (inputs, labels); inputs an int8 array (N, ...) or a sequence of buffers."""
    try:
        xs, ys = data
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a pair (inputs, labels)") from None
    n_in = graph.tensors[graph.input].numel
    if isinstance(xs, np.ndarray):
        if xs.dtype != np.int8:
            raise TypeError(f"{what}: inputs must be int8 (quantise them with "
                            f"tinytrain.builder.quantize_input), not {xs.dtype}")
        xs = np.ascontiguousarray(xs).reshape(len(xs), -1) if xs.ndim > 1 else xs.reshape(1, -1)
    else:
        xs = np.stack([np.frombuffer(bytes(memoryview(x)), dtype=np.int8) for x in xs]) if len(xs) else \
            np.zeros((0, n_in), np.int8)
    ys = np.asarray(ys).reshape(-1)
    if len(xs) == 0:
        raise ValueError(f"{what} is empty")
    if xs.shape[1] != n_in:
        raise ValueError(f"{what}: inputs have {xs.shape[1]} bytes, the model takes {n_in}")
    if len(ys) != len(xs):
        raise ValueError(f"{what}: {len(xs)} inputs but {len(ys)} labels")
    if not np.issubdtype(ys.dtype, np.integer):
        raise TypeError(f"{what}: labels must be integer class indices")
    n_cls = graph.tensors[graph.output].numel
    if ys.min() < 0 or ys.max() >= n_cls:
        raise ValueError(f"{what}: labels must lie in [0, {n_cls})")
    return np.ascontiguousarray(xs), ys.astype(np.int64)


def sample_orders(seed: int, n: int, epochs: int) -> list:
    """One permutation of range(n) per epoch, from `seed`."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(epochs)]


def train_and_evaluate(model: bytes, train: tuple, val_x, val_y, seed: int, epochs: int) -> float:
    """Fine-tune a compiled model on train (sample order from seed), return val accuracy."""
    from .trainer import Trainer

    xs, ys = train
    t = Trainer(model)
    for order in sample_orders(seed, len(xs), epochs):
        for i in order:
            t.step(xs[i], int(ys[i]))
    return t.evaluate(val_x, val_y)


# -- worker pool -------------------------------------------------------------------
_WORKER_DATA = None


def _init_worker(data):
    global _WORKER_DATA
    _WORKER_DATA = data


def _run_task(task):
    key, model, seeds, epochs = task
    xtr, ytr, xva_bytes, yva = _WORKER_DATA
    t0 = time.perf_counter()
    accs = [train_and_evaluate(model, (xtr, ytr), xva_bytes, yva, s, epochs) for s in seeds]
    return key, accs, time.perf_counter() - t0


def default_jobs() -> int:
    """The cores this process may run on (os.sched_getaffinity; else os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class _Runner:
    """Runs tasks in a pool of `jobs` processes (in this process for jobs=1)."""

    def __init__(self, data, jobs: int):
        self.data, self.jobs, self.pool = data, jobs, None

    def __enter__(self):
        if self.jobs > 1:
            self.pool = mp.get_context().Pool(self.jobs, initializer=_init_worker, initargs=(self.data,))
        return self

    def __exit__(self, *exc):
        global _WORKER_DATA
        if self.pool is not None:
            self.pool.terminate() if exc[0] else self.pool.close()
            self.pool.join()
        _WORKER_DATA = None

    def run(self, tasks):
        if not tasks:
            return
        if self.pool is None:
            _init_worker(self.data)
            for task in tasks:
                yield _run_task(task)
        else:
            yield from self.pool.imap_unordered(_run_task, tasks, chunksize=1)


# -- the analysis ----------------------------------------------------------------------
@dataclass
class Config:
    """One measured configuration."""

    k: int
    weights: dict  # {layer: ratio}, backbone layers only
    acc: float  # mean validation accuracy over the seeds
    accs: list
    arena: int  # exact arena bytes (compile_model(...).arena_size)
    persist: int
    trained_params: int
    seconds: float = 0.0

    def to_dict(self):
        return {"k": self.k, "weights": self.weights, "acc": self.acc, "accs": self.accs,
                "arena": self.arena, "persist": self.persist, "trained_params": self.trained_params,
                "seconds": self.seconds}


@dataclass
class Analysis:
    backbone: list
    head: str
    ratios: tuple
    weight_layers: list  # in the order given
    base_k: int
    base_choice: str  # 'best', 'largest' or 'given'
    bias: dict  # k -> Config (k = 0: the head alone)
    weight: dict  # (layer, ratio) -> Config at base_k
    settings: dict  # epochs, lr, lr_scale, qas, residue, seeds, n_train, n_val, jobs, seconds
    fingerprint: str

    @property
    def head_acc(self) -> float:
        return self.bias[0].acc

    def bias_gain(self, k: int) -> float:
        return self.bias[k].acc - self.bias[0].acc

    def weight_gain(self, layer: str, ratio: float) -> float:
        return self.weight[(layer, float(ratio))].acc - self.bias[self.base_k].acc

    def scheme(self, graph: QGraph, k: int, weights: dict | None = None) -> Scheme:
        """A scheme under the analysis' training settings (lr, QAS, residue)."""
        s = self.settings
        return make_scheme(graph, k, weights, lr=s["lr"], lr_scale=s["lr_scale"], qas=s["qas"],
                           residue=s["residue"])

    def table(self) -> str:
        s = self.settings
        n_runs = len(self.bias) + len(self.weight)
        lines = [f"contribution analysis: {s['n_train']} train / {s['n_val']} validation samples, "
                 f"{s['epochs']} epoch(s), lr {s['lr']:g}"
                 + (f" (backbone x{s['lr_scale']:g})" if isinstance(s["lr_scale"], (int, float)) else "")
                 + f", {'QAS' if s['qas'] else 'no QAS'}{', residue' if s['residue'] else ''}, "
                 f"seeds {s['seeds']}; {n_runs} configurations, {s.get('runs', n_runs)} runs, "
                 f"{s.get('seconds', 0):.0f} s on {s.get('jobs', 1)} worker(s)",
                 f"head only (classifier weights + bias): validation {100 * self.head_acc:.1f}%, "
                 f"arena {self.bias[0].arena:,} B",
                 "", "biases of the last k layers before the classifier (+ head):",
                 f"  {'k':>4} {'val %':>7} {'gain pp':>8} {'arena B':>10}"]
        for k in sorted(self.bias):
            c = self.bias[k]
            mark = "  <- base" if k == self.base_k else ""
            lines.append(f"  {k:>4} {100 * c.acc:7.1f} {100 * self.bias_gain(k):+8.1f} {c.arena:>10,}{mark}")
        if self.weight:
            base = self.bias[self.base_k]
            lines += ["", f"weights on top of k = {self.base_k} ({self.base_choice}; validation "
                          f"{100 * base.acc:.1f}%, arena {base.arena:,} B): extra gain pp / arena B"]
            head = f"  {'layer':<14}" + "".join(f"{_fmt_ratio(r):>20}" for r in self.ratios)
            lines.append(head)
            for name in self.weight_layers:
                cells = []
                for r in self.ratios:
                    c = self.weight.get((name, float(r)))
                    cells.append(f"{100 * self.weight_gain(name, r):+7.1f} {c.arena:>10,}" if c else "-")
                lines.append(f"  {name:<14}" + "".join(f"{cell:>20}" for cell in cells))
        return "\n".join(lines)

    # -- persistence (the CLI can reuse an analysis) --
    def to_dict(self) -> dict:
        return {"version": 1, "backbone": self.backbone, "head": self.head, "ratios": list(self.ratios),
                "weight_layers": self.weight_layers, "base_k": self.base_k, "base_choice": self.base_choice,
                "bias": {str(k): c.to_dict() for k, c in self.bias.items()},
                "weight": [dict(layer=layer, ratio=r, **c.to_dict()) for (layer, r), c in self.weight.items()],
                "settings": self.settings, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, d: dict) -> "Analysis":
        def cfg(c):
            return Config(**{k: c[k] for k in ("k", "weights", "acc", "accs", "arena", "persist",
                                               "trained_params", "seconds")})
        return cls(d["backbone"], d["head"], tuple(d["ratios"]), d["weight_layers"], d["base_k"],
                   d["base_choice"], {int(k): cfg(c) for k, c in d["bias"].items()},
                   {(c["layer"], float(c["ratio"])): cfg(c) for c in d["weight"]}, d["settings"],
                   d["fingerprint"])

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path) -> "Analysis":
        return cls.from_dict(json.loads(Path(path).read_text()))


def contribution_analysis(graph: QGraph, train, val, *, bias_ks=None, weight_layers=None,
                          ratios=DEFAULT_RATIOS, epochs: int = 1, lr: float = 0.05, jobs: int | None = None,
                          progress: bool = True, seeds=(0,), base_k=None, lr_scale=None,
                          qas: bool = True, residue: bool = False) -> Analysis:
    """Measure the accuracy gains and exact memory of sparse-update configurations.

    graph: the quantised model (its classifier sized for the task).
    train, val: pairs (int8 inputs (N, ...) or a sequence of buffers, labels).
    bias_ks: numbers of backbone layers whose biases are trained (0, the head
        alone, is always added); default `default_bias_ks(graph)`.
    weight_layers: backbone layers (names, or indices among the layers with
        parameters) whose weights are tried at each ratio; default
        `default_weight_layers(graph)`. The classifier is always trained.
    base_k: the bias setting the weight runs sit on: None/'best' (the k of
        best validation accuracy, ties: smaller), 'largest', or a number.
    seeds: sample-order seeds; each configuration is trained once per seed
        and its accuracies averaged.
    lr, lr_scale, qas, residue: the training settings (lr_scale: a number for
        every layer but the classifier, or {layer: scale}).
    jobs: worker processes (default: every core this process is given).
    """
    t_start = time.perf_counter()
    backbone, head = split_layers(graph)
    bias_ks = default_bias_ks(graph) if bias_ks is None else list(bias_ks)
    weight_layers = default_weight_layers(graph) if weight_layers is None else list(weight_layers)
    names = []
    for key in weight_layers:
        name = _resolve_layer(graph, key)
        if name not in names:
            names.append(name)
    for k in bias_ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= len(backbone):
            raise ValueError(f"bias_ks: {k!r} is not a number of layers in [0, {len(backbone)}]")
    ratios = tuple(float(r) for r in ratios)
    if not ratios or any(not 0 < r <= 1 for r in ratios):
        raise ValueError("ratios must be fractions in (0, 1]")
    if int(epochs) < 1:
        raise ValueError("epochs must be >= 1")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    ks = sorted({0} | {int(k) for k in bias_ks})
    base_choice = "best"
    if base_k is not None and base_k != "best":
        if base_k == "largest":
            base_choice, base_k = "largest", max(ks)
        else:
            if not 0 <= int(base_k) <= len(backbone):
                raise ValueError(f"base_k = {base_k}: not in [0, {len(backbone)}]")
            base_choice, base_k = "given", int(base_k)
            ks = sorted(set(ks) | {base_k})
    else:
        base_k = None
    xtr, ytr = as_dataset(train, graph, "train")
    xva, yva = as_dataset(val, graph, "val")
    opts = dict(lr=lr, lr_scale=lr_scale, qas=qas, residue=residue)
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise ValueError("jobs must be >= 1")

    configs: dict = {}  # key -> Config (accuracy filled in later)
    by_model: dict = {}  # model digest -> key of the run that measures it
    alias: dict = {}  # key -> key whose run it shares (same compiled model)
    tasks_of: dict = {}

    def prepare(key, k, weights):
        plan = compile_model(graph, make_scheme(graph, k, weights, **opts))
        configs[key] = Config(k, dict(weights), float("nan"), [], plan.arena_size, plan.persist_size,
                              plan.trained_params)
        digest = hashlib.sha1(plan.data).hexdigest()
        if digest in by_model:
            alias[key] = by_model[digest]
        else:
            by_model[digest] = key
            tasks_of[key] = (key, plan.data, seeds, int(epochs))

    def weight_keys():
        return [(name, r) for name in names for r in ratios]

    for k in ks:
        prepare(("b", k), k, {})
    if base_k is not None:
        for name, r in weight_keys():
            prepare(("w", name, r), base_k, {name: r})

    n_total = len(tasks_of) + (0 if base_k is not None else len(names) * len(ratios))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_total, desc="contribution analysis", unit="run", dynamic_ncols=True)
    data = (xtr, ytr, xva.tobytes(), [int(v) for v in yva])
    seconds = 0.0
    n_runs = 0

    def run_all(runner, keys):
        nonlocal seconds, n_runs
        # Longest first (a bigger arena means more layers in the backward pass).
        tasks = sorted((tasks_of[key] for key in keys if key in tasks_of),
                       key=lambda t: -configs[t[0]].arena)
        for key, accs, secs in runner.run(tasks):
            c = configs[key]
            c.accs, c.acc, c.seconds = accs, float(np.mean(accs)), secs
            seconds += secs
            n_runs += len(accs)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{_key_text(key)}: {100 * c.acc:.1f}%")
        for key, src in alias.items():
            if key in keys:
                c = configs[key]
                c.accs, c.acc = list(configs[src].accs), configs[src].acc

    try:
        with _Runner(data, min(jobs, max(1, n_total))) as runner:
            first = list(configs)
            run_all(runner, first)
            if base_k is None:
                base_k = max(ks, key=lambda k: (configs[("b", k)].acc, -k))
                keys = []
                for name, r in weight_keys():
                    prepare(("w", name, r), base_k, {name: r})
                    keys.append(("w", name, r))
                if bar is not None:
                    bar.total = len(first) - sum(1 for key in first if key in alias) + \
                        sum(1 for key in keys if key in tasks_of)
                    bar.refresh()
                run_all(runner, keys)
    finally:
        if bar is not None:
            bar.close()

    bias = {k: configs[("b", k)] for k in ks}
    weight = {(name, r): configs[("w", name, r)] for name in names for r in ratios}
    settings = {"epochs": int(epochs), "lr": float(lr),
                "lr_scale": lr_scale if lr_scale is None or isinstance(lr_scale, (int, float))
                else {str(a): float(b) for a, b in dict(lr_scale).items()},
                "qas": bool(qas), "residue": bool(residue), "seeds": seeds, "n_train": len(xtr),
                "n_val": len(xva), "jobs": jobs, "runs": n_runs, "cpu_seconds": seconds,
                "seconds": time.perf_counter() - t_start}
    return Analysis(backbone, head, ratios, names, base_k, base_choice, bias, weight, settings,
                    graph_fingerprint(graph))


def _key_text(key) -> str:
    return f"k={key[1]}" if key[0] == "b" else f"{key[1]}@{_fmt_ratio(key[2])}"


def evaluate_schemes(graph: QGraph, schemes: dict, train, test, *, epochs: int = 1, seeds=(0,),
                     jobs: int | None = None, progress: bool = True) -> dict:
    """Fine-tune each scheme {name: Scheme} on train as the analysis does
    (same sample orders) and score it on test, in parallel. Returns {name:
    {"acc", "accs", "arena", "persist", "trained_params", "seconds"}}."""
    xtr, ytr = as_dataset(train, graph, "train")
    xte, yte = as_dataset(test, graph, "test")
    seeds = [int(s) for s in seeds]
    out, tasks, same = {}, [], {}
    by_model = {}
    for name, scheme in schemes.items():
        plan = compile_model(graph, scheme)
        out[name] = {"acc": float("nan"), "accs": [], "arena": plan.arena_size, "persist": plan.persist_size,
                     "trained_params": plan.trained_params, "seconds": 0.0}
        digest = hashlib.sha1(plan.data).hexdigest()
        if digest in by_model:
            same[name] = by_model[digest]
        else:
            by_model[digest] = name
            tasks.append((name, plan.data, seeds, int(epochs)))
    tasks.sort(key=lambda t: -out[t[0]]["arena"])
    jobs = default_jobs() if jobs is None else int(jobs)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(tasks), desc="evaluate schemes", unit="run", dynamic_ncols=True)
    try:
        with _Runner((xtr, ytr, xte.tobytes(), [int(v) for v in yte]), min(jobs, max(1, len(tasks)))) as r:
            for name, accs, secs in r.run(tasks):
                out[name].update(acc=float(np.mean(accs)), accs=accs, seconds=secs)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{name}: {100 * out[name]['acc']:.1f}%")
    finally:
        if bar is not None:
            bar.close()
    for name, src in same.items():
        out[name].update(acc=out[src]["acc"], accs=list(out[src]["accs"]))
    return out


# -- the search ----------------------------------------------------------------------
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


class _Space:
    """The search space of an analysis on a graph, with cached exact compiles."""

    def __init__(self, analysis: Analysis, graph: QGraph, cache: dict | None = None):
        backbone, head = split_layers(graph)
        missing = [n for n in analysis.weight_layers if n not in backbone]
        if missing:
            raise ValueError(f"unknown layer(s) {', '.join(missing)}: the analysis was measured on another "
                             f"model (this one's layers before the classifier: {', '.join(backbone)})")
        if analysis.head != head or max(analysis.bias) > len(backbone):
            raise ValueError("the analysis was measured on another model (classifier or layer count differ)")
        if analysis.fingerprint != graph_fingerprint(graph):
            warnings.warn("the analysis was measured on a model with other weights or shapes "
                          "(fingerprints differ); its gains may not hold for this one", stacklevel=3)
        self.analysis, self.graph = analysis, graph
        self.ks = sorted(analysis.bias)
        self.gk = {k: analysis.bias_gain(k) for k in self.ks}
        pos = {n: i for i, n in enumerate(backbone)}
        # Earliest layer first: it decides how far back the gradient goes.
        self.layers = sorted(analysis.weight_layers, key=lambda n: pos[n])
        self.ratios = [[0.0] + sorted({r for (n, r) in analysis.weight if n == name}) for name in self.layers]
        self.gains = [[0.0] + [analysis.weight_gain(name, r) for r in rs[1:]]
                      for name, rs in zip(self.layers, self.ratios)]
        residue = analysis.settings["residue"]
        scheme = analysis.scheme(graph, 0)
        self.wbytes = []  # exact persistent bytes of each option
        for name, rs in zip(self.layers, self.ratios):
            layer = graph.layer(name)
            kh, kw = layer.kernel
            per = kh * kw * (layer.weight.shape[0] if layer.kind == "conv" else 1)
            row = []
            for r in rs:
                scheme.weights = {name: r} if r > 0 else {}
                nt = scheme.n_train(layer)
                row.append((1 + residue) * _align(nt * per))
            self.wbytes.append(row)
        base = analysis.bias[analysis.base_k].arena
        self.dmem = [[0] + [max(0, analysis.weight[(name, r)].arena - base) for r in rs[1:]]
                     for name, rs in zip(self.layers, self.ratios)]
        st = analysis.settings
        self.cache = {} if cache is None else cache
        self.cache_tag = (graph_fingerprint(graph), st["lr"], json.dumps(st["lr_scale"], sort_keys=True),
                          st["qas"], st["residue"])
        self.compiles = 0
        self.progress = None  # a tqdm bar counting compiles, if any

    def weights_of(self, choice) -> dict:
        return {name: rs[c] for name, rs, c in zip(self.layers, self.ratios, choice) if c}

    def scheme(self, k, choice) -> Scheme:
        return self.analysis.scheme(self.graph, k, self.weights_of(choice))

    def measure(self, k, choice):
        """(arena, peak live, persist, trained params), exact."""
        key = (self.cache_tag, k, tuple(sorted(self.weights_of(choice).items())))
        if key not in self.cache:
            plan = compile_model(self.graph, self.scheme(k, choice))
            self.compiles += 1
            if self.progress is not None:
                self.progress.update(1)
            self.cache[key] = (plan.arena_size, plan.peak_live, plan.persist_size, plan.trained_params)
        return self.cache[key]

    def gain(self, k, choice) -> float:
        return self.gk[k] + sum(g[c] for g, c in zip(self.gains, choice))

    def estimate(self, k, choice) -> int:
        return self.analysis.bias[k].arena + sum(d[c] for d, c in zip(self.dmem, choice))

    @property
    def zero(self) -> tuple:
        return (0,) * len(self.layers)

    def size(self) -> int:
        return len(self.ks) * math.prod(len(r) for r in self.ratios)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _better(a, b) -> bool:
    """a, b: (gain, arena); higher gain, then smaller arena."""
    if b is None:
        return True
    return a[0] > b[0] + _EPS or (abs(a[0] - b[0]) <= _EPS and a[1] < b[1])


def _mck(costs, gains, capacity: int):
    """Multiple-choice knapsack by dynamic programming: one option per group,
    total cost <= capacity (costs in units), maximal gain. Returns (tables
    best[i][c] = best gain of groups i.. within c, and argmax per group)."""
    n = len(costs)
    cap = max(0, int(capacity))
    best = [None] * (n + 1)
    arg = [None] * n
    best[n] = np.zeros(cap + 1)
    for i in range(n - 1, -1, -1):
        nxt = best[i + 1]
        cur = np.full(cap + 1, -np.inf)
        a = np.zeros(cap + 1, dtype=np.int64)
        for j, (c, g) in enumerate(zip(costs[i], gains[i])):
            if c > cap:
                continue
            cand = np.full(cap + 1, -np.inf)
            cand[c:] = nxt[:cap + 1 - c] + g
            better = cand > cur + _EPS
            cur = np.where(better, cand, cur)
            a = np.where(better, j, a)
        best[i], arg[i] = cur, a
    return best, arg


def _mck_choice(costs, arg, capacity: int) -> tuple:
    c, out = int(capacity), []
    for i in range(len(arg)):
        j = int(arg[i][c])
        out.append(j)
        c -= costs[i][j]
    return tuple(out)


def _dp(space: _Space, budget: int):
    """Best (k, choice) under the additive memory estimate; None if nothing fits it."""
    best = None
    unit = max(ALIGN, _align(budget // 200_000 + 1))
    costs = [[-(-d // unit) for d in row] for row in space.dmem]  # rounded up: the estimate holds
    for k in space.ks:
        cap = (budget - space.analysis.bias[k].arena) // unit
        if cap < 0:
            continue
        tables, arg = _mck(costs, space.gains, cap)
        choice = _mck_choice(costs, arg, cap)
        cand = (space.gain(k, choice), space.estimate(k, choice), k, choice)
        if _better(cand[:2], best[:2] if best else None):
            best = cand
    return best


def _repair(space: _Space, budget: int, k, choice):
    """Downgrade the cheapest thing (least gain lost per byte saved, exact
    arenas) until the exact arena fits."""
    k, choice = k, list(choice)
    arena = space.measure(k, choice)[0]
    while arena > budget:
        moves = []
        for i, c in enumerate(choice):
            for j in range(len(space.ratios[i])):
                if space.ratios[i][j] < space.ratios[i][c]:
                    moves.append((k, choice[:i] + [j] + choice[i + 1:]))
        for k2 in space.ks:
            if k2 < k:
                moves.append((k2, list(choice)))
        g0 = space.gain(k, choice)
        scored = []
        for k2, ch in moves:
            a = space.measure(k2, ch)[0]
            if a < arena:
                scored.append(((g0 - space.gain(k2, ch)) / (arena - a), -space.gain(k2, ch), k2, ch, a))
        if not scored:
            return 0, list(space.zero)  # the head alone (checked to fit)
        _, _, k, choice, arena = min(scored, key=lambda s: (s[0], s[1]))
    return k, choice


def _branch_and_bound(space: _Space, budget: int, incumbent, max_compiles: int):
    """Exact maximum of the additive gain under the exact arena (see the module doc)."""
    unit = max(ALIGN, _align(budget // 200_000 + 1))
    costs = [[c // unit for c in row] for row in space.wbytes]  # rounded down: the bound holds
    cap_units = budget // unit
    tables, _ = _mck(costs, space.gains, cap_units)
    n = len(space.layers)
    best = incumbent  # (gain, arena, k, choice)

    def bound(i, cap_bytes):
        return tables[i][min(cap_units, max(0, cap_bytes) // unit)] if cap_bytes >= 0 else -np.inf

    for k in sorted(space.ks, key=lambda k: -space.gk[k]):
        stack = [(k, ())]
        while stack:
            if space.compiles >= max_compiles:
                return best, False
            k, prefix = stack.pop()
            i = len(prefix)
            choice = prefix + (0,) * (n - i)
            arena, peak, _, _ = space.measure(k, choice)
            g = space.gain(k, choice)
            if arena <= budget and _better((g, arena), best[:2] if best else None):
                best = (g, arena, k, choice)
            if peak > budget or i == n:
                continue
            if g + bound(i, budget - peak) <= (best[0] if best else -np.inf) + _EPS:
                continue
            children = []
            for j in range(len(space.ratios[i])):
                cost = space.wbytes[i][j]
                gj = g + space.gains[i][j]
                if peak + cost > budget:
                    continue
                if gj + bound(i + 1, budget - peak - cost) <= (best[0] if best else -np.inf) + _EPS:
                    continue
                children.append((gj, j))
            # Depth first, most promising child on top of the stack.
            for _, j in sorted(children):
                stack.append((k, prefix + (j,)))
    return best, True


def _evolution(space: _Space, budget: int, *, population: int = 50, generations: int = 40,
               mutation: float = 0.15, seed: int = 0):
    """The paper's kind of evolutionary search over (k, one ratio per layer)."""
    rng = np.random.default_rng(seed)
    n = len(space.layers)
    sizes = [len(r) for r in space.ratios]

    def fitness(g):
        k, choice = g
        arena = space.measure(k, choice)[0]
        return (space.gain(k, choice), -arena) if arena <= budget else (-np.inf, 0)

    def random_genome():
        return (space.ks[rng.integers(len(space.ks))], tuple(int(rng.integers(s)) for s in sizes))

    pop = {(0, space.zero)}
    tries = 0
    while len(pop) < population and tries < 20 * population:
        g = random_genome()
        tries += 1
        if fitness(g)[0] > -np.inf:
            pop.add(g)
    pop = sorted(pop, key=fitness, reverse=True)
    for _ in range(generations):
        parents = pop[:max(2, len(pop) // 2)]
        children = set()
        for _ in range(population):
            a = parents[rng.integers(len(parents))]
            b = parents[rng.integers(len(parents))]
            k = a[0] if rng.random() < 0.5 else b[0]
            choice = [a[1][i] if rng.random() < 0.5 else b[1][i] for i in range(n)]
            if rng.random() < mutation:
                k = space.ks[rng.integers(len(space.ks))]
            for i in range(n):
                if rng.random() < mutation:
                    choice[i] = int(rng.integers(sizes[i]))
            children.add((k, tuple(choice)))
        pool = {g for g in list(pop) + list(children) if fitness(g)[0] > -np.inf}
        pop = sorted(pool, key=fitness, reverse=True)[:population]
    k, choice = pop[0]
    return space.gain(k, choice), space.measure(k, choice)[0], k, choice


def _brute(space: _Space, budget: int, max_configs: int = 200_000):
    if space.size() > max_configs:
        raise ValueError(f"brute force over {space.size()} schemes: too many (limit {max_configs})")
    best = None
    for k in space.ks:
        for choice in itertools.product(*(range(len(r)) for r in space.ratios)):
            arena = space.measure(k, choice)[0]
            g = space.gain(k, choice)
            if arena <= budget and _better((g, arena), best[:2] if best else None):
                best = (g, arena, k, choice)
    return best


def minimum_budget(graph: QGraph, analysis: Analysis | None = None, **scheme_kw) -> int:
    """Arena bytes of training the classifier alone."""
    s = analysis.scheme(graph, 0) if analysis is not None else make_scheme(graph, 0, **scheme_kw)
    return compile_model(graph, s).arena_size


def _check_budget(budget, need: int) -> int:
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
    space = _Space(analysis, graph, cache)
    if not progress:
        return _search(space, analysis, budget_bytes, method, max_compiles, seed, population, generations)
    from tqdm.auto import tqdm
    with tqdm(desc=f"search ({method})", unit=" compiles", dynamic_ncols=True) as bar:
        space.progress = bar
        return _search(space, analysis, budget_bytes, method, max_compiles, seed, population, generations)


def _search(space: _Space, analysis: Analysis, budget_bytes: int, method: str, max_compiles: int, seed: int,
            population: int, generations: int) -> SearchResult:
    t0 = time.perf_counter()
    need = space.measure(0, space.zero)[0]
    budget = _check_budget(budget_bytes, need)
    optimal = False
    dp_note = ""
    if method in ("exact", "dp"):
        found = _dp(space, budget)
        if found is None:
            k, choice = 0, space.zero
        else:
            k, choice = found[2], found[3]
        est0 = space.estimate(k, choice)
        exact0 = space.measure(k, choice)[0]
        k, choice = _repair(space, budget, k, choice)
        choice = tuple(choice)
        dp_note = (f"additive-memory DP: gain {100 * space.gain(found[2], found[3]) if found else 0:+.1f} pp, "
                   f"estimated {est0:,} B, exact {exact0:,} B"
                   + (f" -> repaired to gain {100 * space.gain(k, choice):+.1f} pp" if exact0 > budget else ""))
        best = (space.gain(k, choice), space.measure(k, choice)[0], k, choice)
        if method == "exact":
            best, optimal = _branch_and_bound(space, budget, best, max_compiles)
    elif method == "evolution":
        best = _evolution(space, budget, population=population, generations=generations, seed=seed)
    else:
        best = _brute(space, budget)
        optimal = True
    gain, arena, k, choice = best
    arena, peak, persist, trained = space.measure(k, choice)
    assert arena <= budget
    result = SearchResult(space.scheme(k, choice), k, space.weights_of(choice), gain, analysis.head_acc,
                          arena, persist, trained, budget, method, optimal, space.compiles,
                          time.perf_counter() - t0, space.estimate(k, choice), analysis=analysis)
    result.report = _report(space, result, choice, dp_note)
    return result


def _report(space: _Space, r: SearchResult, choice, dp_note: str) -> str:
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
            lines.append(f"  {name + ' weights':<34} {_fmt_ratio(rs[c]):>6} {100 * g[c]:+8.1f} {'+' + f'{d[c]:,}':>22}")
    lines += [f"  {'total':<34} {'':>6} {100 * r.gain:+8.1f} {r.estimate:>22,}",
              "",
              f"  predicted validation accuracy {100 * r.predicted_acc:.1f}% (head alone {100 * a.head_acc:.1f}% + "
              f"summed gains: additive, optimistic, can pass 100%)",
              f"  exact arena {r.arena_size:,} bytes (budget {r.budget:,}, {r.budget - r.arena_size:,} spare): "
              f"{r.persist_size:,} B trained parameters ({r.trained_params:,}) + "
              f"{r.arena_size - r.persist_size:,} B working memory"]
    return "\n".join(lines)


def plan_under_budget(graph: QGraph, budget: int, train, val, *, analysis: Analysis | None = None,
                      method: str = "exact", max_compiles: int = 20_000, **analysis_kw) -> SearchResult:
    """Contribution analysis (unless `analysis` is given) and search: the
    best scheme whose exact arena fits `budget` bytes. analysis_kw go to
    contribution_analysis (bias_ks, weight_layers, ratios, epochs, lr, jobs,
    progress, seeds, base_k, lr_scale, qas, residue). The budget is checked
    before anything is trained. The result carries `.analysis`."""
    if analysis is None:
        keep = {k: analysis_kw[k] for k in ("lr", "lr_scale", "qas", "residue") if k in analysis_kw}
        _check_budget(budget, minimum_budget(graph, **keep))
        analysis = contribution_analysis(graph, train, val, **analysis_kw)
    elif analysis_kw:
        raise TypeError(f"options {sorted(analysis_kw)} apply to a new analysis, not to a given one")
    return search(analysis, budget, graph, method=method, max_compiles=max_compiles)
