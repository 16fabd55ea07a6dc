"""`tinytrain install --target PORT`: put tinytrain on a stock MicroPython board.

Asks the board for its native architecture (sys.implementation._mpy), copies
the matching tinytrain.mpy (`make natmod ARCH=...` builds it into
build/natmod-ARCH/) and the stream receiver (tinytrain_stream.mpy, its
bytecode; the source tinytrain_stream.py where no build has it) into the
board's lib folder (the first sys.path entry ending in /lib, created if
absent; else /lib or /flash/lib), then imports both there and reports the GC
heap the module takes.

PORT is a serial port or pty (/dev/ttyACM0, COM3, serial:PORT, the pty of
`make qemu-rv32-pty`), or unix[:EXE] for MicroPython's unix port (its lib
folder is on this machine, ~/.micropython/lib by default).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
STREAM_SOURCE = ROOT / "micropython_modules" / "tinytrain" / "python" / "tinytrain_stream.py"

# MicroPython's native architecture numbers (py/persistentcode.h, MP_NATIVE_ARCH_*).
ARCHS = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
         "xtensa", "xtensawin", "rv32imc", "rv64imc")
# Builds a core can also load, best first (an Armv7E-M with FPU runs Armv7-M code, ...).
FALLBACK = {"armv7emdp": ("armv7emsp", "armv7m", "armv6m"), "armv7emsp": ("armv7m", "armv6m"),
            "armv7em": ("armv7m", "armv6m"), "armv7m": ("armv6m",)}
MPY_VERSION = 6  # MicroPython 1.22 and later
FILES = ("tinytrain.mpy", "tinytrain_stream.mpy")
# MicroPython imports X.py before X.mpy from one folder: installing one form of
# the receiver removes the other, so an older copy cannot shadow it.
RECEIVER_FORMS = ("tinytrain_stream.mpy", "tinytrain_stream.py")


# The .mpy builds (`make natmod`): folder suffix and make option of each.
# full: every optimised kernel; lean: without the depthwise and stem ones (for
# cores without the DSP extension: a third less code, most of the speed);
# small: the reference kernels only.
VARIANTS = {"full": ("", ""), "lean": ("-lean", " TT_OPTIMIZED=lean"), "small": ("-small", " TT_OPTIMIZED=0")}


class InstallError(Exception):
    pass


def decode_sys_mpy(sys_mpy: int) -> tuple:
    """(.mpy version, architecture name or None) from sys.implementation._mpy."""
    arch = (sys_mpy >> 10) & 0x0F
    return sys_mpy & 0xFF, ARCHS[arch] if arch < len(ARCHS) else None


def find_build(arch: str, variant: str = "full", build=BUILD) -> Path:
    """The folder with tinytrain.mpy for this architecture (or one its core runs)."""
    tried = []
    for a in (arch, *FALLBACK.get(arch, ())):
        d = Path(build) / f"natmod-{a}{VARIANTS[variant][0]}"
        if (d / "tinytrain.mpy").is_file():
            return d
        tried.append(a)
    how = "Espressif's xtensa-esp32-elf-gcc (ESP-IDF) is needed to build it; " if arch == "xtensawin" else ""
    raise InstallError(f"no tinytrain.mpy for {arch} in {build}: {how}build it with "
                       f"`make natmod ARCH={arch}{VARIANTS[variant][1]} MICROPY_DIR=...` "
                       f"(looked for {', '.join(tried)})")


def _files(build_dir: Path) -> dict:
    stream = build_dir / "tinytrain_stream.mpy"
    receiver = ("tinytrain_stream.mpy", stream) if stream.is_file() else ("tinytrain_stream.py", STREAM_SOURCE)
    return {"tinytrain.mpy": (build_dir / "tinytrain.mpy").read_bytes(), receiver[0]: receiver[1].read_bytes()}


def _stale(files: dict) -> list:
    """The receiver's other form, to be removed from the lib folder."""
    return [n for n in RECEIVER_FORMS if n not in files]


