"""A fused op's output written over its consumed input.

A fused op (docs/format.md, "Fused ops") reads its input rows and writes its
output rows in increasing order: output row r is written once the rows it
needs are computed, and every later row reads only input rows from
`first_row_read_after(r)` on. So the output may overlap its input (when the
input dies at the op) as long as writing output row r touches only input rows
below that: the output starts at most `max_shift` bytes above the input
start (a negative shift: below it). The compiler places the output that far
below the input or at its start, whichever is lower, the pair one unit
(place.py); the model reader checks the same rule at open
(core/tt_model_ops.c).
"""
from __future__ import annotations

from .. import modelfile as mf
from ..graph import QGraph


def first_row_read_after(r: int, out_h: int, b_rows: tuple, a_rows: tuple | None, in_h: int) -> int:
    """The lowest input row a fused op reads after writing output row r of
    out_h (in_h: none). b_rows, a_rows: (kh, stride, pad_top, input height)
    of the depthwise layer B and of its producer A (None: B reads the input)."""
    kh, s, pad, b_in_h = b_rows
    if r + 1 >= out_h:
        return in_h
    if a_rows is None:
        nxt = (r + 1) * s - pad  # B's next row reads its input from here
        return in_h if nxt >= in_h else max(nxt, 0)
    end = min(r * s - pad + kh, b_in_h)  # A's rows [0, end) are computed, later ones from end on
    if end >= b_in_h:
        return in_h
    _, sa, pad_a, _ = a_rows
    return min(max(end * sa - pad_a, 0), in_h)


def max_shift(out_h: int, out_row: int, in_h: int, in_row: int, b_rows: tuple, a_rows: tuple | None) -> int:
    """The largest d such that the output placed d bytes above the input's
    start overwrites only input rows no later output row reads."""
    shift = None
    for r in range(out_h):
        need = first_row_read_after(r, out_h, b_rows, a_rows, in_h)
        if need < in_h:
            d = need * in_row - (r + 1) * out_row
            shift = d if shift is None else min(shift, d)
    return shift if shift is not None else in_h * in_row


def _rows(layer, in_h: int) -> tuple:
    return (layer.kernel[0], layer.stride, layer.pad[0], in_h)


def fused_overlap_pairs(graph: QGraph, act_id: dict, tensors: list, ops: list) -> dict:
    """{output tensor id: (input tensor id, gap bytes)}: each fused op whose
    input dies there writes its output gap bytes below the input's start."""
    pairs = {}
    for i, op in enumerate(ops):
        if op.kind != mf.OP_FWD_FUSED:
            continue
        b = graph.layers[op.layer]
        a = graph.layers[op.t[mf.FUSED_A]] if op.t[mf.FUSED_A] != mf.NONE else None
        c = graph.layers[op.t[mf.FUSED_C]] if op.t[mf.FUSED_C] != mf.NONE else None
        xi, yi = act_id[(a or b).inputs[0]], act_id[(c or b).output]
        x, y = tensors[xi], tensors[yi]
        if x.last != i or y.first != i or (x.rec.flags | y.rec.flags) & mf.TF_STREAMED:
            continue
        b_in_h = graph.tensors[b.inputs[0]].shape[0]
        d = max_shift(y.rec.h, y.rec.w * y.rec.c, x.rec.h, x.rec.w * x.rec.c, _rows(b, b_in_h),
                      _rows(a, x.rec.h) if a is not None else None)
        gap = -(min(d, 0) // 4 * 4)  # rounded down to 4 bytes: gap >= -d
        pairs[yi] = (xi, gap)
    return pairs
