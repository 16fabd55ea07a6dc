"""The int8 models published with "On-Device Training Under 256KB Memory"
(MCUNet-5fps, MobileNetV2-w0.35, ProxylessNAS-w0.3), read without trusting
pickle, and their published sparse-update schemes.
"""
from __future__ import annotations

import importlib
import io
import pickle
import zipfile

import numpy as np

from ..compiler import Scheme
from ..graph import QGraph, QLayer, QTensor
from .head import new_head

# Only what numpy arrays need to unpickle; everything else is refused.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a model file")
        return getattr(importlib.import_module(module), name)


def load_raw(path) -> dict:
    """The dict inside a torch.save zip, unpickled with the restricted unpickler."""
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith("data.pkl")]
        if len(names) != 1:
            raise ValueError(f"{path}: expected one data.pkl in the archive, found {len(names)}")
        return _RestrictedUnpickler(io.BytesIO(z.read(names[0]))).load()


# Published schemes: (n_bias_update, manual_weight_idx, weight_update_ratio).
PUBLISHED = {
    "mcunet-5fps": {
        "49kb": (20, [23, 24, 27, 30, 33, 39], [0, 0.25, 0.5, 0.5, 0, 0]),
        "74kb": (21, [21, 23, 24, 26, 27, 30], [1, 0, 1, 0, 0.5, 1]),
        "99kb": (22, [21, 24, 27, 30, 36, 39], [1, 1, 1, 1, 0.125, 0.25]),
        "124kb": (24, [21, 24, 27, 30, 33, 39], [0.25, 1, 1, 1, 0.5, 0.5]),
        "148kb": (23, [21, 24, 27, 30, 36, 39], [1, 1, 1, 1, 1, 0.5]),
    },
    "mbv2-w0.35": {
        "49kb": (16, [36, 39, 40, 41, 42, 45, 48, 49], [1, 1, 0, 0.25, 0.125, 0.125, 0.125, 0.125]),
        "99kb": (25, [27, 30, 33, 36, 39, 42, 45, 48], [1, 1, 1, 1, 1, 0.125, 0.5, 1]),
        "138kb": (34, [27, 30, 33, 36, 39, 42, 45, 48], [1] * 8),
    },
    "proxyless-w0.3": {
        "49kb": (21, [39, 42, 44, 45, 50, 51, 54, 57], [0.25, 1, 0, 1, 0, 0.125, 0.25, 0.25]),
        "98kb": (25, [36, 39, 42, 45, 48, 51, 54, 57], [1, 0.5, 1, 1, 0.25, 0.5, 1, 1]),
        "148kb": (45, [36, 39, 42, 45, 48, 51, 54, 57], [1] * 8),
    },
}


