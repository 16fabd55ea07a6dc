"""Float ONNX models into int8 QGraphs, calibrated with the user's inputs.

    from tinytrain.convert import onnx as tto
    graph = tto.load("model.onnx", calib)        # calib: float inputs in the model's layout, (N, C, H, W)
    x8 = quantize_input(graph, tto.to_nhwc(x))     # the int8 the converted model takes (NHWC)

The model becomes a float `NetBuilder` graph (`to_builder`; weights NCHW/OIHW
moved to NHWC, batch norms folded, ReLU/ReLU6 folded into the layer before
them) and is quantised by `NetBuilder.quantize`: int8 weights symmetric per
output channel, int8 activations asymmetric per tensor from the calibration
inputs, int32 biases. Everything that cannot be converted is reported at
once, in one ValueError naming each node.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import activations
from ..builder import FloatLayer, NetBuilder, conv_forward
from ..graph import QGraph
from .head import replace_head

SUPPORTED_HELP = """\
ONNX (float; needs --calib): Conv (also depthwise: group == channels), Gemm,
MatMul (+ Add: bias), Relu, Clip [0, 6] (ReLU6), Add (residual),
MaxPool and AveragePool (kernel, strides, pads; not ceil_mode or dilations),
Sigmoid, Tanh, HardSwish, LeakyRelu (int8 tables), GlobalAveragePool, ReduceMean over H, W, Flatten/Reshape/Squeeze/Unsqueeze
(no reordering; NCHW flatten order handled), BatchNormalization after a conv
or fc (folded), Identity, Dropout, Constant, Shape/Gather/Concat/Cast on
constants (as in x.view(x.size(0), -1)), a final Softmax (dropped: the model
trains on logits). 1-D (N, C, L) and 2-D (N, C, H, W) inputs."""

_PASS = ("Identity", "Dropout", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Softmax", "LogSoftmax")


class _Unsupported(Exception):
    """This node cannot be converted; the message says why."""


class _Unknown(Exception):
    """An input of this node comes from a node that could not be converted."""


_UNKNOWN = object()


@dataclass
class _Act:
    """A run-time tensor: the builder tensor (h, w, c) it lives in, seen by
    ONNX with `shape` (without the batch dimension): (C, H, W) <-> (H, W, C),
    (C, L) <-> (1, L, C), (K,) <-> any (h, w, c) with K = h*w*c. Every view
    enumerates the elements in (c, h, w) order, so a reshape never moves data;
    it only changes how the next operator reads it."""
    tensor: str
    shape: tuple


def _builder_shape(view: tuple):
    if len(view) == 3:
        c, h, w = view
        return (h, w, c)
    if len(view) == 2:
        c, length = view
        return (1, length, c)
    return None


class OnnxNet(NetBuilder):
    """The float graph of an ONNX model. Like NetBuilder, but a conv's
    bottom/right padding is ONNX's (`pads4[name]` = top, left, bottom,
    right), so output sizes are what ONNX computes; `forward` honours it."""

    def __init__(self, input_shape, input_name: str, input_view: tuple):
        super().__init__(input_shape)
        self.input_name = input_name
        self.input_view = tuple(input_view)  # the ONNX input shape without the batch dimension
        self.pads4: dict = {}

    def layer(self, name, kind, inputs, out_shape, pads4=(0, 0, 0, 0), **kw) -> FloatLayer:
        layer = FloatLayer(name, kind, list(inputs), name, pad=tuple(pads4[:2]), **kw)
        self.layers.append(layer)
        self.shapes[name] = tuple(int(v) for v in out_shape)
        self.pads4[name] = tuple(pads4)
        self.last = name
        return layer

    def forward(self, x) -> dict:
        return super().forward(np.asarray(x, dtype=np.float64).reshape((-1,) + self.input_shape))

    def conv_layer_forward(self, L, x) -> np.ndarray:
        # ONNX pads all four sides: bottom/right padding changes the output size
        t, left, b, r = self.pads4[L.name]
        xp = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)))
        return conv_forward(xp, L.weight, L.bias, L.stride, (0, 0), L.kind == "dwconv")

    def logits(self, x) -> np.ndarray:
        """Float outputs (N, classes) for inputs in the ONNX layout."""
        out = self.forward(to_nhwc(x))[self.last]
        return out.reshape(len(out), -1)


def to_nhwc(x) -> np.ndarray:
    """A batch of inputs in the ONNX layout, (N, C, H, W), (N, C, L) or (N, F),
    in the model's NHWC layout: (N, H, W, C), (N, 1, L, C), (N, 1, 1, F)."""
    x = np.asarray(x)
    if x.ndim == 4:
        return x.transpose(0, 2, 3, 1)
    if x.ndim == 3:
        return x.transpose(0, 2, 1)[:, None]
    if x.ndim == 2:
        return x[:, None, None, :]
    raise ValueError(f"inputs of shape {x.shape}: expected (N, C, H, W), (N, C, L) or (N, F)")


