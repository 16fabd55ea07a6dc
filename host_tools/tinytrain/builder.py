"""Small float networks, calibrated and quantised into a QGraph.

For tests, examples and fresh models: layers with random (He) or given float
weights; activation ranges come from calibration data when the model is built
(run by tinytrain.floatops, the float network FloatNet trains with too).

    b = NetBuilder((8, 8, 1))
    b.fc(32, act="relu"); b.fc(10)
    graph = b.quantize(calibration_inputs)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import activations, floatops
from .floatops import ACTS, conv_forward  # noqa: F401  (conv_forward: for converters)
from .graph import QGraph, QLayer, QTensor


@dataclass
class FloatLayer:
    name: str
    kind: str
    inputs: list
    output: str
    weight: np.ndarray | None = None  # conv (cout, kh, kw, cin); depthwise (c, kh, kw)
    bias: np.ndarray | None = None
    stride: int = 1
    pad: tuple = (0, 0)
    act: str | None = None
    pool: tuple | None = None  # maxpool, avgpool2d: (kh, kw)
    out_hw: tuple | None = None  # maxpool, avgpool2d: output height and width
    count_pad: bool = False  # avgpool2d: padding counts in the divisor
    fn: str = ""  # lut: the activation (activations.py)


class NetBuilder:
    def __init__(self, input_shape, seed: int = 0):
        self.input_shape = tuple(input_shape)
        self.shapes = {"input": self.input_shape}
        self.layers: list[FloatLayer] = []
        self.last = "input"
        self.rng = np.random.default_rng(seed)

    def _add(self, kind, inputs, out_shape, **kw) -> str:
        name = f"{kind}{len(self.layers)}"
        if kw.get("act") not in ACTS:
            raise ValueError(f"act must be one of {ACTS}")
        self.layers.append(FloatLayer(name, kind, list(inputs), name, **kw))
        self.shapes[name] = out_shape
        self.last = name
        return name

    def _he(self, shape, fan_in):
        return self.rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)

    def conv(self, cout, k=3, stride=1, act="relu", x=None, pad=None, weight=None, bias=None) -> str:
        x = x or self.last
        h, w, c = self.shapes[x]
        kh, kw = (k, k) if np.isscalar(k) else k
        pad = ((kh - 1) // 2, (kw - 1) // 2) if pad is None else ((pad, pad) if np.isscalar(pad) else pad)
        oh, ow = (h + 2 * pad[0] - kh) // stride + 1, (w + 2 * pad[1] - kw) // stride + 1
        wt = self._he((cout, kh, kw, c), kh * kw * c) if weight is None else np.asarray(weight, float)
        b = np.zeros(cout) if bias is None else np.asarray(bias, float)
        return self._add("conv", [x], (oh, ow, cout), weight=wt, bias=b, stride=stride, pad=pad, act=act)

    def pointwise(self, cout, act=None, x=None, **kw) -> str:
        return self.conv(cout, k=1, act=act, x=x, **kw)

    def dwconv(self, k=3, stride=1, act="relu6", x=None, pad=None, weight=None, bias=None) -> str:
        x = x or self.last
        h, w, c = self.shapes[x]
        p = (k - 1) // 2 if pad is None else pad
        oh, ow = (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1
        wt = self._he((c, k, k), k * k) if weight is None else np.asarray(weight, float)
        b = np.zeros(c) if bias is None else np.asarray(bias, float)
        return self._add("dwconv", [x], (oh, ow, c), weight=wt, bias=b, stride=stride, pad=(p, p), act=act)

    def fc(self, n, act=None, x=None, weight=None, bias=None) -> str:
        """Fully connected over the whole input: a conv whose kernel covers it."""
        x = x or self.last
        h, w, c = self.shapes[x]
        return self.conv(n, k=(h, w), act=act, x=x, pad=(0, 0), weight=weight, bias=bias)

    def add(self, a, b, act=None) -> str:
        if self.shapes[a] != self.shapes[b]:
            raise ValueError(f"add of shapes {self.shapes[a]} and {self.shapes[b]}")
        return self._add("add", [a, b], self.shapes[a], act=act)

    def avgpool(self, x=None) -> str:
        x = x or self.last
        return self._add("avgpool", [x], (1, 1, self.shapes[x][2]))

    def maxpool(self, k=2, stride=None, pad=0, x=None) -> str:
        return self._window_pool("maxpool", k, stride, pad, x, False)

    def avgpool2d(self, k=2, stride=None, pad=0, x=None, count_pad=False) -> str:
        return self._window_pool("avgpool2d", k, stride, pad, x, count_pad)

    def _window_pool(self, kind, k, stride, pad, x, count_pad) -> str:
        x = x or self.last
        h, w, c = self.shapes[x]
        kh, kw = (k, k) if np.isscalar(k) else k
        stride = stride or kh
        pad = (pad, pad) if np.isscalar(pad) else tuple(pad)
        oh, ow = (h + 2 * pad[0] - kh) // stride + 1, (w + 2 * pad[1] - kw) // stride + 1
        return self._add(kind, [x], (oh, ow, c), pool=(kh, kw), stride=stride, pad=pad, out_hw=(oh, ow),
                         count_pad=count_pad)

    def activation(self, fn, x=None) -> str:
        """sigmoid, tanh, hardswish or leaky_relu:ALPHA (activations.py), run by table."""
        activations.parse(fn)
        x = x or self.last
        return self._add("lut", [x], self.shapes[x], fn=fn)

    # -- float execution ----------------------------------------------------
    def forward(self, x) -> dict:
        """Float activations of every tensor for a batch x of shape (N, h, w, c)."""
        return floatops.forward(self.layers, np.asarray(x, dtype=np.float64),
                                lambda L, xi: (self.conv_layer_forward(L, xi), None))

    def conv_layer_forward(self, L: FloatLayer, x) -> np.ndarray:
        """A conv or depthwise layer before its activation (top/left padding;
        the output shape implies the rest)."""
        return conv_forward(x, L.weight, L.bias, L.stride, L.pad, L.kind == "dwconv")

    # -- quantisation -------------------------------------------------------
    def quantize(self, calib_x, input_range=None) -> QGraph:
        """Per-channel symmetric int8 weights, per-tensor asymmetric int8
        activations with ranges from calib_x (N, h, w, c)."""
        calib_x = np.asarray(calib_x, dtype=np.float64).reshape((-1,) + self.input_shape)
        acts = self.forward(calib_x)
        tensors = {}
        for name, a in acts.items():
            lo, hi = (input_range if name == "input" and input_range else (a.min(), a.max()))
            lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
            if hi - lo < 1e-8:
                hi = lo + 1e-8
            scale = (hi - lo) / 255.0
            zero = int(np.clip(np.round(-128 - lo / scale), -128, 127))
            tensors[name] = QTensor(name, self.shapes[name], scale, zero)
        for L in self.layers:  # a max pool's output is one of its inputs: same quantisation
            if L.kind == "maxpool":
                x = tensors[L.inputs[0]]
                tensors[L.output] = QTensor(L.output, self.shapes[L.output], x.scale, x.zero)
        layers = []
        for L in self.layers:
            x = tensors[L.inputs[0]]
            y = tensors[L.output]
            act_min, act_max = -128, 127
            if L.act in ("relu", "relu6"):
                act_min = max(-128, y.zero)
            if L.act == "relu6":
                act_max = int(min(127, y.zero + np.round(6.0 / y.scale)))
            q = QLayer(L.name, L.kind, L.inputs, L.output, stride=L.stride, pad=L.pad,
                       act_min=act_min, act_max=act_max)
            if L.kind in ("conv", "dwconv"):
                axes = tuple(range(1, L.weight.ndim))
                s_w = np.abs(L.weight).max(axis=axes) / 127.0
                s_w = np.where(s_w > 0, s_w, 1e-8).astype(np.float32)
                shape = (-1,) + (1,) * (L.weight.ndim - 1)
                q.weight = np.clip(np.round(L.weight / s_w.reshape(shape)), -127, 127).astype(np.int8)
                q.w_scale = s_w
                q.bias = np.clip(np.round(L.bias / (s_w.astype(np.float64) * x.scale)),
                                 -(2 ** 30), 2 ** 30).astype(np.int32)
            elif L.kind in ("maxpool", "avgpool2d"):
                q.pool, q.count_pad = tuple(L.pool), L.count_pad
            elif L.kind == "lut":
                q.fn = L.fn
                q.table, q.table_grad, q.table_grad_shift = activations.tables(L.fn, x.scale, x.zero,
                                                                               y.scale, y.zero)
            layers.append(q)
        graph = QGraph(tensors, layers, "input", self.last)
        graph.check()
        return graph


def quantize_input(graph: QGraph, x) -> np.ndarray:
    """Float inputs (..., h, w, c) to the int8 the model takes."""
    t = graph.tensors[graph.input]
    return np.clip(np.round(np.asarray(x) / t.scale + t.zero), -128, 127).astype(np.int8)
