# Time per step on qemu run with -icount shift=0: 1 instruction = 1 ns.
import time
import tinytrain
from array import array

t = tinytrain.Trainer("model.ttm")
n = t.info()["input_bytes"]
x = open("xs.bin", "rb").read()[:n]
out = array("f", [0.0])
N = 20
t.step(x, 1, out=out)
t0 = time.ticks_us()
i = 0
while i < N:
    t.step(x, 1, out=out)
    i += 1
t1 = time.ticks_us()
i = 0
while i < N:
    t.predict(x)
    i += 1
t2 = time.ticks_us()
print("STEP_NS", time.ticks_diff(t1, t0) * 1000 // N)
print("PREDICT_NS", time.ticks_diff(t2, t1) * 1000 // N)
