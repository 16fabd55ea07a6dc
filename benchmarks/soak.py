"""Soak: many training steps on the simulator and on the qemu device (the
MicroPython firmware, over `tinytrain stream`), checking that nothing drifts
or leaks. Every K steps it records and checks:

- every loss finite;
- training accuracy on the cycled samples (the test zoo's MLP learning 256
  fixed random labels: a memorisation task), which must not fall back;
- the arena: its size the same at every checkpoint, its high-water mark
  (info()['peak_bytes'], the canary painted over the plan) inside it and
  not climbing;
- simulator: the process's resident memory (RSS), flat after warm-up;
  the parameter file round trip: save, load into a fresh Trainer, same
  parameters, and the next loss of both identical;
- device: its parameter file (read over the link) byte-identical to a
  simulator twin trained on the same samples (no drift from the host), and
  pushed back unchanged.

    python benchmarks/soak.py [--sim-steps N] [--device-steps M] [--every K] [--json PATH]

Defaults: 100,000 simulator steps, 10,000 device steps, K = 1,000; writes
build/bench/soak.json. --device-steps 0 skips the device (it needs the qemu
firmware: `make qemu` with MICROPY_DIR). Exits 1 if any check fails.
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import netzoo  # noqa: E402
from tinytrain.trainer import Trainer  # noqa: E402

SAMPLES = 256
RSS_SLACK_KB = 2048  # allocator noise allowed after the first checkpoint


def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def workload():
    b, g, plan = netzoo.build("mlp", "full", seed=0)
    xs, ys = netzoo.samples(b, g, SAMPLES, seed=1)
    return plan.data, [(x.astype("int8").tobytes(), int(y)) for x, y in zip(xs, ys)]


def accuracy(t: Trainer, samples) -> float:
    return t.evaluate(b"".join(x for x, _ in samples), [y for _, y in samples])


class Checks:
    def __init__(self):
        self.failures = []

    def check(self, ok: bool, what: str) -> None:
        if not ok and len(self.failures) < 20:
            self.failures.append(what)


def arena_flat(points, who, checks):
    """The arena's size never changes, its high-water mark stays inside it,
    and the second half of the run reaches no higher than the first. (The
    mark is the last byte that differs from the canary, so a step whose last
    written byte happens to equal the canary shows a byte or so less: the
    mark may dip, never climb.)"""
    sizes = {p["arena_bytes"] for p in points}
    checks.check(len(sizes) == 1, f"{who}: the arena size changed: {sorted(sizes)}")
    peaks = [p["peak_bytes"] for p in points]
    checks.check(max(peaks) <= min(sizes), f"{who}: high-water {max(peaks)} beyond the arena's {min(sizes)} bytes")
    half = max(1, len(peaks) // 2)
    checks.check(max(peaks[half:], default=0) <= max(peaks[:half]),
                 f"{who}: the high-water mark climbed from {max(peaks[:half])} to {max(peaks[half:])}")
    return min(peaks), max(peaks)


def soak_sim(model, samples, steps, every, checks):
    t = Trainer(model)
    points, window, pending = [], [], None
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.ttp")
        for i in range(steps):
            x, y = samples[i % len(samples)]
            loss = t.step(x, y)
            window.append(loss)
            if not math.isfinite(loss):
                checks.check(False, f"sim step {i}: loss {loss}")
            if pending is not None:  # the reloaded copy took this step first
                checks.check(loss == pending, f"sim step {i}: the reloaded copy trains differently")
                pending = None
            if (i + 1) % every and i + 1 != steps:
                continue
            t.save(path)
            u = Trainer(model)
            u.load(path)
            same = u.params() == t.params()
            checks.check(same, f"sim step {i + 1}: params after save/load differ")
            nx, ny = samples[(i + 1) % len(samples)]
            pending = u.step(nx, ny)
            info = t.info()
            points.append({"step": i + 1, "mean_loss": sum(window) / len(window), "accuracy": accuracy(t, samples),
                           "peak_bytes": info["peak_bytes"], "arena_bytes": info["arena_bytes"],
                           "rss_kb": rss_kb(), "roundtrip": same})
            window = []
            print(f"sim {i + 1:>7d}: loss {points[-1]['mean_loss']:.4f} acc {points[-1]['accuracy']:.3f} "
                  f"peak {info['peak_bytes']} rss {points[-1]['rss_kb']} kB", flush=True)
    secs = time.time() - t0
    peak = arena_flat(points, "sim", checks)
    base = points[min(1, len(points) - 1)]["rss_kb"]
    grew = max(p["rss_kb"] for p in points) - base
    checks.check(grew <= RSS_SLACK_KB, f"sim: RSS grew {grew} kB after the first checkpoints")
    best = max(p["accuracy"] for p in points)
    checks.check(points[-1]["accuracy"] >= best - 0.05, f"sim: accuracy fell from {best} to {points[-1]['accuracy']}")
    return {"steps": steps, "seconds": round(secs, 1), "steps_per_second": round(steps / secs, 1),
            "rss_growth_kb": grew, "peak_bytes_range": peak, "checkpoints": points}


def soak_device(model, samples, steps, every, checks):
    from tinytrain.stream import connect
    twin = Trainer(model)  # the simulator, fed the same samples: the device must equal it bit for bit
    conn = connect("qemu", model, prequential=False)
    points = []
    t0 = time.time()
    try:
        s = conn.session
        done = 0
        while done < steps:
            n = min(every, steps - done)
            batch = [samples[(done + k) % len(samples)] for k in range(n)]
            stats = s.train(batch)
            want = [twin.step(x, y) for x, y in batch]
            bad = [v for v in stats.losses if not math.isfinite(v)]
            checks.check(not bad, f"device steps {done}..{done + n}: {len(bad)} losses not finite")
            checks.check(len(stats.losses) == n, f"device: {len(stats.losses)} losses reported for {n} steps")
            same_losses = [float(v) for v in stats.losses] == [float(v) for v in want]
            done += n
            blob = s.params_file()
            same = blob == bytes(twin.params_file())
            checks.check(same, f"device step {done}: its parameter file differs from the simulator's")
            info = s.push_params(blob)  # checked on the device, loaded, and unchanged
            checks.check(info["steps"] == done, f"device step {done}: {info['steps']} steps after the push")
            hits, _ = s.evaluate(samples)
            points.append({"step": done, "mean_loss": sum(stats.losses) / n, "accuracy": hits / len(samples),
                           "peak_bytes": info["peak_bytes"], "arena_bytes": info["arena_bytes"],
                           "params_same_as_simulator": same, "losses_same_as_simulator": same_losses,
                           "seconds": round(time.time() - t0, 1)})
            checks.check(same_losses, f"device steps to {done}: losses differ from the simulator's")
            print(f"dev {done:>7d}: loss {points[-1]['mean_loss']:.4f} acc {points[-1]['accuracy']:.3f} "
                  f"peak {info['peak_bytes']} same {same} {points[-1]['seconds']} s", flush=True)
        conn.end()
    finally:
        conn.close()
    secs = time.time() - t0
    peak = arena_flat(points, "device", checks)
    best = max(p["accuracy"] for p in points)
    checks.check(points[-1]["accuracy"] >= best - 0.05,
                 f"device: accuracy fell from {best} to {points[-1]['accuracy']}")
    return {"steps": steps, "seconds": round(secs, 1), "steps_per_second": round(steps / secs, 1),
            "peak_bytes_range": peak, "checkpoints": points}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim-steps", type=int, default=100_000)
    ap.add_argument("--device-steps", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1000, help="steps between checkpoints")
    ap.add_argument("--json", default=str(ROOT / "build" / "bench" / "soak.json"))
    args = ap.parse_args()
    model, samples = workload()
    checks = Checks()
    result = {"model": "netzoo mlp, full scheme, seed 0", "samples": SAMPLES, "every": args.every}
    if args.sim_steps:
        result["simulator"] = soak_sim(model, samples, args.sim_steps, args.every, checks)
    if args.device_steps:
        result["device"] = soak_device(model, samples, args.device_steps, args.every, checks)
    result["failures"] = checks.failures
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for part in ("simulator", "device"):
        if part in result:
            r, last = result[part], result[part]["checkpoints"][-1]
            print(f"{part}: {r['steps']} steps in {r['seconds']} s ({r['steps_per_second']}/s); "
                  f"final accuracy {last['accuracy']:.3f}, arena high-water {r['peak_bytes_range'][0]}-"
                  f"{r['peak_bytes_range'][1]} of {last['arena_bytes']} B"
                  + (f", RSS growth {r['rss_growth_kb']} kB" if "rss_growth_kb" in r else ""))
    print(f"written {out}")
    if checks.failures:
        print("FAILED:\n  " + "\n  ".join(checks.failures))
        sys.exit(1)
    print("soak: ok")


if __name__ == "__main__":
    main()
