"""tinytrain.floatnet: float64 training of NetBuilder networks.

Gradients against central finite differences on a small net with every layer
kind, SGD's update rule, trainable subsets, write-back into the builder, and
that it learns a toy task (also after int8 quantisation, in the simulator)."""
import time

import numpy as np
import pytest

import tinytrain
from tinytrain.builder import NetBuilder, quantize_input
from tinytrain.compiler import Scheme, compile_model
from tinytrain.floatnet import SGD, FloatNet, scheme_trainable, softmax_cross_entropy, train


def small_net(seed=1):
    """conv (rectangular, stride 2, top/left padding), depthwise, pointwise,
    add, conv (1x3), avgpool, fc; relu, relu6 and none."""
    b = NetBuilder((3, 11, 4), seed=seed)
    c1 = b.conv(6, k=(2, 3), stride=2, act="relu", pad=(1, 1))
    b.dwconv(3, act="relu6")
    p1 = b.pointwise(6, act=None)
    a = b.add(c1, p1, act="relu")
    b.conv(5, k=(1, 3), stride=1, act="relu6", x=a)
    b.dwconv(3, stride=2, act=None, pad=1)
    b.avgpool()
    b.fc(4)
    rng = np.random.default_rng(5)
    for L in b.layers:  # nonzero biases: no pre-activation sits exactly on a kink
        if L.bias is not None:
            L.bias = rng.normal(0, 0.3, L.bias.shape)
    # large enough that some relu6 units saturate at 6
    b.layers[1].weight *= 4.0
    return b


def numeric_grad(f, p, eps=1e-6):
    g = np.zeros_like(p)
    for idx in np.ndindex(p.shape):
        old = p[idx]
        p[idx] = old + eps
        lp = f()
        p[idx] = old - eps
        lm = f()
        p[idx] = old
        g[idx] = (lp - lm) / (2 * eps)
    return g


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.normal(size=(5, 3, 11, 4)), rng.integers(0, 4, 5)


def test_forward_matches_builder(batch):
    b = small_net()
    x, _ = batch
    net = FloatNet(b)
    ref = b.forward(x)[b.last].reshape(len(x), -1)
    assert np.allclose(net.forward(x), ref, atol=1e-12)


def test_every_layer_kind_is_exercised(batch):
    b = small_net()
    acts = b.forward(batch[0])
    kinds = {L.kind for L in b.layers}
    assert kinds == {"conv", "dwconv", "add", "avgpool"}
    assert {L.act for L in b.layers} == {None, "relu", "relu6"}
    relu6_out = acts[b.layers[1].output]  # the gradient check covers both clamps of relu6
    assert (relu6_out == 6).any() and (relu6_out == 0).any() and ((relu6_out > 0) & (relu6_out < 6)).any()


def test_gradients_match_finite_differences(batch):
    b = small_net()
    x, y = batch
    net = FloatNet(b)
    logits, caches = net.forward(x, cache=True)
    _, d = softmax_cross_entropy(logits, y)
    grads, dx = net.backward(caches, d, need_input_grad=True)
    assert set(grads) == set(net.params)

    def loss():
        return softmax_cross_entropy(net.forward(x), y)[0]

    for key, g in grads.items():
        num = numeric_grad(loss, net.params[key])
        assert np.abs(g).max() > 1e-4, key
        np.testing.assert_allclose(g, num, atol=1e-7, rtol=1e-5, err_msg=str(key))
    xv = x.copy()

    def loss_x():
        return softmax_cross_entropy(net.forward(xv), y)[0]

    np.testing.assert_allclose(dx, numeric_grad(loss_x, xv), atol=1e-7, rtol=1e-5)


def test_softmax_cross_entropy():
    z = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    y = np.array([1, 2])
    loss, d = softmax_cross_entropy(z, y)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[[0, 1], y])))
    assert np.allclose(d, (p - np.eye(3)[y]) / 2)


def test_trainable_subset_and_masks(batch):
    b = small_net()
    x, y = batch
    full = FloatNet(b).loss_and_grads(x, y)[1]
    mask = np.zeros_like(b.layers[-1].weight)
    mask[..., :2] = 1.0
    names = [L.name for L in b.layers if L.weight is not None]
    net = FloatNet(b, trainable=[(names[0], "bias"), (names[-1], "weight")], masks={(names[-1], "weight"): mask})
    _, g = net.loss_and_grads(x, y)
    assert set(g) == {(names[0], "bias"), (names[-1], "weight")}
    np.testing.assert_allclose(g[(names[0], "bias")], full[(names[0], "bias")], rtol=1e-12)
    np.testing.assert_allclose(g[(names[-1], "weight")], full[(names[-1], "weight")] * mask, rtol=1e-12)
    with pytest.raises(ValueError, match="unknown parameters"):
        FloatNet(b, trainable=[("nope", "bias")])


