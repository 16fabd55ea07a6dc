"""`tinytrain stream`: the framing, the session over in-process queues and
over a pty pair through a relay that drops, corrupts and duplicates bytes
(the result must be the clean run's, bit for bit), saving that a power cut
can interrupt anywhere, pull/push, the CLI. With MICROPY_DIR set: the same
sessions against the device module on MicroPython's unix port and on the
qemu Cortex-M7 firmware (through mpremote), bit-identical to the simulator.

Everything here is bounded in time: every read has a timeout, every resend
a retry limit, the relay a fault budget.
"""
import contextlib
import os
import random
import re
import select
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import tinytrain
import tinytrain.trainer as trainer_mod
from tinytrain import cli
from tinytrain.stream import DeviceError, LinkError, connect
from tinytrain.stream import protocol as P
from tinytrain.stream import targets
from tinytrain.stream.commands import stream
from tinytrain.stream.session import Session
from tinytrain.stream.transport import FdDeviceEnd, FdLink, _write_all, loopback_pair, set_raw

import netzoo
from micropython_tree import SKIP_REASON, resolve

DEV = P.device_module()
MICROPY_DIR = resolve()  # MICROPY_DIR or ../shared/micropython
REPORT = Path(__file__).resolve().parents[1] / "build" / "stream-report.txt"


def report(line: str) -> None:
    REPORT.parent.mkdir(exist_ok=True)
    with open(REPORT, "a") as f:
        f.write(line + "\n")


def make(name="mlp", scheme="full_residue", n=120, seed=4):
    b, g, plan = netzoo.build(name, scheme)
    xs, ys = netzoo.samples(b, g, n, seed=seed)
    return plan.data, [(x.tobytes(), y) for x, y in zip(xs, ys)]


def clean_run(model, samples, epochs=1, prequential=True):
    """What the device must compute: the simulator's Trainer, directly."""
    t = tinytrain.Trainer(model)
    losses, hits = [], 0
    for _ in range(epochs):
        for x, y in samples:
            if prequential:
                hits += t.predict(x) == y
            losses.append(t.step(x, y))
    return t, losses, hits


def f32(values) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def saved_blob(t, tmp_path) -> bytes:
    p = tmp_path / "ref.ttp"
    t.save(str(p))
    return p.read_bytes()


# -- framing --------------------------------------------------------------------
def test_frame_round_trip_and_layout():
    f = P.encode(P.TRAIN, 0x1234, b"abc")
    assert f[:2] == b"\xa5\xc3" and f[2] == P.TRAIN and f[3:5] == b"\x34\x12" and f[5:7] == b"\x03\x00"
    assert struct.unpack_from("<I", f, 11)[0] == zlib.crc32(f[:11]) and len(f) == 8 + 3 + 4
    p = P.Parser()
    assert p.feed(f) == [P.Frame(P.TRAIN, 0x1234, b"abc")]
    # byte by byte, with text before and between (a REPL's output)
    p = P.Parser()
    got = []
    for b in b"OK\r\n" + f + b"hello" + P.encode(P.NAK, 7):
        got += p.feed(bytes([b]))
    assert got == [P.Frame(P.TRAIN, 0x1234, b"abc"), P.Frame(P.NAK, 7, b"")]
    assert p.text() == "OK\r\nhello"


def test_crc_errors_rejected_every_byte():
    good = P.encode(P.EVAL, 5, bytes(range(40)))
    after = P.encode(P.INFO, 6)
    for i in range(len(good)):
        for flip in (0x01, 0x80):
            bad = bytearray(good)
            bad[i] ^= flip
            frames = P.Parser().feed(bytes(bad) + after)
            assert frames == [P.Frame(P.INFO, 6, b"")], (i, flip, frames)  # the damaged one never passes


def test_bad_lengths():
    p = P.Parser(max_payload=64)
    big = P.encode(P.TRAIN, 1, bytes(100))  # longer than the receiver takes: skipped as noise
    assert p.feed(big + P.encode(P.INFO, 2)) == [P.Frame(P.INFO, 2, b"")]
    # a header whose length field was damaged fails its check byte
    f = bytearray(P.encode(P.TRAIN, 3, bytes(10)))
    f[5] = 200
    assert P.Parser().feed(bytes(f) + P.encode(P.INFO, 4)) == [P.Frame(P.INFO, 4, b"")]
    # a frame cut short, then the stream goes on: the next frame is still found
    cut = P.encode(P.TRAIN, 5, bytes(30))[:20]
    assert P.Parser().feed(cut + P.encode(P.INFO, 6) + bytes(40)) == [P.Frame(P.INFO, 6, b"")]
    with pytest.raises(ValueError):
        P.encode(P.TRAIN, 0, bytes(70000))


class _BytesIO:
    """A device-side io over a fixed byte string."""

    def __init__(self, data):
        self.data, self.out = bytearray(data), bytearray()

    def readinto(self, buf, n, ms=None):
        k = min(n, len(self.data))
        memoryview(buf)[:k] = self.data[:k]
        del self.data[:k]
        return k

    def write(self, b):
        self.out += bytes(b)

    def poll(self, ms):
        return bool(self.data)

    def close(self):
        pass


def test_device_reader_resynchronises():
    """The device's reader: garbage, a damaged frame (None), then the good
    ones; a header announcing more than its buffer is skipped."""
    good = P.encode(P.INFO, 9)
    damaged = bytearray(P.encode(P.STATS, 8, b"xyz"))
    damaged[9] ^= 0xFF
    too_long = bytearray(P.encode(P.TRAIN, 7, bytes(300)))
    io = _BytesIO(b"\x00\xa5\xa5\xc3junk" + bytes(too_long) + bytes(damaged) + good)
    s = DEV.Server(io, window=2, max_payload=128)
    frames = []
    try:
        while True:
            frames.append(s.read_frame())
    except DEV._Stop:
        pass
    assert None in frames and frames[-1] == (P.INFO, 9, 0)


def test_sequence_wrap_and_duplicates():
    """Sequence numbers wrap at 65536; a repeated frame gets its first reply
    again and is not applied twice; a frame ahead of a gap gets a NAK."""
    model, samples = make(n=6)
    io = _BytesIO(b"")
    s = DEV.Server(io, window=3, max_payload=512)
    s.load_model(model)
    rs = len(samples[0][0]) + 1
    frames = [P.encode(P.HELLO, 65533, bytes([P.VERSION, 1]))]
    for i, seq in enumerate((65534, 65535, 0, 1)):
        x, y = samples[i]
        frames.append(P.encode(P.TRAIN, seq, x + bytes([y])))
    dup = frames[2]                       # seq 65535 again, after 0
    ahead = P.encode(P.TRAIN, 5, samples[5][0] + bytes([samples[5][1]]))  # 2..4 missing
    io.data += b"".join(frames[:4]) + dup + frames[4] + ahead + frames[4]
    io.data += P.encode(P.END, 2)
    s.run()
    replies = P.Parser().feed(bytes(io.out))
    kinds = [(f.type, f.seq) for f in replies]
    assert kinds == [(P.READY, 0), (P.HELLO | P.REPLY, 65533), (P.TRAIN | P.REPLY, 65534),
                     (P.TRAIN | P.REPLY, 65535), (P.TRAIN | P.REPLY, 0), (P.TRAIN | P.REPLY, 65535),
                     (P.TRAIN | P.REPLY, 1), (P.NAK, 2), (P.TRAIN | P.REPLY, 1), (P.END | P.REPLY, 2)]
    assert replies[3].payload == replies[5].payload   # the cached reply, byte for byte
    assert s.trained == 4 and s.t.info()["steps"] == 4
    t, losses, _ = clean_run(model, samples[:4])
    got = [struct.unpack_from("<f", f.payload, 8)[0] for f in replies if f.type == P.TRAIN | P.REPLY]
    assert f32(got[:3] + [got[4]]) == f32(losses) and s.t.params() == t.params()
    assert rs == s.rs


