"""A small writer of full-integer int8 .tflite files, for tests where
TensorFlow is not installed: a sequence of float layers is quantised the way
the TensorFlow Lite converter does it (per-channel symmetric int8 conv
weights, per-tensor FC weights, int32 biases at s_in * s_w, per-tensor
asymmetric int8 activations from calibration ranges, the fixed output
quantisation of LOGISTIC and TANH, pools keeping their input's) and written
with the flatbuffer builders of the `tflite` package. The TFLite interpreter
is the reference the tests compare with; this file only has to be valid.

Layers (NHWC, batch 1): ("conv", w (cout, kh, kw, cin), b, stride, "SAME"|"VALID"),
("maxpool"|"avgpool", k, stride, "SAME"|"VALID"), ("fc", w (cout, cin), b),
("logistic",), ("tanh",), ("hardswish",), ("leaky_relu", alpha).
"""
from __future__ import annotations

import flatbuffers
import numpy as np
import tflite

OPS = {"conv": "CONV_2D", "maxpool": "MAX_POOL_2D", "avgpool": "AVERAGE_POOL_2D", "fc": "FULLY_CONNECTED",
       "logistic": "LOGISTIC", "tanh": "TANH", "hardswish": "HARD_SWISH", "leaky_relu": "LEAKY_RELU"}
INT8, INT32 = tflite.TensorType.INT8, tflite.TensorType.INT32


