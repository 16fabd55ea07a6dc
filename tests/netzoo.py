"""Small quantised networks covering every kernel, for the tests."""
import numpy as np

from tinytrain.builder import NetBuilder, quantize_input
from tinytrain.compiler import Scheme, compile_model


def calib(builder, n=32, seed=0):
    rng = np.random.default_rng(seed + 1000)
    return rng.uniform(-1, 1, size=(n,) + builder.input_shape)


def mlp(seed=0, n_classes=10):
    b = NetBuilder((8, 8, 1), seed=seed)
    b.fc(16, act="relu")
    b.fc(n_classes)
    return b


def cnn(seed=0):
    """3x3 stride-2 first conv on 3 channels, depthwise, pointwise, pool, fc."""
    b = NetBuilder((12, 12, 3), seed=seed)
    b.conv(8, k=3, stride=2, act="relu6")
    b.dwconv(3, 1, act="relu6")
    b.pointwise(8, act=None)
    b.avgpool()
    b.fc(5)
    return b


def mbnet(seed=0):
    """Inverted-residual blocks: expand, depthwise 5x5/7x7/3x3 stride 1 and 2, project, skip add."""
    b = NetBuilder((10, 10, 3), seed=seed)
    stem = b.conv(4, k=3, stride=1, act="relu6")
    b.pointwise(8, act="relu6")
    b.dwconv(5, 1, act="relu6")
    proj = b.pointwise(4, act=None)
    b.add(stem, proj)
    b.pointwise(8, act="relu6")
    b.dwconv(7, 2, act="relu6")
    b.pointwise(6, act=None)
    b.dwconv(3, 2, act="relu6")
    b.avgpool()
    b.fc(4)
    return b


def tutorial(seed=0):
    """The layers tutorial CNNs use (format 2.1): hard swish, max pool,
    leaky ReLU, average pool counting its padding, sigmoid, tanh, a windowed
    average pool without padding."""
    b = NetBuilder((10, 10, 2), seed=seed)
    b.conv(8, 3, act=None)
    b.activation("hardswish")
    b.maxpool(3, 2, 1)
    b.conv(8, 3, act=None)
    b.activation("leaky_relu:0.1")
    b.avgpool2d(3, 1, 1, count_pad=True)
    b.activation("sigmoid")
    b.conv(8, 1, act=None)
    b.activation("tanh")
    b.avgpool2d(2, 2, 0)
    b.fc(4)
    return b


ZOO = {"mlp": mlp, "cnn": cnn, "mbnet": mbnet, "tutorial": tutorial}


def sparse_scheme(graph, **kw):
    """Biases of the last half, weights of a few layers at partial ratios."""
    names = [layer.name for layer in graph.param_layers]
    weights = {names[-1]: 1.0}
    for name, ratio in zip(names[-4:-1], (0.5, 0.25, 1.0)):
        weights[name] = ratio
    return Scheme(bias=set(names[len(names) // 2:]), weights=weights, **kw)


SCHEMES = {
    "full": lambda g: Scheme.full(g),
    "full_residue": lambda g: Scheme.full(g, residue=True),
    "sparse": lambda g: sparse_scheme(g),
    "bias_only": lambda g: Scheme.last_layers(g, n_bias=3, n_weights=0),
    # every bias and the classifier: frozen depthwise layers take their input
    # gradient in place (compiler.in_place)
    "biases": lambda g: Scheme.last_layers(g, n_bias=len(g.param_layers), n_weights=1),
    "no_qas": lambda g: Scheme.full(g, qas=False, lr=50.0),
}


def build(name="cnn", scheme="full", seed=0, bias16=True):
    """bias16=False: every trained bias int32 (the compiler's choice otherwise: these nets' all int16)."""
    b = ZOO[name](seed)
    graph = b.quantize(calib(b, seed=seed))
    plan = compile_model(graph, SCHEMES[scheme](graph), bias16=bias16)
    return b, graph, plan


def samples(builder, graph, n, seed=0, n_classes=None):
    rng = np.random.default_rng(seed)
    xs = quantize_input(graph, rng.uniform(-1, 1, size=(n,) + builder.input_shape))
    ncls = n_classes or graph.tensors[graph.output].numel
    labels = rng.integers(0, ncls, size=n)
    return [x.reshape(-1) for x in xs], [int(v) for v in labels]
