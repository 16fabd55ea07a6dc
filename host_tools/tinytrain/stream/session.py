"""The host side of a stream session (docs/streaming.md).

A Session sends requests over a Link as sequenced frames and keeps at most
`window` of them unanswered (the device's credit, from its HELLO reply): the
device reads a frame only when it is ready for it, so it is never overrun.
A frame whose reply does not come within the retransmission timeout, or that
the device reports lost (NAK), is sent again with everything after it; the
device applies each sequence number once and answers a repeat with its
cached reply. Replies reach their callbacks in sequence order.

Timeouts adapt: rto follows the round trips of short frames (RFC 6298
style, Karn's rule), per_byte the time a long frame's bytes take to arrive
and be worked on; a frame is given rto + 2 * per_byte * its length, counted
from when it was sent or from the device's last frame, whichever is later.

Frame sizes adapt too: every lost frame (a timeout, a NAK) halves `size`,
the payload bytes a frame may carry, down to MIN_SIZE; four frames in a row
answered at their first sending double it, up to max_payload. New requests
are cut to `size` (records per TRAIN frame, MODEL/PPUT chunks, PGET chunks);
a request made before the line got worse goes as PART frames of `size`,
in order, each answered with the bytes the device holds, and the device
applies it once whole: its content never changes, so a copy of the whole
frame still on the line is harmless.
"""
from __future__ import annotations

import math
import struct
import threading
import time
from collections import OrderedDict
from typing import Callable, Iterable

from . import protocol as P
from .transport import LinkClosed


class StreamError(RuntimeError):
    """The session failed (the message says why)."""


class LinkError(StreamError):
    """No usable reply from the device within the retries."""


class DeviceError(StreamError):
    """The device refused a request: its exception, as it worded it."""


MIN_SIZE = 48       # the smallest frame payload the host cuts to
GROW_AFTER = 4      # frames answered at their first sending before size doubles


class _Out:
    __slots__ = ("frame", "typ", "payload", "seq", "sent", "sent_len", "tries", "have", "cb")

    def __init__(self, typ, seq, payload, cb):
        self.typ, self.seq, self.payload, self.cb = typ, seq, payload, cb
        self.frame = P.encode(typ, seq, payload)
        self.sent = 0.0
        self.sent_len = len(self.frame)
        self.tries = 0
        self.have = 0   # bytes the device holds, when it goes in PART frames


class TrainStats:
    """What the device reported while learning: one loss per sample, in order."""

    def __init__(self):
        self.losses: list = []
        self.hits = 0           # prequential: predicted right before its step
        self.device_total = 0   # the device's own count of samples trained

    @property
    def n(self) -> int:
        return len(self.losses)

    def recent(self, k: int = 100) -> float:
        """Mean loss over the last k samples reported."""
        tail = self.losses[-k:]
        return sum(tail) / len(tail) if tail else math.nan


