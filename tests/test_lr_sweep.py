"""The planner picks the learning rate on the user's data and stores it."""
import numpy as np

import tinytrain
from tinytrain import cli, planner
from tinytrain.compiler import compile_model

import netzoo


def _task(n=120, seed=7):
    b = netzoo.mlp(0, n_classes=5)
    g = b.quantize(netzoo.calib(b))
    rng = np.random.default_rng(seed)
    protos = rng.uniform(-1, 1, size=(5,) + b.input_shape)
    y = rng.integers(0, 5, n)
    x = np.clip(protos[y] + rng.normal(0, 0.5, size=(n,) + b.input_shape), -1, 1)
    q = tinytrain.Model(compile_model(g, planner.make_scheme(g, 0)).data).quantize(x)
    return g, (q[:80], y[:80]), (q[80:], y[80:]), x, y


def test_pick_lr_takes_the_best_scored_rate():
    g, train, val, _, _ = _task()
    best, scores = planner.pick_lr(g, train, val, candidates=(1e-7, 0.02))
    # a rate that cannot move the weights learns nothing; scored independently by hand
    for lr in (1e-7, 0.02):
        t = tinytrain.Trainer(compile_model(g, planner.make_scheme(g, max(planner.default_bias_ks(g)), lr=lr)).data)
        for i in np.random.default_rng(0).permutation(len(train[1])):
            t.step(train[0][i], int(train[1][i]))
        assert scores[lr] == t.evaluate(val[0].tobytes(), val[1])
    assert best == 0.02 and scores[0.02] > scores[1e-7]


def test_plan_budget_stores_the_picked_lr(tmp_path, capsys):
    g, train, val, x, y = _task()
    src = tmp_path / "m.ttm"
    src.write_bytes(compile_model(g, planner.make_scheme(g, 0)).data)
    np.savez(tmp_path / "d.npz", x=x[:80].astype(np.float32), y=y[:80], x_eval=x[80:].astype(np.float32),
             y_eval=y[80:])
    assert cli.main(["plan", str(src), "--budget", "1M", "--data", str(tmp_path / "d.npz"), "--jobs", "1",
                     "-o", str(tmp_path / "o.ttm")]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("learning rate "))
    picked = float(line.split()[2].rstrip(","))
    assert picked in planner.LR_CANDIDATES
    info = tinytrain.Trainer((tmp_path / "o.ttm").read_bytes()).info()
    assert info["lr"] == np.float32(picked)
    # --lr given: no sweep, that rate
    assert cli.main(["plan", str(src), "--budget", "1M", "--data", str(tmp_path / "d.npz"), "--jobs", "1",
                     "--lr", "0.03", "-o", str(tmp_path / "p.ttm")]) == 0
    assert "learning rate" not in capsys.readouterr().out.split("contribution analysis")[0]
    assert tinytrain.Trainer((tmp_path / "p.ttm").read_bytes()).info()["lr"] == np.float32(0.03)