def _conv_layer(name, conv, x: QTensor, tensors: dict) -> tuple:
    p = conv["params"]
    w = np.asarray(p["weight"], dtype=np.int8)
    kh, kw = conv["kernel_size"]
    stride = int(conv["stride"])
    depthwise = bool(conv.get("depthwise")) or conv.get("groups", 1) == conv["in_channel"] > 1
    if abs(float(p["x_scale"]) - x.scale) > 1e-6 * x.scale or int(p["x_zero"]) != x.zero:
        raise ValueError(f"{name}: input quantisation {p['x_scale']}/{p['x_zero']} differs from "
                         f"the tensor feeding it ({x.scale}/{x.zero})")
    h = x.shape[0]
    pad = ((kh - 1) // 2, (kw - 1) // 2)
    oh = (h + 2 * pad[0] - kh) // stride + 1
    ow = (x.shape[1] + 2 * pad[1] - kw) // stride + 1
    cout = int(conv["out_channel"])
    y = QTensor(name, (oh, ow, cout), float(p["y_scale"]), int(p["y_zero"]))
    tensors[name] = y
    if depthwise:
        weight = w.reshape(cout, kh, kw)
        kind = "dwconv"
    else:
        weight = np.ascontiguousarray(w.transpose(0, 2, 3, 1))
        kind = "conv"
    layer = QLayer(name, kind, [x.name], name, weight=weight,
                   bias=np.asarray(p["bias"], dtype=np.int32),
                   w_scale=np.asarray(p["w_scales"], dtype=np.float32).reshape(-1),
                   stride=stride, pad=pad)
    return layer, y


def to_graph(raw: dict, n_classes: int | None = None, head: str = "first",
             seed: int = 0) -> QGraph:
    """QGraph of a published model. n_classes: keep the first N rows of the
    classifier (head='first') or a fresh random head (head='fresh')."""
    tensors: dict = {}
    layers: list = []
    fc = raw["first_conv"]
    hw = int(fc["in_shape"])
    x = QTensor("input", (hw, hw, int(fc["in_channel"])), float(fc["params"]["x_scale"]),
                int(fc["params"]["x_zero"]))
    tensors["input"] = x
    layer, x = _conv_layer("conv0", fc, x, tensors)
    layers.append(layer)
    idx = 1
    for bi, blk in enumerate(raw["blocks"]):
        block_in = x
        for part in ("pointwise1", "depthwise", "pointwise2"):
            if blk.get(part) is None:
                continue
            layer, x = _conv_layer(f"conv{idx}", blk[part], x, tensors)
            layers.append(layer)
            idx += 1
        if blk.get("se") is not None:
            raise ValueError(f"block {bi}: squeeze-excite is not supported")
        res = blk.get("residual")
        if res is not None:
            rp = res["params"]
            y = QTensor(f"add{bi}", x.shape, float(rp["y_scale"]), int(rp["y_zero"]))
            tensors[y.name] = y
            layers.append(QLayer(y.name, "add", [block_in.name, x.name], y.name))
            x = y
    if raw.get("feature_mix") is not None:
        layer, x = _conv_layer(f"conv{idx}", raw["feature_mix"], x, tensors)
        layers.append(layer)
        idx += 1
    cls = raw["classifier"]
    cp = cls["params"]
    pooled = QTensor("pool", (1, 1, x.shape[2]), float(cp["x_scale"]), int(cp["x_zero"]))
    tensors["pool"] = pooled
    layers.append(QLayer("pool", "avgpool", [x.name], "pool"))
    w = np.asarray(cp["weight"], dtype=np.int8).reshape(int(cls["out_channel"]), -1)
    b = np.asarray(cp["bias"], dtype=np.int32)
    sw = np.asarray(cp["w_scales"], dtype=np.float32).reshape(-1)
    if n_classes is not None:
        w, b, sw = new_head(w, b, sw, n_classes, head, seed)
    n = w.shape[0]
    tensors["logits"] = QTensor("logits", (1, 1, n), float(cp["y_scale"]), int(cp["y_zero"]))
    layers.append(QLayer("classifier", "conv", ["pool"], "logits", weight=w.reshape(n, 1, 1, -1),
                         bias=b, w_scale=sw))
    g = QGraph(tensors, layers, "input", "logits", meta={"backbone_convs": idx})
    g.meta["dead_channels_guarded"] = g.guard_dead_channels()
    g.check()
    return g


def load(path, n_classes: int | None = None, head: str = "first", seed: int = 0) -> QGraph:
    return to_graph(load_raw(path), n_classes, head, seed)


def published_scheme(graph: QGraph, model: str, label: str, **kw) -> Scheme:
    """A published scheme, e.g. published_scheme(g, 'mcunet-5fps', '99kb')."""
    try:
        n_bias, idx, ratios = PUBLISHED[model][label]
    except KeyError:
        known = ", ".join(f"{m}:{s}" for m in PUBLISHED for s in PUBLISHED[m])
        raise ValueError(f"no published scheme {model}:{label}; known: {known}") from None
    params = [layer.name for layer in graph.param_layers]
    convs, head = params[:-1], params[-1]
    if max(idx) >= len(convs) or n_bias > len(convs):
        raise ValueError(f"{model}:{label} needs {max(idx) + 1} backbone convolutions, "
                         f"this model has {len(convs)}")
    bias = set(convs[len(convs) - n_bias:]) | {head}
    weights = {head: 1.0}
    for i, r in zip(idx, ratios):
        if r > 0:
            weights[convs[i]] = float(r)
    return Scheme(bias=bias, weights=weights, **kw)
