"""The ops of one training step, their tensors and each tensor's lifetime.

Autodiff with pruning: only tensors downstream of a trained parameter get a
gradient, and only layers whose input needs one propagate it. Each layer's
update is fused into its backward op, so no weight gradient is ever stored.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import modelfile as mf
from ..graph import QGraph, QLayer
from .scheme import Scheme


# Layers whose backward reads their input (the saved copy): the max pool's
# argmax, the table's derivative.
SAVES_INPUT = ("maxpool", "lut")
# Layers whose output is an int8 value before any clamp: no mask when the
# clamp is the full int8 range.
INT8_EXACT = ("maxpool", "lut")


@dataclass
class GradientNeeds:
    """What the scheme asks of autodiff."""

    n_train: dict           # layer with parameters -> trained channels (0: frozen weights)
    needs_grad: set         # tensors downstream of a trained parameter
    needs_input_grad: set   # layers passing a gradient on to an input


def gradient_needs(graph: QGraph, scheme: Scheme) -> GradientNeeds:
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
    needs_input_grad = {layer.name for layer in graph.layers
                        if any(i in needs_grad for i in layer.inputs)}
    return GradientNeeds(n_train, needs_grad, needs_input_grad)


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
class Schedule:
    tensors: list       # PlannedTensor, record index = tensor id
    act_id: dict        # activation name -> tensor id
    ops: list           # mf.OpRec: forward ops, loss, backward ops
    op_names: list
    n_fwd: int          # forward ops come first


def tensor_bytes(kind: int, n: int) -> int:
    """Storage of a tensor of n elements: int8 activations, a float32 scale
    and int16 values for a gradient, one bit per element for a clamp mask."""
    return {mf.T_ACT: n, mf.T_SAVED: n, mf.T_GRAD: 4 + 2 * n, mf.T_MASK: (n + 7) // 8}[kind]


def schedule(graph: QGraph, needs: GradientNeeds, fusions: dict) -> Schedule:
    """Tensor records, ops and lifetimes for a choice of fusions (see fuse.py)."""
    s = _Scheduler(graph, needs, fusions)
    s.add_activations()
    s.add_forward()
    n_fwd = len(s.ops)
    s.add_loss()
    s.add_backward()
    s.set_lifetimes()
    return Schedule(s.tensors, s.act_id, s.ops, s.op_names, n_fwd)


class _Scheduler:
    def __init__(self, graph: QGraph, needs: GradientNeeds, fusions: dict):
        self.graph, self.needs, self.fusions = graph, needs, fusions
        self.layer_index = {layer.name: i for i, layer in enumerate(graph.layers)}
        self.tensors: list[PlannedTensor] = []
        self.act_id: dict[str, int] = {}
        self.ops: list[mf.OpRec] = []
        self.op_names: list[str] = []
        self.mask_of: dict[str, int] = {}
        self.saved_of: dict[str, int] = {}
        self.grad_of: dict[str, int] = {}

    def new_tensor(self, name: str, kind: int, shape: tuple, scale=0.0, zero=0, flags=0) -> int:
        h, w, c = shape
        size = tensor_bytes(kind, h * w * c)
        self.tensors.append(PlannedTensor(name, mf.TensorRec(0, size, kind, flags, h, w, c, float(scale),
                                                             int(zero), name)))
        return len(self.tensors) - 1

    def add_op(self, kind: int, layer: int, t: list, name: str) -> None:
        self.ops.append(mf.OpRec(kind, layer, t))
        self.op_names.append(name)

    # Activations: one record each, in order of production.
    def activation(self, name: str) -> int:
        if name not in self.act_id:
            t = self.graph.tensors[name]
            self.act_id[name] = self.new_tensor(name, mf.T_ACT, t.shape, t.scale, t.zero)
        return self.act_id[name]

    def add_activations(self) -> None:
        self.activation(self.graph.input)
        for layer in self.graph.layers:
            for name in layer.inputs:
                self.activation(name)
            self.activation(layer.output)

    # Forward.
    def add_forward(self) -> None:
        fused_into = {x.name for ac in self.fusions.values() for x in ac if x is not None}
        for layer in self.graph.layers:
            if layer.name in fused_into:
                continue  # runs inside the fused op of its depthwise layer
            if layer.name in self.fusions:
                self.add_fused_forward(layer)
            else:
                self.add_layer_forward(layer)

    def clamp_mask(self, layer: QLayer) -> int:
        """The mask of where the layer's output clamped, if its gradient is
        needed. The logits get none: a logit stuck at the int8 limit must
        still be pushed back by the loss (straight-through at saturation)."""
        if layer.output not in self.needs.needs_grad or layer.output == self.graph.output:
            return mf.NONE
        if layer.kind in INT8_EXACT and (layer.act_min, layer.act_max) == (-128, 127):
            return mf.NONE  # an int8 value itself: the full-range clamp never acts
        self.mask_of[layer.name] = self.new_tensor(f"{layer.name}.mask", mf.T_MASK,
                                                   self.graph.tensors[layer.output].shape)
        return self.mask_of[layer.name]

    def saved_input(self, layer: QLayer) -> int:
        """The trained input channels, kept for the weight update; the whole
        input of a max pool or a table whose input gradient is needed."""
        if layer.kind in SAVES_INPUT:
            if layer.name not in self.needs.needs_input_grad:
                return mf.NONE
            x = self.graph.tensors[layer.inputs[0]]
            self.saved_of[layer.name] = self.new_tensor(f"{layer.name}.saved_input", mf.T_SAVED, x.shape,
                                                        x.scale, x.zero)
            return self.saved_of[layer.name]
        nt = self.needs.n_train.get(layer.name)
        if not nt:
            return mf.NONE
        x = self.graph.tensors[layer.inputs[0]]
        self.saved_of[layer.name] = self.new_tensor(f"{layer.name}.saved_input", mf.T_SAVED,
                                                    (x.shape[0], x.shape[1], nt), x.scale, x.zero)
        return self.saved_of[layer.name]

    def add_layer_forward(self, layer: QLayer) -> None:
        t = [mf.NONE] * mf.OP_SLOTS
        t[mf.FWD_MASK] = self.clamp_mask(layer)
        t[mf.FWD_SAVED] = self.saved_input(layer)
        self.add_op(mf.OP_FWD, self.layer_index[layer.name], t, f"forward {layer.name}")

    def stream(self, name: str) -> None:
        """The activation passes row by row inside a fused op: no storage."""
        rec = self.tensors[self.act_id[name]].rec
        rec.flags, rec.arena_off = mf.TF_STREAMED, mf.NO_OFFSET

    def add_fused_forward(self, b: QLayer) -> None:
        """Depthwise layer b with its producer a (through a ring of kernel-height
        input rows) and/or its 1x1 consumer c (through one output row)."""
        a, c = self.fusions[b.name]
        t = [mf.NONE] * mf.OP_SLOTS
        if a is not None:
            x = self.graph.tensors[b.inputs[0]]
            t[mf.FUSED_A] = self.layer_index[a.name]
            t[mf.FUSED_RING] = self.new_tensor(f"{b.name}.ring", mf.T_ACT, (b.kernel[0],) + x.shape[1:],
                                               x.scale, x.zero)
            self.stream(b.inputs[0])
        if c is not None:
            y = self.graph.tensors[b.output]
            t[mf.FUSED_C] = self.layer_index[c.name]
            t[mf.FUSED_ROW] = self.new_tensor(f"{b.name}.row", mf.T_ACT, (1,) + y.shape[1:], y.scale, y.zero)
            self.stream(b.output)
        t[mf.FUSED_MASK] = self.clamp_mask(c or b)
        self.add_op(mf.OP_FWD_FUSED, self.layer_index[b.name], t,
                    "forward " + "+".join(x.name for x in (a, b, c) if x is not None))

    # Loss and backward.
    def add_loss(self) -> None:
        out = self.graph.output
        self.grad_of[out] = self.new_tensor(f"d{out}", mf.T_GRAD, self.graph.tensors[out].shape)
        self.add_op(mf.OP_LOSS, mf.NONE, mf.slots_list({mf.LOSS_LOGITS: self.act_id[out], mf.LOSS_GRAD: self.grad_of[out]}), "loss")

    def add_backward(self) -> None:
        for layer in reversed(self.graph.layers):
            if layer.output in self.needs.needs_grad:
                self.add_layer_backward(layer)

    def add_layer_backward(self, layer: QLayer) -> None:
        if layer.output not in self.grad_of:
            raise ValueError(f"layer {layer.name} does not reach the output")
        t = [mf.NONE] * mf.OP_SLOTS
        t[mf.BWD_OUT_GRAD] = self.grad_of[layer.output]
        t[mf.BWD_MASK] = self.mask_of.get(layer.name, mf.NONE)
        t[mf.BWD_SAVED] = self.saved_of.get(layer.name, mf.NONE)
        sums = []
        for slot, name in zip((mf.BWD_IN_GRAD, mf.BWD_IN2_GRAD), layer.inputs):
            if name not in self.needs.needs_grad:
                continue
            shape = self.graph.tensors[name].shape
            if name not in self.grad_of and layer.kind == "add" and slot == mf.BWD_IN_GRAD:
                # the add passes its gradient through in place
                self.grad_of[name] = t[mf.BWD_IN_GRAD] = t[mf.BWD_OUT_GRAD]
            elif name not in self.grad_of:
                self.grad_of[name] = t[slot] = self.new_tensor(f"d{name}", mf.T_GRAD, shape)
            else:  # a second consumer: its part is summed into the first one's gradient
                t[slot] = self.new_tensor(f"d{name}.part", mf.T_GRAD, shape)
                sums.append((self.grad_of[name], t[slot]))
        self.add_op(mf.OP_BWD, self.layer_index[layer.name], t, f"backward {layer.name}")
        for total, part in sums:
            self.add_op(mf.OP_GRAD_ADD, mf.NONE, mf.slots_list({mf.GRAD_ADD_SUM: total, mf.GRAD_ADD_PART: part}),
                        f"sum gradient {self.tensors[total].name}")

    # Lifetimes: a tensor lives from the first op touching it to the last.
    # The input is an arena tensor like any other: the caller fills it
    # before op 0 and its bytes serve others after its last reader.
    def touched(self, op: mf.OpRec) -> list:
        if op.kind == mf.OP_FWD_FUSED:
            b = self.graph.layers[op.layer]
            a, c = self.fusions[b.name]
            return [op.t[mf.FUSED_RING], op.t[mf.FUSED_ROW], op.t[mf.FUSED_MASK],
                    self.act_id[(a or b).inputs[0]], self.act_id[(c or b).output]]
        if op.kind == mf.OP_FWD:
            layer = self.graph.layers[op.layer]
            return list(op.t) + [self.act_id[n] for n in layer.inputs] + [self.act_id[layer.output]]
        return list(op.t)

    def set_lifetimes(self) -> None:
        for i, op in enumerate(self.ops):
            for tid in self.touched(op):
                if tid != mf.NONE:
                    self.tensors[tid].touch(i)
