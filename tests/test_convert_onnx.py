"""tinytrain.convert.onnx: float ONNX models into int8 tinytrain models.

A small CNN trained on sklearn digits (numpy, floatnet), written as ONNX with
onnx.helper (batch norms un-folded into it, ReLU6 as Clip with Constant
bounds, a final Softmax), converted with calibration data: the simulator's
int8 predictions agree with onnxruntime's float ones. Float graphs of other
operator mixes match onnxruntime before quantisation; unsupported nodes are
reported all at once; bad calibration data and the command line."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (it is in the test extras)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (it is in the test extras)")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import tinytrain  # noqa: E402
from tinytrain import cli  # noqa: E402
from tinytrain import modelfile as mf  # noqa: E402
from tinytrain.builder import NetBuilder, quantize_input  # noqa: E402
from tinytrain.compiler import compile_model  # noqa: E402
from tinytrain.convert import onnx as tto  # noqa: E402
from tinytrain.convert.head import new_head  # noqa: E402
from tinytrain.floatnet import FloatNet, train  # noqa: E402
from tinytrain.schemes import parse_scheme  # noqa: E402


class Graph:
    """A small ONNX graph writer: float32 initialisers, named nodes."""

    def __init__(self, in_shape, name="x"):
        self.input = name
        self.in_shape = in_shape
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, value, via_node=False):
        self.n += 1
        name = f"k{self.n}"
        t = numpy_helper.from_array(np.asarray(value, dtype=np.float32 if np.asarray(value).dtype.kind == "f"
                                               else np.int64), name)
        if via_node:
            self.nodes.append(helper.make_node("Constant", [], [name], name=f"const{self.n}", value=t))
        else:
            self.inits.append(t)
        return name

    def op(self, op, inputs, name=None, **attrs):
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=name or f"{op.lower()}{self.n}", **attrs))
        return out

    def model(self, out, opset=13, out_rank=2):
        g = helper.make_graph(self.nodes, "g",
                              [helper.make_tensor_value_info(self.input, TensorProto.FLOAT, ["N"] + list(self.in_shape))],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N"] + [None] * (out_rank - 1))],
                              self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def run_ort(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: np.asarray(x, np.float32)})[0]


def unfold_bn(rng, w, b):
    """Conv weights/bias and BN parameters whose BN(conv(x)) is the original conv."""
    c = w.shape[0]
    gamma, beta = rng.uniform(0.5, 2.0, c), rng.normal(0, 0.5, c)
    mean, var, eps = rng.normal(0, 0.5, c), rng.uniform(0.5, 2.0, c), 1e-5
    k = gamma / np.sqrt(var + eps)
    return w / k.reshape((-1,) + (1,) * (w.ndim - 1)), (b - beta) / k + mean, (gamma, beta, mean, var)


def oihw(layer):
    return layer.weight.transpose(0, 3, 1, 2) if layer.kind == "conv" else layer.weight[:, None]


# -- the digits CNN ---------------------------------------------------------
@pytest.fixture(scope="module")
def digits_cnn():
    """(onnx model, x_train, x_test NCHW, labels): conv 3x3 s1, conv 3x3 s2,
    depthwise, pointwise, residual add, GAP, fc; trained in float (numpy)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images / 16.0)[:, None]  # NCHW
    y = d.target
    order = np.random.default_rng(0).permutation(len(x))
    tr, te = order[:1400], order[1400:]
    b = NetBuilder((8, 8, 1), seed=0)
    c1 = b.conv(8, k=3, stride=1, act="relu")
    c2 = b.conv(16, k=3, stride=2, act="relu6", x=c1)
    b.dwconv(3, stride=1, act="relu6")
    p = b.pointwise(16, act=None)
    b.add(c2, p, act="relu")
    b.avgpool()
    b.fc(10)
    net = FloatNet(b)
    train(net, tto.to_nhwc(x[tr]), y[tr], epochs=12, lr=0.1, batch_size=32, seed=0)
    assert net.accuracy(tto.to_nhwc(x[te]), y[te]) > 0.9

    rng = np.random.default_rng(1)
    L = {layer.name: layer for layer in b.layers}
    g = Graph((1, 8, 8), name="image")
    six, zero = g.const(6.0, via_node=True), g.const(0.0, via_node=True)

    def conv(layer, inp, name, bn=False, **attrs):
        w, bias = oihw(layer), layer.bias
        if bn:
            w, bias, bnp = unfold_bn(rng, w, bias)
        kh, kw = w.shape[2:]
        group = w.shape[0] if layer.kind == "dwconv" else 1
        out = g.op("Conv", [inp, g.const(w, via_node=layer.kind == "dwconv"), g.const(bias)], name=name,
                   kernel_shape=[kh, kw], strides=[layer.stride] * 2, group=group,
                   pads=[layer.pad[0], layer.pad[1], layer.pad[0], layer.pad[1]], **attrs)
        if bn:
            out = g.op("BatchNormalization", [out] + [g.const(v) for v in bnp], name=name + "_bn")
        return out

    t1 = g.op("Relu", [conv(L[c1], "image", "conv1", bn=True)])
    t2 = g.op("Clip", [conv(L[c2], t1, "conv2"), zero, six])
    t3 = g.op("Clip", [conv(b.layers[2], t2, "dw"), zero, six])
    t4 = conv(L[p], g.op("Identity", [t3]), "pw", bn=True)
    t5 = g.op("Relu", [g.op("Add", [t2, t4], name="residual")])
    t6 = g.op("Flatten", [g.op("GlobalAveragePool", [t5], name="gap")], axis=1)
    fc = b.layers[-1]
    t7 = g.op("Gemm", [g.op("Dropout", [t6]), g.const(fc.weight.reshape(10, -1)), g.const(fc.bias)],
              name="classifier", transB=1)
    model = g.model(g.op("Softmax", [t7], axis=1))
    return model, x[tr], x[te], y[te], net


