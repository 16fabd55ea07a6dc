"""A new classifier for a converted model (`tinytrain convert --classes N --head ...`)."""
from __future__ import annotations

import numpy as np

from ..graph import QGraph

HEADS = ("first", "fresh")


def new_head(weight, bias, w_scale, n_classes: int, head: str = "first", seed: int = 0) -> tuple:
    """(weight, bias, w_scale) of a classifier with n_classes outputs, from the
    int8 classifier (weight (n, ...), bias (n,), w_scale (n,)): its first
    n_classes rows (head='first'), or fresh random int8 weights (-16..16),
    zero biases and the median weight scale (head='fresh')."""
    if head not in HEADS:
        raise ValueError(f"head must be 'first' or 'fresh', not {head!r}")
    n_classes = int(n_classes)
    if n_classes < 1:
        raise ValueError(f"the number of classes must be positive, not {n_classes}")
    weight, bias, w_scale = np.asarray(weight), np.asarray(bias), np.asarray(w_scale)
    if head == "first":
        if n_classes > weight.shape[0]:
            raise ValueError(f"{n_classes} classes but the classifier has only {weight.shape[0]} outputs "
                             "to keep; use a fresh head")
        return weight[:n_classes].copy(), bias[:n_classes].copy(), w_scale[:n_classes].copy()
    rng = np.random.default_rng(seed)
    w = rng.integers(-16, 17, size=(n_classes,) + weight.shape[1:]).astype(np.int8)
    return w, np.zeros(n_classes, np.int32), np.full(n_classes, float(np.median(w_scale)), np.float32)


def replace_head(graph: QGraph, n_classes: int, head: str = "first", seed: int = 0) -> QGraph:
    """Give the graph's last layer, a conv with a 1x1 output (the classifier),
    n_classes outputs (see new_head); changes the graph in place and returns it."""
    layer = graph.layers[-1]
    y = graph.tensors[layer.output]
    if layer.output != graph.output or layer.kind != "conv" or tuple(y.shape[:2]) != (1, 1):
        raise ValueError(f"a new head needs a classifier (a conv or fc with a 1x1 output) as the last "
                         f"layer; {layer.name!r} is a {layer.kind} with output {y.shape}")
    layer.weight, layer.bias, layer.w_scale = new_head(layer.weight, layer.bias, layer.w_scale,
                                                       n_classes, head, seed)
    y.shape = (1, 1, layer.weight.shape[0])
    return graph
