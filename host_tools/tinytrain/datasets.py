"""Data sets for demos, loaded without their packages' heavy imports.

    d = watch_dataset()                      # the raw recordings (dict)
    w = watch_windows(held_out=3)            # windows, standardised, split by subject
    images, labels, i_tr, i_va, i_te = digits_split(300, 300, seed=0)   # scikit-learn's digits
    images, labels = lfw_faces()             # scikit-image's lfw_subset: faces vs other patches
    x = to_model_inputs(graph, images, i_tr) # resized to a model's input, int8

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


def package_data(package: str, pip_name: str, name: str, what: str) -> Path:
    """data/<name> inside an installed package, located without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{what} ships with {pip_name}, which is not installed: pip install {pip_name}")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; reinstall {pip_name} "
                                f"(pip install --force-reinstall {pip_name})")
    return path


def watch_path() -> Path:
    return package_data("seglearn", "seglearn", "watch_dataset.npy", "the watch data set")


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


# -- images: scikit-learn's digits, scikit-image's lfw_subset -----------------------
def digits_images() -> tuple:
    """scikit-learn's digits (shipped in its wheel): images (1797, 8, 8) in
    [0, 1] and labels 0..9."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits data set ships with scikit-learn, which is not installed: "
                          "pip install scikit-learn") from None
    d = load_digits()
    return d.images / 16.0, np.asarray(d.target, dtype=np.int64)


def stratified_split(labels, n_train: int, n_val: int, seed: int) -> tuple:
    """(train, validation, rest) index arrays, stratified by label and seeded
    (scikit-learn's train_test_split); the rest is in shuffled order."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    n_cls = len(np.unique(labels))
    if n_train < n_cls or n_val < n_cls or n_train + n_val + n_cls > len(labels):
        raise ValueError(f"cannot split {len(labels)} samples of {n_cls} classes into {n_train} train, "
                         f"{n_val} validation and a test set (each needs at least one sample per class)")
    idx = np.arange(len(labels))
    rest, i_tr = train_test_split(idx, test_size=n_train, stratify=labels, random_state=seed)
    i_te, i_va = train_test_split(rest, test_size=n_val, stratify=labels[rest], random_state=seed)
    return i_tr, i_va, i_te


def digits_split(n_train: int, n_val: int, seed: int):
    """Digits split stratified and seeded: (images (N, 8, 8) in [0, 1],
    labels, train indices, validation indices, test indices = the rest)."""
    images, labels = digits_images()
    return (images, labels) + stratified_split(labels, n_train, n_val, seed)


FACE_LABELS = ("not a face", "face")


def lfw_path() -> Path:
    return package_data("skimage", "scikit-image", "lfw_subset.npy", "the faces data set (lfw_subset)")


def lfw_faces() -> tuple:
    """scikit-image's lfw_subset (in its wheel; the file is read, skimage is
    not imported): images (200, 25, 25) in [0, 1], labels 1 for the 100
    faces (the first 100 images), 0 for the 100 non-face patches."""
    x = np.load(lfw_path(), allow_pickle=False).astype(np.float64)
    if x.ndim != 3 or len(x) != 200:
        raise ValueError(f"{lfw_path()}: expected 200 images, got shape {x.shape}")
    if x.max() > 1.0:
        x = x / 255.0
    return x, np.r_[np.ones(100, np.int64), np.zeros(100, np.int64)]


def bilinear_matrix(n_out: int, n_in: int = 8) -> np.ndarray:
    """(n_out, n_in) linear interpolation matrix: resize an axis by m @ x."""
    src = np.linspace(0, n_in - 1, n_out)
    i0 = np.clip(np.floor(src).astype(int), 0, max(n_in - 2, 0))
    f = src - i0
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), i0] += 1 - f
    if n_in > 1:
        m[np.arange(n_out), i0 + 1] += f
    return m


def resize_images(images, h: int, w: int) -> np.ndarray:
    """Grey images (N, H, W) resized bilinearly to (N, h, w)."""
    images = np.asarray(images, dtype=np.float64)
    return np.einsum("hi,nij,wj->nhw", bilinear_matrix(h, images.shape[1]), images,
                     bilinear_matrix(w, images.shape[2]))


def model_floats(images, shape) -> np.ndarray:
    """Grey images (N, H, W) in [0, 1] as float inputs (N, h, w, c) of a model
    whose input is `shape` (h, w, c): resized bilinearly, the grey channel
    replicated to the c channels, [0, 1] mapped to [-1, 1]."""
    h, w, c = shape
    up = resize_images(images, h, w).astype(np.float32)
    return np.repeat(up[..., None], c, axis=-1) * 2.0 - 1.0


def to_model_inputs(graph, images, idx=None, chunk: int = 128) -> np.ndarray:
    """Grey images (N, H, W) in [0, 1] as a model's int8 inputs (N, h*w*c):
    `model_floats` quantised with the model's input scale and zero point."""
    from .builder import quantize_input

    shape = graph.tensors[graph.input].shape
    images = np.asarray(images)
    idx = np.arange(len(images)) if idx is None else np.asarray(idx)
    out = np.empty((len(idx), int(np.prod(shape))), np.int8)
    for s in range(0, len(idx), chunk):
        x = model_floats(images[idx[s:s + chunk]], shape)
        out[s:s + chunk] = quantize_input(graph, x).reshape(len(x), -1)
    return out
