"""A tutorial CNN from TFLite (full-integer int8) with MAX_POOL_2D,
AVERAGE_POOL_2D (windows, SAME/VALID), LOGISTIC, TANH, HARD_SWISH and
LEAKY_RELU: each operator's int8 output is within one step of the TFLite
interpreter's (reference kernels); a CNN trained in PyTorch on digits, written
as int8 TFLite (tests/tflite_writer.py: TensorFlow is not needed) and
converted agrees with the interpreter on at least 98% of held-out argmaxes
and trains bit-identically on the simulator, the numpy reference and the
emulated Cortex-M7."""
import numpy as np
import pytest

import tinytrain
from tinytrain.compiler import compile_model
from tinytrain.convert import tflite as ttl
from tinytrain.reference import Reference
from tinytrain.schemes import parse_scheme

pytest.importorskip("tflite", reason="the tflite package is not installed")
pytest.importorskip("flatbuffers", reason="the flatbuffers package is not installed")
import tflite_writer as tw  # noqa: E402
from test_convert_tflite import Interpreter, OpResolverType, _Interpreter  # noqa: E402
from tutorial_cnn import AGREEMENT, LR, digits_split, train_torch  # noqa: E402

pytestmark = pytest.mark.skipif(_Interpreter is None, reason="no TFLite interpreter (pip install ai-edge-litert)")


def interpreter(data):
    kw = {"experimental_op_resolver_type": OpResolverType.BUILTIN_REF} if OpResolverType is not None else {}
    it = Interpreter(model_content=data, experimental_preserve_all_tensors=True, **kw)
    it.allocate_tensors()
    return it


def run_interpreter(it, x8):
    """int8 outputs of every tensor for one int8 input."""
    it.set_tensor(it.get_input_details()[0]["index"], x8.reshape(it.get_input_details()[0]["shape"]))
    it.invoke()


