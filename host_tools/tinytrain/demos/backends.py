"""Where a demo's model trains: the one interface between a demo and a device.

A demo hands a compiled model file to `open_device(target, model)` and then
only streams samples to what it gets back:

    dev = open_device("sim", plan.data)
    loss = dev.step(x, label)          # x: bytes, one int8 input; label: int
    cls = dev.predict(x)
    acc = dev.evaluate(xs, labels)     # xs: N inputs back to back (bytes)
    dev.info(); dev.close()

Implemented: 'sim' (the host simulator, `tinytrain.Trainer` over the same C
core as the firmware). Planned, by whoever adds them: 'qemu' (the Cortex-M7
under qemu) and a serial port ('serial:/dev/ttyACM0', or the port itself)
for a board running MicroPython with the tinytrain module. A new backend is
one class with these five methods plus a branch in `open_device`.
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


def check_target(target: str) -> None:
    """Raise now (NotImplementedError, ValueError) for a target open_device cannot open."""
    if str(target) != "sim":
        open_device(target, b"")


def open_device(target: str, model: bytes, lr=None) -> Device:
    """A Device running `model` on `target` ('sim'; 'qemu' and serial ports: not yet)."""
    t = str(target)
    if t == "sim":
        return SimDevice(model, lr=lr)
    if t == "qemu":
        raise NotImplementedError("target 'qemu' (the Cortex-M7 under qemu) is not implemented yet: "
                                  "use --target sim; a qemu backend is a Device class in "
                                  "tinytrain/demos/backends.py")
    if t.startswith("serial") or t.startswith("/dev/") or t.upper().startswith("COM"):
        raise NotImplementedError(f"target {t!r} (a board on a serial port) is not implemented yet: "
                                  "use --target sim; a serial backend is a Device class in "
                                  "tinytrain/demos/backends.py")
    raise ValueError(f"unknown target {t!r}; targets: {', '.join(TARGETS)}")
