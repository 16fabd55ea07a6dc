"""Float64 training of `NetBuilder` networks on the host (numpy).

    net = FloatNet(builder)                          # copies the builder's float weights
    hist = train(net, x, y, epochs=10, lr=0.05, batch_size=32, momentum=0.9,
                 weight_decay=1e-4, seed=0)         # minibatch SGD, softmax cross-entropy
    graph = builder.quantize(calib_x)                # train() wrote the weights back

Forward and backward for every layer kind the builder makes: conv (any
kernel, stride, top/left padding as in `builder.conv_forward`), depthwise,
pointwise and fc (convs), add, global average pool, relu and relu6. Convs
run as one matmul per kernel tap (fc, whose kernel covers its input: one
matmul), so a small 1-D CNN trains on a few thousand windows in seconds.

Only some parameters can be made trainable (`trainable`, and `masks` for a
subset of a tensor's elements), which gives the float reference of a sparse
on-device training scheme: `scheme_trainable(graph, scheme)` builds both
from a compiler `Scheme`.

The gradient of relu (relu6) is 1 where 0 < y (0 < y < 6) before the clamp,
0 elsewhere, as in the device's clamp masks.
"""
from __future__ import annotations

import numpy as np

from .builder import NetBuilder, apply_act


def _act_grad(dy, pre, act):
    if act == "relu":
        return dy * (pre > 0)
    if act == "relu6":
        return dy * ((pre > 0) & (pre < 6))
    return dy


def _pad(x, kh, kw, stride, pad):
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


def conv_fwd(x, w, b, stride, pad, depthwise=False):
    """y (pre-activation) and the padded input (the cache of the backward pass)."""
    kh, kw = w.shape[1:3]
    xp, oh, ow = _pad(x, kh, kw, stride, pad)
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


def conv_bwd(dy, xp, x_shape, w, stride, pad, depthwise=False, need_dx=True):
    """(dx, dw, db) of conv_fwd; dx is None when not needed."""
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


