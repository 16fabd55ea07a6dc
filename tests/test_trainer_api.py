"""The board's Trainer API on the host: inputs, errors, save and load."""
import array
import os

import numpy as np
import pytest

import tinytrain
from tinytrain import modelfile as mf
from tinytrain.reference import Reference
from tinytrain.trainer import check_params_file

import netzoo


@pytest.fixture(scope="module")
def model():
    b, g, plan = netzoo.build("cnn", "sparse", seed=11)
    xs, ys = netzoo.samples(b, g, 16, seed=12)
    return plan, xs, ys


def test_model_as_bytes_bytearray_memoryview_and_path(model, tmp_path):
    plan, xs, ys = model
    path = tmp_path / "m.ttm"
    path.write_bytes(plan.data)
    losses = []
    for src in (plan.data, bytearray(plan.data), memoryview(plan.data), str(path), path):
        t = tinytrain.Trainer(src)
        losses.append(t.step(xs[0].tobytes(), ys[0]))
    assert len(set(losses)) == 1


def test_input_buffer_kinds_agree(model):
    plan, xs, ys = model
    x = xs[1]
    kinds = [x.tobytes(), bytearray(x.tobytes()), array.array("b", x.tolist()), memoryview(x.tobytes()), x]
    results = []
    for k in kinds:
        t = tinytrain.Trainer(plan.data)
        results.append((t.step(k, ys[1]), t.predict(k), t.params()))
    assert all(r == results[0] for r in results)


def test_training_reduces_loss_on_a_repeated_sample(model):
    plan, xs, ys = model
    t = tinytrain.Trainer(plan.data, lr=0.1)
    first = t.step(xs[0].tobytes(), ys[0])
    for _ in range(20):
        last = t.step(xs[0].tobytes(), ys[0])
    assert last < first
    assert t.predict(xs[0].tobytes()) == ys[0]


def test_evaluate_matches_predict(model):
    plan, xs, ys = model
    t = tinytrain.Trainer(plan.data)
    for x, y in zip(xs[:8], ys[:8]):
        t.step(x.tobytes(), y)
    blob = b"".join(x.tobytes() for x in xs)
    want = np.mean([t.predict(x.tobytes()) == y for x, y in zip(xs, ys)])
    assert t.evaluate(blob, ys) == pytest.approx(want)
    assert t.evaluate(np.stack(xs), np.array(ys)) == pytest.approx(want)


@pytest.mark.parametrize("bad,exc,msg", [
    ("a string", TypeError, "buffer of int8"),
    (12, TypeError, "buffer of int8"),
    (array.array("i", [0] * 10), TypeError, "1-byte int8"),
    (np.zeros(432, np.float32), TypeError, "1-byte int8"),
    (b"\0" * 5, ValueError, "x has 5 bytes, the model takes 432"),
])
def test_bad_inputs(model, bad, exc, msg):
    plan, xs, ys = model
    t = tinytrain.Trainer(plan.data)
    with pytest.raises(exc, match=msg):
        t.step(bad, 0)
    with pytest.raises(exc, match=msg):
        t.predict(bad)


@pytest.mark.parametrize("label,exc", [(-1, ValueError), (5, ValueError), (2.0, TypeError), ("1", TypeError),
                                       (True, TypeError)])
def test_bad_labels(model, label, exc):
    plan, xs, _ = model
    t = tinytrain.Trainer(plan.data)
    with pytest.raises(exc, match="label"):
        t.step(xs[0].tobytes(), label)


def test_evaluate_errors(model):
    plan, xs, ys = model
    t = tinytrain.Trainer(plan.data)
    with pytest.raises(ValueError, match="not a multiple of the input size 432"):
        t.evaluate(b"\0" * 433, [0])
    with pytest.raises(ValueError, match="2 inputs but 1 labels"):
        t.evaluate(b"\0" * 864, [0])


def test_bad_model_arguments(model):
    plan, _, _ = model
    with pytest.raises(TypeError, match="model must be"):
        tinytrain.Trainer(12345)
    with pytest.raises(FileNotFoundError):
        tinytrain.Trainer("/nonexistent/model.ttm")
    newer = mf.set_header_field(mf.set_header_field(plan.data, "version_major", 3), "version_minor", 0)
    with pytest.raises(ValueError, match=r"version 3\.0, this core reads 2\.x"):
        tinytrain.Trainer(newer)
    with pytest.raises(TypeError, match="lr"):
        tinytrain.Trainer(plan.data, lr="fast")


