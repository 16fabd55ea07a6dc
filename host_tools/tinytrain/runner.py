"""Build and drive `tt_run` (firmware/baremetal/tt_run.c): the C core on the
emulated Cortex-M7 or RV32 core under qemu, or on the host under ASan and UBSan.

Used by the tests (bit-exactness across targets, malformed files under the
sanitizers) and by the benchmarks (instruction counts).
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .core_flags import core_cflags, core_sources

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "micropython_modules" / "tinytrain" / "core"
BAREMETAL = ROOT / "firmware" / "baremetal"
# Per emulated target of firmware/baremetal's Makefile (TARGET=...): the
# tools it needs.
EMULATED = {
    "m7": ["arm-none-eabi-gcc", "qemu-system-arm", "make"],
    "rv32": ["riscv64-unknown-elf-gcc", "qemu-system-riscv32", "make"],
}
TARGETS = ("host", *EMULATED)
# the core's flags (one list, core_flags.mk), then the sanitizer build's own
HOST_FLAGS = [*core_cflags(), "-O1", "-g", "-fno-omit-frame-pointer",
              "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-DTT_RUN_HOSTED"]


def missing_tools(target: str) -> list:
    need = ["cc"] if target == "host" else EMULATED[target]
    missing = [t for t in need if shutil.which(t) is None]
    if target == "rv32" and not missing and not _has_picolibc():
        missing.append("picolibc-riscv64-unknown-elf")
    return missing


def _has_picolibc() -> bool:
    p = subprocess.run(["riscv64-unknown-elf-gcc", "-print-file-name=picolibc.specs"],
                       capture_output=True, text=True)
    return p.returncode == 0 and os.path.isabs(p.stdout.strip())


def _core_sources() -> list:
    return core_sources(CORE)


def build(target: str, out_dir, extra_flags=()) -> Path:
    """target 'host' (sanitizers), 'm7' (qemu mps2-an500) or 'rv32' (qemu virt). Returns the executable.
    extra_flags: more compiler flags, e.g. ["-DTT_OPTIMIZED=0"] for the reference kernels only."""
    if not (BAREMETAL / "tt_run.c").exists():
        raise FileNotFoundError("tt_run.c not found: the runner needs the project's source tree")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if target == "host":
        exe = out / "tt_run_host"
        subprocess.run(["cc", *HOST_FLAGS, *extra_flags, f"-I{CORE}", str(BAREMETAL / "tt_run.c"),
                        *_core_sources(), "-o", str(exe)], check=True, capture_output=True, text=True)
        return exe
    if target in EMULATED:
        subprocess.run(["make", "-s", "-C", str(BAREMETAL), f"TARGET={target}", f"APP={BAREMETAL / 'tt_run.c'}",
                        f"EXTRA_SRC={' '.join(_core_sources())}",
                        f"EXTRA_CFLAGS={' '.join([f'-I{CORE}', *extra_flags])}",
                        f"OUT={out.resolve()}"], check=True, capture_output=True, text=True)
        return out / "tt_run.elf"
    raise ValueError(f"unknown target {target!r}")


@dataclass
class Result:
    status: int
    message: str
    losses: list = field(default_factory=list)
    classes: list = field(default_factory=list)
    logits: list = field(default_factory=list)
    params: bytes = b""
    stdout: str = ""
    step_instructions: list = field(default_factory=list)
    predict_instructions: list = field(default_factory=list)
    stack_bytes: int = 0  # the most stack any call used (M7)
    step_stack: list = field(default_factory=list)  # bytes of stack each call used (M7)
    predict_stack: list = field(default_factory=list)
    step_ops: list = field(default_factory=list)  # instructions per op of each call (-DTT_OP_PROFILE)
    predict_ops: list = field(default_factory=list)


def _sample_bytes(x, y, input_bytes: int) -> bytes:
    xb = np.asarray(x, dtype=np.int8).tobytes()
    if len(xb) != input_bytes:
        raise ValueError(f"input of {len(xb)} bytes, model takes {input_bytes}")
    return xb + (struct.pack("<i", y) if np.isscalar(y) else np.asarray(y, np.int8).tobytes())


def write_job(path, input_bytes: int, steps=(), evals=(), lr: float = 0.0, cache: bool = False) -> None:
    """steps: (x int8 array, label int or int8 target array); evals: x arrays.
    cache: the steps' distinct samples are stored once and each step names
    one ("TTJC": tt_run keeps each sample's cut from its first step on)."""
    if cache:
        index, samples = [], {}
        for x, y in steps:
            index.append(samples.setdefault(_sample_bytes(x, y, input_bytes), len(samples)))
        parts = [b"TTJC", struct.pack("<IIfI", len(steps), len(evals), lr, len(samples)), *samples,
                 struct.pack(f"<{len(index)}I", *index)]
    else:
        parts = [b"TTJB", struct.pack("<IIf", len(steps), len(evals), lr)]
        parts += [_sample_bytes(x, y, input_bytes) for x, y in steps]
    for x in evals:
        parts.append(np.asarray(x, dtype=np.int8).tobytes())
    Path(path).write_bytes(b"".join(parts))


def run(exe, model: bytes, steps=(), evals=(), lr: float = 0.0, target: str = "host",
        timeout: float = 600, job: bool = True, cache: bool = False) -> Result:
    """Run tt_run on a model (and a job unless job=False) in a scratch directory.
    cache: train the steps with the frozen-prefix cache (write_job)."""
    header_ok = len(model) >= 72 and model[:4] == b"TTRN"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "tt_model.bin").write_bytes(model)
        if job:
            from .modelfile import Model
            m = Model.parse(model)
            t = m.tensors[m.header.input_tensor]
            write_job(tmp / "tt_job.bin", t.numel, steps, evals, lr, cache)
        if target == "host":
            cmd = [str(exe)]
            env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
                       UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        else:
            cmd = ["sh", str(BAREMETAL / "run-qemu.sh"), str(exe), str(tmp)]
            env = dict(os.environ, QEMU_TIMEOUT=str(int(timeout)), TARGET=target)
        p = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout + 30)
        raw = (tmp / "tt_result.bin").read_bytes() if (tmp / "tt_result.bin").exists() else b""
    if p.returncode != 0 or len(raw) < 8:
        raise RuntimeError(f"tt_run failed (exit {p.returncode}):\n{p.stdout}\n{p.stderr}")
    status, n = struct.unpack_from("<II", raw, 0)
    res = Result(status, raw[8:8 + n].decode("utf-8", "replace"), stdout=p.stdout + p.stderr)
    # qemu gives the program's output on stdout (Arm) or stderr (RISC-V semihosting console)
    out = res.stdout
    res.step_instructions = [int(v) for v in re.findall(r"^step \d+: (\d+) instructions", out, re.M)]
    res.predict_instructions = [int(v) for v in re.findall(r"^predict \d+: (\d+) instructions", out, re.M)]
    res.step_stack = [int(v) for v in re.findall(r"^step \d+: \d+ instructions, stack (\d+) bytes", out, re.M)]
    res.predict_stack = [int(v) for v in re.findall(r"^predict \d+: \d+ instructions, stack (\d+) bytes",
                                                    out, re.M)]
    res.step_ops = [[int(v) for v in line.split()] for line in re.findall(r"^ops step \d+:(.*)$", out, re.M)]
    res.predict_ops = [[int(v) for v in line.split()]
                       for line in re.findall(r"^ops predict \d+:(.*)$", out, re.M)]
    res.stack_bytes = max(res.step_stack + res.predict_stack, default=0)
    if status != 0 or not job or not header_ok:
        return res
    from .modelfile import Model
    mm = Model.parse(model)
    ncls = mm.header.n_classes
    pos = 8
    res.losses = list(np.frombuffer(raw, "<f4", len(steps), pos))
    pos += 4 * len(steps)
    for _ in evals:
        res.classes.append(struct.unpack_from("<i", raw, pos)[0])
        res.logits.append(raw[pos + 4:pos + 4 + ncls])
        pos += 4 + ncls
    res.params = raw[pos:]
    return res
