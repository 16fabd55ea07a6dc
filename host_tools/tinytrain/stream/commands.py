"""`tinytrain stream`, `tinytrain pull`, `tinytrain push` (registered by cli.py)."""
from __future__ import annotations

import sys
import time
import zlib
from pathlib import Path

from ..trainer import atomic_write, check_params_file, params_whole, read_params_file
from .session import StreamError, TrainStats
from .sources import DATASETS_HELP
from .targets import connect, serial_port, target_kind
from .. import modelfile as mf
from ..lr_rule import lr_argument

TARGET_HELP = ("sim (default), qemu, unix[:EXE] (MicroPython's unix port), or a board's serial port "
               "(/dev/ttyACM0, COM3, serial:PORT)")


def add_commands(sub) -> None:
    p = sub.add_parser("stream", help="train a model on a device from a data file, streamed over the link",
                       description="Stream (input, label) samples to Trainer.step on the device; the device "
                                   "reports loss and accuracy as it learns. See docs/streaming.md.")
    p.add_argument("--target", default="sim", help=TARGET_HELP)
    p.add_argument("--model", required=True, help="the model file (.ttm); sent to the device over the link")
    p.add_argument("--data", required=True,
                   help=".npz (x, y[, x_eval, y_eval]), .npy (with --labels) or .csv; live: serial:PORT[@BAUD] (a "
                        "sensor printing one sample per line: values then label) or - (the same lines on stdin); "
                        "a data set: " + DATASETS_HELP)
    p.add_argument("--labels", help="labels for a .npy or label-less .csv (.npy, .csv, .txt)")
    p.add_argument("--raw", action="store_true",
                   help="the inputs are int8 already (a .csv or a live line is read as floats)")
    p.add_argument("--label-first", action="store_true", help="live lines: the label comes before the values")
    p.add_argument("--max-samples", type=int, metavar="N", help="train on the first N samples (a live source: "
                                                                "stop after N)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the data (default 1)")
    p.add_argument("--lr", type=lr_argument, help="learning rate (default: the one stored in the model, which "
                   "`tinytrain plan --budget` picks on your data; `tinytrain info` prints it)")
    p.add_argument("--shuffle", type=int, metavar="SEED", help="shuffle each epoch with this seed")
    p.add_argument("--load", metavar="FILE", help="start from these parameters: a host file, or :PATH on the device")
    p.add_argument("--save", metavar="FILE", help="keep the trained parameters: a host file (pulled over the "
                                                  "link), or :PATH on the device (Trainer.save there)")
    p.add_argument("--log", metavar="FILE.csv", help="the learning curve as CSV (loss, prequential and "
                   "evaluation accuracy) and a PNG of it beside (default: beside a host --save, FILE.csv/.png)")
    p.add_argument("--window", type=int, help="frames in flight (default: 4; 1 on a serial port)")
    p.add_argument("--max-payload", type=int, help="bytes per frame (default 2048; qemu 4096)")
    p.add_argument("--fresh", action="store_true",
                   help="start from the model file's parameters even if the board still holds this model's "
                        "Trainer from an earlier session (by default the session goes on with it)")
    p.add_argument("--no-accuracy", action="store_true",
                   help="no prequential accuracy (saves the device one prediction per sample)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_stream)

    for name, helptext, a, b in (
            ("pull", "copy a parameter file from the device to the host", "src", "dest"),
            ("push", "copy a parameter file from the host to the device", "src", "dest")):
        p = sub.add_parser(name, help=helptext, description=helptext + " (checked by its checksum; written "
                           "atomically: the old file or the new one). Device paths may be written :PATH.")
        p.add_argument("--target", default="sim", help=TARGET_HELP + "; on sim and unix the device's files are the host's")
        p.add_argument("--model", help="also check that the parameters belong to this model (.ttm)")
        p.add_argument(a, help="device path" if name == "pull" else "host file")
        p.add_argument(b, help="host file" if name == "pull" else "device path")
        p.set_defaults(fn=cmd_pull if name == "pull" else cmd_push)


def _one_line(fn):
    def run(args):
        try:
            return fn(args)
        except (StreamError, OSError) as e:
            raise ValueError(str(e)) from None
    return run


# -- stream -------------------------------------------------------------------
def _log_path(args):
    """--log, else beside a host --save (FILE.csv, FILE.png); checked before the run."""
    log = args.log
    if log is None and args.save and not args.save.startswith(":"):
        log = str(Path(args.save).with_suffix(".csv"))
    from ..plots import check_output
    for flag, path in (("--save", args.save), ("--log", log)):
        if path and not path.startswith(":"):
            check_output(path, flag)
    return log


@_one_line
def cmd_stream(args):
    from . import data, sources
    model = Path(args.model).read_bytes()
    if args.epochs < 1:
        raise ValueError("--epochs must be >= 1")
    if args.max_samples is not None and args.max_samples < 1:
        raise ValueError("--max-samples must be >= 1")
    kind = sources.kind(args.data)
    if kind != "file" and args.labels:
        raise ValueError(f"--labels applies to a .npy or .csv file, not to {args.data}")
    if kind in ("serial", "stdin"):
        if args.epochs != 1 or args.shuffle is not None:
            raise ValueError("--epochs and --shuffle need a data file or data set: a live source is read once")
        if kind == "serial" and target_kind(args.target) == "serial" and \
                serial_port(args.target) == sources.serial_spec(args.data)[0]:
            raise ValueError(f"{args.data} is the target's port: the sensor needs a port of its own")
        src = sources.live(args.data, model, raw=args.raw, label_first=args.label_first,
                           max_samples=args.max_samples)
        res = stream_live(args.target, model, src, load=args.load, save=args.save, window=args.window,
                          max_payload=args.max_payload, prequential=not args.no_accuracy, progress=not args.quiet,
                          resume=not args.fresh, lr=args.lr)
        print(res["summary"])
        return 130 if res["interrupted"] else 0
    if args.label_first:
        raise ValueError("--label-first applies to live sources (serial:PORT, -)")
    if kind == "dataset":
        x, y, xe, ye, what = sources.dataset(args.data, model)
        if not args.quiet:
            print(f"{args.data}: {what}", file=sys.stderr)
    else:
        x, y, xe, ye = data.load(args.data, args.labels)
    if args.max_samples is not None:
        x, y = x[:args.max_samples], y[:args.max_samples]
    log = _log_path(args)
    raw = True if args.raw else None
    train = data.samples(model, x, y, raw)
    evalset = data.samples(model, xe, ye, raw) if xe is not None and ye is not None else None
    if not train:
        raise ValueError(f"{args.data}: no samples")
    res = stream(args.target, model, train, epochs=args.epochs, shuffle=args.shuffle, evalset=evalset,
                 load=args.load, save=args.save, window=args.window, max_payload=args.max_payload,
                 prequential=not args.no_accuracy, progress=not args.quiet, resume=not args.fresh, lr=args.lr,
                 log=log)
    print(res["summary"])
    return 130 if res["interrupted"] else 0


class _CtrlC:
    """While active, a first Ctrl-C only sets `self.came` (the stream then
    ends between samples, and what was learned is saved); a second one stops
    at once (KeyboardInterrupt)."""

    def __init__(self):
        self.came = False
        self.previous = None

    def __enter__(self):
        import signal
        previous = signal.getsignal(signal.SIGINT)
        previous = signal.default_int_handler if previous is None else previous

        def on_sigint(signum, frame):
            self.came = True
            signal.signal(signal.SIGINT, previous)

        try:
            signal.signal(signal.SIGINT, on_sigint)
            self.previous = previous
        except ValueError:  # not the main thread: Ctrl-C stays KeyboardInterrupt
            pass
        return self

    def __exit__(self, *exc):
        import signal
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


BEFORE_MAX = 500  # training samples evaluated before training when there is no evaluation set


def stream(target, model: bytes, samples, *, epochs: int = 1, shuffle=None, evalset=None, load=None, save=None,
           window=None, max_payload=None, prequential=True, progress=False, out=sys.stderr,
           resume: bool = True, lr=None, log=None) -> dict:
    """Train on target from samples [(int8 input bytes, label)]; returns the
    per-sample losses, accuracies, the device's counters and a summary.
    Ctrl-C ends the stream between samples: what was sent is trained, saved
    (save) and summed up ("interrupted" in the result); a second one stops at
    once. resume: go on with the Trainer a board kept from an earlier session
    of this model (targets.connect). lr: the learning rate (None: the
    model's). Before training, the accuracy on evalset (else on the first
    BEFORE_MAX samples) is measured; log: a CSV of the learning curve
    (stream_log.py), with a PNG of it beside."""
    import random
    samples = list(samples)
    n_total = len(samples) * epochs
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_total, unit="sample", desc=f"stream on {target}", dynamic_ncols=True, file=out)
    stats = TrainStats()
    marks = [(0, 0)]  # (samples reported, prequential hits) as the device reports: the log's curve
    show = _reporter(bar, prequential)

    def report(st):
        if st.n > marks[-1][0]:
            marks.append((st.n, st.hits))
        show(st)
    epochs_out = []
    before = None
    t0 = time.monotonic()
    sent = [0]
    resumed = None

    def until_ctrl_c(order):
        for i in order:
            if ctrl_c.came:
                return
            sent[0] += 1
            yield samples[i]

    try:
        with _CtrlC() as ctrl_c, connect(target, model, window=window, max_payload=max_payload, lr=lr,
                                         prequential=prequential, resume=resume and not load) as conn:
            s = conn.session
            resumed = conn.resumed
            _start(s, load)
            probe = evalset or samples[:BEFORE_MAX]
            if probe:
                before = {"accuracy": s.evaluate(probe)[0] / len(probe), "n": len(probe),
                          "on": "evaluation set" if evalset else "training samples"}
            t_train = time.monotonic()
            for e in range(epochs):
                order = list(range(len(samples)))
                if shuffle is not None:
                    random.Random(shuffle * 1000003 + e).shuffle(order)
                n0, h0 = stats.n, stats.hits
                s.train(until_ctrl_c(order), stats, report)
                if ctrl_c.came:
                    break
                ep = {"epoch": e + 1, "loss": sum(stats.losses[n0:]) / max(1, stats.n - n0)}
                if prequential:
                    ep["accuracy"] = (stats.hits - h0) / max(1, stats.n - n0)
                if evalset:
                    hits, _ = s.evaluate(evalset)
                    ep["eval_accuracy"] = hits / len(evalset)
                epochs_out.append(ep)
                if bar is not None:
                    bar.write(_epoch_line(ep))
            t_done = time.monotonic()
            dev_info, dev, counts = _finish(conn, s, save)
    finally:
        if bar is not None:
            bar.close()
    if dev["trained"] != sent[0] or stats.n != sent[0]:
        raise StreamError(f"the device trained {dev['trained']} samples and reported {stats.n}, "
                          f"{sent[0]} were sent")
    rate = sent[0] / max(1e-9, t_done - t_train)
    lines = [f"{sent[0]} samples ({len(samples)} x {epochs} epochs) on {target}: {rate:.0f} samples/s, "
             f"{time.monotonic() - t0:.1f} s in all"]
    if ctrl_c.came:
        lines[0] = (f"Ctrl-C: the stream ended after {sent[0]} of {n_total} samples, which were trained; "
                    f"{rate:.0f} samples/s, {time.monotonic() - t0:.1f} s in all")
    if resumed is not None:
        lines.insert(0, f"went on with the Trainer the device kept ({resumed} steps; --fresh starts from the "
                        "model file)")
    if before is not None:
        lines.append(f"before training: accuracy {100 * before['accuracy']:.1f}% on the {before['on']} "
                     f"({before['n']} samples)")
    lines += [_epoch_line(ep) for ep in epochs_out]
    lines.append(_link_line(counts, dev, dev_info))
    if save:
        lines.append(f"saved the trained parameters to {save}")
    res = {"losses": stats.losses, "hits": stats.hits, "epochs": epochs_out, "device": dev, "link": counts,
           "samples_per_s": rate, "summary": "\n".join(lines), "interrupted": ctrl_c.came, "resumed": resumed,
           "before": before}
    if log:
        from . import log as stream_log
        written = stream_log.write(log, res, marks, len(samples), title=f"{target}: {sent[0]} samples")
        res["summary"] += "\n" + "wrote " + " and ".join(map(str, written))
    return res


