"""Running MicroPython scripts on the unix port and on the qemu Cortex-M7.

Both take a script (a file in tests/device/mp/) and a working directory with
its input files, and return what the script printed. On the unix port the
script runs as `micropython script.py` inside the directory; on qemu the
firmware runs on a pseudo-terminal and mpremote mounts the directory
(`mpremote mount`, the board sees it as /remote, writable) and runs the script.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
UNIX_EXE = BUILD / "unix" / "micropython"
QEMU_ELF = BUILD / "qemu-MPS2_AN500" / "firmware.elf"
QEMU_RV32_ELF = BUILD / "qemu-VIRT_RV32" / "firmware.elf"
SCRIPTS = Path(__file__).resolve().parent / "mp"


class DeviceError(AssertionError):
    pass


def make(target: str, micropy_dir: str, extra=(), check: bool = True,
         builds: bool = True) -> subprocess.CompletedProcess | None:
    """Run a target of the project's Makefile (make unix, make qemu, ...);
    make's up-to-date checks make a second call cheap, so each port is built
    once per tree and reused. TINYTRAIN_DEVICE_NO_BUILD=1 uses the builds in
    build/ as they are: a target that `builds` is then not run (returns None).
    check=False returns a failed run instead of raising."""
    if builds and os.environ.get("TINYTRAIN_DEVICE_NO_BUILD") == "1":
        return None
    env = dict(os.environ, MICROPY_DIR=micropy_dir)
    r = subprocess.run(["make", "-j2", target, *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode:
        raise RuntimeError(f"make {target} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def script_path(script) -> Path:
    """A script of mp/ by name, or any script by absolute path."""
    return Path(script) if os.path.isabs(script) else SCRIPTS / script


def _check(out: str, what: str) -> str:
    if "Traceback (most recent call last)" in out:
        raise DeviceError(f"{what} raised:\n{out}")
    return out


class Unix:
    name = "unix"

    def __init__(self, exe: Path = UNIX_EXE):
        self.exe = Path(exe)

    def run(self, script, workdir: Path, timeout: float = 300) -> str:
        path = script_path(script)
        if path.parent != Path(workdir):
            shutil.copy(path, Path(workdir) / path.name)
        r = subprocess.run([str(self.exe), path.name], cwd=workdir, capture_output=True, text=True,
                           timeout=timeout)
        out = r.stdout + r.stderr
        if r.returncode:
            raise DeviceError(f"{script} exited with {r.returncode}:\n{out}")
        return _check(r.stdout, script)

    def close(self) -> None:
        pass


def sizes_and_crcs(folder: Path, names) -> dict:
    """The same figures of files on this machine (Qemu.file_sizes_and_crcs)."""
    return {n: (str(len(d)), str(zlib.crc32(d))) for n in names for d in [(Path(folder) / n).read_bytes()]}


class Qemu:
    """qemu-system-arm -machine mps2-an500 with the REPL on a pty, driven by mpremote.

    -icount shift=0 makes every instruction take 1 ns of virtual time, so
    time.ticks_us() counts instructions (deterministic)."""

    name = "qemu"

    def __init__(self, elf: Path = QEMU_ELF, icount: bool = True, machine=None, name: str = "qemu"):
        """machine: the qemu command and machine options (default the MPS2-AN500)."""
        from tinytrain.stream import targets  # the same launcher tinytrain stream uses
        self.name = name
        self.qemu = targets.QemuProcess(elf, extra=("-icount", "shift=0") if icount else (),
                                        machine=machine or targets.MPS2_AN500)
        self.pty = self.qemu.pty

    def mpremote(self, *args: str, workdir: Path | None = None, timeout: float = 300) -> str:
        cmd = ["mpremote", "connect", self.pty]
        if workdir is not None:
            cmd += ["mount", str(workdir)]
        cmd += list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        out = r.stdout + r.stderr
        if r.returncode:
            raise DeviceError(f"{' '.join(cmd)} exited with {r.returncode}:\n{out}")
        return _check(out, " ".join(args))

    def run(self, script, workdir: Path, timeout: float = 300) -> str:
        out = self.mpremote("run", str(script_path(script)), workdir=workdir, timeout=timeout)
        # mpremote's own line when it mounts the directory
        return "".join(l for l in out.splitlines(True) if not l.startswith("Local directory "))

    def file_sizes_and_crcs(self, folder: str, names) -> dict:
        """{name: (length, crc32) as text, or ("none",) where the file is absent}."""
        # read in pieces: a board's heap may not hold an 80 KB file in one
        out = self.mpremote("exec", "import binascii\nb = bytearray(4096)\nfor n in %r:\n"
                            " try: f = open(%r + '/' + n, 'rb')\n"
                            " except OSError: print('F', n, 'none'); continue\n"
                            " size = crc = 0\n"
                            " while True:\n"
                            "  k = f.readinto(b)\n"
                            "  if not k: break\n"
                            "  size += k; crc = binascii.crc32(memoryview(b)[:k], crc)\n"
                            " f.close(); print('F', n, size, crc)" % (list(names), folder))
        return {f[1]: tuple(f[2:]) for f in (line.split() for line in out.splitlines()) if f and f[0] == "F"}

    def close(self) -> None:
        self.qemu.close()
