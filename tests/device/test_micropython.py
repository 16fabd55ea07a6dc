"""tinytrain on MicroPython: the unix port and the qemu Cortex-M7 (MPS2_AN500)
give the host simulator's results bit for bit, raise its errors with its
messages, allocate nothing per step, and keep one arena safely.

The scripts in mp/ run unchanged under MicroPython (the firmware module) and
under CPython (the host simulator, host_tools/tinytrain): the host run is the
expected output. Needs MICROPY_DIR (a MicroPython v1.28.0 tree); the ports are
built with the project's Makefile (`make unix`, `make qemu`) by the fixtures.
"""
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from conftest import SKIP_REASON  # noqa: E402

if not os.environ.get("MICROPY_DIR"):
    pytest.skip(SKIP_REASON, allow_module_level=True)

import tinytrain  # noqa: E402
from tinytrain import modelfile as mf  # noqa: E402
from tinytrain.compiler import Scheme, compile_model  # noqa: E402

import mpdevice  # noqa: E402
import netzoo  # noqa: E402

ARENA_SIZE = 196608  # MICROPY_TINYTRAIN_ARENA_SIZE of the builds under test
STEPS = 24
EVALS = 4
REPORT = mpdevice.BUILD / "device-report.txt"
REPORT.parent.mkdir(exist_ok=True)
REPORT.unlink(missing_ok=True)


def build_model(name, scheme, seed=3):
    if scheme == "mse":
        b = netzoo.ZOO[name](seed)
        g = b.quantize(netzoo.calib(b, seed=seed))
        return b, g, compile_model(g, Scheme.full(g, loss="mse"))
    return netzoo.build(name, scheme, seed=seed)


def prepare(d: Path, name="cnn", scheme="full", steps=STEPS, evals=EVALS, module="tinytrain") -> bytes:
    """Model, inputs and labels as files in d; returns the model."""
    b, g, plan = build_model(name, scheme)
    xs, labels = netzoo.samples(b, g, steps, seed=4)
    ncls = g.tensors[g.output].numel
    (d / "model.ttm").write_bytes(plan.data)
    (d / "xs.bin").write_bytes(b"".join(x.astype("int8").tobytes() for x in xs))
    if scheme == "mse":
        import numpy as np
        rng = np.random.default_rng(5)
        ys = rng.integers(-100, 100, size=(steps, ncls)).astype("int8").tobytes()
    else:
        ys = bytes(labels)
    (d / "ys.bin").write_bytes(ys)
    (d / "job.txt").write_text(f"{module} model.ttm {steps} {evals} {'mse' if scheme == 'mse' else 'ce'} {ncls}\n")
    return plan.data