# -- in-process sessions --------------------------------------------------------
@pytest.mark.parametrize("name,scheme", [("mlp", "full_residue"), ("cnn", "full"), ("mbnet", "sparse")])
def test_in_process_bit_identical(name, scheme, tmp_path):
    model, samples = make(name, scheme, n=80)
    t, losses, hits = clean_run(model, samples, epochs=2)
    with connect("sim", model) as c:
        st = c.session.train(samples)
        st = c.session.train(samples, st)
        ev_hits, classes = c.session.evaluate(samples[:30])
        blob = c.session.params_file()
        end = c.end()
    assert f32(st.losses) == f32(losses) and st.hits == hits
    assert classes == [t.predict(x) for x, _ in samples[:30]] and ev_hits == sum(
        c_ == y for c_, (_, y) in zip(classes, samples))
    assert blob == saved_blob(t, tmp_path)
    assert end == {"trained": 160, "hits": hits, "evaluated": 30, "eval_hits": ev_hits}


def test_in_process_mse_and_split_records(tmp_path):
    """An MSE model (targets as labels), and records larger than a frame
    (each goes in pieces and is assembled on the device)."""
    b = netzoo.ZOO["mlp"](3)
    g = b.quantize(netzoo.calib(b, seed=3))
    from tinytrain.compiler import Scheme, compile_model
    model = compile_model(g, Scheme.full(g, loss="mse")).data
    rng = np.random.default_rng(1)
    xs = [rng.integers(-128, 128, 64, dtype=np.int8).tobytes() for _ in range(20)]
    ys = [rng.integers(-100, 100, 10, dtype=np.int8).tobytes() for _ in range(20)]
    t = tinytrain.Trainer(model)
    want = [t.step(x, y) for x, y in zip(xs, ys)]
    with connect("sim", model, max_payload=64) as c:  # a record is 74 bytes
        st = c.session.train(zip(xs, ys))
        assert c.session.params_file() == saved_blob(t, tmp_path)
    assert f32(st.losses) == f32(want)


def test_save_load_push_over_the_stream(tmp_path):
    model, samples = make(n=40)
    with connect("sim", model) as c:
        s = c.session
        s.train(samples[:20])
        first = s.params_file()
        s.device_save(str(tmp_path / "dev.ttp"))    # Trainer.save on the device
        s.train(samples[20:])
        assert s.params_file() != first
        s.push_params(first)                        # back to the first 20 steps
        assert s.params_file() == first and s.info()["steps"] == 20
        s.train(samples[20:])
        again = s.params_file()
        s.device_load(str(tmp_path / "dev.ttp"))
        assert s.params_file() == first
        with pytest.raises(DeviceError, match="checksum mismatch"):
            s.push_params(first[:-1] + bytes([first[-1] ^ 1]))
        with pytest.raises(DeviceError, match="label 99 outside"):
            s.call(P.TRAIN, samples[0][0] + bytes([99]))  # (the host's own check would refuse it)
        assert s.params_file() == first   # the session goes on after a refused request
    t, _, _ = clean_run(model, samples, prequential=False)
    assert again == saved_blob(t, tmp_path)


def test_host_rejects_bad_samples():
    model, samples = make(n=2)
    with connect("sim", model) as c:
        with pytest.raises(ValueError, match="the model takes 64"):
            c.session.train([(b"\0" * 3, 1)])
        with pytest.raises(ValueError, match="outside"):
            c.session.train([(samples[0][0], 10)])


# -- over a pty pair, through a lossy relay ------------------------------------
class FaultyRelay(threading.Thread):
    """Copies bytes between two pty masters and, at seeded random places
    (about one per `gap` bytes each way, at most `budget` each way), drops a
    few bytes, corrupts one, duplicates a stretch, or repeats a whole chunk
    (a resent frame)."""

    KINDS = ("drop", "corrupt", "dup", "repeat")

    def __init__(self, host_fd, dev_fd, seed, gap=(2000, 300), budget=30):
        super().__init__(daemon=True)
        self.rng = random.Random(seed)
        self.peer = {host_fd: dev_fd, dev_fd: host_fd}
        self.gap = {host_fd: gap[0], dev_fd: gap[1]}
        self.left = {host_fd: budget, dev_fd: budget}
        self.next = {fd: self._draw(fd) for fd in self.peer}
        self.faults = {k: 0 for k in self.KINDS}
        self.bytes = 0
        self.halt = threading.Event()

    def _draw(self, fd):
        return 1 + int(self.rng.expovariate(1 / self.gap[fd]))

    def mangle(self, fd, data: bytes) -> bytes:
        out, i, repeat = bytearray(), 0, False
        while i < len(data):
            k = self.next[fd]
            if self.left[fd] <= 0 or i + k > len(data):
                self.next[fd] -= len(data) - i
                out += data[i:]
                break
            out += data[i:i + k - 1]
            i += k - 1
            kind = self.rng.choice(self.KINDS)
            if kind == "drop":
                i += self.rng.randint(1, 12)
            elif kind == "corrupt":
                out.append(data[i] ^ self.rng.randint(1, 255))
                i += 1
            elif kind == "dup":
                n = self.rng.randint(1, 24)
                out += data[i:i + n] * 2
                i += n
            else:
                repeat = True
            self.faults[kind] += 1
            self.left[fd] -= 1
            self.next[fd] = self._draw(fd)
        return bytes(out) + (data if repeat else b"")

    def run(self):
        fds = list(self.peer)
        while not self.halt.is_set():
            r, _, _ = select.select(fds, [], [], 0.05)
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return
                self.bytes += len(data)
                try:
                    _write_all(self.peer[fd], self.mangle(fd, data), timeout=10)
                except OSError:
                    return


@pytest.mark.parametrize("seed", [1, 2])
def test_pty_relay_with_faults_bit_identical(seed, tmp_path):
    """The simulator behind a pty, the host on another, a relay between them
    that drops, corrupts and duplicates bytes both ways: every sample applied
    exactly once, in order; losses, accuracy, evaluation and the parameter
    file identical to a clean in-process run. Sequence numbers wrap."""
    model, samples = make("mlp", "full_residue", n=150)
    epochs = 2
    t, losses, hits = clean_run(model, samples, epochs)
    host_m, host_s = os.openpty()
    dev_m, dev_s = os.openpty()
    set_raw(host_s)
    set_raw(dev_s)
    relay = FaultyRelay(host_m, dev_m, seed)
    relay.start()
    dev = targets.start_sim_device(FdDeviceEnd(dev_s), window=4, max_payload=512)
    link = FdLink(host_s)
    s = Session(link, window=4, max_payload=512, rto=0.2, min_rto=0.05, max_rto=1.0, retries=25,
                start_seq=65500)
    t0 = time.monotonic()
    try:
        s.wait_ready(2)  # (its READY may be the frame the relay damages)
        s.hello()
        s.load_model(model)
        st = s.train(samples)
        st = s.train(samples, st)
        ev_hits, classes = s.evaluate(samples[:40])
        blob = s.params_file()
        end = s.end()
        dt = time.monotonic() - t0
    finally:
        relay.halt.set()
        for fd in (host_m, dev_m):
            os.close(fd)
        dev.join(5)
        relay.join(5)
        for fd in (host_s, dev_s):
            os.close(fd)
    assert sum(relay.faults.values()) >= 20, relay.faults   # the relay really was lossy
    assert s.counts["resent"] > 0 and s.seq < 65500          # resends happened; seq wrapped
    assert end["trained"] == len(samples) * epochs and end["evaluated"] == 40
    assert f32(st.losses) == f32(losses) and st.hits == hits == end["hits"]
    assert classes == [t.predict(x) for x, _ in samples[:40]]
    assert blob == saved_blob(t, tmp_path)
    report(f"pty relay (seed {seed}): {len(samples) * epochs} samples of mlp (64 B inputs) in {dt:.1f} s with "
           f"{relay.faults} faults injected; {s.counts}; throughput {len(samples) * epochs / dt:.0f} samples/s "
           "(model upload, evaluation and parameter pull included)")


