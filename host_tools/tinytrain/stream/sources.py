"""Live and data-set sources for `tinytrain stream --data` (docs/streaming.md).

    serial:PORT[@BAUD]   a sensor on a serial port (pyserial; default 115200
                         baud) printing one sample per text line
    -                    the same lines on standard input, from any pipe
    dataset:imu:SUBJECT  seglearn's watch IMU set: that subject's windows, as
                         `tinytrain demo personalize` streams them
    dataset:digits       scikit-learn's digits, as `tinytrain demo vision`
                         splits them, resized to the model's input
    dataset:faces        scikit-image's lfw_subset, likewise

The line format: the input values then the label, separated by commas
and/or spaces (`--label-first`: the label first); for an MSE model the
label is the row of targets. Values are floats, quantised with the model's
input scale and zero point as a .csv is (`--raw`: int8 values). Blank lines
and lines starting with '#' are skipped; any other line that does not parse
is reported with its number and skipped.

A live source is read only when the link's window has room (`Session.send_train`
blocks while it is full), so the device is never overrun: what the sensor
sends meanwhile waits in the port's buffer.
"""
from __future__ import annotations

import os
import select
import sys

import numpy as np

from .data import ModelIO
from .transport import LinkClosed

DEFAULT_BAUD = 115200
DATASETS_HELP = "dataset:imu:SUBJECT (1..10), dataset:digits, dataset:faces"


def kind(spec: str) -> str:
    """'stdin', 'serial', 'dataset' or 'file'."""
    spec = str(spec)
    if spec == "-":
        return "stdin"
    if spec.startswith("serial:"):
        return "serial"
    if spec.startswith("dataset:"):
        return "dataset"
    return "file"


def serial_spec(spec: str) -> tuple:
    """'serial:PORT[@BAUD]' -> (PORT, BAUD)."""
    port, baud = spec[len("serial:"):], DEFAULT_BAUD
    if "@" in port:
        port, b = port.rsplit("@", 1)
        if not b.isdigit() or int(b) == 0:
            raise ValueError(f"{spec}: the baud rate after '@' must be a positive number, not {b!r}")
        baud = int(b)
    if not port:
        raise ValueError(f"{spec}: no port (serial:/dev/ttyACM0, serial:COM3, serial:/dev/ttyUSB0@9600)")
    return port, baud


# -- one sample per line ----------------------------------------------------------
class LineParser:
    """(int8 input bytes, label) from one text line (the module doc's format)."""

    def __init__(self, model: bytes, raw: bool = False, label_first: bool = False):
        self.io = ModelIO(model)
        self.raw = True if raw else None  # as `--raw` on a .csv; floats otherwise
        self.label_first = label_first
        self.n_in = self.io.input_bytes
        self.n_label = self.io.n_classes if self.io.mse else 1
        what = f"{self.n_in} inputs", ("MSE targets" if self.io.mse else "a label")
        self.expect = f"{self.n_in + self.n_label} values ({' then '.join(what[::-1] if label_first else what)})"

    def parse(self, text: str):
        """The sample of a line; ValueError with the reason if it has none."""
        fields = text.replace(",", " ").split()
        if len(fields) != self.n_in + self.n_label:
            raise ValueError(f"{len(fields)} values, expected {self.expect}")
        try:
            v = np.array([float(f) for f in fields])
        except ValueError as e:
            raise ValueError(str(e).replace("could not convert string to float: ", "not a number: ")) from None
        if not np.all(np.isfinite(v)):
            raise ValueError("a value is not finite")
        if self.label_first:
            lab, x = v[:self.n_label], v[self.n_label:]
        else:
            x, lab = v[:self.n_in], v[self.n_in:]
        xb = self.io.inputs(x[None], self.raw)[0].tobytes()
        if self.io.mse:
            return xb, self.io.labels(lab[None], 1, self.raw)[0]
        c = lab[0]
        if c != int(c) or not 0 <= c < self.io.n_classes:
            raise ValueError(f"label {fields[0 if self.label_first else -1]} is not a class index in "
                             f"[0, {self.io.n_classes})")
        return xb, int(c)


