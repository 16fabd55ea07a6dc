"""tinytrain on stock MicroPython (no module built in): the .mpy of each
buildable architecture, put there by `tinytrain install` where the firmware
has a filesystem (the unix port; the stock qemu firmwares built with a FAT
/flash, as every real board has one) or served by `mpremote mount` where it
has none (the stock qemu firmwares as MicroPython builds them), trains bit for
bit as the simulator does; on the boards with a filesystem `mpremote mip
install` installs the same files and a `tinytrain stream` session runs through
the installed receiver.

Needs a MicroPython tree (MICROPY_DIR); builds the stock ports (`make stock STOCK=...`) and the
.mpy files (`make natmod ARCH=...`) with the project's Makefile."""
import contextlib
import functools
import http.server
import platform
import shutil
import subprocess
import threading

import pytest

from conftest import MICROPY_DIR, SKIP_REASON  # noqa: E402

if not MICROPY_DIR:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from tinytrain import install  # noqa: E402
from tinytrain.stream import connect, targets  # noqa: E402
from tinytrain.stream.session import LinkError, StreamError  # noqa: E402

import mpdevice  # noqa: E402
from test_micropython import host_run, prepare, report  # noqa: E402
from test_stream import clean_run, f32, make, saved_blob  # noqa: E402

# stock qemu board: (qemu machine, native architecture the board reports)
QEMU_BOARDS = {
    "VIRT_RV32": (targets.RV32_VIRT, "rv32imc"),
    "MPS2_AN500": (targets.MPS2_AN500, "armv7emdp"),
    # (MicroPython's qemu port builds its Cortex-M3 board as armv7em; install
    # then takes the armv7m build, which that core runs)
    "MPS2_AN385": (("qemu-system-arm", "-machine", "mps2-an385"), "armv7em"),
}
# the .mpy each is given: the board's own architecture (what install picks
# first; test_mip.py installs the F746's armv7emsp build on the AN500). The
# rv32imc build with every optimised kernel (104 KB) leaves VIRT_RV32's 134 KiB
# heap too little for a model: that board takes the lean build (without the
# optimised depthwise and stem kernels, 72 KB).
MPY_FOR = {"VIRT_RV32": "rv32imc", "MPS2_AN500": "armv7emdp", "MPS2_AN385": "armv7m"}
VARIANT_FOR = {"VIRT_RV32": "lean"}
# An Arm MicroPython loads a .mpy of its own or any older Arm architecture:
# the armv6m build (RP2040's Cortex-M0+; no qemu board of that core has the
# RAM for a model) runs its Thumb-1 code on the Cortex-M3 too, and the
# armv7emsp one (STM32F4/F7, RP2350, nRF52: no qemu board of those) on the
# double-precision Cortex-M7.
ALSO_MPY_FOR = {"MPS2_AN385": ("armv6m",), "MPS2_AN500": ("armv7emsp",)}


def natmod(arch, variant="full"):
    suffix, option = install.VARIANTS[variant]
    mpdevice.make("natmod", MICROPY_DIR, [f"ARCH={arch}", *option.split()])
    return mpdevice.BUILD / f"natmod-{arch}{suffix}"


@pytest.fixture(scope="module", params=sorted(QEMU_BOARDS))
def stock_qemu(request):
    board = request.param
    mpdevice.make("stock", MICROPY_DIR, [f"STOCK={board}"])
    dev = mpdevice.Qemu(mpdevice.BUILD / f"stock-{board}" / "firmware.elf", machine=QEMU_BOARDS[board][0],
                        name=f"stock-{board}")
    dev.board = board
    yield dev
    dev.close()


# the unix port as built for this machine and as a 32-bit x86 program: (make
# stock STOCK=..., the architecture it reports and install picks)
UNIX_PORTS = {"unix": "x64", "unix32": "x86"}


@pytest.fixture(params=sorted(UNIX_PORTS))
def stock_unix(request):
    port = request.param
    if port == "unix32" and platform.machine() != "x86_64":
        pytest.skip("the 32-bit x86 unix port is built on x86-64 machines only")
    mpdevice.make("stock", MICROPY_DIR, [f"STOCK={port}"])
    return mpdevice.BUILD / f"stock-{port}" / "micropython", UNIX_PORTS[port]


def assert_stream_session_matches_simulator(target, tmp_path):
    """A `tinytrain stream` session on target (40 samples, mlp): the
    simulator's losses, hits and parameter file."""
    model, samples = make("mlp", "full_residue", n=40)
    with connect(target, model) as c:
        st = c.session.train(samples)
        blob = c.session.params_file()
        c.end()
    t, losses, hits = clean_run(model, samples)
    assert f32(st.losses) == f32(losses) and st.hits == hits
    assert blob == saved_blob(t, tmp_path)


