"""Full-integer int8 TensorFlow Lite models (.tflite) into a QGraph.

The converter's int8 scheme is ours: per-channel symmetric int8 weights (zero
point 0), int32 biases at s_in * s_w[c], per-tensor asymmetric int8
activations. So weights, biases and scales are taken as they are; per-tensor
weight scales are broadcast to every channel.

Operators read (batch 1, NHWC):
  CONV_2D, DEPTHWISE_CONV_2D (depth multiplier 1), FULLY_CONNECTED (a conv
  whose kernel covers its input), ADD (same shapes), MEAN over H and W (global
  average pool), AVERAGE_POOL_2D (a window covering the input: the global pool)
  and MAX_POOL_2D (windows, SAME or VALID; an average divides by the elements
  inside the input, as TFLite does), LOGISTIC, TANH, HARD_SWISH and LEAKY_RELU
  (activation tables computed from the float function between the tensors'
  own quantisations, docs/arithmetic.md), RESHAPE,
  EXPAND_DIMS and SQUEEZE (keeping the layout their readers see: 1-D convs
  as the converter writes them run as 1-row 2-D ones), PAD/PADV2 with the zero point before a
  convolution (folded into its padding), RELU/RELU6/RELU_N1_TO_1 fused or
  after a layer (its output clamp), QUANTIZE of a float input and DEQUANTIZE
  of the output (the int8 model inside is kept), a trailing SOFTMAX (dropped:
  the trainer's loss applies it).
Padding: TensorFlow's SAME puts the odd pixel at the bottom/right; the kernels
take the top/left padding and imply the rest from the output shape, so any
bottom/right padding works; a top/left padding of a kernel's size or more, or
an output window lying wholly in the bottom/right padding, is refused. The
kernels also take one stride for both axes and no dilation. Weights of -128
(outside the narrow range TensorFlow writes) become -127: the core's
accumulator bound assumes |w| <= 127 (counted in meta["weights_clamped"]).

Everything the kernels cannot run is collected over the whole model and
reported in one ValueError, one line per operator.
"""
from __future__ import annotations

import numpy as np

from .. import activations
from ..graph import QGraph, QLayer, QTensor
from .head import replace_head

_T_FLOAT32, _T_INT32, _T_UINT8, _T_INT64, _T_INT8 = 0, 2, 3, 4, 9
_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16",
               9: "int8", 10: "float64", 17: "int4", 18: "bfloat16"}
_NP_TYPES = {_T_FLOAT32: np.float32, _T_INT32: np.int32, _T_UINT8: np.uint8,
             _T_INT64: np.int64, _T_INT8: np.int8}
_ACT_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PAD_SAME, _PAD_VALID = 0, 1

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MEAN",
                 "AVERAGE_POOL_2D", "MAX_POOL_2D", "LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU", "RESHAPE", "EXPAND_DIMS", "SQUEEZE", "PAD", "PADV2", "RELU", "RELU6", "RELU_N1_TO_1",
                 "QUANTIZE", "DEQUANTIZE", "SOFTMAX")

SUPPORTED_HELP = """\
TFLite (full-integer int8, e.g. the TensorFlow Lite converter with a
representative dataset): CONV_2D, DEPTHWISE_CONV_2D (depth multiplier 1),
FULLY_CONNECTED, ADD, MEAN over H, W (global pool), AVERAGE_POOL_2D and
MAX_POOL_2D (any window, SAME or VALID), LOGISTIC, TANH, HARD_SWISH,
LEAKY_RELU (int8 tables), RESHAPE/EXPAND_DIMS/SQUEEZE (1-D convs too), PAD (folded into
the next conv), fused or standalone RELU/RELU6/RELU_N1_TO_1, QUANTIZE of a
float input and DEQUANTIZE of the output (kept int8 inside), a final SOFTMAX
(dropped). Batch 1, one input. uint8 and float models are refused;
unsupported operators are listed all at once."""

_FLOAT_HINT = ("tinytrain reads full-integer int8 models: convert with "
               "optimizations=[tf.lite.Optimize.DEFAULT], a representative_dataset and "
               "target_spec.supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8]")


class _Tensor:
    __slots__ = ("index", "name", "shape", "type", "data", "scale", "zero", "qdim", "sparse")


class _Op:
    __slots__ = ("index", "name", "inputs", "outputs", "options")