# Run on the board: its _mpy, then a writable lib folder (created if absent).
PROBE = """
import sys, os
print('MPY', sys.implementation._mpy)
def _tt_lib():
    for d in [p for p in sys.path if p.endswith('/lib')] + ['/lib', '/flash/lib']:
        path = ''
        try:
            for part in d.strip('/').split('/'):
                path += '/' + part
                try:
                    os.mkdir(path)
                except OSError:
                    pass
            f = open(d + '/.tt_probe', 'w')
            f.write('x')
            f.close()
            os.remove(d + '/.tt_probe')
            return d
        except OSError:
            pass
    return ''
print('LIB', _tt_lib(), 'IN_PATH' if _tt_lib() in sys.path else 'NOT_IN_PATH')
"""

# Run on the board after copying: the import, and what it cost the GC heap.
CHECK = """
import sys, gc
if LIB not in sys.path:
    sys.path.append(LIB)
gc.collect()
_a = gc.mem_free()
import tinytrain, tinytrain_stream
gc.collect()
print('CHECK', _a, gc.mem_free(), hasattr(tinytrain, '__file__'), tinytrain.Trainer.__name__)
"""


# Run on the board: the filesystem's free bytes and block size at LIB, and the
# bytes the files about to be replaced hold now.
ROOM = """
import os
_s = os.statvfs(%r)
_old = 0
for _p in %r:
    try:
        _old += os.stat(_p)[6]
    except OSError:
        pass
print('ROOM', _s[0] * _s[3], _s[0], _old)
"""