@contextlib.contextmanager
def http_folder(folder):
    """A local web server for folder (mip on the unix port fetches over HTTP)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_unix_install_then_train(stock_unix, tmp_path, monkeypatch):
    """`tinytrain install --target unix:EXE` on the stock unix port (64-bit,
    and 32-bit x86): the board's .mpy and the stream receiver land in
    ~/.micropython/lib and import from there; training then matches the
    simulator bit for bit; a `tinytrain stream --target unix:EXE` session
    runs through the installed receiver; and the port's own `micropython -m
    mip install URL/package.json` installs the same files again."""
    exe, arch = stock_unix
    build = natmod(arch)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    lib = tmp_path / "home" / ".micropython" / "lib"
    lib.mkdir(parents=True)
    # an older install's source form would be imported before the bytecode
    (lib / "tinytrain_stream.py").write_text("raise ImportError('stale receiver')\n")
    said = []
    info = install.install(f"unix:{exe}", say=said.append)
    assert info["arch"] == arch and info["lib"] == str(lib)
    assert (lib / "tinytrain.mpy").read_bytes() == (build / "tinytrain.mpy").read_bytes()
    assert (lib / "tinytrain_stream.mpy").is_file() and not (lib / "tinytrain_stream.py").exists()
    assert info["module_heap_bytes"] > 0
    work = tmp_path / "work"
    work.mkdir()
    prepare(work, "cnn", "full", steps=8)
    got = mpdevice.Unix(exe).run("train_dump.py", work)
    assert got.splitlines() == host_run("train_dump.py", work).splitlines()

    assert_stream_session_matches_simulator(f"unix:{exe}", tmp_path)

    names = ("tinytrain.mpy", "tinytrain_stream.mpy")
    for n in names:
        (lib / n).unlink()
    with http_folder(build) as url:
        r = subprocess.run([str(exe), "-m", "mip", "install", f"{url}/package.json"], capture_output=True,
                           text=True, timeout=120)
    assert r.returncode == 0 and "Done" in r.stdout, r.stdout + r.stderr
    assert all((lib / n).read_bytes() == (build / n).read_bytes() for n in names)


def test_unix_stream_target_says_what_is_missing(stock_unix, tmp_path, monkeypatch):
    """A unix port without the receiver installed, or no port at all: one
    line that says what to do, not a hang or a traceback."""
    exe, _ = stock_unix
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    model, _ = make("mlp", "full_residue", n=4)
    with pytest.raises(LinkError, match=r"tinytrain_stream.*install it with `tinytrain install --target unix:"):
        connect(f"unix:{exe}", model)
    with pytest.raises(StreamError, match="no MicroPython unix port"):
        connect(f"unix:{tmp_path / 'no-such-micropython'}", model)


def test_stock_qemu_mpy(stock_qemu, tmp_path):
    """The board reports the architecture install expects; `tinytrain install`
    says clearly that it has no filesystem; the .mpy served from the host
    trains bit-identically to the simulator."""
    machine, arch = QEMU_BOARDS[stock_qemu.board]
    out = stock_qemu.mpremote("exec", "import sys; print('MPY', sys.implementation._mpy)")
    version, got_arch = install.decode_sys_mpy(int(out.split("MPY")[1].split()[0]))
    assert (version, got_arch) == (install.MPY_VERSION, arch)
    variant = VARIANT_FOR.get(stock_qemu.board, "full")
    build = natmod(MPY_FOR[stock_qemu.board], variant)  # built first: install looks for it before the board's lib folder
    with pytest.raises(install.InstallError, match="no writable filesystem"):
        install.install(stock_qemu.pty, variant, say=lambda s: None)
    prepare(tmp_path, "cnn", "full", steps=8)
    want = host_run("train_dump.py", tmp_path).splitlines()
    for mpy_arch in (MPY_FOR[stock_qemu.board], *ALSO_MPY_FOR.get(stock_qemu.board, ())):
        build = natmod(mpy_arch, variant)
        shutil.copy(build / "tinytrain.mpy", tmp_path / "tinytrain.mpy")
        out = stock_qemu.mpremote("exec", "import gc; gc.collect(); a = gc.mem_free(); import tinytrain; "
                                  "gc.collect(); print('HEAP', a, gc.mem_free())", workdir=tmp_path)
        before, after = map(int, out.split("HEAP")[1].split()[:2])
        assert before > after
        report(f"stock {stock_qemu.board} ({mpy_arch}.mpy, {(build / 'tinytrain.mpy').stat().st_size} B): "
               f"import takes {before - after} B of GC heap, {after} B left (mpremote mount's helper loaded)")
        got = stock_qemu.run("train_dump.py", tmp_path, timeout=300)
        (tmp_path / "tinytrain.mpy").unlink()
        assert got.splitlines() == want, mpy_arch


