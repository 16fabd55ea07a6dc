# One static arena: a new Trainer takes it over, the old one refuses to run.
import struct
import tinytrain
from binascii import hexlify

model = open("model.ttm", "rb").read()
xs = open("xs.bin", "rb").read()
ys = open("ys.bin", "rb").read()
t1 = tinytrain.Trainer(model)
n = t1.info()["input_bytes"]
t1.step(xs[:n], ys[0])
t1.step(xs[n:2 * n], ys[1])
try:
    tinytrain.Trainer(model, arena_size=16)
except MemoryError:
    pass
print("KEPT", hexlify(struct.pack("<f", t1.step(xs[2 * n:3 * n], ys[2]))).decode())
t2 = tinytrain.Trainer("model.ttm")
for name, call in (("step", lambda: t1.step(xs[:n], ys[0])), ("predict", lambda: t1.predict(xs[:n])),
                   ("params", t1.params), ("info", t1.info)):
    try:
        call()
        print("OLD", name, "no error")
    except RuntimeError as e:
        print("OLD", name, "RuntimeError", e)
print("NEW", hexlify(struct.pack("<f", t2.step(xs[:n], ys[0]))).decode())
print("REPR", "arena taken over" in repr(t1), "arena taken over" in repr(t2))