def _check_room(out: str, files: dict, lib: str, variant: str, arch: str) -> None:
    """Refuse before writing when the files cannot fit (a half-written .mpy
    would be worse than the old one)."""
    free, block, old = map(int, _parse(out, "ROOM"))
    # each file ends in a partly filled block; what the old copies hold comes back
    need = sum(-(-len(d) // block) * block for d in files.values())
    if need > free + old:
        how = ("" if variant == "small" else f"the build without the optimised kernels (--small, `make natmod "
               f"ARCH={arch} TT_OPTIMIZED=0`) is about half the size; ")
        raise InstallError(f"{lib} has {free + old} bytes free (counting the copies being replaced), the "
                           f"files need {need}: {how}or free space on the board, or use a lib folder on an SD card")


def _parse(out: str, key: str) -> list:
    for line in out.splitlines():
        if line.startswith(key + " "):
            return line.split()[1:]
    raise InstallError(f"the board did not answer as expected:\n{out.strip()}")


def _report(arch, build_dir, lib, check_out, in_path, say) -> dict:
    before, after, has_file, _ = _parse(check_out, "CHECK")
    info = {"arch": arch, "build": str(build_dir), "lib": lib, "heap_free_before": int(before),
            "heap_free_after": int(after), "module_heap_bytes": int(before) - int(after)}
    if has_file != "True":
        raise InstallError(f"copied to {lib}, but this firmware has tinytrain built in, which shadows the "
                           ".mpy: nothing to install on it")
    say(f"installed {build_dir / 'tinytrain.mpy'} ({arch}) and the stream receiver into {lib}")
    say(f"import tinytrain takes {info['module_heap_bytes']} bytes of GC heap; "
        f"{info['heap_free_after']} bytes are left for a model and its arena")
    if not in_path:
        say(f"note: {lib} is not in sys.path at boot: add `import sys; sys.path.append('{lib}')` to boot.py")
    return info


def install_unix(exe: str, variant: str = "full", build=BUILD, say=print) -> dict:
    """The unix port: its lib folder is on this machine."""
    exe = shutil.which(exe) or exe

    def run(code):
        p = subprocess.run([exe, "-c", code], capture_output=True, text=True, timeout=120)
        if p.returncode:
            raise InstallError(f"{exe} failed:\n{p.stdout}{p.stderr}")
        return p.stdout

    out = run("import sys\nprint('MPY', sys.implementation._mpy)\n"
              "print('LIB', [p for p in sys.path if p.endswith('/lib')][0])")
    version, arch = decode_sys_mpy(int(_parse(out, "MPY")[0]))
    if version != MPY_VERSION:
        raise InstallError(f".mpy version {version} on the board; tinytrain's .mpy is version {MPY_VERSION}")
    build_dir = find_build(arch, variant, build)
    lib = Path(_parse(out, "LIB")[0])
    lib.mkdir(parents=True, exist_ok=True)
    files = _files(build_dir)
    for name in _stale(files):
        (lib / name).unlink(missing_ok=True)
    for name, data in files.items():
        (lib / name).write_bytes(data)
    return _report(arch, build_dir, str(lib), run(f"LIB = {str(lib)!r}\n" + CHECK), True, say)


def install_serial(port: str, variant: str = "full", build=BUILD, say=print) -> dict:
    """A board on a serial port or pty, through mpremote's raw REPL."""
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    try:
        tr = SerialTransport(port, baudrate=115200)
    except Exception as e:  # mpremote wraps pyserial's errors
        raise InstallError(f"cannot open {port}: {e}") from None
    try:
        tr.enter_raw_repl(soft_reset=True)
        out = tr.exec(PROBE).decode(errors="replace")
        version, arch = decode_sys_mpy(int(_parse(out, "MPY")[0]))
        if version != MPY_VERSION:
            raise InstallError(f".mpy version {version} on the board; tinytrain's .mpy is version {MPY_VERSION}")
        build_dir = find_build(arch, variant, build)
        lib_fields = _parse(out, "LIB")
        if len(lib_fields) < 2:
            raise InstallError(f"the board ({arch}) has no writable filesystem for a lib folder (stock qemu "
                               "firmware has none): use a firmware with tinytrain built in, or `mpremote mount`")
        lib, in_path = lib_fields[0], lib_fields[1] == "IN_PATH"
        files = _files(build_dir)
        tr.exec("import os\nfor p in %r:\n try: os.remove(p)\n except OSError: pass" %
                ([f"{lib}/{n}" for n in _stale(files)],))
        _check_room(tr.exec(ROOM % (lib, [f"{lib}/{n}" for n in files])).decode(errors="replace"),
                    files, lib, variant, arch)
        for name, data in files.items():
            say(f"copying {name} ({len(data)} bytes) to {lib}/{name}")
            tr.fs_writefile(f"{lib}/{name}", data)
        check = tr.exec(f"LIB = {lib!r}\n" + CHECK).decode(errors="replace")
        tr.exit_raw_repl()
        return _report(arch, build_dir, lib, check, in_path, say)
    except TransportError as e:
        raise InstallError(f"{port}: {e}") from None
    finally:
        tr.close()


def install(target: str, variant: str = "full", build=BUILD, say=print) -> dict:
    """variant: "full", "lean" or "small" (VARIANTS)."""
    if variant not in VARIANTS:
        raise InstallError(f"unknown build {variant!r}: {', '.join(VARIANTS)}")
    if target == "unix" or target.startswith("unix:"):
        return install_unix(target[5:] or "micropython", variant, build, say)
    port = target[len("serial:"):] if target.startswith("serial:") else target
    return install_serial(port, variant, build, say)


def add_command(sub) -> None:
    p = sub.add_parser("install", help="install the tinytrain .mpy and the stream receiver on a MicroPython board",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True,
                   help="a serial port or pty (/dev/ttyACM0, COM3, serial:PORT), or unix[:EXE] for the unix port")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--small", action="store_const", dest="variant", const="small", default="full",
                      help="the build without the optimised kernels (make natmod TT_OPTIMIZED=0): least heap, "
                           "slowest")
    kind.add_argument("--lean", action="store_const", dest="variant", const="lean",
                      help="the build without the optimised depthwise and stem kernels (make natmod "
                           "TT_OPTIMIZED=lean): for cores without the DSP extension (RISC-V, Cortex-M0/M3)")
    p.add_argument("--build", default=str(BUILD), help="where the natmod-ARCH folders are (default: build/)")
    p.set_defaults(fn=_cmd)


def _cmd(args) -> int:
    import sys
    try:
        install(args.target, args.variant, Path(args.build))
    except InstallError as e:
        print(f"tinytrain install: {e}", file=sys.stderr)
        return 1
    return 0
