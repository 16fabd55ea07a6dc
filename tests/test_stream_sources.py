"""Live and data-set sources of `tinytrain stream --data` (tinytrain/stream/sources.py).

A pty pair plays the sensor on a serial port: a thread writes text lines
(comments, blank lines, malformed lines, lines in two pieces) with small
pauses; the parameters trained from the valid lines must be bit for bit
those trained from a .csv file of the same samples. Standard input is fed
to the command in a subprocess. The data sets must give the samples of the
helpers they wrap (tinytrain.datasets, the demos' splits).
"""
import fcntl
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tinytrain
from tinytrain import cli
from tinytrain.stream import sources
from tinytrain.stream.data import ModelIO, samples as data_samples

import netzoo

ROOT = Path(__file__).resolve().parents[1]
posix = pytest.mark.skipif(os.name != "posix", reason="pty pairs and signals: POSIX only")
N_IN = 64  # netzoo's mlp: 8x8x1 inputs, 10 classes


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlp")
    plan = netzoo.build("mlp", "full_residue")[2]
    (d / "m.ttm").write_bytes(plan.data)
    return plan.data, str(d / "m.ttm")


def sensor_lines(n: int, seed: int = 0, raw: bool = False, label_first: bool = False, sep: str = ","):
    """(lines as bytes, the valid samples as rows [inputs..., label], the numbers of the malformed lines):
    a comment header, a blank line, CRLF endings, and every few samples a malformed line."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n, N_IN)) if raw else np.round(rng.uniform(-1, 1, (n, N_IN)), 5)
    y = rng.integers(0, 10, n)
    fmt = (lambda v: str(int(v))) if raw else (lambda v: f"{v:.5f}")
    lines, bad = [b"# ax0, ax1, ..., label\n", b"\n"], []
    broken = [" ".join(["1", "2", "3"]),                          # too few values
              sep.join(["0.5"] * (N_IN - 1) + ["abc", "1"]),       # not a number
              sep.join(["0.25"] * N_IN + ["10"]),                  # label outside [0, 10)
              sep.join(["0.25"] * N_IN + ["2.5"])]                 # label not a class index
    for i in range(n):
        vals = [fmt(v) for v in x[i]]
        row = [str(y[i])] + vals if label_first else vals + [str(y[i])]
        lines.append((sep.join(row) + ("\r\n" if i % 2 else "\n")).encode())
        if i % 4 == 2:
            lines.append((broken[(i // 4) % len(broken)] + "\n").encode())
            bad.append(len(lines))
    return lines, np.column_stack([x, y]), bad


def csv_params(tmp_path, model_path, rows, raw: bool, name="ref"):
    """The parameters trained from a .csv of rows (the file path of the same command)."""
    csv = tmp_path / f"{name}.csv"
    np.savetxt(csv, rows, delimiter=",", fmt="%d" if raw else "%.5f")
    out = tmp_path / f"{name}.ttp"
    args = ["stream", "--model", model_path, "--data", str(csv), "--save", str(out), "-q"]
    assert cli.main(args + (["--raw"] if raw else [])) == 0
    return out.read_bytes()


def fionread(fd: int) -> int:
    import termios
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


class Sensor(threading.Thread):
    """The sensor at the other end of a serial port: the master of a pty pair.
    Starts writing once the command has opened the port (opening flushes
    what came before, as on a real port); with hang_up, closes its end once
    every byte has been read (the end of input)."""

    def __init__(self, monkeypatch, lines, hang_up=True, wrap=None):
        super().__init__(daemon=True)
        from tinytrain.stream.transport import set_raw
        self.master, self.slave = os.openpty()
        set_raw(self.slave)
        self.port = os.ttyname(self.slave)
        self.lines, self.hang_up = lines, hang_up
        self.opened, self.drained, self.stop = threading.Event(), threading.Event(), threading.Event()
        real = sources.open_serial

        def opening(port, baud):
            assert port == self.port and baud == sources.DEFAULT_BAUD
            r = real(port, baud)
            self.opened.set()
            return wrap(r) if wrap else r
        monkeypatch.setattr(sources, "open_serial", opening)
        os.set_blocking(self.master, False)
        self.start()

    def run(self):
        if not self.opened.wait(60):
            return
        try:
            for i, line in enumerate(self.lines):
                cut = len(line) // 2 if i % 3 == 0 else len(line)  # every third line in two pieces
                for part in (line[:cut], line[cut:]):
                    if part:
                        os.write(self.master, part)
                        time.sleep(0.002)
        except OSError:  # the command stopped reading (--max-samples) and the buffer is full
            return
        end = time.monotonic() + 60
        while time.monotonic() < end and not self.stop.is_set():
            if not fionread(self.slave):
                time.sleep(0.05)
                if not fionread(self.slave):  # still nothing waiting: the command has taken every byte
                    self.drained.set()
                    break
            time.sleep(0.01)
        if self.hang_up:
            os.close(self.master)
            self.master = -1

    def close(self):
        self.stop.set()
        self.join(60)
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)


@posix
def test_serial_sensor_matches_csv(mlp, tmp_path, monkeypatch, capsys):
    """Floats quantised line by line, comments and malformed lines skipped,
    the end of input ends the stream and the parameters are saved."""
    model, m = mlp
    lines, rows, bad = sensor_lines(30)
    sensor = Sensor(monkeypatch, lines)
    try:
        rc = cli.main(["stream", "--model", m, "--data", f"serial:{sensor.port}", "--save",
                       str(tmp_path / "live.ttp"), "-q"])
    finally:
        sensor.close()
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert (tmp_path / "live.ttp").read_bytes() == csv_params(tmp_path, m, rows, raw=False)
    assert f"30 samples from serial:{sensor.port} on sim" in out and "the stream ended: the port closed" in out
    assert f"{len(bad)} malformed lines skipped (line numbers: {', '.join(map(str, bad))})" in out
    for k, why in zip(bad, ("3 values, expected 65 values (64 inputs then a label)", "not a number: 'abc'",
                            "label 10 is not a class index in [0, 10)", "label 2.5 is not a class index")):
        assert f"serial:{sensor.port} line {k}: {why}" in err
    assert "device: 30 trained, 30 steps in all" in out


@posix
def test_serial_max_samples_raw(mlp, tmp_path, monkeypatch, capsys):
    """--max-samples ends the stream while the sensor still sends; --raw int8 values; stop-and-wait."""
    model, m = mlp
    lines, rows, bad = sensor_lines(24, seed=1, raw=True)
    sensor = Sensor(monkeypatch, lines, hang_up=False)
    try:
        rc = cli.main(["stream", "--model", m, "--data", f"serial:{sensor.port}", "--raw", "--max-samples", "11",
                       "--window", "1", "--save", str(tmp_path / "live.ttp"), "-q"])
    finally:
        sensor.close()
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert (tmp_path / "live.ttp").read_bytes() == csv_params(tmp_path, m, rows[:11], raw=True)
    assert "11 samples from" in out and "the stream ended: --max-samples 11" in out
    assert f"malformed lines skipped (line numbers: {', '.join(str(k) for k in bad if k < 16)})" in out


@posix
def test_serial_ctrl_c_saves(mlp, tmp_path, monkeypatch, capsys):
    """Ctrl-C (KeyboardInterrupt from the source's read, once the sensor has
    said everything): what was sent is trained and saved, exit code 130."""
    model, m = mlp
    lines, rows, bad = sensor_lines(17, seed=2)

    class Interrupting:
        def __init__(self, reader):
            self.reader = reader

        def read(self, timeout):
            data = self.reader.read(timeout)
            if not data and sensor.drained.is_set():
                raise KeyboardInterrupt
            return data

        def close(self):
            self.reader.close()

    sensor = Sensor(monkeypatch, lines, hang_up=False, wrap=Interrupting)
    try:
        rc = cli.main(["stream", "--model", m, "--data", f"serial:{sensor.port}", "--save",
                       str(tmp_path / "live.ttp"), "-q"])
    finally:
        sensor.close()
    out = capsys.readouterr().out
    assert rc == 130
    assert "17 samples from" in out and "the stream ended: Ctrl-C" in out and "saved the trained parameters" in out
    assert (tmp_path / "live.ttp").read_bytes() == csv_params(tmp_path, m, rows, raw=False)


def _stdin_cmd(m, save, *extra):
    return [sys.executable, "-m", "tinytrain.cli", "stream", "--model", m, "--data", "-", "--save", str(save),
            "-q", *extra]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "host_tools"), env.get("PYTHONPATH", "")])
    return env


def test_stdin_pipe_label_first(mlp, tmp_path):
    """`my_sensor | tinytrain stream --data -`: space-separated, label first; ends at EOF."""
    model, m = mlp
    lines, rows, bad = sensor_lines(20, seed=3, label_first=True, sep=" ")
    r = subprocess.run(_stdin_cmd(m, tmp_path / "live.ttp", "--label-first"), input=b"".join(lines),
                       capture_output=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    out, err = r.stdout.decode(), r.stderr.decode()
    assert "20 samples from stdin on sim" in out and "the stream ended: end of input" in out
    assert [f"stdin line {k}:" in err for k in bad] == [True] * len(bad)
    # the lines had "label x0 ... x63"; the .csv has the label last
    assert (tmp_path / "live.ttp").read_bytes() == csv_params(tmp_path, m, rows, raw=False)


@posix
def test_stdin_sigint(mlp, tmp_path):
    """A real Ctrl-C (SIGINT) while the stream waits for input: saved, exit code 130."""
    model, m = mlp
    lines, rows, bad = sensor_lines(12, seed=4)
    lines.append(b"the end\n")  # malformed: its report says every line before it has been read
    p = subprocess.Popen(_stdin_cmd(m, tmp_path / "live.ttp"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=_env())
    watchdog = threading.Timer(120, p.kill)
    watchdog.start()
    try:
        p.stdin.write(b"".join(lines))
        p.stdin.flush()
        reported = []
        while not any(f"line {len(lines)}:" in s for s in reported):
            s = p.stderr.readline().decode()
            assert s, "the command ended before reporting the last line"
            reported.append(s)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        watchdog.cancel()
        p.kill()
    assert p.returncode == 130, err.decode()
    out = out.decode()
    assert "12 samples from stdin" in out and "the stream ended: Ctrl-C" in out
    assert (tmp_path / "live.ttp").read_bytes() == csv_params(tmp_path, m, rows, raw=False)


def test_line_parser_mse_and_errors():
    """An MSE model's lines end with its row of targets; quantised as ModelIO quantises arrays."""
    from tinytrain.compiler import Scheme, compile_model
    b = netzoo.ZOO["mlp"](3)
    g = b.quantize(netzoo.calib(b, seed=3))
    model = compile_model(g, Scheme.full(g, loss="mse")).data
    io = ModelIO(model)
    rng = np.random.default_rng(5)
    x, t = rng.uniform(-1, 1, N_IN), rng.uniform(-1, 1, 10)
    p = sources.LineParser(model)
    xb, tb = p.parse(", ".join(repr(float(v)) for v in np.r_[x, t]))
    assert xb == io.inputs(x).tobytes() and tb == io.labels(t, 1)[0]
    xb2, tb2 = sources.LineParser(model, label_first=True).parse(" ".join(repr(float(v)) for v in np.r_[t, x]))
    assert (xb2, tb2) == (xb, tb)
    with pytest.raises(ValueError, match=r"74 values \(64 inputs then MSE targets\)"):
        p.parse("1 2 3")
    with pytest.raises(ValueError, match="must lie in"):
        sources.LineParser(model, raw=True).parse(" ".join(["200"] * 74))
    with pytest.raises(ValueError, match="not finite"):
        p.parse(" ".join(["nan"] * 74))


