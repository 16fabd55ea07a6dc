# Before a soft reset: a trained Trainer in the arena.
import tinytrain
xs = open("xs.bin", "rb").read()
ys = open("ys.bin", "rb").read()
t = tinytrain.Trainer("model.ttm")
n = t.info()["input_bytes"]
for i in range(4):
    t.step(xs[i * n:(i + 1) * n], ys[i])
print("BEFORE", t.info()["steps"])