class Session:
    def __init__(self, link, *, window: int = 4, max_payload: int = 2048, rto: float = 1.0,
                 min_rto: float = 0.05, max_rto: float = 20.0, per_byte: float = 0.0, retries: int = 12,
                 start_seq: int = 0, repl: bool = False, on_event: Callable | None = None,
                 lr: float | None = None, idle_ms: int = 0, ping_s: float = 0.5):
        self.link = link
        self.want_window = max(1, min(P.MAX_WINDOW, window))
        self.want_payload = max_payload
        self.window = 1
        self.max_payload = max_payload
        self.size = max_payload   # what a frame carries now (shrinks on losses)
        self.streak = 0
        self.lr = lr              # for the device's next Trainer (None: the model's)
        self.idle_ms = idle_ms    # the device's silence limit (0: its default)
        self.ping_s = ping_s      # a PING after this long without writing
        self.last_write = 0.0
        self._wlock = threading.Lock()  # a keep-alive thread may PING between two frames
        self.ended = False        # END sent: no more PINGs (the REPL would read them)
        self.rto = rto
        self.min_rto, self.max_rto = min_rto, max_rto
        self.per_byte = per_byte  # seconds a frame byte takes to arrive (and be worked on): learnt
        self.srtt = None
        self.rttvar = 0.0
        self.retries = retries
        self.seq = start_seq & 0xFFFF
        self.deliver = self.seq
        self.out: OrderedDict = OrderedDict()
        self.done: dict = {}
        self.parser = P.Parser()
        self.repl = repl
        self.on_event = on_event
        self.device = None      # the HELLO reply
        self.model = None       # info of the model loaded
        self.counts = {"frames": 0, "resent": 0, "naks": 0, "timeouts": 0, "duplicate_replies": 0, "parts": 0,
                       "smallest_frame": max_payload}
        self.ready = None
        self.progress = 0.0     # when the device last sent a frame

    # -- the reliable pipeline ----------------------------------------------
    def _event(self, what, **kw):
        if self.on_event:
            self.on_event(what, kw)

    def _write(self, frame: bytes) -> None:
        try:
            with self._wlock:
                self.link.write(frame)
                self.last_write = time.monotonic()
        except (LinkClosed, TimeoutError) as e:
            raise LinkError(f"cannot send: {e}{self._said()}") from None

    def _send(self, o: _Out) -> None:
        """Send o whole, or its next PART if it is longer than `size` (only
        the oldest request goes in parts: the device takes them for the
        sequence number it expects)."""
        if len(o.payload) <= self.size and o.have == 0:
            frame = o.frame
        elif o is next(iter(self.out.values())):
            c = max(8, self.size - 5)
            frame = P.encode(P.PART, o.seq, struct.pack("<BHH", o.typ, len(o.payload), o.have)
                             + o.payload[o.have:o.have + c])
            self.counts["parts"] += 1
        else:
            return  # waits until it is the oldest
        o.sent = time.monotonic()
        o.sent_len = len(frame)
        o.tries += 1
        self._write(frame)

    def _kick(self) -> None:
        # requests that waited (too long while an older one was out) go now
        for o in list(self.out.values()):
            if o.tries == 0:
                self._send(o)

    def _lost(self) -> None:
        self.streak = 0
        self.size = max(MIN_SIZE, self.size // 2)
        self.counts["smallest_frame"] = min(self.counts["smallest_frame"], self.size)

    def _answered(self, o: _Out) -> None:
        if o.tries == 1 and o.sent_len >= self.size // 2:
            self.streak += 1
            if self.streak >= GROW_AFTER:
                self.streak = 0
                self.size = min(self.max_payload, self.size * 2)

    def ping(self) -> None:
        """Tell the device the host is alive, if nothing was written for a while
        (the device leaves its receiver after a silence)."""
        if not self.ended and time.monotonic() - self.last_write >= self.ping_s:
            self._write(P.encode(P.PING, 0))

    def keep_alive(self) -> Callable:
        """PING from a thread while the program does other things between
        calls; returns the function that stops it."""
        stop = threading.Event()

        def run():
            while not stop.wait(self.ping_s / 2):
                try:
                    self.ping()
                except StreamError:
                    return
        th = threading.Thread(target=run, name="tinytrain-stream-ping", daemon=True)
        th.start()

        def halt():
            stop.set()
            th.join(2)
        return halt

    def submit(self, typ: int, payload: bytes = b"", cb: Callable | None = None) -> int:
        """Send a request once the window has room; cb(reply payload) runs
        when its reply arrives (in sequence order). Returns its seq."""
        # The window spans from the oldest request whose reply has not been
        # delivered: the device caches the replies of its last `window`
        # frames, so an older one could never be asked for again.
        while (self.seq - self.deliver) & 0xFFFF >= self.window:
            self._pump()
        seq = self.seq
        self.seq = (seq + 1) & 0xFFFF
        o = _Out(typ, seq, bytes(payload), cb)
        self.out[seq] = o
        self.counts["frames"] += 1
        self._send(o)
        return seq

    def drain(self) -> None:
        """Wait for every reply (a barrier)."""
        while self.out:
            self._pump()

    def call(self, typ: int, payload: bytes = b"") -> bytes:
        res = []
        self.submit(typ, payload, res.append)
        self.drain()
        return res[0]

    def _pump(self) -> None:
        # The timer runs from the later of the oldest frame's sending and the
        # last frame the device sent: while replies keep coming the link is
        # alive, and a frame lost on the way gets a NAK, not a wait.
        oldest = next(iter(self.out.values()))
        deadline = self._deadline(oldest)
        self.ping()
        try:
            data = self.link.read(65536, min(max(0.0, deadline - time.monotonic()), 0.25))
        except LinkClosed as e:
            raise LinkError(f"the link closed: {e}{self._said()}") from None
        if data:
            self._feed(data)
        elif self.out and time.monotonic() >= self._deadline(next(iter(self.out.values()))):
            self._timeout(next(iter(self.out.values())))

    def _feed(self, data: bytes) -> None:
        for f in self.parser.feed(data):
            self._frame(f)
        if self.repl:
            self.check_receiver()

    def check_receiver(self) -> None:
        """On a REPL target: raise if the device's text says that serve()
        returned (the raw REPL's end-of-output marks) or failed."""
        noise = self.parser.noise
        if b"\x04\x04>" in noise or (b"\x04>" in noise and b"Traceback" in noise):
            raise LinkError(f"the device's receiver stopped (it returns to its REPL after a silence, or on "
                            f"Ctrl-C){self._said()}")

    def _deadline(self, o: _Out) -> float:
        # the round trip of a small frame, plus twice the time its bytes take
        return max(o.sent, self.progress) + self.rto + 2 * self.per_byte * o.sent_len

    def _timeout(self, oldest: _Out) -> None:
        if oldest.tries > self.retries:
            seq = next(iter(self.out))
            raise LinkError(f"no reply to {P.NAMES.get(oldest.typ, oldest.typ)} (seq {seq}) after "
                            f"{oldest.tries} tries{self._said()}")
        self.counts["timeouts"] += 1
        self.rto = min(self.max_rto, self.rto * 2)  # back off
        self._lost()
        self._resend_all()

    def _resend_all(self) -> None:
        for o in self.out.values():
            if o.tries:
                self.counts["resent"] += 1
            self._send(o)

    def _frame(self, f: P.Frame) -> None:
        now = time.monotonic()
        last, self.progress = self.progress, now
        if f.type == P.NAK:
            self.counts["naks"] += 1
            self._event("nak", seq=f.seq)
            if self.out:
                self._lost()
                self._resend_all()
            return
        if f.type == P.READY:
            self.ready = f.payload
            return
        o = self.out.get(f.seq)
        if f.type == P.PART | P.REPLY:
            if o is not None and o is next(iter(self.out.values())) and len(f.payload) >= 2:
                have = struct.unpack_from("<H", f.payload)[0]
                if o.have < have <= len(o.payload):  # progress (else a repeat: the timer resends)
                    self._time(o, now, last)
                    self._answered(o)
                    o.have, o.tries = have, 0
                    self._send(o)
                    return
            self.counts["duplicate_replies"] += 1
            return
        if o is None or f.type not in (o.typ | P.REPLY, P.ERROR):
            self.counts["duplicate_replies"] += 1
            return
        del self.out[f.seq]
        self._time(o, now, last)
        self._answered(o)
        self._kick()
        self.done[f.seq] = (o, f)
        while self.deliver in self.done:
            o, f = self.done.pop(self.deliver)
            self.deliver = (self.deliver + 1) & 0xFFFF
            if f.type == P.ERROR:
                # what was sent after it is forgotten (its replies are ignored)
                self.out.clear()
                self.done.clear()
                self.deliver = self.seq
                raise DeviceError(f.payload.decode("utf-8", "replace"))
            if o.cb:
                o.cb(f.payload)

    def _time(self, o: _Out, now: float, last: float) -> None:
        """Learn from the reply to o (a whole frame or a PART). Karn: time
        only what was sent once, over the span the timer covers. A new round
        trip also ends the back-off of earlier timeouts."""
        if o.tries == 1:
            r = now - max(o.sent, last)
            if o.sent_len >= 512:  # a long frame: how long its bytes take (and its work)
                self.per_byte = 0.75 * self.per_byte + 0.25 * r / o.sent_len
            else:
                self._rtt(r)

    def _rtt(self, r: float) -> None:
        if self.srtt is None:
            self.srtt, self.rttvar = r, r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        self.rto = min(self.max_rto, max(self.min_rto, 2 * self.srtt, self.srtt + 4 * self.rttvar))

    def _said(self) -> str:
        text = self.parser.text().strip()
        return f"; the device said: {text[-1500:]}" if text else ""

    # -- requests -------------------------------------------------------------
    def wait_ready(self, timeout: float) -> bool:
        """Wait for the device's READY frame (sent once it reads frames)."""
        end = time.monotonic() + timeout
        while self.ready is None and time.monotonic() < end:
            try:
                data = self.link.read(4096, min(0.2, max(0.0, end - time.monotonic())))
            except LinkClosed as e:
                raise LinkError(f"the link closed: {e}{self._said()}") from None
            for f in self.parser.feed(data):
                if f.type == P.READY:
                    self.ready = f.payload
            if self.repl and b"Traceback" in self.parser.noise and b"\x04>" in self.parser.noise:
                raise LinkError(f"the device module did not start:{self._said()}")
        return self.ready is not None

    def hello_payload(self, prequential: bool = True) -> bytes:
        """HELLO: the protocol version and this session's settings (window,
        frame size, the learning rate of a Trainer made from now on, the
        device's silence limit)."""
        lr = math.nan if self.lr is None else float(self.lr)
        return struct.pack(P.HELLO_FMT, P.VERSION, P.F_PREQUENTIAL if prequential else 0, self.want_window,
                           min(self.want_payload, 60000), lr, int(self.idle_ms))

    def hello(self, prequential: bool = True) -> dict:
        r = self.call(P.HELLO, self.hello_payload(prequential))
        version, window, maxp, rp, has_model = struct.unpack_from("<BBHHB", r)
        self.window = max(1, min(self.want_window, window))
        self.max_payload = min(self.want_payload, maxp)
        self.size = min(self.size, self.max_payload)
        self.parser.max_payload = rp + 16
        self.device = {"version": version, "window": window, "max_payload": maxp, "reply_payload": rp}
        if has_model:
            self.model = P.unpack_info(r, 7)
        return dict(self.device, model=self.model)

    def _transfer(self, typ: int, data: bytes) -> bytes:
        last = []
        off = 0
        while True:
            step = max(8, self.size - 8)  # the size now: it follows the line
            self.submit(typ, struct.pack("<II", len(data), off) + data[off:off + step], last.append)
            off += step
            if off >= len(data):
                break
        self.drain()
        return last[-1]

    def load_model(self, data: bytes) -> dict:
        """Send a model file; the device makes its Trainer from it."""
        self.model = P.unpack_info(self._transfer(P.MODEL, bytes(data)))
        return self.model

    def info(self) -> dict:
        d = P.unpack_info(self.call(P.INFO))
        self.model = d
        return d

    def _need_model(self) -> dict:
        if self.model is None:
            raise StreamError("no model on the device: load_model() first")
        return self.model

    def record(self, x, label) -> bytes:
        """One record: the int8 input, then the label (a class as 1 or 2 bytes,
        or for an MSE model its int8 targets)."""
        m = self._need_model()
        xb = bytes(memoryview(x).cast("B")) if not isinstance(x, bytes) else x
        if len(xb) != m["input_bytes"]:
            raise ValueError(f"x has {len(xb)} bytes, the model takes {m['input_bytes']}")
        if m["loss_kind"] == 1:
            lb = bytes(memoryview(label).cast("B")) if not isinstance(label, bytes) else label
            if len(lb) != m["label_bytes"]:
                raise ValueError(f"an MSE target has {m['label_bytes']} bytes, not {len(lb)}")
            return xb + lb
        label = int(label)
        if not 0 <= label < m["classes"]:
            raise ValueError(f"label {label} outside [0, {m['classes']})")
        return xb + label.to_bytes(m["label_bytes"], "little")

    def _frames(self, records: Iterable[bytes]):
        """Payloads of whole records, as many as a frame holds; a record
        larger than a frame goes in pieces."""
        m = self._need_model()
        rs = m["input_bytes"] + m["label_bytes"]
        buf, k = bytearray(), 0
        for rec in records:
            per = min(m["max_records"], P.MAX_RECORDS, self.size // rs)  # the size now
            if per == 0:  # a record longer than a frame: in pieces
                if buf:
                    yield bytes(buf)
                    buf, k = bytearray(), 0
                off = 0
                while off < rs:
                    step = self.size
                    yield bytes(rec[off:off + step])
                    off += step
                continue
            buf += rec
            k += 1
            if k >= per:
                yield bytes(buf)
                buf, k = bytearray(), 0
        if buf:
            yield bytes(buf)

    def train(self, samples: Iterable, stats: TrainStats | None = None,
              on_report: Callable | None = None) -> TrainStats:
        """Stream (x, label) samples to Trainer.step on the device, pipelined;
        the device reports each sample's loss (and, with prequential on,
        whether it predicted it right before learning it)."""
        stats = stats or TrainStats()
        self.send_train(samples, stats, on_report)
        self.drain()
        return stats

    def send_train(self, samples: Iterable, stats: TrainStats, on_report: Callable | None = None) -> None:
        """As train, without waiting for the replies: the samples go now, in
        as few frames as hold them, each frame waiting only for room in the
        window (a live source sends what it has as it comes); `poll` and
        `drain` take the replies."""
        def got(p):
            k, hits, total = struct.unpack_from("<HHI", p)
            stats.losses.extend(struct.unpack_from(f"<{k}f", p, 8))
            stats.hits += hits
            stats.device_total = total
            if on_report:
                on_report(stats)

        for payload in self._frames(self.record(x, y) for x, y in samples):
            self.submit(P.TRAIN, payload, got)

    def poll(self) -> None:
        """Take the replies that have come and resend what is overdue, without waiting."""
        self.ping()
        while self.out:
            try:
                data = self.link.read(65536, 0.0)
            except LinkClosed as e:
                raise LinkError(f"the link closed: {e}{self._said()}") from None
            if not data:
                oldest = next(iter(self.out.values()))
                if time.monotonic() >= self._deadline(oldest):
                    self._timeout(oldest)
                return
            self._feed(data)

    def evaluate(self, samples: Iterable):
        """(hits, predicted classes) over (x, label) samples, on the device."""
        res = [0, []]

        def got(p):
            k, hits = struct.unpack_from("<HH", p)
            res[0] += hits
            res[1].extend(struct.unpack_from(f"<{k}H", p, 4))

        for payload in self._frames(self.record(x, y) for x, y in samples):
            self.submit(P.EVAL, payload, got)
        self.drain()
        return res[0], res[1]

    def predict(self, xs: Iterable) -> list:
        """Classes the device predicts for inputs xs."""
        m = self._need_model()
        dummy = bytes(m["label_bytes"]) if m["loss_kind"] == 1 else 0
        return self.evaluate((x, dummy) for x in xs)[1]

    def stats(self) -> dict:
        """A flush: every request before it is applied; the device's counters."""
        return dict(zip(("trained", "hits", "evaluated", "eval_hits"),
                        struct.unpack(P.STATS_FMT, self.call(P.STATS))))

    def params_file(self) -> bytes:
        """The trained parameters as the file Trainer.save writes (docs/format.md),
        checked: whole, and of the model on the device."""
        from ..trainer import check_params_file
        parts, total, off = [], None, 0
        while total is None or off < total:
            p = self.call(P.PGET, struct.pack("<IH", off, max(8, self.size - 8)))
            total, o = struct.unpack_from("<II", p)
            if o != off:
                raise LinkError(f"parameter chunk at {o}, asked for {off}")
            parts.append(p[8:])
            off += len(p) - 8
            if len(p) == 8 and off < total:
                raise LinkError("empty parameter chunk")
        blob = b"".join(parts)
        m = self._need_model()
        check_params_file(blob, m["model_crc"], m["param_bytes"])
        return blob

    def push_params(self, blob: bytes) -> dict:
        """Load a parameter file's bytes into the device's Trainer (checked there)."""
        self.model = P.unpack_info(self._transfer(P.PPUT, bytes(blob)))
        return self.model

    def device_save(self, path: str) -> dict:
        """Trainer.save(path) on the device's own filesystem (atomic there)."""
        return P.unpack_info(self.call(P.SAVE, path.encode()))

    def device_load(self, path: str) -> dict:
        self.model = P.unpack_info(self.call(P.LOAD, path.encode()))
        return self.model

    def end(self) -> dict:
        """Flush and end: the device answers with its counters and stops serving."""
        self.ended = True
        return dict(zip(("trained", "hits", "evaluated", "eval_hits"),
                        struct.unpack(P.STATS_FMT, self.call(P.END))))