class LineSource:
    """Samples from a byte stream, one per text line, as they arrive.

    reader: an object with read(timeout) -> bytes (b"" when nothing came in
    time; EOFError at the end) and close(); opened by `open()` (the port is
    opened only once the device is ready, so old readings are not trained
    on). `take(timeout)` returns the samples of the lines that came; `ended`
    says why the source ended (None while it runs); `bad` lists the malformed
    lines (number, reason), each also passed to `on_bad` as it is found."""

    MAX_LINE = 1 << 16

    def __init__(self, opener, parser: LineParser, name: str, max_samples=None, on_bad=None):
        self.opener, self.parser, self.name = opener, parser, name
        self.max_samples = max_samples
        self.on_bad = on_bad
        self.reader = None
        self.buf = bytearray()
        self.lineno = 0
        self.n = 0
        self.bad: list = []
        self.ended = None

    def open(self) -> None:
        if self.reader is None:
            self.reader = self.opener()

    def close(self) -> None:
        if self.reader is not None:
            reader, self.reader = self.reader, None
            reader.close()

    def end(self, why: str) -> None:
        if self.ended is None:
            self.ended = why
        self.close()

    def take(self, timeout: float) -> list:
        if self.ended is not None:
            return []
        self.open()
        try:
            data = self.reader.read(timeout)
        except EOFError as e:
            data, eof = b"", str(e) or "end of input"
        except OSError as e:
            data, eof = b"", f"read failed ({e})"
        else:
            eof = None
        self.buf += data
        lines = self.buf.split(b"\n")
        self.buf = bytearray(lines.pop())
        if eof and self.buf:
            lines.append(bytes(self.buf))  # a last line without its newline
            self.buf.clear()
        out = []
        for raw in lines:
            self.lineno += 1
            text = raw.decode("utf-8", "replace").strip()
            if not text or text.startswith("#"):
                continue
            try:
                out.append(self.parser.parse(text))
            except ValueError as e:
                self._bad(str(e))
                continue
            self.n += 1
            if self.max_samples is not None and self.n >= self.max_samples:
                self.end(f"--max-samples {self.max_samples}")
                return out
        if len(self.buf) > max(self.MAX_LINE, 32 * (self.parser.n_in + self.parser.n_label)):
            self.lineno += 1  # its rest, when its end comes, counts as the next line
            self._bad(f"no end of line within {len(self.buf)} bytes (wrong baud rate?)")
            self.buf.clear()
        if eof:
            self.end(eof)
        return out

    def _bad(self, why: str) -> None:
        self.bad.append((self.lineno, why))
        if self.on_bad:
            self.on_bad(self.lineno, why)

    def __iter__(self):
        """The samples, blocking until each comes (for Python callers)."""
        try:
            while self.ended is None:
                yield from self.take(0.5)
        finally:
            self.close()


class _SerialReader:
    def __init__(self, port: str, baud: int):
        from .transport import SerialLink
        self.link = SerialLink.open(port, baud)

    def read(self, timeout: float) -> bytes:
        try:
            return self.link.read(65536, timeout)
        except (LinkClosed, OSError) as e:  # pyserial's SerialException is an OSError
            raise EOFError(f"the port closed ({e})") from None

    def close(self) -> None:
        self.link.ser.close()


class _FdReader:
    """A file descriptor (stdin): select where the platform can, else blocking."""

    def __init__(self, fd: int):
        self.fd = fd

    def read(self, timeout: float) -> bytes:
        if os.name == "posix" and not select.select([self.fd], [], [], timeout)[0]:
            return b""
        data = os.read(self.fd, 65536)
        if not data:
            raise EOFError("end of input")
        return data

    def close(self) -> None:
        pass


def open_serial(port: str, baud: int):
    """The reader of a sensor's serial port."""
    try:
        return _SerialReader(port, baud)
    except OSError as e:  # serial.SerialException: no such port, busy, no permission
        raise ValueError(f"serial:{port}: {e}") from None


