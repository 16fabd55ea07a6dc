"""`tinytrain.Trainer` on the host: the board's API over the very same C core.

A script written for the board runs unchanged here:

    t = tinytrain.Trainer(model, lr=None)   # bytes/bytearray/memoryview or a path
    loss = t.step(x, label)                 # x: int8 buffer of one input, copied into the slot
    cls = t.predict(x)
    buf = t.input()                         # the model's input slot in the arena (int8 memoryview)
    loss = t.step(label); cls = t.predict() # ... filled in place, as a camera would (refill per call)
    acc = t.evaluate(xs, labels)            # xs: N inputs back to back
    t.save(path); t.load(path)              # trained parameters only (load: also bytes)
    t.params_file()                         # what save writes, as a bytearray
    t.set_lr(lr)                            # the rate of the following steps (None: the model's)
    t.info()                                # sizes, lr, input shape/scale/zero, output scale/zero
    q = t.quantize(x)                       # host only: real values (source layout) to int8 inputs
    y = t.logits(x, dequantize=True)        # host only: real-valued outputs
"""
from __future__ import annotations

import ctypes
import os

from . import _native
from . import modelfile as mf
from .inputs import ModelIO
from .lr_rule import check_lr

_N = _native.lib
_CANARY = 0xA5
_CANARY_2 = 0x5A  # measure_peak's second run


def _as_int8_buffer(x, what: str) -> memoryview:
    """Accept bytes, bytearray, array('b'/'B'), memoryview or a numpy int8 array (uint8 refused:
    reinterpreting pixels as int8 is a silent mistake)."""
    if isinstance(x, str) or x is None:
        raise TypeError(f"{what} must be a buffer of int8 values (bytes, bytearray, array('b'), "
                        f"memoryview, numpy int8), not {type(x).__name__}")
    try:
        mv = memoryview(x)
    except TypeError:
        raise TypeError(f"{what} must be a buffer of int8 values, not {type(x).__name__}") from None
    if type(x).__module__ == "numpy" and getattr(x, "dtype", None) is not None and x.dtype.kind == "u":
        raise TypeError(f"{what} is a numpy uint8 array: it would be read as int8 bytes. Quantize real values "
                        f"with Trainer.quantize (e.g. of x.astype(np.float32) / 255), or reinterpret on "
                        f"purpose with x.view(np.int8)")
    if mv.format not in ("b", "B", "c", "<b", "<B", "=b", "=B") or mv.itemsize != 1:
        raise TypeError(f"{what} must hold 1-byte int8 elements, got format {mv.format!r}")
    if not mv.c_contiguous:
        raise ValueError(f"{what} must be contiguous")
    return mv.cast("B") if mv.ndim != 1 or mv.format != "B" else mv


def _read_model(model) -> bytes:
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            return f.read()
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    try:
        return bytes(memoryview(model))
    except TypeError:
        raise TypeError("model must be bytes, bytearray, memoryview or a file path, not "
                        f"{type(model).__name__}") from None


def _raise(err: _native.Error, status: int):
    name = _native.STATUS[status] if status < len(_native.STATUS) else str(status)
    msg = f"{err.text} ({name})"
    if name == "nomem":
        raise MemoryError(msg)
    raise ValueError(msg)


def _check_out(out) -> None:
    """step(out=...): a writable float32 buffer of at least one element,
    checked before the step is applied."""
    if out is None:
        return
    try:
        mv = memoryview(out)
    except TypeError:
        mv = None
    if mv is None or mv.readonly or mv.format not in ("f", "<f", "=f") or mv.nbytes < 4:
        raise TypeError("out must be a writable array('f') of at least one element")