def host_run(script: str, d: Path) -> str:
    """The same script under CPython with the host simulator."""
    shutil.copy(mpdevice.SCRIPTS / script, d / script)
    r = subprocess.run([sys.executable, script], cwd=d, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def twin_dirs(tmp_path):
    host, dev = tmp_path / "host", tmp_path / "device"
    host.mkdir()
    dev.mkdir()
    return host, dev


def report(line: str) -> None:
    with open(REPORT, "a") as f:
        f.write(line + "\n")


# ---------------------------------------------------------------------------
# mbnet/bias_only runs a fused op (expand + depthwise + project, row by row);
# tutorial/full max and average pools and activation tables
CASES = [("mlp", "full_residue"), ("cnn", "full"), ("mbnet", "sparse"), ("mbnet", "full_residue"),
         ("cnn", "bias_only"), ("mlp", "mse"), ("mbnet", "bias_only"), ("tutorial", "full")]


@pytest.mark.parametrize("name,scheme", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_bit_identical(device, tmp_path, name, scheme):
    """Losses (float32 bits), classes, logits, accuracy, trained parameters and
    info() after STEPS steps: identical to the simulator."""
    model = prepare(tmp_path, name, scheme)
    want = host_run("train_dump.py", tmp_path)
    got = device.run("train_dump.py", tmp_path)
    info = lambda out: dict(l.split(" ", 2)[1:] for l in out.splitlines() if l.startswith("I "))  # noqa: E731
    assert sorted(info(got)) == sorted(info(want)), "host and device info() keys differ"
    # the keys the stream receiver relies on, against the file's own bytes
    assert int(info(got)["model_crc"]) == mf.Header.unpack(model).crc32
    assert int(info(got)["loss_kind"]) == (1 if scheme == "mse" else 0)
    assert got.splitlines() == want.splitlines()
    lines = dict(l.split(" ", 1) for l in want.splitlines() if l[:2] in ("P0", "P "))
    assert lines["P0"] != lines["P"], "training changed nothing: the comparison would be vacuous"
    assert sum(l.startswith("L ") for l in want.splitlines()) == STEPS


@pytest.mark.parametrize("name,scheme", [("cnn", "sparse"), ("mbnet", "bias_only")])
def test_input_slot(device, tmp_path, name, scheme):
    """Trainer.input() on the device: training and predicting through the
    slot filled in place equal passing x (and the simulator, bit for bit),
    and the slot loop allocates nothing under heap_lock."""
    prepare(tmp_path, name, scheme, steps=6, evals=3)
    want = host_run("input_slot.py", tmp_path)
    got = device.run("input_slot.py", tmp_path)
    assert got.splitlines() == want.splitlines()
    assert "SAME True" in want.splitlines() and "LOCKED 1" in got.splitlines()


@pytest.mark.parametrize("name,scheme", [("mbnet", "sparse"), ("mbnet", "bias_only")])
def test_feature_cache(device, tmp_path, name, scheme):
    """The frozen-prefix cache on the device: three epochs from stored
    features equal three epochs on the inputs and the simulator, bit for
    bit, and the cached loop allocates nothing under heap_lock."""
    prepare(tmp_path, name, scheme, steps=4, evals=2)
    want = host_run("feature_cache.py", tmp_path)
    got = device.run("feature_cache.py", tmp_path)
    assert got.splitlines() == want.splitlines()
    assert "SAME True" in want.splitlines() and "LOCKED 1" in got.splitlines()
    assert int(want.splitlines()[0].split()[1]) > 0


def _errors_fixture(d: Path) -> None:
    model = prepare(d, "cnn", "full")
    mse = build_model("mlp", "mse")[2].data
    (d / "mse.ttm").write_bytes(mse)

    def unchecked(data, field, value):
        """A header field changed, the CRC left as it was."""
        b = bytearray(data)
        off, fmt = mf.header_field(field)
        struct.pack_into(fmt, b, off, value)
        return bytes(b)

    head = mf.Header.unpack(model)
    bad = {}
    b = bytearray(model); b[0:4] = b"XXXX"; bad["magic"] = bytes(b)
    bad["version"] = unchecked(model, "version_major", 9)
    b = bytearray(model); b[-1] ^= 0x55; bad["crc"] = bytes(b)
    bad["size"] = unchecked(model, "file_size", len(model) + 4)
    b = bytearray(model)  # the second tensor record's arena offset
    struct.pack_into("<I", b, head.tensors_off + struct.calcsize(mf.TensorRec.FMT), 0xFFFFFF00)
    bad["tensor"] = mf.with_crc(b)
    b = bytearray(model); b[head.layers_off] = 9; bad["layer"] = mf.with_crc(b)
    for k, v in bad.items():
        (d / f"bad_{k}.ttm").write_bytes(v)
    (d / "big.ttm").write_bytes(mf.set_header_field(mse, "arena_size", ARENA_SIZE + 64))

    t = tinytrain.Trainer(mse)
    t.save(str(d / "other.ttp"))
    t = tinytrain.Trainer(model)
    t.save(str(d / "good.ttp"))
    good = (d / "good.ttp").read_bytes()
    b = bytearray(good); b[24] ^= 1; (d / "damaged.ttp").write_bytes(bytes(b))
    b = bytearray(good); struct.pack_into("<H", b, 4, 2)
    struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])))
    (d / "version.ttp").write_bytes(bytes(b))
    (d / "short.ttp").write_bytes(b"TTPS" + bytes(10))