def softmax_cross_entropy(logits, y):
    """Mean loss over the batch and its gradient with respect to the logits (N, C)."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    n = len(y)
    idx = np.arange(n), np.asarray(y, dtype=np.int64)
    loss = float(np.mean(np.log(s[:, 0]) - z[idx]))
    d = e / s
    d[idx] -= 1.0
    return loss, d / n


class FloatNet:
    """A builder's network with its own float64 copy of the parameters.

    trainable: None (every weight and bias) or an iterable of (layer name,
    'weight' | 'bias'). masks: {(layer name, 'weight'|'bias'): 0/1 array of the
    parameter's shape}, multiplied into the gradient (a partly trained tensor).
    """

    def __init__(self, builder: NetBuilder, trainable=None, masks=None):
        self.builder = builder
        self.layers = builder.layers
        self.input_shape = builder.input_shape
        self.output = builder.last
        self.params = {}
        for L in self.layers:
            if L.kind in ("conv", "dwconv"):
                self.params[(L.name, "weight")] = np.array(L.weight, dtype=np.float64)
                self.params[(L.name, "bias")] = np.array(L.bias, dtype=np.float64)
        if trainable is None:
            self.trainable = list(self.params)
        else:
            self.trainable = [tuple(k) for k in trainable]
            unknown = [k for k in self.trainable if k not in self.params]
            if unknown:
                raise ValueError(f"unknown parameters {unknown}; known: {list(self.params)}")
        self.masks = {tuple(k): np.asarray(v, dtype=np.float64) for k, v in (masks or {}).items()}
        # Which tensors need a gradient: downstream of a trainable parameter.
        layers_tr = {k[0] for k in self.trainable}
        self._needs = set()
        for L in self.layers:
            if L.name in layers_tr or any(i in self._needs for i in L.inputs):
                self._needs.add(L.output)

    # -- parameters ------------------------------------------------------
    def write_back(self) -> None:
        """Copy the parameters into the builder's FloatLayer objects."""
        for L in self.layers:
            if (L.name, "weight") in self.params:
                L.weight = self.params[(L.name, "weight")].copy()
                L.bias = self.params[(L.name, "bias")].copy()

    def state(self) -> dict:
        return {k: v.copy() for k, v in self.params.items()}

    def load_state(self, state: dict) -> None:
        for k, v in state.items():
            self.params[k][...] = v

    # -- forward / backward ----------------------------------------------
    def forward(self, x, cache=False):
        """Logits (N, C); with cache=True also the caches for backward()."""
        x = np.asarray(x, dtype=np.float64).reshape((-1,) + self.input_shape)
        acts = {"input": x}
        caches = {}
        for L in self.layers:
            xs = [acts[i] for i in L.inputs]
            if L.kind in ("conv", "dwconv"):
                pre, xp = conv_fwd(xs[0], self.params[(L.name, "weight")], self.params[(L.name, "bias")],
                                   L.stride, L.pad, L.kind == "dwconv")
                if cache:
                    caches[L.name] = (xp, xs[0].shape, pre)
            elif L.kind == "add":
                pre = xs[0] + xs[1]
                if cache:
                    caches[L.name] = (None, None, pre)
            elif L.kind == "avgpool":
                pre = xs[0].mean(axis=(1, 2), keepdims=True)
                if cache:
                    caches[L.name] = (None, xs[0].shape, pre)
            else:
                raise ValueError(f"layer kind {L.kind!r} is not supported")
            acts[L.output] = apply_act(pre, L.act)
        out = acts[self.output]
        logits = out.reshape(out.shape[0], -1)
        return (logits, caches) if cache else logits

    def backward(self, caches, dlogits, need_input_grad=False):
        """Gradients {param key: array} of the trainable parameters (masked);
        with need_input_grad also the gradient of the input, as (grads, dx)."""
        grads = {}
        tr = set(self.trainable)
        out_shape = caches[self.layers[-1].name][2].shape
        dacts = {self.output: np.asarray(dlogits, dtype=np.float64).reshape(out_shape)}

        def accumulate(name, g):
            if name in dacts:
                dacts[name] = dacts[name] + g
            else:
                dacts[name] = g

        for L in reversed(self.layers):
            if L.output not in dacts:
                continue
            xp, x_shape, pre = caches[L.name]
            dy = _act_grad(dacts.pop(L.output), pre, L.act)
            want = [need_input_grad and i == "input" or i in self._needs for i in L.inputs]
            if L.kind in ("conv", "dwconv"):
                w = self.params[(L.name, "weight")]
                if not (want[0] or (L.name, "weight") in tr or (L.name, "bias") in tr):
                    continue
                dx, dw, db = conv_bwd(dy, xp, x_shape, w, L.stride, L.pad, L.kind == "dwconv",
                                      need_dx=want[0])
                for key, g in (((L.name, "weight"), dw), ((L.name, "bias"), db)):
                    if key in tr:
                        grads[key] = g * self.masks[key] if key in self.masks else g
                if want[0]:
                    accumulate(L.inputs[0], dx)
            elif L.kind == "add":
                for i, name in enumerate(L.inputs):
                    if want[i]:
                        accumulate(name, dy)
            else:  # avgpool
                if want[0]:
                    h, wd = x_shape[1:3]
                    accumulate(L.inputs[0], np.broadcast_to(dy / (h * wd), x_shape).copy())
        if need_input_grad:
            return grads, dacts.get("input", np.zeros((out_shape[0],) + self.input_shape))
        return grads

    def loss_and_grads(self, x, y):
        logits, caches = self.forward(x, cache=True)
        loss, d = softmax_cross_entropy(logits, y)
        return loss, self.backward(caches, d)

    # -- evaluation ------------------------------------------------------
    def predict(self, x, batch_size: int = 1024) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape((-1,) + self.input_shape)
        return np.concatenate([self.forward(x[i:i + batch_size]).argmax(axis=1)
                               for i in range(0, len(x), batch_size)]) if len(x) else np.zeros(0, int)

    def accuracy(self, x, y) -> float:
        return float((self.predict(x) == np.asarray(y)).mean())


class SGD:
    """Minibatch SGD with momentum and L2 weight decay (weights only, not biases):
    v = momentum v + g + wd w; p -= lr v."""

    def __init__(self, net: FloatNet, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self.net, self.lr, self.momentum, self.weight_decay = net, lr, momentum, weight_decay
        self.v = {k: np.zeros_like(net.params[k]) for k in net.trainable}

    def step(self, grads: dict) -> None:
        for k, g in grads.items():
            p = self.net.params[k]
            if self.weight_decay and k[1] == "weight":
                g = g + self.weight_decay * (p * self.net.masks[k] if k in self.net.masks else p)
            if self.momentum:
                v = self.v[k]
                v *= self.momentum
                v += g
                g = v
            p -= self.lr * g


def train(net: FloatNet, x, y, epochs: int = 10, lr: float = 0.05, batch_size: int = 32,
          momentum: float = 0.9, weight_decay: float = 0.0, seed: int = 0, lr_schedule: str = "cosine",
          orders=None, callback=None, progress=None, write_back: bool = True) -> list:
    """Minibatch SGD on softmax cross-entropy; returns the mean training loss per epoch.

    orders: optional list of per-epoch sample orders (else a seeded shuffle).
    lr_schedule: 'constant' or 'cosine' (per step, from lr to 0).
    callback(step, n_seen): called after every step (e.g. to record a curve).
    progress: a tqdm-like object; update(1) per step.
    write_back: copy the trained parameters into the builder at the end.
    """
    x = np.asarray(x, dtype=np.float64).reshape((-1,) + net.input_shape)
    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if orders is None:
        orders = [rng.permutation(len(x)) for _ in range(epochs)]
    steps_per_epoch = [(len(o) + batch_size - 1) // batch_size for o in orders]
    total = sum(steps_per_epoch)
    opt = SGD(net, lr, momentum, weight_decay)
    history, step, seen = [], 0, 0
    for order in orders:
        losses = []
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            if lr_schedule == "cosine":
                opt.lr = 0.5 * lr * (1 + np.cos(np.pi * step / total))
            elif lr_schedule != "constant":
                raise ValueError("lr_schedule must be 'constant' or 'cosine'")
            loss, grads = net.loss_and_grads(x[idx], y[idx])
            opt.step(grads)
            losses.append(loss * len(idx))
            step += 1
            seen += len(idx)
            if progress is not None:
                progress.update(1)
            if callback is not None:
                callback(step, seen)
        history.append(float(np.sum(losses) / max(len(order), 1)))
    if write_back:
        net.write_back()
    return history


def scheme_trainable(graph, scheme) -> tuple:
    """(trainable, masks) for FloatNet that train what a compiler Scheme trains
    on the device: the biases of `scheme.bias` and the weights of the input
    channels (depthwise: channels) the compiler picks for each layer of
    `scheme.weights`. Layer names are shared by the builder and its QGraph."""
    from .compiler import choose_channels

    trainable, masks = [], {}
    for layer in graph.param_layers:
        if layer.name in scheme.bias:
            trainable.append((layer.name, "bias"))
        n = scheme.n_train(layer)
        if n:
            key = (layer.name, "weight")
            trainable.append(key)
            shape = layer.weight.shape
            total = shape[3] if layer.kind == "conv" else shape[0]
            if n < total:
                chosen = choose_channels(layer, n)[:n]
                m = np.zeros(shape)
                if layer.kind == "conv":
                    m[:, :, :, chosen] = 1.0
                else:
                    m[chosen] = 1.0
                masks[key] = m
    return trainable, masks
