"""The `tinytrain` command: convert, plan, info."""
import json
from pathlib import Path

import pytest

import tinytrain
from tinytrain import cli
from tinytrain import modelfile as mf
from tinytrain.compiler import graph_from_model, compile_model, Scheme

import netzoo

TTE = Path(__file__).resolve().parents[2] / "shared" / "models" / "tte"


@pytest.fixture
def ttm(tmp_path):
    _, _, plan = netzoo.build("mbnet", "sparse")
    p = tmp_path / "m.ttm"
    p.write_bytes(plan.data)
    return p


def test_model_file_round_trips_to_graph():
    _, g, plan = netzoo.build("mbnet", "sparse")
    g2 = graph_from_model(plan.data)
    assert compile_model(g2, Scheme.full(g2)).data == compile_model(g, Scheme.full(g)).data


@pytest.mark.parametrize("scheme", ["last", "full", "bias:3"])
def test_plan_schemes(ttm, tmp_path, scheme, capsys):
    out = tmp_path / "o.ttm"
    assert cli.main(["plan", str(ttm), "--scheme", scheme, "-o", str(out), "--plot", str(tmp_path / "m.png"),
                     "--report", str(tmp_path / "r.txt")]) == 0
    t = tinytrain.Trainer(out.read_bytes())
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    assert "peak live" in (tmp_path / "r.txt").read_text()
    m = mf.Model.parse(out.read_bytes())
    trained = [L for L in m.layers if L.n_train or L.flags & mf.LF_TRAIN_BIAS]
    assert len(trained) == {"last": 1, "full": 9, "bias:3": 3}[scheme]
    assert t.info()["arena_bytes"] == m.header.arena_size


def test_plan_json_scheme(ttm, tmp_path):
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"bias": [-1, -2], "weights": {"-1": 1.0, "-3": 0.5}, "residue": True}))
    out = tmp_path / "o.ttm"
    assert cli.main(["plan", str(ttm), "--scheme", str(spec), "-o", str(out)]) == 0
    m = mf.Model.parse(out.read_bytes())
    assert sum(bool(L.n_train) for L in m.layers) == 2
    assert all(L.flags & mf.LF_RESIDUE for L in m.layers if L.n_train)


@pytest.mark.parametrize("scheme,msg", [("nope", "unknown scheme"), ("bias:99", "layers with parameters"),
                                        ("mcunet-5fps:7kb", "no published scheme")])
def test_bad_schemes(ttm, tmp_path, scheme, msg, capsys):
    assert cli.main(["plan", str(ttm), "--scheme", scheme, "-o", str(tmp_path / "o.ttm")]) == 2
    assert msg in capsys.readouterr().err


def test_info(ttm, capsys):
    assert cli.main(["info", str(ttm)]) == 0
    out = capsys.readouterr().out
    assert "input 10x10x3 int8" in out and "dwconv" in out and "bias16 w 6/6" in out


def test_plan_bias16_and_not(ttm, tmp_path, capsys):
    """By default these trained biases are int16 changes (format 2.2); --no-bias16 keeps them int32."""
    b16, b32 = tmp_path / "a.ttm", tmp_path / "b.ttm"
    assert cli.main(["plan", str(ttm), "--scheme", "full", "-o", str(b16)]) == 0
    assert cli.main(["plan", str(ttm), "--scheme", "full", "--no-bias16", "-o", str(b32)]) == 0
    a, b = (mf.Model.parse(p.read_bytes()) for p in (b16, b32))
    trained = [i for i, L in enumerate(a.layers) if L.flags & mf.LF_TRAIN_BIAS]
    assert trained and all(a.layers[i].flags & mf.LF_BIAS16 for i in trained)
    assert not any(L.flags & mf.LF_BIAS16 for L in b.layers)
    assert a.header.persist_size < b.header.persist_size
    capsys.readouterr()
    assert cli.main(["info", str(b32)]) == 0
    assert "bias w 6/6" in capsys.readouterr().out


def test_plan_fused_and_not(ttm, tmp_path, capsys):
    """bias:3 leaves the first blocks frozen: the default plan fuses them, --no-fuse does not."""
    fused, plain = tmp_path / "f.ttm", tmp_path / "p.ttm"
    assert cli.main(["plan", str(ttm), "--scheme", "bias:3", "-o", str(fused)]) == 0
    assert cli.main(["plan", str(ttm), "--scheme", "bias:3", "--no-fuse", "-o", str(plain)]) == 0
    a, b = (mf.Model.parse(p.read_bytes()) for p in (fused, plain))
    assert any(op.kind == mf.OP_FWD_FUSED for op in a.ops)
    assert not any(op.kind == mf.OP_FWD_FUSED for op in b.ops)
    assert a.header.arena_size < b.header.arena_size
    capsys.readouterr()
    assert cli.main(["info", str(fused)]) == 0
    assert "run row by row, ring" in capsys.readouterr().out


@pytest.mark.skipif(not (TTE / "mcunet-5fps.pkl").exists(), reason="the paper's models are not in ../shared")
def test_convert_mcunet_published_schemes(tmp_path):
    sizes = []
    for label in ("49kb", "74kb", "99kb", "124kb", "148kb"):
        out = tmp_path / f"{label}.ttm"
        assert cli.main(["convert", str(TTE / "mcunet-5fps.pkl"), "--classes", "10", "--scheme",
                         f"mcunet-5fps:{label}", "-o", str(out)]) == 0
        m = mf.Model.parse(out.read_bytes())
        sizes.append(m.header.persist_size)
        tinytrain.Trainer(out.read_bytes())
    assert sizes == sorted(sizes)  # bigger published budgets train more
