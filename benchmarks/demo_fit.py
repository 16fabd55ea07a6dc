"""Which demo models a stock MicroPython board can train: the stock qemu
boards with a FAT /flash (`make stock STOCK=... STOCK_FS=1`, the stand-ins for
a board whose firmware lacks tinytrain), each given its `.mpy` by `tinytrain
install`, then `tinytrain demo personalize --quick` and `tinytrain demo
vision --model small --quick` streamed to it over its serial line. Prints
the heap left after the install's import and each demo's outcome (its
accuracy after, or the device's one-line error), and writes JSON.

    MICROPY_DIR=<micropython> python benchmarks/demo_fit.py [--boards B ...] [--json PATH]

qemu runs without -icount here (only fitting is measured); about 3 minutes
a board.
"""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "device"), str(ROOT / "tests")]

from tinytrain import install  # noqa: E402
from tinytrain.stream import targets  # noqa: E402

# board: (qemu machine, native architecture of its .mpy, build variant)
BOARDS = {
    "MPS2_AN385": (("qemu-system-arm", "-machine", "mps2-an385"), "armv7m", "full"),
    "MPS2_AN500": (targets.MPS2_AN500, "armv7emdp", "full"),
    "VIRT_RV32": (targets.RV32_VIRT, "rv32imc", "lean"),
    "VIRT_RV32 small": (targets.RV32_VIRT, "rv32imc", "small"),
}
DEMOS = {"personalize": ["personalize", "--quick"], "vision small CNN": ["vision", "--model", "small", "--quick"]}


def run_demo(args, pty, workdir):
    r = subprocess.run([sys.executable, "-m", "tinytrain.cli", "demo", *args, "--target", pty],
                       capture_output=True, text=True, timeout=1800, cwd=workdir)
    out = r.stdout + r.stderr
    if r.returncode == 0:
        m = re.search(r"int8 on device \S+\s+([\d.]+)%\s+([\d.]+)%", out) or \
            re.search(r"^\S+\s+[\d,]+\s+\S+\s+[\d,]+\s+([\d.]+)%\s+([\d.]+)%", out, re.M)
        return {"trains": True, "before": m and float(m.group(1)), "after": m and float(m.group(2))}
    err = [line for line in out.splitlines() if line.startswith("tinytrain:")]
    return {"trains": False, "error": err[-1] if err else out.strip().splitlines()[-1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", nargs="+", default=list(BOARDS), choices=list(BOARDS))
    ap.add_argument("--json", default=str(ROOT / "build" / "bench" / "demo_fit.json"))
    args = ap.parse_args()
    import mpdevice
    from micropython_tree import resolve
    mp = resolve()
    if not mp:
        sys.exit("needs a MicroPython tree: set MICROPY_DIR (docs/micropython.md)")
    work = ROOT / "build" / "bench" / "demo_fit"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for board in args.boards:
        machine, arch, variant = BOARDS[board]
        name = board.split()[0]
        mpdevice.make("stock", mp, [f"STOCK={name}", "STOCK_FS=1"])
        mpdevice.make("natmod", mp, [f"ARCH={arch}", *install.VARIANTS[variant][1].split()])
        dev = mpdevice.Qemu(mpdevice.BUILD / f"stock-fs-{name}" / "firmware.elf", icount=False, machine=machine,
                            name=name)
        try:
            info = install.install(dev.pty, variant, say=lambda s: None)
            row = {"board": name, "mpy": f"{arch} {variant}", "heap_left": info["heap_free_after"]}
            for demo, demo_args in DEMOS.items():
                dev.mpremote("soft-reset")  # a fresh heap for each, as a user's session has
                row[demo] = run_demo(demo_args, dev.pty, work)
            rows.append(row)
        finally:
            dev.close()
        r = rows[-1]
        print(f"{r['board']:11s} {r['mpy']:16s} heap left {r['heap_left']:7,d} B  " + "  ".join(
            f"{d}: " + (f"trains ({r[d]['before']}% -> {r[d]['after']}%)" if r[d]["trains"] else r[d]["error"])
            for d in DEMOS), flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
