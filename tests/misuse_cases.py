"""The API misuse table: one row per way a user can call the Trainer wrongly,
with the exception and message both the host simulator and the board raise.

tests/test_misuse.py runs every row on the host (CPython + the simulator);
tests/device/test_misuse_device.py runs the rows not marked host-only on the
MicroPython unix port and on qemu, and compares with the host line by line.

A row is Case(name, call, exc, fragment, setup, after, host_only):
- setup: statements run first; every row starts with a fresh Trainer `t` of
  model.ttm (softmax cross-entropy), `n` its input bytes, `x = bytes(n)`,
  `ncls` its classes; `mse_model` is an MSE model's bytes;
- call: the one statement that misuses the API;
- exc: the exception type's name, or None when the call must succeed;
  fragment: a part of its message (OSError: its errno);
- after: statements that check what the call left behind (the trainer
  unchanged, no file left over); they raise AssertionError through check().
The rows are turned into one script (script()) that runs unchanged under
CPython and MicroPython and prints "name|type|message" per row.
"""
import subprocess
import sys
from collections import namedtuple

Case = namedtuple("Case", "name call exc fragment setup after host_only")


def R(name, call, exc, fragment="", setup="", after="", host_only=False):
    return Case(name, call, exc, fragment, setup, after, host_only)


KEEPS = "check(t.params() == p, 'parameters kept'); t.step(x, 1)"  # the current Trainer still works
NO_STEP = "check(t.info()['steps'] == 0, 'no step applied')"

