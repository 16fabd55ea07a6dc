"""`tinytrain plan MODEL --budget BYTES --data FILE.npz` end to end on a
small netzoo model (few samples, 1 epoch, 2 workers), its error cases and the
--analysis cache. The planner itself is tested in test_planner.py; here the
searched scheme is checked against planner.search (brute force) on the same
analysis, and the written model against an independent compile."""
import json
import re

import numpy as np
import pytest

import tinytrain
from tinytrain import cli, planner
from tinytrain import modelfile as mf
from tinytrain.builder import quantize_input
from tinytrain.compiler import Scheme, compile_model, graph_from_model
from tinytrain.plancmd import parse_bytes

import netzoo

ANALYSIS = ["--bias-ks", "0,1,2,3", "--weight-layers", "conv0,conv2", "--ratios", "1/2,1", "--epochs", "1",
            "--jobs", "2"]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """netzoo's cnn as a .ttm, float training data (NHWC) and validation data as .npz."""
    d = tmp_path_factory.mktemp("plan")
    b = netzoo.cnn(0)
    g = b.quantize(netzoo.calib(b))
    (d / "m.ttm").write_bytes(compile_model(g, Scheme.full(g)).data)
    rng = np.random.default_rng(7)
    protos = rng.uniform(-1, 1, size=(5,) + b.input_shape)
    y = rng.integers(0, 5, 100)
    x = np.clip(protos[y] + rng.normal(0, 1.0, size=(100,) + b.input_shape), -1, 1).astype(np.float32)
    np.savez(d / "train.npz", x=x[:60], y=y[:60])
    np.savez(d / "val.npz", x=x[60:], y=y[60:])
    graph = graph_from_model((d / "m.ttm").read_bytes())
    return d, graph, x, y


def plan(task, *extra, out="o.ttm"):
    d = task[0]
    return cli.main(["plan", str(d / "m.ttm"), "-o", str(d / out)] + [str(a) for a in extra])


@pytest.fixture(scope="module")
def analysed(task):
    """One analysis through the CLI, saved for the rest (the budget: everything fits)."""
    d = task[0]
    assert plan(task, "--budget", "1M", "--data", d / "train.npz", "--val", d / "val.npz", *ANALYSIS,
                "--save-analysis", d / "a.json", "--report", d / "r.txt", "--plot", d / "p.png",
                out="big.ttm") == 0
    return planner.Analysis.load(d / "a.json")


def trained_layers(model: bytes) -> dict:
    m = mf.Model.parse(model)
    return {i: (bool(L.flags & mf.LF_TRAIN_BIAS), L.n_train) for i, L in enumerate(m.layers)
            if L.n_train or L.flags & mf.LF_TRAIN_BIAS}


def test_parse_bytes():
    assert parse_bytes("65536") == parse_bytes("64k") == parse_bytes("64K") == parse_bytes("64KiB") \
        == parse_bytes("64kB") == 65536
    assert parse_bytes("1.5M") == 1536 * 1024 and parse_bytes("0.5k") == 512 and parse_bytes("1_000") == 1000
    for bad, msg in (("64x", "not a number of bytes"), ("1.5", "whole number"), ("0", "positive"),
                     ("-5", "not a number"), ("k", "not a number")):
        with pytest.raises(ValueError, match=msg):
            parse_bytes(bad)


