"""Quantised network graph: what a model is before it is compiled into a file.

Layers are listed in a topological order. Activations are NHWC int8 with a
per-tensor scale and zero point; weights are int8, symmetric per output
channel; biases int32 at scale s_w[c] * s_x.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LAYER_KINDS = ("conv", "dwconv", "add", "avgpool", "maxpool", "avgpool2d", "lut")
WINDOW_POOLS = ("maxpool", "avgpool2d")


@dataclass
class QTensor:
    name: str
    shape: tuple  # (h, w, c)
    scale: float
    zero: int

    def __post_init__(self):
        # The file stores binary32; derive everything from that same value.
        self.scale = float(np.float32(self.scale))
        self.zero = int(self.zero)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class QLayer:
    name: str
    kind: str
    inputs: list
    output: str
    weight: np.ndarray | None = None  # int8 (cout, kh, kw, cin); depthwise (c, kh, kw)
    bias: np.ndarray | None = None  # int32 (cout,)
    w_scale: np.ndarray | None = None  # float32 (cout,)
    stride: int = 1
    pad: tuple = (0, 0)  # top, left
    act_min: int = -128
    act_max: int = 127
    pool: tuple | None = None  # maxpool, avgpool2d: (kh, kw)
    count_pad: bool = False  # avgpool2d: divide by kh*kw everywhere, padding included
    table: np.ndarray | None = None  # lut: int8 [256], output of input q at [q + 128]
    table_grad: np.ndarray | None = None  # lut: int16 [256], derivative * 2^table_grad_shift
    table_grad_shift: int = 0
    fn: str = ""  # lut: the function the tables hold (activations.py), for people

    @property
    def kernel(self) -> tuple:
        if self.kind == "conv":
            return self.weight.shape[1:3]
        if self.kind == "dwconv":
            return self.weight.shape[1:3]
        if self.kind in WINDOW_POOLS:
            return tuple(self.pool)
        return (1, 1)

    @property
    def has_params(self) -> bool:
        return self.kind in ("conv", "dwconv")


@dataclass
class QGraph:
    tensors: dict
    layers: list
    input: str
    output: str
    meta: dict = field(default_factory=dict)

    def layer(self, name: str) -> QLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer named {name!r}; layers are: {', '.join(self.layer_names)}")

    @property
    def input_layout(self) -> str:
        """The layout the source model took its input in: 'NCHW' (ONNX) or
        'NHWC' (TFLite, the paper's models). The graph itself is NHWC."""
        return self.meta.get("input_layout") or ("NCHW" if self.meta.get("source") == "onnx" else "NHWC")

    @property
    def layer_names(self) -> list:
        return [layer.name for layer in self.layers]

    @property
    def param_layers(self) -> list:
        return [layer for layer in self.layers if layer.has_params]

    def guard_dead_channels(self, rel_floor: float = 2.0 ** -12) -> int:
        """Raise weight scales below rel_floor * the layer's largest to that
        floor, requantising the channel's weights and bias to it. A dead
        channel (weights ~0, scale ~1e-9) otherwise carries an int32 bias near
        2^31 that can overflow the accumulator, and a QAS factor near 1e9.
        The real-valued channel changes by at most half a new weight step.
        Returns the number of channels changed."""
        changed = 0
        for layer in self.param_layers:
            sw = layer.w_scale.astype(np.float64)
            floor = float(sw.max()) * rel_floor
            low = sw < floor
            if not low.any():
                continue
            ratio = np.where(low, sw / floor, 1.0)
            shape = (-1,) + (1,) * (layer.weight.ndim - 1)
            layer.weight = np.clip(np.round(layer.weight * ratio.reshape(shape)), -127, 127).astype(np.int8)
            layer.bias = np.clip(np.round(layer.bias * ratio), -(2 ** 30), 2 ** 30).astype(np.int32)
            layer.w_scale = np.where(low, floor, sw).astype(np.float32)
            changed += int(low.sum())
        return changed

    def check(self) -> None:
        """Raise ValueError naming the first inconsistency."""
        produced = {self.input}
        if self.input not in self.tensors:
            raise ValueError(f"input tensor {self.input!r} is not defined")
        for layer in self.layers:
            if layer.kind not in LAYER_KINDS:
                raise ValueError(f"layer {layer.name}: unknown kind {layer.kind!r}")
            for name in layer.inputs:
                if name not in produced:
                    raise ValueError(f"layer {layer.name}: input {name!r} is not produced before it")
            if layer.output in produced:
                raise ValueError(f"layer {layer.name}: output {layer.output!r} is written twice")
            produced.add(layer.output)
            x = self.tensors[layer.inputs[0]]
            y = self.tensors[layer.output]
            if layer.kind in ("conv", "dwconv"):
                _check_conv(layer, x, y)
            elif layer.kind == "add":
                if len(layer.inputs) != 2 or any(self.tensors[n].shape != y.shape for n in layer.inputs):
                    raise ValueError(f"layer {layer.name}: add needs two inputs shaped like its output")
            elif layer.kind in WINDOW_POOLS:
                _check_window(layer, x, y)
            elif layer.kind == "lut":
                _check_table(layer, x, y)
            elif y.shape != (1, 1, x.shape[2]):
                raise ValueError(f"layer {layer.name}: pool output must be 1x1x{x.shape[2]}")
            if not -128 <= layer.act_min <= layer.act_max <= 127:
                raise ValueError(f"layer {layer.name}: clamp [{layer.act_min}, {layer.act_max}] invalid")
        if self.output not in produced:
            raise ValueError(f"output tensor {self.output!r} is not produced")


def _check_conv(layer: QLayer, x: QTensor, y: QTensor) -> None:
    w = layer.weight
    if w is None or w.dtype != np.int8:
        raise ValueError(f"layer {layer.name}: weights must be int8")
    if layer.kind == "conv":
        if w.ndim != 4 or w.shape[0] != y.shape[2] or w.shape[3] != x.shape[2]:
            raise ValueError(f"layer {layer.name}: weight shape {w.shape} does not fit "
                             f"{x.shape[2]} -> {y.shape[2]} channels")
    else:
        if w.ndim != 3 or w.shape[0] != x.shape[2] or y.shape[2] != x.shape[2]:
            raise ValueError(f"layer {layer.name}: depthwise weight shape {w.shape} does not fit "
                             f"{x.shape[2]} channels")
    cout = w.shape[0]
    if layer.bias is None or layer.bias.shape != (cout,):
        raise ValueError(f"layer {layer.name}: needs {cout} int32 biases")
    if layer.w_scale is None or layer.w_scale.shape != (cout,):
        raise ValueError(f"layer {layer.name}: needs {cout} weight scales")
    kh, kw = layer.kernel
    for axis, k, pad in ((0, kh, layer.pad[0]), (1, kw, layer.pad[1])):
        if not 0 <= pad < k:
            raise ValueError(f"layer {layer.name}: padding {pad} must be below kernel size {k}")
        if (y.shape[axis] - 1) * layer.stride >= x.shape[axis] + pad:
            raise ValueError(f"layer {layer.name}: output {y.shape[:2]} does not follow from "
                             f"input {x.shape[:2]}, kernel {kh}x{kw}, stride {layer.stride}")


def _check_window(layer: QLayer, x: QTensor, y: QTensor) -> None:
    kh, kw = layer.kernel
    if y.shape[2] != x.shape[2]:
        raise ValueError(f"layer {layer.name}: pool keeps the {x.shape[2]} channels")
    for axis, k, pad in ((0, kh, layer.pad[0]), (1, kw, layer.pad[1])):
        if not 0 <= pad < k or not 1 <= k <= 255:
            raise ValueError(f"layer {layer.name}: pool kernel {k} with padding {pad} invalid")
        if (y.shape[axis] - 1) * layer.stride >= x.shape[axis] + pad:
            raise ValueError(f"layer {layer.name}: output {y.shape[:2]} does not follow from "
                             f"input {x.shape[:2]}, kernel {kh}x{kw}, stride {layer.stride}")
    if layer.kind == "maxpool" and (x.scale, x.zero) != (y.scale, y.zero):
        raise ValueError(f"layer {layer.name}: max pool output must be quantised like its input")


def _check_table(layer: QLayer, x: QTensor, y: QTensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"layer {layer.name}: table output must be shaped like its input")
    t, d = layer.table, layer.table_grad
    if t is None or t.dtype != np.int8 or t.shape != (256,) or d is None or d.dtype != np.int16 \
            or d.shape != (256,):
        raise ValueError(f"layer {layer.name}: needs an int8 table and an int16 derivative table of 256")
    if not 0 <= layer.table_grad_shift <= 62:
        raise ValueError(f"layer {layer.name}: derivative shift {layer.table_grad_shift} outside [0, 62]")