def _parse(data: bytes, src: str) -> tuple:
    """(tensors, ops, inputs, outputs) of the first subgraph."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError(f"{src}: not a TFLite model (no TFL3 identifier)")
    try:
        import tflite
        from tflite.utils import BUILTIN_OPCODE2NAME
    except ImportError as e:  # a declared dependency; say so if it is missing
        raise ValueError(f"reading .tflite needs the 'tflite' package ({e})") from None
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise ValueError("no subgraph")  # reported as a damaged file below
        g = model.Subgraphs(0)
        tensors = []
        for i in range(g.TensorsLength()):
            t = g.Tensors(i)
            rec = _Tensor()
            rec.index = i
            rec.name = (t.Name() or b"").decode("utf-8", "replace")
            rec.shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
            rec.type = int(t.Type())
            rec.data = None
            rec.sparse = t.Sparsity() is not None
            buf = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
            raw = None
            if buf is not None and buf.DataLength() > 0:
                raw = buf.DataAsNumpy().tobytes()
            elif buf is not None and buf.Offset() > 1:  # stored after the flatbuffer
                raw = data[buf.Offset():buf.Offset() + buf.Size()]
            if raw is not None and rec.type in _NP_TYPES:
                rec.data = np.frombuffer(raw, dtype=np.dtype(_NP_TYPES[rec.type]).newbyteorder("<"))
                if rec.shape and rec.data.size == int(np.prod(rec.shape)):
                    rec.data = rec.data.reshape(rec.shape)
            elif raw is not None:
                rec.data = raw
            q = t.Quantization()
            rec.scale = np.asarray(q.ScaleAsNumpy(), np.float32) if q is not None and q.ScaleLength() else None
            rec.zero = np.asarray(q.ZeroPointAsNumpy(), np.int64) if q is not None and q.ZeroPointLength() else None
            rec.qdim = int(q.QuantizedDimension()) if q is not None else 0
            tensors.append(rec)
        ops = []
        for i in range(g.OperatorsLength()):
            o = g.Operators(i)
            code = model.OperatorCodes(o.OpcodeIndex())
            builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
            rec = _Op()
            rec.index = i
            rec.name = BUILTIN_OPCODE2NAME.get(builtin, f"BUILTIN_{builtin}")
            if rec.name == "CUSTOM":
                rec.name = f"CUSTOM:{(code.CustomCode() or b'?').decode('utf-8', 'replace')}"
            rec.inputs = [int(v) for v in o.InputsAsNumpy()] if o.InputsLength() else []
            rec.outputs = [int(v) for v in o.OutputsAsNumpy()] if o.OutputsLength() else []
            rec.options = _options(tflite, rec.name, o)
            ops.append(rec)
        inputs = [int(v) for v in g.InputsAsNumpy()] if g.InputsLength() else []
        outputs = [int(v) for v in g.OutputsAsNumpy()] if g.OutputsLength() else []
        n = len(tensors)
        if any(not 0 <= i < n for i in inputs + outputs + [o for op in ops for o in op.outputs]) \
                or any(not -1 <= i < n for op in ops for i in op.inputs) \
                or any(not op.outputs for op in ops):
            raise ValueError("a tensor index out of range")
    except Exception as e:  # a damaged flatbuffer fails anywhere in the generated readers
        raise ValueError(f"{src}: damaged TFLite file ({type(e).__name__}: {e})") from None
    return tensors, ops, inputs, outputs


_OPTION_FIELDS = {
    "CONV_2D": ("Conv2DOptions", ("Padding", "StrideW", "StrideH", "FusedActivationFunction",
                                  "DilationWFactor", "DilationHFactor")),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", ("Padding", "StrideW", "StrideH",
                                                     "DepthMultiplier", "FusedActivationFunction",
                                                     "DilationWFactor", "DilationHFactor")),
    "FULLY_CONNECTED": ("FullyConnectedOptions", ("FusedActivationFunction", "WeightsFormat")),
    "ADD": ("AddOptions", ("FusedActivationFunction",)),
    "AVERAGE_POOL_2D": ("Pool2DOptions", ("Padding", "StrideW", "StrideH", "FilterWidth",
                                          "FilterHeight", "FusedActivationFunction")),
    "MAX_POOL_2D": ("Pool2DOptions", ("Padding", "StrideW", "StrideH", "FilterWidth",
                                      "FilterHeight", "FusedActivationFunction")),
    "LEAKY_RELU": ("LeakyReluOptions", ("Alpha",)),
}


def _options(tflite, name: str, op):
    """The options an operator's conversion reads, read now (the flatbuffer
    readers are lazy: a damaged file would fail later, anywhere)."""
    if name not in _OPTION_FIELDS:
        return None
    cls, fields = _OPTION_FIELDS[name]
    table = op.BuiltinOptions()
    if table is None:
        return None
    opt = getattr(tflite, cls)()
    opt.Init(table.Bytes, table.Pos)
    values = {f: getattr(opt, f)() for f in fields}
    return type(cls, (), {f: v if isinstance(v, float) else int(v) for f, v in values.items()})()


def _round_away(v: float) -> int:
    """std::round: halves away from zero."""
    return int(np.sign(v) * np.floor(abs(v) + 0.5))


def _act_range(act: int, scale: float, zero: int) -> tuple:
    """TFLite's CalculateActivationRangeQuantized for int8 (binary32 division)."""
    def q(f):
        return zero + _round_away(float(np.float32(f) / np.float32(scale)))
    if act == 1:
        return max(-128, q(0.0)), 127
    if act == 3:
        return max(-128, q(0.0)), min(127, q(6.0))
    if act == 2:
        return max(-128, q(-1.0)), min(127, q(1.0))
    return -128, 127


