"""compile_model: a quantised graph and a training scheme -> a model file."""
from __future__ import annotations

from .. import modelfile as mf
from ..graph import QGraph
from .emit import layer_records, model_file
from .fuse import check_fuse_mode, drop_unneeded_fusions, find_fusions
from .fused_overlap import fused_overlap_pairs
from .prepared import add_prep_slots
from .inplace import in_place_pairs
from .place import persistent_area, place
from .plan import Plan
from .schedule import gradient_needs, schedule
from .scheme import Scheme


def compile_model(graph: QGraph, scheme: Scheme, reuse_memory: bool = True, fuse=True, bias16: bool = True,
                  prep: bool = True) -> Plan:
    """reuse_memory=False gives every tensor its own bytes (for inspecting
    every intermediate after a step; the arena grows accordingly).

    fuse: run frozen depthwise layers row by row together with the conv
    producing their input and/or the 1x1 conv consuming their output (see
    find_fusions), so those tensors never exist in full. True (default):
    the legal fusions the arena needs: starting from all of them, a fusion
    (its consumer part, its producer part, or whole) is undone when the arena
    does not grow without it, late layers first, since a fused op costs a
    little time per row (relatively most in small late layers). 'all':
    every legal fusion. 'producer' / 'consumer': every legal fusion of that
    side only. False: none. Results are bit-identical whatever the choice;
    only the memory plan and the op list differ.

    bias16: keep a trained-bias layer's biases in the arena as int16 changes
    from the file's int32 biases (2 bytes each instead of 4) where an int16
    change reaches far enough (place.bias16_fits); False: int32 throughout
    (for comparison; the same learning unless a change would saturate).

    prep: give each fused op and 1x1 layer the constants its kernels would
    make at every row or block of pixels, made once, where bytes free during
    the op hold them (prepared.py; the arena does not grow); False: none (the
    rows make their own; the same results)."""
    check_fuse_mode(fuse)
    graph.check()
    scheme.check(graph)
    needs = gradient_needs(graph, scheme)
    area = persistent_area(graph, needs.n_train, scheme, bias16)

    def arena_for(fusions: dict) -> tuple:
        sched = schedule(graph, needs, fusions)
        pairs = in_place_pairs(graph, needs.n_train, sched.tensors, sched.ops)
        pairs.update(fused_overlap_pairs(graph, sched.act_id, sched.tensors, sched.ops))
        placement = place(sched.tensors, area.size, len(sched.ops), reuse_memory, pairs)
        return placement.arena_size, (sched, placement)

    fusions = find_fusions(graph, needs.needs_grad, needs.n_train, "all" if fuse is True else fuse)
    _, (sched, placement) = arena_for(fusions)
    blob = mf.Blob()
    layer_recs = layer_records(graph, sched.act_id, needs, scheme, area, blob)
    if fuse is True:
        fusions, _, kept = drop_unneeded_fusions(fusions, placement.arena_size, arena_for)
        if kept is not None:
            sched, placement = kept
    if prep and reuse_memory:
        add_prep_slots(sched, layer_recs, area.size, placement.live_bytes)
    model = model_file(graph, scheme, sched, layer_recs, blob, placement.arena_size, area.size)
    fused = {b: tuple(x.name if x is not None else None for x in ac) for b, ac in fusions.items()}
    kind = {t.name: t.rec.kind for t in sched.tensors}
    grads = {n: p for n, p in placement.in_place.items() if kind[n] == mf.T_GRAD}
    acts = {n: p for n, p in placement.in_place.items() if kind[n] != mf.T_GRAD}
    return Plan(model.pack(), model, sched.tensors, sched.op_names, area.size, placement.arena_size,
                placement.live_bytes, area.n_params, fused, grads, acts)