class Trainer:
    """Trains one model in one static arena, sample by sample."""

    _hook_error = None  # an exception raised by the grad hook during a step

    def __init__(self, model, lr=None, arena_size=None, *, canary: int = _CANARY):
        # canary (host only): the byte the arena is filled with before use;
        # info()["peak_bytes"] is the end of the last byte that differs from it.
        if isinstance(canary, bool) or not isinstance(canary, int) or not 0 <= canary <= 255:
            raise ValueError(f"canary must be a byte value 0..255, not {canary!r}")
        self._canary = canary
        # Every argument is checked before anything is built (on the board
        # before the static arena is taken from the current Trainer).
        lr = 0.0 if lr is None else check_lr(lr)  # 0: the core takes the model's default
        if arena_size is not None and (isinstance(arena_size, bool) or not isinstance(arena_size, int)):
            raise TypeError(f"arena_size must be an int or None, not {type(arena_size).__name__}")
        data = _read_model(model)
        self._model_buf = (ctypes.c_uint8 * max(len(data), 1)).from_buffer_copy(data or b"\0")
        self._model = ctypes.create_string_buffer(_N.tts_sizeof_model())
        self._tr = ctypes.create_string_buffer(_N.tts_sizeof_trainer())
        err = _native.Error()
        s = _N.tt_model_open(self._model, self._model_buf, len(data), ctypes.byref(err))
        if s:
            _raise(err, s)
        need = _N.tt_model_arena_bytes(self._model)
        size = need if arena_size is None else int(arena_size)
        if size < 0:
            raise ValueError("arena_size must be >= 0")
        # Python owns the arena; the core only uses it. The canary shows the
        # high-water mark actually touched.
        self._arena = (ctypes.c_uint8 * max(size, 4))(*([canary] * max(size, 4)))
        s = _N.tt_trainer_init(self._tr, self._model, self._arena, size, lr, ctypes.byref(err))
        if s:
            _raise(err, s)
        header = mf.Header.unpack(data)
        self._io = ModelIO(data)
        self._input_bytes = _N.tt_model_input_bytes(self._model)
        self._n_classes = header.n_classes
        self._loss_kind = header.loss_kind
        self._model_crc = header.crc32
        self._arena_need = need

    # -- training and inference -------------------------------------------
    def input(self) -> memoryview:
        """The model's input slot: a writable int8 memoryview into the arena
        (TensorFlow Lite Micro's input(0)). Write one input there, in the
        input's quantisation, then call step(label) or predict() without x.
        The plan reuses these bytes once the first layers have read them:
        fill the slot again before every call."""
        n = ctypes.c_uint32()
        p = _N.tt_trainer_input(self._tr, ctypes.byref(n))
        return memoryview((ctypes.c_int8 * n.value).from_address(p)).cast("B").cast("b")

    def _x_arg(self, x):
        """A ctypes buffer and length for x, or (None, 0): the slot as filled."""
        if x is None:
            return None, 0
        mv = _as_int8_buffer(x, "x")
        self._check_len(mv)
        xb = (ctypes.c_uint8 * len(mv)).from_buffer_copy(mv) if mv.readonly else \
            (ctypes.c_uint8 * len(mv)).from_buffer(mv)
        return xb, len(mv)

    def step(self, x=None, label=None, *, out=None):
        """One SGD step on one sample; returns the loss. step(x, label) copies
        x into the input slot first; step(label) trains on the slot as filled
        through input(). For an MSE model the label is an int8 buffer of
        targets in the output quantisation.
        out: an array('f') of length >= 1 that receives the loss instead; then
        step returns None and (on the board) allocates nothing."""
        if label is None:
            x, label = None, x
        xb, n = self._x_arg(x)
        err = _native.Error()
        loss = ctypes.c_float()
        if self._loss_kind == 1:
            tv = _as_int8_buffer(label, "label")
            tb = (ctypes.c_uint8 * max(len(tv), 1)).from_buffer_copy(tv.tobytes() or b"\0")
            _check_out(out)
            s = _N.tt_trainer_step(self._tr, xb, n, 0, tb, len(tv), ctypes.byref(loss),
                                   ctypes.byref(err))
        else:
            label = self._check_label(label)
            _check_out(out)
            s = _N.tt_trainer_step(self._tr, xb, n, label, None, 0, ctypes.byref(loss),
                                   ctypes.byref(err))
        hook_error, self._hook_error = self._hook_error, None
        if s:
            _raise(err, s)
        if hook_error is not None:
            raise hook_error
        if out is not None:
            out[0] = loss.value
            return None
        return loss.value

    def predict(self, x=None) -> int:
        """The class of x, or without x of the input slot as filled."""
        if x is None:
            return self._predict_mv(None)
        mv = _as_int8_buffer(x, "x")
        self._check_len(mv)
        return self._predict_mv(mv)

    def _predict_mv(self, mv) -> int:
        err = _native.Error()
        cls = ctypes.c_int32()
        xb = None if mv is None else (ctypes.c_uint8 * len(mv)).from_buffer_copy(mv)
        s = _N.tt_trainer_predict(self._tr, xb, 0 if mv is None else len(mv), ctypes.byref(cls),
                                  ctypes.byref(err))
        if s:
            _raise(err, s)
        return cls.value

    def logits(self, x=None, *, dequantize=False):
        """int8 logits of one input (the forward pass of predict; without x, of the slot);
        dequantize=True (host only): the real values, a float32 numpy array."""
        self.predict(x)
        p = _N.tt_trainer_logits(self._tr)
        q = ctypes.string_at(p, self._n_classes)
        return self._io.dequantize_logits(q) if dequantize else q

    def quantize(self, x):
        """Host only: real-valued inputs to the int8 this model takes. x is one
        sample in the layout of the model it came from ((C, H, W) for ONNX,
        (H, W, C) for TFLite; size-1 axes may be left out, or flat) or a batch
        of them; returns an int8 array of input_bytes values (a batch: (N,
        input_bytes), ready for evaluate after .ravel()). Refuses NaN/inf, int8
        (already the model's values) and uint8 (cast pixels to float on
        purpose); warns (tinytrain.DataWarning) when many values lie outside
        the calibration range."""
        return self._io.quantize(x)

    def evaluate(self, xs, labels) -> float:
        """Accuracy over N inputs stored back to back in xs."""
        # labels first: iterating them may run user code (a generator) that
        # resizes xs; every label is checked before the first prediction.
        try:
            it = iter(labels)
        except TypeError:
            raise TypeError("labels must be an iterable of int class indices, not "
                            f"{type(labels).__name__}") from None
        labels = [self._check_label(y) for y in it]
        mv = _as_int8_buffer(xs, "xs")
        n = self._input_bytes
        if len(mv) % n:
            raise ValueError(f"xs has {len(mv)} bytes, not a multiple of the input size {n}")
        count = len(mv) // n
        if len(labels) != count:
            raise ValueError(f"{count} inputs but {len(labels)} labels")
        if count == 0:
            raise ValueError("evaluate needs at least one input")
        hits = sum(self._predict_mv(mv[i * n:(i + 1) * n]) == labels[i] for i in range(count))
        return hits / count

    # -- the frozen prefix (docs/micropython.md, "Epochs on stored samples") --
    def feature_bytes(self) -> int:
        """Bytes of the model's cut, the output of its frozen prefix (0: the
        first layer trains, there is no prefix)."""
        return _N.tt_model_cut_bytes(self._model)

    def features(self, x=None, out=None):
        """Run the frozen prefix on x (or on the input slot as filled) and
        return its output, the cut: an int8 memoryview into the arena, valid
        until the next call, or copied into out (a writable buffer of
        feature_bytes() bytes), which is returned. Training never changes
        it: keep it and pass it to step_features / predict_features."""
        n = self.feature_bytes()
        if out is not None and n:
            dst = _as_int8_buffer(out, "out")
            if dst.readonly:
                raise TypeError("out must be writable")
            if len(dst) != n:
                raise ValueError(f"out has {len(dst)} bytes, the model's features have {n}")
        xb, xn = self._x_arg(x)
        err = _native.Error()
        s = _N.tt_trainer_prefix(self._tr, xb, xn, ctypes.byref(err))
        if s:
            _raise(err, s)
        p = _N.tt_trainer_cut(self._tr, None)
        view = memoryview((ctypes.c_int8 * n).from_address(p)).cast("B").cast("b")
        if out is None:
            return view
        dst[:] = view.cast("B")
        return out

    def _features_arg(self, f):
        mv = _as_int8_buffer(f, "features")
        n = self.feature_bytes()
        if n and len(mv) != n:
            raise ValueError(f"features have {len(mv)} bytes, the model's cut has {n}")
        return (ctypes.c_uint8 * max(len(mv), 1)).from_buffer_copy(mv.tobytes() or b"\0"), len(mv)

    def step_features(self, f, label, *, out=None):
        """step() on a sample's features (what features() gave for its
        input): the same loss and update, bit for bit, without the prefix."""
        fb, fn = self._features_arg(f)
        err = _native.Error()
        loss = ctypes.c_float()
        if self._loss_kind == 1:
            tv = _as_int8_buffer(label, "label")
            tb = (ctypes.c_uint8 * max(len(tv), 1)).from_buffer_copy(tv.tobytes() or b"\0")
            _check_out(out)
            s = _N.tt_trainer_step_from_cut(self._tr, fb, fn, 0, tb, len(tv), ctypes.byref(loss),
                                            ctypes.byref(err))
        else:
            label = self._check_label(label)
            _check_out(out)
            s = _N.tt_trainer_step_from_cut(self._tr, fb, fn, label, None, 0, ctypes.byref(loss),
                                            ctypes.byref(err))
        hook_error, self._hook_error = self._hook_error, None
        if s:
            _raise(err, s)
        if hook_error is not None:
            raise hook_error
        if out is not None:
            out[0] = loss.value
            return None
        return loss.value

    def predict_features(self, f) -> int:
        """predict() on a sample's features."""
        fb, fn = self._features_arg(f)
        err = _native.Error()
        cls = ctypes.c_int32()
        s = _N.tt_trainer_predict_from_cut(self._tr, fb, fn, ctypes.byref(cls), ctypes.byref(err))
        if s:
            _raise(err, s)
        return cls.value

    def _check_label(self, label) -> int:
        """A class index (int or numpy integer, not bool) in [0, classes)."""
        if isinstance(label, bool) or not isinstance(label, int):
            try:
                import numpy as np
            except ImportError:
                np = None
            if np is None or not isinstance(label, np.integer):
                raise TypeError(f"label must be an int class index, not {type(label).__name__}")
            label = int(label)
        if not 0 <= label < self._n_classes:
            raise ValueError(f"label {label} outside [0, {self._n_classes})")
        return label

    def _check_len(self, mv):
        if len(mv) != self._input_bytes:
            raise ValueError(f"x has {len(mv)} bytes, the model takes {self._input_bytes}")

    # -- trained parameters ------------------------------------------------
    def set_lr(self, lr) -> None:
        """The learning rate of the following steps, by the rule of
        Trainer(lr=...): a finite number > 0, or None for the model's own.
        Called between steps it gives a schedule (linear_decay_lr)."""
        value = 0.0 if lr is None else check_lr(lr)
        err = _native.Error()
        s = _N.tt_trainer_set_lr(self._tr, value, ctypes.byref(err))
        if s:
            _raise(err, s)

    def params(self) -> bytes:
        n = ctypes.c_uint32()
        p = _N.tt_trainer_params(self._tr, ctypes.byref(n))
        return ctypes.string_at(p, n.value)

    def params_file(self) -> bytearray:
        """The parameter file save() writes (docs/format.md), written by the core."""
        size = _N.tt_params_file_size(self._tr)
        blob = bytearray(size)
        _N.tt_params_file_read(self._tr, 0, (ctypes.c_char * size).from_buffer(blob), size)
        return blob

    def save(self, path) -> None:
        """Write the trained parameters; atomic: the old file or the new one."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str, not {type(path).__name__}")
        if not os.fspath(path):  # else "" + ".tmp" names a file the rename then fails on
            raise ValueError("path must not be empty")
        atomic_write(path, bytes(self.params_file()))

    def load(self, src) -> None:
        """Restore parameters written by save() for this same model: from a
        path (see read_params_file: a save cut short leaves the old or the new
        file, and this finds it) or from the file's bytes."""
        if isinstance(src, (str, os.PathLike)):
            blob = read_params_file(src)
        else:
            try:
                blob = bytes(memoryview(src))
            except TypeError:
                raise TypeError("load takes a path or the bytes of a parameter file, not "
                                f"{type(src).__name__}") from None
        err = _native.Error()
        if _N.tt_params_load(self._tr, blob, len(blob), ctypes.byref(err)):
            raise ValueError(err.text)

    # -- introspection -----------------------------------------------------
    def info(self) -> dict:
        # peak_bytes: the end of the last arena byte that differs from the
        # canary; short by any trailing bytes written with the canary's value
        # (measure_peak below is exact).
        arena = bytes(self._arena)
        touched = len(arena)
        while touched and arena[touched - 1] == self._canary:
            touched -= 1
        return {
            "arena_bytes": self._arena_need,
            "peak_bytes": touched,
            "param_bytes": len(self.params()),
            "steps": _N.tts_steps(self._tr),
            "trained_params": _N.tt_trainer_trained_param_count(self._tr),
            "input_bytes": self._input_bytes,
            "classes": self._n_classes,
            "lr": _N.tts_lr(self._tr),
            "model_crc": self._model_crc,
            "loss_kind": self._loss_kind,
            "input_shape": self._io.input_shape,
            "input_scale": self._io.in_scale,
            "input_zero": self._io.in_zero,
            "output_scale": self._io.out_scale,
            "output_zero": self._io.out_zero,
        }

    def tensor(self, tid: int, nbytes: int) -> bytes:
        """Raw bytes of a tensor in the arena (tests and debugging)."""
        for name, v in (("tid", tid), ("nbytes", nbytes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, not {v!r}")
        p = _N.tt_trainer_tensor(self._tr, tid & 0xFFFFFFFF) if tid <= 0xFFFFFFFF else None
        if not p:
            raise ValueError(f"tensor {tid} has no arena storage")
        off = p - ctypes.addressof(self._arena)
        if off + nbytes > len(self._arena):
            raise ValueError(f"tensor {tid}: {nbytes} bytes from arena offset {off} run past the arena's "
                             f"{len(self._arena)} bytes")
        return ctypes.string_at(p, nbytes)

    def set_grad_hook(self, fn) -> None:
        """fn(layer, index, acc, scale) for every weight/bias gradient element
        (index | 0x80000000 for biases); None removes it. An exception raised
        by fn cannot stop the core mid-step: fn is not called again in that
        step, which completes, and step() then raises the exception."""
        def call(ctx, layer, idx, acc, scale):
            if self._hook_error is None:
                try:
                    fn(layer, idx, acc, scale)
                except BaseException as e:  # noqa: B036 (re-raised by step)
                    self._hook_error = e
        self._hook = _native.GRAD_HOOK(call) if fn else _native.GRAD_HOOK()
        _N.tts_set_grad_hook(self._tr, self._hook, None)


def measure_peak(model, samples, lr=None, canaries=(_CANARY, _CANARY_2)) -> int:
    """The arena bytes one training run really touches: the end of the last
    byte written, measured exactly. info()["peak_bytes"] alone can come out
    short when the last byte written happens to equal the canary; the core
    is deterministic and never reads arena bytes it has not written, so two
    runs over the same samples, one per canary (default 0xA5, 0x5A), leave
    the same values, no byte equals both canaries, and the larger of the two
    marks is exact. samples: (x, label) pairs, each trained once in order.
    Raises RuntimeError if the two runs differ (the core read memory it had
    not written)."""
    samples = list(samples)
    if len(canaries) != 2 or canaries[0] == canaries[1]:
        raise ValueError(f"canaries must be two different byte values, not {canaries!r}")
    marks, losses, params = [], [], []
    for canary in canaries:
        t = Trainer(model, lr=lr, canary=canary)
        losses.append([t.step(x, label) for x, label in samples])
        params.append(t.params())
        marks.append(t.info()["peak_bytes"])
    if losses[0] != losses[1] or params[0] != params[1]:
        raise RuntimeError("training depends on the arena's initial contents: the core read bytes "
                           "it had not written")
    return max(marks)


def params_whole(blob: bytes) -> bool:
    """The checks that do not depend on the model (magic, version, size,
    checksum): a file cut short or damaged fails them."""
    blob = bytes(blob)
    return _N.tt_params_check(blob, len(blob), ctypes.byref(_native.Error())) == 0


def atomic_write(path, data: bytes) -> None:
    """path gets data, or keeps what it had: written to path + ".tmp",
    flushed to the disk, then renamed over path (and the folder synced)."""
    path = os.fspath(path)
    tmp = f"{path}.tmp"
    created = False
    try:
        with open(tmp, "wb") as f:
            created = True
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # A save that failed (path a folder, a full disk) leaves no ".tmp",
        # which read_params_file would otherwise take for the newest file;
        # unless path is gone (a rename that removes path first, as on FAT,
        # cut short): then the complete ".tmp" is the only copy.
        if created and os.path.lexists(path):
            try:
                os.remove(tmp)
            except OSError:
                pass
        raise
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_params_file(path) -> bytes:
    """The bytes of the parameter file at path. Saving renames path + ".tmp"
    over path; where a rename over an existing file removes it first (FAT, the
    board's /flash), a power cut can leave only the complete ".tmp": when path
    is missing or damaged and path + ".tmp" is whole, that is the newest file.
    (The board's Trainer.load does the same.)"""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        blob = None
    if blob is None or not params_whole(blob):
        try:
            with open(f"{path}.tmp", "rb") as f:
                alt = f.read()
        except FileNotFoundError:
            alt = None
        if alt is not None and params_whole(alt):
            return alt
    if blob is None:
        with open(path, "rb") as f:  # raises the FileNotFoundError
            return f.read()
    return blob


def check_params_file(blob: bytes, model_crc: int, size: int) -> bytes:
    """Validate a saved-parameter file for the model with this CRC training
    size bytes (the core's checks); return the parameter bytes."""
    blob = bytes(blob)
    err = _native.Error()
    if _N.tt_params_check_model(blob, len(blob), model_crc, size, ctypes.byref(err)):
        raise ValueError(err.text)
    return blob[len(blob) - 4 - size:len(blob) - 4]  # the parameters end where the checksum starts