CASES = [
    # -- Trainer(model, lr, arena_size) ------------------------------------
    R("model int", "tinytrain.Trainer(12)", "TypeError",
      "model must be bytes, bytearray, memoryview or a file path, not int"),
    R("model None", "tinytrain.Trainer(None)", "TypeError", "file path, not NoneType"),
    R("model empty", "tinytrain.Trainer(b'')", "ValueError", "(truncated)"),
    R("model zeros", "tinytrain.Trainer(bytes(256))", "ValueError", "(magic)"),
    R("model truncated", "tinytrain.Trainer(model[:len(model) // 2])", "ValueError", "(truncated)"),
    R("model path missing", "tinytrain.Trainer('no_such_model.ttm')", "OSError", "errno 2"),
    R("lr str", "tinytrain.Trainer(model, lr='0.1')", "TypeError", "lr must be a number or None, not str"),
    R("lr bool", "tinytrain.Trainer(model, lr=True)", "TypeError", "lr must be a number or None, not bool"),
    R("lr nan", "tinytrain.Trainer(model, lr=float('nan'))", "ValueError", "lr must be a finite number > 0"),
    R("lr inf", "tinytrain.Trainer(model, lr=float('inf'))", "ValueError", "lr must be a finite number > 0"),
    R("lr -inf", "tinytrain.Trainer(model, lr=float('-inf'))", "ValueError", "lr must be a finite number > 0"),
    R("lr zero", "tinytrain.Trainer(model, lr=0)", "ValueError", "lr must be a finite number > 0"),
    R("lr negative", "tinytrain.Trainer(model, lr=-1.0)", "ValueError", "lr must be a finite number > 0"),
    R("lr beyond float32", "tinytrain.Trainer(model, lr=1e39)", "ValueError", "lr must be a finite number > 0"),
    R("lr int", "u = tinytrain.Trainer(model, lr=1)", None, after="check(u.info()['lr'] == 1.0, 'lr 1')"),
    R("lr numpy float32", "u = tinytrain.Trainer(model, lr=np.float32(0.25))", None,
      setup="import numpy as np", after="check(u.info()['lr'] == 0.25, 'lr 0.25')", host_only=True),
    R("refused lr keeps trainer", "tinytrain.Trainer(model, lr=float('nan'))", "ValueError", "finite",
      setup="t.step(x, 1); p = t.params()", after=KEEPS),
    R("refused arena_size keeps trainer", "tinytrain.Trainer(model, arena_size='big')", "TypeError",
      "arena_size must be an int or None, not str", setup="t.step(x, 1); p = t.params()", after=KEEPS),
    R("refused model keeps trainer", "tinytrain.Trainer(model[:100])", "ValueError", "(truncated)",
      setup="t.step(x, 1); p = t.params()", after=KEEPS),
    R("arena_size float", "tinytrain.Trainer(model, arena_size=1e6)", "TypeError",
      "arena_size must be an int or None, not float"),
    R("arena_size negative", "tinytrain.Trainer(model, arena_size=-1)", "ValueError", "arena_size must be >= 0"),
    R("arena_size small", "tinytrain.Trainer(model, arena_size=100)", "MemoryError", "100 available (nomem)",
      setup="t.step(x, 1); p = t.params()", after=KEEPS),
    # -- step(x, label, *, out) --------------------------------------------
    R("x str", "t.step('a' * n, 0)", "TypeError", "x must be a buffer of int8 values (bytes"),
    R("x int", "t.step(12, 0)", "TypeError", "x must be a buffer of int8 values, not int"),
    R("x list", "t.step([0] * n, 0)", "TypeError", "x must be a buffer of int8 values, not list"),
    R("x array h", "t.step(array('h', [0] * n), 0)", "TypeError", "x must hold 1-byte int8 elements, got format 'h'"),
    R("x short", "t.step(bytes(n - 1), 0)", "ValueError", "bytes, the model takes"),
    R("x long", "t.step(bytearray(n + 1), 0)", "ValueError", "bytes, the model takes"),
    R("label high", "t.step(x, ncls)", "ValueError", "outside [0, "),
    R("label negative", "t.step(x, -1)", "ValueError", "label -1 outside [0, "),
    R("label huge", "t.step(x, 1 << 40)", "ValueError", "label 1099511627776 outside"),
    R("label float", "t.step(x, 1.0)", "TypeError", "label must be an int class index, not float"),
    R("label bool", "t.step(x, True)", "TypeError", "label must be an int class index, not bool"),
    R("label str", "t.step(x, '1')", "TypeError", "label must be an int class index, not str"),
    R("label missing", "t.step(x)", "TypeError", "label must be an int class index, not bytes"),
    R("out empty array", "t.step(x, 1, out=array('f'))", "TypeError",
      "out must be a writable array('f') of at least one element", after=NO_STEP),
    R("out array d", "t.step(x, 1, out=array('d', [0]))", "TypeError", "out must be a writable array('f')",
      after=NO_STEP),
    R("out list", "t.step(x, 1, out=[0.0])", "TypeError", "out must be a writable array('f')", after=NO_STEP),
    R("out bytes", "t.step(x, 1, out=bytes(4))", "TypeError", "out must be a writable array('f')", after=NO_STEP),
    R("out bytearray", "t.step(x, 1, out=bytearray(4))", "TypeError", "out must be a writable array('f')",
      after=NO_STEP),
    R("out bad label first", "t.step(x, ncls, out=array('f'))", "ValueError", "outside [0, ", after=NO_STEP),
    R("out ok", "t.step(x, 1, out=o)", None, setup="o = array('f', [0])",
      after="check(o[0] > 0, 'loss written'); check(t.info()['steps'] == 1, 'one step')"),
    # -- predict, logits ---------------------------------------------------
    R("predict array i", "t.predict(array('i', [0] * n))", "TypeError", "got format 'i'"),
    R("predict empty", "t.predict(b'')", "ValueError", "x has 0 bytes, the model takes"),
    R("predict None means slot", "c = t.predict(None)", None, after="check(0 <= c < ncls, 'a class')"),
    R("logits short", "t.logits(bytes(3))", "ValueError", "x has 3 bytes, the model takes"),
    # -- evaluate(xs, labels) ----------------------------------------------
    R("evaluate ragged", "t.evaluate(bytes(n + 1), [0])", "ValueError", "not a multiple of the input size"),
    R("evaluate count", "t.evaluate(bytes(2 * n), [0])", "ValueError", "2 inputs but 1 labels"),
    R("evaluate empty", "t.evaluate(b'', [])", "ValueError", "evaluate needs at least one input"),
    R("evaluate xs str", "t.evaluate('ab', [0])", "TypeError", "xs must be a buffer of int8 values"),
    R("evaluate labels str", "t.evaluate(x, 'a')", "TypeError", "label must be an int class index, not str"),
    R("evaluate label float", "t.evaluate(x, [1.5])", "TypeError", "label must be an int class index, not float"),
    R("evaluate label bool", "t.evaluate(x, [True])", "TypeError", "label must be an int class index, not bool"),
    R("evaluate label high", "t.evaluate(x, [ncls])", "ValueError", "outside [0, "),
    R("evaluate label negative", "t.evaluate(x, [-1])", "ValueError", "label -1 outside [0, "),
    R("evaluate labels int", "t.evaluate(x, 5)", "TypeError",
      "labels must be an iterable of int class indices, not int"),
    R("evaluate labels resize xs", "t.evaluate(xs, grow())", "ValueError", "4 inputs but 2 labels",
      setup="xs = bytearray(2 * n)\n"
            "def grow():\n"
            "    xs.extend(bytes(2 * n))\n"
            "    yield 0\n"
            "    yield 1"),
    R("evaluate labels raise", "t.evaluate(bytes(2 * n), boom())", "RuntimeError", "boom",
      setup="def boom():\n"
            "    yield 0\n"
            "    raise RuntimeError('boom')"),
    R("evaluate ok", "a = t.evaluate(bytes(2 * n), bytes([0, 1]))", None, after="check(0 <= a <= 1, 'accuracy')"),
    # -- save, load ----------------------------------------------------------
    R("save int path", "t.save(123)", "TypeError", "path must be a str, not int"),
    R("save empty path", "t.save('')", "ValueError", "path must not be empty", after="check('.tmp' not in os.listdir(), 'no .tmp')"),
    R("save to a folder", "t.save('adir')", "OSError", "errno 21",
      setup="try:\n    os.mkdir('adir')\nexcept OSError:\n    pass",
      after="check('adir.tmp' not in os.listdir(), 'no adir.tmp')"),
    R("save then load", "t.save('p.ttp')", None, setup="t.step(x, 1); p = t.params()",
      after="t.step(x, 1); t.load('p.ttp'); check(t.params() == p, 'restored'); "
            "check('p.ttp.tmp' not in os.listdir(), 'no .tmp')"),
    R("load a model file", "t.load('model.ttm')", "ValueError", "not a tinytrain parameter file"),
    R("load missing", "t.load('no_such.ttp')", "OSError", "errno 2"),
    R("load int", "t.load(12)", "TypeError", "load takes a path or the bytes of a parameter file, not int"),
    R("load damaged", "t.load(bytes(b))", "ValueError", "checksum mismatch",
      setup="t.save('q.ttp'); b = bytearray(open('q.ttp', 'rb').read()); b[24] ^= 1",
      after="t.step(x, 1)"),
    R("load another model's file", "t.load('m.ttp')", "ValueError",
      "belong to another model",
      setup="mt = tinytrain.Trainer(mse_model); mt.save('m.ttp'); t = tinytrain.Trainer(model)"),
    # -- an MSE model: the label is an int8 buffer of targets ---------------
    R("mse label int", "m.step(bytes(nm), 3)", "TypeError", "label must be a buffer of int8 values, not int",
      setup="m = tinytrain.Trainer(mse_model); nm = m.info()['input_bytes']"),
    R("mse target short", "m.step(bytes(nm), bytes(3))", "ValueError", "(arg)",
      setup="m = tinytrain.Trainer(mse_model); nm = m.info()['input_bytes']"),
    R("mse target array h", "m.step(bytes(nm), array('h', [0] * 10))", "TypeError", "got format 'h'",
      setup="m = tinytrain.Trainer(mse_model); nm = m.info()['input_bytes']"),
    R("mse out array d", "m.step(bytes(nm), bytes(m.info()['classes']), out=array('d', [0]))", "TypeError",
      "out must be a writable array('f')",
      setup="m = tinytrain.Trainer(mse_model); nm = m.info()['input_bytes']",
      after="check(m.info()['steps'] == 0, 'no step applied')"),
    # -- host only: debugging calls and the tools that write models ---------
    R("tensor past the arena", "t.tensor(1, 10 ** 8)", "ValueError", "run past the arena", host_only=True),
    R("tensor negative size", "t.tensor(1, -1)", "ValueError", "nbytes must be an int >= 0", host_only=True),
    R("grad hook raises", "t.step(x, 1)", "ZeroDivisionError", "",
      setup="t.set_grad_hook(lambda *a: 1 // 0)",
      after="check(t.info()['steps'] == 1, 'the step completed'); t.set_grad_hook(None); t.step(x, 1)",
      host_only=True),
    # -- data given to a model (host: tinytrain/inputs.py's rules at every entry) --
    R("x numpy uint8", "t.step(np.zeros(n, np.uint8), 0)", "TypeError", "is a numpy uint8 array",
      setup="import numpy as np", after=NO_STEP, host_only=True),
    R("evaluate numpy uint8", "t.evaluate(np.zeros(n, np.uint8), [0])", "TypeError", "is a numpy uint8 array",
      setup="import numpy as np", host_only=True),
    R("quantize uint8", "t.quantize(np.zeros(n, np.uint8))", "ValueError", "is uint8 (raw bytes",
      setup="import numpy as np", host_only=True),
    R("quantize int8", "t.quantize(np.zeros(n, np.int8))", "ValueError", "is int8 already",
      setup="import numpy as np", host_only=True),
    R("quantize nan", "t.quantize(np.full((3, n), np.nan))", "ValueError", "sample 0 (counting from 0) holds NaN",
      setup="import numpy as np", host_only=True),
    R("quantize inf", "t.quantize(xs)", "ValueError", "sample 1 (counting from 0) holds NaN or infinity",
      setup="import numpy as np; xs = np.zeros((3, n)); xs[1, 5] = np.inf", host_only=True),
    R("quantize wrong size", "t.quantize(np.zeros(n + 1))", "ValueError", "has shape (",
      setup="import numpy as np", host_only=True),
    R("quantize outside calibration", "with warnings.catch_warnings():\n    warnings.simplefilter('error')\n"
      "    t.quantize(np.full(n, 1e6))", "DataWarning", "outside the range the model was calibrated on",
      setup="import numpy as np, warnings", host_only=True),
    R("quantize ok", "q = t.quantize(np.zeros(n))", None, setup="import numpy as np",
      after="check(len(q) == n and t.step(q, 0) > 0, 'quantized input trains')", host_only=True),
    R("logits dequantized", "y = t.logits(x, dequantize=True)", None,
      after="check(len(y) == ncls and y.dtype.kind == 'f', 'float logits')", host_only=True),
    R("data int64 pixels", "data.samples(model, np.arange(2 * n).reshape(2, n) % 17, [0, 1])", "ValueError",
      "are int64: say what they are", setup="import numpy as np; from tinytrain.stream import data",
      host_only=True),
    R("data uint8", "data.samples(model, np.zeros((2, n), np.uint8), [0, 1])", "ValueError",
      "are uint8: say what they are", setup="import numpy as np; from tinytrain.stream import data",
      host_only=True),
    R("data raw beyond int8", "data.samples(model, np.full((1, n), 200, np.uint8), [0], raw=True)", "ValueError",
      "must lie in [-128, 127]", setup="import numpy as np; from tinytrain.stream import data", host_only=True),
    R("data int64 taken as real values", "s = data.samples(model, np.zeros((2, n), np.int64), [0, 1], raw=False)",
      None, setup="import numpy as np; from tinytrain.stream import data",
      after="check(len(s) == 2 and len(s[0][0]) == n, 'quantized')", host_only=True),
    R("data nan", "data.samples(model, xs, [0, 1])", "ValueError", "sample 1 (counting from 0) holds NaN",
      setup="import numpy as np; from tinytrain.stream import data; xs = np.zeros((2, n)); xs[1, 0] = np.nan",
      host_only=True),
    R("data label out of range", "data.samples(model, np.zeros((2, n)), [0, ncls])", "ValueError",
      "out of range: the model has", setup="import numpy as np; from tinytrain.stream import data",
      host_only=True),
    R("data label not whole", "data.samples(model, np.zeros((2, n)), [0, 1.5])", "ValueError",
      "whole numbers", setup="import numpy as np; from tinytrain.stream import data", host_only=True),
    R("data label count", "data.samples(model, np.zeros((2, n)), [0, 1, 2])", "ValueError",
      "2 inputs but 3 labels", setup="import numpy as np; from tinytrain.stream import data", host_only=True),
    R("data shape", "data.samples(model, np.zeros((2, n + 1)), [0, 1])", "ValueError",
      "the model takes one input of shape", setup="import numpy as np; from tinytrain.stream import data",
      host_only=True),
    R("data outside calibration", "with warnings.catch_warnings():\n    warnings.simplefilter('error')\n"
      "    data.samples(model, np.full((2, n), -1e6), [0, 1])", "DataWarning", "outside the range",
      setup="import numpy as np, warnings; from tinytrain.stream import data", host_only=True),
    R("data iterable uint8", "list(data.from_iterable(model, [(np.zeros(n, np.uint8), 0)]))", "ValueError",
      "are uint8", setup="import numpy as np; from tinytrain.stream import data", host_only=True),
    R("plan data int64", "plancmd.load_data('d.npz', graph_from_model(model))", "ValueError",
      "are int64: say what they are", setup="import numpy as np; from tinytrain import plancmd; "
      "from tinytrain.compiler import graph_from_model; "
      "np.savez('d.npz', x=np.ones((4, n), np.int64), y=np.zeros(4, np.int64))", host_only=True),
    R("plan data labels", "plancmd.load_data('e.npz', graph_from_model(model))", "ValueError",
      "label 99 (sample 3) out of range", setup="import numpy as np; from tinytrain import plancmd; "
      "from tinytrain.compiler import graph_from_model; "
      "np.savez('e.npz', x=np.zeros((4, n), np.float32), y=np.array([0, 1, 0, 99]))", host_only=True),
    R("scheme lr nan", "Scheme(lr=float('nan'))", "ValueError", "lr must be a finite number > 0",
      setup="from tinytrain.compiler import Scheme", host_only=True),
    R("convert --lr -1", "cli.main(['convert', 'model.ttm', '--lr', '-1', '-o', 'o.ttm'])", "SystemExit", "2",
      setup="from tinytrain import cli", after="check(not os.path.exists('o.ttm'), 'no model written')",
      host_only=True),
    R("plan --lr nan", "cli.main(['plan', 'model.ttm', '--lr', 'nan', '-o', 'o.ttm'])", "SystemExit", "2",
      setup="from tinytrain import cli", after="check(not os.path.exists('o.ttm'), 'no model written')",
      host_only=True),
    R("plan --lr inf", "cli.main(['plan', 'model.ttm', '--lr', 'inf', '-o', 'o.ttm'])", "SystemExit", "2",
      setup="from tinytrain import cli", after="check(not os.path.exists('o.ttm'), 'no model written')",
      host_only=True),
]

