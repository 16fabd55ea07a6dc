"""The learning rate the contribution analysis trains with, picked on the
user's data: a small sweep of one representative scheme (the classifier and
the biases of the largest bias setting the analysis tries), each rate trained
over the same sample orders (decaying linearly to 0, as every planner run)
and scored on the validation set. The best rate
(ties: the smaller) is what the analysis, the search and the written model use.
"""
from __future__ import annotations

import numpy as np

from ..compiler import compile_model
from ..graph import QGraph
from .data import as_dataset, train_and_evaluate
from .schemes import default_bias_ks, make_scheme

# Starting rates: each run decays its rate linearly to 0 (data.train_and_evaluate),
# so a run's mean rate is half of these.
LR_CANDIDATES = (0.005, 0.01, 0.02, 0.05, 0.1)


def pick_lr(graph: QGraph, train, val, *, candidates=LR_CANDIDATES, epochs: int = 1, seeds=(0,), k=None,
            lr_scale=None, qas: bool = True, residue: bool = False) -> tuple:
    """(best lr, {lr: mean validation accuracy})."""
    xs, ys = as_dataset(train, graph, "train")
    vx, vy = as_dataset(val, graph, "val")
    k = max(default_bias_ks(graph)) if k is None else k
    scores = {}
    for lr in candidates:
        plan = compile_model(graph, make_scheme(graph, k, lr=lr, lr_scale=lr_scale, qas=qas, residue=residue))
        scores[float(lr)] = float(np.mean([train_and_evaluate(plan.data, (xs, ys), vx.tobytes(), vy, seed, epochs)
                                           for seed in seeds]))
    best = max(scores, key=lambda lr: (scores[lr], -lr))
    return best, scores


def describe(best: float, scores: dict) -> str:
    cells = ", ".join(f"{lr:g}: {100 * a:.1f}%" for lr, a in scores.items())
    return f"learning rate {best:g}, picked on the validation data ({cells})"
