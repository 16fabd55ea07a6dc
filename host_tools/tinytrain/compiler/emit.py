"""The model file: layer records, the constant blob, the header."""
from __future__ import annotations

import numpy as np

from .. import modelfile as mf
from ..graph import QGraph, QLayer
from .place import PersistentArea, TrainedParams
from .requant import (add_multipliers, channel_multipliers, pool_multipliers, quantize_multiplier,
                      softmax_table)
from .schedule import GradientNeeds, Schedule
from .scheme import QAS_DEAD_CHANNEL_FLOOR, Scheme, choose_channels
LAYER_KINDS = {"conv": mf.L_CONV, "dwconv": mf.L_DWCONV, "add": mf.L_ADD, "avgpool": mf.L_AVGPOOL,
               "maxpool": mf.L_MAXPOOL, "avgpool2d": mf.L_AVGPOOL2D, "lut": mf.L_LUT}


def layer_records(graph: QGraph, act_id: dict, needs: GradientNeeds, scheme: Scheme,
                  area: PersistentArea, blob: mf.Blob) -> list:
    """One record per layer, in graph order; constants go to the blob."""
    recs = []
    for layer in graph.layers:
        x = graph.tensors[layer.inputs[0]]
        y = graph.tensors[layer.output]
        rec = mf.LayerRec(kind=LAYER_KINDS[layer.kind], inp=act_id[layer.inputs[0]],
                          out=act_id[layer.output], act_min=layer.act_min, act_max=layer.act_max,
                          name=layer.name, stride=layer.stride)
        if layer.kind == "add":
            a, b = (graph.tensors[n] for n in layer.inputs)
            rec.in2 = act_id[layer.inputs[1]]
            rec.mult_a, rec.mult_b, rec.shift = add_multipliers(a.scale / y.scale, b.scale / y.scale)
        elif layer.kind == "avgpool":
            rec.mult_a, rec.shift = quantize_multiplier(x.scale / (x.shape[0] * x.shape[1] * y.scale))
        elif layer.kind in ("maxpool", "avgpool2d"):
            rec.kh, rec.kw = layer.kernel
            rec.pad_top, rec.pad_left = layer.pad
            if layer.kind == "avgpool2d":
                rec.flags |= mf.LF_COUNT_PAD if layer.count_pad else 0
                mult, shift = pool_multipliers(layer, x.scale, y.scale)
                rec.mult_off, rec.shift_off = blob.add(mult), blob.add(shift, 1)
        elif layer.kind == "lut":
            rec.w_off = blob.add(layer.table.astype(np.int8), 1)
            rec.gscale_off = blob.add(layer.table_grad.astype("<i2"), 2)
            rec.shift = int(layer.table_grad_shift)
        else:
            fill_param_layer(rec, layer, x.scale, y.scale, needs, scheme, area.layers[layer.name], blob)
        recs.append(rec)
    return recs


def fill_param_layer(rec: mf.LayerRec, layer: QLayer, sx: float, sy: float, needs: GradientNeeds,
                     scheme: Scheme, params: TrainedParams, blob: mf.Blob) -> None:
    """A conv or depthwise layer: weights (trained channels first), bias,
    requantisation, weight scales, and what training it needs."""
    rec.kh, rec.kw = layer.kernel
    rec.pad_top, rec.pad_left = layer.pad
    nt = needs.n_train.get(layer.name, 0)
    w = layer.weight
    if nt:
        perm = choose_channels(layer, nt)
        w = w[:, :, :, perm] if layer.kind == "conv" else w[perm]
        rec.perm_off = blob.add(perm, 2)
        rec.n_train = nt
        rec.w_arena = params.weights
        if scheme.residue:
            rec.flags |= mf.LF_RESIDUE
            rec.wres_arena = params.residue
    rec.w_off = blob.add(np.ascontiguousarray(w, dtype=np.int8), 1)
    rec.b_off = blob.add(layer.bias.astype(np.int32))
    mult, shift = channel_multipliers(layer, sx, sy)
    rec.mult_off = blob.add(mult)
    rec.shift_off = blob.add(shift, 1)
    rec.wscale_off = blob.add(layer.w_scale.astype(np.float32))
    sw = layer.w_scale.astype(np.float64)
    swmax = float(sw.max()) if sw.max() > 0 else 1.0
    if layer.name in needs.needs_input_grad:
        rec.gscale_off = blob.add(np.minimum(np.round(sw / swmax * 2.0 ** 31), 2 ** 31 - 1).astype(np.int32))
        rec.wscale_max = swmax
    fill_qas_factors(rec, layer, sx, sw, swmax, nt, layer.name in needs.needs_input_grad, scheme,
                     params, blob)
    rec.lr_scale = float(scheme.lr_scale.get(layer.name, 1.0))


def fill_qas_factors(rec: mf.LayerRec, layer: QLayer, sx: float, sw: np.ndarray, swmax: float, nt: int,
                     input_grad: bool, scheme: Scheme, params: TrainedParams, blob: mf.Blob) -> None:
    """Quantisation-aware scaling of the weight and bias updates (or, without
    QAS, the plain float scale of the gradient)."""
    sw_guarded = np.maximum(sw, QAS_DEAD_CHANNEL_FLOOR * swmax)
    if nt and input_grad:
        # The update reads the gradient after the input-gradient prescale,
        # which multiplied channel c by s_w[c] / max(s_w): divide it out.
        qw = sx / (np.maximum(sw, 1e-30) * sw_guarded) if scheme.qas else np.full_like(sw, sx)
        rec.qas_w_off = blob.add(qw.astype(np.float32))
    elif nt:
        qw = sx / sw_guarded if scheme.qas else sx * sw
        rec.qas_w_off = blob.add(qw.astype(np.float32))
    if layer.name in scheme.bias:
        rec.flags |= mf.LF_TRAIN_BIAS | (mf.LF_BIAS16 if params.bias16 else 0)
        rec.b_arena = params.bias
        qb = 1.0 / (sw_guarded * sx) if scheme.qas else sw * sx
        rec.qas_b_off = blob.add(qb.astype(np.float32))


def model_file(graph: QGraph, scheme: Scheme, sched: Schedule, layer_recs: list, blob: mf.Blob,
               arena_size: int, persist_size: int) -> mf.Model:
    """The header and all sections; the softmax table goes last in the blob."""
    logits = graph.tensors[graph.output]
    exp_off = blob.add(softmax_table(logits.scale)) if scheme.loss == "ce" else mf.NO_OFFSET
    header = mf.Header(n_fwd_ops=sched.n_fwd, arena_size=arena_size, persist_size=persist_size,
                       input_tensor=sched.act_id[graph.input], logits_tensor=sched.act_id[graph.output],
                       n_classes=logits.numel,
                       loss_kind=mf.LOSS_MSE if scheme.loss == "mse" else mf.LOSS_SOFTMAX_CE,
                       lr=float(scheme.lr), exp_table_off=exp_off)
    header.flags = mf.HF_LAYER_NAMES | (mf.HF_INPUT_NCHW if graph.input_layout == "NCHW" else 0)
    header.names_off = blob.add(mf.pack_names(graph.layer_names), 1)
    return mf.Model(header, [t.rec for t in sched.tensors], layer_recs, sched.ops, bytes(blob.data))