def live(spec: str, model: bytes, *, raw=False, label_first=False, max_samples=None, on_bad=None,
         stdin=None) -> LineSource:
    """The LineSource of `--data serial:PORT[@BAUD]` or `--data -` (not yet opened)."""
    parser = LineParser(model, raw, label_first)
    if kind(spec) == "stdin":
        fd = (stdin or sys.stdin).fileno()
        return LineSource(lambda: _FdReader(fd), parser, "stdin", max_samples, on_bad)
    port, baud = serial_spec(spec)
    if port.startswith("/dev/") and not os.path.exists(port):
        raise ValueError(f"{spec}: no serial port {port}")
    return LineSource(lambda: open_serial(port, baud), parser, f"serial:{port}", max_samples, on_bad)


# -- data sets shipped in installed wheels ---------------------------------------------
def dataset(spec: str, model: bytes) -> tuple:
    """(x, y, x_eval, y_eval, description) of `dataset:NAME`: float inputs
    in the model's input layout (quantised later with its input scale)."""
    name, _, arg = spec[len("dataset:"):].partition(":")
    io = ModelIO(model)
    if io.mse:
        raise ValueError(f"{spec}: the data sets are classification tasks; this model is trained with MSE")
    h, w, c = io.input_shape
    try:
        if name == "imu":
            x, y, xe, ye, n_cls, what = _imu(spec, arg, (h, w, c))
        elif name in ("digits", "faces") and not arg:
            if min(h, w) < 4:
                raise ValueError(f"{spec} gives images; the model takes {h}x{w}x{c}, not an image of at least "
                                 "4x4 pixels: resizing to it would not be the data set. Give your data as a file "
                                 "(.npz) in the model's layout")
            from .. import datasets as ds
            from ..tasks import IMAGE_SIZES, load_image_task
            task = load_image_task(name, 0, *IMAGE_SIZES[name])
            x, xe = (ds.model_floats(task.images[i], (h, w, c)) for i in (task.i_train, task.i_test))
            y, ye, n_cls = task.labels[task.i_train], task.labels[task.i_test], len(task.classes)
            what = (f"{task.describe()}: the split of `tinytrain demo vision` (seed 0), resized to {h}x{w}x{c} "
                    f"in [-1, 1]")
        else:
            raise ValueError(f"unknown data set {spec!r}; data sets: {DATASETS_HELP}")
    except (ImportError, FileNotFoundError) as e:
        raise ValueError(f"{spec}: {e}") from None
    if n_cls > io.n_classes:
        raise ValueError(f"{spec} has {n_cls} classes, the model {io.n_classes}")
    return x, y, xe, ye, f"{what}: {len(y)} samples to learn on, {len(ye)} to evaluate"


def _imu(spec: str, arg: str, shape) -> tuple:
    from ..datasets import watch_windows
    from ..tasks import SUBJECTS, time_split
    if not arg.isdigit() or int(arg) not in SUBJECTS:
        raise ValueError(f"{spec}: give a subject, dataset:imu:1 .. dataset:imu:{SUBJECTS[-1]}")
    h, w, c = shape
    if h != 1 or c != 6:
        raise ValueError(f"{spec} gives windows of 1 x T x 6 (T samples of 6 IMU axes; the personalize demo's "
                         f"model takes 1x100x6); the model takes {h}x{w}x{c}")
    subject = int(arg)
    win = watch_windows(w, max(1, w // 2), held_out=subject)
    learn, ev = time_split(win, subject, 0.5)
    what = (f"seglearn's watch IMU set, subject {subject}: windows of {w} samples (50 Hz, 50% overlap), "
            f"standardised with the other subjects' statistics; the first half of each recording to learn on, "
            f"the later windows to evaluate (as `tinytrain demo personalize`)")
    return win.x[learn], win.y[learn], win.x[ev], win.y[ev], len(win.y_labels), what
