# Train and dump everything bit for bit. Runs unchanged under MicroPython
# (the firmware module) and CPython (the host simulator).
# Reads job.txt: "<module> <model file> <steps> <evals> <ce|mse> <n_classes>".
import struct
from binascii import hexlify

job = open("job.txt").read().split()
tinytrain = __import__(job[0])
model, steps, evals, loss_kind, ncls = job[1], int(job[2]), int(job[3]), job[4], int(job[5])


def hx(b):
    return hexlify(b).decode()


t = tinytrain.Trainer(model)
info = t.info()
n = info["input_bytes"]
xs = open("xs.bin", "rb").read()
ys = open("ys.bin", "rb").read()
mx = memoryview(xs)
print("P0", hx(t.params()))
for i in range(steps):
    x = mx[i * n:(i + 1) * n]
    if i == steps // 2:  # a schedule's step: half the rate (exact in binary32 and double)
        t.set_lr(info["lr"] / 2)
    if loss_kind == "mse":
        loss = t.step(x, memoryview(ys)[i * ncls:(i + 1) * ncls])
    else:
        loss = t.step(x, ys[i])
    print("L", hx(struct.pack("<f", loss)))
for i in range(evals):
    x = mx[i * n:(i + 1) * n]
    print("C", t.predict(x))
    print("Q", hx(t.logits(x)))
if loss_kind == "ce":
    print("A", hx(struct.pack("<f", t.evaluate(mx[:evals * n], ys[:evals]))))
print("P", hx(t.params()))
info = t.info()
for k in sorted(info):
    v = info[k]
    print("I", k, hx(struct.pack("<f", v)) if isinstance(v, float) else v)
