"""Where a demo's model trains: the one interface between a demo and a device.

A demo hands a compiled model file to `open_device(target, model)` and then
only streams samples to what it gets back:

    dev = open_device("sim", plan.data)
    loss = dev.step(x, label)          # x: bytes, one int8 input; label: int
    cls = dev.predict(x)
    acc = dev.evaluate(xs, labels)     # xs: N inputs back to back (bytes)
    dev.info(); dev.close()

Targets: 'sim' (the host simulator, `tinytrain.Trainer` over the same C
core as the firmware); 'qemu' (the Cortex-M7 firmware under qemu, built with
`make qemu`) and a serial port ('serial:/dev/ttyACM0', or the port itself)
for a board running MicroPython with the tinytrain module: both speak the
stream protocol of docs/streaming.md (`tinytrain.stream`), every call one
request, and train bit for bit as the simulator does. A new backend is one
class with these five methods plus a branch in `open_device`.
"""
from __future__ import annotations

from typing import Protocol, Sequence

TARGETS = ("sim", "qemu", "serial:PORT")


class Device(Protocol):
    name: str

    def step(self, x: bytes, label: int) -> float: ...

    def predict(self, x: bytes) -> int: ...

    def evaluate(self, xs: bytes, labels: Sequence[int]) -> float: ...

    def info(self) -> dict: ...

    def close(self) -> None: ...


class SimDevice:
    """The simulator: bit-exact with the firmware's C core."""

    name = "sim"

    def __init__(self, model: bytes, lr=None):
        from ..trainer import Trainer
        self.trainer = Trainer(model, lr=lr)

    def step(self, x: bytes, label: int) -> float:
        return self.trainer.step(x, int(label))

    def predict(self, x: bytes) -> int:
        return self.trainer.predict(x)

    def evaluate(self, xs: bytes, labels: Sequence[int]) -> float:
        return self.trainer.evaluate(xs, [int(v) for v in labels])

    def info(self) -> dict:
        return self.trainer.info()

    def close(self) -> None:
        self.trainer = None


class StreamDevice:
    """A device behind the stream protocol (qemu, a board on a serial port):
    the Trainer runs there; each call is one request and its reply."""

    def __init__(self, target: str, model: bytes, lr=None):
        from ..inputs import ModelIO
        from ..stream import connect
        self._io = ModelIO(model)
        self.name = str(target)
        self.conn = connect(self.name, model, lr=lr, prequential=False)
        self.session = self.conn.session
        self.input_bytes = self.session.model["input_bytes"]

    def step(self, x: bytes, label: int) -> float:
        return self.session.train([(bytes(x), int(label))]).losses[0]

    def predict(self, x: bytes) -> int:
        return self.session.predict([bytes(x)])[0]

    def evaluate(self, xs: bytes, labels: Sequence[int]) -> float:
        n = self.input_bytes
        xs = bytes(xs)
        labels = [int(v) for v in labels]
        if len(xs) % n:
            raise ValueError(f"xs has {len(xs)} bytes, not a multiple of the input size {n}")
        if len(xs) // n != len(labels):
            raise ValueError(f"{len(xs) // n} inputs but {len(labels)} labels")
        if not labels:
            raise ValueError("evaluate needs at least one input")
        hits, _ = self.session.evaluate((xs[i * n:(i + 1) * n], y) for i, y in enumerate(labels))
        return hits / len(labels)

    def info(self) -> dict:
        d = self.session.info()  # Trainer.info() and two keys of the link's own
        io = self._io
        return {**{k: v for k, v in d.items() if k not in ("label_bytes", "max_records")},
                # facts of the model file, as Trainer.info() gives them
                "input_shape": io.input_shape, "input_scale": io.in_scale, "input_zero": io.in_zero,
                "output_scale": io.out_scale, "output_zero": io.out_zero}

    def params_file(self) -> bytes:
        """The trained parameters, as Trainer.save writes them."""
        return self.session.params_file()

    def close(self) -> None:
        self.conn.close()


def check_target(target: str) -> None:
    """Raise now (ValueError, one line) for a target open_device cannot open."""
    from ..stream.session import StreamError
    from ..stream.targets import check
    if str(target) != "sim":
        try:
            check(str(target))
        except StreamError as e:
            raise ValueError(str(e)) from None


def open_device(target: str, model: bytes, lr=None) -> Device:
    """A Device running `model` on `target`: 'sim', 'qemu' or a serial port."""
    from ..stream.targets import target_kind
    t = str(target)
    if t == "sim":
        return SimDevice(model, lr=lr)
    target_kind(t)  # ValueError for an unknown target
    check_target(t)
    return StreamDevice(t, model, lr=lr)