# Inputs an operator must have (more are optional: a conv's bias).
_N_INPUTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "ADD": 2, "MEAN": 2,
             "PAD": 2, "PADV2": 3}


class _Unsupported(Exception):
    pass


class _Converter:
    def __init__(self, tensors, ops, inputs, outputs, src):
        self.t = tensors
        self.ops = ops
        self.src = src
        self.graph_in, self.graph_out = self._edges(inputs, outputs)
        self.consumers = {}
        for op in ops:
            for i in op.inputs:
                if i >= 0:
                    self.consumers.setdefault(i, []).append(op)
        self.qname = {}  # tflite tensor index -> QGraph tensor name
        self.qtensors = {}  # QGraph tensors, all of them (also those of refused ops)
        self.pads = {}  # PAD output index -> (input index, (top, bottom, left, right))
        self.producer = {}  # QGraph tensor name -> QLayer writing it
        self.layers = []
        self.problems = []
        self.clamped = 0  # weights of -128 raised to -127

    # -- edges -------------------------------------------------------------
    def _edges(self, inputs, outputs):
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{self.src}: the model has {len(inputs)} inputs and {len(outputs)} "
                             "outputs; tinytrain needs one of each")
        self.skip = set()
        produced_by = {o: op for op in self.ops for o in op.outputs}
        readers = {}
        for op in self.ops:
            for i in op.inputs:
                readers.setdefault(i, []).append(op)
        self._check_types()
        x = inputs[0]
        rd = readers.get(x, [])
        if self.t[x].type == _T_FLOAT32:
            if len(rd) != 1 or rd[0].name != "QUANTIZE" or self.t[rd[0].outputs[0]].type != _T_INT8:
                raise ValueError(f"{self.src}: float model: {_FLOAT_HINT}")
            self.skip.add(rd[0].index)
            x = rd[0].outputs[0]
        y = outputs[0]
        op = produced_by.get(y)
        if op is not None and op.name == "DEQUANTIZE":
            self.skip.add(op.index)
            y = op.inputs[0]
            op = produced_by.get(y)
        if op is not None and op.name == "SOFTMAX":
            self.skip.add(op.index)
            y = op.inputs[0]
        return x, y

    def _check_types(self):
        produced = {o for op in self.ops for o in op.outputs}
        for op in self.ops:
            for i in op.inputs + op.outputs:
                if i < 0:
                    continue
                t = self.t[i]
                if t.type == _T_UINT8:
                    raise ValueError(
                        f"{self.src}: uint8 tensor {t.name!r} (op {op.index} {op.name}): uint8 models "
                        f"are not supported; convert with int8 input and output "
                        f"(inference_input_type=tf.int8, inference_output_type=tf.int8)")
        for op in self.ops:
            for i in op.inputs + op.outputs:
                if i >= 0 and self.t[i].type == 7 and (i in produced or self.t[i].data is None):
                    raise ValueError(f"{self.src}: int16 activations (16x8 quantisation, tensor "
                                     f"{self.t[i].name!r}, op {op.index} {op.name}) are not "
                                     "supported: tinytrain reads full-integer int8 models")
            if op.name in ("QUANTIZE", "DEQUANTIZE"):
                continue
            acts = [i for i in op.inputs + op.outputs
                    if i >= 0 and (i in produced or self.t[i].data is None)]
            floats = [self.t[i].name for i in acts if self.t[i].type == _T_FLOAT32]
            if floats:
                raise ValueError(f"{self.src}: float model (op {op.index} {op.name} computes in "
                                 f"float32, tensor {floats[0]!r}): {_FLOAT_HINT}")

    # -- tensors -----------------------------------------------------------
    def _hwc(self, t: _Tensor) -> tuple:
        s = t.shape
        if len(s) == 0 or len(s) > 4:
            raise _Unsupported(f"tensor {t.name!r} has rank {len(s)}")
        if len(s) > 1 and s[0] != 1:
            raise _Unsupported(f"tensor {t.name!r} has batch {s[0]}; tinytrain runs batch 1")
        dims = s[1:] if len(s) > 1 else s
        if any(not 1 <= d <= 65535 for d in dims):
            raise _Unsupported(f"tensor {t.name!r} has shape {list(s)}")
        return tuple([1] * (3 - len(dims)) + list(dims))

    def _quant(self, t: _Tensor) -> tuple:
        if t.type != _T_INT8:
            raise _Unsupported(f"tensor {t.name!r} is {_TYPE_NAMES.get(t.type, t.type)}, not int8")
        if t.scale is None or t.zero is None or len(t.scale) != 1:
            raise _Unsupported(f"tensor {t.name!r} needs one scale and zero point")
        scale, zero = float(t.scale[0]), int(t.zero[0])
        if not (np.isfinite(scale) and scale > 0) or not -128 <= zero <= 127:
            raise _Unsupported(f"tensor {t.name!r} has scale {scale:g}, zero point {zero}")
        return scale, zero

    def _new(self, index: int) -> QTensor:
        """The QTensor of a tflite activation tensor (also for refused ops,
        so later operators are still checked)."""
        t = self.t[index]
        name = f"t{index}"
        try:
            shape = self._hwc(t)
        except _Unsupported:
            shape = (1, 1, max(1, int(np.prod(t.shape or (1,)))))
        try:
            scale, zero = self._quant(t)
        except _Unsupported:
            scale, zero = 1.0, 0
        qt = QTensor(name, shape, scale, zero)
        self.qtensors[name] = qt
        self.qname[index] = name
        return qt

    def _act_in(self, index: int, what: str, fold_pad=False, flat=False) -> tuple:
        """(QTensor, extra padding) of an operator's activation input."""
        t = self.t[index]
        if t.data is not None:
            raise _Unsupported(f"{what} is a constant; tinytrain needs an activation there")
        pad = (0, 0, 0, 0)
        if index in self.pads:
            if not fold_pad:
                raise _Unsupported(f"{what} comes from a PAD; padding folds only into "
                                   "CONV_2D and DEPTHWISE_CONV_2D")
            index, pad = self.pads[index]
        if index not in self.qname:
            raise _Unsupported(f"{what} {self.t[index].name!r} is not produced by a supported operator")
        qt = self.qtensors[self.qname[index]]
        shape = self._hwc(self.t[index])
        if shape != qt.shape and not flat:
            raise _Unsupported(f"{what} is a RESHAPE from {qt.shape} to {shape}; the kernels read "
                               "the original layout")
        self._quant(self.t[index])
        return qt, pad

    def _weights(self, index: int, cout: int, axis: int, what: str) -> tuple:
        t = self.t[index]
        if t.type != _T_INT8 or not isinstance(t.data, np.ndarray):
            raise _Unsupported(f"{what} must be constant int8 (got {_TYPE_NAMES.get(t.type, t.type)}"
                               f"{'' if isinstance(t.data, np.ndarray) else ', not constant'})")
        if t.sparse:
            raise _Unsupported(f"{what} is sparse")
        if t.scale is None or len(t.scale) not in (1, cout):
            raise _Unsupported(f"{what} needs 1 or {cout} scales")
        if not np.all(np.isfinite(t.scale) & (t.scale > 0)):
            raise _Unsupported(f"{what} has scales that are not positive numbers")
        if len(t.scale) == cout and cout > 1 and t.qdim != axis:
            raise _Unsupported(f"{what} is quantised along axis {t.qdim}, not the output channels")
        if t.zero is not None and np.any(t.zero != 0):
            raise _Unsupported(f"{what} has nonzero zero points (asymmetric weights)")
        data = t.data
        if np.any(data == -128):  # the core's accumulator bound assumes |w| <= 127
            self.clamped += int(np.sum(data == -128))
            data = np.maximum(data, -127).astype(np.int8)
        scale = np.broadcast_to(t.scale.astype(np.float32), (cout,)).copy()
        return data, scale

    def _bias(self, op: _Op, cout: int) -> np.ndarray:
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            return np.zeros(cout, np.int32)
        t = self.t[op.inputs[2]]
        if t.type != _T_INT32 or not isinstance(t.data, np.ndarray) or t.data.size != cout:
            raise _Unsupported(f"bias must be {cout} constant int32 values "
                               f"(got {_TYPE_NAMES.get(t.type, t.type)})")
        return t.data.reshape(cout).astype(np.int32)

    def _act(self, op: _Op, y: QTensor) -> tuple:
        act = getattr(op.options, "FusedActivationFunction", 0)
        if act not in (0, 1, 2, 3):
            raise _Unsupported(f"fused activation {_ACT_NAMES.get(act, act)} (supported: NONE, "
                               "RELU, RELU6, RELU_N1_TO_1)")
        return _act_range(act, y.scale, y.zero)

    # -- operators ---------------------------------------------------------
    def run(self) -> QGraph:
        qin = self._new(self.graph_in)
        try:
            self._hwc(self.t[self.graph_in])
            self._quant(self.t[self.graph_in])
        except _Unsupported as e:
            self.problems.append(f"model input: {e}")
        for op in self.ops:
            if op.index in self.skip:
                continue
            handler = getattr(self, "op_" + op.name, None)
            try:
                if handler is None:
                    raise _Unsupported("operator not supported")
                need = _N_INPUTS.get(op.name, 1)
                if len(op.inputs) < need or any(i < 0 for i in op.inputs[:need]):
                    raise _Unsupported(f"needs {need} inputs, has {len(op.inputs)}")
                handler(op)
            except _Unsupported as e:
                out = self.t[op.outputs[0]].name if op.outputs else "?"
                self.problems.append(f"op {op.index} {op.name} (output {out!r}): {e}")
                for o in op.outputs:  # later operators are still checked
                    if o not in self.qname:
                        self._new(o)
        if self.graph_out not in self.qname and not self.problems:
            self.problems.append(f"model output {self.t[self.graph_out].name!r} is not produced "
                                 "by a supported operator")
        if self.problems:
            raise ValueError(f"{self.src}: {len(self.problems)} unsupported operator"
                             f"{'s' if len(self.problems) > 1 else ''} or attribute"
                             f"{'s' if len(self.problems) > 1 else ''} (tinytrain supports "
                             f"{', '.join(SUPPORTED_OPS)}):\n  " + "\n  ".join(self.problems))
        used = {qin.name} | {n for L in self.layers for n in L.inputs + [L.output]}
        tensors = {n: t for n, t in self.qtensors.items() if n in used}
        out = self.qname[self.graph_out]
        if out == qin.name:
            raise ValueError(f"{self.src}: the model computes nothing tinytrain can train")
        return QGraph(tensors, self.layers, qin.name, out)

    def _add_layer(self, op: _Op, kind: str, inputs: list, **kw) -> QLayer:
        y = self._new(op.outputs[0])
        self._hwc(self.t[op.outputs[0]])
        self._quant(self.t[op.outputs[0]])
        layer = QLayer(f"{kind}{len(self.layers)}", kind, [x.name for x in inputs], y.name, **kw)
        layer.act_min, layer.act_max = self._act(op, y)
        self.layers.append(layer)
        self.producer[y.name] = layer
        return layer

    def _conv_common(self, op: _Op, depthwise: bool):
        o = op.options
        if o is None:
            raise _Unsupported("missing options")
        if o.DilationHFactor != 1 or o.DilationWFactor != 1:
            raise _Unsupported(f"dilation {o.DilationHFactor}x{o.DilationWFactor}")
        x, extra = self._act_in(op.inputs[0], "input", fold_pad=True)
        yshape = self._hwc(self.t[op.outputs[0]])
        w = self.t[op.inputs[1]]
        if len(w.shape) != 4:
            raise _Unsupported(f"filter shape {w.shape}")
        kh, kw = w.shape[1], w.shape[2]
        strides = (int(o.StrideH), int(o.StrideW))
        if not (1 <= kh <= 255 and 1 <= kw <= 255 and 1 <= min(strides) and max(strides) <= 255):
            raise _Unsupported(f"kernel {kh}x{kw}, stride {strides[0]}x{strides[1]}")
        axes = ((0, kh, extra[0:2]), (1, kw, extra[2:4]))
        # An axis of size 1 read by a kernel of size 1 (a 1-D conv's height)
        # makes its stride irrelevant; otherwise both strides must agree.
        trivial = [x.shape[a] + b + e == 1 and k == 1 and yshape[a] == 1 for a, k, (b, e) in axes]
        s = strides[1] if trivial[0] else strides[0]
        if strides[0] != strides[1] and not any(trivial):
            raise _Unsupported(f"stride {strides[0]}x{strides[1]}: the kernels take one stride")
        pads = []
        for axis, k, (before, after) in axes:
            n_in = x.shape[axis] + before + after
            if o.Padding == _PAD_SAME:
                total = max((yshape[axis] - 1) * strides[axis] + k - n_in, 0)
                own = total // 2
            else:
                own = 0
            top = before + own
            if top >= k:
                raise _Unsupported(f"padding {top} before a {k}-wide kernel: the kernels pad "
                                   "less than the kernel size")
            if (yshape[axis] - 1) * s >= x.shape[axis] + top:
                raise _Unsupported("an output window lies wholly in the bottom/right padding")
            pads.append(top)
        if depthwise:
            if w.shape[0] != 1 or w.shape[3] != x.shape[2] or yshape[2] != x.shape[2]:
                raise _Unsupported(f"depth multiplier {w.shape[3] // max(x.shape[2], 1)} "
                                   f"({x.shape[2]} -> {w.shape[3]} channels); only 1 is supported")
            data, scale = self._weights(op.inputs[1], w.shape[3], 3, "filter")
            weight = np.ascontiguousarray(data[0].transpose(2, 0, 1))
        else:
            if w.shape[3] != x.shape[2]:
                raise _Unsupported(f"grouped convolution (filter has {w.shape[3]} input channels, "
                                   f"the input {x.shape[2]})")
            data, scale = self._weights(op.inputs[1], w.shape[0], 0, "filter")
            weight = np.ascontiguousarray(data)
        bias = self._bias(op, weight.shape[0])
        self._add_layer(op, "dwconv" if depthwise else "conv", [x], weight=weight, bias=bias,
                        w_scale=scale, stride=s, pad=tuple(pads))

    def op_CONV_2D(self, op):
        self._conv_common(op, depthwise=False)

    def op_DEPTHWISE_CONV_2D(self, op):
        self._conv_common(op, depthwise=True)

    def op_FULLY_CONNECTED(self, op):
        o = op.options
        if o is not None and o.WeightsFormat != 0:
            raise _Unsupported("shuffled weights format")
        x, _ = self._act_in(op.inputs[0], "input", flat=True)
        w = self.t[op.inputs[1]]
        if len(w.shape) != 2:
            raise _Unsupported(f"weight shape {w.shape}")
        cout, n_in = w.shape
        if n_in != x.numel:
            raise _Unsupported(f"applies to rows of {n_in} of a {x.numel}-element input; "
                               "tinytrain's fully connected layer reads the whole input")
        if int(np.prod(self.t[op.outputs[0]].shape)) != cout:
            raise _Unsupported(f"output {self.t[op.outputs[0]].shape} is not one row of {cout}")
        data, scale = self._weights(op.inputs[1], cout, 0, "weights")
        weight = np.ascontiguousarray(data.reshape(cout, *x.shape))
        self._add_layer(op, "conv", [x], weight=weight, bias=self._bias(op, cout), w_scale=scale)

    def op_ADD(self, op):
        if len(op.inputs) != 2:
            raise _Unsupported(f"{len(op.inputs)} inputs")
        a, _ = self._act_in(op.inputs[0], "first input")
        b, _ = self._act_in(op.inputs[1], "second input")
        yshape = self._hwc(self.t[op.outputs[0]])
        if a.shape != yshape or b.shape != yshape:
            raise _Unsupported(f"broadcasting {a.shape} + {b.shape}; both inputs must have the "
                               "output's shape")
        self._add_layer(op, "add", [a, b])

    def _pool(self, op, x: QTensor):
        yshape = self._hwc(self.t[op.outputs[0]])
        if yshape != (1, 1, x.shape[2]):
            raise _Unsupported(f"output {yshape} is not 1x1x{x.shape[2]}: only a global "
                               "average pool is supported")
        self._add_layer(op, "avgpool", [x])

    def op_MEAN(self, op):
        x, _ = self._act_in(op.inputs[0], "input")
        axes_t = self.t[op.inputs[1]]
        if not isinstance(axes_t.data, np.ndarray):
            raise _Unsupported("axes are not constant")
        shape = self.t[op.inputs[0]].shape
        rank = len(shape)
        axes = {int(a) % rank for a in axes_t.data.reshape(-1)} if rank else set()
        spatial = set(range(1, rank - 1))
        if rank < 3 or not axes <= spatial or any(shape[a] > 1 for a in spatial - axes):
            raise _Unsupported(f"mean over axes {[int(a) for a in axes_t.data.reshape(-1)]} of a "
                               f"{list(shape)} tensor; only over all spatial axes (a global "
                               "average pool) is supported")
        self._pool(op, x)

    def op_AVERAGE_POOL_2D(self, op):
        o = op.options
        x, _ = self._act_in(op.inputs[0], "input")
        if o is not None and (o.FilterHeight, o.FilterWidth) == x.shape[:2] \
                and self._hwc(self.t[op.outputs[0]])[:2] == (1, 1):
            self._pool(op, x)
        else:
            self._window_pool(op, x, "avgpool2d")

    def op_MAX_POOL_2D(self, op):
        x, _ = self._act_in(op.inputs[0], "input")
        if self._quant(self.t[op.inputs[0]]) != self._quant(self.t[op.outputs[0]]):
            raise _Unsupported("input and output quantisation differ")
        self._window_pool(op, x, "maxpool")

    def _window_pool(self, op, x: QTensor, kind: str):
        """A pool over FilterHeight x FilterWidth windows, SAME (TensorFlow's
        odd pixel at the bottom/right) or VALID padding."""
        o = op.options
        if o is None:
            raise _Unsupported("missing options")
        yshape = self._hwc(self.t[op.outputs[0]])
        k, strides = (int(o.FilterHeight), int(o.FilterWidth)), (int(o.StrideH), int(o.StrideW))
        if not (min(k) >= 1 and max(k) <= 255 and min(strides) >= 1 and max(strides) <= 255) \
                or yshape[2] != x.shape[2]:
            raise _Unsupported(f"window {k[0]}x{k[1]}, stride {strides[0]}x{strides[1]}, "
                               f"{x.shape} -> {yshape}")
        # one stride for both axes, except where an axis is 1 wide everywhere (1-D)
        trivial = [x.shape[a] == 1 and k[a] == 1 and yshape[a] == 1 for a in (0, 1)]
        s = strides[1] if trivial[0] else strides[0]
        if strides[0] != strides[1] and not any(trivial):
            raise _Unsupported(f"stride {strides[0]}x{strides[1]}: the kernels take one stride")
        pads = []
        for a in (0, 1):
            total = max((yshape[a] - 1) * strides[a] + k[a] - x.shape[a], 0) if o.Padding == _PAD_SAME else 0
            top = total // 2
            if top >= k[a] or (yshape[a] - 1) * s >= x.shape[a] + top:
                raise _Unsupported(f"padding {top} before a {k[a]}-wide window, or a window wholly in "
                                   "the padding")
            pads.append(top)
        self._add_layer(op, kind, [x], pool=k, stride=s, pad=tuple(pads))

    def _table(self, op, fn: str):
        x, _ = self._act_in(op.inputs[0], "input")
        if self._hwc(self.t[op.outputs[0]]) != x.shape:
            raise _Unsupported("output shaped unlike the input")
        layer = self._add_layer(op, "lut", [x], fn=fn)
        y = self.qtensors[layer.output]
        layer.table, layer.table_grad, layer.table_grad_shift = activations.tables(fn, x.scale, x.zero,
                                                                                   y.scale, y.zero)

    def op_LOGISTIC(self, op):
        self._table(op, "sigmoid")

    def op_TANH(self, op):
        self._table(op, "tanh")

    def op_HARD_SWISH(self, op):
        self._table(op, "hardswish")

    def op_LEAKY_RELU(self, op):
        if op.options is None:
            raise _Unsupported("missing options")
        self._table(op, activations.leaky_relu(np.float32(op.options.Alpha)))

    def op_RESHAPE(self, op):
        src = op.inputs[0]
        if src in self.pads:
            raise _Unsupported("input comes from a PAD")
        if src not in self.qname:
            raise _Unsupported(f"input {self.t[src].name!r} is not produced by a supported operator")
        ti, to = self.t[src], self.t[op.outputs[0]]
        if int(np.prod(ti.shape)) != int(np.prod(to.shape)):
            raise _Unsupported(f"{ti.shape} -> {to.shape} changes the element count")
        if self._quant(ti) != self._quant(to):
            raise _Unsupported("input and output quantisation differ")
        self._hwc(to)
        self.qname[op.outputs[0]] = self.qname[src]

    def op_EXPAND_DIMS(self, op):
        self.op_RESHAPE(op)

    def op_SQUEEZE(self, op):
        self.op_RESHAPE(op)

    def _pad(self, op, value=None):
        src, out = op.inputs[0], op.outputs[0]
        if src in self.pads:
            raise _Unsupported("PAD of a PAD")
        p = self.t[op.inputs[1]]
        if not isinstance(p.data, np.ndarray) or p.data.size != 8:
            raise _Unsupported("paddings must be a constant 4x2 tensor (NHWC)")
        p = p.data.reshape(4, 2).astype(np.int64)
        if np.any(p[0] != 0) or np.any(p[3] != 0) or np.any(p < 0):
            raise _Unsupported(f"paddings {p.tolist()}: only non-negative height/width padding "
                               "is supported")
        if self._quant(self.t[src]) != self._quant(self.t[out]):
            raise _Unsupported("input and output quantisation differ")
        if value is not None and value != self._quant(self.t[out])[1]:
            raise _Unsupported(f"pads with {value}, not the zero point: it cannot fold into a "
                               "convolution")
        if src not in self.qname:
            raise _Unsupported(f"input {self.t[src].name!r} is not produced by a supported operator")
        if out == self.graph_out:
            raise _Unsupported("the model's output; padding folds only into a convolution after it")
        self.pads[out] = (src, tuple(int(v) for v in p[1:3].reshape(-1)))
        self.qname[out] = self.qname[src]

    def op_PAD(self, op):
        self._pad(op)

    def op_PADV2(self, op):
        if len(op.inputs) < 3 or not isinstance(self.t[op.inputs[2]].data, np.ndarray):
            raise _Unsupported("constant value is not constant")
        self._pad(op, int(self.t[op.inputs[2]].data.reshape(-1)[0]))

    def _relu(self, op, act: int):
        src = op.inputs[0]
        name = self.qname.get(src)
        layer = self.producer.get(name)
        if layer is None or src in self.pads:
            raise _Unsupported("only a ReLU right after a layer is supported")
        if len(self.consumers.get(src, [])) != 1 or src == self.graph_out:
            raise _Unsupported("its input is also read elsewhere: it cannot fold into the layer "
                               "before it")
        qi, qo = self._quant(self.t[src]), self._quant(self.t[op.outputs[0]])
        if qi != qo:
            raise _Unsupported("input and output quantisation differ")
        lo, hi = _act_range(act, *qi)
        layer.act_min, layer.act_max = max(layer.act_min, lo), min(layer.act_max, hi)
        self.qname[op.outputs[0]] = name

    def op_RELU(self, op):
        self._relu(op, 1)

    def op_RELU6(self, op):
        self._relu(op, 3)

    def op_RELU_N1_TO_1(self, op):
        self._relu(op, 2)

    def op_QUANTIZE(self, op):
        raise _Unsupported("requantisation inside the model (only a float input's QUANTIZE "
                           "is supported)")

    def op_DEQUANTIZE(self, op):
        raise _Unsupported("only a DEQUANTIZE of the model's output is supported")

    def op_SOFTMAX(self, op):
        raise _Unsupported("only a SOFTMAX at the model's end is supported (it is dropped)")


def to_graph(data: bytes, n_classes: int | None = None, head: str = "first", seed: int = 0,
             src: str = "model") -> QGraph:
    """QGraph of a full-integer int8 .tflite model given as bytes. n_classes:
    keep the first N rows of the classifier (head='first') or a fresh random
    head (head='fresh')."""
    conv = _Converter(*_parse(bytes(data), src), src=src)
    g = conv.run()
    if n_classes is not None:
        replace_head(g, n_classes, head, seed)
    g.meta["source"] = "tflite"
    g.meta["weights_clamped"] = conv.clamped
    # QGraph tensor -> index of the .tflite tensor it holds (the interpreter's
    # tensor index), e.g. to compare intermediate results.
    g.meta["tflite_tensor"] = {name: int(name[1:]) for name in g.tensors}
    g.meta["dead_channels_guarded"] = g.guard_dead_channels()
    try:
        g.check()
    except ValueError as e:
        raise ValueError(f"{src}: {e}") from None
    return g


def load(path, n_classes: int | None = None, head: str = "first", seed: int = 0) -> QGraph:
    with open(path, "rb") as f:
        return to_graph(f.read(), n_classes, head, seed, src=str(path))