def test_pty_clean_throughput(tmp_path):
    """The same link without faults: samples per second over a pty pair."""
    model, samples = make("cnn", "full", n=300)
    host_m, host_s = os.openpty()
    set_raw(host_m)
    set_raw(host_s)
    dev = targets.start_sim_device(FdDeviceEnd(host_m), window=4, max_payload=2048)
    s = Session(FdLink(host_s), window=4, max_payload=2048, rto=0.5)
    try:
        s.wait_ready(5)
        s.hello()
        s.load_model(model)
        t0 = time.monotonic()
        st = s.train(samples)
        dt = time.monotonic() - t0
        s.end()
    finally:
        os.close(host_s)
        dev.join(5)
        os.close(host_m)
    t, losses, _ = clean_run(model, samples)
    assert f32(st.losses) == f32(losses)
    report(f"pty pair, no faults: cnn (432 B inputs) {len(samples) / dt:.0f} samples/s")


def test_link_gives_up_in_bounded_time():
    """Nobody answers: LinkError after the retries, not a hang."""
    host, _dev = loopback_pair()
    s = Session(host, rto=0.02, min_rto=0.01, max_rto=0.05, retries=3)
    t0 = time.monotonic()
    with pytest.raises(LinkError, match="no reply to HELLO"):
        s.hello()
    assert time.monotonic() - t0 < 2


class _LongFramesLost:
    """A loopback link whose line loses every frame longer than `limit`
    bytes (host to device) until `healed` is set."""

    def __init__(self, link, limit):
        self.link, self.limit, self.healed, self.lost = link, limit, False, 0

    def write(self, data):
        if len(data) > self.limit and not self.healed:
            self.lost += 1
            return
        self.link.write(data)

    def read(self, n, timeout):
        return self.link.read(n, timeout)

    def close(self):
        self.link.close()


def test_frames_shrink_then_grow_back(tmp_path):
    """A line that loses long frames: the frame size halves until frames
    pass, the requests made before (the model's first chunk, TRAIN frames in
    flight) go as PART frames and are applied once; once the line heals the
    size grows back. Bit-identical to a clean run throughout."""
    model, samples = make("mlp", "full_residue", n=120)
    t, losses, hits = clean_run(model, samples)
    host, dev = loopback_pair()
    th = targets.start_sim_device(dev, window=4, max_payload=2048)
    line = _LongFramesLost(host, 300)
    s = Session(line, window=4, max_payload=2048, rto=0.2, min_rto=0.1, max_rto=0.5)
    try:
        assert s.wait_ready(5)
        s.hello()
        s.load_model(model)
        st = s.train(samples[:60])
        assert s.size <= 300 - 12 and s.counts["parts"] > 0 and line.lost > 0
        line.healed = True
        st = s.train(samples[60:], st)
        grown = s.size
        blob = s.params_file()
        end = s.end()
    finally:
        host.close()
        th.join(5)
    assert grown >= 512 and end["trained"] == 120  # past what the lossy line let through
    assert f32(st.losses) == f32(losses) and st.hits == hits and blob == saved_blob(t, tmp_path)


def test_device_returns_after_silence_or_interrupt():
    """serve() returns after `idle` ms without a byte, and at once on Ctrl-C
    after a pause or on mpremote's "\\r\\x03\\r\\x01" (answering with the raw REPL
    banner); a 0x03 among the bytes of a damaged frame does not stop it."""
    host, dev = loopback_pair()
    th = targets.start_sim_device(dev, idle=300)
    t0 = time.monotonic()
    th.join(5)
    assert not th.is_alive() and time.monotonic() - t0 < 2

    host, dev = loopback_pair()
    th = targets.start_sim_device(dev, idle=20000)
    s = Session(host, rto=0.5)
    assert s.wait_ready(5)
    s.hello()
    damaged = bytearray(P.encode(P.STATS, 9, b"\r\x03\r\x03"))
    damaged[0] ^= 0xFF  # no magic: the device slides through it byte by byte
    host.write(bytes(damaged) + P.encode(P.PING, 0))
    assert s.stats()["trained"] == 0 and th.is_alive()  # still serving
    time.sleep(0.3)
    host.write(b"\r\x03")
    th.join(2)
    assert not th.is_alive()

    host, dev = loopback_pair()
    th = targets.start_sim_device(dev, idle=20000)
    s = Session(host, rto=0.5)
    assert s.wait_ready(5)
    s.hello()
    host.write(P.encode(P.PING, 0) + b"\r\x03\r\x01")  # no pause: the device was busy
    th.join(2)
    assert not th.is_alive()
    assert b"raw REPL; CTRL-B to exit\r\n>" in host.read(4096, 1)


def test_device_keeps_its_trainer_between_serves(tmp_path):
    """serve(keep=True) (the default on a board): the Trainer outlives
    serve(); the next one reports it in HELLO and goes on from it, and
    connect(resume=True) on such a device sends no model."""
    model, samples = make("mlp", "full_residue", n=30)
    t, losses, _ = clean_run(model, samples)
    try:
        for first, part in ((True, samples[:12]), (False, samples[12:])):
            host, dev = loopback_pair()
            th = targets.start_sim_device(dev, keep=True)
            s = Session(host, rto=0.5)
            assert s.wait_ready(5)
            s.hello()
            if first:
                assert s.model is None
                s.load_model(model)
            else:
                assert s.model["steps"] == 12
                assert targets._same_trainer(s.model, model, None)
                assert not targets._same_trainer(s.model, model, 0.5)
            s.train(part)
            blob = s.params_file()
            s.end()
            host.close()
            th.join(5)
    finally:
        DEV._kept = None
    assert blob == saved_blob(t, tmp_path)


# -- saving, interrupted anywhere -------------------------------------------
class PowerCut(Exception):
    pass


class _Fault:
    """Counts the file system events of a save (an open, each byte written, a
    flush, an fsync, each rename step) and cuts the power at event k: the
    file keeps what reached it, nothing after runs. `fat`: os.replace as the
    FAT driver does it over an existing file (remove, then rename)."""

    def __init__(self, k, fat=False):
        self.k, self.n, self.fat = k, 0, fat

    def tick(self):
        self.n += 1
        if self.n == self.k:
            raise PowerCut

    def open(self, path, mode="r", *a, **kw):
        f = open(path, mode, *a, **kw)
        if "w" not in mode:
            return f
        self.tick()
        fault = self

        class W:
            def write(self, data):
                for i in range(len(data)):
                    fault.tick()
                    f.write(data[i:i + 1])
                    f.flush()
                return len(data)

            def flush(self):
                fault.tick()
                f.flush()

            def fileno(self):
                return f.fileno()

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

        return W()

    def os(self):
        fault, real = self, os

        class OS:
            def __getattr__(self, name):
                return getattr(real, name)

            def fsync(self, fd):
                fault.tick()
                real.fsync(fd)

            def replace(self, src, dst):
                if fault.fat and real.path.exists(dst):
                    fault.tick()
                    real.remove(dst)
                fault.tick()
                real.rename(src, dst)

        return OS()


