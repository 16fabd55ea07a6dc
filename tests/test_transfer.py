"""tinytrain.transfer: the examples' transfer tasks and reference schemes.

Checked against independent computations: the target images are the digits
of scikit-learn, resized and shifted as stated (each is found again among
the originals resized by scipy); the int8 model classifies like its float
original; the reference schemes train exactly the parameters they name."""
import importlib.util

import numpy as np
import pytest

pytest.importorskip("sklearn")

import tinytrain  # noqa: E402
from tinytrain import planner, transfer  # noqa: E402
from tinytrain.builder import quantize_input  # noqa: E402
from tinytrain.compiler import compile_model  # noqa: E402


@pytest.fixture(scope="module")
def task():
    return transfer.shifted_digits(0, progress=False)


def test_shifts():
    x = np.random.default_rng(1).uniform(0, 1, (2, 5, 5, 1))
    m, r, v = (transfer.shift_images(x, s) for s in ("mirror", "rotate", "invert"))
    assert np.array_equal(m[:, :, ::-1], x) and not np.array_equal(m, x)
    assert np.array_equal(m[0, 1, 0, 0], x[0, 1, 4, 0])
    assert np.array_equal(r[0, 0, 0], x[0, 0, 4])  # 90 degrees counter-clockwise: top-right to top-left
    back = r
    for _ in range(3):
        back = transfer.shift_images(back, "rotate")
    assert np.array_equal(back, x)
    assert np.allclose(v, 1 - x)
    with pytest.raises(ValueError, match="unknown shift 'flip'"):
        transfer.shift_images(x, "flip")


def test_target_images_are_mirrored_digits(task):
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    d = load_digits()
    # 8x8 -> 16x16 bilinear with the corners kept: scipy's zoom, independent of tinytrain
    originals = np.stack([zoom(img / 16.0, 2, order=1) for img in d.images]).reshape(len(d.target), -1)
    lookup = {np.round(o, 9).tobytes(): i for i, o in enumerate(originals)}
    seen = set()
    for split in (task.train, task.val, task.test):
        back = transfer.shift_images(split.x, "mirror").reshape(len(split), -1)
        for x, y in zip(back, split.y):
            i = lookup[np.round(x, 9).tobytes()]  # KeyError: not a mirrored digit
            assert d.target[i] == y
            seen.add(i)
        assert np.array_equal(split.q, quantize_input(task.graph, split.x).reshape(len(split), -1))
    assert len(seen) == 300 + 300 + len(task.test) == len(d.target) - 900  # disjoint, the source left out
    assert task.graph.tensors[task.graph.input].shape == (16, 16, 1)


def test_pretrained_and_shifted(task):
    # the float net learnt the source task, the mirror costs it much of that
    assert task.source_acc > 0.9, task.source_acc
    assert task.target_acc < task.source_acc - 0.25, (task.source_acc, task.target_acc)
    # the int8 model classifies the target test images like its float original
    t = tinytrain.Trainer(compile_model(task.graph, transfer.reference_schemes(task.graph)["last layer"]).data)
    assert abs(t.evaluate(*task.test.as_bytes()) - task.target_acc) < 0.05
    assert "mirrored" in task.summary() and "300 train / 300 validation / 297 test" in task.summary()


def test_deterministic_and_checked():
    a = transfer.shifted_digits(3, pretrain_epochs=2, n_val=0, progress=False)
    b = transfer.shifted_digits(3, pretrain_epochs=2, n_val=0, progress=False)
    assert a.val is None
    assert all(np.array_equal(la.weight, lb.weight) for la, lb in zip(a.graph.param_layers, b.graph.param_layers))
    assert np.array_equal(a.test.q, b.test.q)
    with pytest.raises(ValueError, match="unknown shift"):
        transfer.shifted_digits(0, "sideways")
    with pytest.raises(ValueError, match="test images"):
        transfer.shifted_digits(0, n_source=1000, n_train=500, n_val=400)


def test_reference_schemes(task):
    g = task.graph
    backbone, head = planner.split_layers(g)
    refs = transfer.reference_schemes(g, lr=0.02)
    assert list(refs) == ["last layer"] + [f"bias last {k}" for k in range(1, len(backbone) + 1)] + ["all layers"]
    assert refs["last layer"].bias == {head} and refs["last layer"].weights == {head: 1.0}
    for k in range(1, len(backbone) + 1):
        assert refs[f"bias last {k}"].bias == set(backbone[-k:]) | {head}
        assert refs[f"bias last {k}"].weights == {head: 1.0}
    total = sum(layer.weight.size + layer.bias.size for layer in g.param_layers)
    plans = {n: compile_model(g, s) for n, s in refs.items()}
    assert plans["all layers"].trained_params == total
    assert all(s.lr == pytest.approx(0.02) for s in refs.values())
    arenas = transfer.arenas(g, refs)
    assert arenas == {n: p.arena_size for n, p in plans.items()}
    assert arenas["last layer"] == min(arenas.values()) and arenas["all layers"] == max(arenas.values())


def test_scheme_label(task):
    g = task.graph
    assert transfer.scheme_label(g, 0, {}) == "last layer"
    assert transfer.scheme_label(g, 2, {"conv3": 0.5}) == "bias last 2 + conv3 8/16"
    assert transfer.scheme_label(g, 0, {"conv0": 0.25, "conv2": 1.0, "conv1": 0.0}) == "conv0 1/1 + conv2 16/16"


def test_imu_subject():
    if importlib.util.find_spec("seglearn") is None:
        pytest.skip("the watch data set ships with seglearn: pip install seglearn")
    t = transfer.imu_subject(4, 0, pretrain_epochs=2, progress=False)
    assert t.val is None and len(t.train) > 100 and len(t.test) > 100
    assert t.graph.tensors[t.graph.input].shape == (1, 100, 6)
    for split in (t.train, t.test):
        assert np.array_equal(split.q, quantize_input(t.graph, split.x).reshape(len(split), -1))
        for r in np.unique(split.recording):  # one exercise per recording
            assert len(set(split.y[split.recording == r])) == 1
    assert set(t.train.recording) == set(t.test.recording)  # early and late parts of the same recordings
    with pytest.raises(ValueError, match="subject"):
        transfer.imu_subject(11, 0, pretrain_epochs=1, progress=False)
