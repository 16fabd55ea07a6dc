"""Backward ops that write their input gradient over their output gradient.

The input gradient of a frozen stride-1 depthwise layer has its output
gradient's shape, and once it is formed nothing reads the output gradient
(no weight update follows). The kernels form each channel's input-gradient
rows in increasing order, so the input gradient may start kh - pad_top rows
below the output gradient: writing input row i overwrites output row
i - (kh - pad_top) or an earlier one, which no input row from i on reads
(docs/format.md). The pair then needs the output gradient plus that gap.
"""
from __future__ import annotations

from .. import modelfile as mf
from ..graph import QGraph
from .place import align


def in_place_pairs(graph: QGraph, n_train: dict, tensors: list, ops: list) -> dict:
    """{input-gradient tensor id: (output-gradient tensor id, gap bytes)}."""
    pairs = {}
    for i, op in enumerate(ops):
        if op.kind != mf.OP_BWD or op.t[mf.BWD_IN_GRAD] == mf.NONE or op.t[mf.BWD_IN_GRAD] == op.t[mf.BWD_OUT_GRAD]:
            continue
        layer = graph.layers[op.layer]
        g, dx = tensors[op.t[mf.BWD_OUT_GRAD]], tensors[op.t[mf.BWD_IN_GRAD]]
        if (layer.kind != "dwconv" or n_train.get(layer.name, 0) or layer.stride != 1 or
                g.rec.shape != dx.rec.shape or g.last != i or dx.first != i):
            continue
        rows = max(layer.kernel[0] - layer.pad[0], 0)
        pairs[op.t[mf.BWD_IN_GRAD]] = (op.t[mf.BWD_OUT_GRAD], align(2 * rows * dx.rec.w * dx.rec.c))
    return pairs
