"""Open a stream session on a target (docs/streaming.md).

    sim          the device module in a thread of this process, against the
                 simulator (tinytrain.Trainer), over in-process byte queues
    qemu         the Cortex-M7 firmware (build/qemu-MPS2_AN500/firmware.elf,
                 `make qemu`) under qemu-system-arm, its UART on a pty; its
                 /flash is kept between runs in flash.img beside the firmware
                 ($TINYTRAIN_QEMU_FLASH)
    PORT         a board running MicroPython with tinytrain: /dev/ttyACM0,
                 COM3, serial:PORT, or the pty `make qemu-pty` printed
    unix[:EXE]   MicroPython's unix port (EXE, default `micropython` on the
                 PATH) as a child process, the receiver on its stdin/stdout:
                 tinytrain built in (`make unix`) or installed beside it
                 (`tinytrain install --target unix:EXE`)

On the unix port the host starts the receiver with `EXE -c`. On qemu and boards the host interrupts whatever runs, enters the raw REPL,
types one short line that starts tinytrain_stream.serve() (frozen into the
firmware; sent as source through mpremote when a firmware lacks it), waits
for its READY frame (retrying the whole start when a byte was lost), then
speaks frames on the same port; the settings go in the HELLO frame.
"""
from __future__ import annotations

import atexit
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import protocol as P
from .session import LinkError, Session, StreamError
from .transport import FdLink, SerialLink, loopback_pair
from .. import modelfile as mf

ROOT = Path(__file__).resolve().parents[3]
QEMU_ELF = ROOT / "build" / "qemu-MPS2_AN500" / "firmware.elf"

# Per target: window (frames in flight), max_payload (bytes per frame),
# initial retransmission timeout (s). A UART without flow control gets
# stop-and-wait unless told otherwise.
DEFAULTS = {
    "sim": dict(window=4, max_payload=2048, rto=0.5, min_rto=0.05, per_byte=0.0),
    # pipes to a local process: nothing is lost, only scheduling delays
    "unix": dict(window=4, max_payload=2048, rto=1.0, min_rto=0.2, per_byte=0.0),
    # qemu's UART takes 6-20 KB/s from its pty
    "qemu": dict(window=4, max_payload=4096, rto=1.0, min_rto=0.3, per_byte=1 / 4000),
    # 115200 baud: 11.5 KB/s (USB CDC is faster; the estimate adapts)
    "serial": dict(window=1, max_payload=2048, rto=1.0, min_rto=0.3, per_byte=1 / 10000),
}


def target_kind(target: str) -> str:
    t = str(target)
    if t == "sim":
        return "sim"
    if t == "qemu":
        return "qemu"
    if t == "unix" or t.startswith("unix:"):
        return "unix"
    if t.startswith("serial:") or t.startswith("/dev/") or re.fullmatch(r"(?i)com\d+", t):
        return "serial"
    raise ValueError(f"unknown target {t!r}; targets: sim, qemu, unix[:EXE], a serial port (/dev/ttyACM0, COM3, "
                     "serial:PORT)")


def serial_port(target: str) -> str:
    return target[len("serial:"):] if target.startswith("serial:") else target


def unix_exe(target: str) -> str:
    """The unix port's executable of a unix[:EXE] target (a path, or a name on the PATH)."""
    exe = target[len("unix:"):] if target.startswith("unix:") else "micropython"
    return shutil.which(exe) or exe


def qemu_firmware() -> Path:
    return Path(os.environ.get("TINYTRAIN_QEMU_ELF") or QEMU_ELF)


