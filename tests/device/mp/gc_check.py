# step() allocates nothing on the GC heap when the loss goes to out=.
# (Measured inside a function: a new module-level name would grow the
# globals dict and be counted.)
import gc
import micropython
import tinytrain
from array import array


def main():
    t = tinytrain.Trainer("model.ttm")
    n = t.info()["input_bytes"]
    x = open("xs.bin", "rb").read()[:n]
    y = 1
    out = array("f", [0.0])
    t.step(x, y, out=out)
    t.step(x, y)
    gc.collect()
    gc.disable()
    m0 = gc.mem_free()
    i = 0
    while i < 100:
        t.step(x, y, out=out)
        i += 1
    m1 = gc.mem_free()
    print("OUT", m0 - m1)
    micropython.heap_lock()
    locked = 0
    try:
        i = 0
        while i < 100:
            t.step(x, y, out=out)
            t.predict(x)
            i += 1
        locked = 1
    except MemoryError:
        pass
    micropython.heap_unlock()
    print("LOCKED", locked)
    gc.collect()
    m0 = gc.mem_free()
    i = 0
    while i < 100:
        t.step(x, y)
        i += 1
    m1 = gc.mem_free()
    gc.enable()
    gc.collect()
    m2 = gc.mem_free()
    print("FLOAT", m0 - m1)
    print("LEAK", m0 - m2)
    print("STEPS", t.info()["steps"])


main()
