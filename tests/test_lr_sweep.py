"""The planner picks the learning rate on the user's data and stores it, and
trains with it decaying linearly (lr_rule.linear_decay_lr)."""
import numpy as np
import pytest

import tinytrain
from tinytrain import cli, planner
from tinytrain.compiler import compile_model
from tinytrain.lr_rule import linear_decay_lr

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
    best, scores = planner.pick_lr(g, train, val, candidates=(1e-7, 0.1))
    # a rate that cannot move the weights learns nothing; scored independently by hand
    for lr in (1e-7, 0.1):
        t = tinytrain.Trainer(compile_model(g, planner.make_scheme(g, max(planner.default_bias_ks(g)), lr=lr)).data)
        order = np.random.default_rng(0).permutation(len(train[1]))
        for n, i in enumerate(order):  # the planner's runs decay the rate linearly
            t.set_lr(np.float32(lr) * np.float32(len(order) - n) / np.float32(len(order)))
            t.step(train[0][i], int(train[1][i]))
        assert scores[lr] == t.evaluate(val[0].tobytes(), val[1])
    assert best == 0.1 and scores[0.1] > scores[1e-7]


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


def test_linear_decay_lr_is_binary32_arithmetic():
    """lr (total - step) / total with one binary32 rounding per operation, as a
    board with float32 floats computes it; from lr down to lr / total."""
    rng = np.random.default_rng(3)
    for lr in (0.03, 0.1, 1e-3, 0.7):
        total = int(rng.integers(1, 5000))
        for step in {0, 1, total // 2, total - 1}:
            want = (np.float32(lr) * np.float32(total - step)) / np.float32(total)
            assert np.float32(want).tobytes() == np.float32(linear_decay_lr(lr, step, total)).tobytes()
        assert linear_decay_lr(lr, 0, total) == float(np.float32(lr))
    assert linear_decay_lr(0.03, 599, 600) == float(np.float32(np.float32(0.03) / np.float32(600)))


@pytest.mark.parametrize("args", [(0.1, 5, 5), (0.1, -1, 5), (0.1, 0, 0), (0.1, 1.0, 5), (0.0, 0, 5),
                                  (float("nan"), 0, 5), (0.1, 0, 1 << 24)])
def test_linear_decay_lr_refuses(args):
    with pytest.raises(ValueError):
        linear_decay_lr(*args)


def test_planner_runs_decay_the_rate():
    """train_and_evaluate: the model's rate decaying linearly over the run
    (set_lr before each step), or constant with decay=False; each equals a
    loop written by hand, and the two differ."""
    g, train, val, _, _ = _task()
    data = compile_model(g, planner.make_scheme(g, 1, lr=0.05)).data
    got = {d: planner.train_and_evaluate(data, train, val[0].tobytes(), val[1], 1, 2, decay=d)
           for d in (True, False)}
    params = {}
    for decay in (True, False):
        t = tinytrain.Trainer(data)
        steps = [i for order in planner.sample_orders(1, len(train[1]), 2) for i in order]
        for n, i in enumerate(steps):
            if decay:
                t.set_lr(linear_decay_lr(0.05, n, len(steps)))
            t.step(train[0][i], int(train[1][i]))
        assert got[decay] == t.evaluate(val[0].tobytes(), val[1])
        params[decay] = t.params()
    assert params[True] != params[False]
