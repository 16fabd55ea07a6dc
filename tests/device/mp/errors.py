# Every error case, printed as "<case>: <exception type>: <message>". Runs
# unchanged under MicroPython and CPython; the outputs must be identical.
import tinytrain
from array import array


def case(name, fn):
    try:
        fn()
        print(name + ": no error")
    except OSError as e:  # the texts differ between CPython and MicroPython
        print(name + ": OSError errno " + str(e.errno))
    except Exception as e:
        print(name + ": " + type(e).__name__ + ": " + str(e))


model = open("model.ttm", "rb").read()
t = tinytrain.Trainer(model)
n = t.info()["input_bytes"]
ncls = t.info()["classes"]
x = bytes(n)

case("x str", lambda: t.step("a" * n, 0))
case("x None", lambda: t.step(None, 0))
case("x int", lambda: t.step(12, 0))
case("x list", lambda: t.step([0] * n, 0))
case("x array h", lambda: t.step(array("h", [0] * n), 0))
case("x array i", lambda: t.predict(array("i", [0] * n)))
case("x short", lambda: t.step(bytes(n - 1), 0))
case("x long", lambda: t.step(bytearray(n + 1), 0))
case("x empty", lambda: t.predict(b""))
case("logits short", lambda: t.logits(bytes(3)))
case("label high", lambda: t.step(x, ncls))
case("label negative", lambda: t.step(x, -1))
case("label huge", lambda: t.step(x, 1 << 40))
case("label float", lambda: t.step(x, 1.0))
case("label bool", lambda: t.step(x, True))
case("label missing", lambda: t.step(x))
case("label str", lambda: t.step(x, "1"))
case("evaluate ragged", lambda: t.evaluate(bytes(n + 1), [0]))
case("evaluate count", lambda: t.evaluate(bytes(2 * n), [0]))
case("evaluate empty", lambda: t.evaluate(b"", []))
case("evaluate xs type", lambda: t.evaluate("ab", [0]))
case("model int", lambda: tinytrain.Trainer(12))
case("model None", lambda: tinytrain.Trainer(None))
case("model empty", lambda: tinytrain.Trainer(b""))
case("model zeros", lambda: tinytrain.Trainer(bytes(256)))
case("model truncated", lambda: tinytrain.Trainer(model[:len(model) // 2]))
for name in ("magic", "version", "crc", "size", "tensor", "layer"):
    case("model " + name, lambda: tinytrain.Trainer(open("bad_" + name + ".ttm", "rb").read()))
case("model path missing", lambda: tinytrain.Trainer("no_such_model.ttm"))
case("lr str", lambda: tinytrain.Trainer(model, lr="0.1"))
case("lr nan", lambda: tinytrain.Trainer(model, lr=float("nan")))
case("set_lr str", lambda: t.set_lr("0.1"))
case("set_lr bool", lambda: t.set_lr(True))
case("set_lr nan", lambda: t.set_lr(float("nan")))
case("set_lr zero", lambda: t.set_lr(0))
case("set_lr None", lambda: t.set_lr(None))
case("set_lr ok", lambda: t.set_lr(0.25))
case("arena small", lambda: tinytrain.Trainer(model, arena_size=100))
case("arena negative", lambda: tinytrain.Trainer(model, arena_size=-1))
case("arena big model", lambda: tinytrain.Trainer("big.ttm", arena_size=196608))
t = tinytrain.Trainer(model)
case("load not params", lambda: t.load("model.ttm"))
case("load other model", lambda: t.load("other.ttp"))
case("load damaged", lambda: t.load("damaged.ttp"))
case("load version", lambda: t.load("version.ttp"))
case("load short", lambda: t.load("short.ttp"))
case("load missing", lambda: t.load("no_such.ttp"))
m = tinytrain.Trainer(open("mse.ttm", "rb").read())
nm = m.info()["input_bytes"]
case("mse label int", lambda: m.step(bytes(nm), 3))
case("mse target short", lambda: m.step(bytes(nm), bytes(3)))
case("mse target h", lambda: m.step(bytes(nm), array("h", [0] * 10)))
case("mse ok", lambda: m.step(bytes(nm), bytes(10)))
