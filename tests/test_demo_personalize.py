"""`tinytrain demo personalize` on the simulator (quick mode), its data loader
and its device interface.

The behaviour checked: fine-tuning on the device on the first part of the
held-out subject's recordings makes its later windows clearly better
recognised, for several seeds, and the int8 run tracks the float reference."""
import pickle
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
if __import__("importlib").util.find_spec("seglearn") is None:
    pytest.skip("the watch data set ships with seglearn: pip install seglearn", allow_module_level=True)

from tinytrain import cli, datasets, tasks  # noqa: E402
from tinytrain.demos import backends, personalize  # noqa: E402

# Quick mode, subject 4, seeds 0..5 measured: before 75.0-83.8%, after
# 92.6-99.3%, gains +12.5..+19.9 points; the margin leaves room for BLAS or
# platform differences in the float pretraining.
MARGIN = 0.05


@pytest.fixture(scope="module")
def quick_runs():
    return {seed: personalize.run("sim", held_out=4, seed=seed, quick=True, progress=False, verbose=False)
            for seed in (0, 1, 2)}


def test_after_clearly_higher_than_before(quick_runs):
    for seed, r in quick_runs.items():
        assert r.after > r.before + MARGIN, (seed, r.before, r.after)
        assert r.float_after > r.float_before + MARGIN, (seed, r.float_before, r.float_after)
        # int8 on the device tracks the float64 reference
        assert abs(r.after - r.float_after) < 0.05, (seed, r.after, r.float_after)
    gains = [r.after - r.before for r in quick_runs.values()]
    assert np.mean(gains) > 0.08, gains


def test_result_shape(quick_runs):
    r = quick_runs[0]
    cfg = personalize.quick_config()
    assert r.curve_x[0] == 0 and r.curve_x[-1] == cfg.epochs * r.n_learn
    assert len(r.curve_x) == len(r.curve_device) == len(r.curve_float)
    assert r.curve_device[0] == r.before and r.curve_device[-1] == r.after
    assert r.curve_float[-1] == r.float_after
    assert 0 < r.trained_params < 10000 and r.arena_bytes > 0
    assert "int8 on device (sim)" in r.table() and "float64 reference" in r.table()


def test_deterministic(quick_runs):
    again = personalize.run("sim", held_out=4, seed=0, quick=True, progress=False, verbose=False)
    r = quick_runs[0]
    assert (again.before, again.after, again.curve_device, again.float_after) == \
           (r.before, r.after, r.curve_device, r.float_after)


def test_time_split_has_no_shared_samples():
    w = datasets.watch_windows(held_out=4)
    learn, ev = tasks.time_split(w, 4, 0.5)
    assert len(learn) > 100 and len(ev) > 100
    assert set(w.subject[learn]) == {4} and set(w.subject[ev]) == {4}
    for r in np.unique(w.rec[learn]):
        lw = learn[w.rec[learn] == r]
        ew = ev[w.rec[ev] == r]
        assert len(lw) and len(ew)
        assert w.start[lw].max() + w.window <= w.start[ew].min()  # every eval window is later, disjoint


def test_watch_windows():
    w = datasets.watch_windows(window=100, step=50, held_out=3)
    assert w.x.shape[1:] == (1, 100, 6) and len(w.x) == len(w.y) == len(w.subject)
    assert set(np.unique(w.y)) == set(range(7)) and set(np.unique(w.subject)) == set(range(1, 11))
    tr = w.x[w.subject != 3].reshape(-1, 6)
    assert np.allclose(tr.mean(0), 0, atol=1e-9) and np.allclose(tr.std(0), 1, atol=1e-9)
    assert not np.allclose(w.x[w.subject == 3].reshape(-1, 6).mean(0), 0, atol=1e-3)
    d = datasets.watch_dataset()
    assert len(d["X"]) == 140 and d["X"][0].shape[1] == 6 and len(d["y_labels"]) == 7
    assert all((d["subject"] == s).sum() == 14 for s in range(1, 11))
    w2 = datasets.watch_windows(window=50, step=25, held_out=3)
    assert w2.x.shape[1:] == (1, 50, 6) and len(w2.x) > 1.9 * len(w.x)
    assert "seglearn" not in sys.modules and "pandas" not in sys.modules


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    p = tmp_path / "evil.npy"
    arr = np.empty((), dtype=object)
    arr[()] = {"f": pickle.loads}  # any global outside the whitelist
    np.save(p, arr, allow_pickle=True)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        datasets._load_object_npy(p)
    ok = tmp_path / "ok.npy"
    arr[()] = {"X": [np.ones((3, 6))], "y": np.arange(3)}
    np.save(ok, arr, allow_pickle=True)
    d = datasets._load_object_npy(ok)
    assert np.array_equal(d["X"][0], np.ones((3, 6))) and np.array_equal(d["y"], np.arange(3))


def test_missing_seglearn_says_how_to_install(monkeypatch):
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install seglearn"):
        datasets.watch_path()


def test_other_targets_fail_early_in_one_line(monkeypatch, tmp_path):
    """qemu without its firmware, a serial port that is not there: a one-line
    error before any work (the backends themselves: tests/test_stream.py)."""
    monkeypatch.setenv("TINYTRAIN_QEMU_ELF", str(tmp_path / "none.elf"))
    with pytest.raises(ValueError, match="needs the qemu firmware .*make qemu"):
        personalize.run("qemu", quick=True, progress=False, verbose=False)
    for t in ("serial:/dev/tinytrain-none", "/dev/tinytrain-none"):
        with pytest.raises(ValueError, match="no serial port /dev/tinytrain-none"):
            personalize.run(t, quick=True, progress=False, verbose=False)
    with pytest.raises(ValueError, match="unknown target"):
        backends.open_device("fpga", b"")


def test_cli_demo(tmp_path, capsys, monkeypatch):
    png = tmp_path / "curve.png"
    assert cli.main(["demo", "personalize", "--quick", "--subject", "6", "--seed", "1", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "int8 on device (sim)" in out and "float64 reference" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setenv("TINYTRAIN_QEMU_ELF", str(tmp_path / "none.elf"))
    assert cli.main(["demo", "personalize", "--target", "qemu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs the qemu firmware" in err and len(err.splitlines()) == 1