PRELUDE = """\
import os
import tinytrain
from array import array

model = open('model.ttm', 'rb').read()
mse_model = open('mse.ttm', 'rb').read()


def check(ok, what):
    if not ok:
        raise AssertionError(what)


def report(name, e):
    if e is None:
        print(name + '|None|')
    elif isinstance(e, OSError):  # the texts differ between CPython and MicroPython
        print(name + '|OSError|errno ' + str(e.errno))
    else:
        print(name + '|' + type(e).__name__ + '|' + str(e))


def run(name, fn):
    try:
        e = fn()
    except BaseException as a:
        print(name + '|AFTER ' + type(a).__name__ + '|' + str(a))
        return
    report(name, e)

"""


def _indent(code: str) -> str:
    return "".join("    " + line + "\n" for line in (code or "pass").split("\n"))


def script(cases=None) -> str:
    """One script running the rows (default: all), under CPython or MicroPython."""
    parts = [PRELUDE]
    for i, c in enumerate(CASES if cases is None else cases):
        parts.append(f"def case_{i}():\n"
                     "    t = tinytrain.Trainer(model)\n"
                     "    n = t.info()['input_bytes']\n"
                     "    ncls = t.info()['classes']\n"
                     "    x = bytes(n)\n"
                     + _indent(c.setup)
                     + "    try:\n"
                     + _indent(_indent(c.call))
                     + "        e = None\n"
                     "    except BaseException as exc:\n"
                     "        e = exc\n"
                     + _indent(c.after)
                     + "    return e\n\n\n"
                     f"run({c.name!r}, case_{i})\n\n")
    return "".join(parts)


