"""Compile a quantised graph and a training scheme into a model file.

This is the host half of the engine: autodiff and pruning (only gradients
somebody needs are computed), operator reordering (each layer's update is
fused into its gradient kernel, so no weight gradient is ever stored), the
choice of trained channels, the QAS factors, and the memory plan (every
tensor placed in one arena by lifetime, first fit, largest first), with
layer fusion: a frozen depthwise layer runs row by row together with the conv
producing its input and/or the 1x1 conv consuming its output, so those
intermediate tensors never exist in full (a ring of kernel-height rows, one
row, instead).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import modelfile as mf
from .graph import QGraph, QLayer

ALIGN = 4
QAS_DEAD_CHANNEL_FLOOR = 1e-3  # relative to the layer's largest weight scale


@dataclass
class Scheme:
    """What to train. `weights` maps a layer name to a ratio of its input
    channels (depthwise: channels) in (0, 1], or to a channel count >= 1."""

    bias: set = field(default_factory=set)
    weights: dict = field(default_factory=dict)
    residue: bool = False
    qas: bool = True
    lr: float = 0.05
    loss: str = "ce"
    lr_scale: dict = field(default_factory=dict)

    @classmethod
    def full(cls, graph: QGraph, **kw) -> "Scheme":
        names = [layer.name for layer in graph.param_layers]
        return cls(bias=set(names), weights={n: 1.0 for n in names}, **kw)

    @classmethod
    def last_layers(cls, graph: QGraph, n_bias: int, n_weights: int = 1, **kw) -> "Scheme":
        names = [layer.name for layer in graph.param_layers]
        return cls(bias=set(names[len(names) - n_bias:]) if n_bias else set(),
                   weights={n: 1.0 for n in (names[len(names) - n_weights:] if n_weights else [])},
                   **kw)

    def n_train(self, layer: QLayer) -> int:
        r = self.weights.get(layer.name, 0)
        n = layer.weight.shape[3] if layer.kind == "conv" else layer.weight.shape[0]
        if r <= 0:
            return 0
        if isinstance(r, float) and r <= 1.0:
            return max(1, min(n, int(round(r * n))))
        return min(n, int(r))


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def quantize_multiplier(real: float) -> tuple:
    """real ~= mult * 2^-shift with mult in [2^30, 2^31); (0, 1) for zero."""
    if not real > 0 or not math.isfinite(real):
        return 0, 1
    m, e = math.frexp(real)
    mult = int(round(m * (1 << 31)))
    shift = 31 - e
    if mult == 1 << 31:
        mult //= 2
        shift -= 1
    if shift > 62:
        return 0, 1
    if shift < 1:
        raise ValueError(f"requantisation multiplier {real:g} is too large")
    return mult, shift


def add_multipliers(ra: float, rb: float) -> tuple:
    """Common shift for the two input ratios of an add."""
    mx = max(ra, rb)
    shift = 31 - (math.frexp(mx)[1])
    while True:
        ma, mb = int(round(ra * 2.0 ** shift)), int(round(rb * 2.0 ** shift))
        if max(ma, mb) < 1 << 31:
            break
        shift -= 1
    shift = min(shift, 62)
    if shift < 1:
        raise ValueError("add input scales differ too much from the output scale")
    return int(round(ra * 2.0 ** shift)), int(round(rb * 2.0 ** shift)), shift


def softmax_table(scale: float) -> np.ndarray:
    d = np.arange(256, dtype=np.float64)
    return np.round(2.0 ** 30 * np.exp(-float(scale) * d)).astype(np.uint32)


def choose_channels(layer: QLayer, n: int) -> np.ndarray:
    """Storage order: the n channels of largest weight norm (ties: lower
    index) first, each part ascending."""
    w = layer.weight.astype(np.int64)
    norms = (w ** 2).sum(axis=(0, 1, 2)) if layer.kind == "conv" else (w ** 2).sum(axis=(1, 2))
    order = np.lexsort((np.arange(len(norms)), -norms))
    trained = np.sort(order[:n])
    frozen = np.sort(order[n:])
    return np.concatenate([trained, frozen]).astype(np.uint16)


@dataclass
class PlannedTensor:
    name: str
    rec: mf.TensorRec
    first: int = -1
    last: int = -1

    def touch(self, op_index: int) -> None:
        self.first = op_index if self.first < 0 else min(self.first, op_index)
        self.last = max(self.last, op_index)


@dataclass
class Plan:
    """The compiled model and what the report and plot need."""

    data: bytes
    model: mf.Model
    tensors: list
    op_names: list
    persist_size: int
    arena_size: int
    live_bytes: list  # per op: persistent + tensors live at that op
    trained_params: int
    fusions: dict = field(default_factory=dict)  # fused ops: {depthwise: (producer or None, consumer or None)}

    @property
    def peak_live(self) -> int:
        return max(self.live_bytes)

    def peak_op(self) -> int:
        return int(np.argmax(self.live_bytes))

    @property
    def used_bytes(self) -> int:
        """The end of the highest placed tensor (or of the trained parameters):
        the last arena byte one training step touches, which the simulator
        measures (trainer.measure_peak). arena_size is this rounded up to
        ALIGN; peak_live (the most bytes live at once) is at most this, less
        where the placement leaves gaps."""
        ends = [t.rec.arena_off + t.rec.size for t in self.tensors
                if t.rec.size and not t.rec.flags & (mf.TF_EXTERNAL | mf.TF_STREAMED)]
        return max(ends + [self.persist_size])

    def live_at(self, op_index: int) -> list:
        return [t for t in self.tensors if t.first <= op_index <= t.last and t.rec.size]

    def report(self) -> str:
        lines = [f"arena {self.arena_size} bytes: {self.persist_size} trained parameters + "
                 f"{self.arena_size - self.persist_size} working memory",
                 f"peak live {self.peak_live} bytes at op {self.peak_op()} ({self.op_names[self.peak_op()]})",
                 f"trained parameters: {self.trained_params}"]
        streamed = [t for t in self.tensors if t.rec.flags & mf.TF_STREAMED]
        if streamed:
            lines.append(f"fused ops: {len(self.fusions)}; streamed row by row, never stored whole: " +
                         ", ".join(f"{t.name} ({t.rec.size} B)" for t in streamed))
        lines += ["", "op  live_bytes  name"]
        for i, (name, live) in enumerate(zip(self.op_names, self.live_bytes)):
            lines.append(f"{i:3d} {live:10d}  {name}")
        lines += ["", f"tensors live at the peak (op {self.peak_op()}):"]
        for t in sorted(self.live_at(self.peak_op()), key=lambda t: -t.rec.size):
            lines.append(f"  {t.rec.size:8d} B @ {t.rec.arena_off:7d}  {t.name}")
        return "\n".join(lines)


def _requant_arrays(layer: QLayer, sx: float, sy: float) -> tuple:
    mults, shifts = zip(*(quantize_multiplier(sx * float(s) / sy) for s in layer.w_scale))
    return np.array(mults, dtype=np.int32), np.array(shifts, dtype=np.int8)


FUSE_MODES = {True: ("producer", "consumer"), False: (), "all": ("producer", "consumer"),
              "producer": ("producer",), "consumer": ("consumer",)}


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

    fusions: dict = {}
    taken: set = set()
    for b in graph.layers:
        if b.kind != "dwconv" or n_train.get(b.name):
            continue
        a = producer.get(b.inputs[0])
        if not ("producer" in kinds and a is not None and a.kind == "conv" and a.name not in taken
                and not n_train.get(a.name) and streamable(b.inputs[0])):
            a = None
        cons = consumers.get(b.output, [])
        c = cons[0] if len(cons) == 1 else None
        if not ("consumer" in kinds and c is not None and c.kind == "conv" and tuple(c.kernel) == (1, 1)
                and c.stride == 1 and tuple(c.pad) == (0, 0) and not n_train.get(c.name)
                and graph.tensors[c.output].shape[:2] == graph.tensors[b.output].shape[:2]
                and streamable(b.output)):
            c = None
        if a or c:
            fusions[b.name] = (a, c)
            taken.update(x.name for x in (a, c) if x is not None)
    return fusions


def compile_model(graph: QGraph, scheme: Scheme, reuse_memory: bool = True, fuse=True) -> Plan:
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
    only the memory plan and the op list differ."""
    if fuse is not True and fuse not in FUSE_MODES:
        raise ValueError(f"fuse must be True, False, 'all', 'producer' or 'consumer', not {fuse!r}")
    graph.check()
    if scheme.loss not in ("ce", "mse"):
        raise ValueError(f"loss must be 'ce' or 'mse', not {scheme.loss!r}")
    for name in list(scheme.bias) + list(scheme.weights):
        layer = graph.layer(name)
        if not layer.has_params:
            raise ValueError(f"layer {name} ({layer.kind}) has no parameters to train")

    # Which tensors need a gradient: those downstream of a trained parameter.
    n_train = {layer.name: scheme.n_train(layer) for layer in graph.param_layers}
    trained = {n for n, k in n_train.items() if k} | set(scheme.bias)
    if not trained:
        raise ValueError("the scheme trains nothing: give biases or weights to train")
    needs_grad: set[str] = set()
    for layer in graph.layers:
        if layer.name in trained or any(i in needs_grad for i in layer.inputs):
            needs_grad.add(layer.output)
    if graph.output not in needs_grad:
        raise ValueError("no trained layer lies on the path to the output")

    layer_index = {layer.name: i for i, layer in enumerate(graph.layers)}
    logits = graph.tensors[graph.output]

    def schedule(fusions: dict) -> tuple:
        """Tensor records, ops and lifetimes for a choice of fusions."""
        # Tensor records for activations, in order of production.
        tensors: list[PlannedTensor] = []
        act_id: dict[str, int] = {}

        def new_tensor(name: str, kind: int, shape: tuple, scale=0.0, zero=0, flags=0) -> int:
            h, w, c = shape
            n = h * w * c
            size = {mf.T_ACT: n, mf.T_SAVED: n, mf.T_GRAD: 4 + 4 * n, mf.T_MASK: (n + 7) // 8}[kind]
            tensors.append(PlannedTensor(name, mf.TensorRec(0, size, kind, flags, h, w, c, float(scale),
                                                            int(zero), name)))
            return len(tensors) - 1

        def act(name: str) -> int:
            if name not in act_id:
                t = graph.tensors[name]
                act_id[name] = new_tensor(name, mf.T_ACT, t.shape, t.scale, t.zero,
                                          mf.TF_EXTERNAL if name == graph.input else 0)
            return act_id[name]

        act(graph.input)
        for layer in graph.layers:
            for name in layer.inputs:
                act(name)
            act(layer.output)

        ops: list[mf.OpRec] = []
        op_names: list[str] = []
        mask_of: dict[str, int] = {}
        saved_of: dict[str, int] = {}
        fused_into = {x.name: b for b, ac in fusions.items() for x in ac if x is not None}
        for layer in graph.layers:
            if layer.name in fused_into:
                continue  # runs inside the fused op of its depthwise layer
            t = [mf.NONE] * mf.OP_SLOTS
            if layer.name in fusions:
                a, c = fusions[layer.name]
                last = c or layer
                if a is not None:
                    x = graph.tensors[layer.inputs[0]]
                    t[mf.FUSED_A] = layer_index[a.name]
                    t[mf.FUSED_RING] = new_tensor(f"{layer.name}.ring", mf.T_ACT,
                                                  (layer.kernel[0],) + x.shape[1:], x.scale, x.zero)
                if c is not None:
                    y = graph.tensors[layer.output]
                    t[mf.FUSED_C] = layer_index[c.name]
                    t[mf.FUSED_ROW] = new_tensor(f"{layer.name}.row", mf.T_ACT, (1,) + y.shape[1:],
                                                 y.scale, y.zero)
                streamed = ([layer.inputs[0]] if a is not None else []) + ([layer.output] if c is not None else [])
                for name in streamed:
                    rec = tensors[act_id[name]].rec
                    rec.flags, rec.arena_off = mf.TF_STREAMED, mf.NO_OFFSET
                if last.output in needs_grad and last.output != graph.output:
                    t[mf.FUSED_MASK] = mask_of[last.name] = new_tensor(f"{last.name}.mask", mf.T_MASK,
                                                                       graph.tensors[last.output].shape)
                ops.append(mf.OpRec(mf.OP_FWD_FUSED, layer_index[layer.name], t))
                op_names.append("forward " + "+".join(x.name for x in (a, layer, c) if x is not None))
                continue
            # The logits get no clamp mask: a logit stuck at the int8 limit must
            # still be pushed back by the loss (straight-through at saturation).
            if layer.output in needs_grad and layer.output != graph.output:
                t[mf.FWD_MASK] = mask_of[layer.name] = new_tensor(f"{layer.name}.mask", mf.T_MASK,
                                                                  graph.tensors[layer.output].shape)
            if n_train.get(layer.name):
                x = graph.tensors[layer.inputs[0]]
                t[mf.FWD_SAVED] = saved_of[layer.name] = new_tensor(f"{layer.name}.saved_input", mf.T_SAVED,
                                                                   (x.shape[0], x.shape[1], n_train[layer.name]),
                                                                   x.scale, x.zero)
            ops.append(mf.OpRec(mf.OP_FWD, layer_index[layer.name], t))
            op_names.append(f"forward {layer.name}")
        n_fwd = len(ops)

        grad_of: dict[str, int] = {}
        grad_of[graph.output] = new_tensor(f"d{graph.output}", mf.T_GRAD, logits.shape)
        ops.append(mf.OpRec.with_slots(mf.OP_LOSS, mf.NONE, {mf.LOSS_LOGITS: act_id[graph.output],
                                                              mf.LOSS_GRAD: grad_of[graph.output]}))
        op_names.append("loss")
        needs_input_grad: set[str] = set()
        for layer in reversed(graph.layers):
            if layer.output not in needs_grad:
                continue
            if layer.output not in grad_of:
                raise ValueError(f"layer {layer.name} does not reach the output")
            t = [mf.NONE] * mf.OP_SLOTS
            t[mf.BWD_OUT_GRAD] = grad_of[layer.output]
            t[mf.BWD_MASK] = mask_of.get(layer.name, mf.NONE)
            t[mf.BWD_SAVED] = saved_of.get(layer.name, mf.NONE)
            sums = []
            for slot, name in zip((mf.BWD_IN_GRAD, mf.BWD_IN2_GRAD), layer.inputs):
                if name not in needs_grad:
                    continue
                needs_input_grad.add(layer.name)
                if name not in grad_of and layer.kind == "add" and slot == mf.BWD_IN_GRAD:
                    # the add passes its gradient through in place
                    grad_of[name] = t[mf.BWD_IN_GRAD] = t[mf.BWD_OUT_GRAD]
                elif name not in grad_of:
                    grad_of[name] = t[slot] = new_tensor(f"d{name}", mf.T_GRAD, graph.tensors[name].shape)
                else:
                    t[slot] = new_tensor(f"d{name}.part", mf.T_GRAD, graph.tensors[name].shape)
                    sums.append((grad_of[name], t[slot]))
            ops.append(mf.OpRec(mf.OP_BWD, layer_index[layer.name], t))
            op_names.append(f"backward {layer.name}")
            for a, b in sums:
                ops.append(mf.OpRec.with_slots(mf.OP_GRAD_ADD, mf.NONE, {mf.GRAD_ADD_SUM: a, mf.GRAD_ADD_PART: b}))
                op_names.append(f"sum gradient {tensors[a].name}")

        # Lifetimes: a tensor lives from the first op touching it to the last.
        for i, op in enumerate(ops):
            touched = list(op.t)
            if op.kind == mf.OP_FWD_FUSED:
                b = graph.layers[op.layer]
                a, c = fusions[b.name]
                touched = [op.t[mf.FUSED_RING], op.t[mf.FUSED_ROW], op.t[mf.FUSED_MASK],
                           act_id[(a or b).inputs[0]], act_id[(c or b).output]]
            elif op.kind == mf.OP_FWD:
                layer = graph.layers[op.layer]
                touched += [act_id[n] for n in layer.inputs] + [act_id[layer.output]]
            for tid in touched:
                if tid != mf.NONE:
                    tensors[tid].touch(i)
        return tensors, act_id, ops, op_names, n_fwd, needs_input_grad

    def place(tensors: list, persist: int, n_ops: int) -> tuple:
        """Arena placement: first fit over (lifetime x size), largest first."""
        placed: list[PlannedTensor] = []
        work_end = 0
        no_storage = mf.TF_EXTERNAL | mf.TF_STREAMED
        for t in sorted((t for t in tensors if not t.rec.flags & no_storage),
                        key=lambda t: (-t.rec.size, t.first)):
            clashes = sorted((p for p in placed if not reuse_memory or (p.first <= t.last and t.first <= p.last)),
                             key=lambda p: p.rec.arena_off)
            off = _align(persist)
            for p in clashes:
                if off + t.rec.size <= p.rec.arena_off:
                    break
                off = max(off, _align(p.rec.arena_off + p.rec.size))
            t.rec.arena_off = off
            work_end = max(work_end, t.rec.arena_off + t.rec.size)
            placed.append(t)
        arena_size = _align(max(work_end, persist))
        live = [persist + sum(t.rec.size for t in tensors
                              if t.first <= i <= t.last and not t.rec.flags & no_storage)
                for i in range(n_ops)]
        return arena_size, live

    fusions = find_fusions(graph, needs_grad, n_train, "all" if fuse is True else fuse)
    tensors, act_id, ops, op_names, n_fwd, needs_input_grad = schedule(fusions)

    # Persistent area: the trained parameters, laid out layer by layer.
    blob = mf.Blob()
    layer_recs = []
    persist = 0

    def take(nbytes: int) -> int:
        nonlocal persist
        off = persist
        persist += _align(nbytes)
        return off

    trained_params = 0
    for layer in graph.layers:
        x = graph.tensors[layer.inputs[0]]
        y = graph.tensors[layer.output]
        rec = mf.LayerRec(kind={"conv": mf.L_CONV, "dwconv": mf.L_DWCONV, "add": mf.L_ADD,
                                "avgpool": mf.L_AVGPOOL}[layer.kind],
                          inp=act_id[layer.inputs[0]], out=act_id[layer.output],
                          act_min=layer.act_min, act_max=layer.act_max, name=layer.name,
                          stride=layer.stride)
        if layer.kind == "add":
            a, b = (graph.tensors[n] for n in layer.inputs)
            rec.in2 = act_id[layer.inputs[1]]
            rec.mult_a, rec.mult_b, rec.shift = add_multipliers(a.scale / y.scale, b.scale / y.scale)
        elif layer.kind == "avgpool":
            rec.mult_a, rec.shift = quantize_multiplier(x.scale / (x.shape[0] * x.shape[1] * y.scale))
        else:
            kh, kw = layer.kernel
            rec.kh, rec.kw = kh, kw
            rec.pad_top, rec.pad_left = layer.pad
            cout = layer.weight.shape[0]
            nt = n_train.get(layer.name, 0)
            w = layer.weight
            if nt:
                perm = choose_channels(layer, nt)
                w = w[:, :, :, perm] if layer.kind == "conv" else w[perm]
                rec.perm_off = blob.add(perm, 2)
                rec.n_train = nt
                n_w = nt * kh * kw * (cout if layer.kind == "conv" else 1)
                rec.w_arena = take(n_w)
                if scheme.residue:
                    rec.flags |= mf.LF_RESIDUE
                    rec.wres_arena = take(n_w)
                trained_params += n_w
            rec.w_off = blob.add(np.ascontiguousarray(w, dtype=np.int8), 1)
            rec.b_off = blob.add(layer.bias.astype(np.int32))
            mult, shift = _requant_arrays(layer, x.scale, y.scale)
            rec.mult_off = blob.add(mult)
            rec.shift_off = blob.add(shift, 1)
            sw = layer.w_scale.astype(np.float64)
            rec.wscale_off = blob.add(layer.w_scale.astype(np.float32))
            swmax = float(sw.max()) if sw.max() > 0 else 1.0
            if layer.name in needs_input_grad:
                rec.gscale_off = blob.add(np.minimum(np.round(sw / swmax * 2.0 ** 31),
                                                     2 ** 31 - 1).astype(np.int32))
                rec.wscale_max = swmax
            sw_guarded = np.maximum(sw, QAS_DEAD_CHANNEL_FLOOR * swmax)
            if nt and layer.name in needs_input_grad:
                # The update reads the gradient after the input-gradient prescale,
                # which multiplied channel c by s_w[c] / max(s_w): divide it out.
                qw = x.scale / (np.maximum(sw, 1e-30) * sw_guarded) if scheme.qas else \
                    np.full_like(sw, x.scale)
                rec.qas_w_off = blob.add(qw.astype(np.float32))
            elif nt:
                qw = x.scale / sw_guarded if scheme.qas else x.scale * sw
                rec.qas_w_off = blob.add(qw.astype(np.float32))
            if layer.name in scheme.bias:
                rec.flags |= mf.LF_TRAIN_BIAS
                rec.b_arena = take(4 * cout)
                qb = 1.0 / (sw_guarded * x.scale) if scheme.qas else sw * x.scale
                rec.qas_b_off = blob.add(qb.astype(np.float32))
                trained_params += cout
            rec.lr_scale = float(scheme.lr_scale.get(layer.name, 1.0))
        layer_recs.append(rec)

    exp_off = mf.NO_OFFSET
    if scheme.loss == "ce":
        exp_off = blob.add(softmax_table(logits.scale))

    arena_size, live = place(tensors, persist, len(ops))
    if fuse is True:  # undo the fusions the arena does not need, late layers first
        for name in reversed(list(fusions)):
            a, c = fusions[name]
            for keep in [(None, None)] + ([(a, None), (None, c)] if a and c else []):
                trial = {k: (keep if k == name else v) for k, v in fusions.items()}
                if keep == (None, None):
                    del trial[name]
                sched = schedule(trial)
                size, trial_live = place(sched[0], persist, len(sched[2]))
                if size <= arena_size:
                    fusions, arena_size, live = trial, size, trial_live
                    tensors, act_id, ops, op_names, n_fwd, needs_input_grad = sched
                    break

    header = mf.Header(n_fwd_ops=n_fwd, arena_size=arena_size, persist_size=persist,
                       input_tensor=act_id[graph.input], logits_tensor=act_id[graph.output],
                       n_classes=logits.numel, loss_kind=mf.LOSS_MSE if scheme.loss == "mse" else
                       mf.LOSS_SOFTMAX_CE, lr=float(scheme.lr), exp_table_off=exp_off)
    model = mf.Model(header, [t.rec for t in tensors], layer_recs, ops, bytes(blob.data))
    data = model.pack()
    fused = {b: tuple(x.name if x is not None else None for x in ac) for b, ac in fusions.items()}
    return Plan(data, model, tensors, op_names, persist, arena_size, live, trained_params, fused)


def graph_from_model(data: bytes) -> QGraph:
    """The quantised graph inside a model file (weights back in natural channel
    order), so any model file can be planned again with another scheme."""
    from .graph import QTensor

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
    kinds = {mf.L_CONV: "conv", mf.L_DWCONV: "dwconv", mf.L_ADD: "add", mf.L_AVGPOOL: "avgpool"}
    for i, L in enumerate(m.layers):
        kind = kinds[L.kind]
        x, y = m.tensors[L.inp], m.tensors[L.out]
        inputs = [names[L.inp]] + ([names[L.in2]] if L.kind == mf.L_ADD else [])
        layer = QLayer(f"{kind}{i}", kind, inputs, names[L.out], stride=L.stride,
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
        layers.append(layer)
    g = QGraph(tensors, layers, "input", names[m.header.logits_tensor])
    g.check()
    return g
