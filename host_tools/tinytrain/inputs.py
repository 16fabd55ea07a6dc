"""A model's input and output quantisation, and the checks on data given to it.

One place for the rules every entry follows (`Trainer.quantize`, `tinytrain.Model`,
`tinytrain stream`, `tinytrain plan --data`):

- real values (float arrays) are quantised q = clip(round(x / scale + zero), -128, 127)
  with the float32 scale the file stores; values outside the range the model was
  calibrated on, [(-128 - zero) * scale, (127 - zero) * scale], are clipped, and
  warned about (DataWarning) when over 1% of the values lie more than two steps
  outside it, or one lies beyond a quarter of that range;
- int8 arrays are the model's own int8 values, taken as they are;
- uint8 and other integer arrays are refused unless the caller says what they are
  (raw=True: int8 values, checked to lie in [-128, 127]; raw=False: real values);
- NaN and infinity are refused, naming the first sample that holds one;
- a sample is in the layout of the model it came from: (C, H, W) for ONNX models
  (or (C, L), (F,)), (H, W, C) for TFLite and the paper's models; size-1 axes may be
  left out and a flat vector is always accepted. A batch adds a leading axis.
"""
from __future__ import annotations

import warnings

import numpy as np

from . import modelfile as mf


WARN_FRACTION, WARN_BEYOND, WARN_STEPS = 0.01, 0.25, 2


class DataWarning(UserWarning):
    """Data a model takes, but probably not as meant (outside the calibration range)."""


class ModelIO:
    """Input and output quantisation of a model file, and its data checks."""

    def __init__(self, model: bytes):
        m = mf.Model.parse(model)
        h = m.header
        t_in, t_out = m.tensors[h.input_tensor], m.tensors[h.logits_tensor]
        self.input_shape = t_in.shape  # (h, w, c): the slot's layout
        self.input_bytes = t_in.numel
        self.layout = "NCHW" if h.flags & mf.HF_INPUT_NCHW else "NHWC"
        self.in_scale, self.in_zero = float(np.float32(t_in.scale)), int(t_in.zero)
        self.out_scale, self.out_zero = float(np.float32(t_out.scale)), int(t_out.zero)
        self.n_classes = h.n_classes
        self.mse = h.loss_kind == mf.LOSS_MSE

    @classmethod
    def from_graph(cls, graph) -> "ModelIO":
        """The same, for a graph not yet written into a file (the planner's data)."""
        io = cls.__new__(cls)
        t_in, t_out = graph.tensors[graph.input], graph.tensors[graph.output]
        io.input_shape, io.input_bytes, io.layout = tuple(t_in.shape), t_in.numel, graph.input_layout
        io.in_scale, io.in_zero = float(np.float32(t_in.scale)), int(t_in.zero)
        io.out_scale, io.out_zero = float(np.float32(t_out.scale)), int(t_out.zero)
        io.n_classes, io.mse = t_out.numel, False
        return io

    # -- shapes ------------------------------------------------------------
    @property
    def sample_shape(self) -> tuple:
        """One input in the source model's layout."""
        h, w, c = self.input_shape
        return (c, h, w) if self.layout == "NCHW" else (h, w, c)

    @property
    def calibration_range(self) -> tuple:
        """The real values int8 covers: what the model was calibrated on."""
        return ((-128 - self.in_zero) * self.in_scale, (127 - self.in_zero) * self.in_scale)

    def _sample_shapes(self) -> set:
        full = self.sample_shape
        return {full, tuple(d for d in full if d != 1), (self.input_bytes,)}

    def batch(self, x, what: str = "x") -> tuple:
        """(x as (N, input_bytes) in the slot's HWC order, whether x was one sample)."""
        x = np.asarray(x)
        shapes = self._sample_shapes()
        if x.shape in shapes:
            one, x = True, x[None]
        elif x.ndim >= 1 and x.shape[1:] in shapes:
            one = False
        else:
            want = " or ".join(str(s) for s in sorted(shapes, key=len, reverse=True))
            hint = ""
            h, w, c = self.input_shape
            other = (h, w, c) if self.layout == "NCHW" else (c, h, w)
            if c > 1 and other in (x.shape, x.shape[1:]):
                hint = f" (the model's source took {self.layout}: transpose your data)"
            raise ValueError(f"{what} has shape {x.shape}; the model takes one input of shape {want} "
                             f"({self.layout} as its source model), or a batch (N, ...) of them{hint}")
        if self.layout == "NCHW":
            h, w, c = self.input_shape
            x = x.reshape(len(x), c, h, w).transpose(0, 2, 3, 1)
        return x.reshape(len(x), self.input_bytes), one

    # -- values ------------------------------------------------------------
    def quantize(self, x, what: str = "x", raw=False) -> np.ndarray:
        """Real values (one sample or a batch, source layout) to the int8 the
        model takes: (input_bytes,) for one sample, (N, input_bytes) for a batch."""
        x = np.asarray(x)
        if x.dtype == np.int8:
            raise ValueError(f"{what} is int8 already: the model's own values go to step()/predict() as they are")
        if x.dtype == np.uint8:
            raise ValueError(f"{what} is uint8 (raw bytes, pixels 0..255?): convert it on purpose to the real "
                             f"values the model was calibrated on, e.g. x.astype(np.float32) / 255, then quantize")
        flat, one = self.batch(x, what)
        q = self.inputs(flat, raw=raw, what=what)
        return q[0] if one else q

    def inputs(self, x, raw=None, what: str = "inputs") -> np.ndarray:
        """(N, input_bytes) int8 from N inputs of any shape with input_bytes elements
        (already in the slot's order); raw: see the module doc."""
        x = np.asarray(x)
        if x.ndim == 1 and x.size == self.input_bytes:
            x = x[None]
        x = x.reshape(len(x), -1)
        if x.shape[1] != self.input_bytes:
            raise ValueError(f"{what} have {x.shape[1]} values each, the model takes {self.input_bytes} "
                             f"({'x'.join(map(str, self.input_shape))})")
        return to_int8(x, self.in_scale, self.in_zero, raw, what)

    def dequantize_logits(self, q) -> np.ndarray:
        """Real-valued outputs from int8 logits (bytes or an array)."""
        q = np.frombuffer(bytes(q), np.int8) if isinstance(q, (bytes, bytearray, memoryview)) else np.asarray(q)
        return ((q.astype(np.float32) - np.float32(self.out_zero)) * np.float32(self.out_scale)).astype(np.float32)

    def labels(self, y, n: int, raw=None) -> list:
        y = np.asarray(y)
        if self.mse:
            y = y.reshape(n, -1)
            if y.shape[1] != self.n_classes:
                raise ValueError(f"MSE targets have {y.shape[1]} values each, the model has {self.n_classes} outputs")
            return [r.tobytes() for r in to_int8(y, self.out_scale, self.out_zero, raw, "targets")]
        return [int(v) for v in check_labels(y, n, self.n_classes)]


