"""What to train: the scheme, and which channels of a layer it trains."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..graph import QGraph, QLayer
from ..lr_rule import check_lr

QAS_DEAD_CHANNEL_FLOOR = 1e-3  # relative to the layer's largest weight scale


@dataclass
class Scheme:
    """What to train. `weights` maps a layer name to a ratio of its input
    channels (depthwise: channels) in (0, 1], or to a channel count >= 1."""

    bias: set = field(default_factory=set)
    weights: dict = field(default_factory=dict)
    residue: bool = False
    qas: bool = True
    lr: float = 0.05
    loss: str = "ce"
    lr_scale: dict = field(default_factory=dict)

    def __post_init__(self):
        # The model's default lr: the rule the Trainer applies to lr=...,
        # so no model is written that a Trainer then refuses.
        self.lr = check_lr(self.lr)

    @classmethod
    def full(cls, graph: QGraph, **kw) -> "Scheme":
        names = [layer.name for layer in graph.param_layers]
        return cls(bias=set(names), weights={n: 1.0 for n in names}, **kw)

    @classmethod
    def last_layers(cls, graph: QGraph, n_bias: int, n_weights: int = 1, **kw) -> "Scheme":
        names = [layer.name for layer in graph.param_layers]
        return cls(bias=set(names[len(names) - n_bias:]) if n_bias else set(),
                   weights={n: 1.0 for n in (names[len(names) - n_weights:] if n_weights else [])},
                   **kw)

    def n_train(self, layer: QLayer) -> int:
        r = self.weights.get(layer.name, 0)
        n = layer.weight.shape[3] if layer.kind == "conv" else layer.weight.shape[0]
        if r <= 0:
            return 0
        if isinstance(r, float) and r <= 1.0:
            return max(1, min(n, int(round(r * n))))
        return min(n, int(r))

    def check(self, graph: QGraph) -> None:
        """Raise ValueError unless the scheme fits the graph."""
        if self.loss not in ("ce", "mse"):
            raise ValueError(f"loss must be 'ce' or 'mse', not {self.loss!r}")
        for name in list(self.bias) + list(self.weights):
            layer = graph.layer(name)
            if not layer.has_params:
                raise ValueError(f"layer {name} ({layer.kind}) has no parameters to train")


def choose_channels(layer: QLayer, n: int) -> np.ndarray:
    """Storage order: the n channels of largest weight norm (ties: lower
    index) first, each part ascending."""
    w = layer.weight.astype(np.int64)
    norms = (w ** 2).sum(axis=(0, 1, 2)) if layer.kind == "conv" else (w ** 2).sum(axis=(1, 2))
    order = np.lexsort((np.arange(len(norms)), -norms))
    trained = np.sort(order[:n])
    frozen = np.sort(order[n:])
    return np.concatenate([trained, frozen]).astype(np.uint16)
