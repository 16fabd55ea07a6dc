"""The float64 network: forward and backward of every layer kind NetBuilder
makes (conv of any kernel, stride and top/left padding; depthwise; pointwise
and fc as convs; add; global average pool; relu, relu6). One implementation,
used by NetBuilder (calibration, converters) and FloatNet (training).

Convs run as one matmul per kernel tap; fc (a conv whose kernel covers its
input) as one matmul. The gradient of relu (relu6) is 1 where 0 < y
(0 < y < 6) before the clamp, 0 elsewhere, as in the device's clamp masks.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import activations

ACTS = (None, "relu", "relu6")


def apply_act(y, act):
    if act == "relu":
        return np.maximum(y, 0)
    if act == "relu6":
        return np.clip(y, 0, 6)
    return y


def act_grad(dy, pre, act):
    if act == "relu":
        return dy * (pre > 0)
    if act == "relu6":
        return dy * ((pre > 0) & (pre < 6))
    return dy


def pad_input(x, kh, kw, stride, pad):
    """(x padded top/left by pad and bottom/right as far as the output needs, oh, ow)."""
    n, h, w, c = x.shape
    oh = (h + 2 * pad[0] - kh) // stride + 1
    ow = (w + 2 * pad[1] - kw) // stride + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel {kh}x{kw} does not fit input {h}x{w} with padding {pad}")
    hp = max(pad[0] + h, (oh - 1) * stride + kh)
    wp = max(pad[1] + w, (ow - 1) * stride + kw)
    if (hp, wp) == (h, w):
        return x, oh, ow
    xp = np.zeros((n, hp, wp, c))
    xp[:, pad[0]:pad[0] + h, pad[1]:pad[1] + w] = x
    return xp, oh, ow


def _tap(a, i, j, oh, ow, stride):
    return a[:, i:i + (oh - 1) * stride + 1:stride, j:j + (ow - 1) * stride + 1:stride]


def conv_forward_cached(x, w, b, stride, pad, depthwise=False):
    """y (pre-activation, NHWC) and the padded input (the cache of the backward pass).
    w: conv (cout, kh, kw, cin), depthwise (c, kh, kw)."""
    kh, kw = w.shape[1:3]
    xp, oh, ow = pad_input(x, kh, kw, stride, pad)
    n = x.shape[0]
    cout = w.shape[0]
    if not depthwise and oh == 1 and ow == 1:  # fc: the kernel covers the (padded) input
        y = xp[:, :kh, :kw, :].reshape(n, -1) @ w.reshape(cout, -1).T + b
        return y.reshape(n, 1, 1, cout), xp
    y = np.empty((n, oh, ow, cout))
    y[...] = b
    for i in range(kh):
        for j in range(kw):
            patch = _tap(xp, i, j, oh, ow, stride)
            if depthwise:
                y += patch * w[:, i, j]
            else:
                y += patch @ w[:, i, j, :].T
    return y, xp


def conv_forward(x, w, b, stride, pad, depthwise=False):
    """Float conv, NHWC, top/left padding `pad`, bottom/right whatever the output needs."""
    return conv_forward_cached(x, w, b, stride, pad, depthwise)[0]


def conv_backward(dy, xp, x_shape, w, stride, pad, depthwise=False, need_dx=True):
    """(dx, dw, db) of conv_forward_cached; dx is None when not needed."""
    kh, kw = w.shape[1:3]
    n, oh, ow, cout = dy.shape
    db = dy.sum(axis=(0, 1, 2))
    dxp = np.zeros_like(xp) if need_dx else None
    if not depthwise and oh == 1 and ow == 1:
        flat = xp[:, :kh, :kw, :].reshape(n, -1)
        d2 = dy.reshape(n, cout)
        dw = (d2.T @ flat).reshape(w.shape)
        if need_dx:
            dxp[:, :kh, :kw, :] = (d2 @ w.reshape(cout, -1)).reshape(n, kh, kw, -1)
    else:
        dw = np.empty_like(w)
        d2 = dy.reshape(-1, cout)
        for i in range(kh):
            for j in range(kw):
                patch = _tap(xp, i, j, oh, ow, stride)
                if depthwise:
                    dw[:, i, j] = (dy * patch).sum(axis=(0, 1, 2))
                    if need_dx:
                        _tap(dxp, i, j, oh, ow, stride)[...] += dy * w[:, i, j]
                else:
                    dw[:, i, j, :] = d2.T @ patch.reshape(-1, patch.shape[-1])
                    if need_dx:
                        _tap(dxp, i, j, oh, ow, stride)[...] += dy @ w[:, i, j, :]
    dx = None
    if need_dx:
        h, wd = x_shape[1:3]
        dx = dxp[:, pad[0]:pad[0] + h, pad[1]:pad[1] + wd]
    return dx, dw, db


def window_pool(x, kind, pool, stride, pad, out_hw, count_pad=False):
    """Max or average pool (N, h, w, c) over kh x kw windows, top/left
    padding pad, output out_hw; padding is never the maximum, and counts in an
    average only with count_pad."""
    (kh, kw), (oh, ow) = pool, out_hw
    n, h, w, c = x.shape
    y = np.empty((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * stride - pad[0], j * stride - pad[1]
            win = x[:, max(h0, 0):min(h0 + kh, h), max(w0, 0):min(w0 + kw, w)]
            if kind == "maxpool":
                y[:, i, j] = win.max(axis=(1, 2))
            else:
                y[:, i, j] = win.sum(axis=(1, 2)) / (kh * kw if count_pad else win.shape[1] * win.shape[2])
    return y


def forward(layers: list, x, conv: Callable, caches: dict | None = None) -> dict:
    """Float activations {tensor: array} of every tensor for a batch x (N, h, w, c).

    layers: FloatLayer-like (name, kind, inputs, output, act, ...) in order.
    conv(layer, x) -> (pre-activation, padded input): a conv or depthwise
    layer with whatever parameters the caller holds. caches: a dict to fill
    with {layer: (padded input, input shape, pre-activation)} for backward()."""
    acts = {"input": x}
    for L in layers:
        xs = [acts[i] for i in L.inputs]
        xp, x_shape = None, xs[0].shape
        if L.kind in ("conv", "dwconv"):
            pre, xp = conv(L, xs[0])
        elif L.kind == "add":
            pre, x_shape = xs[0] + xs[1], None
        elif L.kind == "avgpool":
            pre = xs[0].mean(axis=(1, 2), keepdims=True)
        elif L.kind in ("maxpool", "avgpool2d"):
            pre = window_pool(xs[0], L.kind, L.pool, L.stride, L.pad, L.out_hw, L.count_pad)
        elif L.kind == "lut":
            pre = activations.value(L.fn, xs[0])
        else:
            raise ValueError(f"layer kind {L.kind!r} is not supported")
        if caches is not None:
            caches[L.name] = (xp, x_shape, pre)
        acts[L.output] = apply_act(pre, L.act)
    return acts