def test_sgd_momentum_and_weight_decay():
    b = NetBuilder((1, 1, 2), seed=0)
    b.fc(2, weight=np.ones((2, 1, 1, 2)), bias=np.ones(2))
    net = FloatNet(b)
    opt = SGD(net, lr=0.1, momentum=0.5, weight_decay=0.01)
    kw, kb = (b.last, "weight"), (b.last, "bias")
    g = {kw: np.full((2, 1, 1, 2), 2.0), kb: np.full(2, 2.0)}
    opt.step(g)  # v = g + wd w = 2.01 (bias: no decay, 2)
    assert np.allclose(net.params[kw], 1 - 0.1 * 2.01)
    assert np.allclose(net.params[kb], 1 - 0.1 * 2.0)
    w1 = net.params[kw].copy()
    opt.step(g)  # v = 0.5 * 2.01 + 2 + 0.01 w1
    assert np.allclose(net.params[kw], w1 - 0.1 * (0.5 * 2.01 + 2 + 0.01 * w1))
    assert np.allclose(b.layers[0].weight, 1.0), "the builder changes only on write_back"
    net.write_back()
    assert np.allclose(b.layers[0].weight, net.params[kw])


def toy_signals(n, rng):
    """Three classes of 1-D, 2-channel signals: a sine of frequency 2, 5 or 9
    cycles per window with random phase, amplitude and noise."""
    t = np.arange(64) / 64
    y = rng.integers(0, 3, n)
    f = np.array([2.0, 5.0, 9.0])[y]
    ph = rng.uniform(0, 2 * np.pi, n)
    a = rng.uniform(0.5, 1.5, n)
    s = a[:, None] * np.sin(2 * np.pi * f[:, None] * t[None] + ph[:, None])
    x = np.stack([s, np.roll(s, 3, axis=1) * 0.5], axis=-1) + 0.3 * rng.normal(size=(n, 64, 2))
    return x[:, None], y  # (n, 1, 64, 2)


def toy_net(seed):
    b = NetBuilder((1, 64, 2), seed=seed)
    b.conv(8, k=(1, 5), stride=2, act="relu6")
    b.conv(16, k=(1, 5), stride=2, act="relu6")
    b.avgpool()
    b.fc(3)
    return b


def test_learns_a_toy_task_and_quantises():
    rng = np.random.default_rng(0)
    x, y = toy_signals(1500, rng)
    xt, yt = toy_signals(500, rng)
    b = toy_net(0)
    net = FloatNet(b)
    before = net.accuracy(xt, yt)
    hist = train(net, x, y, epochs=8, lr=0.05, batch_size=32, momentum=0.9, weight_decay=1e-4, seed=0)
    assert hist[-1] < hist[0] * 0.5
    acc = net.accuracy(xt, yt)
    assert before < 0.6 and acc > 0.9, (before, acc)
    # written back: the builder computes the trained net, and it quantises
    assert np.allclose(b.forward(xt[:7])[b.last].reshape(7, -1), net.forward(xt[:7]))
    g = b.quantize(x[:300])
    t = tinytrain.Trainer(compile_model(g, Scheme(bias={"conv3"}, weights={"conv3": 1.0})).data)
    assert t.evaluate(quantize_input(g, xt).tobytes(), [int(v) for v in yt]) > 0.85


def test_training_is_deterministic():
    rng = np.random.default_rng(1)
    x, y = toy_signals(200, rng)
    runs = []
    for _ in range(2):
        net = FloatNet(toy_net(3))
        train(net, x, y, epochs=2, lr=0.05, batch_size=16, momentum=0.9, seed=7)
        runs.append(net.state())
    for k in runs[0]:
        assert np.array_equal(runs[0][k], runs[1][k])


def test_scheme_trainable_matches_compiler_choice():
    b = toy_net(0)
    g = b.quantize(toy_signals(50, np.random.default_rng(0))[0])
    sc = Scheme(bias={"conv0", "conv3"}, weights={"conv1": 0.5, "conv3": 1.0})
    trainable, masks = scheme_trainable(g, sc)
    assert set(trainable) == {("conv0", "bias"), ("conv3", "bias"), ("conv1", "weight"), ("conv3", "weight")}
    m = masks[("conv1", "weight")]
    assert set(masks) == {("conv1", "weight")} and m.shape == (16, 1, 5, 8)
    assert m[0, 0, 0].sum() == 4 and (m == m[:1, :1, :1]).all()


def test_speed_1d_cnn_few_thousand_windows():
    """The demo's kind of net: 3000 windows (1, 100, 6), one epoch, in seconds."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 1, 100, 6))
    y = rng.integers(0, 7, 3000)
    b = NetBuilder((1, 100, 6), seed=0)
    b.conv(16, k=(1, 5), stride=2, act="relu6")
    b.conv(32, k=(1, 5), stride=2, act="relu6")
    b.conv(32, k=(1, 3), stride=2, act="relu6")
    b.avgpool()
    b.fc(7)
    t = time.time()
    train(FloatNet(b), x, y, epochs=1, lr=0.01, batch_size=32, momentum=0.9, seed=0)
    assert time.time() - t < 10  # about 0.3 s on 2 cores
