"""The search space of an analysis on a graph: gains, memory figures, exact compiles."""
from __future__ import annotations

import json
import math
import warnings

from ..compiler import Scheme, compile_model
from ..compiler.place import align, trained_weight_count
from ..graph import QGraph
from .analysis import Analysis
from .schemes import graph_fingerprint, split_layers

EPS = 1e-12


class SearchSpace:
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
            row = []
            for r in rs:
                scheme.weights = {name: r} if r > 0 else {}
                row.append((1 + residue) * align(trained_weight_count(layer, scheme.n_train(layer))))
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


def better(a, b) -> bool:
    """a, b: (gain, arena); higher gain, then smaller arena."""
    if b is None:
        return True
    return a[0] > b[0] + EPS or (abs(a[0] - b[0]) <= EPS and a[1] < b[1])
