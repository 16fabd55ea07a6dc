"""Where everything lives in the arena.

The arena starts with the persistent area (the trained parameters, layer by
layer); the working tensors follow, each placed by lifetime: first fit over
(lifetime x size), largest first, so tensors never live at once share bytes;
an in-place input gradient (inplace.py) is placed with the output gradient it
overwrites, a fused op's output with the input it overwrites (fused_overlap.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import modelfile as mf
from ..graph import QGraph, QLayer
from .scheme import QAS_DEAD_CHANNEL_FLOOR, Scheme

ALIGN = 4
# Trained biases as int16 changes (format 2.2, LF_BIAS16) where such a change
# can move every live channel's output by at least this many output units
# (int8 steps) before it saturates; else int32. Fine-tuning MCUNet-5fps on
# digits (the demo's and bench_sparse_update's settings, schemes 99kb and
# 148kb, up to 6 epochs) moved no bias by more than 7.8 output units (3,148
# bias units, a tenth of int16): 32 is 4 times that (docs/format.md).
BIAS16_MIN_REACH = 32.0
INT16_MAX = 32767
NO_STORAGE = mf.TF_STREAMED  # streamed row by row inside a fused op


def align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class TrainedParams:
    """Arena offsets of one layer's trained parameters (-1: not trained)."""

    weights: int = -1
    residue: int = -1   # the sub-int8 remainder of the trained weights
    bias: int = -1
    bias16: bool = False  # the biases are int16 changes (LF_BIAS16)


@dataclass
class PersistentArea:
    size: int
    layers: dict        # layer name -> TrainedParams
    n_params: int       # trained weights and biases


def trained_weight_count(layer: QLayer, n_train: int) -> int:
    kh, kw = layer.kernel
    return n_train * kh * kw * (layer.weight.shape[0] if layer.kind == "conv" else 1)


def bias16_reach(graph: QGraph, layer: QLayer) -> float:
    """Output units (int8 steps) an int16 bias change moves the output of the
    layer's live channels at least: 32767 s_x s_w[c] / s_y over the channels
    whose weight scale is at least QAS_DEAD_CHANNEL_FLOOR of the largest (a
    dead channel's bias moves its constant output by nothing noticeable)."""
    sx = float(graph.tensors[layer.inputs[0]].scale)
    sy = float(graph.tensors[layer.output].scale)
    sw = np.asarray(layer.w_scale, dtype=np.float64)
    live = sw[sw >= QAS_DEAD_CHANNEL_FLOOR * sw.max()] if sw.max() > 0 else sw
    return float(INT16_MAX * sx * live.min() / sy) if live.size else 0.0


def bias16_fits(graph: QGraph, layer: QLayer) -> bool:
    """Whether the layer's trained biases are kept as int16 changes."""
    b = np.abs(np.asarray(layer.bias, dtype=np.int64))
    return bias16_reach(graph, layer) >= BIAS16_MIN_REACH and int(b.max(initial=0)) <= 2 ** 30


def persistent_area(graph: QGraph, n_train: dict, scheme: Scheme, bias16: bool = True) -> PersistentArea:
    """The trained parameters, laid out layer by layer from offset 0. bias16:
    trained biases as int16 changes where bias16_fits (else int32); False:
    int32 everywhere (format 2.1's layout)."""
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
            p.bias16 = bias16 and bias16_fits(graph, layer)
            p.bias = take((2 if p.bias16 else 4) * cout)
            n_params += cout
    return PersistentArea(size, layers, n_params)


@dataclass
class Placement:
    arena_size: int
    live_bytes: list    # per op: persistent + tensors live at that op
    in_place: dict      # lower tensor name -> (name of the tensor it overwrites, gap bytes)


def place(tensors: list, persist: int, n_ops: int, reuse_memory: bool = True, pairs=None) -> Placement:
    """Set arena_off of every stored tensor (PlannedTensor, lifetimes set)
    after the persistent area. reuse_memory=False gives each its own bytes.
    pairs (inplace.in_place_pairs, fused_overlap.fused_overlap_pairs, only
    with reuse_memory): {lower id: (upper id, gap)}, the lower tensor placed
    with the one it overwrites as one unit, gap bytes below it."""
    pairs = pairs if reuse_memory and pairs else {}
    paired = {g for g, _ in pairs.values()}
    units = []  # (span bytes, first op, [(tensor, offset in the unit)])
    for tid, t in enumerate(tensors):
        if t.rec.flags & NO_STORAGE or tid in paired:
            continue
        # A chain of pairs (an output gradient that is itself written over
        # the next layer's) is one unit, each tensor its gap above the last.
        parts, off, cur = [(t, 0)], 0, tid
        while cur in pairs:
            cur, gap = pairs[cur]
            off += gap
            parts.append((tensors[cur], off))
        units.append((off + tensors[cur].rec.size, min(p.first for p, _ in parts), parts))
    placed = []
    for _, _, parts in sorted(units, key=lambda u: (-u[0], u[1])):
        clashes = [(t.rec.size, rel, [p for p in placed if not reuse_memory or (p.first <= t.last and
                                                                               t.first <= p.last)])
                   for t, rel in parts]
        off = first_fit(align(persist), clashes)
        for t, rel in parts:
            t.rec.arena_off = off + rel
        placed += [t for t, _ in parts]
    work_end = max([t.rec.arena_off + t.rec.size for t in placed] + [0])
    live = live_bytes(tensors, persist, n_ops)
    for lo, (hi, gap) in pairs.items():  # the pair shares its overlap at its op
        live[tensors[lo].first] -= max(min(tensors[lo].rec.size - gap, tensors[hi].rec.size), 0)
    return Placement(align(max(work_end, persist)), live,
                     {tensors[dx].name: (tensors[g].name, gap) for dx, (g, gap) in pairs.items()})


def first_fit(start: int, parts: list) -> int:
    """The lowest aligned offset from start where each part (size, offset in
    the unit, tensors it clashes with) overlaps none of its clashes. The
    lowest puts some part at start or at the aligned end of a clash."""
    cands = {start} | {align(p.rec.arena_off + p.rec.size) - rel for _, rel, ps in parts for p in ps}
    for off in sorted(c for c in cands if c >= start):
        if all(off + rel + size <= p.rec.arena_off or p.rec.arena_off + p.rec.size <= off + rel
               for size, rel, ps in parts for p in ps):
            return off
    raise AssertionError("unreachable: the end of every clash is a candidate")


def live_bytes(tensors: list, persist: int, n_ops: int) -> list:
    return [persist + sum(t.rec.size for t in tensors
                          if t.first <= i <= t.last and not t.rec.flags & NO_STORAGE)
            for i in range(n_ops)]