def test_digits_float_graph_matches_onnxruntime(digits_cnn):
    """Batch norms folded, layouts moved: the converted float graph computes
    what onnxruntime does (and what the trained net did)."""
    model, _, x_te, _, trained = digits_cnn
    net = tto.to_builder(model)
    assert [L.kind for L in net.layers] == ["conv", "conv", "dwconv", "conv", "add", "avgpool", "conv"]
    assert [L.act for L in net.layers] == ["relu", "relu6", "relu6", None, "relu", None, None]
    logits = net.logits(x_te)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert np.allclose(z / z.sum(axis=1, keepdims=True), run_ort(model, x_te), atol=2e-5)
    assert np.allclose(logits, trained.forward(tto.to_nhwc(x_te)), atol=1e-4)  # float32 weights in ONNX


def test_digits_int8_agrees_with_onnxruntime(digits_cnn, tmp_path):
    model, x_tr, x_te, y_te, _ = digits_cnn
    path = tmp_path / "cnn.onnx"
    onnx.save(model, str(path))
    graph = tto.convert(path, x_tr[:300])
    plan = compile_model(graph, parse_scheme("last", graph))
    t = tinytrain.Trainer(plan.data)
    want = run_ort(model, x_te).argmax(axis=1)
    assert (want == y_te).mean() > 0.9
    xs = quantize_input(graph, tto.to_nhwc(x_te))
    agree = t.evaluate(xs.tobytes(), want)
    print(f"int8 simulator vs onnxruntime float argmax: {agree:.4f} of {len(want)}")
    assert agree >= 0.98