def test_live_source_errors(mlp, capsys):
    model, m = mlp
    base = ["stream", "--model", m, "-q", "--data"]
    for data, extra, msg in (
            ("serial:/dev/tinytrain-no-port", [], "no serial port /dev/tinytrain-no-port"),
            ("serial:/dev/ttyS0@fast", [], "baud rate"),
            ("-", ["--epochs", "2"], "a live source is read once"),
            ("-", ["--labels", "y.npy"], "--labels applies to a .npy or .csv"),
            ("serial:/dev/ttyACM7", ["--target", "/dev/ttyACM7"], "the target's port")):
        assert cli.main(base + [data] + extra) == 2
        assert msg in capsys.readouterr().err


# -- data sets ---------------------------------------------------------------------
def exact_input_scale(graph):
    """The float32 the model file stores, so the builder's quantisation and the file's agree exactly."""
    t = graph.tensors[graph.input]
    t.scale = float(np.float32(t.scale))
    return graph


def test_dataset_digits(tmp_path, capsys):
    """dataset:digits: the vision demo's split (seed 0), resized to the model's
    input as tinytrain.datasets.to_model_inputs does it; trained through the CLI
    as the Trainer trains on those inputs."""
    from tinytrain import datasets as ds
    from tinytrain.compiler import Scheme, compile_model
    from tinytrain.demos.vision import build_small_cnn
    from tinytrain.tasks import IMAGE_SIZES, load_image_task
    b = build_small_cnn(10, 0, input_shape=(12, 12, 2))
    task = load_image_task("digits", 0, *IMAGE_SIZES["digits"])
    g = exact_input_scale(b.quantize(ds.model_floats(task.images[task.i_rest[:64]], (12, 12, 2))))
    model = compile_model(g, Scheme.full(g, lr=0.02)).data
    x, y, xe, ye, what = sources.dataset("dataset:digits", model)
    assert "500 samples to learn on, 400 to evaluate" in what
    for xs, ys, idx in ((x, y, task.i_train), (xe, ye, task.i_test)):
        got = data_samples(model, xs, ys)
        want = ds.to_model_inputs(g, task.images, idx)
        assert [s[0] for s in got] == [r.tobytes() for r in want]
        assert [s[1] for s in got] == task.labels[idx].tolist()
    (tmp_path / "m.ttm").write_bytes(model)
    assert cli.main(["stream", "--model", str(tmp_path / "m.ttm"), "--data", "dataset:digits", "--max-samples",
                     "40", "--save", str(tmp_path / "p.ttp"), "-q", "--no-accuracy"]) == 0
    assert "evaluation accuracy" in capsys.readouterr().out
    t = tinytrain.Trainer(model)
    for r, c in zip(ds.to_model_inputs(g, task.images, task.i_train[:40]), task.labels[task.i_train[:40]]):
        t.step(r.tobytes(), int(c))
    t.save(str(tmp_path / "ref.ttp"))
    assert (tmp_path / "p.ttp").read_bytes() == (tmp_path / "ref.ttp").read_bytes()


