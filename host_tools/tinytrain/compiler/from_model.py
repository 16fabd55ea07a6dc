"""Read the quantised graph back out of a model file."""
from __future__ import annotations

import numpy as np

from .. import modelfile as mf
from ..graph import QGraph, QLayer, QTensor


def graph_from_model(data: bytes) -> QGraph:
    """The quantised graph inside a model file (weights back in natural channel
    order), so any model file can be planned again with another scheme."""
    m = mf.Model.parse(data)
    names = {}
    tensors = {}
    used = {m.header.input_tensor} | {i for L in m.layers for i in (L.inp, L.out, L.in2)}
    for i, t in enumerate(m.tensors):
        if t.kind == mf.T_ACT and i in used:  # not a fused op's ring or row
            name = "input" if i == m.header.input_tensor else f"t{i}"
            names[i] = name
            tensors[name] = QTensor(name, t.shape, float(t.scale), int(t.zero))
    layers = []
    for i, L in enumerate(m.layers):
        kind = mf.LAYER_KIND_NAMES[L.kind]
        x, y = m.tensors[L.inp], m.tensors[L.out]
        inputs = [names[L.inp]] + ([names[L.in2]] if L.kind == mf.L_ADD else [])
        layer = QLayer(L.name, kind, inputs, names[L.out], stride=L.stride,
                       pad=(L.pad_top, L.pad_left), act_min=L.act_min, act_max=L.act_max)
        if L.kind in (mf.L_CONV, mf.L_DWCONV):
            cout = y.c
            if L.wscale_off == mf.NO_OFFSET:
                raise ValueError(f"layer {i} has no weight scales: the file was written without them")
            n = cout * L.kh * L.kw * (x.c if L.kind == mf.L_CONV else 1)
            w = m.blob_array(L.w_off, np.int8, n)
            if L.kind == mf.L_CONV:
                w = w.reshape(cout, L.kh, L.kw, x.c)
            else:
                w = w.reshape(cout, L.kh, L.kw)
            if L.perm_off != mf.NO_OFFSET:
                perm = m.blob_array(L.perm_off, np.uint16, x.c if L.kind == mf.L_CONV else cout)
                inv = np.argsort(perm)
                w = w[:, :, :, inv] if L.kind == mf.L_CONV else w[inv]
            layer.weight = np.ascontiguousarray(w)
            layer.bias = m.blob_array(L.b_off, np.int32, cout).copy()
            layer.w_scale = m.blob_array(L.wscale_off, np.float32, cout).copy()
        elif L.kind in (mf.L_MAXPOOL, mf.L_AVGPOOL2D):
            layer.pool = (L.kh, L.kw)
            layer.count_pad = bool(L.flags & mf.LF_COUNT_PAD)
        elif L.kind == mf.L_LUT:
            layer.table = m.blob_array(L.w_off, np.int8, 256).copy()
            layer.table_grad = m.blob_array(L.gscale_off, np.int16, 256).copy()
            layer.table_grad_shift = L.shift
        layers.append(layer)
    g = QGraph(tensors, layers, "input", names[m.header.logits_tensor],
               meta={"input_layout": "NCHW" if m.header.flags & mf.HF_INPUT_NCHW else "NHWC"})
    g.check()
    return g