def _reporter(bar, prequential: bool):
    """The callback that moves the progress bar as the device reports."""
    marks = [(0, 0)]  # (samples reported, prequential hits): for the accuracy of the last stretch

    def report(st):
        if bar is not None:
            bar.update(st.n - bar.n)
            marks.append((st.n, st.hits))
            while len(marks) > 2 and st.n - marks[1][0] >= 200:
                marks.pop(0)
            post = {"loss": f"{st.recent(200):.4f}"}
            if prequential and st.n > marks[0][0]:
                post["acc"] = f"{(st.hits - marks[0][1]) / (st.n - marks[0][0]):.3f}"
            bar.set_postfix(post, refresh=False)
    return report


def _start(s, load) -> None:
    if load:
        if load.startswith(":"):
            s.device_load(load[1:])
        else:
            s.push_params(read_params_file(load))


def _finish(conn, s, save) -> tuple:
    """Keep the parameters, end the session: (device info, end report, link counts)."""
    _keep(s, save)
    dev_info = s.info()
    return dev_info, conn.end(), dict(s.counts)


def _keep(s, save) -> None:
    if save:
        if save.startswith(":"):
            s.device_save(save[1:])
        else:
            atomic_write(save, s.params_file())


def _link_line(counts, dev, dev_info) -> str:
    return (f"link: {counts['frames']} frames, {counts['resent']} resent, {counts['naks']} NAKs, "
            f"{counts['timeouts']} timeouts; device: {dev['trained']} trained, {dev_info['steps']} steps in all")