OPS = {
    "maxpool_2_valid": ("maxpool", 2, 2, "VALID"),
    "maxpool_3s2_same": ("maxpool", 3, 2, "SAME"),
    "avgpool_3s1_same": ("avgpool", 3, 1, "SAME"),
    "avgpool_3s2_same": ("avgpool", 3, 2, "SAME"),
    "avgpool_2_valid": ("avgpool", 2, 2, "VALID"),
    "logistic": ("logistic",),
    "tanh": ("tanh",),
    "hardswish": ("hardswish",),
    "leaky_relu": ("leaky_relu", 0.2),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_operator_within_one_step_of_the_interpreter(name):
    """conv -> the operator -> fc: the operator's int8 output differs from
    the interpreter's by at most 1 on every element, mostly by 0 (TFLite
    rounds an average of the raw int8 sum, and computes some functions in
    fixed point). A pool is compared in the network (the core's output,
    through the reference model proven equal to it); a table on the
    interpreter's own input to the operator, since a steep function turns a
    one-step difference of the conv before it into several."""
    rng = np.random.default_rng(len(name))
    layers = [("conv", rng.normal(0, 0.4, (6, 3, 3, 2)), rng.normal(0, 0.2, 6), 1, "SAME"), OPS[name],
              ("fc", rng.normal(0, 0.3, (4, 6 * 7 * 7 if OPS[name][0] not in ("maxpool", "avgpool") else 1)),
               np.zeros(4))]
    x = rng.uniform(-1, 1, (64, 7, 7, 2))
    act = tw.float_forward(layers[:2], x)[-1]
    layers[2] = ("fc", rng.normal(0, 0.3, (4, int(np.prod(act.shape[1:])))), np.zeros(4))
    data = tw.write(layers, x)
    g = ttl.to_graph(data)
    assert [layer.kind for layer in g.layers][1] == {"maxpool": "maxpool", "avgpool": "avgpool2d"}.get(
        OPS[name][0], "lut")
    plan = compile_model(g, parse_scheme("full", g))
    it = interpreter(data)
    t = g.tensors[g.input]
    diffs = []
    for xf in x[:16]:
        x8 = np.clip(np.round(xf / t.scale + t.zero), -128, 127).astype(np.int8)
        run_interpreter(it, x8)
        layer = g.layers[1]
        want = it.get_tensor(g.meta["tflite_tensor"][layer.output]).reshape(-1).astype(int)
        if layer.kind == "lut":
            xin = it.get_tensor(g.meta["tflite_tensor"][layer.inputs[0]]).reshape(-1).astype(int)
            got = layer.table[xin + 128].astype(int)
        else:
            ref = Reference(plan.data)
            ref.forward(x8)
            got = ref.acts[plan.model.layers[1].out].reshape(-1).astype(int)
        diffs.append(np.abs(got - want))
    d = np.concatenate(diffs)
    assert d.max() <= 1 and (d == 0).mean() > 0.8, (d.max(), (d == 0).mean())


def test_leaky_relu_alpha_read():
    rng = np.random.default_rng(0)
    layers = [("conv", rng.normal(0, 0.4, (3, 1, 1, 1)), np.zeros(3), 1, "VALID"), ("leaky_relu", 0.3),
              ("fc", rng.normal(0, 0.3, (2, 3 * 4 * 4)), np.zeros(2))]
    g = ttl.to_graph(tw.write(layers, rng.uniform(-1, 1, (8, 4, 4, 1))))
    assert g.layers[1].fn == "leaky_relu:" + repr(float(np.float32(0.3)))


# -- the tutorial CNN ------------------------------------------------------------
def tutorial_torch_cnn(torch):
    """A tutorial CNN whose every window TFLite's SAME/VALID padding writes
    the same way (8x8x1 -> 10)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.Hardswish(), nn.MaxPool2d(2),                       # 4x4
        nn.Conv2d(16, 24, 3, padding=1), nn.LeakyReLU(0.1),
        nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), nn.MaxPool2d(2),          # 2x2
        nn.Conv2d(24, 32, 1), nn.Tanh(), nn.AvgPool2d(2),                                        # 1x1
        nn.Flatten(), nn.Linear(32, 32), nn.Sigmoid(), nn.Linear(32, 10))


def tflite_layers(model):
    """The torch model as tflite_writer layers (NHWC weights)."""
    m = [mod for mod in model]

    def conv(c, padding):
        return ("conv", c.weight.detach().numpy().astype(np.float64).transpose(0, 2, 3, 1),
                c.bias.detach().numpy().astype(np.float64), 1, padding)

    def fc(f):
        return ("fc", f.weight.detach().numpy().astype(np.float64), f.bias.detach().numpy().astype(np.float64))

    return [conv(m[0], "SAME"), ("hardswish",), ("maxpool", 2, 2, "VALID"), conv(m[3], "SAME"),
            ("leaky_relu", 0.1), ("avgpool", 3, 1, "SAME"), ("maxpool", 2, 2, "VALID"), conv(m[7], "VALID"),
            ("tanh",), ("avgpool", 2, 2, "VALID"), fc(m[11]), ("logistic",), fc(m[13])]


@pytest.fixture(scope="module")
def tutorial_tflite():
    torch = pytest.importorskip("torch", reason="torch is not installed (it trains the tutorial CNN)")
    torch.manual_seed(0)
    x_tr, y_tr, x_te, y_te = digits_split()
    model = train_torch(torch, tutorial_torch_cnn(torch), x_tr, y_tr)
    nhwc = (x_tr.transpose(0, 2, 3, 1), x_te.transpose(0, 2, 3, 1))
    data = tw.write(tflite_layers(model), nhwc[0][:300])
    return data, nhwc[0], y_tr, nhwc[1], y_te


def test_tutorial_cnn_agrees_with_the_interpreter(tutorial_tflite):
    data, x_tr, y_tr, x_te, y_te = tutorial_tflite
    g = ttl.to_graph(data)
    assert {layer.kind for layer in g.layers} >= {"maxpool", "avgpool2d", "lut"}
    assert {layer.fn.split(":")[0] for layer in g.layers if layer.kind == "lut"} == \
        {"sigmoid", "tanh", "hardswish", "leaky_relu"}
    it = interpreter(data)
    t = g.tensors[g.input]
    x8 = np.clip(np.round(x_te / t.scale + t.zero), -128, 127).astype(np.int8)
    want = []
    for x in x8:
        run_interpreter(it, x)
        want.append(int(np.argmax(it.get_tensor(it.get_output_details()[0]["index"]))))
    want = np.array(want)
    assert (want == y_te).mean() > 0.9  # a trained model, so agreement means something
    plan = compile_model(g, parse_scheme("full", g))
    sim = tinytrain.Trainer(plan.data)
    got = np.array([sim.predict(x.tobytes()) for x in x8])
    agree = (got == want).mean()
    print(f"int8 vs the TFLite interpreter: {agree:.3f} of {len(want)} argmaxes agree; "
          f"accuracy {(got == y_te).mean():.3f}")
    assert agree >= AGREEMENT


@pytest.mark.parametrize("target", ["reference", "m7"])
def test_tutorial_cnn_trains_bit_identically(tutorial_tflite, target, tmp_path):
    """Fine-tuning every layer: the simulator's losses and parameters equal
    the numpy reference's after every step, and the emulated Cortex-M7's
    (tt_run under qemu) losses, predictions, logits and parameters."""
    data, x_tr, y_tr, x_te, y_te = tutorial_tflite
    g = ttl.to_graph(data)
    plan = compile_model(g, parse_scheme("full", g))
    t = g.tensors[g.input]
    xs = np.clip(np.round(x_tr[:12] / t.scale + t.zero), -128, 127).astype(np.int8)
    labels = [int(y) for y in y_tr[:12]]
    sim = tinytrain.Trainer(plan.data, lr=LR)
    if target == "reference":
        ref = Reference(plan.data, lr=LR)
        for x, y in zip(xs, labels):
            assert np.float32(sim.step(x.tobytes(), y)).tobytes() == np.float32(ref.step(x, label=y)).tobytes()
            assert sim.params() == ref.params_bytes()
        return
    from tinytrain import runner
    missing = runner.missing_tools("m7")
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (make setup installs them)")
    losses = [np.float32(sim.step(x.tobytes(), y)).tobytes() for x, y in zip(xs, labels)]
    got = runner.run(runner.build("m7", tmp_path), plan.data, list(zip(xs, labels)), xs[:4], lr=LR, target="m7")
    assert got.status == 0, got.message
    assert [v.tobytes() for v in got.losses] == losses
    assert got.classes == [sim.predict(x.tobytes()) for x in xs[:4]]
    assert got.logits == [sim.logits(x.tobytes()) for x in xs[:4]]
    assert got.params == sim.params() != tinytrain.Trainer(plan.data).params()