def _same_pads(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2, total - total // 2


def float_forward(layers, x):
    """Float activations (N, h, w, c) after each layer, TensorFlow's padding."""
    acts = [np.asarray(x, np.float64)]
    for L in layers:
        x = acts[-1]
        kind = L[0]
        if kind in ("conv", "maxpool", "avgpool"):
            if kind == "conv":
                w, b, s, padding = L[1:]
                k = w.shape[1:3]
            else:
                k, s, padding = (L[1], L[1]), L[2], L[3]
            n, h, wd, c = x.shape
            if padding == "SAME":
                (oh, pt, pb), (ow, pl, pr) = _same_pads(h, k[0], s), _same_pads(wd, k[1], s)
            else:
                oh, ow, pt, pb, pl, pr = (h - k[0]) // s + 1, (wd - k[1]) // s + 1, 0, 0, 0, 0
            fill = -np.inf if kind == "maxpool" else 0.0
            xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
            ones = np.pad(np.ones((1, h, wd, 1)), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
            y = np.zeros((n, oh, ow, w.shape[0] if kind == "conv" else c))
            for i in range(oh):
                for j in range(ow):
                    win = xp[:, i * s:i * s + k[0], j * s:j * s + k[1]]
                    if kind == "conv":
                        y[:, i, j] = np.einsum("nhwc,ohwc->no", win, w) + b
                    elif kind == "maxpool":
                        y[:, i, j] = win.max(axis=(1, 2))
                    else:
                        y[:, i, j] = win.sum(axis=(1, 2)) / ones[:, i * s:i * s + k[0], j * s:j * s + k[1]].sum()
        elif kind == "fc":
            y = x.reshape(len(x), -1) @ L[1].T + L[2]
        elif kind == "logistic":
            y = 1.0 / (1.0 + np.exp(-x))
        elif kind == "tanh":
            y = np.tanh(x)
        elif kind == "hardswish":
            y = x * np.clip(x + 3, 0, 6) / 6
        else:
            y = np.where(x > 0, x, L[1] * x)
        acts.append(y)
    return acts


def _asym(a):
    lo, hi = min(float(a.min()), 0.0), max(float(a.max()), 0.0)
    scale = max(hi - lo, 1e-8) / 255.0
    return np.float32(scale), int(np.clip(np.round(-128 - lo / scale), -128, 127))


def write(layers, calib) -> bytes:
    """The .tflite bytes of layers, quantised with calibration inputs (N, h, w, c)."""
    acts = float_forward(layers, calib)
    quant = [_asym(acts[0])]
    for L, a in zip(layers, acts[1:]):
        if L[0] in ("maxpool", "avgpool"):
            quant.append(quant[-1])
        elif L[0] == "logistic":
            quant.append((np.float32(1 / 256), -128))
        elif L[0] == "tanh":
            quant.append((np.float32(1 / 128), 0))
        else:
            quant.append(_asym(a))
    w = _Writer()
    shape = [1] + list(acts[0].shape[1:])
    ids = [w.tensor("input", shape, INT8, *quant[0])]
    for i, (L, a) in enumerate(zip(layers, acts[1:])):
        kind = L[0]
        out_shape = [1] + list(a.shape[1:])
        out = w.tensor(f"t{i}", out_shape, INT8, *quant[i + 1])
        sx = float(quant[i][0])
        inputs = [ids[-1]]
        if kind in ("conv", "fc"):
            wf, b = L[1], L[2]
            if kind == "conv":
                sw = np.maximum(np.abs(wf).max(axis=(1, 2, 3)), 1e-8) / 127
                wq = np.round(wf / sw[:, None, None, None])
            else:
                sw = np.full(wf.shape[0], max(np.abs(wf).max(), 1e-8) / 127)
                wq = np.round(wf / sw[0])
            sw = sw.astype(np.float32)
            inputs.append(w.tensor(f"w{i}", list(wq.shape), INT8, sw if kind == "conv" else sw[:1],
                                   np.zeros(len(sw) if kind == "conv" else 1, np.int64),
                                   data=np.clip(wq, -127, 127).astype(np.int8), qdim=0))
            bq = np.round(b / (sx * sw.astype(np.float64))).astype(np.int32)
            inputs.append(w.tensor(f"b{i}", [len(bq)], INT32, (sx * sw).astype(np.float32),
                                   np.zeros(len(bq), np.int64), data=bq, qdim=0))
        w.op(OPS[kind], inputs, [out], L)
        ids.append(out)
    return w.finish(ids[0], ids[-1])


class _Writer:
    def __init__(self):
        self.b = flatbuffers.Builder(1024)
        self.buffers = [b""]  # buffer 0: empty, by convention
        self.tensors, self.ops, self.codes = [], [], []

    def tensor(self, name, shape, ttype, scale, zero, data=None, qdim=0) -> int:
        buf = 0
        if data is not None:
            self.buffers.append(np.ascontiguousarray(data).tobytes())
            buf = len(self.buffers) - 1
        self.tensors.append((name, shape, ttype, np.atleast_1d(np.asarray(scale, np.float32)),
                             np.atleast_1d(np.asarray(zero, np.int64)), buf, qdim))
        return len(self.tensors) - 1

    def op(self, name, inputs, outputs, layer):
        code = getattr(tflite.BuiltinOperator, name)
        if code not in self.codes:
            self.codes.append(code)
        self.ops.append((self.codes.index(code), inputs, outputs, name, layer))

    # -- flatbuffer ------------------------------------------------------------
    def _vec(self, start, items, prepend):
        start(self.b, len(items))
        for v in reversed(items):
            prepend(v)
        return self.b.EndVector()

    def _ints(self, start, items):
        return self._vec(lambda b, n: start(b, n), [int(v) for v in items], self.b.PrependInt32)

    def _options(self, name, layer):
        b = self.b
        if name == "CONV_2D":
            tflite.Conv2DOptionsStart(b)
            tflite.Conv2DOptionsAddPadding(b, 0 if layer[4] == "SAME" else 1)
            tflite.Conv2DOptionsAddStrideH(b, layer[3])
            tflite.Conv2DOptionsAddStrideW(b, layer[3])
            tflite.Conv2DOptionsAddDilationHFactor(b, 1)
            tflite.Conv2DOptionsAddDilationWFactor(b, 1)
            return tflite.BuiltinOptions.Conv2DOptions, tflite.Conv2DOptionsEnd(b)
        if name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            tflite.Pool2DOptionsStart(b)
            tflite.Pool2DOptionsAddPadding(b, 0 if layer[3] == "SAME" else 1)
            tflite.Pool2DOptionsAddStrideH(b, layer[2])
            tflite.Pool2DOptionsAddStrideW(b, layer[2])
            tflite.Pool2DOptionsAddFilterHeight(b, layer[1])
            tflite.Pool2DOptionsAddFilterWidth(b, layer[1])
            return tflite.BuiltinOptions.Pool2DOptions, tflite.Pool2DOptionsEnd(b)
        if name == "FULLY_CONNECTED":
            tflite.FullyConnectedOptionsStart(b)
            return tflite.BuiltinOptions.FullyConnectedOptions, tflite.FullyConnectedOptionsEnd(b)
        if name == "LEAKY_RELU":
            tflite.LeakyReluOptionsStart(b)
            tflite.LeakyReluOptionsAddAlpha(b, float(layer[1]))
            return tflite.BuiltinOptions.LeakyReluOptions, tflite.LeakyReluOptionsEnd(b)
        return None

    def finish(self, inp, out) -> bytes:
        b = self.b
        bufs = []
        for data in self.buffers:
            vec = b.CreateByteVector(data) if data else None
            tflite.BufferStart(b)
            if vec is not None:
                tflite.BufferAddData(b, vec)
            bufs.append(tflite.BufferEnd(b))
        tens = []
        for name, shape, ttype, scale, zero, buf, qdim in self.tensors:
            nm = b.CreateString(name)
            sh = self._ints(tflite.TensorStartShapeVector, shape)
            sc = self._vec(tflite.QuantizationParametersStartScaleVector, list(scale), b.PrependFloat32)
            zp = self._vec(tflite.QuantizationParametersStartZeroPointVector, list(zero), b.PrependInt64)
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, sc)
            tflite.QuantizationParametersAddZeroPoint(b, zp)
            tflite.QuantizationParametersAddQuantizedDimension(b, qdim)
            q = tflite.QuantizationParametersEnd(b)
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, sh)
            tflite.TensorAddType(b, ttype)
            tflite.TensorAddBuffer(b, buf)
            tflite.TensorAddName(b, nm)
            tflite.TensorAddQuantization(b, q)
            tens.append(tflite.TensorEnd(b))
        ops = []
        for code, inputs, outputs, name, layer in self.ops:
            iv = self._ints(tflite.OperatorStartInputsVector, inputs)
            ov = self._ints(tflite.OperatorStartOutputsVector, outputs)
            opts = self._options(name, layer)
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, code)
            tflite.OperatorAddInputs(b, iv)
            tflite.OperatorAddOutputs(b, ov)
            if opts:
                tflite.OperatorAddBuiltinOptionsType(b, opts[0])
                tflite.OperatorAddBuiltinOptions(b, opts[1])
            ops.append(tflite.OperatorEnd(b))
        tv = self._vec(tflite.SubGraphStartTensorsVector, tens, b.PrependUOffsetTRelative)
        ov = self._vec(tflite.SubGraphStartOperatorsVector, ops, b.PrependUOffsetTRelative)
        iv = self._ints(tflite.SubGraphStartInputsVector, [inp])
        outv = self._ints(tflite.SubGraphStartOutputsVector, [out])
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tv)
        tflite.SubGraphAddOperators(b, ov)
        tflite.SubGraphAddInputs(b, iv)
        tflite.SubGraphAddOutputs(b, outv)
        sg = tflite.SubGraphEnd(b)
        codes = []
        for c in self.codes:
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(c, 127))
            tflite.OperatorCodeAddBuiltinCode(b, c)
            tflite.OperatorCodeAddVersion(b, 1)
            codes.append(tflite.OperatorCodeEnd(b))
        cv = self._vec(tflite.ModelStartOperatorCodesVector, codes, b.PrependUOffsetTRelative)
        sv = self._vec(tflite.ModelStartSubgraphsVector, [sg], b.PrependUOffsetTRelative)
        bv = self._vec(tflite.ModelStartBuffersVector, bufs, b.PrependUOffsetTRelative)
        desc = b.CreateString("tinytrain test writer")
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, cv)
        tflite.ModelAddSubgraphs(b, sv)
        tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, bv)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())