def stream_live(target, model: bytes, source, *, load=None, save=None, window=None, max_payload=None,
                prequential=True, progress=False, out=None, resume: bool = True, lr=None) -> dict:
    """Train on target from a live source (sources.LineSource) as its samples
    come, until it ends (end of input, its max_samples) or Ctrl-C; then the
    parameters are saved (save) and the summary made. Ctrl-C is taken
    between samples (a second one aborts at once); the result says
    whether it came ("interrupted")."""
    import signal
    out = out or sys.stderr
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=source.max_samples, unit="sample", desc=f"{source.name} to {target}", dynamic_ncols=True,
                   file=out)
    shown = []

    def bad(lineno, why):
        if len(shown) < MAX_SHOWN:
            msg = f"tinytrain: {source.name} line {lineno}: {why}; skipped" + \
                  ("" if len(shown) < MAX_SHOWN - 1 else " (further malformed lines are counted, not shown)")
            shown.append(lineno)
            if bar is not None:
                bar.write(msg, file=out)
            else:
                print(msg, file=out, flush=True)
    source.on_bad = bad
    stats = TrainStats()
    report = _reporter(bar, prequential)
    interrupted = []

    previous = signal.getsignal(signal.SIGINT)
    previous = signal.default_int_handler if previous is None else previous  # None: not set from Python

    def on_sigint(signum, frame):
        interrupted.append(True)
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C stops at once

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: Ctrl-C stays KeyboardInterrupt
        previous = None
    t0 = time.monotonic()
    try:
        with connect(target, model, window=window, max_payload=max_payload, prequential=prequential, lr=lr,
                     resume=resume and not load) as conn:
            s = conn.session
            _start(s, load)
            if bar is not None:
                bar.write(f"training on {target} from {source.name} as its samples come; Ctrl-C ends it"
                          f"{' (the parameters are saved)' if save else ''}", file=out)
            t_train = time.monotonic()
            try:
                while True:
                    if interrupted:
                        raise KeyboardInterrupt
                    batch = source.take(0.05 if s.out else 0.2)
                    if batch:
                        s.send_train(batch, stats, report)  # waits while the window is full: reading pauses
                    if interrupted:  # Ctrl-C ends a pipe's writer too: its end of input comes with it
                        raise KeyboardInterrupt
                    if source.ended is not None:
                        break
                    s.poll()
            except KeyboardInterrupt:
                interrupted.append(True)
                source.ended = "Ctrl-C"
            finally:
                source.close()
            s.drain()
            t_done = time.monotonic()
            dev_info, dev, counts = _finish(conn, s, save)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if bar is not None:
            bar.close()
    n = stats.n
    if dev["trained"] != n or n != source.n:
        raise StreamError(f"the device trained {dev['trained']} samples and reported {n}, {source.n} were sent")
    rate = n / max(1e-9, t_done - t_train)
    lines = [f"{n} samples from {source.name} on {target} ({rate:.1f} samples/s, {time.monotonic() - t0:.1f} s "
             f"in all); the stream ended: {source.ended}"]
    if n:
        line = f"mean loss {sum(stats.losses) / n:.4f}"
        if prequential:
            line += f", accuracy {100 * stats.hits / n:.1f}% (predicted before learning each sample)"
        lines.append(line)
    if source.bad:
        nums = ", ".join(str(k) for k, _ in source.bad[:MAX_SHOWN])
        lines.append(f"{len(source.bad)} malformed line{'s' if len(source.bad) > 1 else ''} skipped (line "
                     f"numbers: {nums}{', ...' if len(source.bad) > MAX_SHOWN else ''})")
    lines.append(_link_line(counts, dev, dev_info))
    if save:
        lines.append(f"saved the trained parameters to {save}")
    return {"losses": stats.losses, "hits": stats.hits, "device": dev, "link": counts, "samples_per_s": rate,
            "bad": list(source.bad), "ended": source.ended, "interrupted": bool(interrupted),
            "summary": "\n".join(lines)}