def test_dataset_imu():
    """dataset:imu:SUBJECT: the personalize demo's windows of that subject
    (watch_windows held out, time_split), learn and evaluation parts."""
    from tinytrain.builder import quantize_input
    from tinytrain.compiler import Scheme, compile_model
    from tinytrain.datasets import watch_windows
    from tinytrain.tasks import imu_cnn, time_split
    b = imu_cnn(0)
    w = watch_windows(100, 50, held_out=7)
    g = exact_input_scale(b.quantize(w.x[w.subject != 7][::40]))
    model = compile_model(g, Scheme.last_layers(g, n_bias=1, n_weights=1)).data
    learn, ev = time_split(w, 7, 0.5)
    x, y, xe, ye, what = sources.dataset("dataset:imu:7", model)
    for xs, ys, idx in ((x, y, learn), (xe, ye, ev)):
        got = data_samples(model, xs, ys)
        assert [s[0] for s in got] == [r.tobytes() for r in quantize_input(g, w.x[idx])]
        assert [s[1] for s in got] == w.y[idx].tolist()


def test_dataset_errors(mlp):
    model = mlp[0]  # 8x8x1 inputs, 10 classes
    with pytest.raises(ValueError, match=r"dataset:imu:3 gives windows of 1 x T x 6 .* the model takes 8x8x1"):
        sources.dataset("dataset:imu:3", model)
    with pytest.raises(ValueError, match="dataset:imu:1 .. dataset:imu:10"):
        sources.dataset("dataset:imu:0", model)
    with pytest.raises(ValueError, match="unknown data set 'dataset:mnist'"):
        sources.dataset("dataset:mnist", model)
    b = netzoo.ZOO["mlp"](0, n_classes=5)
    from tinytrain.compiler import Scheme, compile_model
    g = b.quantize(netzoo.calib(b))
    with pytest.raises(ValueError, match="dataset:digits has 10 classes, the model 5"):
        sources.dataset("dataset:digits", compile_model(g, Scheme.full(g)).data)
    from tinytrain.builder import NetBuilder
    flat = NetBuilder((1, 1, 64))
    flat.fc(10)
    g = flat.quantize(np.random.default_rng(0).uniform(0, 16, (32, 1, 1, 64)))
    with pytest.raises(ValueError, match="the model takes 1x1x64, not an image"):
        sources.dataset("dataset:digits", compile_model(g, Scheme.full(g)).data)
