"""Prepared constants of fused ops (docs/format.md, "Fused ops", format 2.3).

A fused op runs its layers one row at a time; without them each row's
kernel call makes its constants again (widened 1x1 weights, regrouped
depthwise taps, requantisation). With an op's t[FUSED_PREP] they are made
once per op, in arena bytes that no tensor uses during the op: the slot is
placed after everything else, in a gap of the finished placement below the
last byte used, so the arena and every other tensor stay where they were.
"""
from __future__ import annotations

from .. import modelfile as mf
from .schedule import PlannedTensor

ALIGN = 4
MAX_SLOT = 0xFFFF  # the record's c (u16) holds the size


def prep_bytes(layer: mf.LayerRec, tensors: list) -> int:
    """Bytes of a layer's part of a fused op's prepared constants, 0 when it
    cannot have one (the reader's tt_fused_prep_bytes, tt_fused.c): per pair
    of output channels of a 1x1 stride-1 conv (input channels a multiple of
    8 up to 64, even output channels) its widened weights, 4 cin bytes, and
    32 bytes of constants; per group of 4 channels of a depthwise layer
    (kernel at most 7 x 7) its regrouped taps, 8 kh kw bytes, and 80 bytes
    of constants. Neither with a perm."""
    x, y = tensors[layer.inp], tensors[layer.out]
    if layer.perm_off != mf.NO_OFFSET:
        return 0
    if layer.kind == mf.L_DWCONV and y.c % 4 == 0 and layer.kh <= 7 and layer.kw <= 7:
        return y.c // 4 * (8 * layer.kh * layer.kw + 80)
    if (layer.kind == mf.L_CONV and layer.kh == layer.kw == layer.stride == 1 and (x.h, x.w) == (y.h, y.w)
            and x.c % 8 == 0 and x.c <= 64 and y.c % 2 == 0):
        return y.c // 2 * (4 * x.c + 32)
    return 0


def free_ranges(tensors: list, op_index: int, start: int, end: int) -> list:
    """(offset, bytes) of the aligned gaps in [start, end) that no stored
    tensor live at the op occupies."""
    used = sorted((t.rec.arena_off, t.rec.arena_off + t.rec.size) for t in tensors
                  if t.first <= op_index <= t.last and t.rec.size and not t.rec.flags & mf.TF_STREAMED)
    gaps, cur = [], start
    for lo, hi in used + [(end, end)]:
        a = (cur + ALIGN - 1) // ALIGN * ALIGN
        if lo > a:
            gaps.append((a, lo - a))
        cur = max(cur, hi)
    return gaps


def add_prep_slots(sched, layer_recs: list, persist_size: int, live_bytes: list) -> None:
    """Give every fused op the prepared constants of as many of its layers
    (most bytes first) as fit in its largest gap, below the end of the last
    placed tensor; sets the op's t[FUSED_PREP] and flags, adds the slot's
    bytes to live_bytes at the op."""
    tensors = sched.tensors
    recs = [t.rec for t in tensors]
    end = max([t.rec.arena_off + t.rec.size for t in tensors
               if t.rec.size and not t.rec.flags & mf.TF_STREAMED] + [persist_size])
    for i, op in enumerate(sched.ops):
        if op.kind != mf.OP_FWD_FUSED:
            continue
        parts = [(flag, prep_bytes(layer_recs[lay], recs))
                 for flag, lay in ((mf.FUSED_PREP_A, op.t[mf.FUSED_A]), (mf.FUSED_PREP_B, op.layer),
                                   (mf.FUSED_PREP_C, op.t[mf.FUSED_C])) if lay != mf.NONE]
        parts = [(f, n) for f, n in parts if n]
        gaps = free_ranges(tensors, i, persist_size, end)
        room = max((n for _, n in gaps), default=0)
        choices = [(sum(n for f, n in parts if mask & f), mask) for mask in range(1, 8)
                   if all(not mask & f or any(f == g for g, _ in parts) for f in (1, 2, 4))]
        fits = [(size, mask) for size, mask in choices if 0 < size <= min(room, MAX_SLOT)]
        if not fits:
            continue
        size, mask = max(fits)
        off = next(o for o, n in gaps if n >= size)
        rec = mf.TensorRec(off, size, mf.T_ACT, 0, 1, 1, size, 1.0, 0, f"{sched.op_names[i]}.prepared")
        tensors.append(PlannedTensor(rec.name, rec, i, i))
        op.t[mf.FUSED_PREP] = len(tensors) - 1
        op.flags = mask
        live_bytes[i] += size
