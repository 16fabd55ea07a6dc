"""Data sets for demos, loaded without their packages' heavy imports.

    d = watch_dataset()                      # the raw recordings (dict)
    w = watch_windows(held_out=3)            # windows, standardised, split by subject

The smartwatch IMU data set ships inside seglearn's wheel
(`seglearn/data/watch_dataset.npy`, 18 MB): 140 recordings of 10 subjects
doing 7 shoulder exercises (20 repetitions each) with a 6-axis IMU on the wrist
at 50 Hz (Burns et al., https://arxiv.org/abs/1802.01489). `import seglearn`
would pull in pandas, so we only locate the package and read the file. The
file is a pickled 0-d object array; it is unpickled with a whitelist of the
few globals a numpy array needs, so a tampered file cannot run code.
"""
from __future__ import annotations

import importlib.util
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"watch data set: refusing to load global {module}.{name}")
        if module == "numpy.core.multiarray":  # numpy >= 2 renamed numpy.core to numpy._core
            try:
                from numpy._core import multiarray
            except ImportError:
                from numpy.core import multiarray
            return getattr(multiarray, name)
        return super().find_class(module, name)


def _load_object_npy(path) -> object:
    """The item of a 0-d object array in a .npy file (format 1.0, pickled body)."""
    with open(path, "rb") as f:
        major, minor = np.lib.format.read_magic(f)
        if (major, minor) != (1, 0):
            raise ValueError(f"{path}: .npy format {major}.{minor}, expected 1.0")
        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
        if dtype != np.dtype(object) or shape != ():
            raise ValueError(f"{path}: expected a 0-d object array, got {dtype} {shape}")
        arr = _RestrictedUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    return arr.item() if isinstance(arr, np.ndarray) else arr


def watch_path() -> Path:
    spec = importlib.util.find_spec("seglearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the watch data set ships with seglearn, which is not installed: "
                          "pip install seglearn")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "watch_dataset.npy"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; reinstall seglearn (pip install --force-reinstall seglearn)")
    return path


_CACHE: dict = {}


def watch_dataset() -> dict:
    """X (list of 140 float arrays [n, 6], 50 Hz), y (exercise 0..6), subject,
    side, X_labels, y_labels; numpy arrays for y, subject and side."""
    if "watch" not in _CACHE:
        d = _load_object_npy(watch_path())
        d = dict(d)
        d["X"] = [np.asarray(x, dtype=np.float64) for x in d["X"]]
        for k in ("y", "subject", "side"):
            d[k] = np.asarray(d[k])
        _CACHE["watch"] = d
    d = _CACHE["watch"]
    return {k: (list(v) if isinstance(v, list) else v) for k, v in d.items()}


@dataclass
class Windows:
    """Windows (N, 1, window, 6) standardised with training-subject statistics.
    `rec` is the recording index (into watch_dataset()['X']) of each window and
    `start` its first sample, so a caller can split recordings in time."""

    x: np.ndarray
    y: np.ndarray
    subject: np.ndarray
    rec: np.ndarray
    start: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    window: int
    step: int
    y_labels: list
    x_labels: list


def watch_windows(window: int = 100, step: int = 50, train_subjects=None, held_out=None) -> Windows:
    """Sliding windows over every recording of the watch data set.

    window, step: in samples at 50 Hz (default 2 s with 50% overlap).
    Standardisation (per channel mean and std) uses the windows of the
    training subjects only: `train_subjects` (a list) or all subjects but
    `held_out`; all subjects when neither is given.
    """
    if window < 1 or step < 1:
        raise ValueError("window and step must be >= 1")
    d = watch_dataset()
    xs, ys, subj, rec, start = [], [], [], [], []
    for r, x in enumerate(d["X"]):
        n = (len(x) - window) // step + 1
        if n <= 0:
            continue
        idx = np.arange(n)[:, None] * step + np.arange(window)[None, :]
        xs.append(x[idx])
        ys.append(np.full(n, int(d["y"][r])))
        subj.append(np.full(n, int(d["subject"][r])))
        rec.append(np.full(n, r))
        start.append(np.arange(n) * step)
    x = np.concatenate(xs)
    subj = np.concatenate(subj)
    if train_subjects is None:
        train_subjects = [s for s in np.unique(subj) if held_out is None or s != held_out]
    train = np.isin(subj, list(train_subjects))
    if not train.any():
        raise ValueError(f"no windows for training subjects {list(train_subjects)}")
    flat = x[train].reshape(-1, x.shape[-1])
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    x = ((x - mean) / std)[:, None, :, :]
    return Windows(x, np.concatenate(ys), subj, np.concatenate(rec), np.concatenate(start),
                   mean, std, window, step, list(d["y_labels"]), list(d["X_labels"]))
