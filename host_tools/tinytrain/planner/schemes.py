"""Schemes in the planner's terms: k backbone biases + the classifier + weight ratios."""
from __future__ import annotations

import hashlib
from fractions import Fraction

import numpy as np

from ..compiler import Scheme
from ..graph import QGraph

DEFAULT_RATIOS = (1 / 8, 1 / 4, 1 / 2, 1.0)


def split_layers(graph: QGraph) -> tuple:
    """(backbone layer names with parameters, input to output; classifier name)."""
    names = [layer.name for layer in graph.param_layers]
    if len(names) < 1:
        raise ValueError("the graph has no layer with parameters")
    return names[:-1], names[-1]


def lr_scale_dict(graph: QGraph, lr_scale) -> dict:
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
                  qas=bool(qas), residue=bool(residue), lr_scale=lr_scale_dict(graph, lr_scale))


def resolve_layer(graph: QGraph, key) -> str:
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


def fmt_ratio(r: float) -> str:
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
