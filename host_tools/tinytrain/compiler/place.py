"""Where everything lives in the arena.

The arena starts with the persistent area (the trained parameters, layer by
layer); the working tensors follow, each placed by lifetime: first fit over
(lifetime x size), largest first, so tensors never live at once share bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import modelfile as mf
from ..graph import QGraph, QLayer
from .scheme import Scheme

ALIGN = 4
NO_STORAGE = mf.TF_EXTERNAL | mf.TF_STREAMED  # outside the arena, or streamed row by row


def align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class TrainedParams:
    """Arena offsets of one layer's trained parameters (-1: not trained)."""

    weights: int = -1
    residue: int = -1   # the sub-int8 remainder of the trained weights
    bias: int = -1


@dataclass
class PersistentArea:
    size: int
    layers: dict        # layer name -> TrainedParams
    n_params: int       # trained weights and biases


def trained_weight_count(layer: QLayer, n_train: int) -> int:
    kh, kw = layer.kernel
    return n_train * kh * kw * (layer.weight.shape[0] if layer.kind == "conv" else 1)


def persistent_area(graph: QGraph, n_train: dict, scheme: Scheme) -> PersistentArea:
    """The trained parameters, laid out layer by layer from offset 0."""
    size = n_params = 0
    layers = {}

    def take(nbytes: int) -> int:
        nonlocal size
        off = size
        size += align(nbytes)
        return off

    for layer in graph.param_layers:
        p = layers[layer.name] = TrainedParams()
        nt = n_train.get(layer.name, 0)
        if nt:
            n_w = trained_weight_count(layer, nt)
            p.weights = take(n_w)
            if scheme.residue:
                p.residue = take(n_w)
            n_params += n_w
        if layer.name in scheme.bias:
            cout = layer.weight.shape[0]
            p.bias = take(4 * cout)
            n_params += cout
    return PersistentArea(size, layers, n_params)


@dataclass
class Placement:
    arena_size: int
    live_bytes: list    # per op: persistent + tensors live at that op


def place(tensors: list, persist: int, n_ops: int, reuse_memory: bool = True) -> Placement:
    """Set arena_off of every stored tensor (PlannedTensor, lifetimes set)
    after the persistent area. reuse_memory=False gives each its own bytes."""
    placed = []
    work_end = 0
    for t in sorted((t for t in tensors if not t.rec.flags & NO_STORAGE),
                    key=lambda t: (-t.rec.size, t.first)):
        clashes = [p for p in placed if not reuse_memory or (p.first <= t.last and t.first <= p.last)]
        t.rec.arena_off = first_fit(t.rec.size, align(persist), clashes)
        work_end = max(work_end, t.rec.arena_off + t.rec.size)
        placed.append(t)
    return Placement(align(max(work_end, persist)), live_bytes(tensors, persist, n_ops))


def first_fit(size: int, start: int, clashes: list) -> int:
    """The lowest aligned offset from start where size bytes overlap none of clashes."""
    off = start
    for p in sorted(clashes, key=lambda p: p.rec.arena_off):
        if off + size <= p.rec.arena_off:
            break
        off = max(off, align(p.rec.arena_off + p.rec.size))
    return off


def live_bytes(tensors: list, persist: int, n_ops: int) -> list:
    return [persist + sum(t.rec.size for t in tensors
                          if t.first <= i <= t.last and not t.rec.flags & NO_STORAGE)
            for i in range(n_ops)]