def check_labels(y, n: int, n_classes: int, where: str = "labels") -> np.ndarray:
    """Class indices, one per input, in [0, n_classes), as int64."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    y = y.reshape(-1) if y.ndim == 0 else y
    if y.ndim != 1:
        raise ValueError(f"{where}: labels of shape {y.shape}: expected one class index per input ({n},)")
    if len(y) != n:
        raise ValueError(f"{where}: {n} inputs but {len(y)} labels")
    if y.dtype.kind == "f":
        not_finite(y, where)
        if not np.all(y == np.round(y)):
            raise ValueError(f"{where}: labels must be class indices (whole numbers)")
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise ValueError(f"{where}: labels must be integer class indices, not {y.dtype}")
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{where}: label {y[i]} (sample {i}) out of range: the model has {n_classes} classes "
                         f"(labels 0..{n_classes - 1}); {int(bad.sum())} labels out of range")
    return y.astype(np.int64)


def not_finite(a: np.ndarray, what: str) -> None:
    """Refuse NaN or infinity (they would quantise to garbage), naming the first sample."""
    if a.dtype.kind in "fc" and a.size and not np.all(np.isfinite(a)):
        i = int(np.argwhere(~np.isfinite(a.reshape(len(a), -1)))[0][0])
        raise ValueError(f"{what}: sample {i} (counting from 0) holds NaN or infinity")


def to_int8(x: np.ndarray, scale: float, zero: int, raw, what: str) -> np.ndarray:
    """int8 from a batch (N, ...): raw None takes int8 as is and quantises floats;
    True takes integers as int8 values; False quantises any numbers."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise ValueError(f"{what} of dtype {x.dtype}: give numbers (float real values or int8)")
    not_finite(x, what)
    if raw is None and x.dtype.kind in "iub" and x.dtype != np.int8:
        raise ValueError(
            f"{what} are {x.dtype}: say what they are: the model's int8 values (x.astype(np.int8), "
            f"--raw on the command line) or real values to quantise (x.astype(np.float32): the model was "
            f"calibrated on [{(-128 - zero) * scale:.4g}, {(127 - zero) * scale:.4g}])")
    if raw is None:
        raw = x.dtype == np.int8
    if raw:
        if x.dtype.kind == "f" and not np.all(x == np.round(x)):
            raise ValueError(f"raw {what} must be whole numbers (the model's int8 values)")
        if x.size and (x.min() < -128 or x.max() > 127):
            raise ValueError(f"int8 {what} must lie in [-128, 127]: min {x.min()}, max {x.max()}")
        return np.ascontiguousarray(x.astype(np.int8))
    q = np.round(x.astype(np.float64) / scale + zero)
    out = (q < -128 - WARN_STEPS) | (q > 127 + WARN_STEPS)
    # A calibration set's range is a sample's: values a step or two outside it
    # are normal. Warned: over 1% of the values more than WARN_STEPS steps out,
    # or one beyond a quarter of the range (other units: pixels 0..255 against
    # a model calibrated on 0..1).
    beyond = max(float(-128 - q.min()), float(q.max() - 127), 0.0) if q.size else 0.0
    if out.any() and (out.mean() > WARN_FRACTION or beyond > WARN_BEYOND * 255):
        lo, hi = (-128 - zero) * scale, (127 - zero) * scale
        frac = float(out.mean())
        warnings.warn(f"{what}: {int(out.sum())} values ({100 * frac:.3g}%) lie outside the range the model "
                      f"was calibrated on, [{lo:.4g}, {hi:.4g}] (data seen: [{float(x.min()):.4g}, "
                      f"{float(x.max()):.4g}]); they are clipped. Other units than at calibration?",
                      DataWarning, stacklevel=3)
    return np.ascontiguousarray(np.clip(q, -128, 127).astype(np.int8))
