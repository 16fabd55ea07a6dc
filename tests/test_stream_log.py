"""`tinytrain stream`: --lr at train time, the accuracy before training, the
CSV learning curve and its PNG beside --save; checked against the Trainer
trained by hand on the same samples."""
import csv

import numpy as np
import pytest

import tinytrain
from tinytrain import cli
from tinytrain.inputs import ModelIO

import netzoo


def _data(tmp_path, n=60):
    b, g, plan = netzoo.build("cnn", "full")
    rng = np.random.default_rng(2)
    xf = rng.uniform(-1, 1, size=(n,) + b.input_shape)
    y = rng.integers(0, g.tensors[g.output].numel, n)
    (tmp_path / "m.ttm").write_bytes(plan.data)
    np.savez(tmp_path / "d.npz", x=xf, y=y, x_eval=xf[:20], y_eval=y[:20])
    io = ModelIO(plan.data)
    return plan.data, io.inputs(xf), y


def test_stream_lr_before_and_log(tmp_path, capsys):
    model, q, y = _data(tmp_path)
    lr = 0.0123
    assert tinytrain.Trainer(model).info()["lr"] != np.float32(lr)
    save = tmp_path / "run" / "p.ttp"
    save.parent.mkdir()
    assert cli.main(["stream", "--model", str(tmp_path / "m.ttm"), "--data", str(tmp_path / "d.npz"), "--epochs",
                     "2", "--lr", str(lr), "--save", str(save), "-q"]) == 0
    out = capsys.readouterr().out
    # the same run by hand: Trainer(lr=...), accuracy on the evaluation set before and after each epoch
    t = tinytrain.Trainer(model, lr=lr)
    xe = q[:20].tobytes()
    before = t.evaluate(xe, y[:20])
    after = []
    for _ in range(2):
        for r, v in zip(q, y):
            t.step(r.tobytes(), int(v))
        after.append(t.evaluate(xe, y[:20]))
    assert save.read_bytes() == bytes(t.params_file())  # the lr reached the device
    assert f"before training: accuracy {100 * before:.1f}% on the evaluation set (20 samples)" in out
    rows = list(csv.DictReader(open(save.with_suffix(".csv"))))
    assert rows[0]["measured_on"] == "evaluation set" and float(rows[0]["accuracy"]) == before
    ev = [float(r["accuracy"]) for r in rows if r["measured_on"] == "evaluation set"][1:]
    assert ev == after
    pre = [r for r in rows if r["measured_on"] == "prequential"]
    assert int(pre[-1]["samples_seen"]) == 120 and {r["epoch"] for r in pre} == {"1", "2"}
    assert save.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_stream_checks_outputs_before_the_run(tmp_path, capsys):
    _data(tmp_path)
    assert cli.main(["stream", "--model", str(tmp_path / "m.ttm"), "--data", str(tmp_path / "d.npz"), "--save",
                     str(tmp_path / "nope" / "p.ttp"), "-q"]) == 2
    assert "folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["stream", "--model", str(tmp_path / "m.ttm"), "--data", str(tmp_path / "d.npz"), "--lr", "-1"])
    assert "lr must be a finite number > 0" in capsys.readouterr().err
