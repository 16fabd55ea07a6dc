"""Training data for `tinytrain stream`: files and Python iterables.

Files (`load`):
  .npz   arrays x (or X, inputs) and y (or labels); optional x_eval/y_eval
         (or x_test/y_test), evaluated on the device after each epoch
  .npy   the inputs; the labels in a second file (--labels: .npy, .csv, .txt)
  .csv   one sample per row, the label in the last column (a header row
         without numbers is skipped); its numbers are read as floats, so
         int8 values already quantised need --raw
Inputs: one row (or array) per sample with the model's input size. int8
inputs are taken as the model's values; float inputs are quantised with the
model's input scale and zero point, q = clip(round(x / scale + zero), -128,
127), the scale being the float32 in the model file (values outside the
calibration range warned about); other integers (uint8, int64) are refused
unless --raw says they are int8 values (tinytrain/inputs.py: the rules). Labels: class indices; for an MSE model, one row of targets
per sample (int8, or floats quantised with the output's scale and zero).

Iterables (`samples`): anything yielding (x, label) pairs, x a buffer of
int8 or an array of floats (quantised the same way).

Live sources (a serial port, stdin) and the data sets of installed
packages: sources.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..inputs import ModelIO, not_finite, to_int8  # noqa: F401  (ModelIO: the stream's import)


def _read_table(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    text = path.read_text().splitlines()
    skip = 0
    if text:
        try:
            [float(v) for v in text[0].replace(",", " ").split()]
        except ValueError:
            skip = 1  # a header row
    return np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, skiprows=skip, ndmin=2)


def load(path, labels=None):
    """(x, y, x_eval, y_eval) as arrays from a data file (see the module doc)."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: no such file")
    x_eval = y_eval = None
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            def pick(*names):
                return next((z[k] for k in names if k in z.files), None)
            x, y = pick("x", "X", "inputs"), pick("y", "Y", "labels", "label")
            x_eval, y_eval = pick("x_eval", "x_test", "X_test"), pick("y_eval", "y_test", "Y_test")
            if x is None or (y is None and labels is None):
                raise ValueError(f"{p}: needs arrays 'x' and 'y' (has {', '.join(z.files)})")
    elif p.suffix == ".npy":
        x, y = np.load(p, allow_pickle=False), None
        if labels is None:
            raise ValueError(f"{p}: a .npy holds the inputs only: give the labels with --labels")
    elif p.suffix in (".csv", ".txt"):
        t = _read_table(p)
        if labels is None:
            x, y = t[:, :-1], t[:, -1]
        else:
            x, y = t, None
    else:
        raise ValueError(f"{p}: unsupported data file (.npz, .npy with --labels, .csv)")
    if labels is not None:
        y = _read_table(Path(labels))
    return x, y, x_eval, y_eval


def samples(model: bytes, x, y, raw=None) -> list:
    """[(int8 input bytes, label)] for the model from arrays."""
    io = ModelIO(model)
    xs = io.inputs(io.batch(x, "inputs")[0], raw)
    return list(zip([r.tobytes() for r in xs], io.labels(y, len(xs), raw)))


def from_iterable(model: bytes, pairs, raw=None):
    """(int8 input bytes, label) for each (x, label) an iterable yields;
    float inputs are quantised (lazily: the iterable may be endless)."""
    io = ModelIO(model)
    for x, label in pairs:
        if isinstance(x, (bytes, bytearray, memoryview)):
            xb = bytes(x)
        else:
            flat, _ = io.batch(np.asarray(x)[None], "x")
            xb = io.inputs(flat, raw)[0].tobytes()
        if io.mse and not isinstance(label, (bytes, bytearray, memoryview)):
            label = io.labels(np.asarray(label), 1, raw)[0]
        yield xb, label