def test_errors(device, tmp_path):
    """Every error case: the simulator's exception type and message."""
    host, dev = twin_dirs(tmp_path)
    _errors_fixture(host)
    _errors_fixture(dev)
    want = host_run("errors.py", host)
    got = device.run("errors.py", dev)
    assert got.splitlines() == want.splitlines()
    lines = dict(l.split(": ", 1) for l in want.splitlines())
    for k in ("magic", "version", "crc", "size", "tensor", "layer"):
        assert lines["model " + k].startswith("ValueError: ") and lines["model " + k].endswith(")"), lines
    assert lines["arena small"].startswith("MemoryError: model needs ") and "100 available" in lines["arena small"]
    assert lines["label high"] == "ValueError: label 5 outside [0, 5)"
    assert lines["mse ok"] == "no error"


def test_arena_too_small_for_model(device, tmp_path):
    """A model whose plan needs more than the static arena: MemoryError with
    both numbers, before the arena is touched."""
    (tmp_path / "big.ttm").write_bytes(mf.set_header_field(build_model("mlp", "mse")[2].data, "arena_size",
                                                           ARENA_SIZE + 64))
    (tmp_path / "t.py").write_text(
        "import tinytrain\n"
        "try:\n    tinytrain.Trainer('big.ttm')\n"
        "except MemoryError as e:\n    print('E', e)\n"
        "print('A', tinytrain.ARENA_SIZE)\n")
    got = device.run(tmp_path / "t.py", tmp_path)
    assert got.splitlines() == [f"E model needs {ARENA_SIZE + 64} bytes of arena, {ARENA_SIZE} available (nomem)",
                                f"A {ARENA_SIZE}"]


def test_step_allocates_nothing(device, tmp_path):
    """step(x, y, out=buf): gc.mem_free() unchanged over 100 steps with the GC
    off, and 100 steps run with the heap locked. step(x, y) allocates only its
    float result (boxed on these ports), and nothing survives a collection."""
    prepare(tmp_path, "cnn", "full")
    got = dict(l.split() for l in device.run("gc_check.py", tmp_path).splitlines())
    assert got["OUT"] == "0"
    assert got["LOCKED"] == "1"
    assert got["LEAK"] == "0"
    assert got["STEPS"] == "302"
    per_step = int(got["FLOAT"]) / 100
    assert per_step <= 32, got  # one GC block: 16 bytes on 32-bit, 32 on 64-bit
    report(f"{device.name}: step() returning a float allocates {per_step:g} bytes per call; "
           f"step(out=...) allocates 0")


def test_one_arena_one_owner(device, tmp_path):
    """A new Trainer takes the static arena over; the old one raises
    RuntimeError and never touches it; a refused Trainer leaves it alone."""
    prepare(tmp_path, "cnn", "full")
    got = device.run("ownership.py", tmp_path).splitlines()
    data = tmp_path / "model.ttm"
    xs = (tmp_path / "xs.bin").read_bytes()
    ys = (tmp_path / "ys.bin").read_bytes()
    t = tinytrain.Trainer(data.read_bytes())
    n = t.info()["input_bytes"]
    losses = [struct.pack("<f", t.step(xs[i * n:(i + 1) * n], ys[i])).hex() for i in range(3)]
    first = struct.pack("<f", tinytrain.Trainer(data.read_bytes()).step(xs[:n], ys[0])).hex()
    assert got[0] == f"KEPT {losses[2]}"
    for line, name in zip(got[1:5], ("step", "predict", "params", "info")):
        assert line.startswith(f"OLD {name} RuntimeError this Trainer no longer owns the training arena"), got
    assert got[5] == f"NEW {first}"
    assert got[6] == "REPR True False"


def test_save_load_round_trip(device, tmp_path):
    """save() then load() on the device: the same parameter file as the
    simulator writes, no temporary file left, training continues identically.
    (qemu: the files are on the host through `mpremote mount`.)"""
    host, dev = twin_dirs(tmp_path)
    prepare(host, "mbnet", "sparse")
    prepare(dev, "mbnet", "sparse")
    want = host_run("saveload.py", host)
    got = device.run("saveload.py", dev)
    assert got.splitlines() == want.splitlines()
    assert "TMP gone" in got and "SAME True 6" in got
    assert (dev / "params.ttp").read_bytes() == (host / "params.ttp").read_bytes()
    assert not (dev / "params.ttp.tmp").exists()