MAX_SHOWN = 20  # malformed lines printed as they come (all are counted)


def _epoch_line(ep) -> str:
    s = f"epoch {ep['epoch']}: mean loss {ep['loss']:.4f}"
    if "accuracy" in ep:
        s += f", accuracy {100 * ep['accuracy']:.1f}% (predicted before learning each sample)"
    if "eval_accuracy" in ep:
        s += f", evaluation accuracy {100 * ep['eval_accuracy']:.1f}%"
    return s


# -- pull / push ----------------------------------------------------------------
def _model_check(model_path):
    if not model_path:
        return lambda blob: None
    from ..trainer import Trainer
    data = Path(model_path).read_bytes()
    t = Trainer(data)
    crc, size = mf.Header.unpack(data).crc32, t.info()["param_bytes"]
    return lambda blob: check_params_file(blob, crc, size)


def _check_whole(blob: bytes, what: str) -> None:
    if not params_whole(blob):
        raise ValueError(f"{what} is not a whole tinytrain parameter file (damaged or cut short)")


def _device_path(p: str) -> str:
    return p[1:] if p.startswith(":") else p


@_one_line
def cmd_pull(args) -> None:
    n = pull(args.target, args.src, args.dest, args.model)
    print(f"pulled {args.src} -> {args.dest} ({n} bytes, checksum verified)")