def test_lr_override_and_info(model):
    plan, xs, ys = model
    t = tinytrain.Trainer(plan.data, lr=0.5)
    info = t.info()
    assert info["lr"] == pytest.approx(0.5)
    assert info["arena_bytes"] == plan.arena_size
    assert info["param_bytes"] == plan.persist_size
    assert info["trained_params"] == plan.trained_params
    assert info["input_bytes"] == 432 and info["classes"] == 5 and info["steps"] == 0
    t.step(xs[0].tobytes(), ys[0])
    assert t.info()["steps"] == 1
    assert tinytrain.Trainer(plan.data).info()["lr"] == pytest.approx(plan.model.header.lr)


def test_set_lr_is_the_rate_of_the_following_steps(model):
    """set_lr(x) then a step: bit for bit a step of Trainer(lr=x) from the
    same parameters, and of the NumPy reference at that rate; None restores
    the model's rate; a refused rate leaves the rate as it was."""
    plan, xs, ys = model
    t = tinytrain.Trainer(plan.data)
    ref = Reference(plan.data)
    default = t.info()["lr"]
    for i, lr in enumerate((0.5, 0.125, 0.01, None)):
        before = bytes(t.params_file())
        t.set_lr(lr)
        assert t.info()["lr"] == (default if lr is None else float(np.float32(lr)))
        fresh = tinytrain.Trainer(plan.data, lr=lr)
        fresh.load(before)
        ref.lr = np.float32(default if lr is None else lr)
        loss = t.step(xs[i].tobytes(), ys[i])
        assert loss == fresh.step(xs[i].tobytes(), ys[i])
        assert np.float32(loss).tobytes() == np.float32(ref.step(xs[i], label=ys[i])).tobytes()
        assert t.params() == fresh.params() == ref.params_bytes()
    assert t.params() != tinytrain.Trainer(plan.data).params()
    for bad, exc in (("0.1", TypeError), (True, TypeError), (float("nan"), ValueError), (0.0, ValueError),
                     (-1.0, ValueError), (float("inf"), ValueError), (1e39, ValueError)):
        with pytest.raises(exc, match="lr must be"):
            t.set_lr(bad)
        assert t.info()["lr"] == default


def test_save_load_round_trip(model, tmp_path):
    plan, xs, ys = model
    a = tinytrain.Trainer(plan.data)
    for x, y in zip(xs, ys):
        a.step(x.tobytes(), y)
    path = tmp_path / "p.ttp"
    a.save(path)
    assert not os.path.exists(f"{path}.tmp")
    b = tinytrain.Trainer(plan.data)
    assert b.params() != a.params()
    b.load(path)
    assert b.params() == a.params() and b.info()["steps"] == len(xs)
    # both continue identically
    assert a.step(xs[0].tobytes(), ys[0]) == b.step(xs[0].tobytes(), ys[0])
    assert a.params() == b.params()


def test_load_refuses_damaged_or_foreign(model, tmp_path):
    plan, xs, ys = model
    t = tinytrain.Trainer(plan.data)
    path = tmp_path / "p.ttp"
    t.save(path)
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[30] ^= 1
    path.write_bytes(bytes(damaged))
    before = t.params()
    with pytest.raises(ValueError, match="checksum"):
        t.load(path)
    assert t.params() == before
    path.write_bytes(good[:-9])
    with pytest.raises(ValueError, match="bytes, its header says"):
        t.load(path)
    _, _, other = netzoo.build("cnn", "sparse", seed=99)
    o = tinytrain.Trainer(other.data)
    path.write_bytes(good)
    with pytest.raises(ValueError, match="another model"):
        o.load(path)


def test_interrupted_save_leaves_old_or_new(model, tmp_path, monkeypatch):
    """A crash at any write leaves the previous file intact (write, then rename)."""
    plan, xs, ys = model
    t = tinytrain.Trainer(plan.data)
    path = tmp_path / "p.ttp"
    t.save(path)
    old = path.read_bytes()
    t.step(xs[0].tobytes(), ys[0])

    class Crash(Exception):
        pass

    real_replace = os.replace

    def crash(*a):
        raise Crash()

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(Crash):
        t.save(path)
    monkeypatch.setattr(os, "replace", real_replace)
    assert path.read_bytes() == old
    check_params_file(path.read_bytes(), mf.Header.unpack(plan.data).crc32, plan.persist_size)
