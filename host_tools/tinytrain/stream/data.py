"""Training data for `tinytrain stream`: files and Python iterables.

Files (`load`):
  .npz   arrays x (or X, inputs) and y (or labels); optional x_eval/y_eval
         (or x_test/y_test), evaluated on the device after each epoch
  .npy   the inputs; the labels in a second file (--labels: .npy, .csv, .txt)
  .csv   one sample per row, the label in the last column (a header row
         without numbers is skipped); its numbers are read as floats, so
         int8 values already quantised need --raw
Inputs: one row (or array) per sample with the model's input size. Integer
inputs are int8 as the model takes them (checked to lie in [-128, 127]);
float inputs are quantised with the model's input scale and zero point,
q = clip(round(x / scale + zero), -128, 127), the scale being the float32 in
the model file. Labels: class indices; for an MSE model, one row of targets
per sample (int8, or floats quantised with the output's scale and zero).

Iterables (`samples`): anything yielding (x, label) pairs, x a buffer of
int8 or an array of floats (quantised the same way).

Live sources (a serial port, stdin) and the data sets of installed
packages: sources.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import modelfile as mf


class ModelIO:
    """Input and output quantisation of a model file."""

    def __init__(self, model: bytes):
        m = mf.Model.parse(model)
        h = m.header
        t_in, t_out = m.tensors[h.input_tensor], m.tensors[h.logits_tensor]
        self.input_shape = t_in.shape
        self.input_bytes = t_in.numel
        self.in_scale, self.in_zero = float(np.float32(t_in.scale)), int(t_in.zero)
        self.out_scale, self.out_zero = float(np.float32(t_out.scale)), int(t_out.zero)
        self.n_classes = h.n_classes
        self.mse = h.loss_kind == 1

    def inputs(self, x, raw=None) -> np.ndarray:
        """(N, input_bytes) int8 from N inputs of any shape with input_bytes elements."""
        x = np.asarray(x)
        if x.ndim == 1 and x.size == self.input_bytes:
            x = x[None]
        x = x.reshape(len(x), -1)
        if x.shape[1] != self.input_bytes:
            raise ValueError(f"inputs have {x.shape[1]} values each, the model takes {self.input_bytes} "
                             f"({'x'.join(map(str, self.input_shape))})")
        return _to_int8(x, self.in_scale, self.in_zero, raw, "inputs")

    def labels(self, y, n: int, raw=None) -> list:
        y = np.asarray(y)
        if self.mse:
            y = y.reshape(n, -1)
            if y.shape[1] != self.n_classes:
                raise ValueError(f"MSE targets have {y.shape[1]} values each, the model has {self.n_classes} outputs")
            return [r.tobytes() for r in _to_int8(y, self.out_scale, self.out_zero, raw, "targets")]
        y = y.reshape(-1)
        if len(y) != n:
            raise ValueError(f"{n} inputs but {len(y)} labels")
        if y.dtype.kind == "f":
            _not_finite(y, "labels")
            if not np.all(y == np.round(y)):
                raise ValueError("labels must be class indices (integers)")
            y = y.astype(np.int64)
        if len(y) and (y.min() < 0 or y.max() >= self.n_classes):
            raise ValueError(f"labels outside [0, {self.n_classes}): min {y.min()}, max {y.max()}")
        return [int(v) for v in y]


def _not_finite(a: np.ndarray, what: str) -> None:
    """Refuse NaN or infinity (they would quantise to garbage), naming the first sample."""
    if a.dtype.kind in "fc" and a.size and not np.all(np.isfinite(a)):
        i = int(np.argwhere(~np.isfinite(a.reshape(len(a), -1)))[0][0])
        raise ValueError(f"{what}: sample {i} (counting from 0) holds NaN or infinity")


def _to_int8(x: np.ndarray, scale: float, zero: int, raw, what: str) -> np.ndarray:
    _not_finite(x, what)
    if raw is None:
        raw = x.dtype.kind in "iu"
    if raw:
        if x.dtype.kind == "f" and not np.all(x == np.round(x)):
            raise ValueError(f"--raw {what} must be integers")
        if x.size and (x.min() < -128 or x.max() > 127):
            raise ValueError(f"int8 {what} must lie in [-128, 127]: min {x.min()}, max {x.max()}")
        return x.astype(np.int8)
    q = np.round(x.astype(np.float64) / scale + zero)
    return np.clip(q, -128, 127).astype(np.int8)


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
    xs = io.inputs(x, raw)
    return list(zip([r.tobytes() for r in xs], io.labels(y, len(xs), raw)))


def from_iterable(model: bytes, pairs, raw=None):
    """(int8 input bytes, label) for each (x, label) an iterable yields;
    float inputs are quantised (lazily: the iterable may be endless)."""
    io = ModelIO(model)
    for x, label in pairs:
        if isinstance(x, (bytes, bytearray, memoryview)):
            xb = bytes(x)
        else:
            xb = io.inputs(np.asarray(x).reshape(1, -1), raw)[0].tobytes()
        if io.mse and not isinstance(label, (bytes, bytearray, memoryview)):
            label = io.labels(np.asarray(label), 1, raw)[0]
        yield xb, label