@pytest.mark.parametrize("fat", [False, True], ids=["posix-rename", "fat-remove-then-rename"])
def test_interrupted_save_gives_old_or_new(tmp_path, monkeypatch, fat):
    """A save cut at every write boundary (each byte, flush, fsync, rename
    step): loading afterwards gives exactly the old or the new parameters,
    never a mix and never a damaged file."""
    model, samples = make("cnn", "full", n=6)  # a 532-byte parameter file: 540 cut points
    t = tinytrain.Trainer(model)
    for x, y in samples[:3]:
        t.step(x, y)
    path = tmp_path / "params.ttp"
    t.save(str(path))
    old_file, old = path.read_bytes(), t.params()
    for x, y in samples[3:]:
        t.step(x, y)
    new = t.params()
    assert new != old
    events = None
    outcomes = {"old": 0, "new": 0}
    k = 1
    while True:
        path.write_bytes(old_file)
        Path(f"{path}.tmp").unlink(missing_ok=True)
        fault = _Fault(k, fat)
        monkeypatch.setattr(trainer_mod, "open", fault.open, raising=False)
        monkeypatch.setattr(trainer_mod, "os", fault.os())
        try:
            t.save(str(path))
            cut = False
        except PowerCut:
            cut = True
        monkeypatch.undo()
        u = tinytrain.Trainer(model)
        u.load(str(path))
        got = u.params()
        assert got in (old, new), k
        outcomes["old" if got == old else "new"] += 1
        if not cut:
            events = k - 1
            assert got == new
            break
        k += 1
    assert events > len(old_file) and outcomes["old"] > len(old_file) and outcomes["new"] >= 1
    if fat:  # cut between the remove and the rename: only the .tmp is left, and it is found
        assert outcomes["new"] >= 2


def test_load_accepts_bytes_and_prefers_whole_file(tmp_path):
    model, samples = make(n=2)
    t = tinytrain.Trainer(model)
    t.step(*samples[0])
    p = tmp_path / "p.ttp"
    t.save(str(p))
    blob = p.read_bytes()
    u = tinytrain.Trainer(model)
    u.load(blob)
    assert u.params() == t.params()
    u.load(bytearray(blob))
    p.write_bytes(blob[:-3])                         # damaged, no .tmp: the error
    with pytest.raises(ValueError, match="parameter file is"):
        u.load(str(p))
    Path(f"{p}.tmp").write_bytes(blob[:10])          # damaged and a partial .tmp: still the error
    with pytest.raises(ValueError):
        u.load(str(p))
    with pytest.raises(TypeError, match="load takes a path or the bytes"):
        u.load(3.5)


# -- the CLI ------------------------------------------------------------------
def _npz(tmp_path, name="cnn", n=60, float_inputs=True):
    b, g, plan = netzoo.build(name, "full")
    rng = np.random.default_rng(2)
    xf = rng.uniform(-1, 1, size=(n,) + b.input_shape)
    y = rng.integers(0, g.tensors[g.output].numel, n)
    (tmp_path / "m.ttm").write_bytes(plan.data)
    np.savez(tmp_path / "d.npz", x=xf if float_inputs else netzoo.quantize_input(g, xf), y=y,
             x_eval=xf[:20], y_eval=y[:20])
    return plan.data, g, xf, y


def test_cli_stream_save_pull_push(tmp_path, capsys, monkeypatch):
    model, g, xf, y = _npz(tmp_path)
    m, d = str(tmp_path / "m.ttm"), str(tmp_path / "d.npz")
    assert cli.main(["stream", "--model", m, "--data", d, "--epochs", "2", "--save", str(tmp_path / "a.ttp"),
                     "-q"]) == 0
    out = capsys.readouterr().out
    assert "120 samples (60 x 2 epochs) on sim" in out and "evaluation accuracy" in out and "epoch 2" in out
    # the same training by hand, with the model file's own quantisation
    from tinytrain.stream.data import ModelIO
    q = ModelIO(model).inputs(xf)
    t, _, _ = clean_run(model, [(r.tobytes(), int(v)) for r, v in zip(q, y)], epochs=2)
    assert (tmp_path / "a.ttp").read_bytes() == saved_blob(t, tmp_path)
    # which is the builder's quantisation (up to the float32 scale in the file)
    assert np.mean(q == netzoo.quantize_input(g, xf).reshape(len(xf), -1)) > 0.999
    # keep going from it, saving on the "device" (the sim's files are the host's)
    assert cli.main(["stream", "--model", m, "--data", d, "--load", str(tmp_path / "a.ttp"), "--save",
                     f":{tmp_path / 'dev.ttp'}", "-q", "--no-accuracy"]) == 0
    assert "180 steps in all" in capsys.readouterr().out
    assert cli.main(["pull", f":{tmp_path / 'dev.ttp'}", str(tmp_path / "b.ttp"), "--model", m]) == 0
    assert (tmp_path / "b.ttp").read_bytes() == (tmp_path / "dev.ttp").read_bytes()
    assert cli.main(["push", str(tmp_path / "a.ttp"), f":{tmp_path / 'dev.ttp'}"]) == 0
    assert (tmp_path / "dev.ttp").read_bytes() == (tmp_path / "a.ttp").read_bytes()
    capsys.readouterr()
    # refused: a damaged file, parameters of another model, a qemu target without its firmware
    (tmp_path / "bad.ttp").write_bytes((tmp_path / "a.ttp").read_bytes()[:-1])
    assert cli.main(["push", str(tmp_path / "bad.ttp"), ":x.ttp"]) == 2
    assert "not a whole tinytrain parameter file" in capsys.readouterr().err
    other = tmp_path / "o.ttm"
    other.write_bytes(netzoo.build("mlp", "full")[2].data)
    assert cli.main(["pull", str(tmp_path / "a.ttp"), str(tmp_path / "c.ttp"), "--model", str(other)]) == 2
    assert "another model" in capsys.readouterr().err and not (tmp_path / "c.ttp").exists()
    monkeypatch.setenv("TINYTRAIN_QEMU_ELF", str(tmp_path / "none.elf"))
    for cmd in (["pull", "--target", "qemu", ":p.ttp", str(tmp_path / "c.ttp")],
                ["push", "--target", "qemu", str(tmp_path / "a.ttp"), ":p.ttp"]):
        assert cli.main(cmd) == 2
        err = capsys.readouterr().err.strip()
        assert "needs the qemu firmware" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "c.ttp").exists()


def test_cli_stream_csv_npy_and_raw(tmp_path, capsys):
    model, g, xf, y = _npz(tmp_path, "mlp", n=30)
    q = netzoo.quantize_input(g, xf).reshape(30, -1)
    np.savetxt(tmp_path / "d.csv", np.column_stack([q, y]), fmt="%d", delimiter=",",
               header=",".join([f"x{i}" for i in range(64)] + ["label"]), comments="")
    np.save(tmp_path / "x.npy", q)
    np.save(tmp_path / "y.npy", y)
    m = str(tmp_path / "m.ttm")
    assert cli.main(["stream", "--model", m, "--data", str(tmp_path / "d.csv"), "--raw", "-q",
                     "--save", str(tmp_path / "c.ttp")]) == 0
    assert cli.main(["stream", "--model", m, "--data", str(tmp_path / "x.npy"), "--labels",
                     str(tmp_path / "y.npy"), "-q", "--save", str(tmp_path / "n.ttp")]) == 0
    assert (tmp_path / "c.ttp").read_bytes() == (tmp_path / "n.ttp").read_bytes()
    capsys.readouterr()
    assert cli.main(["stream", "--model", m, "--data", str(tmp_path / "x.npy"), "-q"]) == 2
    assert "--labels" in capsys.readouterr().err