def check(target: str) -> None:
    """Raise now, with one line saying what is missing, if target cannot be opened."""
    kind = target_kind(target)
    if kind == "qemu":
        elf = qemu_firmware()
        if not elf.exists():
            how = ("set MICROPY_DIR to a MicroPython v1.28.0 tree and run `make qemu`"
                   if not os.environ.get("MICROPY_DIR") else "run `make qemu`")
            raise StreamError(f"target 'qemu' needs the qemu firmware {elf}: {how} (docs/micropython.md)")
        if shutil.which("qemu-system-arm") is None:
            raise StreamError("target 'qemu' needs qemu-system-arm (Debian: apt install qemu-system-arm)")
    if kind == "unix":
        exe = unix_exe(target)
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            raise StreamError(f"target {target!r}: no MicroPython unix port {exe!r} (build one with "
                              "`make unix` or `make stock STOCK=unix`, docs/micropython.md)")
    if kind in ("qemu", "serial"):
        try:
            import mpremote.transport_serial  # noqa: F401
        except ImportError:
            raise StreamError(f"target {target!r} needs mpremote and pyserial: pip install mpremote") from None
    if kind == "serial" and serial_port(target).startswith("/dev/") and not os.path.exists(serial_port(target)):
        raise StreamError(f"no serial port {serial_port(target)}")


class Connection:
    """A Session on a target, and what keeps it running (a thread, qemu, a port)."""

    def __init__(self, session: Session, target: str, closer=None):
        self.session = session
        self.target = target
        self._closer = closer
        self.ended = None
        self.resumed = None  # the steps of the device's Trainer that this session went on with

    def end(self) -> dict:
        if self.ended is None:
            self.ended = self.session.end()
        return self.ended

    def close(self) -> None:
        try:
            if self.ended is None:
                self.session.retries = min(self.session.retries, 3)
                self.end()
        except Exception:
            pass
        finally:
            if self._closer:
                closer, self._closer = self._closer, None
                closer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect(target: str, model=None, *, window=None, max_payload=None, rto=None, lr=None,
            prequential: bool = True, start_seq: int = 0, retries: int = 12, on_event=None,
            resume: bool = False, idle_ms: int = 0) -> Connection:
    """A Connection to target with model loaded: model is the bytes of a .ttm
    (sent over the stream), a path on the device ':path' (its own file), or
    None (load one later with session.load_model). resume: if the device
    still holds a Trainer of this model (and lr) from an earlier session
    (a board keeps it in RAM after its receiver returns), go on with it
    instead of sending the model (conn.resumed: its steps). idle_ms: the
    device leaves its receiver after this long without a byte (0: its
    default, tinytrain_stream.IDLE_MS)."""
    kind = target_kind(target)
    check(target)
    opt = dict(DEFAULTS[kind])
    for k, v in (("window", window), ("max_payload", max_payload), ("rto", rto)):
        if v is not None:
            opt[k] = v
    device_model = None
    if isinstance(model, str):
        if not model.startswith(":"):
            raise ValueError("a model given as a string is a path on the device, ':path'; pass a host "
                             "file's bytes instead")
        device_model, model = model[1:], None
    mk = dict(window=opt["window"], max_payload=opt["max_payload"], rto=opt["rto"], min_rto=opt["min_rto"],
              per_byte=opt["per_byte"], start_seq=start_seq, retries=retries, on_event=on_event, lr=lr,
              idle_ms=idle_ms)
    serve_kw = dict(model=device_model, window=opt["window"], max_payload=opt["max_payload"], lr=lr)
    if kind == "sim":
        conn = _connect_sim(target, serve_kw, mk)
    elif kind == "unix":
        conn = _connect_unix(unix_exe(target), target, serve_kw, mk)
    elif kind == "qemu":
        q = QemuProcess(qemu_firmware(), flash=qemu_flash_image())
        try:
            conn = _connect_repl(q.pty, 115200, target, serve_kw, mk, extra_close=q.close)
        except BaseException:
            q.close()
            raise
    else:
        conn = _connect_repl(serial_port(target), 115200, target, serve_kw, mk)
    try:
        conn.session.hello(prequential)
        if model is not None:
            if resume and _same_trainer(conn.session.model, bytes(model), lr):
                conn.resumed = conn.session.model["steps"]
            else:
                conn.session.load_model(bytes(model))
    except BaseException:
        conn.close()
        raise
    return conn


