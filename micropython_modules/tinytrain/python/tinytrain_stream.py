# tinytrain_stream: the device side of `tinytrain stream` (docs/streaming.md).
#
# Runs on MicroPython (frozen into the firmware: boards/*/manifest.py and
# firmware/qemu_manifest.py) and unchanged under CPython, where the host runs
# it in a thread against the simulator's tinytrain.Trainer. The host types
# into the raw REPL only
#
#     import tinytrain_stream as T;T.serve()
#
# then speaks binary frames on stdin/stdout (Ctrl-C is data: kbd_intr(-1));
# the settings come in the HELLO frame. serve() returns to the REPL after a
# silence (idle) or on an interrupt typed into the line (mpremote's "\r\x03"),
# and on a board it keeps its Trainer for the next serve() (`_kept`).
# Frame: a5 c3 | type u8 | seq u16 | len u16 | hchk u8 | payload[len] | crc32 u32
# (little-endian; crc32 over everything before it). Buffers are allocated once
# per session; training a whole record allocates nothing on the heap.
import struct
from array import array

try:
    from binascii import crc32 as _crc
except ImportError:  # a port built without binascii.crc32
    _T = None

    def _crc(data, crc=0):
        global _T
        if _T is None:
            _T = array("I" if array("I", [0]).itemsize == 4 else "L", [0] * 256)
            for i in range(256):
                c = i
                for _ in range(8):
                    c = (c >> 1) ^ (0xEDB88320 & -(c & 1))
                _T[i] = c
        crc ^= 0xFFFFFFFF
        for b in data:
            crc = _T[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF

try:
    from time import ticks_ms, ticks_diff
except ImportError:  # CPython
    import time as _time

    def ticks_ms():
        return int(_time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

VERSION = 2
MAGIC = b"\xa5\xc3"
HDR = 8               # header bytes; the CRC adds 4
MAX_WINDOW = 8
MAX_RECORDS = 32      # records a TRAIN/EVAL frame may complete
# requests (host -> device), sequenced
HELLO, MODEL, TRAIN, EVAL, INFO, PGET, PPUT, SAVE, LOAD, STATS, END = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
PART = 12             # a piece of a request too long for the line: u8 type, u16 total, u16 offset, bytes
REPLY = 0x80          # reply type = request type | REPLY, same seq
READY = 0x7E          # device -> host, unsequenced: serving
NAK = 0x7F            # device -> host, unsequenced: seq = the next one expected
PING = 0x7D           # host -> device, unsequenced, ignored: the host is alive
ERROR = 0xFF          # reply to a request that failed: "Type: message"
F_PREQUENTIAL = 1     # HELLO flag: predict each training sample before its step
# arena_bytes peak_bytes param_bytes steps trained_params input_bytes classes lr
# model_crc loss_kind label_bytes max_records
INFO_FMT = "<IIIIIIIfIBBH"
STATS_FMT = "<IIII"   # trained, prequential hits, evaluated, evaluation hits
HELLO_FMT = "<BBBHfI" # version, flags, window, max_payload, lr (NaN: the model's), idle ms (0: as is)
IDLE_MS = 5000        # serve() returns after this long without a byte between frames
# On a board's heap a received model goes through a file (in the current
# directory, else /flash), removed once the Trainer has read it: its bytes are
# then on the heap once, not twice (the received copy beside the Trainer's
# own) while the Trainer takes its arena. In RAM where no filesystem takes
# it, or where the heap is ample (SPOOL_RATIO times the model free).
SPOOL = ".tinytrain_model.part"
SPOOL_DIRS = ("", "/flash/")
SPOOL_RATIO = 8
MID_MS = 500          # ... and drops a frame whose bytes stop this long
PAUSE_MS = 100        # a byte after a pause this long starts a new header hunt
LOSS_MSE = 1          # info()["loss_kind"] of a regression model (docs/format.md)
_kept = None          # the Trainer left by the last serve() on a board


def hchk(b):
    return b[2] ^ b[3] ^ b[4] ^ b[5] ^ b[6] ^ 0x5A


def head(buf, typ, seq, n):
    """The 8 header bytes of a frame with n payload bytes, into buf[0:8]."""
    buf[0] = 0xA5
    buf[1] = 0xC3
    buf[2] = typ
    buf[3] = seq & 0xFF
    buf[4] = seq >> 8 & 0xFF
    buf[5] = n & 0xFF
    buf[6] = n >> 8
    buf[7] = hchk(buf)


def finish(buf, typ, seq, n):
    """Header and CRC around the n payload bytes already at buf[HDR:]; returns
    the frame's length."""
    head(buf, typ, seq, n)
    struct.pack_into("<I", buf, HDR + n, _crc(memoryview(buf)[0:HDR + n]))
    return HDR + n + 4


def _farray(n):
    try:
        return array("f", bytes(4 * n))  # MicroPython: raw bytes
    except TypeError:                    # CPython
        a = array("f")
        a.frombytes(bytes(4 * n))
        return a


class _StdIO:
    """stdin/stdout of the board as a byte pipe."""

    def __init__(self):
        import sys
        import select
        import micropython
        self.i = sys.stdin.buffer
        self.o = sys.stdout.buffer
        self.p = select.poll()
        self.p.register(sys.stdin, select.POLLIN)
        self.b1 = bytearray(1)
        self.m = micropython
        micropython.kbd_intr(-1)  # 0x03 is data from now on

    def readinto(self, buf, n, ms):
        # byte by byte, each after a poll: stdin's own readinto blocks until
        # it has all n, forever if the host died in the middle of a frame
        b1, rd, p = self.b1, self.i.readinto, self.p
        for i in range(n):
            for _ in p.ipoll(0):
                break
            else:
                if not self.wait(ms):
                    return i
            rd(b1, 1)
            buf[i] = b1[0]
        return n

    def wait(self, ms):
        # spin a while first: a poll with a timeout sleeps a tick (a ms or
        # more) at a time, longer than a byte takes at the line's speed
        p = self.p
        t = ticks_ms()
        while ticks_diff(ticks_ms(), t) < 5:
            for _ in p.ipoll(0):
                return True
        for _ in p.ipoll(ms):
            return True
        return False

    def write(self, b):
        self.o.write(b)

    def poll(self, ms):
        return bool(self.p.poll(ms))

    def close(self):
        self.m.kbd_intr(3)


class _Slot:
    # one cached reply: resent as is when its request comes again
    def __init__(self, rp):
        self.seq = -1
        self.n = 0          # frame bytes (general) or records (train)
        self.train = False
        self.g = bytearray(HDR + rp + 4)
        self.th = bytearray(HDR + 8)
        self.tc = bytearray(4)
        self.tl = None
        self.tv = None


class _Stop(Exception):
    """serve() returns to the REPL: the line was silent, or an interrupt came."""


class Server:
    def __init__(self, io, window=4, max_payload=2048, reply_payload=512, lr=None, idle=IDLE_MS):
        self.io = io
        self.rp = max(64, reply_payload)
        self.lr = lr
        self.idle = idle if idle is None else max(1, idle)  # None: wait for ever (a host's thread)
        self.t = None
        self.small = bytearray(HDR + 8 + 4)
        self.buffers(window, max_payload)
        self.expect = -1
        self.aseq = -1     # the request being gathered from PART frames
        self.cr = False    # the last noise byte was a \r after a pause
        self.hist = 0      # the last 4 noise bytes
        self.nak = False
        self.applied = 0
        self.preq = True
        self.part = None   # model or parameter file being received
        self.spool = None  # or the file a model is being received into (SPOOL)
        self.spool_path = SPOOL
        self.blob = None   # parameter file being sent
        self.trained = self.hits = self.evaluated = self.ehits = 0
        self.fill = 0
        self.fill_type = 0

    def buffers(self, window, max_payload):
        """(Re)make the buffers of a window and a frame size (serve(), HELLO)."""
        self.w = max(1, min(MAX_WINDOW, window))
        self.maxp = max(64, min(60000, max_payload))
        self.rx = None
        self.slots = None
        self.abuf = None
        self.rx = bytearray(HDR + self.maxp + 4)
        self.rxv = memoryview(self.rx)
        self.rxb = [self.rxv[i:i + 1] for i in range(HDR)]
        self.rx8 = self.rxv[HDR:]
        self.slots = [_Slot(self.rp) for _ in range(self.w)]
        if self.t is not None:
            self.views()

    # -- frames --------------------------------------------------------
    def _prefix(self, k):
        # can rx[0:k] begin a frame header?
        rx = self.rx
        return rx[0] == 0xA5 and (k < 2 or rx[1] == 0xC3) and \
            (k < HDR or (rx[7] == hchk(rx) and (rx[5] | rx[6] << 8) <= self.maxp))

    def _noise(self, c, paused):
        # A byte outside any frame. Ctrl-C after a pause (mpremote sends
        # "\r\x03" before entering the raw REPL; a user presses Ctrl-C) ends
        # serve() at once, so that what follows it reaches the REPL. Inside a
        # stream of frames bytes come without pauses, so a 0x03 of a damaged
        # frame does not count. When the device was busy as the interrupt
        # came there was no pause: then mpremote's whole "\r\x03\r\x01"
        # (Ctrl-C, Ctrl-A: enter the raw REPL) ends serve(), which answers
        # with the raw REPL's banner as the REPL would have.
        if c == 3 and (paused or self.cr):
            raise _Stop("interrupt")
        self.cr = c == 13 and paused
        self.hist = (self.hist << 8 | c) & 0xFFFFFFFF
        if self.hist == 0x0D030D01:
            self.io.write(b"raw REPL; CTRL-B to exit\r\n>")
            raise _Stop("interrupt")

    def read_frame(self):
        """(type, seq, n) of the next frame whose CRC holds, or None after a
        damaged one or one whose bytes stopped; resynchronises on the magic
        bytes. Raises _Stop after `idle` ms without a byte, or on an interrupt."""
        rx, io, rxb = self.rx, self.io, self.rxb
        k = 0
        p0 = False  # rx[0] came after a pause
        while k < HDR:
            t0 = ticks_ms()
            if io.readinto(rxb[k], 1, self.idle) != 1:
                raise _Stop("idle")
            paused = ticks_diff(ticks_ms(), t0) >= PAUSE_MS
            if paused and k:  # what came before was a header cut short
                rx[0] = rx[k]
                k = 0
            if k == 0:
                p0 = paused
            k += 1
            while k and not self._prefix(k):
                self._noise(rx[0], p0)
                p0 = False
                for i in range(k - 1):
                    rx[i] = rx[i + 1]
                k -= 1
        self.cr = False
        self.hist = 0
        n = rx[5] | rx[6] << 8
        if io.readinto(self.rx8, n + 4, MID_MS if self.idle is None else min(self.idle, MID_MS)) != n + 4:
            return None
        if _crc(self.rxv[0:HDR + n]) != struct.unpack_from("<I", rx, HDR + n)[0]:
            return None
        return rx[2], rx[3] | rx[4] << 8, n

    def send_small(self, typ, seq, payload):
        b = self.small
        b[HDR:HDR + len(payload)] = payload
        self.io.write(memoryview(b)[0:finish(b, typ, seq, len(payload))])

    def send_slot(self, s):
        if s.train:
            lv = memoryview(s.tl)[0:s.n]
            c = _crc(lv, _crc(s.th))
            struct.pack_into("<I", s.tc, 0, c)
            self.io.write(s.th)
            self.io.write(lv)
            self.io.write(s.tc)
        else:
            self.io.write(memoryview(s.g)[0:s.n])

    # -- the loop ------------------------------------------------------
    def run(self, model=None):
        if model is not None:
            self.load_model(model)
        self.send_small(READY, 0, struct.pack("<BHB", VERSION, self.maxp, self.w))
        while True:
            f = self.read_frame()
            if f is None:
                self.send_nak()
                continue
            typ, seq, n = f
            if typ == PING:
                continue
            if typ == PART:
                typ, n = self.gather(seq, n)
                if typ < 0:
                    continue
            elif typ == HELLO and not self.cached(seq):
                self.expect = seq  # a new session: its first seq
                self.fill = 0
            if seq == self.expect:
                s = self.apply(typ, seq, n)
                if typ == END:
                    self.linger(s)
                    return
            elif self.cached(seq):
                self.send_slot(self.cached(seq))
            else:
                self.send_nak()

    def apply(self, typ, seq, n):
        s = self.slots[self.applied % self.w]
        self.applied += 1
        self.expect = (seq + 1) & 0xFFFF
        self.nak = False
        self.aseq = -1
        s.seq = seq
        self.handle(s, typ, seq, n)
        self.send_slot(s)
        return s

    def gather(self, seq, n):
        """A PART frame: a piece of request seq, sent when the whole would not
        pass the line. The pieces come in order into a buffer made when the
        first one does; the whole request is then applied as if it had come
        in one frame. Returns (type, length) of the request once whole, else
        (-1, 0) after answering with the bytes held (PART | REPLY, u16)."""
        if seq != self.expect:
            return 0, 0  # applied already (its reply again), or ahead (NAK)
        if n < 5:
            return -1, 0
        typ, total, off = struct.unpack_from("<BHH", self.rx, HDR)
        if total > self.maxp or typ == PART:
            return -1, 0
        if off == 0 and (self.aseq != seq or self.atyp != typ or self.atot != total):
            if self.abuf is None:
                self.abuf = bytearray(self.maxp)
            self.aseq, self.atyp, self.atot, self.ahave = seq, typ, total, 0
        if self.aseq == seq and self.atyp == typ and self.atot == total and off == self.ahave \
                and off + n - 5 <= total:
            self.abuf[off:off + n - 5] = self.rxv[HDR + 5:HDR + n]
            self.ahave += n - 5
            if self.ahave == total:
                self.rx[HDR:HDR + total] = memoryview(self.abuf)[0:total]
                return typ, total
        self.send_small(PART | REPLY, seq, struct.pack("<H", self.ahave if self.aseq == seq else 0))
        return -1, 0

    def cached(self, seq):
        if (self.expect - 1 - seq) & 0xFFFF < self.w:
            for s in self.slots:
                if s.seq == seq:
                    return s
        return None

    def send_nak(self):
        if not self.nak and self.expect >= 0:
            self.nak = True
            self.send_small(NAK, self.expect, b"")

    def linger(self, s, ms=400):
        # The END reply may be lost: answer a repeated END until the line is quiet.
        end = ticks_ms() + ms
        while ticks_diff(end, ticks_ms()) > 0:
            if not self.io.poll(max(1, ticks_diff(end, ticks_ms()))):
                break
            f = self.read_frame()
            if f is not None and f[1] == s.seq:
                self.send_slot(s)
                end = ticks_ms() + ms

    # -- requests ------------------------------------------------------
    def handle(self, s, typ, seq, n):
        s.train = False
        try:
            if typ == TRAIN or typ == EVAL:
                m = self.records(s, typ, n)
                if typ == TRAIN:
                    s.train = True
                    s.n = m
                    struct.pack_into("<HHI", s.th, HDR, m, self.khits, self.trained)
                    head(s.th, TRAIN | REPLY, seq, 8 + 4 * m)
                    return
                m = 4 + 2 * m
            elif self.fill:
                raise ValueError("a record is incomplete: %d of %d bytes" % (self.fill, self.rs))
            elif typ == HELLO:
                if self.rx[HDR] != VERSION:
                    raise ValueError("protocol version %d, device speaks %d" % (self.rx[HDR], VERSION))
                self.preq = bool(self.rx[HDR + 1] & F_PREQUENTIAL)
                if n >= struct.calcsize(HELLO_FMT):
                    _, _, w, mp, lr, idle = struct.unpack_from(HELLO_FMT, self.rx, HDR)
                    self.lr = None if lr != lr else lr  # NaN: the model's own
                    if idle:
                        self.idle = idle
                    if max(1, min(MAX_WINDOW, w)) != self.w or max(64, min(60000, mp)) != self.maxp:
                        self.buffers(w, mp)  # (the reply still goes out of the old slot s)
                struct.pack_into("<BBHHB", s.g, HDR, VERSION, self.w, self.maxp, self.rp, self.t is not None)
                m = 7 + (self.pack_info(s.g, HDR + 7) if self.t is not None else 0)
            elif typ == MODEL or typ == PPUT:
                m = self.receive(s, typ, n)
            elif typ == INFO:
                m = self.pack_info(s.g, HDR)
            elif typ == PGET:  # u32 offset[, u16 most bytes wanted]
                m = self.send_params(s, struct.unpack_from("<I", self.rx, HDR)[0],
                                     struct.unpack_from("<H", self.rx, HDR + 4)[0] if n >= 6 else self.rp)
            elif typ == SAVE or typ == LOAD:
                path = str(bytes(self.rxv[HDR:HDR + n]), "utf-8")
                if typ == SAVE:
                    self.trainer().save(path)
                else:
                    self.trainer().load(path)
                m = self.pack_info(s.g, HDR)
            elif typ == STATS or typ == END:
                struct.pack_into(STATS_FMT, s.g, HDR, self.trained, self.hits, self.evaluated, self.ehits)
                m = 16
            else:
                raise ValueError("unknown request type %d" % typ)
            s.n = finish(s.g, typ | REPLY, seq, m)
        except Exception as e:  # the host gets the error; the device keeps serving
            s.train = False
            msg = (type(e).__name__ + ": " + str(e)).encode()[:self.rp]
            s.g[HDR:HDR + len(msg)] = msg
            s.n = finish(s.g, ERROR, seq, len(msg))

    def trainer(self):
        if self.t is None:
            raise ValueError("no model loaded")
        return self.t

    def records(self, s, typ, n):
        """Train on (or evaluate) the records in the payload; a record may be
        split over frames. Returns the records completed."""
        t = self.trainer()
        if self.fill and self.fill_type != typ:
            raise ValueError("a record is incomplete: %d of %d bytes" % (self.fill, self.rs))
        self.fill_type = typ
        rs, ib, rx = self.rs, self.ib, self.rx
        pos = k = hits = 0
        while pos < n:
            if self.fill == 0 and n - pos >= rs and pos // rs < self.kx and pos % rs == 0:
                i = pos // rs
                x = self.xv[i]
                o = HDR + pos + ib
                pos += rs
                lab = self.lv[i] if self.mse else (rx[o] if self.lb == 1 else rx[o] | rx[o + 1] << 8)
            else:
                c = min(rs - self.fill, n - pos)
                self.rec[self.fill:self.fill + c] = self.rxv[HDR + pos:HDR + pos + c]
                self.fill += c
                pos += c
                if self.fill < rs:
                    break
                self.fill = 0
                x = self.recx
                lab = self.recl if self.mse else (self.rec[ib] if self.lb == 1 else self.rec[ib] | self.rec[ib + 1] << 8)
            if k >= self.kmax:
                raise ValueError("more than %d records completed in one frame" % self.kmax)
            if typ == TRAIN:
                if self.preq and not self.mse:
                    hits += t.predict(x) == lab
                t.step(x, lab, out=s.tv[k])
                self.trained += 1
            else:
                c = t.predict(x)
                if not self.mse:
                    hits += c == lab
                struct.pack_into("<H", s.g, HDR + 4 + 2 * k, c)
                self.evaluated += 1
            k += 1
        if typ == TRAIN:
            self.hits += hits
        else:
            self.ehits += hits
            struct.pack_into("<HH", s.g, HDR, k, hits)
        self.khits = hits
        return k

    def receive(self, s, typ, n):
        if n < 8:
            raise ValueError("transfer frame too short")
        total, off = struct.unpack_from("<II", self.rx, HDR)
        if off == 0:
            self.part = None
            self.close_spool()
            if typ == MODEL:
                self.t = None
            import gc
            gc.collect()
            if typ == MODEL and hasattr(gc, "mem_free") and SPOOL_RATIO * total > gc.mem_free():  # (MicroPython)
                self.spool = self.open_spool(total)
            if self.spool is None:
                try:
                    self.part = bytearray(total)
                except MemoryError:
                    raise MemoryError("%d bytes in one piece for the %s; the heap has %d free: free memory on "
                                      "the device or send a smaller model" % (total, "model" if typ == MODEL
                                                                                else "parameter file",
                                                                                gc.mem_free()))
        f, p = self.spool, self.part
        if (f is None and (p is None or len(p) != total)) or (f is not None and self.spool_total != total) \
                or off + n - 8 > total:
            raise ValueError("transfer out of order")
        if f is not None:
            try:
                f.seek(off)
                f.write(self.rxv[HDR + 8:HDR + n])
            except OSError as e:
                self.close_spool()
                raise OSError("the model (%d bytes) could not be written to %s: %s" % (total, self.spool_path, e))
        else:
            p[off:off + n - 8] = self.rxv[HDR + 8:HDR + n]
        if off + n - 8 < total:
            struct.pack_into("<I", s.g, HDR, off + n - 8)
            return 4
        self.part = None
        if f is not None:
            f.close()
            self.spool = None
            try:
                self.load_model(self.spool_path)  # the Trainer reads the file into one immutable copy
            finally:
                self.remove_spool()
        elif typ == MODEL:
            self.load_model(p)
        else:
            self.trainer().load(p)
        del p
        import gc
        gc.collect()
        return self.pack_info(s.g, HDR)

    def open_spool(self, total):
        """SPOOL opened for writing in the first of SPOOL_DIRS that takes it, or None."""
        for d in SPOOL_DIRS:
            self.spool_path = d + SPOOL
            self.remove_spool()
            try:
                f = open(self.spool_path, "wb")
            except OSError:
                continue
            self.spool_total = total
            return f
        return None

    def close_spool(self):
        if self.spool is not None:
            try:
                self.spool.close()
            except OSError:
                pass
            self.spool = None
            self.remove_spool()

    def remove_spool(self):
        try:
            import os
        except ImportError:
            import uos as os
        try:
            os.remove(self.spool_path)
        except OSError:
            pass

    def load_model(self, model):
        """A Trainer of model: its bytes, or a file's path (SPOOL)."""
        import gc
        import tinytrain
        self.t = None
        gc.collect()  # the Trainer's copy and arena want large free blocks, not the frames' leftovers
        try:
            t = tinytrain.Trainer(model, lr=self.lr)
        except MemoryError as e:
            raise MemoryError("%s (a Trainer of the model needs its own copy and its arena; %d bytes were free%s)"
                              % (e, gc.mem_free(), "" if isinstance(model, str) else " beside the received copy"))
        self.adopt(t)

    def adopt(self, t):
        """Serve Trainer t; its info() names the model (crc) and its loss."""
        info = t.info()
        self.t, self.crc, self.mse = t, info["model_crc"], info["loss_kind"] == LOSS_MSE
        self.ib = info["input_bytes"]
        self.ncls = info["classes"]
        self.lb = self.ncls if self.mse else (1 if self.ncls <= 256 else 2)
        self.rs = self.ib + self.lb
        self.views()

    def views(self):
        # the buffers that depend on the model and the frame size
        rs, ib = self.rs, self.ib
        self.kx = kx = min(MAX_RECORDS, self.maxp // rs)
        self.kmax = min(MAX_RECORDS, self.maxp // rs + 2, (self.rp - 4) // 2)
        self.fill = 0
        rxv = self.rxv
        self.xv = [rxv[HDR + i * rs:HDR + i * rs + ib] for i in range(kx)]
        self.lv = [rxv[HDR + i * rs + ib:HDR + (i + 1) * rs] for i in range(kx)] if self.mse else None
        self.rec = bytearray(rs)
        self.recx = memoryview(self.rec)[0:ib]
        self.recl = memoryview(self.rec)[ib:] if self.mse else None
        for s in self.slots:
            s.tl = _farray(self.kmax)
            s.tv = [memoryview(s.tl)[i:i + 1] for i in range(self.kmax)]

    def pack_info(self, b, off):
        d = self.trainer().info()
        struct.pack_into(INFO_FMT, b, off, d["arena_bytes"], d["peak_bytes"], d["param_bytes"], d["steps"],
                         d["trained_params"], d["input_bytes"], d["classes"], d["lr"], self.crc,
                         1 if self.mse else 0, self.lb, self.kmax)
        return struct.calcsize(INFO_FMT)

    def send_params(self, s, off, most):
        # the parameter file of Trainer.save (docs/format.md), in chunks
        if off == 0 or self.blob is None:
            self.blob = None
            self.blob = self.trainer().params_file()  # the core writes the file
        b = self.blob
        c = max(0, min(self.rp - 8, most, len(b) - off))
        struct.pack_into("<II", s.g, HDR, len(b), off)
        s.g[HDR + 8:HDR + 8 + c] = memoryview(b)[off:off + c]
        if off + c >= len(b):
            self.blob = None
        return 8 + c


def serve(model=None, window=4, max_payload=2048, reply_payload=512, lr=None, io=None, idle=None,
          keep=None):
    """Serve one session on stdin/stdout (or io: readinto(buf, n, ms) -> bytes
    read, fewer if none came for ms; write(b), poll(ms), close()). model: a
    path, bytes, or None to receive it (or to go on with the kept Trainer).
    Returns (trained, hits, evaluated, evaluation hits) after END, after
    `idle` ms without a byte (default: IDLE_MS on stdin/stdout; with io, no
    limit: the host's end of it closes), or on an interrupt. keep (default: on
    stdin/stdout, i.e. a board): the Trainer outlives serve() in RAM, and the
    next serve() starts with it."""
    global _kept
    keep = io is None if keep is None else keep
    idle = (IDLE_MS if io is None else None) if idle is None else idle
    io = io or _StdIO()
    s = Server(io, window, max_payload, reply_payload, lr, idle)
    if keep and _kept is not None and model is None:
        s.adopt(_kept)
    _kept = None  # (a new model must not find the old Trainer still held)
    try:
        s.run(model)
    except (EOFError, _Stop):
        pass
    finally:
        s.close_spool()  # a model cut off mid-transfer
        io.close()
        if keep and s.t is not None:
            _kept = s.t
    return s.trained, s.hits, s.evaluated, s.ehits
