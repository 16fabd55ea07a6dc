"""The Python API: tinytrain.convert/plan return a Model that says what it
takes (shape, scale, zero, layout) and trains; Trainer.quantize/info/logits."""
import warnings
from pathlib import Path

import numpy as np
import pytest

import tinytrain
from tinytrain import cli
from tinytrain import modelfile as mf
from tinytrain.compiler import graph_from_model

import netzoo

FIXTURES = Path(__file__).parent / "fixtures"


def _onnx_fc(tmp_path):
    """A float ONNX model whose output depends on where each input value is:
    NCHW input (2, 3, 4), Flatten, Gemm to 5 classes; with its calibration data."""
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (it is in the test extras)")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.5, (5, 24)).astype(np.float32)
    b = rng.normal(0, 0.1, 5).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"], axis=1, name="flat"),
         helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1, name="head")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "fc.onnx"
    onnx.save(model, str(path))
    calib = rng.uniform(0, 1, (64, 2, 3, 4)).astype(np.float32)
    return path, calib, w, b


def test_convert_onnx_says_nchw_and_quantize_follows_it(tmp_path):
    path, calib, w, b = _onnx_fc(tmp_path)
    m = tinytrain.convert(path, calib=calib)
    assert (m.layout, m.sample_shape, m.input_shape) == ("NCHW", (2, 3, 4), (3, 4, 2))
    lo, hi = m.calibration_range
    assert lo <= 0.02 and 0.98 <= hi  # covers the calibration data
    # the model's float function of NCHW samples, through quantize and the int8 core
    x = np.random.default_rng(1).uniform(0, 1, (100, 2, 3, 4)).astype(np.float32)
    want = x.reshape(100, -1) @ w.T + b
    t = tinytrain.Trainer(m.data)
    got = np.stack([t.logits(q, dequantize=True) for q in m.quantize(x)])
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.95
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max()
    # one sample = the batch's row; size-1 axes and flat accepted
    assert bytes(t.quantize(x[3])) == bytes(m.quantize(x)[3])
    assert bytes(t.quantize(x[3].reshape(-1))) == bytes(m.quantize(x)[3])
    # the flag survives a file round trip and re-planning
    m2 = tinytrain.plan(m.data, scheme="full")
    assert m2.layout == "NCHW" and graph_from_model(m2.data).input_layout == "NCHW"


def test_tflite_models_are_nhwc():
    m = tinytrain.convert(FIXTURES / "digits_int8.tflite")
    assert m.layout == "NHWC" and m.sample_shape == m.input_shape


def test_trainer_info_carries_the_input_quantisation():
    _, g, plan = netzoo.build("cnn", "sparse")
    m = tinytrain.Model(plan.data)
    info = tinytrain.Trainer(plan.data).info()
    t_in = g.tensors[g.input]
    assert info["input_shape"] == tuple(t_in.shape) == m.input_shape
    assert info["input_scale"] == pytest.approx(t_in.scale, rel=1e-7) and info["input_zero"] == t_in.zero
    t_out = g.tensors[g.output]
    assert info["output_scale"] == pytest.approx(t_out.scale, rel=1e-7) and info["output_zero"] == t_out.zero


def test_dequantized_logits_are_the_int8_ones_scaled():
    _, g, plan = netzoo.build("cnn", "sparse")
    t = tinytrain.Trainer(plan.data)
    x = np.random.default_rng(0).integers(-128, 128, t.info()["input_bytes"]).astype(np.int8)
    q = np.frombuffer(t.logits(x), np.int8).astype(np.float64)
    info = t.info()
    assert np.allclose(t.logits(x, dequantize=True), (q - info["output_zero"]) * info["output_scale"], rtol=1e-6)


def test_quantize_matches_the_formula_and_checks_its_input():
    b, g, plan = netzoo.build("cnn", "sparse")
    t = tinytrain.Trainer(plan.data)
    info = t.info()
    lo, hi = tinytrain.Model(plan.data).calibration_range
    x = np.random.default_rng(0).uniform(lo, hi, (7,) + b.input_shape)
    want = np.clip(np.round(x / info["input_scale"] + info["input_zero"]), -128, 127).astype(np.int8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(t.quantize(x), want.reshape(7, -1))
    with pytest.warns(tinytrain.DataWarning, match="outside the range the model was calibrated on"):
        t.quantize(x * 10)
    bad = x.copy()
    bad[4, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="sample 4"):
        t.quantize(bad)
    with pytest.raises(ValueError, match="uint8"):
        t.quantize(np.zeros(b.input_shape, np.uint8))
    with pytest.raises(ValueError, match=r"shape \(12, 12, 4\)"):
        t.quantize(np.zeros((12, 12, 4)))
    with pytest.raises(ValueError, match="NHWC: transpose"):
        t.quantize(np.zeros((3, 12, 12)))


def test_layer_names_are_one_everywhere(tmp_path, capsys):
    """The names a converted graph has (the planner's, --weight-layers') are
    the names the file, Model.layers, info and a re-planned graph use."""
    _, g, plan = netzoo.build("mbnet", "sparse")
    names = [L.name for L in g.layers]
    assert len(set(names)) == len(names)
    assert [L.name for L in mf.Model.parse(plan.data).layers] == names
    assert [L.name for L in tinytrain.Model(plan.data).layers] == names
    assert graph_from_model(plan.data).layer_names == names
    p = tmp_path / "m.ttm"
    p.write_bytes(plan.data)
    assert cli.main(["info", str(p)]) == 0
    out = capsys.readouterr().out
    assert all(f" {n} " in out for n in names)
    # a scheme naming a layer by its name plans the .ttm
    spec = tmp_path / "s.json"
    spec.write_text('{"bias": ["%s"], "weights": {"%s": 1.0}}' % (names[-3], names[-1]))
    m = tinytrain.plan(p, scheme=str(spec))
    assert set(m.trains) == {names[-3], names[-1]}


def test_files_without_names_get_kind_and_index():
    _, g, plan = netzoo.build("cnn", "sparse")
    m = mf.Model.parse(plan.data)
    m.header.flags &= ~mf.HF_LAYER_NAMES
    data = m.pack()
    assert [L.name for L in tinytrain.Model(data).layers] == \
        [f"{mf.LAYER_KIND_NAMES[L.kind]}{i}" for i, L in enumerate(m.layers)]
    tinytrain.Trainer(data)


def test_api_options_are_the_commands(tmp_path):
    _, g, plan = netzoo.build("cnn", "sparse")
    with pytest.raises(TypeError, match="no option 'shceme'"):
        tinytrain.plan(plan.data, shceme="full")
    with pytest.raises(ValueError, match="lr must be a finite number"):
        tinytrain.plan(plan.data, lr=-1.0)
    m = tinytrain.plan(plan.data, scheme="bias:2", lr=0.01)
    assert m.lr == pytest.approx(0.01) and len(m.trains) == 2
    assert "peak live" in m.report()
    out = tmp_path / "x.ttm"
    m.save(out)
    assert out.read_bytes() == m.data == bytes(m)


def test_info_of_a_source_model_suggests_convert(tmp_path, capsys):
    p = tmp_path / "net.pkl"
    p.write_bytes(b"PK\x03\x04 not a model file")
    assert cli.main(["info", str(p)]) == 2
    assert "tinytrain convert" in capsys.readouterr().err
