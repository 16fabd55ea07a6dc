"""Max pool, windowed average pool and activation tables (sigmoid, tanh,
hard swish, leaky ReLU) in the core: every tensor of a training step equals
the numpy reference bit for bit on random networks (kernel, stride, padding,
count_include_pad, functions and their quantisation drawn by hypothesis), and
the gradient they pass back equals float64 autodiff (torch) taken at the
core's own int8 activations. The activation tables are checked against the
float functions they are computed from."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinytrain
from tinytrain import activations
from tinytrain.builder import NetBuilder, quantize_input
from tinytrain.compiler import Scheme, compile_model
from tinytrain.reference import Reference

import netzoo
from test_bitexact import compare_step
from test_gradients import LR_TINY, SOFTMAX_TERM, TOL, core_gradients, rel_err

FUNCTIONS = ("sigmoid", "tanh", "hardswish", "leaky_relu:0.01", "leaky_relu:0.2")


def add_new_layer(b, draw):
    """One max pool, windowed average pool or activation table after b.last."""
    kind = draw(st.sampled_from(["maxpool", "avgpool2d", "lut"]))
    if kind == "lut":
        return b.activation(draw(st.sampled_from(FUNCTIONS)))
    h = min(b.shapes[b.last][:2])
    k = draw(st.integers(1, min(h, 4)))
    stride = draw(st.integers(1, 3))
    pad = draw(st.integers(0, k - 1))
    if kind == "maxpool":
        return b.maxpool(k, stride, pad)
    return b.avgpool2d(k, stride, pad, count_pad=draw(st.booleans()))


@st.composite
def nets(draw):
    h = draw(st.integers(4, 10))
    b = NetBuilder((h, h, draw(st.integers(1, 3))), seed=draw(st.integers(0, 2 ** 16)))
    b.conv(draw(st.integers(2, 5)), k=3, act=draw(st.sampled_from([None, "relu"])))
    for _ in range(draw(st.integers(1, 4))):
        add_new_layer(b, draw)
        if draw(st.booleans()):
            b.conv(draw(st.integers(2, 5)), k=draw(st.sampled_from([1, 3])), act=None)
    b.fc(draw(st.integers(2, 5)))
    graph = b.quantize(netzoo.calib(b, n=16, seed=draw(st.integers(0, 99))))
    names = [layer.name for layer in graph.param_layers]
    first = names[0] if draw(st.booleans()) else names[-1]
    scheme = Scheme(bias={first, names[-1]}, weights={first: 1.0, names[-1]: 1.0},
                    residue=draw(st.booleans()), lr=draw(st.sampled_from([0.01, 0.1])))
    return b, graph, scheme, draw(st.integers(0, 2 ** 16))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nets())
def test_random_networks_bit_exact(case):
    b, graph, scheme, seed = case
    plan = compile_model(graph, scheme, reuse_memory=False)
    rng = np.random.default_rng(seed)
    xq = quantize_input(graph, netzoo.calib(b, n=3, seed=seed))
    n = graph.tensors[graph.output].numel
    for x in xq:
        compare_step(plan, x, int(rng.integers(n)))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nets())
def test_steps_with_memory_reuse_bit_exact(case):
    """The planned arena (tensors sharing bytes, saved inputs freed after
    their backward) gives the same parameters and losses, step after step."""
    b, graph, scheme, seed = case
    plan = compile_model(graph, scheme)
    t, ref = tinytrain.Trainer(plan.data), Reference(plan.data)
    rng = np.random.default_rng(seed)
    n = graph.tensors[graph.output].numel
    for x in quantize_input(graph, netzoo.calib(b, n=6, seed=seed)):
        y = int(rng.integers(n))
        assert np.float32(t.step(x.tobytes(), y)).tobytes() == np.float32(ref.step(x, label=y)).tobytes()
    assert t.params() == ref.params_bytes()


# -- the tables -----------------------------------------------------------------
@pytest.mark.parametrize("fn", FUNCTIONS)
def test_tables_follow_the_float_function(fn):
    """T is the float function rounded to the output grid (within half a
    step, where not clamped); D its derivative within 2^-shift, the shift
    as large as int16 allows."""
    s_x, z_x, s_y, z_y = 0.04, 5, 1.5 / 255, -20
    T, D, shift = activations.tables(fn, s_x, z_x, s_y, z_y)
    x = np.float32(s_x) * (np.arange(-128, 128) - z_x)
    want = activations.value(fn, x) / np.float32(s_y) + z_y
    inside = (want > -128.5) & (want < 127.5)
    assert np.abs(T[inside] - want[inside]).max() <= 0.5 + 1e-9
    assert (T[want <= -128] == -128).all() and (T[want >= 127] == 127).all()
    d = activations.derivative(fn, x)
    assert np.abs(D[inside] * 2.0 ** -shift - d[inside]).max() <= 2.0 ** -(shift + 1) + 1e-12
    assert (D[~inside] == 0).all()
    assert np.abs(D).max() <= 32767 and (shift == activations.MAX_SHIFT or np.abs(D).max() > 16383)


def test_derivatives_against_finite_differences():
    x = np.linspace(-5, 5, 1001)
    x = x[np.abs(np.abs(x) - 3) > 1e-3]  # not on hard swish's kinks
    x = x[np.abs(x) > 1e-3]  # nor leaky ReLU's
    for fn in FUNCTIONS:
        num = (activations.value(fn, x + 1e-6) - activations.value(fn, x - 1e-6)) / 2e-6
        assert np.allclose(activations.derivative(fn, x), num, atol=1e-6), fn


def test_unknown_function_refused():
    with pytest.raises(ValueError, match="sigmoid, tanh"):
        NetBuilder((4, 4, 1)).activation("gelu")


# -- gradients against float autodiff ------------------------------------------
def torch_gradients(graph, plan, trainer, xq, label):
    """{conv: (dL/dW, dL/db)}, ||dL/dlogits|| in float64 autodiff (torch), each layer
    differentiated at the core's own int8 activations (read from the
    arena after the step): a straight-through value y + (y_int8 - y).detach()
    holds every activation at the core's, its clamp mask zeroes the gradient
    where the core clamped, and the loss gradient is the softmax of the
    dequantised logits (with the saturation gate of docs/arithmetic.md)."""
    torch = pytest.importorskip("torch", reason="torch is not installed (float autodiff reference)")
    F = torch.nn.functional
    tid = {t.name: i for i, t in enumerate(plan.tensors)}

    def act(name):
        t = graph.tensors[name]
        q = np.frombuffer(trainer.tensor(tid[name], t.numel), np.int8).astype(np.float64)
        return torch.tensor(t.scale * (q - t.zero)).reshape(1, *t.shape).permute(0, 3, 1, 2)

    def mask(layer):
        if f"{layer.name}.mask" not in tid:
            return None
        t = graph.tensors[layer.output]
        m = np.unpackbits(np.frombuffer(trainer.tensor(tid[f"{layer.name}.mask"], (t.numel + 7) // 8), np.uint8),
                          bitorder="little")[:t.numel].astype(np.float64)
        return torch.tensor(m).reshape(1, *t.shape).permute(0, 3, 1, 2)

    params = {}
    y = act(graph.input)
    for layer in graph.layers:
        x = graph.tensors[layer.inputs[0]]
        if layer.kind == "conv":
            w = torch.tensor(layer.weight.astype(np.float64) * layer.w_scale.reshape(-1, 1, 1, 1),
                             requires_grad=True)
            b = torch.tensor(layer.bias * layer.w_scale.astype(np.float64) * x.scale, requires_grad=True)
            params[layer.name] = (w, b)
            kh, kw = layer.kernel
            h, wd = x.shape[:2]
            oh, ow = graph.tensors[layer.output].shape[:2]
            pb, pr = max((oh - 1) * layer.stride + kh - h - layer.pad[0], 0), \
                max((ow - 1) * layer.stride + kw - wd - layer.pad[1], 0)
            yp = F.pad(y, (layer.pad[1], pr, layer.pad[0], pb))
            z = F.conv2d(yp, w.permute(0, 3, 1, 2), b, stride=layer.stride)[:, :, :oh, :ow]
        elif layer.kind in ("maxpool", "avgpool2d"):
            kh, kw = layer.kernel
            oh, ow = graph.tensors[layer.output].shape[:2]
            h, wd = x.shape[:2]
            pb = max((oh - 1) * layer.stride + kh - h - layer.pad[0], 0)
            pr = max((ow - 1) * layer.stride + kw - wd - layer.pad[1], 0)
            if layer.kind == "maxpool":
                yp = F.pad(y, (layer.pad[1], pr, layer.pad[0], pb), value=-np.inf)
                z = F.max_pool2d(yp, (kh, kw), layer.stride)[:, :, :oh, :ow]
            else:
                ones = F.pad(torch.ones_like(y), (layer.pad[1], pr, layer.pad[0], pb))
                s = F.avg_pool2d(F.pad(y, (layer.pad[1], pr, layer.pad[0], pb)), (kh, kw), layer.stride,
                                 divisor_override=1)[:, :, :oh, :ow]
                n = kh * kw if layer.count_pad else \
                    F.avg_pool2d(ones, (kh, kw), layer.stride, divisor_override=1)[:, :, :oh, :ow]
                z = s / n
        elif layer.kind == "lut":
            name, alpha = activations.parse(layer.fn)
            z = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "hardswish": F.hardswish,
                 "leaky_relu": lambda v: F.leaky_relu(v, alpha)}[name](y)
        elif layer.kind == "avgpool":
            z = y.mean(dim=(2, 3), keepdim=True)
        else:
            raise AssertionError(layer.kind)
        m = mask(layer)
        if m is not None:
            z = z * m + (z * (1 - m)).detach()
        y = z + (act(layer.output) - z).detach()
    logits = y.reshape(-1)
    lq = logits.detach().numpy()
    p = np.exp(lq - lq.max())
    p /= p.sum()
    p[label] -= 1.0
    out = graph.layers[-1]
    lo, hi = (graph.tensors[graph.output].scale * (v - graph.tensors[graph.output].zero)
              for v in (out.act_min, out.act_max))
    p[((lq >= hi) & (p < 0)) | ((lq <= lo) & (p > 0))] = 0.0
    (logits * torch.tensor(p)).sum().backward()
    return {n: (w.grad.numpy(), b.grad.numpy()) for n, (w, b) in params.items()}, float(np.linalg.norm(p))


@pytest.mark.parametrize("new", ["maxpool:3:2:1", "maxpool:2:2:0", "avgpool2d:3:1:1", "avgpool2d:3:2:1:pad",
                                 "avgpool2d:2:2:0"] + [f"lut:{f}" for f in FUNCTIONS])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_through_layer_matches_float_autodiff(new, seed):
    """Every weight and bias gradient, the first conv's reaching it through
    the new layer, equals float64 autodiff within the rounding of int16
    gradients (tests/test_gradients.py, TOL)."""
    b = NetBuilder((7, 7, 2), seed=seed)
    b.conv(6, 3, act=None)
    kind, *args = new.split(":")
    if kind == "lut":
        b.activation(":".join(args))
    elif kind == "maxpool":
        b.maxpool(int(args[0]), int(args[1]), int(args[2]))
    else:
        b.avgpool2d(int(args[0]), int(args[1]), int(args[2]), count_pad=len(args) > 3)
    b.conv(5, 3, act=None)
    b.fc(4)
    graph = b.quantize(netzoo.calib(b, n=32, seed=seed))
    plan = compile_model(graph, Scheme.full(graph, lr=LR_TINY), reuse_memory=False)
    trainer = tinytrain.Trainer(plan.data)
    for i, x in enumerate(quantize_input(graph, netzoo.calib(b, n=4, seed=seed + 50))):
        label = i % 4
        g_core, _ = core_gradients(graph, plan.model, trainer, x, label)
        g_ref, gnorm = torch_gradients(graph, plan, trainer, x, label)
        tol = TOL + SOFTMAX_TERM * 2.0 ** -24 * np.sqrt(4) / max(gnorm, 1e-30)
        for name, (dw, db) in g_ref.items():
            assert rel_err(g_core[name][0], dw) < tol, f"{name} weights, sample {i}"
            assert rel_err(g_core[name][1], db) < tol, f"{name} biases, sample {i}"


def test_a_wrong_gradient_is_caught():
    """Negative control: a table whose derivative is off by 3% fails the
    comparison above."""
    b = NetBuilder((7, 7, 2), seed=0)
    b.conv(6, 3, act=None)
    b.activation("tanh")
    b.fc(4)
    graph = b.quantize(netzoo.calib(b, n=32, seed=0))
    lut = graph.layers[1]
    lut.table_grad = np.round(lut.table_grad * 0.97).astype(np.int16)
    plan = compile_model(graph, Scheme.full(graph, lr=LR_TINY), reuse_memory=False)
    trainer = tinytrain.Trainer(plan.data)
    x = quantize_input(graph, netzoo.calib(b, n=1, seed=50))[0]
    g_core, _ = core_gradients(graph, plan.model, trainer, x, 1)
    g_ref, _ = torch_gradients(graph, plan, trainer, x, 1)
    assert rel_err(g_core["conv0"][0], g_ref["conv0"][0]) > 4 * TOL


def test_max_pool_first_maximum_takes_the_gradient():
    """Ties (common in int8) route the whole gradient to the first maximum
    in row order, once: the input gradient has one non-zero per window."""
    b = NetBuilder((4, 4, 1), seed=0)
    b.conv(1, 1, act="relu", weight=np.zeros((1, 1, 1, 1)), bias=np.ones(1))  # constant output: all ties
    b.maxpool(2, 2)
    b.fc(2)
    graph = b.quantize(np.zeros((4, 4, 4, 1)))
    plan = compile_model(graph, Scheme(bias={"conv0"}, lr=0.1), reuse_memory=False)
    ref = Reference(plan.data)
    ref.step(np.zeros(16, np.int8), label=1)
    t = tinytrain.Trainer(plan.data)
    t.step(bytes(16), 1)
    tid = {p.name: i for i, p in enumerate(plan.tensors)}["dconv0"]
    g = np.frombuffer(t.tensor(tid, plan.model.tensors[tid].size)[4:], "<i2").reshape(4, 4)
    assert np.array_equal(g != 0, np.kron(np.ones((2, 2)), [[1, 0], [0, 0]]).astype(bool)), g


# -- the same core on the Cortex-M7 (qemu) and under the sanitizers ------------
@pytest.mark.parametrize("target", ["host", "m7"])
def test_every_layer_trains_bit_identically_on_targets(target, tmp_path):
    """tt_run on the host under ASan/UBSan and on the emulated Cortex-M7:
    losses, predictions, logits and trained parameters equal the simulator's."""
    from tinytrain import runner
    missing = runner.missing_tools(target)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (make setup installs them)")
    b = netzoo.tutorial(3)
    graph = b.quantize(netzoo.calib(b, n=32, seed=3))
    plan = compile_model(graph, Scheme.full(graph, lr=0.05))
    xs = quantize_input(graph, netzoo.calib(b, n=12, seed=9))
    labels = [i % 4 for i in range(len(xs))]
    t = tinytrain.Trainer(plan.data)
    losses = [np.float32(t.step(x.tobytes(), y)).tobytes() for x, y in zip(xs, labels)]
    got = runner.run(runner.build(target, tmp_path), plan.data, list(zip(xs, labels)), xs[:3], target=target)
    assert got.status == 0, got.message
    assert [v.tobytes() for v in got.losses] == losses
    assert got.classes == [t.predict(x.tobytes()) for x in xs[:3]]
    assert got.logits == [t.logits(x.tobytes()) for x in xs[:3]]
    assert got.params == t.params() != tinytrain.Trainer(plan.data).params()


def test_model_file_round_trips_to_graph():
    """A model file's pools and tables read back into the graph (re-planning
    a .ttm): compiled again, the same bytes."""
    from tinytrain.compiler import graph_from_model
    _, g, plan = netzoo.build("tutorial", "sparse")
    g2 = graph_from_model(plan.data)
    assert compile_model(g2, Scheme.full(g2)).data == compile_model(g, Scheme.full(g)).data
