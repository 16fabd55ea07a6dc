"""Byte pipes between the host and a device (docs/streaming.md).

Host side, a `Link`: write(data), read(n, timeout) -> up to n bytes (b"" when
nothing came in time), close().
  - SerialLink: a pyserial port (a board's USB/UART, or the qemu device's pty
    once mpremote has opened it and started the device module);
  - FdLink: a tty or pty by path or file descriptor (os and termios only, no
    pyserial): the qemu pty, or the tests' pty pairs;
  - loopback_pair(): in-process byte queues, the device module running in a
    thread of this process against the simulator.

Device side (what tinytrain_stream.serve(io=...) takes under CPython):
readinto(buf, n, ms) -> bytes read (fewer when none came for ms, or at the
end of the stream), write(b), poll(ms) -> bool, close(). `DeviceEnd` (loopback) and `FdDeviceEnd` (a tty).
"""
from __future__ import annotations

import os
import select
import threading
import time


class LinkClosed(EOFError):
    pass


class Link:
    name = "link"

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, n: int, timeout: float) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        pass


# -- in-process ---------------------------------------------------------------
class _Pipe:
    """A one-way byte queue between threads."""

    def __init__(self):
        self.buf = bytearray()
        self.cv = threading.Condition()
        self.closed = False

    def put(self, data) -> None:
        with self.cv:
            if self.closed:
                raise LinkClosed("the link is closed")
            self.buf += data
            self.cv.notify_all()

    def get(self, n: int, timeout) -> bytes:
        """Up to n bytes; waits at most timeout seconds (None: forever) for the first."""
        with self.cv:
            if not self.buf and not self.closed:
                self.cv.wait_for(lambda: self.buf or self.closed, timeout)
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out

    def wait(self, timeout) -> bool:
        with self.cv:
            return bool(self.cv.wait_for(lambda: self.buf or self.closed, timeout))

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify_all()


class LoopbackLink(Link):
    name = "loopback"

    def __init__(self, to_dev: _Pipe, from_dev: _Pipe):
        self.to_dev, self.from_dev = to_dev, from_dev

    def write(self, data: bytes) -> None:
        self.to_dev.put(data)

    def read(self, n: int, timeout: float) -> bytes:
        return self.from_dev.get(n, timeout)

    def close(self) -> None:
        self.to_dev.close()
        self.from_dev.close()


class DeviceEnd:
    """The device module's side of a loopback pair."""

    def __init__(self, rx: _Pipe, tx: _Pipe):
        self.rx, self.tx = rx, tx

    def readinto(self, buf, n: int, ms=None) -> int:
        mv = memoryview(buf)
        got = 0
        while got < n:
            chunk = self.rx.get(n - got, None if ms is None else ms / 1000)
            if not chunk:
                break  # closed, or silent for ms
            mv[got:got + len(chunk)] = chunk
            got += len(chunk)
        return got

    def write(self, b) -> None:
        try:
            self.tx.put(bytes(b))
        except LinkClosed:
            pass

    def poll(self, ms: int) -> bool:
        return self.rx.wait(ms / 1000)

    def close(self) -> None:
        pass


def loopback_pair():
    """(host Link, device end) joined by two byte queues."""
    a, b = _Pipe(), _Pipe()
    return LoopbackLink(a, b), DeviceEnd(a, b)


# -- ttys and ptys ------------------------------------------------------------
def set_raw(fd: int) -> None:
    """No echo, no line editing, no CR/LF translation: bytes pass as they are."""
    import termios
    import tty
    tty.setraw(fd, termios.TCSANOW)


def _write_all(fd: int, data: bytes, timeout: float = 30.0) -> None:
    mv = memoryview(data)
    end = time.monotonic() + timeout
    while mv:
        _, w, _ = select.select([], [fd], [], max(0.0, end - time.monotonic()))
        if not w:
            raise TimeoutError(f"could not write {len(mv)} bytes in {timeout:g} s: the other end reads nothing")
        k = os.write(fd, mv)
        mv = mv[k:]


class FdLink(Link):
    """A tty or pty, by path (opened raw) or by an open file descriptor; or
    two pipes (wfd: the one to write to)."""

    def __init__(self, path_or_fd, raw: bool = True, wfd: int | None = None):
        if isinstance(path_or_fd, int):
            self.fd, self.own = path_or_fd, False
            self.name = f"fd {path_or_fd}"
        else:
            self.fd, self.own = os.open(path_or_fd, os.O_RDWR | os.O_NOCTTY), True
            self.name = str(path_or_fd)
        self.wfd = self.fd if wfd is None else wfd
        if raw:
            set_raw(self.fd)
        os.set_blocking(self.fd, False)

    def write(self, data: bytes) -> None:
        try:
            _write_all(self.wfd, data)
        except BrokenPipeError as e:
            raise LinkClosed(f"{self.name}: {e}") from None

    def read(self, n: int, timeout: float) -> bytes:
        r, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not r:
            return b""
        try:
            data = os.read(self.fd, n)
        except BlockingIOError:
            return b""
        except OSError as e:  # EIO: the other side of the pty is gone
            raise LinkClosed(f"{self.name}: {e}") from None
        if not data:
            raise LinkClosed(f"{self.name}: end of stream")
        return data

    def close(self) -> None:
        if self.own and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class FdDeviceEnd:
    """The device module's side on a tty (tests: the simulator behind a pty)."""

    def __init__(self, fd: int, raw: bool = True):
        self.fd = fd
        if raw:
            set_raw(fd)

    def readinto(self, buf, n: int, ms=None) -> int:
        mv = memoryview(buf)
        got = 0
        while got < n:
            if not select.select([self.fd], [], [], None if ms is None else ms / 1000)[0]:
                break
            try:
                chunk = os.read(self.fd, n - got)
            except BlockingIOError:
                continue
            except OSError:
                break
            if not chunk:
                break
            mv[got:got + len(chunk)] = chunk
            got += len(chunk)
        return got

    def write(self, b) -> None:
        try:
            _write_all(self.fd, bytes(b))
        except (OSError, TimeoutError):
            pass

    def poll(self, ms: int) -> bool:
        return bool(select.select([self.fd], [], [], ms / 1000)[0])

    def close(self) -> None:
        pass


# -- pyserial -----------------------------------------------------------------
class SerialLink(Link):
    """A pyserial port (mpremote's SerialTransport.serial, or one opened here)."""

    def __init__(self, ser):
        self.ser = ser
        self.name = getattr(ser, "port", "serial")

    @classmethod
    def open(cls, port: str, baudrate: int = 115200):
        try:
            import serial
        except ImportError:
            raise ImportError("a serial port needs pyserial: pip install pyserial") from None
        return cls(serial.Serial(port, baudrate, timeout=0))

    def write(self, data: bytes) -> None:
        self.ser.write(data)

    def read(self, n: int, timeout: float) -> bytes:
        self.ser.timeout = max(0.0, timeout)
        first = self.ser.read(1)
        if not first:
            return b""
        waiting = self.ser.in_waiting
        return first + (self.ser.read(min(n - 1, waiting)) if waiting and n > 1 else b"")

    def close(self) -> None:
        pass  # the port belongs to whoever opened it
