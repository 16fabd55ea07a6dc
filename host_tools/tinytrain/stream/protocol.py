"""Frames of the stream protocol, host side (docs/streaming.md).

The frame layout, the constants and the header/CRC code are the device
module's own (micropython_modules/tinytrain/python/tinytrain_stream.py, which
runs under CPython too): one definition for both ends. The host adds a parser
that finds frames in a byte stream with noise, damage and REPL text in it.
"""
from __future__ import annotations

import importlib.util
import struct
import sys
import zlib
from pathlib import Path
from typing import NamedTuple

DEVICE_SOURCE = (Path(__file__).resolve().parents[3] / "micropython_modules" / "tinytrain" / "python"
                 / "tinytrain_stream.py")
_MODULE_NAME = "tinytrain.stream._device"


def device_module():
    """The device module, loaded from the project tree (it is not a module of
    this package: it is frozen into the firmware from micropython_modules/)."""
    mod = sys.modules.get(_MODULE_NAME)
    if mod is None:
        if not DEVICE_SOURCE.exists():
            raise ImportError(f"the device module {DEVICE_SOURCE} is missing: tinytrain stream needs the "
                              "project's source tree (pip install -e .)")
        spec = importlib.util.spec_from_file_location(_MODULE_NAME, DEVICE_SOURCE)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE_NAME] = mod
        spec.loader.exec_module(mod)
    return mod


_D = device_module()
VERSION = _D.VERSION
MAGIC = _D.MAGIC
HDR = _D.HDR
HELLO, MODEL, TRAIN, EVAL, INFO = _D.HELLO, _D.MODEL, _D.TRAIN, _D.EVAL, _D.INFO
PGET, PPUT, SAVE, LOAD, STATS, END = _D.PGET, _D.PPUT, _D.SAVE, _D.LOAD, _D.STATS, _D.END
REPLY, READY, NAK, ERROR, PART, PING = _D.REPLY, _D.READY, _D.NAK, _D.ERROR, _D.PART, _D.PING
F_PREQUENTIAL = _D.F_PREQUENTIAL
INFO_FMT, STATS_FMT, HELLO_FMT = _D.INFO_FMT, _D.STATS_FMT, _D.HELLO_FMT
MAX_WINDOW, MAX_RECORDS = _D.MAX_WINDOW, _D.MAX_RECORDS
INFO_KEYS = ("arena_bytes", "peak_bytes", "param_bytes", "steps", "trained_params", "input_bytes", "classes",
             "lr", "model_crc", "loss_kind", "label_bytes", "max_records")
NAMES = {HELLO: "HELLO", MODEL: "MODEL", TRAIN: "TRAIN", EVAL: "EVAL", INFO: "INFO", PGET: "PGET",
         PPUT: "PPUT", SAVE: "SAVE", LOAD: "LOAD", STATS: "STATS", END: "END", READY: "READY", NAK: "NAK",
         ERROR: "ERROR", PART: "PART", PING: "PING"}


class Frame(NamedTuple):
    type: int
    seq: int
    payload: bytes


def encode(typ: int, seq: int, payload: bytes = b"") -> bytes:
    """One frame: header, payload, CRC-32 (the device module's own code)."""
    n = len(payload)
    if n > 0xFFFF:
        raise ValueError(f"payload of {n} bytes: at most 65535")
    buf = bytearray(HDR + n + 4)
    buf[HDR:HDR + n] = payload
    _D.finish(buf, typ, seq & 0xFFFF, n)
    return bytes(buf)


def unpack_info(payload: bytes, off: int = 0) -> dict:
    return dict(zip(INFO_KEYS, struct.unpack_from(INFO_FMT, payload, off)))


INFO_SIZE = struct.calcsize(INFO_FMT)


class Parser:
    """Frames out of a byte stream. A header must carry the magic, a valid
    check byte and a length no larger than max_payload; a frame whose CRC
    fails is skipped one byte at a time, so a frame that follows inside it is
    still found. Bytes that belong to no frame are kept (the last 4 KiB) in
    `noise`: on a REPL target they are the board's own text (a traceback)."""

    def __init__(self, max_payload: int = 4096):
        self.max_payload = max_payload
        self.buf = bytearray()
        self.noise = bytearray()
        self.crc_errors = 0

    def feed(self, data: bytes) -> list:
        buf = self.buf
        buf += data
        out = []
        while True:
            i = buf.find(MAGIC)
            if i < 0:
                keep = 1 if buf[-1:] == MAGIC[:1] else 0
                self._noise(buf[:len(buf) - keep])
                del buf[:len(buf) - keep]
                break
            if i:
                self._noise(buf[:i])
                del buf[:i]
            if len(buf) < HDR:
                break
            n = buf[5] | buf[6] << 8
            if buf[7] != _D.hchk(buf) or n > self.max_payload:
                self._noise(buf[:1])
                del buf[:1]
                continue
            if len(buf) < HDR + n + 4:
                break
            if zlib.crc32(buf[:HDR + n]) != struct.unpack_from("<I", buf, HDR + n)[0]:
                self.crc_errors += 1
                del buf[:1]
                continue
            out.append(Frame(buf[2], buf[3] | buf[4] << 8, bytes(buf[HDR:HDR + n])))
            del buf[:HDR + n + 4]
        return out

    def _noise(self, b) -> None:
        if b:
            self.noise += b
            del self.noise[:-4096]

    def text(self) -> str:
        """The noise as text (what a REPL printed), control bytes dropped."""
        return bytes(c for c in self.noise if c in (9, 10, 13) or 32 <= c < 127).decode("ascii")
