"""Layer fusion: a frozen depthwise layer runs row by row together with the
conv producing its input and/or the 1x1 conv consuming its output, so those
intermediate tensors never exist in full (a ring of kernel-height rows, one
row, instead). Results are bit-identical with or without; only the memory
plan and the op list differ."""
from __future__ import annotations

from typing import Callable

from ..graph import QGraph, QLayer

FUSE_MODES = {True: ("producer", "consumer"), False: (), "all": ("producer", "consumer"),
              "producer": ("producer",), "consumer": ("consumer",)}


def check_fuse_mode(fuse) -> None:
    if fuse is not True and fuse not in FUSE_MODES:
        raise ValueError(f"fuse must be True, False, 'all', 'producer' or 'consumer', not {fuse!r}")


def find_fusions(graph: QGraph, needs_grad: set, n_train: dict, mode=True) -> dict:
    """Depthwise layers to run fused: {dw name: (producer or None, consumer or None)}.

    A frozen depthwise layer B fuses with the conv A producing its input (any
    kernel: pointwise expand, the stem conv) when A's output feeds only B and
    needs no gradient (so no clamp mask and no saved copy of it exists), and
    with a 1x1 stride-1 conv C consuming its output under the same conditions
    on B's output, when C's weights are frozen (its saved input would be B's
    output). mode: True/'all', 'producer', 'consumer', False."""
    kinds = FUSE_MODES[mode]
    consumers: dict = {}
    for layer in graph.layers:
        for name in layer.inputs:
            consumers.setdefault(name, []).append(layer)
    producer = {layer.output: layer for layer in graph.layers}

    def streamable(name: str) -> bool:
        return (name not in (graph.input, graph.output) and name not in needs_grad
                and len(consumers.get(name, [])) == 1)

    def fusable_producer(b: QLayer):
        a = producer.get(b.inputs[0])
        if ("producer" in kinds and a is not None and a.kind == "conv" and a.name not in taken
                and not n_train.get(a.name) and streamable(b.inputs[0])):
            return a
        return None

    def fusable_consumer(b: QLayer):
        cons = consumers.get(b.output, [])
        c = cons[0] if len(cons) == 1 else None
        if ("consumer" in kinds and c is not None and c.kind == "conv" and tuple(c.kernel) == (1, 1)
                and c.stride == 1 and tuple(c.pad) == (0, 0) and not n_train.get(c.name)
                and graph.tensors[c.output].shape[:2] == graph.tensors[b.output].shape[:2]
                and streamable(b.output)):
            return c
        return None

    fusions: dict = {}
    taken: set = set()
    for b in graph.layers:
        if b.kind != "dwconv" or n_train.get(b.name):
            continue
        a, c = fusable_producer(b), fusable_consumer(b)
        if a or c:
            fusions[b.name] = (a, c)
            taken.update(x.name for x in (a, c) if x is not None)
    return fusions


def drop_unneeded_fusions(fusions: dict, arena_size: int, arena_for: Callable) -> tuple:
    """Undo each fusion (whole, else its consumer part, else its producer
    part) the arena does not grow without, late layers first, since a fused
    op costs a little time per row (relatively most in small late layers).

    arena_for(fusions) -> (arena size, anything): the plan for a choice.
    Returns (fusions, arena size, the last accepted plan or None if none was)."""
    kept = None
    for name in reversed(list(fusions)):
        a, c = fusions[name]
        for keep in [(None, None)] + ([(a, None), (None, c)] if a and c else []):
            trial = {k: (keep if k == name else v) for k, v in fusions.items()}
            if keep == (None, None):
                del trial[name]
            size, plan = arena_for(trial)
            if size <= arena_size:
                fusions, arena_size, kept = trial, size, plan
                break
    return fusions, arena_size, kept
