# save() writes params.ttp atomically; load() restores it. Runs under
# MicroPython and CPython: the files written must be identical.
import os
import struct
import tinytrain
from binascii import hexlify

xs = open("xs.bin", "rb").read()
ys = open("ys.bin", "rb").read()
t = tinytrain.Trainer("model.ttm")
n = t.info()["input_bytes"]
for i in range(5):
    t.step(xs[i * n:(i + 1) * n], ys[i])
t.save("params.ttp")
t.step(xs[:n], ys[0])
t.save("params.ttp")  # over an existing file
try:
    os.stat("params.ttp.tmp")
    print("TMP left behind")
except OSError:
    print("TMP gone")
saved = t.params()
a = t.step(xs[n:2 * n], ys[1])
u = tinytrain.Trainer("model.ttm")  # takes the arena over (one arena on the board)
u.load("params.ttp")
print("SAME", u.params() == saved, u.info()["steps"])
b = u.step(xs[n:2 * n], ys[1])
print("NEXT", hexlify(struct.pack("<f", a)).decode(), hexlify(struct.pack("<f", b)).decode())
