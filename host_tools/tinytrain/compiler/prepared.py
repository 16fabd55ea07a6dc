"""Prepared constants (docs/format.md, "Prepared constants", format 2.3).

A fused op runs its layers one row at a time, and a 1x1 layer whose input a
kernel's stack buffer cannot hold whole runs in blocks of pixels; without a
slot each row or block makes the layer's constants again (widened 1x1
weights, regrouped depthwise taps, requantisation). With one (a fused op's
t[FUSED_PREP], a forward op's t[FWD_PREP]) they are made once per op, in
arena bytes that no tensor uses during the op: the slot is placed after
everything else, in a gap of the finished placement below the last byte
used, so the arena and every other tensor stay where they were.
"""
from __future__ import annotations

from .. import modelfile as mf
from .schedule import PlannedTensor

ALIGN = 4
MAX_SLOT = 0xFFFF  # the record's c (u16) holds the size


def prep_bytes(layer: mf.LayerRec, tensors: list) -> int:
    """Bytes of a layer's prepared constants, 0 when it cannot have them (the
    reader's tt_prep_bytes, tt_forward.c): frozen weights without perm, and
    per pair of output channels of a 1x1 stride-1 conv (input channels a
    multiple of 8 up to 64, even output channels) its widened weights, 4 cin
    bytes, and 32 bytes of constants, or per group of 4 channels of a
    depthwise layer (kernel at most 7 x 7) its regrouped taps, 8 kh kw bytes,
    and 80 bytes of constants."""
    x, y = tensors[layer.inp], tensors[layer.out]
    if layer.perm_off != mf.NO_OFFSET or layer.n_train:
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


def op_parts(op: mf.OpRec, layer_recs: list, recs: list) -> list:
    """(flag, bytes) of the layers of an op that can have prepared constants:
    a fused op's A, B, C in this order (flag FUSED_PREP_*); a forward op's 1x1
    layer (flag 0: its slot needs none). A depthwise layer run whole makes
    its constants once anyway."""
    if op.kind == mf.OP_FWD:
        layer = layer_recs[op.layer]
        n = prep_bytes(layer, recs) if layer.kind == mf.L_CONV else 0
        return [(0, n)] if n else []
    if op.kind != mf.OP_FWD_FUSED:
        return []
    parts = [(flag, prep_bytes(layer_recs[li], recs))
             for flag, li in ((mf.FUSED_PREP_A, op.t[mf.FUSED_A]), (mf.FUSED_PREP_B, op.layer),
                              (mf.FUSED_PREP_C, op.t[mf.FUSED_C])) if li != mf.NONE]
    return [(f, n) for f, n in parts if n]


def add_prep_slots(sched, layer_recs: list, persist_size: int, live_bytes: list) -> None:
    """Give every op that can have them the prepared constants of as many of
    its layers (most bytes first) as fit in its largest gap, below the end of
    the last placed tensor; sets the op's slot (and a fused op's flags), adds
    the slot's bytes to live_bytes at the op."""
    tensors = sched.tensors
    recs = [t.rec for t in tensors]
    end = max([t.rec.arena_off + t.rec.size for t in tensors
               if t.rec.size and not t.rec.flags & mf.TF_STREAMED] + [persist_size])
    for i, op in enumerate(sched.ops):
        parts = op_parts(op, layer_recs, recs)
        if not parts:
            continue
        gaps = free_ranges(tensors, i, persist_size, end)
        room = min(max((n for _, n in gaps), default=0), MAX_SLOT)
        choices = [(sum(n for _, n in sub), sum(f for f, _ in sub))
                   for k in range(1, 1 << len(parts)) for sub in [[p for j, p in enumerate(parts) if k >> j & 1]]]
        fits = [c for c in choices if c[0] <= room]
        if not fits:
            continue
        size, flags = max(fits)
        off = next(o for o, n in gaps if n >= size)
        rec = mf.TensorRec(off, size, mf.T_ACT, 0, 1, 1, size, 1.0, 0, f"{sched.op_names[i]}.prepared")
        tensors.append(PlannedTensor(rec.name, rec, i, i))
        op.t[mf.FWD_PREP if op.kind == mf.OP_FWD else mf.FUSED_PREP] = len(tensors) - 1
        op.flags = flags
        live_bytes[i] += size
