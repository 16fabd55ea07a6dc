"""`tinytrain demo vision`: transfer learning on images, on the simulator.

Checked: the quick run with the small CNN learns the new task (after >
before for a fixed seed) and writes its figure; its training loop is the
planner's (same sample orders, same result); the image pipeline against an
independent numpy reference (np.interp, plain rounding); the stream-target
checks refuse a model the device cannot hold before anything is trained;
the MCUNet-5fps path, much reduced, when the paper's models are beside the
repository."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from tinytrain import cli, datasets, planner, tasks  # noqa: E402
from tinytrain.compiler import compile_model  # noqa: E402
from tinytrain.demos import vision  # noqa: E402

TTE = Path(__file__).resolve().parents[2] / "shared" / "models" / "tte"
MCUNET = TTE / "mcunet-5fps.pkl"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_small(tmp_path_factory):
    png = tmp_path_factory.mktemp("vision") / "vision.png"
    res = vision.run("sim", model="small", quick=True, seed=0, plot=png, progress=False, verbose=False)
    return res, png


def test_quick_small_cnn_learns_and_plots(quick_small):
    res, png = quick_small
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 20_000  # a curve and an image grid, not an empty canvas
    assert res.model == "small CNN" and res.input_shape == vision.SMALL_INPUT and res.n_classes == 10
    (row,) = res.rows
    assert row.scheme == "bias+last2" and row.fits_board and 0 < row.trained_params
    # A fresh head starts near chance; a few hundred steps on the device make it clearly better.
    assert row.before < 0.25
    assert row.after > row.before + 0.3, (row.before, row.after)
    assert len(row.curve) == len(res.curve_x) and res.curve_x[0] == 0
    assert res.curve_x[-1] == res.epochs * res.n_train
    assert row.curve[0] == row.before and row.curve[-1] == row.after
    g = res.grid
    assert len(g["pred"]) == len(g["true"]) == len(g["images"]) == vision.GRID
    assert all(0 <= p < 10 for p in g["pred"])
    text = res.table()
    assert "bias+last2" in text and f"{100 * row.after:.1f}%" in text


def test_training_loop_is_the_planners(quick_small):
    """The demo's loop (chunked evaluation, curve points) gives what
    planner.train_and_evaluate gives for the same model, data and seed at
    the model's constant rate (the demo's devices take a rate only when the
    Trainer is made)."""
    res, _ = quick_small
    cfg = vision.quick_config()
    task = tasks.load_image_task("digits", 0, *vision.QUICK_SIZES["digits"])
    xtr = datasets.to_model_inputs(res.graph, task.images, task.i_train)
    xte = datasets.to_model_inputs(res.graph, task.images, task.i_test)
    acc = planner.train_and_evaluate(res.rows[0].model, (xtr, task.labels[task.i_train]), xte.tobytes(),
                                     [int(v) for v in task.labels[task.i_test]], 0, cfg.epochs, decay=False)
    assert acc == res.rows[0].after


def test_source_task_is_disjoint_from_the_target_task():
    task = tasks.load_image_task("digits", 3, 100, 60, 200)
    parts = [set(task.i_train), set(task.i_val), set(task.i_test), set(task.i_rest)]
    assert sum(map(len, parts)) == len(task.labels) == 1797
    assert len(set().union(*parts)) == 1797  # a partition
    src_x, src_y = vision.source_task(task)
    assert set(np.unique(src_y)) == set(range(vision.SOURCE_CLASSES))
    rest = task.i_rest[task.labels[task.i_rest] < vision.SOURCE_CLASSES]
    assert np.array_equal(src_x, task.images[rest])


def test_resize_and_quantise_against_numpy():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, size=(3, 8, 8))
    for h, w in ((16, 16), (128, 128), (5, 11)):
        got = datasets.resize_images(img, h, w)
        # separable linear interpolation with np.interp, rows then columns
        rows = np.stack([[np.interp(np.linspace(0, 7, h), np.arange(8), im[:, j]) for j in range(8)]
                         for im in img]).transpose(0, 2, 1)
        ref = np.stack([[np.interp(np.linspace(0, 7, w), np.arange(8), r) for r in im] for im in rows])
        assert np.allclose(got, ref, atol=1e-12)
    faces = rng.uniform(0, 1, size=(2, 25, 25))
    down = datasets.resize_images(faces, 16, 16)
    assert np.allclose(down[:, [0, -1]][:, :, [0, -1]], faces[:, [0, -1]][:, :, [0, -1]])  # corners kept

    class G:  # the two things to_model_inputs reads of a graph
        input = "input"
        tensors = {"input": type("T", (), {"shape": (12, 12, 3), "scale": 2 / 255, "zero": 0})()}

    q = datasets.to_model_inputs(G, img)
    ref = np.clip(np.round((datasets.resize_images(img, 12, 12).astype(np.float32) * 2 - 1) / (2 / 255)),
                  -128, 127).astype(np.int8)
    q = q.reshape(3, 12, 12, 3)
    assert all(np.array_equal(q[..., c], ref) for c in range(3))  # grey replicated to every channel


def test_faces_data():
    pytest.importorskip("skimage")
    x, y = datasets.lfw_faces()
    assert x.shape == (200, 25, 25) and 0 <= x.min() and x.max() <= 1
    assert (y == 1).sum() == 100 and (y[:100] == 1).all()
    task = tasks.load_image_task("faces", 0, *tasks.IMAGE_SIZES["faces"])
    assert task.classes == ["not a face", "face"]
    for idx in (task.i_train, task.i_val, task.i_test):
        assert set(np.unique(task.labels[idx])) == {0, 1}
    assert not (set(task.i_train) & set(task.i_test)) and not (set(task.i_val) & set(task.i_test))


def test_stream_target_refuses_a_model_it_cannot_hold(monkeypatch, tmp_path):
    """qemu: the firmware's GC heap (read from its ELF) must hold the model
    twice; the demo says so before it opens the device."""
    from tinytrain.stream import targets

    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"")
    monkeypatch.setattr(targets, "qemu_firmware", lambda: elf)
    monkeypatch.setattr(vision, "elf_symbol_sizes", lambda path, names: {"gc_heap": 65536,
                                                                         "tinytrain_arena": 196608})
    with pytest.raises(ValueError, match="cannot take it"):
        vision.check_fits_target("qemu", 592_132, 152_820, "mcunet-5fps")
    with pytest.raises(ValueError, match="arena of 200,000 bytes"):
        vision.check_fits_target("qemu", 20_000, 200_000, "x")
    vision.check_fits_target("qemu", 20_000, 32_000, "x")  # the small CNN fits
    vision.check_fits_target("sim", 10 ** 7, 10 ** 7, "x")  # the simulator holds anything
    with pytest.raises(ValueError, match="SRAM"):
        vision.check_fits_target("/dev/ttyACM0", 592_132, 152_820, "mcunet-5fps")

    # in run(): refused before any device is opened (the small CNN made too big for a tiny heap)
    monkeypatch.setattr(vision, "check_target", lambda t: None)
    monkeypatch.setattr(vision, "elf_symbol_sizes", lambda path, names: {"gc_heap": 16384})

    def no_device(*a, **k):
        raise AssertionError("a device was opened")

    monkeypatch.setattr(vision, "open_device", no_device)
    with pytest.raises(ValueError, match="16,384-byte GC heap"):
        vision.run("qemu", model="small", quick=True, progress=False, verbose=False, pretrain_epochs=1)


def test_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", "vision", "--quick", "--model", "small", "--data", "digits", "--seed", "1",
                     "--scheme", "auto,last"]) == 0
    out = capsys.readouterr().out
    assert "bias+last2" in out and "\nlast " in out and "fits F746" in out
    assert (tmp_path / "vision.png").read_bytes()[:8] == PNG_MAGIC
    for argv, msg in ((["--scheme", "last", "--budget", "90000"], "not both"),
                      (["--budget", "lots"], "number of bytes"),
                      (["--subject", "3"], "personalize"),
                      (["--model", str(tmp_path / "none.pkl")], "no such file"),
                      (["--model", "small", "--scheme", "nonsense", "--quick"], "unknown scheme")):
        assert cli.main(["demo", "vision"] + argv) == 2
        assert msg in capsys.readouterr().err
    assert cli.main(["demo", "personalize", "--data", "faces"]) == 2
    assert "vision demo" in capsys.readouterr().err


@pytest.mark.skipif(not MCUNET.exists(), reason="the paper's models are not in ../shared")
def test_mcunet_pipeline_reduced():
    from tinytrain.convert import tte

    res = vision.run("sim", model=MCUNET, quick=True, seed=0, progress=False, verbose=False,
                     n_train=24, n_val=10, n_test=30, epochs=1, evals_per_epoch=1)
    raw = tte.load_raw(MCUNET)
    hw = int(raw["first_conv"]["in_shape"])
    assert res.input_shape == (hw, hw, int(raw["first_conv"]["in_channel"])) == (128, 128, 3)
    g = res.graph
    assert g.tensors[g.output].numel == res.n_classes == 10  # the fresh 10-class head
    (row,) = res.rows
    # the default: the paper's measured scheme, which fits the F746's 192 KiB
    arenas = {label: compile_model(g, tte.published_scheme(g, "mcunet-5fps", label)).arena_size
              for label in tte.PUBLISHED["mcunet-5fps"]}
    fitting = {k: v for k, v in arenas.items() if v <= vision.BOARD_ARENA}
    # (larger ones fit too since fused outputs go over their inputs, but learn worse)
    assert "99kb" in fitting and max(fitting, key=fitting.get) != "99kb"
    assert row.scheme == "mcunet-5fps:99kb"
    assert row.arena_bytes == arenas["99kb"] <= vision.BOARD_ARENA == 196608
    # inputs: the digits upscaled and quantised with the model's input scale
    t = g.tensors[g.input]
    task = tasks.load_image_task("digits", 0, 24, 10, 30)
    x = datasets.to_model_inputs(g, task.images, task.i_test[:2]).astype(np.float64)
    deq = (x - t.zero) * t.scale
    ref = datasets.model_floats(task.images[task.i_test[:2]], (hw, hw, 3)).reshape(2, -1)
    assert np.abs(deq - ref).max() <= t.scale / 2 + 1e-6
    assert res.curve_x == [0, 24] and len(row.curve) == 2
    assert 0 <= row.before <= 1 and 0 <= row.after <= 1


def test_falls_back_to_the_small_cnn_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(vision, "DEFAULT_MODEL", tmp_path / "mcunet-5fps.pkl")
    kind, note = vision.resolve_model(None)
    assert kind == "small" and "\n" not in note and "small CNN" in note and "absent" in note
    (tmp_path / "mcunet-5fps.pkl").write_bytes(b"")
    assert vision.resolve_model(None) == ("paper", tmp_path / "mcunet-5fps.pkl")
    assert vision.resolve_model("small") == ("small", "")