def test_install_over_serial_finds_the_built_in_module(qemu):
    """Through the raw REPL (the path real boards take): the files land in the
    firmware's writable /flash/lib, and install then refuses to call it done,
    because the module built into this firmware shadows the .mpy."""
    natmod("armv7emdp", "small")  # the build with the optimised kernels and the receiver fill a 96 KiB FAT
    with pytest.raises(install.InstallError, match="built in"):
        install.install(qemu.pty, "small", say=lambda s: None)
    out = qemu.mpremote("exec", "import os; print('LS', sorted(os.listdir('/flash/lib')))")
    assert "'tinytrain.mpy'" in out and "'tinytrain_stream.mpy'" in out


def test_install_refuses_what_the_filesystem_cannot_hold(qemu, tmp_path):
    """A .mpy larger than the board's free space is refused before a byte is
    written, with the sizes and the way out; what was installed stays."""
    def installed_size():
        return qemu.mpremote("exec", "import os\ntry: print('OLD', os.stat('/flash/lib/tinytrain.mpy')[6])\n"
                             "except OSError: print('OLD none')").split("OLD")[1].split()[0]

    before = installed_size()
    build = tmp_path / "natmod-armv7emdp"
    build.mkdir()
    (build / "tinytrain.mpy").write_bytes(bytes(200 * 1024))  # more than the whole 96 KiB /flash
    with pytest.raises(install.InstallError, match=r"bytes free .* the files need \d+: the build without"):
        install.install(qemu.pty, build=tmp_path, say=lambda s: None)
    assert installed_size() == before


@pytest.fixture(scope="module", params=sorted(QEMU_BOARDS) + [f"{b} {a}" for b, archs in ALSO_MPY_FOR.items()
                                                                for a in archs])
def stock_fs_qemu(request):
    """The stock firmware with a 1 MiB FAT /flash (`make stock STOCK_FS=1`);
    "BOARD ARCH": that board given ARCH's .mpy (the only build there is)."""
    board, _, arch = request.param.partition(" ")
    mpdevice.make("stock", MICROPY_DIR, [f"STOCK={board}", "STOCK_FS=1"])
    dev = mpdevice.Qemu(mpdevice.BUILD / f"stock-fs-{board}" / "firmware.elf", machine=QEMU_BOARDS[board][0],
                        name=f"stock-fs-{board}")
    dev.board, dev.mpy_arch = board, arch or MPY_FOR[board]
    yield dev
    dev.close()


def test_stock_board_with_a_filesystem(stock_fs_qemu, tmp_path):
    """A board whose firmware lacks tinytrain, with a filesystem: `tinytrain
    install` finds the board's build (on the Cortex-M3 also the armv6m one,
    RP2040's) and puts it and the receiver in /flash/lib; imported from there it trains bit for bit as the simulator;
    `mpremote mip install` (no --target: /flash/lib is on sys.path) installs
    the same files again; a `tinytrain stream` session, started through the
    installed receiver, gives the simulator's losses and parameter file."""
    dev = stock_fs_qemu
    variant = VARIANT_FOR.get(dev.board, "full")
    build = natmod(dev.mpy_arch, variant)
    names = ("tinytrain.mpy", "tinytrain_stream.mpy")
    want = mpdevice.sizes_and_crcs(build, names)
    said = []
    if dev.mpy_arch == MPY_FOR[dev.board]:
        root = mpdevice.BUILD
    else:  # a folder with only this build: install falls back to it, as for a user who has no other
        root = tmp_path.parent / f"{tmp_path.name}-builds"  # (not in the folder mounted on the board)
        root.mkdir()
        (root / build.name).symlink_to(build)
    info = install.install(dev.pty, variant, build=root, say=said.append)
    assert info["lib"] == "/flash/lib" and info["build"] == str(root / build.name), info
    assert dev.file_sizes_and_crcs("/flash/lib", names) == want
    report(f"stock {dev.board} with /flash: `tinytrain install` put {dev.mpy_arch}"
           f"{'' if variant == 'full' else f' ({variant})'} in /flash/lib, {info['heap_free_after']} B of GC heap left")

    prepare(tmp_path, "cnn", "full", steps=8)  # (no .mpy in the mounted folder: the import is /flash/lib's)
    got = dev.run("train_dump.py", tmp_path, timeout=300)
    assert got.splitlines() == host_run("train_dump.py", tmp_path).splitlines()

    dev.mpremote("exec", "import os\nfor n in %r: os.remove('/flash/lib/' + n)" % (list(names),))
    assert set(dev.file_sizes_and_crcs("/flash/lib", names).values()) == {("none",)}
    out = dev.mpremote("mip", "install", str(build / "package.json"))
    assert "Installing: /flash/lib/tinytrain.mpy" in out, out
    assert dev.file_sizes_and_crcs("/flash/lib", names) == want

    # a fresh boot's heap, as a user's session has: the import needs the
    # module's size in one piece (78 KB for the full Cortex-M7 build of a
    # 140 KiB heap), which the steps above may have cut up
    dev.mpremote("soft-reset")
    assert_stream_session_matches_simulator(dev.pty, tmp_path)