def test_analysis_and_outputs(task, analysed):
    d, g, _, _ = task
    a = analysed
    assert sorted(a.bias) == [0, 1, 2, 3] and a.weight_layers == ["conv0", "conv2"]
    assert a.ratios == (0.5, 1.0) and a.settings["n_train"] == 60 and a.settings["n_val"] == 40
    model = (d / "big.ttm").read_bytes()
    report = (d / "r.txt").read_text()
    # the report: the searched scheme, its predicted gain, the memory plan, the analysis table
    assert "scheme searched under 1,048,576 bytes" in report and "predicted validation accuracy" in report
    assert "op  live_bytes  name" in report and "tensors live at the peak" in report
    assert "biases of the last k layers" in report and "conv2" in report
    assert (d / "p.png").read_bytes()[:4] == b"\x89PNG"
    # the scheme the report gives, compiled independently, is the model written
    spec = d / "scheme.json"
    spec.write_text(report.split("the scheme (as a file for --scheme FILE.json):\n", 1)[1].split("\n", 1)[0])
    assert plan(task, "--scheme", spec, out="again.ttm") == 0
    assert (d / "again.ttm").read_bytes() == model
    tinytrain.Trainer(model)


def test_budget_sweep_matches_brute_force(task, analysed, capsys):
    d, g, _, _ = task
    a = analysed
    arenas = sorted({c.arena for c in list(a.bias.values()) + list(a.weight.values())})
    budgets = [arenas[0], (arenas[0] + arenas[len(arenas) // 2]) // 2, arenas[len(arenas) // 2], arenas[-1]]
    gains = []
    for budget in budgets:
        capsys.readouterr()
        assert plan(task, "--budget", budget, "--analysis", d / "a.json", "--report", d / "s.txt") == 0
        model = (d / "o.ttm").read_bytes()
        m = mf.Model.parse(model)
        assert m.header.arena_size <= budget
        best = planner.search(a, budget, g, method="brute")
        assert trained_layers(model) == trained_layers(compile_model(g, best.scheme).data)
        assert m.header.arena_size == best.arena_size
        text = capsys.readouterr().out
        assert f"{100 * best.gain:+.1f}" in text and f"budget {budget:,}" in text
        gains.append(best.gain)
    assert gains == sorted(gains) and gains[-1] > gains[0]  # more memory, more (measured) gain


def test_analysis_cache_round_trip(task, analysed):
    d, g, _, _ = task
    budget = sorted(c.arena for c in analysed.bias.values())[2]
    # measured again from the data with the same settings: the same analysis, the same model
    assert plan(task, "--budget", budget, "--data", d / "train.npz", "--val", d / "val.npz", *ANALYSIS,
                "--save-analysis", d / "b.json", out="fresh.ttm") == 0
    assert plan(task, "--budget", budget, "--analysis", d / "a.json", out="cached.ttm") == 0
    assert (d / "fresh.ttm").read_bytes() == (d / "cached.ttm").read_bytes()
    fresh, cached = planner.Analysis.load(d / "b.json"), planner.Analysis.load(d / "a.json")
    assert {k: c.accs for k, c in fresh.bias.items()} == {k: c.accs for k, c in cached.bias.items()}
    assert {k: c.accs for k, c in fresh.weight.items()} == {k: c.accs for k, c in cached.weight.items()}
    # the same command line plus --analysis is accepted (layers and ratios in any order)
    again = [a.replace("conv0,conv2", "conv2,conv0").replace("1/2,1", "1,0.5") for a in ANALYSIS]
    assert plan(task, "--budget", budget, "--analysis", d / "a.json", *again, out="cached2.ttm") == 0
    assert (d / "cached2.ttm").read_bytes() == (d / "cached.ttm").read_bytes()


@pytest.mark.parametrize("extra,msg", [(["--epochs", "2"], "--epochs: the analysis in .* was measured with 1"),
                                       (["--ratios", "1"], "--ratios"),
                                       (["--bias-ks", "0,3"], "--bias-ks"),
                                       (["--no-qas"], "--no-qas")])
def test_analysis_cache_refuses_other_settings(task, analysed, extra, msg, capsys):
    d = task[0]
    assert plan(task, "--budget", "1M", "--analysis", d / "a.json", *extra) == 2
    assert re.search(msg, capsys.readouterr().err)


def test_analysis_of_another_model_is_refused(task, analysed, tmp_path, capsys):
    b = netzoo.cnn(1)
    g = b.quantize(netzoo.calib(b, seed=1))
    other = tmp_path / "other.ttm"
    other.write_bytes(compile_model(g, Scheme.full(g)).data)
    assert cli.main(["plan", str(other), "--budget", "1M", "--analysis", str(task[0] / "a.json"),
                     "-o", str(tmp_path / "o.ttm")]) == 2
    assert "measured on another model" in capsys.readouterr().err
    assert not (tmp_path / "o.ttm").exists()


def test_int8_and_float_inputs_agree(task, tmp_path):
    """Float inputs are quantised with the model's input scale: the same
    analysis as the int8 inputs quantize_input gives (the builder's path)."""
    d, g, x, y = task
    q = quantize_input(g, x)
    np.savez(tmp_path / "q.npz", x=q[:60], y=y[:60], x_eval=q[60:].reshape(40, -1), y_eval=y[60:])
    args = ANALYSIS[:2] + ["--weight-layers", "conv2", "--ratios", "1", "--jobs", "2"]
    assert plan(task, "--budget", "1M", "--data", tmp_path / "q.npz", *args,
                "--save-analysis", tmp_path / "q.json") == 0  # validation: the file's x_eval
    assert plan(task, "--budget", "1M", "--data", d / "train.npz", "--val", d / "val.npz", *args,
                "--save-analysis", tmp_path / "f.json") == 0
    qa, fa = planner.Analysis.load(tmp_path / "q.json"), planner.Analysis.load(tmp_path / "f.json")
    assert qa.settings["n_val"] == 40
    assert {k: c.accs for k, c in qa.bias.items()} == {k: c.accs for k, c in fa.bias.items()}


def test_val_split(task, tmp_path):
    d = task[0]
    assert plan(task, "--budget", "1M", "--data", d / "train.npz", "--val-split", "0.25", "--bias-ks", "0,1",
                "--weight-layers", "conv2", "--ratios", "1", "--jobs", "2",
                "--save-analysis", tmp_path / "s.json") == 0
    s = planner.Analysis.load(tmp_path / "s.json").settings
    assert s["n_train"] + s["n_val"] == 60 and 12 <= s["n_val"] <= 18


def test_budget_below_the_minimum(task, capsys):
    d, g, _, _ = task
    head = planner.split_layers(g)[1]
    need = compile_model(g, planner.make_scheme(g, 0)).arena_size
    bias_only = compile_model(g, Scheme(bias={head}, weights={})).arena_size
    assert bias_only < need
    for budget in (need - 4, bias_only):
        assert plan(task, "--budget", budget, "--data", d / "train.npz", out="small.ttm") == 2
        err = capsys.readouterr().err
        assert f"needs {need:,} bytes of arena (the minimum)" in err and f"fits in {bias_only:,}" in err
    assert plan(task, "--budget", bias_only - 4, "--data", d / "train.npz", out="small.ttm") == 2
    err = capsys.readouterr().err
    assert "too small for even the classifier's bias" in err and f"needs {bias_only:,} bytes" in err
    assert not (d / "small.ttm").exists()


def test_explicit_scheme_against_the_budget(task, capsys):
    d, g, _, _ = task
    arena = compile_model(g, Scheme.full(g)).arena_size
    assert plan(task, "--scheme", "full", "--budget", arena - 1, out="over.ttm") == 2
    err = capsys.readouterr().err
    assert f"needs {arena:,} bytes of arena, over the budget of {arena - 1:,} bytes" in err
    assert not (d / "over.ttm").exists()
    assert plan(task, "--scheme", "full", "--budget", arena, "--check-peak", out="full.ttm") == 0
    out = capsys.readouterr().out
    assert f"fits the budget: arena {arena:,} of {arena:,} bytes" in out and "touched" in out
    assert mf.Model.parse((d / "full.ttm").read_bytes()).header.arena_size == arena


def bad_files(tmp_path, x, y):
    q = np.asarray(x[:20])
    cases = {
        "no_y.npz": (dict(x=q), r"no array 'y' of labels \(it holds: x\)"),
        "no_x.npz": (dict(inputs_=q, y=y[:20]), "no array 'x' of inputs"),
        "nchw.npz": (dict(x=q.transpose(0, 3, 1, 2), y=y[:20]),
                     r"the model's source took NHWC: transpose your data"),
        "short.npz": (dict(x=q.reshape(20, -1)[:, :50], y=y[:20]),
                      r"has shape \(20, 50\); the model takes one input of shape \(12, 12, 3\)"),
        "labels_range.npz": (dict(x=q, y=np.r_[y[:19], 5]), r"label 5 \(sample 19\) out of range: the model "
                             "has 5 classes"),
        "labels_neg.npz": (dict(x=q, y=np.r_[-1, y[1:20]]), r"label -1 \(sample 0\) out of range"),
        "labels_float.npz": (dict(x=q, y=y[:20] + 0.5), "labels must be class indices \\(whole numbers\\)"),
        "labels_count.npz": (dict(x=q, y=y[:19]), "20 inputs but 19 labels"),
        "int_range.npz": (dict(x=(q * 200).astype(np.int32), y=y[:20]), r"are int32: say what they are"),
        "int8_raw.npz": (dict(x=np.full(q.shape, 5, np.int64), y=y[:20]), r"are int64: say what they are"),
        "nan.npz": (dict(x=np.where(q > 0.9, np.nan, q), y=y[:20]), "NaN"),
    }
    for name, (arrays, msg) in cases.items():
        np.savez(tmp_path / name, **arrays)
        yield tmp_path / name, msg
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    yield tmp_path / "junk.npz", "not a readable .npz file"
    yield tmp_path / "absent.npz", "absent.npz: no such file"


def test_bad_data(task, tmp_path, capsys):
    d, g, x, y = task
    for path, msg in bad_files(tmp_path, x, y):
        assert plan(task, "--budget", "1M", "--data", path, out="bad.ttm") == 2, path.name
        err = capsys.readouterr().err
        assert err.startswith("tinytrain: ") and re.search(msg, err), (path.name, err)
    assert not (d / "bad.ttm").exists()


@pytest.mark.parametrize("args,msg", [
    (["--data", "x.npz"], "--data: these plan under a memory budget; give --budget"),
    (["--budget", "64k"], "--budget needs training data"),
    (["--budget", "64q", "--data", "x.npz"], "--budget '64q' is not a number of bytes"),
    (["--budget", "64k", "--no-fuse", "--data", "x.npz"], "--no-fuse"),
    (["--budget", "64k", "--no-bias16", "--data", "x.npz"], "--no-bias16"),
    (["--budget", "64k", "--scheme", "last", "--epochs", "2"], "--epochs: these search a scheme"),
    (["--budget", "64k", "--analysis", "absent.json"], "--analysis absent.json: no such file"),
    (["--budget", "64k", "--analysis", "x.npz"], "not a saved analysis"),
    (["--budget", "64k", "--data", "x.npz", "--report", "no_such_folder/r.txt"],
     "--report no_such_folder/r.txt: folder no_such_folder does not exist"),
    (["--budget", "64k", "--data", "x.npz", "--val-split", "1.5"], None),
    (["--budget", "64k", "--data", "x.npz", "--weight-layers", "conv4"], "classifier, which is always trained"),
])
def test_bad_options(task, args, msg, capsys):
    d = task[0]
    args = [str(d / "train.npz") if a == "x.npz" else a for a in args]
    assert plan(task, *args, out="never.ttm") == 2
    err = capsys.readouterr().err
    assert err.startswith("tinytrain: ")
    assert msg is None or msg in err
    if msg is None:
        assert "--val-split 1.5: must lie strictly between 0 and 1" in err
    assert not (d / "never.ttm").exists()
