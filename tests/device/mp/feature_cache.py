# Epochs on stored samples with the frozen-prefix cache: three epochs from
# features kept in a bytearray (features(x, out=...) in the first epoch,
# step_features after) against three epochs of step(x, label): the same
# losses, classes and parameters. Then the cached loop allocates nothing.
# Runs unchanged under MicroPython and CPython. Reads the files of
# train_dump.py (CE models).
import struct
from array import array
from binascii import hexlify

job = open("job.txt").read().split()
tinytrain = __import__(job[0])  # the built-in module, or the .mpy under another name
model, steps, evals = job[1], int(job[2]), int(job[3])
data = open(model, "rb").read()
xs = array("b", open("xs.bin", "rb").read())
ys = open("ys.bin", "rb").read()
EPOCHS = 3


def run(cached):
    t = tinytrain.Trainer(data)
    n = t.info()["input_bytes"]
    fb = t.feature_bytes()
    store = memoryview(bytearray(fb * steps))
    out = []
    for e in range(EPOCHS):
        for i in range(steps):
            x = xs[i * n:(i + 1) * n]
            if not cached:
                out.append(t.step(x, ys[i]))
                continue
            f = store[i * fb:(i + 1) * fb]
            if e == 0:
                t.features(x, out=f)
            out.append(t.step_features(f, ys[i]))
    for i in range(evals):
        if cached:
            out.append(t.predict_features(store[i * fb:(i + 1) * fb]))
        else:
            out.append(t.predict(xs[i * n:(i + 1) * n]))
    out.append(hexlify(t.params()).decode())
    return out, t, n, fb, store


by_x = run(False)[0]
by_cache, t, n, fb, store = run(True)  # last: the firmware's one arena belongs to the newest Trainer
print("FEATURES", fb)
print("SAME", by_cache == by_x)
for v in by_cache[:EPOCHS * steps]:
    print("L", hexlify(struct.pack("<f", v)).decode())
print("C", by_cache[EPOCHS * steps:EPOCHS * steps + evals])
print("V", len(t.features(xs[0:n])), bytes(t.features(xs[0:n])) == bytes(store[0:fb]))
try:
    import micropython
except ImportError:
    micropython = None
if micropython:
    import gc
    out = array("f", [0.0])
    x0 = xs[0:n]
    views = [store[i * fb:(i + 1) * fb] for i in range(2)]
    t.step_features(views[0], ys[0], out=out)
    gc.collect()
    micropython.heap_lock()
    ok = 0
    try:
        i = 0
        while i < 20:
            t.features(x0, out=views[1])
            t.step_features(views[1], ys[0], out=out)
            t.features(x0)
            i += 1
        ok = 1
    except MemoryError:
        pass
    micropython.heap_unlock()
    print("LOCKED", ok)
else:
    print("LOCKED", 1)