def test_python_iterable_api(tmp_path):
    """stream() takes any iterable of (x, label); floats are quantised."""
    from tinytrain.stream.data import from_iterable
    model, g, xf, y = _npz(tmp_path, "mlp", n=25)
    gen = ((xf[i], int(y[i])) for i in range(25))
    res = stream("sim", model, from_iterable(model, gen), epochs=2)
    assert len(res["losses"]) == 50 and res["device"]["trained"] == 50 and res["samples_per_s"] > 0


def test_cli_targets_fail_in_one_line(tmp_path, capsys, monkeypatch):
    _npz(tmp_path, "mlp", n=5)
    monkeypatch.setenv("TINYTRAIN_QEMU_ELF", str(tmp_path / "none.elf"))
    args = ["stream", "--model", str(tmp_path / "m.ttm"), "--data", str(tmp_path / "d.npz"), "-q"]
    assert cli.main(args + ["--target", "qemu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs the qemu firmware" in err and "make qemu" in err and len(err.splitlines()) == 1
    assert cli.main(args + ["--target", "/dev/tinytrain-none"]) == 2
    assert capsys.readouterr().err.strip() == "tinytrain: no serial port /dev/tinytrain-none"
    assert cli.main(args + ["--target", "fpga"]) == 2
    assert "unknown target" in capsys.readouterr().err


def test_cli_ctrl_c_during_a_file_stream_saves(tmp_path, capsys, monkeypatch):
    """Ctrl-C while a data file streams: the stream ends between samples,
    what was sent is trained and saved (a clean run over those samples),
    the summary says so, the exit code is 130."""
    import signal
    from tinytrain.stream import commands
    model, g, xf, y = _npz(tmp_path, "mlp", n=200)
    real = commands._reporter

    def reporter(bar, prequential):
        inner = real(bar, prequential)

        def report(st):
            inner(st)
            if st.n >= 40 and not reporter.sent:
                reporter.sent = True
                os.kill(os.getpid(), signal.SIGINT)
        return report
    reporter.sent = False
    monkeypatch.setattr(commands, "_reporter", reporter)
    m, d, p = str(tmp_path / "m.ttm"), str(tmp_path / "d.npz"), tmp_path / "p.ttp"
    assert cli.main(["stream", "--model", m, "--data", d, "--epochs", "3", "--save", str(p), "-q"]) == 130
    out = capsys.readouterr().out
    assert "Ctrl-C: the stream ended after" in out and f"saved the trained parameters to {p}" in out
    sent = int(out.split("ended after ")[1].split()[0])
    assert 40 <= sent < 600
    from tinytrain.stream.data import ModelIO
    samples = [(r.tobytes(), int(v)) for r, v in zip(ModelIO(model).inputs(xf), y)] * 3
    t, _, _ = clean_run(model, samples[:sent], prequential=False)
    assert p.read_bytes() == saved_blob(t, tmp_path)


def test_cli_refuses_non_finite_inputs(tmp_path, capsys):
    """NaN or infinity in stream's inputs, targets or labels are refused in
    one line naming the sample (they would quantise to garbage)."""
    model, g, xf, y = _npz(tmp_path, "mlp", n=10)
    m = str(tmp_path / "m.ttm")
    for k, bad in ((3, np.nan), (7, np.inf), (0, -np.inf)):
        x = xf.copy()
        x.reshape(10, -1)[k, 5] = bad
        np.savez(tmp_path / "bad.npz", x=x, y=y)
        assert cli.main(["stream", "--model", m, "--data", str(tmp_path / "bad.npz"), "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert f"sample {k} " in err and "NaN or infinity" in err and len(err.splitlines()) == 1, err
    np.savez(tmp_path / "bad.npz", x=xf, y=np.where(np.arange(10) == 4, np.nan, y.astype(float)))
    assert cli.main(["stream", "--model", m, "--data", str(tmp_path / "bad.npz"), "-q"]) == 2
    assert "labels: sample 4 " in capsys.readouterr().err


def test_cli_files_that_cannot_be_read_or_written(tmp_path, capsys):
    """A model, scheme or output file that cannot be read or written: one
    line naming it, exit code 2, no traceback."""
    model, g, xf, y = _npz(tmp_path, "mlp", n=5)
    m = str(tmp_path / "m.ttm")
    (tmp_path / "ro").mkdir()
    cases = [
        (["info", str(tmp_path / "missing.ttm")], "missing.ttm"),
        (["plan", m, "--scheme", str(tmp_path / "none.json"), "-o", str(tmp_path / "o.ttm")], "none.json"),
        (["plan", m, "-o", str(tmp_path / "no-dir" / "o.ttm")], "o.ttm"),
        (["plan", m, "-o", str(tmp_path / "ro")], "ro"),
        (["plan", m, "-o", str(tmp_path / "o.ttm"), "--report", str(tmp_path / "no-dir" / "r.txt")], "r.txt"),
        (["stream", "--model", str(tmp_path / "missing.ttm"), "--data", str(tmp_path / "d.npz"), "-q"],
         "missing.ttm"),
    ]
    for argv, name in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("tinytrain: ") and name in err and len(err.splitlines()) == 1, (argv, err)
        assert "Traceback" not in err


def test_in_process_throughput():
    model, samples = make("cnn", "full", n=400)
    with connect("sim", model) as c:
        t0 = time.monotonic()
        c.session.train(samples)
        dt = time.monotonic() - t0
    report(f"in-process (loopback queues): cnn (432 B inputs) {len(samples) / dt:.0f} samples/s")


# -- MicroPython: the unix port and the qemu Cortex-M7 ------------------------------
@pytest.fixture(scope="module")
def mpdevice():
    """tests/device/mpdevice.py (builds the ports with the project's Makefile;
    TINYTRAIN_DEVICE_NO_BUILD=1 uses build/ as it is)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "device"))
    import mpdevice
    return mpdevice


@pytest.fixture(scope="module")
def unix_port(mpdevice):
    mpdevice.make("unix", MICROPY_DIR)
    return mpdevice.UNIX_EXE


@pytest.fixture(scope="module")
def qemu_elf(mpdevice):
    mpdevice.make("qemu", MICROPY_DIR)
    return mpdevice.QEMU_ELF


# a unix port heap on which the receiver runs and mbnet32's sparse model fits
# once beside its arena, not twice
UNIX_SMALL_HEAP = "136K"


def _compare_with_sim(session, model, samples, tmp_path):
    t, losses, hits = clean_run(model, samples)
    st = session.train(samples)
    ev_hits, classes = session.evaluate(samples[:20])
    blob = session.params_file()
    assert f32(st.losses) == f32(losses) and st.hits == hits
    assert classes == [t.predict(x) for x, _ in samples[:20]]
    assert blob == saved_blob(t, tmp_path)


@contextlib.contextmanager
def unix_receiver(unix_port, cwd, heap):
    """A Session (after HELLO) with the device module on the unix port, in
    folder cwd with a GC heap of heap bytes (the -X heapsize form)."""
    code = (f"import sys\nsys.path.insert(0, {str(P.DEVICE_SOURCE.parent)!r})\nimport tinytrain_stream\n"
            "tinytrain_stream.serve(None, window=4, max_payload=1024)\n")
    proc = subprocess.Popen([str(unix_port), "-X", f"heapsize={heap}", "-c", code], cwd=cwd,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        s = Session(FdLink(proc.stdout.fileno(), raw=False, wfd=proc.stdin.fileno()), rto=1.0)
        assert s.wait_ready(10), proc.stderr.read1(4096) if proc.poll() is not None else "no READY"
        s.hello()
        yield s
        s.end()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("spool", [True, False])
def test_unix_port_model_larger_than_the_heap(unix_port, tmp_path, spool):
    """A model the board's heap cannot hold: the receiver says how many bytes
    it needed and had (received into RAM: the receive buffer; through its
    file: the Trainer's copy), the host raises that as one line (no
    traceback from the command), no file is left behind, and the receiver
    goes on serving a model that fits."""
    small, samples = make("mlp", "full_residue", n=8)
    heap = 128 * 1024
    big = bytes(2 * heap)
    if not spool:
        (tmp_path / P.device_module().SPOOL).mkdir()  # no file: refused when its buffer is allocated
    with unix_receiver(unix_port, tmp_path, heap) as s:
        said = (r"MemoryError: .*a Trainer of the model needs its own copy and its arena; \d+ bytes were free" if spool
                else rf"MemoryError: {len(big)} bytes in one piece for the model; the heap has \d+ free")
        with pytest.raises(DeviceError, match=said):
            s.load_model(big)
        assert [p.name for p in tmp_path.iterdir()] == ([] if spool else [P.device_module().SPOOL])
        s.load_model(small)
        st = s.train(samples)
        t, losses, _ = clean_run(small, samples)
        assert f32(st.losses) == f32(losses)


def _mbnet32_sparse():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from zoo import mbnet32
    from tinytrain.compiler import compile_model
    b = mbnet32()
    g = b.quantize(netzoo.calib(b))
    xs, ys = netzoo.samples(b, g, 6, seed=2)
    return compile_model(g, netzoo.sparse_scheme(g)).data, [(x.tobytes(), y) for x, y in zip(xs, ys)]


@pytest.mark.parametrize("spool", [True, False])
def test_unix_port_model_through_a_file(unix_port, tmp_path, spool):
    """On a small heap the receiver takes a model through a file, so that its
    bytes are on the heap once: a model (21.7 KB, arena 18.2 KB) that does
    not fit twice trains bit for bit as the simulator, and the file is gone
    after; where the file cannot be made (a folder of its name is in the
    way) the same heap refuses the model in one line."""
    model, samples = _mbnet32_sparse()
    (tmp_path / "ref").mkdir()
    if not spool:
        (tmp_path / P.device_module().SPOOL).mkdir()
    with unix_receiver(unix_port, tmp_path, UNIX_SMALL_HEAP) as s:
        if spool:
            s.load_model(model)
            _compare_with_sim(s, model, samples, tmp_path / "ref")
        else:
            with pytest.raises(DeviceError, match="MemoryError: "):
                s.load_model(model)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "ref") == ([] if spool else [P.device_module().SPOOL])


def test_demo_on_a_device_too_small_says_so_in_one_line(unix_port, tmp_path, capsys):
    """`tinytrain demo ... --target unix:EXE` on a port whose heap cannot take
    the model: the device's error as one line and exit status 1, no
    traceback (the vision demo's small CNN, 20 KB, on a 110 KiB heap)."""
    wrapper = tmp_path / "micropython-small-heap"
    wrapper.write_text(f"#!/bin/sh\nMICROPYPATH={P.DEVICE_SOURCE.parent} exec {unix_port} -X heapsize=110K \"$@\"\n")
    wrapper.chmod(0o755)
    rc = cli.main(["demo", "vision", "--model", "small", "--quick", "--plot", str(tmp_path / "v.png"),
                   "--target", f"unix:{wrapper}"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    # (the model's receive buffer, or the Trainer's copy and arena after it: either says its sizes)
    assert re.search(r"^tinytrain: MemoryError: (\d+ bytes in one piece for the model; the heap has \d+ free|"
                     r".*a Trainer of the model needs its own copy and its arena; \d+ bytes were free)", err, re.M), err


def test_unix_port_device_module(unix_port, tmp_path):
    """The device module under MicroPython (unix port, stdin/stdout pipes):
    bit-identical to the simulator; and Trainer.load's fallback to path.tmp."""
    model, samples = make("mbnet", "sparse", n=40)
    src = P.DEVICE_SOURCE.parent
    code = (f"import sys\nsys.path.insert(0, {str(src)!r})\nimport tinytrain_stream\n"
            "tinytrain_stream.serve(None, window=4, max_payload=1024)\n")
    proc = subprocess.Popen([str(unix_port), "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        s = Session(FdLink(proc.stdout.fileno(), raw=False, wfd=proc.stdin.fileno()), rto=1.0)
        assert s.wait_ready(10), proc.stderr.read1(4096) if proc.poll() is not None else "no READY"
        s.hello()
        s.load_model(model)
        _compare_with_sim(s, model, samples, tmp_path)
        assert s.end()["trained"] == len(samples)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read().decode()
    # Trainer.load on the board: a save cut between remove and rename (FAT)
    t = tinytrain.Trainer(model)
    t.step(*samples[0])
    t.save(str(tmp_path / "p.ttp"))
    blob = (tmp_path / "p.ttp").read_bytes()
    (tmp_path / "m.ttm").write_bytes(model)
    os.rename(tmp_path / "p.ttp", tmp_path / "p.ttp.tmp")
    (tmp_path / "q.ttp").write_bytes(blob[:-2])
    (tmp_path / "q.ttp.tmp").write_bytes(blob)
    (tmp_path / "t.py").write_text(
        "import tinytrain\nt = tinytrain.Trainer('m.ttm')\nfor p in ('p.ttp', 'q.ttp'):\n"
        "    t.load(p)\n    print(p, t.info()['steps'], t.params() == open('p.ttp.tmp', 'rb').read()[20:-4])\n"
        "t.load(open('p.ttp.tmp', 'rb').read())\nprint('bytes', t.info()['steps'])\n")
    r = subprocess.run([str(unix_port), "t.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.stdout.split("\n")[:3] == ["p.ttp 1 True", "q.ttp 1 True", "bytes 1"], r.stdout + r.stderr


def test_qemu_stream_bit_identical(qemu_elf, tmp_path, monkeypatch):
    """The same stream session against the qemu firmware over its pty
    (mpremote enters the raw REPL and starts the frozen tinytrain_stream):
    losses, accuracy, predictions and the parameter file identical to the
    simulator's; throughput reported."""
    monkeypatch.setenv("TINYTRAIN_QEMU_ELF", str(qemu_elf))
    for name, scheme, n in (("mlp", "full_residue", 200), ("mbnet", "sparse", 60)):
        model, samples = make(name, scheme, n=n)
        with connect("qemu", model) as c:
            s = c.session
            assert s.info()["input_bytes"] == len(samples[0][0])
            t0 = time.monotonic()
            st = s.train(samples[:n // 2])
            dt = time.monotonic() - t0
            st2 = s.train(samples[n // 2:])
            ev_hits, classes = s.evaluate(samples[:20])
            blob = s.params_file()
            end = c.end()
        t, losses, hits = clean_run(model, samples)
        assert f32(st.losses + st2.losses) == f32(losses) and st.hits + st2.hits == hits == end["hits"]
        assert classes == [t.predict(x) for x, _ in samples[:20]]
        assert blob == saved_blob(t, tmp_path)
        assert s.counts["timeouts"] == 0 or s.counts["resent"] < s.counts["frames"]
        report(f"qemu ({name}/{scheme}, {len(samples[0][0])} B inputs): {n // 2 / dt:.0f} samples/s "
               f"training over the pty; link {s.counts}")


class RateRelay(threading.Thread):
    """Copies bytes between two ttys, each byte, both ways, dropped,
    corrupted or sent twice at fixed seeded rates: the session start through
    the raw REPL included."""

    def __init__(self, a_fd, b_fd, seed, drop=0.001, corrupt=0.001, dup=0.001):
        super().__init__(daemon=True)
        self.rng = random.Random(seed)
        self.peer = {a_fd: b_fd, b_fd: a_fd}
        self.p = (drop, drop + corrupt, drop + corrupt + dup)
        self.faults = {"drop": 0, "corrupt": 0, "dup": 0}
        self.bytes = 0
        self.halt = threading.Event()

    def mangle(self, data: bytes) -> bytes:
        out = bytearray()
        for c in data:
            r = self.rng.random()
            if r < self.p[0]:
                self.faults["drop"] += 1
            elif r < self.p[1]:
                out.append(c ^ self.rng.randint(1, 255))
                self.faults["corrupt"] += 1
            elif r < self.p[2]:
                out += bytes((c, c))
                self.faults["dup"] += 1
            else:
                out.append(c)
        return bytes(out)

    def run(self):
        fds = list(self.peer)
        while not self.halt.is_set():
            r, _, _ = select.select(fds, [], [], 0.05)
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                    self.bytes += len(data)
                    _write_all(self.peer[fd], self.mangle(data), timeout=10)
                except OSError:
                    pass


class _QemuBehindPty:
    """The qemu device, its UART reached through a pty pair of the test's
    (path: the tty the host opens), with a RateRelay between (or a clean copy)."""

    def __init__(self, elf, seed=None, **rates):
        self.q = targets.QemuProcess(elf)
        self.qfd = os.open(self.q.pty, os.O_RDWR | os.O_NOCTTY)
        set_raw(self.qfd)
        self.m, self.s = os.openpty()
        set_raw(self.m)
        set_raw(self.s)
        self.path = os.ttyname(self.s)
        self.relay = RateRelay(self.m, self.qfd, seed or 0, **(rates if seed is not None else
                                                                dict(drop=0, corrupt=0, dup=0)))
        self.relay.start()

    def close(self):
        self.relay.halt.set()
        self.relay.join(5)
        self.q.close()
        for fd in (self.qfd, self.m, self.s):
            os.close(fd)


def test_qemu_lossy_line_both_ways(qemu_elf, tmp_path):
    """0.1% of the bytes dropped, 0.1% corrupted, 0.1% sent twice, each way,
    the raw REPL start included: a 200-sample session on the qemu device
    completes with losses and parameter file identical to the simulator's;
    frames shrank (and PART frames carried the requests already made)."""
    model, samples = make("mlp", "full_residue", n=200)
    t, losses, hits = clean_run(model, samples)
    line = _QemuBehindPty(qemu_elf, seed=7)
    t0 = time.monotonic()
    try:
        with connect(line.path, model, window=4, max_payload=2048) as c:
            st = c.session.train(samples)
            blob = c.session.params_file()
            end = c.end()
            counts = dict(c.session.counts)
        dt = time.monotonic() - t0
    finally:
        line.close()
    assert sum(line.relay.faults.values()) >= 20, line.relay.faults
    assert end["trained"] == 200 and f32(st.losses) == f32(losses) and st.hits == hits
    assert blob == saved_blob(t, tmp_path)
    assert counts["smallest_frame"] < 2048
    report(f"qemu through a relay dropping/corrupting/duplicating 0.1% of bytes each way: 200 mlp samples in "
           f"{dt:.1f} s (session start, model upload, parameter pull included); faults {line.relay.faults}; "
           f"link {counts}")


_KILLED_HOST = """
import sys, time
from tinytrain.stream import connect
model = open(sys.argv[2], 'rb').read()
import pickle
samples = pickle.load(open(sys.argv[3], 'rb'))
with connect(sys.argv[1], model, window=4, max_payload=2048) as c:
    for i in range(0, len(samples), 4):
        c.session.train(samples[i:i + 4])
        print(i + 4, flush=True)
"""


def test_qemu_host_killed_mid_session(qemu_elf, tmp_path):
    """The host is killed (SIGKILL) in the middle of a session: mpremote
    reaches the REPL again, and the next session starts within 10 s and
    goes on with the Trainer the device kept in RAM; its parameters are a
    clean run's over the samples the device had trained, then the new ones."""
    import pickle
    import signal
    model, samples = make("mlp", "full_residue", n=140)
    (tmp_path / "m.ttm").write_bytes(model)
    pickle.dump(samples[:100], open(tmp_path / "s.pkl", "wb"))
    line = _QemuBehindPty(qemu_elf)
    try:
        env = dict(os.environ, PYTHONPATH=str(Path(tinytrain.__file__).parents[1]))
        host = subprocess.Popen([sys.executable, "-c", _KILLED_HOST, line.path, str(tmp_path / "m.ttm"),
                                 str(tmp_path / "s.pkl")], stdout=subprocess.PIPE, env=env)
        done = 0
        end = time.monotonic() + 120
        while done < 24 and time.monotonic() < end and host.poll() is None:
            out = host.stdout.readline()
            done = int(out) if out.strip() else done
        host.send_signal(signal.SIGKILL)
        host.wait()
        assert done >= 24
        time.sleep(1)  # (mpremote's Ctrl-C must not land inside the frame the host was cut in)
        from mpremote.transport_serial import SerialTransport
        tr = SerialTransport(line.path)
        t0 = time.monotonic()
        tr.enter_raw_repl(soft_reset=False)  # the receiver takes mpremote's Ctrl-C
        steps = int(tr.exec("import tinytrain_stream as T\nprint(T._kept.info()['steps'])"))
        tr.exit_raw_repl()
        tr.close()
        assert time.monotonic() - t0 < 10 and done <= steps <= 100
        t0 = time.monotonic()
        with connect(line.path, model, window=4, max_payload=2048, resume=True) as c:
            started = time.monotonic() - t0
            assert c.resumed == steps
            c.session.train(samples[100:])
            blob = c.session.params_file()
    finally:
        line.close()
    ref = tinytrain.Trainer(model)
    for x, y in samples[:steps] + samples[100:]:
        ref.step(x, y)
    assert started < 10 and blob == saved_blob(ref, tmp_path)
    report(f"qemu, host killed after {done} samples acknowledged ({steps} trained): next session started in "
           f"{started:.1f} s, went on from the device's Trainer")


def test_qemu_frozen_module_and_demo_backend(qemu_elf, monkeypatch):
    """The firmware has tinytrain_stream frozen in; the demo's qemu Device
    answers step/predict/evaluate/info exactly as the simulator's."""
    from tinytrain.demos import backends
    monkeypatch.setenv("TINYTRAIN_QEMU_ELF", str(qemu_elf))
    model, samples = make("cnn", "full", n=12)
    q = targets.QemuProcess(qemu_elf)
    try:
        from mpremote.transport_serial import SerialTransport
        tr = SerialTransport(q.pty)
        tr.enter_raw_repl()
        assert tr.exec("import tinytrain_stream\nprint(tinytrain_stream.VERSION)").strip() == str(DEV.VERSION).encode()
        tr.close()
    finally:
        q.close()
    sim, dev = backends.open_device("sim", model), backends.open_device("qemu", model)
    try:
        assert isinstance(dev, backends.StreamDevice)
        xs = b"".join(x for x, _ in samples)
        labels = [y for _, y in samples]
        for d in (sim, dev):
            d.before = d.evaluate(xs, labels)
            d.losses = f32([d.step(x, y) for x, y in samples[:8]])
            d.preds = [d.predict(x) for x, _ in samples]
            d.after = d.evaluate(xs, labels)
            d.inf = d.info()
        for k in ("before", "losses", "preds", "after", "inf"):
            assert getattr(sim, k) == getattr(dev, k), k
    finally:
        sim.close()
        dev.close()


def test_qemu_flash_stream_pull_push(qemu_elf, tmp_path, monkeypatch, capsys):
    """qemu's /flash, a FAT like the F746's, kept between runs in its image:
    stream --save :p.ttp, then pull (another qemu run) gives the simulator's
    file; a pushed file is what --load :p.ttp continues from; damaged files
    and other models' parameters are refused on the host and on the device."""
    from tinytrain.stream.commands import _board
    from tinytrain.stream.data import ModelIO
    monkeypatch.setenv("TINYTRAIN_QEMU_ELF", str(qemu_elf))
    image = tmp_path / "flash.img"
    monkeypatch.setenv("TINYTRAIN_QEMU_FLASH", str(image))
    model, g, xf, y = _npz(tmp_path, "mlp", n=40)
    m, d = str(tmp_path / "m.ttm"), str(tmp_path / "d.npz")
    samples = [(r.tobytes(), int(v)) for r, v in zip(ModelIO(model).inputs(xf), y)]

    assert cli.main(["stream", "--target", "qemu", "--model", m, "--data", d, "--epochs", "2",
                     "--save", ":p.ttp", "-q"]) == 0
    assert "saved the trained parameters to :p.ttp" in capsys.readouterr().out
    assert image.stat().st_size == 98304  # the default QEMU_FLASH_SIZE, as the F746's /flash
    assert cli.main(["pull", "--target", "qemu", ":p.ttp", str(tmp_path / "local.ttp"), "--model", m]) == 0
    t, _, _ = clean_run(model, samples, epochs=2)
    assert (tmp_path / "local.ttp").read_bytes() == saved_blob(t, tmp_path)

    # another parameter file (the simulator, trained on the samples backwards),
    # pushed over p.ttp: the device continues from it, step for step
    t2 = tinytrain.Trainer(model)
    for x, lab in samples[::-1]:
        t2.step(x, lab)
    other = tmp_path / "other.ttp"
    t2.save(str(other))
    assert cli.main(["push", "--target", "qemu", str(other), ":p.ttp", "--model", m]) == 0
    assert "checksum verified on the device" in capsys.readouterr().out
    res = stream("qemu", model, samples[:25], load=":p.ttp", save=str(tmp_path / "cont.ttp"))
    assert f32(res["losses"]) == f32([t2.step(x, lab) for x, lab in samples[:25]])
    assert (tmp_path / "cont.ttp").read_bytes() == saved_blob(t2, tmp_path)

    # refused on the host: a damaged file, another model's parameters (given --model)
    bad = bytearray(other.read_bytes())
    bad[30] ^= 1
    (tmp_path / "bad.ttp").write_bytes(bytes(bad))
    assert cli.main(["push", "--target", "qemu", str(tmp_path / "bad.ttp"), ":p.ttp"]) == 2
    assert "not a whole tinytrain parameter file" in capsys.readouterr().err
    o_model, o_samples = make("mlp", "full_residue", n=2)  # another training scheme: another model
    to = tinytrain.Trainer(o_model)
    to.step(*o_samples[0])
    to.save(str(tmp_path / "o.ttp"))
    assert cli.main(["push", "--target", "qemu", str(tmp_path / "o.ttp"), ":p.ttp", "--model", m]) == 2
    assert "another model" in capsys.readouterr().err
    # ... and on the device: without --model the host cannot tell, Trainer.load can;
    # a file damaged on the device is neither pulled nor loaded
    assert cli.main(["push", "--target", "qemu", str(tmp_path / "o.ttp"), ":o.ttp"]) == 0
    with _board("qemu") as b:
        b.tr.fs_writefile("bad.ttp", bytes(bad))
    capsys.readouterr()
    base = ["stream", "--target", "qemu", "--model", m, "--data", d, "-q", "--load"]
    assert cli.main(base + [":o.ttp"]) == 2
    assert "ValueError: these parameters belong to another model" in capsys.readouterr().err
    assert cli.main(base + [":bad.ttp"]) == 2
    assert "ValueError" in capsys.readouterr().err
    assert cli.main(["pull", "--target", "qemu", ":bad.ttp", str(tmp_path / "b.ttp")]) == 2
    assert "not a whole tinytrain parameter file" in capsys.readouterr().err and not (tmp_path / "b.ttp").exists()
    # p.ttp is still the pushed file
    assert cli.main(["pull", "--target", "qemu", ":p.ttp", str(tmp_path / "again.ttp")]) == 0
    assert (tmp_path / "again.ttp").read_bytes() == other.read_bytes()


def test_qemu_flash_save_soft_reset_load(qemu_elf, mpdevice, tmp_path):
    """Trainer.save on qemu's /flash (twice: the second renames over the first,
    as FAT does it), mpremote soft-reset, then Trainer.load: the parameters
    come back, the simulator's; a save cut between FAT's remove and rename
    (only p.ttp.tmp left) still loads."""
    model, samples = make("mlp", "full_residue", n=12)
    (tmp_path / "m.ttm").write_bytes(model)
    t, _, _ = clean_run(model, samples, prequential=False)
    params = saved_blob(t, tmp_path)[20:-4]
    data = repr([(x, lab) for x, lab in samples])
    q = mpdevice.Qemu(qemu_elf, icount=False)
    try:
        q.mpremote("cp", str(tmp_path / "m.ttm"), ":m.ttm")
        out = q.mpremote("exec", "import os, tinytrain\nt = tinytrain.Trainer('m.ttm')\n"
                         f"data = {data}\nfor x, y in data[:6]:\n    t.step(x, y)\nt.save('p.ttp')\n"
                         "for x, y in data[6:]:\n    t.step(x, y)\nt.save('p.ttp')\n"
                         "print(os.getcwd(), '/'.join(sorted(os.listdir())), t.params().hex())")
        cwd, files, before = out.split()
        assert cwd == "/flash" and files == "m.ttm/p.ttp" and bytes.fromhex(before) == params
        q.mpremote("soft-reset")
        out = q.mpremote("exec", "import os, tinytrain\nt = tinytrain.Trainer('m.ttm')\nn0 = t.info()['steps']\n"
                         "t.load('p.ttp')\np = t.params()\nprint(n0, t.info()['steps'], p.hex())\n"
                         "os.rename('p.ttp', 'p.ttp.tmp')\nt = tinytrain.Trainer('m.ttm')\nt.load('p.ttp')\n"
                         "print(t.info()['steps'], t.params() == p)")
        n0, steps, after, steps2, same = out.split()
        assert (n0, steps, steps2, same) == ("0", "12", "12", "True") and bytes.fromhex(after) == params
    finally:
        q.close()


if not MICROPY_DIR:  # one skip line for the MicroPython variants, as tests/device does
    del test_unix_port_device_module, test_qemu_stream_bit_identical, test_qemu_frozen_module_and_demo_backend
    del test_qemu_flash_stream_pull_push, test_qemu_flash_save_soft_reset_load
    del test_qemu_lossy_line_both_ways, test_qemu_host_killed_mid_session

    def test_micropython_variants():
        pytest.skip(f"MicroPython stream tests (unix port, qemu): {SKIP_REASON}")