def test_new_head(digits_cnn):
    model, x_tr, x_te, _, _ = digits_cnn
    full = tto.convert(model, x_tr[:100])
    first = tto.convert(model, x_tr[:100], n_classes=4, head="first")
    fresh = tto.convert(model, x_tr[:100], n_classes=3, head="fresh", seed=5)
    a, b = full.layers[-1], first.layers[-1]
    assert first.tensors[first.output].shape == (1, 1, 4) and fresh.tensors[fresh.output].shape == (1, 1, 3)
    assert np.array_equal(a.weight[:4], b.weight) and np.array_equal(a.bias[:4], b.bias)
    # the first four logits of the simulator are the full model's
    xs = quantize_input(full, tto.to_nhwc(x_te[:5]))
    tf, t4 = (tinytrain.Trainer(compile_model(g, parse_scheme("last", g)).data) for g in (full, first))
    for x in xs:
        assert tf.logits(x.tobytes())[:4] == t4.logits(x.tobytes())
    w, bias, sw = new_head(a.weight, a.bias, a.w_scale, 3, "fresh", seed=5)
    assert np.array_equal(fresh.layers[-1].weight, w) and not bias.any()
    with pytest.raises(ValueError, match="only 10 outputs"):
        tto.convert(model, x_tr[:10], n_classes=12, head="first")


# -- other operator mixes, float against onnxruntime ------------------------
def _fc_model(rng):
    """Conv with TF-style asymmetric pads (stride 2, bottom/right 1), BN,
    spatial Reshape -> MatMul + Add (NCHW flatten order), BN on (N, K),
    Relu, Gemm (transB 0, alpha, beta)."""
    g = Graph((3, 7, 6))
    w, b = rng.normal(0, 0.4, (5, 3, 3, 3)), rng.normal(0, 0.2, 5)
    t = g.op("Conv", ["x", g.const(w), g.const(b)], name="c_same", strides=[2, 2], pads=[0, 0, 1, 1])
    t = g.op("BatchNormalization", [t] + [g.const(v) for v in unfold_bn(rng, w, b)[2]], epsilon=1e-3)
    t = g.op("Relu", [t])
    k = 5 * 3 * 3  # 7x6 -> 3x3
    t = g.op("Reshape", [t, g.const(np.array([-1, k], np.int64))])
    t = g.op("Add", [g.op("MatMul", [t, g.const(rng.normal(0, 0.3, (k, 12)))]), g.const(rng.normal(0, 0.2, 12))])
    t = g.op("BatchNormalization", [t] + [g.const(v) for v in unfold_bn(rng, np.ones((12, 1)), np.zeros(12))[2]])
    t = g.op("Relu", [t])
    t = g.op("Gemm", [t, g.const(rng.normal(0, 0.3, (12, 4))), g.const(rng.normal(0, 0.2, (1, 4)))],
             alpha=0.5, beta=2.0)
    return g.model(t), (3, 7, 6)


def _conv1d_model(rng):
    """1-D: conv k5 s2 (pads 2, 1), depthwise k3, Relu, ReduceMean over L
    (keepdims 0), Gemm."""
    g = Graph((2, 20))
    t = g.op("Conv", ["x", g.const(rng.normal(0, 0.5, (6, 2, 5)))], strides=[2], pads=[2, 1])
    t = g.op("Relu", [t])
    t = g.op("Conv", [t, g.const(rng.normal(0, 0.8, (6, 1, 3))), g.const(rng.normal(0, 0.5, 6))],
             group=6, pads=[1, 1])
    t = g.op("Relu", [t])
    t = g.op("ReduceMean", [t], axes=[-1], keepdims=0)
    t = g.op("Gemm", [t, g.const(rng.normal(0, 0.5, (3, 6)))], transB=1)
    return g.model(t, opset=13), (2, 20)


def _squeeze_model(rng):
    """GAP -> Squeeze (axes as an input, opset 13) -> Gemm; Conv + Add of a
    per-channel constant (a bias), Clip [0, 6]."""
    g = Graph((4, 5, 5))
    t = g.op("Conv", ["x", g.const(rng.normal(0, 0.5, (6, 4, 3, 3)))], pads=[1, 1, 1, 1])
    t = g.op("Add", [g.const(rng.normal(0, 0.5, (6, 1, 1))), t])
    t = g.op("Clip", [t, g.const(np.float32(0)), g.const(np.float32(6))])
    t = g.op("GlobalAveragePool", [t])
    t = g.op("Squeeze", [t, g.const(np.array([2, 3], np.int64))])
    t = g.op("Gemm", [t, g.const(rng.normal(0, 0.5, (5, 6))), g.const(rng.normal(0, 0.1, 5))], transB=1)
    return g.model(t), (4, 5, 5)


