"""The learning tasks shared by the demos, tinytrain.transfer and the
`dataset:` sources of `tinytrain stream` (data sets themselves: datasets.py).

IMU personalisation (seglearn's smartwatch set, `tinytrain demo personalize`):
    w = datasets.watch_windows(100, 50, held_out=4)
    learn, ev = time_split(w, 4, 0.5)        # the held-out subject, split in time
    b = imu_cnn(seed)                        # the 1-D CNN the vendor pretrains

Images (`tinytrain demo vision`):
    task = load_image_task("digits", seed, *IMAGE_SIZES["digits"])
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import datasets as ds
from .builder import NetBuilder

# -- IMU: nine subjects -> the tenth ----------------------------------------------
SUBJECTS = tuple(range(1, 11))


def imu_cnn(seed: int, input_shape=(1, 100, 6), n_classes: int = 7) -> NetBuilder:
    """conv(16, 1x5, s2) -> conv(32, 1x5, s2) -> conv(32, 1x3, s2), relu6 each,
    global average pool, fc."""
    b = NetBuilder(input_shape, seed=seed)
    b.conv(16, k=(1, 5), stride=2, act="relu6")
    b.conv(32, k=(1, 5), stride=2, act="relu6")
    b.conv(32, k=(1, 3), stride=2, act="relu6")
    b.avgpool()
    b.fc(n_classes)
    return b


def time_split(w, subject: int, learn_frac: float):
    """(learn, eval) window indices of `subject`: per recording, the first
    `learn_frac` of its windows to learn on, and the windows that start after
    the last learning window ends to evaluate on (none shares a sample)."""
    if not 0 < learn_frac < 1:
        raise ValueError("learn_frac must be in (0, 1)")
    learn, ev = [], []
    for r in np.unique(w.rec[w.subject == subject]):
        idx = np.flatnonzero(w.rec == r)  # in time order
        n = min(len(idx) - 1, max(1, int(round(learn_frac * len(idx)))))
        learn.extend(idx[:n])
        end = w.start[idx[n - 1]] + w.window
        ev.extend(i for i in idx[n:] if w.start[i] >= end)
    if not learn or not ev:
        raise ValueError(f"subject {subject}: no windows to learn on or to evaluate")
    return np.array(learn), np.array(ev)


# -- images -----------------------------------------------------------------------
IMAGE_SETS = ("digits", "faces")
# (train, validation, test) sizes; the test set is a cap on what the split leaves.
IMAGE_SIZES = {"digits": (500, 150, 400), "faces": (80, 40, 80)}


@dataclass
class ImageTask:
    name: str
    images: np.ndarray  # (N, H, W) grey in [0, 1]
    labels: np.ndarray
    i_train: np.ndarray
    i_val: np.ndarray
    i_test: np.ndarray
    i_rest: np.ndarray  # images of the data set the task does not use
    classes: list

    def describe(self) -> str:
        h, w = self.images.shape[1:]
        what = {"digits": "scikit-learn's digits", "faces": "scikit-image's lfw_subset (faces vs other patches)"}
        return f"{what[self.name]}, {h}x{w} grey, {len(self.classes)} classes"


def load_image_task(name: str, seed: int, n_train: int, n_val: int, n_test: int) -> ImageTask:
    """A stratified, seeded split of a data set of IMAGE_SETS."""
    if name == "digits":
        images, labels, i_tr, i_va, rest = ds.digits_split(n_train, n_val, seed)
        classes = [str(i) for i in range(10)]
    elif name == "faces":
        images, labels = ds.lfw_faces()
        i_tr, i_va, rest = ds.stratified_split(labels, n_train, n_val, seed)
        classes = list(ds.FACE_LABELS)
    else:
        raise ValueError(f"unknown data set {name!r}; data sets: {', '.join(IMAGE_SETS)}")
    if n_test < 1:
        raise ValueError("the test set needs at least one image")
    return ImageTask(name, images, labels, i_tr, i_va, rest[:n_test], rest[n_test:], classes)
