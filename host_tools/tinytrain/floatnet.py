"""Float64 training of `NetBuilder` networks on the host (numpy).

    net = FloatNet(builder)                          # copies the builder's float weights
    hist = train(net, x, y, epochs=10, lr=0.05, batch_size=32, momentum=0.9,
                 weight_decay=1e-4, seed=0)         # minibatch SGD, softmax cross-entropy
    graph = builder.quantize(calib_x)                # train() wrote the weights back

Forward and backward of every layer come from `tinytrain.floatops` (the one
float network, which NetBuilder's calibration runs too); this module holds
the parameters, the backward pass over the graph and the optimiser. A small
1-D CNN trains on a few thousand windows in seconds.

Only some parameters can be made trainable (`trainable`, and `masks` for a
subset of a tensor's elements), which gives the float reference of a sparse
on-device training scheme: `scheme_trainable(graph, scheme)` builds both
from a compiler `Scheme`.
"""
from __future__ import annotations

import numpy as np

from .builder import NetBuilder
from .floatops import act_grad, conv_backward, conv_forward_cached, forward


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
        caches = {} if cache else None
        out = forward(self.layers, x, self._conv, caches)[self.output]
        logits = out.reshape(out.shape[0], -1)
        return (logits, caches) if cache else logits

    def _conv(self, L, x):
        return conv_forward_cached(x, self.params[(L.name, "weight")], self.params[(L.name, "bias")],
                                   L.stride, L.pad, L.kind == "dwconv")

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
            dy = act_grad(dacts.pop(L.output), pre, L.act)
            want = [need_input_grad and i == "input" or i in self._needs for i in L.inputs]
            if L.kind in ("conv", "dwconv"):
                w = self.params[(L.name, "weight")]
                if not (want[0] or (L.name, "weight") in tr or (L.name, "bias") in tr):
                    continue
                dx, dw, db = conv_backward(dy, xp, x_shape, w, L.stride, L.pad, L.kind == "dwconv",
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
            elif L.kind != "avgpool":
                raise ValueError(f"layer {L.name}: float training has no backward for {L.kind!r}")
            else:
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