def _view_model(rng):
    """torch's x.view(x.size(0), -1) on a spatial tensor: Shape, Gather,
    Unsqueeze, Concat, Reshape; then the fc (NCHW flatten order)."""
    g = Graph((2, 5, 4))
    t = g.op("Relu", [g.op("Conv", ["x", g.const(rng.normal(0, 0.5, (3, 2, 3, 3)))], pads=[1, 1, 1, 1])])
    n = g.op("Unsqueeze", [g.op("Gather", [g.op("Shape", [t]), g.const(np.array(0, np.int64))], axis=0),
                           g.const(np.array([0], np.int64))])
    t = g.op("Reshape", [t, g.op("Concat", [n, g.const(np.array([-1], np.int64))], axis=0)])
    t = g.op("Gemm", [t, g.const(rng.normal(0, 0.3, (4, 60))), g.const(rng.normal(0, 0.1, 4))], transB=1)
    return g.model(t), (2, 5, 4)


def _opset10_model(rng):
    """Opset 10: Clip bounds and ReduceMean/Squeeze axes as attributes."""
    g = Graph((3, 6, 6))
    t = g.op("Conv", ["x", g.const(rng.normal(0, 0.5, (4, 3, 3, 3)))], strides=[2, 2], auto_pad="SAME_UPPER")
    t = g.op("Clip", [t], min=0.0, max=6.0)
    t = g.op("Squeeze", [g.op("ReduceMean", [t], axes=[2, 3], keepdims=1)], axes=[2, 3])
    t = g.op("Gemm", [t, g.const(rng.normal(0, 0.5, (3, 4))), g.const(rng.normal(0, 0.1, 3))], transB=1)
    return g.model(t, opset=10), (3, 6, 6)


@pytest.mark.parametrize("make", [_fc_model, _conv1d_model, _squeeze_model, _view_model, _opset10_model])
def test_float_graph_matches_onnxruntime(make):
    """And the int8 model, in the simulator, stays near it."""
    rng = np.random.default_rng(3)
    model, shape = make(rng)
    x = rng.uniform(-1, 2, (48,) + shape)
    net = tto.to_builder(model)
    want = run_ort(model, x)
    assert np.allclose(net.logits(x), want, rtol=1e-4, atol=1e-4)
    graph = tto.convert(model, x)
    t = tinytrain.Trainer(compile_model(graph, parse_scheme("full", graph)).data)
    out = graph.tensors[graph.output]
    got = np.array([(np.frombuffer(t.logits(q.tobytes()), np.int8).astype(np.float64) - out.zero) * out.scale
                    for q in quantize_input(graph, tto.to_nhwc(x))])
    assert np.abs(got - want).max() < 0.2 * np.ptp(want)
    assert (got.argmax(axis=1) == want.argmax(axis=1)).mean() >= 0.9


def test_fc_weights_are_permuted():
    """The NCHW flatten order: without permuting, the float graph would differ."""
    rng = np.random.default_rng(4)
    model, shape = _fc_model(rng)
    fc = [L for L in tto.to_builder(model).layers if L.kind == "conv"][1]
    assert fc.weight.shape == (12, 3, 3, 5)  # (n, h, w, c): kernel covering the 3x3x5 input