def _attrs(node) -> dict:
    import onnx
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _dims(v) -> tuple:
    return tuple(int(d) for d in v)


class _Converter:
    def __init__(self, model):
        import onnx
        from onnx import numpy_helper
        self.onnx, self.numpy_helper = onnx, numpy_helper
        g = model.graph
        self.values: dict = {}
        for init in g.initializer:
            self.values[init.name] = numpy_helper.to_array(init)
        inputs = [i for i in g.input if i.name not in self.values]
        if len(inputs) != 1:
            raise ValueError(f"tinytrain converts models with one input; this one has {len(inputs)}"
                             f"{': ' + ', '.join(i.name for i in inputs) if inputs else ''}")
        if len(g.output) != 1:
            raise ValueError(f"tinytrain converts models with one output; this one has {len(g.output)}")
        inp = inputs[0]
        tt = inp.type.tensor_type
        if tt.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
            raise ValueError(f"input {inp.name!r} is of type "
                             f"{onnx.TensorProto.DataType.Name(tt.elem_type)}; a float model is needed")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        view = tuple(dims[1:])
        if len(dims) not in (2, 3, 4) or any(d is None or d < 1 for d in view):
            shown = "x".join("?" if d is None else str(d) for d in dims)
            raise ValueError(f"input {inp.name!r} has shape {shown}: a fixed (N, C, H, W), (N, C, L) "
                             "or (N, F) shape is needed")
        shape = _builder_shape(view) or (1, 1, view[0])
        self.net = OnnxNet(shape, inp.name, view)
        self.values[inp.name] = _Act("input", view)
        self.output = g.output[0].name
        # Only nodes the output depends on; how often each value is read.
        needed, self.nodes = {self.output}, []
        for node in reversed(g.node):
            if any(o in needed for o in node.output):
                self.nodes.append(node)
                needed.update(i for i in node.input if i)
        self.nodes.reverse()
        self.uses: dict = {self.output: 1}
        for node in self.nodes:
            for i in node.input:
                if i:
                    self.uses[i] = self.uses.get(i, 0) + 1
        self.readers = {"input": self.uses.get(inp.name, 0)}  # builder tensor -> ONNX readers
        self.producer: dict = {}
        self.names: set = {"input"}

    # -- values ----------------------------------------------------------
    def _get(self, name):
        if name not in self.values:
            raise _Unsupported(f"input {name!r} is not defined")
        v = self.values[name]
        if v is _UNKNOWN:
            raise _Unknown()
        return v

    def act(self, node, i=0) -> _Act:
        v = self._get(node.input[i])
        if not isinstance(v, _Act):
            raise _Unsupported(f"input {node.input[i]!r} is a constant; a computed tensor is expected")
        return v

    def const(self, node, i, what) -> np.ndarray | None:
        if len(node.input) <= i or not node.input[i]:
            return None
        v = self._get(node.input[i])
        if isinstance(v, _Act):
            raise _Unsupported(f"{what} {node.input[i]!r} is not a constant")
        return v

    def _name(self, node, kind) -> str:
        name = node.name or f"{kind}{len(self.net.layers)}"
        base, k = name, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def new_layer(self, node, kind, inputs, out_shape, view, **kw) -> None:
        name = self._name(node, kind)
        layer = self.net.layer(name, kind, [a.tensor for a in inputs], out_shape, **kw)
        self.producer[name] = layer
        self.readers[name] = self.uses.get(node.output[0], 0)
        self.values[node.output[0]] = _Act(name, tuple(view))

    def alias(self, node, value) -> None:
        """The node's output is its input seen another way (no computation)."""
        if isinstance(value, _Act):
            self.readers[value.tensor] += self.uses.get(node.output[0], 0) - 1
        self.values[node.output[0]] = value

    def foldable(self, a: _Act, kinds=("conv", "dwconv")):
        """The layer producing a, when this node is its only reader and it has no activation yet."""
        layer = self.producer.get(a.tensor)
        if layer is None or layer.kind not in kinds or layer.act is not None or self.readers[a.tensor] != 1:
            return None
        return layer

    def folded(self, node, a: _Act) -> None:
        self.readers[a.tensor] = self.uses.get(node.output[0], 0)
        self.values[node.output[0]] = a

    # -- the graph -------------------------------------------------------
    def run(self) -> OnnxNet:
        problems = []
        for node in self.nodes:
            try:
                handler = getattr(self, "op_" + node.op_type, None)
                if node.domain not in ("", "ai.onnx") or handler is None:
                    raise _Unsupported("op not supported")
                handler(node, _attrs(node))
            except _Unsupported as e:
                problems.append(f"{node.op_type} '{node.name or node.output[0]}' ({e})")
                for o in node.output:
                    self.values[o] = _UNKNOWN
            except _Unknown:
                for o in node.output:
                    self.values[o] = _UNKNOWN
            except (ValueError, TypeError, IndexError, KeyError) as e:  # malformed attributes or constants
                problems.append(f"{node.op_type} '{node.name or node.output[0]}' (malformed: {e})")
                for o in node.output:
                    self.values[o] = _UNKNOWN
        if problems:
            n = len(problems)
            raise ValueError(f"{n} unsupported node{'s' if n > 1 else ''}: " + ", ".join(problems))
        out = self.values.get(self.output)
        if not isinstance(out, _Act) or out.tensor == "input" or out.tensor != self.net.last:
            raise ValueError(f"output {self.output!r} is not computed by the last converted layer")
        h, w, c = self.net.shapes[out.tensor]
        if (h, w) != (1, 1):
            raise ValueError(f"output {self.output!r} has shape {out.shape}: tinytrain models end in a "
                             "vector of class scores")
        return self.net

    # -- operators -------------------------------------------------------
    def op_Constant(self, node, at):
        if "value" in at:
            v = self.numpy_helper.to_array(at["value"])
        else:
            keys = [k for k in ("value_float", "value_floats", "value_int", "value_ints") if k in at]
            if not keys:
                raise _Unsupported(f"constant of kind {', '.join(at) or 'none'}")
            v = np.array(at[keys[0]])
        self.values[node.output[0]] = v

    # shape arithmetic on constants, e.g. torch's x.view(x.size(0), -1):
    # Shape -> Gather -> Unsqueeze -> Concat -> Reshape (the batch counts as 1)
    def op_Shape(self, node, at):
        shape = self._full_shape(self._get(node.input[0]))
        start, end = at.get("start", 0), at.get("end")
        self.values[node.output[0]] = np.array(shape[start:end], dtype=np.int64)

    def _constants(self, node):
        vals = [self._get(i) for i in node.input if i]
        if any(isinstance(v, _Act) for v in vals):
            raise _Unsupported("only on constants")
        return vals

    def op_Gather(self, node, at):
        data, idx = self._constants(node)
        self.values[node.output[0]] = np.take(data, idx, axis=int(at.get("axis", 0)))

    def op_Concat(self, node, at):
        self.values[node.output[0]] = np.concatenate([np.atleast_1d(v) for v in self._constants(node)],
                                                     axis=int(at["axis"]))

    def op_Cast(self, node, at):
        (v,) = self._constants(node)
        self.values[node.output[0]] = np.asarray(v).astype(self.onnx.helper.tensor_dtype_to_np_dtype(at["to"]))

    def op_Identity(self, node, at):
        self.alias(node, self._get(node.input[0]))

    def op_Dropout(self, node, at):
        if len(node.output) > 1 and node.output[1] and self.uses.get(node.output[1]):
            raise _Unsupported("its mask output is used")
        self.alias(node, self._get(node.input[0]))

    def op_Softmax(self, node, at):
        if node.output[0] != self.output:
            raise _Unsupported("only a final Softmax is dropped; this one is not the output")
        self.alias(node, self.act(node))

    op_LogSoftmax = op_Softmax

    def _view(self, node, v, target):
        """Reshape v (an _Act or a constant) to the full ONNX shape target."""
        if not isinstance(v, _Act):
            self.values[node.output[0]] = np.reshape(v, target)
            return
        if len(target) < 2 or target[0] != 1:
            raise _Unsupported(f"reshape to {tuple(target)} moves the batch dimension")
        view = tuple(target[1:])
        if int(np.prod(view)) != int(np.prod(v.shape)):
            raise _Unsupported(f"reshape of {v.shape} to {view} changes the size")
        if len(view) > 1 and _builder_shape(view) != self.net.shapes[v.tensor]:
            raise _Unsupported(f"reshape of (N, {', '.join(map(str, v.shape))}) to "
                               f"(N, {', '.join(map(str, view))}) reorders the data")
        self.alias(node, _Act(v.tensor, view))

    def _full_shape(self, v) -> tuple:
        return (1,) + v.shape if isinstance(v, _Act) else tuple(np.shape(v))

    def op_Flatten(self, node, at):
        axis = int(at.get("axis", 1))
        v = self._get(node.input[0])
        shape = self._full_shape(v)
        axis = axis + len(shape) if axis < 0 else axis
        if isinstance(v, _Act) and axis == 0:
            raise _Unsupported("axis 0 flattens the batch dimension")
        self._view(node, v, (int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))))

    def op_Reshape(self, node, at):
        target = self.const(node, 1, "shape")
        if target is None:
            raise _Unsupported("no target shape")
        v = self._get(node.input[0])
        shape = self._full_shape(v)
        out = [int(d) for d in np.asarray(target).reshape(-1)]
        if not at.get("allowzero", 0):
            out = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(out)]
        if out.count(-1) == 1:
            rest = int(np.prod([d for d in out if d != -1]))
            if rest < 1 or int(np.prod(shape)) % rest:
                raise _Unsupported(f"reshape of {shape} to {tuple(out)}")
            out[out.index(-1)] = int(np.prod(shape)) // rest
        if any(d < 1 for d in out):
            raise _Unsupported(f"reshape to {tuple(out)}")
        self._view(node, v, tuple(out))

    def _axes(self, node, at, rank):
        axes = at.get("axes")
        if axes is None:
            axes = self.const(node, 1, "axes")
        if axes is None:
            return None
        return sorted(int(a) + rank if int(a) < 0 else int(a) for a in np.asarray(axes).reshape(-1))

    def op_Squeeze(self, node, at):
        v = self._get(node.input[0])
        shape = self._full_shape(v)
        axes = self._axes(node, at, len(shape))
        if axes is None:
            axes = [i for i, d in enumerate(shape) if d == 1 and (i > 0 or not isinstance(v, _Act))]
        if any(shape[a] != 1 for a in axes):
            raise _Unsupported(f"squeeze of axes {axes} of a tensor shaped {shape}")
        self._view(node, v, tuple(d for i, d in enumerate(shape) if i not in axes))

    def op_Unsqueeze(self, node, at):
        v = self._get(node.input[0])
        shape = list(self._full_shape(v))
        raw = at.get("axes")
        if raw is None:
            raw = self.const(node, 1, "axes")
        if raw is None:
            raise _Unsupported("no axes")
        axes = self._axes(node, {"axes": raw}, len(shape) + int(np.size(raw)))
        for a in axes:
            shape.insert(a, 1)
        self._view(node, v, tuple(shape))

    def op_Conv(self, node, at):
        w = self.const(node, 1, "weight")
        if w is None:
            raise _Unsupported("no weight")
        w = np.asarray(w, dtype=np.float64)
        b = self.const(node, 2, "bias")
        if w.ndim not in (3, 4):
            raise _Unsupported(f"{w.ndim - 2}-D convolution")
        one_d = w.ndim == 3
        group = int(at.get("group", 1))
        cout, cin = w.shape[0], w.shape[1] * group
        if group == 1:
            kind = "conv"
        elif group == cin and w.shape[1] == 1:
            if cout != cin:
                raise _Unsupported(f"depthwise with {cout // cin} outputs per channel")
            kind = "dwconv"
        else:
            raise _Unsupported(f"group {group} of {cin} channels")
        dil = _dims(at.get("dilations", [1] * (w.ndim - 2)))
        if any(d != 1 for d in dil):
            raise _Unsupported(f"dilations {dil}")
        if "kernel_shape" in at and _dims(at["kernel_shape"]) != w.shape[2:]:
            raise _Unsupported(f"kernel_shape {_dims(at['kernel_shape'])} differs from the weights")
        if one_d:
            w = w[:, :, None, :]
        a = self.act(node)
        if len(a.shape) != (2 if one_d else 3):
            raise _Unsupported(f"a {'1' if one_d else '2'}-D convolution of an input shaped (N, {a.shape})")
        h, wd, c = self.net.shapes[a.tensor]
        if c != cin:
            raise _Unsupported(f"weights for {cin} input channels, input has {c}")
        stride, pads4, oh, ow = self._window(at, a, w.shape[2:], one_d)
        if kind == "dwconv":
            weight = w[:, 0]
        else:
            weight = w.transpose(0, 2, 3, 1)
        bias = np.zeros(cout) if b is None else np.asarray(b, dtype=np.float64).reshape(cout)
        view = (cout, ow) if one_d else (cout, oh, ow)
        self.new_layer(node, kind, [a], (oh, ow, cout), view, weight=np.ascontiguousarray(weight),
                       bias=bias.copy(), stride=stride, pads4=pads4)

    def _window(self, at, a: _Act, kernel, one_d) -> tuple:
        """(stride, pads (top, left, bottom, right), oh, ow) of a Conv's or a
        pool's kh x kw window over a, from strides, pads and auto_pad."""
        kh, kw = kernel
        strides = _dims(at.get("strides", [1] * (1 if one_d else 2)))
        pads = _dims(at.get("pads", [0] * (2 if one_d else 4)))
        auto = at.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if one_d:
            strides = (1,) + strides
            pads = (0, pads[0], 0, pads[1])
        h, wd, c = self.net.shapes[a.tensor]
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0, 0, 0, 0]
            for ax, (n, k, s) in enumerate(((h, kh, strides[0]), (wd, kw, strides[1]))):
                total = max((-(-n // s) - 1) * s + k - n, 0)
                lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
                pads[ax], pads[ax + 2] = lo, total - lo
        elif auto == "VALID":
            pads = [0, 0, 0, 0]
        elif auto != "NOTSET":
            raise _Unsupported(f"auto_pad {auto}")
        t, left, bot, r = pads
        shown = tuple(pads) if not one_d else (left, r)
        if min(pads) < 0:
            raise _Unsupported(f"negative pads {shown}")
        sh, sw = strides
        if sh == sw or (h == 1 and kh == 1 and t == bot == 0):
            stride = sw
        elif wd == 1 and kw == 1 and left == r == 0:
            stride = sh
        else:
            raise _Unsupported(f"strides {strides} differ")
        oh, ow = (h + t + bot - kh) // sh + 1, (wd + left + r - kw) // sw + 1
        if oh < 1 or ow < 1:
            raise _Unsupported(f"kernel {kh}x{kw} larger than the padded input {h}x{wd}")
        if t >= kh or left >= kw:
            raise _Unsupported(f"pads {shown}: top/left padding must be below the kernel size")
        if (oh - 1) * sh - t >= h or (ow - 1) * sw - left >= wd:
            raise _Unsupported(f"pads {shown}: a window lies wholly in the bottom/right padding")
        return stride, (t, left, bot, r), oh, ow

    def _fc(self, node, wmat, bias):
        """An fc layer: wmat (n, K) reads the flattened input in ONNX (c, h, w) order."""
        a = self.act(node)
        if len(a.shape) != 1:
            raise _Unsupported(f"input shaped (N, {', '.join(map(str, a.shape))}), not (N, K)")
        h, w, c = self.net.shapes[a.tensor]
        n = wmat.shape[0]
        if wmat.shape[1] != h * w * c:
            raise _Unsupported(f"weights for {wmat.shape[1]} inputs, input has {h * w * c}")
        weight = wmat.reshape(n, c, h, w).transpose(0, 2, 3, 1)
        self.new_layer(node, "conv", [a], (1, 1, n), (n,), weight=np.ascontiguousarray(weight),
                       bias=bias, stride=1, pads4=(0, 0, 0, 0))

    def op_Gemm(self, node, at):
        B = self.const(node, 1, "weight")
        C = self.const(node, 2, "bias")
        if at.get("transA", 0):
            raise _Unsupported("transA")
        B = np.asarray(B, dtype=np.float64)
        if B.ndim != 2:
            raise _Unsupported(f"weight of shape {B.shape}")
        wmat = (B if at.get("transB", 0) else B.T) * float(at.get("alpha", 1.0))
        n = wmat.shape[0]
        bias = np.zeros(n)
        if C is not None:
            try:
                bias = np.broadcast_to(np.asarray(C, np.float64), (1, n))[0] * float(at.get("beta", 1.0))
            except ValueError:
                raise _Unsupported(f"bias of shape {np.shape(C)} for {n} outputs") from None
        self._fc(node, wmat, bias.copy())

    def op_MatMul(self, node, at):
        B = self.const(node, 1, "weight")
        B = np.asarray(B, dtype=np.float64)
        if B.ndim != 2:
            raise _Unsupported(f"weight of shape {B.shape}")
        self._fc(node, B.T, np.zeros(B.shape[1]))

    def _per_channel(self, a: _Act, const) -> np.ndarray | None:
        """The per-channel values of a constant broadcast onto a, or None."""
        h, w, c = self.net.shapes[a.tensor]
        try:
            full = np.broadcast_to(np.asarray(const, np.float64), (1,) + a.shape)
        except ValueError:
            return None
        if full.shape != (1,) + a.shape:
            return None
        full = full.reshape(c, h * w)  # every view enumerates (c, h, w)
        return full[:, 0].copy() if np.all(full == full[:, :1]) else None

    def op_Add(self, node, at):
        x, y = self._get(node.input[0]), self._get(node.input[1])
        if not isinstance(x, _Act) and not isinstance(y, _Act):
            self.values[node.output[0]] = np.asarray(x) + np.asarray(y)
            return
        if isinstance(x, _Act) and isinstance(y, _Act):
            if x.shape != y.shape:
                raise _Unsupported(f"adds tensors shaped {x.shape} and {y.shape}")
            self.new_layer(node, "add", [x, y], self.net.shapes[x.tensor], x.shape)
            return
        a, const = (x, y) if isinstance(x, _Act) else (y, x)
        layer = self.foldable(a)
        per_channel = self._per_channel(a, const)
        if layer is None or per_channel is None:
            raise _Unsupported("adds a constant that is not the bias of a Conv, Gemm or MatMul "
                               "read only here")
        layer.bias = layer.bias + per_channel
        self.folded(node, a)

    def _activation(self, node, act):
        a = self.act(node)
        layer = self.producer.get(a.tensor)
        if layer is not None and (layer.act == act or (layer.act, act) == ("relu6", "relu")):
            self.alias(node, a)  # relu(relu6(x)) = relu6(x)
            return
        if layer is not None and (layer.act, act) == ("relu", "relu6") and self.readers[a.tensor] == 1:
            layer.act = None  # relu6(relu(x)) = relu6(x)
        layer = self.foldable(a, ("conv", "dwconv", "add", "maxpool", "avgpool2d"))
        if layer is None:
            raise _Unsupported("does not follow a Conv, Gemm, Add or pool whose output only it reads")
        layer.act = act
        self.folded(node, a)

    def op_Relu(self, node, at):
        self._activation(node, "relu")

    def op_Clip(self, node, at):
        lo, hi = at.get("min"), at.get("max")
        if lo is None:
            lo = self.const(node, 1, "min")
        if hi is None:
            hi = self.const(node, 2, "max")
        lo = -np.inf if lo is None else float(np.asarray(lo).reshape(-1)[0])
        hi = np.inf if hi is None else float(np.asarray(hi).reshape(-1)[0])
        if lo == 0 and hi == 6:
            self._activation(node, "relu6")
        elif lo == 0 and hi >= np.finfo(np.float32).max:
            self._activation(node, "relu")
        else:
            raise _Unsupported(f"Clip bounds [{lo:g}, {hi:g}]: only [0, 6] (ReLU6) and [0, inf) (ReLU)")

    def op_BatchNormalization(self, node, at):
        if at.get("training_mode", 0):
            raise _Unsupported("training_mode")
        gamma, beta, mean, var = (np.asarray(self.const(node, i, n), np.float64).reshape(-1)
                                  for i, n in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
        a = self.act(node)
        layer = self.foldable(a)
        h, w, c = self.net.shapes[a.tensor]
        if layer is None or (len(a.shape) == 1 and h * w != 1):
            raise _Unsupported("does not follow a Conv or Gemm whose output only it reads")
        if len(gamma) != c:
            raise _Unsupported(f"{len(gamma)} channels, input has {c}")
        k = gamma / np.sqrt(var + float(at.get("epsilon", 1e-5)))
        layer.weight = layer.weight * k.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
        layer.bias = (layer.bias - mean) * k + beta
        self.folded(node, a)

    def _pool(self, node, a, keep):
        if len(a.shape) == 1:
            raise _Unsupported(f"input shaped (N, {a.shape[0]}) has no spatial dimensions")
        h, w, c = self.net.shapes[a.tensor]
        view = (c,) + (1,) * (len(a.shape) - 1) if keep else (c,)
        if (h, w) == (1, 1):
            self.alias(node, _Act(a.tensor, view))
        else:
            self.new_layer(node, "avgpool", [a], (1, 1, c), view)

    def _window_pool(self, node, at, kind):
        """MaxPool / AveragePool with a kernel: a windowed pool layer."""
        k = _dims(at.get("kernel_shape", ()))
        a = self.act(node)
        if len(k) not in (1, 2) or len(a.shape) != len(k) + 1:
            raise _Unsupported(f"kernel_shape {k} over an input shaped (N, {a.shape})")
        if at.get("ceil_mode", 0):
            raise _Unsupported("ceil_mode (use floor: ceil_mode=False)")
        if any(d != 1 for d in _dims(at.get("dilations", [1] * len(k)))):
            raise _Unsupported(f"dilations {_dims(at['dilations'])}")
        if len(node.output) > 1 and node.output[1]:
            raise _Unsupported("the indices output")
        one_d = len(k) == 1
        kernel = (1,) + k if one_d else k
        stride, pads4, oh, ow = self._window(at, a, kernel, one_d)
        c = self.net.shapes[a.tensor][2]
        self.new_layer(node, kind, [a], (oh, ow, c), (c, ow) if one_d else (c, oh, ow), pool=kernel,
                       stride=stride, pads4=pads4, out_hw=(oh, ow),
                       count_pad=bool(at.get("count_include_pad", 0)))

    def op_MaxPool(self, node, at):
        self._window_pool(node, at, "maxpool")

    def op_AveragePool(self, node, at):
        self._window_pool(node, at, "avgpool2d")

    def _table(self, node, fn):
        a = self.act(node)
        self.new_layer(node, "lut", [a], self.net.shapes[a.tensor], a.shape, fn=fn)

    def op_Sigmoid(self, node, at):
        self._table(node, "sigmoid")

    def op_Tanh(self, node, at):
        self._table(node, "tanh")

    def op_HardSwish(self, node, at):
        self._table(node, "hardswish")

    def op_LeakyRelu(self, node, at):
        self._table(node, activations.leaky_relu(at.get("alpha", 0.01)))

    def op_GlobalAveragePool(self, node, at):
        self._pool(node, self.act(node), True)

    def op_ReduceMean(self, node, at):
        a = self.act(node)
        rank = len(a.shape) + 1
        axes = self._axes(node, at, rank)
        if axes != list(range(2, rank)):
            raise _Unsupported(f"axes {axes}: only the spatial axes {list(range(2, rank))}")
        self._pool(node, a, bool(at.get("keepdims", 1)))


def _load_model(model):
    import onnx
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, (bytes, bytearray)):
            return onnx.load_model_from_string(bytes(model))
        return onnx.load(str(model))
    except Exception as e:  # the onnx package raises protobuf's DecodeError and others
        raise ValueError(f"{model if not isinstance(model, (bytes, bytearray)) else 'model'}: "
                         f"not a readable ONNX model ({type(e).__name__}: {e})") from None


def _require_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ValueError("reading ONNX models needs the onnx package: pip install 'tinytrain[convert]'") from None


def to_builder(model) -> OnnxNet:
    """The float graph of an ONNX model (a path, bytes or onnx.ModelProto).
    Raises ValueError listing every node that cannot be converted."""
    _require_onnx()
    return _Converter(_load_model(model)).run()


def check_calibration(net: OnnxNet, x) -> np.ndarray:
    """x as a float64 batch in the ONNX layout, or ValueError saying what is wrong."""
    want = "(N, " + ", ".join(map(str, net.input_view)) + ")"
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise ValueError(f"calibration data of type {x.dtype}: float inputs {want} are needed")
    if x.shape[1:] != net.input_view or x.ndim < 2 or len(x) == 0:
        raise ValueError(f"calibration data has shape {x.shape}; the model's input {net.input_name!r} "
                         f"needs {want} in the model's own layout")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("calibration data holds NaN or infinite values")
    return x


def read_calibration(path, input_name: str) -> np.ndarray:
    """Calibration inputs from a .npy, or a .npz (the array named like the
    model's input, or its only array)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{path}: no such calibration file")
    try:
        data = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a .npy or .npz file ({e})") from None
    if isinstance(data, np.ndarray):
        return data
    with data:
        keys = list(data.keys())
        if input_name in keys:
            return data[input_name]
        if len(keys) == 1:
            return data[keys[0]]
        raise ValueError(f"{path}: no array named {input_name!r} (the model's input); it holds "
                         f"{', '.join(keys) or 'nothing'}")


def convert(model, calib, n_classes: int | None = None, head: str = "first", seed: int = 0) -> QGraph:
    """QGraph of a float ONNX model, quantised with calibration inputs calib
    (float, the model's layout: (N, C, H, W), (N, C, L) or (N, F); or the path
    of a .npy/.npz). n_classes/head/seed: a new classifier (see head.new_head)."""
    net = to_builder(model)
    if isinstance(calib, (str, Path)):
        calib = read_calibration(calib, net.input_name)
    x = check_calibration(net, calib)
    graph = net.quantize(to_nhwc(x))
    if n_classes is not None:
        replace_head(graph, n_classes, head, seed)
    graph.meta.update(source="onnx", onnx_input=(net.input_name, net.input_view))
    graph.meta["dead_channels_guarded"] = graph.guard_dead_channels()
    graph.check()
    return graph


load = convert
