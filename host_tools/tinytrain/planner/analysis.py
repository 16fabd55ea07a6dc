"""Contribution analysis: what fine-tuning each part of the network is worth
(see the package doc), and scoring given schemes the same way."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..compiler import Scheme, compile_model
from ..graph import QGraph
from .data import as_dataset
from .pool import Runner, default_jobs
from .report import analysis_table
from .schemes import (DEFAULT_RATIOS, default_bias_ks, default_weight_layers, fmt_ratio, graph_fingerprint, make_scheme,
                      resolve_layer, split_layers)


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
        return analysis_table(self)

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
    names, ratios, seeds, ks, base_k, base_choice = _check_options(
        graph, backbone, default_bias_ks(graph) if bias_ks is None else list(bias_ks),
        default_weight_layers(graph) if weight_layers is None else list(weight_layers),
        ratios, epochs, seeds, base_k)
    xtr, ytr = as_dataset(train, graph, "train")
    xva, yva = as_dataset(val, graph, "val")
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise ValueError("jobs must be >= 1")

    m = _Measurements(graph, dict(lr=lr, lr_scale=lr_scale, qas=qas, residue=residue), seeds, int(epochs))
    weight_keys = [("w", name, r) for name in names for r in ratios]
    for k in ks:
        m.prepare(("b", k), k, {})
    if base_k is not None:
        for key in weight_keys:
            m.prepare(key, base_k, {key[1]: key[2]})

    n_total = len(m.tasks_of) + (0 if base_k is not None else len(weight_keys))
    if progress:
        from tqdm.auto import tqdm
        m.bar = tqdm(total=n_total, desc="contribution analysis", unit="run", dynamic_ncols=True)
    data = (xtr, ytr, xva.tobytes(), [int(v) for v in yva])
    try:
        with Runner(data, min(jobs, max(1, n_total))) as runner:
            first = list(m.configs)
            m.run(runner, first)
            if base_k is None:  # the weight runs sit on the best bias setting, known only now
                base_k = max(ks, key=lambda k: (m.configs[("b", k)].acc, -k))
                for key in weight_keys:
                    m.prepare(key, base_k, {key[1]: key[2]})
                if m.bar is not None:
                    m.bar.total = len(first) - sum(1 for key in first if key in m.alias) + \
                        sum(1 for key in weight_keys if key in m.tasks_of)
                    m.bar.refresh()
                m.run(runner, weight_keys)
    finally:
        if m.bar is not None:
            m.bar.close()

    bias = {k: m.configs[("b", k)] for k in ks}
    weight = {(name, r): m.configs[("w", name, r)] for name in names for r in ratios}
    settings = {"epochs": int(epochs), "lr": float(lr),
                "lr_scale": lr_scale if lr_scale is None or isinstance(lr_scale, (int, float))
                else {str(a): float(b) for a, b in dict(lr_scale).items()},
                "qas": bool(qas), "residue": bool(residue), "seeds": seeds, "n_train": len(xtr),
                "n_val": len(xva), "jobs": jobs, "runs": m.n_runs, "cpu_seconds": m.seconds,
                "seconds": time.perf_counter() - t_start}
    return Analysis(backbone, head, ratios, names, base_k, base_choice, bias, weight, settings,
                    graph_fingerprint(graph))


def _check_options(graph: QGraph, backbone: list, bias_ks: list, weight_layers: list, ratios, epochs, seeds,
                   base_k) -> tuple:
    """(layer names, ratios, seeds, ks, base_k or None for 'best', base_choice), or ValueError."""
    names = []
    for key in weight_layers:
        name = resolve_layer(graph, key)
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
    if base_k is None or base_k == "best":
        return names, ratios, seeds, ks, None, "best"
    if base_k == "largest":
        return names, ratios, seeds, ks, max(ks), "largest"
    if not 0 <= int(base_k) <= len(backbone):
        raise ValueError(f"base_k = {base_k}: not in [0, {len(backbone)}]")
    return names, ratios, seeds, sorted(set(ks) | {int(base_k)}), int(base_k), "given"


class _Measurements:
    """The configurations of an analysis, each compiled once; configurations
    whose model files are identical share one run."""

    def __init__(self, graph: QGraph, opts: dict, seeds: list, epochs: int):
        self.graph, self.opts, self.seeds, self.epochs = graph, opts, seeds, epochs
        self.configs: dict = {}   # key -> Config (accuracy filled in by run)
        self.by_model: dict = {}  # model digest -> key of the run that measures it
        self.alias: dict = {}     # key -> key whose run it shares (same compiled model)
        self.tasks_of: dict = {}  # key -> pool task
        self.seconds, self.n_runs = 0.0, 0
        self.bar = None

    def prepare(self, key, k: int, weights: dict) -> None:
        plan = compile_model(self.graph, make_scheme(self.graph, k, weights, **self.opts))
        self.configs[key] = Config(k, dict(weights), float("nan"), [], plan.arena_size, plan.persist_size,
                                   plan.trained_params)
        digest = hashlib.sha1(plan.data).hexdigest()
        if digest in self.by_model:
            self.alias[key] = self.by_model[digest]
        else:
            self.by_model[digest] = key
            self.tasks_of[key] = (key, plan.data, self.seeds, self.epochs)

    def run(self, runner: Runner, keys: list) -> None:
        # Longest first (a bigger arena means more layers in the backward pass).
        tasks = sorted((self.tasks_of[key] for key in keys if key in self.tasks_of),
                       key=lambda t: -self.configs[t[0]].arena)
        for key, accs, secs in runner.run(tasks):
            c = self.configs[key]
            c.accs, c.acc, c.seconds = accs, float(np.mean(accs)), secs
            self.seconds += secs
            self.n_runs += len(accs)
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix_str(f"{key_text(key)}: {100 * c.acc:.1f}%")
        for key, src in self.alias.items():
            if key in keys:
                c = self.configs[key]
                c.accs, c.acc = list(self.configs[src].accs), self.configs[src].acc


def key_text(key) -> str:
    return f"k={key[1]}" if key[0] == "b" else f"{key[1]}@{fmt_ratio(key[2])}"


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
        with Runner((xtr, ytr, xte.tobytes(), [int(v) for v in yte]), min(jobs, max(1, len(tasks)))) as r:
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