# -- what cannot be converted -----------------------------------------------
def test_unsupported_nodes_reported_at_once():
    rng = np.random.default_rng(0)
    g = Graph((3, 8, 8))
    t = g.op("MaxPool", ["x"], name="pool1", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    t = g.op("Conv", [t, g.const(rng.normal(size=(16, 3, 1, 1)))], name="c2")
    t = g.op("Conv", [t, g.const(rng.normal(size=(16, 4, 3, 3)))], name="c3", group=4, pads=[1, 1, 1, 1])
    t = g.op("Conv", [t, g.const(rng.normal(size=(16, 16, 3, 3)))], name="wide", dilations=[2, 2])
    t = g.op("Clip", [t, g.const(np.float32(-1)), g.const(np.float32(1))], name="hardtanh")
    t = g.op("Conv", [t, g.const(rng.normal(size=(8, 16, 3, 3)))], name="bigpad", pads=[3, 3, 3, 3])
    t = g.op("Mul", [t, g.const(np.float32(2))], name="scale")
    t = g.op("GlobalAveragePool", [t])
    t = g.op("Flatten", [t])
    t = g.op("Gemm", [t, g.const(rng.normal(size=(4, 8)))], transB=1)
    with pytest.raises(ValueError) as e:
        tto.to_builder(g.model(t))
    msg = str(e.value)
    assert msg.startswith("5 unsupported nodes: MaxPool 'pool1' (ceil_mode (use floor: ceil_mode=False)), "
                          "Conv 'c3' (group 4 of 16 channels), Conv 'wide' (dilations (2, 2)), "
                          "Clip 'hardtanh' (Clip bounds [-1, 1]"), msg
    assert "Mul 'scale' (op not supported)" in msg and "bigpad" not in msg  # its input is unknown


def test_unsupported_shapes_reported():
    """Pads the kernels cannot do, a flatten that would reorder, a BN that
    cannot be folded, a Softmax in the middle."""
    rng = np.random.default_rng(0)
    g = Graph((3, 8, 8))
    t = g.op("Conv", ["x", g.const(rng.normal(size=(4, 3, 3, 3)))], name="bigpad", pads=[3, 3, 3, 3])
    a = g.op("Conv", ["x", g.const(rng.normal(size=(4, 3, 1, 1)))], name="below", pads=[0, 0, 2, 0])
    s = g.op("Conv", ["x", g.const(rng.normal(size=(4, 3, 3, 3)))], name="strided", strides=[1, 2])
    u = g.op("Softmax", [g.op("Add", [a, a])], name="mid_softmax")
    c = g.op("Conv", ["x", g.const(rng.normal(size=(4, 3, 1, 1)))], name="fine")
    bn = g.op("BatchNormalization", [g.op("Add", [c, c])] + [g.const(v) for v in (np.ones(4), np.zeros(4),
                                                                                  np.zeros(4), np.ones(4))],
              name="bn_after_add")
    r = g.op("Reshape", [c, g.const(np.array([1, 4, 4, 16], np.int64))], name="reorder")
    t = g.op("Add", [g.op("Add", [t, bn]), g.op("Add", [r, g.op("Add", [s, u])])])
    with pytest.raises(ValueError) as e:
        tto.to_builder(g.model(t))
    msg = str(e.value)
    for part in ("Conv 'bigpad' (pads (3, 3, 3, 3): top/left padding must be below the kernel size)",
                 "Conv 'below' (pads (0, 0, 2, 0): a window lies wholly in the bottom/right padding)",
                 "Conv 'strided' (strides (1, 2) differ)",
                 "Softmax 'mid_softmax' (only a final Softmax",
                 "BatchNormalization 'bn_after_add' (does not follow a Conv or Gemm whose output only it reads)",
                 "Reshape 'reorder' (reshape of (N, 4, 8, 8) to (N, 4, 4, 16) reorders the data)"):
        assert part in msg, msg
    assert msg.startswith("6 unsupported nodes"), msg


def test_bn_not_after_conv_is_reported():
    g = Graph((2, 4, 4))
    t = g.op("BatchNormalization", ["x"] + [g.const(v) for v in (np.ones(2), np.zeros(2), np.zeros(2), np.ones(2))],
             name="bn0")
    t = g.op("Gemm", [g.op("Flatten", [g.op("GlobalAveragePool", [t])]), g.const(np.ones((2, 2)))])
    with pytest.raises(ValueError, match=r"1 unsupported node: BatchNormalization 'bn0' \(does not follow"):
        tto.to_builder(g.model(t))


def test_model_errors(tmp_path):
    g = Graph((3, 4, 4))
    m = g.model(g.op("Conv", ["x", g.const(np.ones((2, 3, 1, 1)))]), out_rank=4)
    with pytest.raises(ValueError, match="vector of class scores"):
        tto.to_builder(m)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        tto.to_builder(bad)


# -- calibration data and the command line ----------------------------------
def test_bad_calibration(digits_cnn, tmp_path):
    model, x_tr, _, _, _ = digits_cnn
    with pytest.raises(ValueError, match=r"shape \(20, 8, 8, 1\); the model's input 'image' needs \(N, 1, 8, 8\)"):
        tto.convert(model, tto.to_nhwc(x_tr[:20]))
    with pytest.raises(ValueError, match="NaN"):
        tto.convert(model, np.full((2, 1, 8, 8), np.nan))
    npz = tmp_path / "c.npz"
    np.savez(npz, a=x_tr[:5], b=x_tr[:5])
    with pytest.raises(ValueError, match="no array named 'image'.*it holds a, b"):
        tto.convert(model, npz)
    with pytest.raises(ValueError, match="no such calibration file"):
        tto.convert(model, tmp_path / "missing.npy")
    np.savez(npz, image=x_tr[:50], labels=np.zeros(50))
    assert tto.convert(model, npz).tensors["input"].shape == (8, 8, 1)


def test_cli_convert_then_info(digits_cnn, tmp_path, capsys):
    model, x_tr, _, _, _ = digits_cnn
    src, calib, out = tmp_path / "cnn.onnx", tmp_path / "calib.npy", tmp_path / "cnn.ttm"
    onnx.save(model, str(src))
    np.save(calib, x_tr[:100])
    assert cli.main(["convert", str(src), "--calib", str(calib), "--classes", "3", "--head", "fresh",
                     "--scheme", "bias:2", "-o", str(out)]) == 0
    assert cli.main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "input 8x8x1 int8" in text and "3 outputs" in text and "dwconv" in text
    m = mf.Model.parse(out.read_bytes())
    assert sum(bool(L.flags & mf.LF_TRAIN_BIAS) for L in m.layers) == 2
    # errors: no calibration data, wrong calibration shape, unsupported model
    assert cli.main(["convert", str(src), "-o", str(out)]) == 2
    assert "needs calibration data: --calib" in capsys.readouterr().err
    np.save(calib, tto.to_nhwc(x_tr[:10]))
    assert cli.main(["convert", str(src), "--calib", str(calib), "-o", str(out)]) == 2
    assert "tinytrain: calibration data has shape (10, 8, 8, 1)" in capsys.readouterr().err
    g = Graph((3, 4, 4))
    onnx.save(g.model(g.op("Mul", ["x", g.const(np.float32(2))], name="p"), out_rank=4), str(src))
    assert cli.main(["convert", str(src), "--calib", str(calib), "-o", str(out)]) == 2
    assert "1 unsupported node: Mul 'p' (op not supported)" in capsys.readouterr().err


# -- a model exported by torch, where torch is installed --------------------
def test_torch_export(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6())
            self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU())
            self.pw = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8))
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(8, 5))

        def forward(self, x):
            y = self.dw(self.stem(x))
            return self.head(torch.relu(y + self.pw(y)))

    torch.manual_seed(0)
    m = Block()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.3, 0.3)
    m.eval()
    x = np.random.default_rng(0).uniform(0, 1, (8, 1, 8, 8)).astype(np.float32)
    path = tmp_path / "torch.onnx"
    import inspect
    kw = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    try:
        torch.onnx.export(m, torch.from_numpy(x[:1]), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}}, opset_version=13, **kw)
    except ImportError as e:  # an exporter needing a package this machine lacks
        pytest.skip(f"torch.onnx.export cannot run here: {e}")
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    net = tto.to_builder(path)
    assert np.allclose(net.logits(x), want, rtol=1e-4, atol=1e-4)
    graph = tto.convert(path, x)
    compile_model(graph, parse_scheme("full", graph))
