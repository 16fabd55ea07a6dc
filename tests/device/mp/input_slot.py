# Train through Trainer.input() (the slot in the arena, filled in place) and
# through step(x, label) side by side: the same losses, classes and
# parameters. Then the slot loop allocates nothing. Runs unchanged under
# MicroPython and CPython. Reads the files of train_dump.py (CE models).
import struct
from array import array
from binascii import hexlify

import tinytrain

job = open("job.txt").read().split()
model, steps, evals = job[1], int(job[2]), int(job[3])
data = open(model, "rb").read()
xs = array("b", open("xs.bin", "rb").read())
ys = open("ys.bin", "rb").read()


def run(through_slot):
    t = tinytrain.Trainer(data)
    n = t.info()["input_bytes"]
    buf = t.input()
    out = []
    for i in range(steps):
        if through_slot:
            buf[:] = xs[i * n:(i + 1) * n]
            out.append(t.step(ys[i]))
        else:
            out.append(t.step(xs[i * n:(i + 1) * n], ys[i]))
    for i in range(evals):
        if through_slot:
            buf[:] = xs[i * n:(i + 1) * n]
            out.append(t.predict())
        else:
            out.append(t.predict(xs[i * n:(i + 1) * n]))
    out.append(hexlify(t.params()).decode())
    return out, t, n


by_x = run(False)[0]
by_slot, t, n = run(True)  # last: the firmware's one arena belongs to the newest Trainer
print("SLOT", len(t.input()), t.input()[0:1] == t.input()[0:1])
print("SAME", by_slot == by_x)
for v in by_slot[:steps]:
    print("L", hexlify(struct.pack("<f", v)).decode())
print("C", by_slot[steps:steps + evals])
try:
    import micropython
except ImportError:
    micropython = None
if micropython:
    import gc
    out = array("f", [0.0])
    x0 = xs[0:n]
    buf = t.input()
    buf[:] = x0
    t.step(ys[0], out=out)
    gc.collect()
    micropython.heap_lock()
    ok = 0
    try:
        i = 0
        while i < 20:
            buf = t.input()
            buf[:] = x0
            t.step(ys[0], out=out)
            buf[:] = x0
            t.predict()
            i += 1
        ok = 1
    except MemoryError:
        pass
    micropython.heap_unlock()
    print("LOCKED", ok)
else:
    print("LOCKED", 1)
