"""Property fuzzing (hypothesis, seeded) of the stream protocol's frame
parsers: the host's `Parser` and the device receiver's `Server.read_frame`
(tinytrain_stream.py, which runs under CPython too). Neither parser has a C
form, so libFuzzer does not apply; a byte stream is built from segments
whose fate is known (intact frames, frames damaged in the payload or CRC,
frames cut short, headers with a bad check byte or an oversized length,
noise, REPL text) and each parser must return exactly what the segments
imply, in order, and never raise."""
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinytrain.stream import protocol as P

MAXP = 256
SETTINGS = settings(max_examples=300, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

frame_types = st.sampled_from([P.HELLO, P.MODEL, P.TRAIN, P.EVAL, P.INFO, P.PGET, P.PPUT, P.SAVE, P.LOAD,
                               P.STATS, P.END, P.READY, P.NAK, P.ERROR, P.TRAIN | P.REPLY, 0, 255])
intact = st.builds(lambda t, s, p: ("intact", P.encode(t, s, p), (t, s, p)),
                   frame_types, st.integers(0, 0xFFFF), st.binary(max_size=MAXP))


def _damage(kind, frame: bytes, pos: int, bit: int) -> bytes:
    b = bytearray(frame)
    if kind == "payload_or_crc":  # behind the header: the CRC fails
        i = P.HDR + pos % (len(b) - P.HDR)
        b[i] ^= 1 << bit
    elif kind == "check":  # the header's check byte
        b[7] ^= 1 << bit
    elif kind == "oversized":  # a consistent header whose length passes max_payload
        big = bytearray(P.HDR + 4)
        P._D.head(big, frame[2], 0, MAXP + 1 + pos % 1000)
        return bytes(big[:P.HDR])
    return bytes(b)


damaged = st.builds(lambda f, kind, pos, bit: ("damaged", _damage(kind, f[1], pos, bit), None),
                    intact, st.sampled_from(["payload_or_crc", "check", "oversized"]),
                    st.integers(0, 1 << 16), st.integers(0, 7))
cut = st.builds(lambda f, k: ("cut", f[1][:max(1, k % len(f[1]))], None), intact, st.integers(1, 1 << 16))
noise = st.one_of(st.binary(max_size=64).map(lambda b: ("noise", b.replace(P.MAGIC[:1], b"\0"), None)),
                  st.just(("noise", b"Traceback (most recent call last):\r\n  ValueError: x\r\n>>> ", None)))
streams = st.lists(st.one_of(intact, intact, damaged, cut, noise), max_size=12)


# Line noise after the last segment: a frame cut short at the very end waits
# for the bytes its header claims, as on a live link where more bytes follow.
IDLE = b"\0" * (P.HDR + MAXP + 4)


def host_expected(segments):
    """The host parser skips a bad frame byte by byte, so every intact frame
    is found, even one that starts inside a cut frame's claimed length."""
    return [f for kind, _, f in segments if kind == "intact"]


@SETTINGS
@given(streams, st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_host_parser_finds_every_intact_frame(segments, chunks):
    data = b"".join(b for _, b, _ in segments) + IDLE
    p = P.Parser(max_payload=MAXP)
    got, pos, k = [], 0, 0
    while pos < len(data):  # fed in arbitrary pieces: the result must not depend on them
        n = chunks[k % len(chunks)]
        got += p.feed(data[pos:pos + n])
        pos, k = pos + n, k + 1
    got += p.feed(b"")
    assert [(f.type, f.seq, f.payload) for f in got] == host_expected(segments)
    assert len(p.noise) <= 4096
    p.text()


class _Bytes:
    """The receiver's io over a fixed byte string; EOFError at its end, as a
    closed port."""

    def __init__(self, data):
        self.data, self.pos = data, 0

    def readinto(self, buf, n, ms=None):
        if self.pos >= len(self.data):
            raise EOFError
        chunk = self.data[self.pos:self.pos + n]
        buf[:len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)

    def write(self, b):
        pass


def device_frames(data: bytes):
    s = P._D.Server(_Bytes(data), max_payload=MAXP)
    out = []
    try:
        while True:
            r = s.read_frame()
            if r is not None:
                t, seq, n = r
                out.append((t, seq, bytes(s.rx[P.HDR:P.HDR + n])))
    except EOFError:
        pass
    return out


@SETTINGS
@given(streams)
def test_device_parser_returns_only_intact_frames_in_order(segments):
    """The device reads a frame's claimed length before it checks the CRC, so
    a cut frame may swallow what follows it; otherwise every intact frame
    comes out, and nothing but intact frames, in order."""
    data = b"".join(b for _, b, _ in segments) + IDLE
    got = device_frames(data)
    want = host_expected(segments)
    it = iter(want)
    assert all(any(g == w for w in it) for g in got), (got, want)  # a subsequence of the intact frames
    if not any(kind == "cut" for kind, _, _ in segments):
        assert got == want


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes_never_raise(seed):
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(20000))
    data = data.replace(b"\xa5", b"\xa5\xc3", 200)  # plenty of false starts
    P.Parser(max_payload=MAXP).feed(data)
    device_frames(data)