def test_soft_reset_then_new_trainer(qemu, tmp_path):
    """Train, soft-reset the board (.bss, so the static arena, keeps its bytes
    and the epoch counter), then a new Trainer gives a fresh trainer's results
    bit for bit."""
    prepare(tmp_path, "mbnet", "full_residue")
    want = host_run("train_dump.py", tmp_path)
    # one mpremote session: train, and the Trainer is still there
    before = qemu.mpremote("run", str(mpdevice.SCRIPTS / "soft_reset_before.py"),
                           "exec", "print('T', 't' in globals(), t.info()['steps'])", workdir=tmp_path)
    assert before.splitlines()[-2:] == ["BEFORE 4", "T True 4"]
    # mpremote soft-resets the board when it enters the raw REPL: t is gone
    assert qemu.mpremote("exec", "print('T', 't' in globals())").split() == ["T", "False"]
    assert qemu.run("train_dump.py", tmp_path).splitlines() == want.splitlines()


@pytest.mark.parametrize("target,arch", [("unix", "x64"), ("qemu_big_heap", "armv7emsp")])
def test_natmod(request, tmp_path, target, arch):
    """The dynamic native module (.mpy, arena on the GC heap) gives the same
    results; loaded under another name, as the built-in module would shadow it.
    On qemu with a 140 KiB heap: the natmod's 24 KB of code, its arena and
    mpremote's mount helper all live in the GC heap, more than the 64 KiB
    heap of the F746-sized build holds."""
    mpdevice.make("natmod", os.environ["MICROPY_DIR"], [f"ARCH={arch}"])
    device = request.getfixturevalue(target)
    shutil.copy(mpdevice.BUILD / f"natmod-{arch}" / "tinytrain.mpy", tmp_path / "tinytrain_nm.mpy")
    prepare(tmp_path, "cnn", "full", steps=8, module="tinytrain_nm")
    got = device.run("train_dump.py", tmp_path, timeout=120)
    (tmp_path / "job.txt").write_text((tmp_path / "job.txt").read_text().replace("tinytrain_nm", "tinytrain"))
    want = host_run("train_dump.py", tmp_path)
    assert got.splitlines() == want.splitlines()


def test_natmod_feature_cache(unix, tmp_path):
    """The frozen-prefix cache through the x64 .mpy: the built-in module's
    and the simulator's results."""
    mpdevice.make("natmod", os.environ["MICROPY_DIR"], ["ARCH=x64"])
    shutil.copy(mpdevice.BUILD / "natmod-x64" / "tinytrain.mpy", tmp_path / "tinytrain_nm.mpy")
    prepare(tmp_path, "mbnet", "sparse", steps=4, evals=2, module="tinytrain_nm")
    got = unix.run("feature_cache.py", tmp_path, timeout=120)
    (tmp_path / "job.txt").write_text((tmp_path / "job.txt").read_text().replace("tinytrain_nm", "tinytrain"))
    want = host_run("feature_cache.py", tmp_path)
    assert got.splitlines() == want.splitlines()
    assert "SAME True" in want.splitlines()


@pytest.mark.parametrize("name,scheme", [("cnn", "full"), ("mbnet", "sparse"), ("mbnet", "full_residue")])
def test_instructions_per_step(qemu, tmp_path, name, scheme):
    """Instructions per step and per prediction on the emulated Cortex-M7
    (qemu -icount shift=0: 1 instruction = 1 ns). Reported, not judged."""
    prepare(tmp_path, name, scheme)
    got = dict(l.split() for l in qemu.run("bench.py", tmp_path).splitlines())
    step, pred = int(got["STEP_NS"]), int(got["PREDICT_NS"])
    assert step > pred > 0
    report(f"qemu {name}/{scheme}: {step} instructions per step, {pred} per predict "
           f"(through MicroPython, step(out=...))")