def _same_trainer(info, model: bytes, lr) -> bool:
    """Does the device's Trainer (its INFO) belong to this model and lr?"""
    if info is None or len(model) < mf.HEADER_SIZE or info["model_crc"] != mf.Header.unpack(model).crc32:
        return False
    if lr is None:
        from ..trainer import Trainer
        lr = Trainer(model).info()["lr"]
    return struct.pack("<f", float(lr)) == struct.pack("<f", info["lr"])


def start_sim_device(io, **serve_kw) -> threading.Thread:
    """The device module serving io in a thread (the simulator behind it)."""
    mod = P.device_module()
    th = threading.Thread(target=mod.serve, kwargs=dict(serve_kw, io=io), name="tinytrain-sim-device",
                          daemon=True)
    th.start()
    return th


def _connect_sim(target, serve_kw, mk) -> Connection:
    host, dev = loopback_pair()
    th = start_sim_device(dev, **serve_kw)
    s = Session(host, **mk)

    def close():
        host.close()
        th.join(5)

    if not s.wait_ready(10):
        close()
        raise LinkError("the simulated device did not start")
    return Connection(s, target, close)


# -- MicroPython's unix port: a child process on pipes -------------------------
def _connect_unix(exe, target, serve_kw, mk) -> Connection:
    m = serve_kw["model"]
    code = (f"import tinytrain_stream as T\nT.serve({'None' if m is None else repr(m)}, "
            f"window={serve_kw['window']}, max_payload={serve_kw['max_payload']})\n")
    try:
        proc = subprocess.Popen([exe, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except OSError as e:
        raise StreamError(f"cannot start {exe}: {e}") from None
    s = Session(FdLink(proc.stdout.fileno(), raw=False, wfd=proc.stdin.fileno()), **mk)

    def close():
        try:
            proc.stdin.close()
            proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            proc.stdout.close()
            proc.stderr.close()

    try:
        ready = s.wait_ready(10)
    except LinkError:
        ready = False
    if not ready:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        # (MicroPython prints an uncaught exception on stdout: the parser's noise)
        said = (bytes(s.parser.noise) + proc.stdout.read() + proc.stderr.read()).decode(errors="replace")
        close()
        hint = (f": install it with `tinytrain install --target {target}`"
                if "no module named 'tinytrain" in said else "")
        tail = said.strip().splitlines()[-1] if said.strip() else "no READY frame"
        raise LinkError(f"{exe} did not start tinytrain_stream.serve() ({tail}){hint}")
    return Connection(s, target, close)


# -- MicroPython over a serial port (boards, qemu) ---------------------------
BANNER = b"raw REPL; CTRL-B to exit\r\n>"
START_TRIES = 8


def _read_for(link, seconds: float, want=None, into=None) -> bool:
    """Read for up to `seconds` (into `into`); True as soon as `want` came."""
    buf = bytearray() if into is None else into
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        buf += link.read(4096, min(0.1, max(0.0, end - time.monotonic())))
        if want is not None and want in buf:
            return True
    return False


def _start_receiver(link, s: Session, call: bytes, port) -> str:
    """Start serve() on the board at the other end of link, bounded in time,
    through a line that may lose bytes. What is typed into the raw REPL is
    one short line; a wrong byte in it makes an error or nothing at all,
    and only the receiver's READY frame (checked by its CRC) counts. Each
    try interrupts first: "\r\x03" after a pause ends a receiver left running
    (and a running program), "\r\x01" enters the raw REPL, whose banner must
    come back. Returns "ok", or "no module" when the firmware lacks it."""
    said = bytearray()
    for _ in range(START_TRIES):
        time.sleep(0.15)  # the pause that makes the receiver take Ctrl-C as one
        link.write(b"\r\x03")
        _read_for(link, 0.3, into=said)
        link.write(b"\r\x01")
        if not _read_for(link, 3.0, BANNER, said):
            continue
        s.parser = P.Parser(s.parser.max_payload)
        s.ready = None
        link.write(call + b"\x04")
        try:
            if s.wait_ready(4):
                return "ok"
        except LinkError:
            if b"no module named 'tinytrain_stream'" in s.parser.noise:
                return "no module"
        said += s.parser.noise
        del said[:-2000]
    text = bytes(c for c in said if c in (9, 10, 13) or 32 <= c < 127).decode().strip()
    raise LinkError(f"{port}: the device did not start tinytrain_stream.serve() in {START_TRIES} tries (no raw "
                    f"REPL banner or no READY frame)" + (f"; it said: {text[-600:]}" if text else ": it sent "
                                                          "nothing"))


def _connect_repl(port, baudrate, target, serve_kw, mk, extra_close=None) -> Connection:
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    try:
        tr = SerialTransport(port, baudrate=baudrate)
    except Exception as e:  # mpremote wraps pyserial's errors
        raise StreamError(f"cannot open {port}: {e}") from None
    closed = []

    def close():
        if closed:
            return
        closed.append(1)
        try:
            halt_pings()
            _leave_repl(tr, link, s)
        finally:
            try:
                tr.close()
            finally:
                if extra_close:
                    extra_close()

    link = SerialLink(tr.serial)
    s = Session(link, repl=True, **mk)
    m = serve_kw["model"]
    args = "" if m is None else repr(m)
    try:
        if _start_receiver(link, s, f"import tinytrain_stream as T;T.serve({args})".encode(), port) != "ok":
            # a firmware without the frozen module: its source, through mpremote's raw REPL
            tr.enter_raw_repl(soft_reset=False)
            tr.exec(P.DEVICE_SOURCE.read_bytes())
            tr.exec_raw_no_follow(f"serve({args})")
            if not s.wait_ready(15):
                raise LinkError(f"the device did not start tinytrain_stream.serve(){s._said()}")
        s.parser = P.Parser(s.parser.max_payload)  # the REPL's text before READY is not the receiver's
    except TransportError as e:
        halt_pings = lambda: None  # noqa: E731
        close()
        raise StreamError(f"{port}: {e}") from None
    except BaseException:
        halt_pings = lambda: None  # noqa: E731
        close()
        raise
    halt_pings = s.keep_alive()  # the device leaves after a silence: not while this program pauses
    return Connection(s, target, close)


def _leave_repl(tr, link, s) -> None:
    """After END: wait for serve() to return (the raw REPL's end-of-output
    marker), then back to the friendly REPL. A receiver still running (END
    not delivered) takes the Ctrl-C after the pause."""
    end = time.monotonic() + 2
    while b"\x04>" not in s.parser.noise and time.monotonic() < end:
        try:
            s.parser.feed(link.read(4096, 0.2))
        except Exception:
            break
    try:
        time.sleep(0.15)
        tr.serial.write(b"\r\x03")
        time.sleep(0.05)
        tr.exit_raw_repl()
    except Exception:
        pass


# -- qemu ---------------------------------------------------------------------
# The qemu firmware's /flash (micropython_modules/tinytrain/qemu_flash.c): a FAT
# RAM disk at the start of the MPS2-AN500's second SSRAM bank.
FLASH_ADDR = 0x20000000
FLASH_BANK = 4 << 20


def qemu_flash_image(elf=None) -> Path:
    """Where the qemu device's /flash is kept between runs, as a board's flash
    keeps its files: $TINYTRAIN_QEMU_FLASH, else flash.img beside the firmware."""
    env = os.environ.get("TINYTRAIN_QEMU_FLASH")
    return Path(env) if env else Path(elf or qemu_firmware()).with_name("flash.img")


def fat_image_size(boot: bytes) -> int:
    """The byte size of a FAT volume of 512-byte sectors from its boot sector;
    0 if boot is not one (or the volume would not fit the memory bank)."""
    if len(boot) < 512 or boot[510:512] != b"\x55\xaa" or struct.unpack_from("<H", boot, 11)[0] != 512:
        return 0
    n = struct.unpack_from("<H", boot, 19)[0] or struct.unpack_from("<I", boot, 32)[0]
    return n * 512 if 0 < n * 512 <= FLASH_BANK else 0


MPS2_AN500 = ("qemu-system-arm", "-machine", "mps2-an500")
RV32_VIRT = ("qemu-system-riscv32", "-machine", "virt", "-bios", "none")


class QemuProcess:
    """qemu-system-arm -machine mps2-an500 with the firmware's UART on a pty.

    With flash (a file path), the device's /flash persists in that file: qemu
    loads it into the disk's memory before the firmware starts, and close()
    stops the machine and saves the disk back (through QMP's pmemsave),
    written atomically. A firmware finding no FAT of its size there formats it.
    Without, every start has an empty /flash."""

    def __init__(self, elf: Path, extra=(), flash=None, machine=MPS2_AN500):
        """machine: the qemu command and its machine options (RV32_VIRT for
        MicroPython's VIRT_RV32 board, which has no /flash)."""
        cmd = [*machine, "-nographic", "-monitor", "null", "-semihosting", *extra]
        self.flash = Path(flash).resolve() if flash else None
        self._qmp_dir = None
        if self.flash is not None:
            self._qmp_dir = tempfile.mkdtemp(prefix="tinytrain-qemu-")
            cmd += ["-qmp", f"unix:{self._qmp_dir}/qmp.sock,server=on,wait=off"]
            if self.flash.is_file() and 0 < self.flash.stat().st_size <= FLASH_BANK:
                img = str(self.flash).replace(",", ",,")  # qemu's option syntax
                cmd += ["-device", f"loader,file={img},addr={FLASH_ADDR:#x},force-raw=on"]
        cmd += ["-serial", "pty", "-kernel", str(elf)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.close)
        try:
            self.pty = self._wait_for_pty()
        except BaseException:
            self.flash = None  # it never ran: nothing to keep
            self.close()
            raise

    def _wait_for_pty(self, timeout: float = 20) -> str:
        buf = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                m = re.search(rb"/dev/pts/\d+", buf)
                if m:
                    return m.group(0).decode()
        raise StreamError(f"qemu gave no pty: {buf.decode(errors='replace').strip()}")

    def save_flash(self) -> bool:
        """Stop the machine and write its /flash to self.flash (atomically);
        False if the memory holds no FAT (a firmware without /flash)."""
        import json
        import socket
        tmp = self.flash.with_name(f"{self.flash.name}.{os.getpid()}-{id(self)}.tmp")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(f"{self._qmp_dir}/qmp.sock")
            f = sock.makefile("rwb")

            def qmp(name, **args):
                f.write(json.dumps({"execute": name, "arguments": args} if args else {"execute": name})
                        .encode() + b"\n")
                f.flush()
                while True:  # events may come first
                    line = f.readline()
                    if not line:
                        raise StreamError(f"qemu closed its QMP socket during {name}")
                    r = json.loads(line)
                    if "error" in r:
                        raise StreamError(f"qemu {name}: {r['error'].get('desc', r['error'])}")
                    if "return" in r:
                        return r["return"]

            f.readline()  # the greeting
            qmp("qmp_capabilities")
            qmp("stop")
            self.flash.parent.mkdir(parents=True, exist_ok=True)
            try:
                qmp("pmemsave", val=FLASH_ADDR, size=512, filename=str(tmp))
                size = fat_image_size(tmp.read_bytes())
                if not size:
                    return False
                qmp("pmemsave", val=FLASH_ADDR, size=size, filename=str(tmp))
                if tmp.stat().st_size != size:
                    raise StreamError(f"qemu saved {tmp.stat().st_size} bytes of {size}")
                os.replace(tmp, self.flash)
                return True
            finally:
                tmp.unlink(missing_ok=True)

    def close(self) -> None:
        if self.flash is not None and self.proc.poll() is None:
            try:
                self.save_flash()
            except (OSError, ValueError, StreamError) as e:
                print(f"tinytrain: the qemu device's /flash was not saved to {self.flash}: {e}", file=sys.stderr)
            finally:
                self.flash = None
        if self._qmp_dir is not None:
            shutil.rmtree(self._qmp_dir, ignore_errors=True)
            self._qmp_dir = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