@_one_line
def cmd_push(args) -> None:
    n = push(args.target, args.src, args.dest, args.model)
    print(f"pushed {args.src} -> {args.dest} ({n} bytes, checksum verified on the device)")


def pull(target: str, src: str, dest, model=None) -> int:
    """Device file src -> host file dest; returns its size."""
    check_model = _model_check(model)
    kind = target_kind(target)
    src = _device_path(src)
    if kind in ("sim", "unix"):
        blob = read_params_file(src)  # the device's files are the host's
    else:
        with _board(target) as b:
            blob = b.read_params(src)
    _check_whole(blob, src)
    check_model(blob)
    atomic_write(dest, blob)
    return len(blob)


def push(target: str, src, dest: str, model=None) -> int:
    """Host file src -> device file dest (written to dest.tmp, then renamed)."""
    check_model = _model_check(model)
    blob = Path(src).read_bytes()
    _check_whole(blob, str(src))
    check_model(blob)
    kind = target_kind(target)
    dest = _device_path(dest)
    if kind in ("sim", "unix"):
        atomic_write(dest, blob)
    else:
        with _board(target) as b:
            b.write_atomic(dest, blob)
    return len(blob)


def _board(target: str) -> "_Board":
    if target_kind(target) != "qemu":
        return _Board(serial_port(target))
    from .targets import QemuProcess, check, qemu_firmware, qemu_flash_image
    check(target)
    q = QemuProcess(qemu_firmware(), flash=qemu_flash_image())
    try:
        return _Board(q.pty, qemu=q)
    except BaseException:
        q.close()
        raise


class _Board:
    """Files on a board through mpremote's transport (raw REPL); on qemu,
    a qemu started for it, whose /flash is kept in its image file."""

    def __init__(self, port: str, qemu=None):
        self.qemu = qemu
        try:
            from mpremote.transport_serial import SerialTransport
        except ImportError:
            raise StreamError("pull/push on a board need mpremote: pip install mpremote") from None
        from mpremote.transport import TransportError
        self.TransportError = TransportError
        try:
            self.tr = SerialTransport(port, baudrate=115200)
            self.tr.enter_raw_repl(soft_reset=False)
        except Exception as e:
            raise StreamError(f"{port}: {e}") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.tr.exit_raw_repl()
        finally:
            try:
                self.tr.close()
            finally:
                if self.qemu is not None:
                    self.qemu.close()  # saves its /flash

    def _read(self, path):
        try:
            return self.tr.fs_readfile(path)
        except (OSError, self.TransportError):
            return None

    def read_params(self, path: str) -> bytes:
        # as Trainer.load: a save cut short between its renames leaves path.tmp
        blob = self._read(path)
        if blob is None or not params_whole(blob):
            alt = self._read(path + ".tmp")
            if alt is not None and params_whole(alt):
                return alt
        if blob is None:
            raise StreamError(f"no file {path} on the device")
        return blob

    def write_atomic(self, path: str, blob: bytes) -> None:
        tmp = path + ".tmp"
        try:
            self.tr.fs_writefile(tmp, blob)
            self.tr.exec(f"import os\nos.rename({tmp!r}, {path!r})")
            out = self.tr.exec(f"import binascii\nf = open({path!r}, 'rb')\nprint(binascii.crc32(f.read()))\n"
                               "f.close()")
        except (OSError, self.TransportError) as e:
            raise StreamError(f"writing {path} on the device failed ({e}): has it a filesystem there?") from None
        if int(out.split()[-1]) != zlib.crc32(blob):
            raise StreamError(f"{path} on the device does not read back as written")