def parse(out: str) -> dict:
    """name -> (type, message) from the script's output."""
    rows = {}
    for line in out.splitlines():
        name, typ, msg = line.split("|", 2)
        rows[name] = (typ, msg)
    return rows


def mismatches(cases, rows: dict) -> list:
    """The rows whose result is not the one the table expects."""
    bad = []
    for c in cases:
        got = rows.get(c.name)
        if got is None:
            bad.append(f"{c.name}: no result")
            continue
        typ, msg = got
        if typ != str(c.exc) or (msg != c.fragment if typ == "OSError" else c.fragment not in msg):
            bad.append(f"{c.name}: expected {c.exc} {c.fragment!r}, got {typ} {msg!r}")
    return bad


BOARD_CASES = [c for c in CASES if not c.host_only]


def write_models(d) -> None:
    """model.ttm (cross-entropy) and mse.ttm in folder d: the files the script reads."""
    import netzoo
    from tinytrain.compiler import Scheme, compile_model
    (d / "model.ttm").write_bytes(netzoo.build("cnn", "full", seed=3)[2].data)
    b = netzoo.ZOO["mlp"](3)
    g = b.quantize(netzoo.calib(b, seed=3))
    (d / "mse.ttm").write_bytes(compile_model(g, Scheme.full(g, loss="mse")).data)


def write_script(d, cases) -> None:
    (d / "misuse.py").write_text(script(cases))


def run_host(d, cases) -> str:
    """The rows under CPython with the host simulator, in folder d (models written)."""
    write_script(d, cases)
    r = subprocess.run([sys.executable, "misuse.py"], cwd=d, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout
