"""The host simulator against PyTorch (CPU, one thread) on the same MCUNet-5fps
training step: the 49kb published scheme, batch 1, digits at 128x128x3.
Each engine runs in its own process, three times, alternating with the
other; time is CPU time per step (median over the steps; the fastest of
the three runs), memory the growth of the process's peak resident set over
the steps.

    python benchmarks/host_vs_torch.py [--steps N]            both, as a table
    python benchmarks/host_vs_torch.py --engine sim|torch      one, as JSON

PyTorch trains the same layers in float32 from the same int8 weights
(dequantised), with the same clamps, and updates whole weight tensors where
the scheme updates a fraction of a layer's input channels (PyTorch has no
cheaper way to ask for part of a weight gradient): the same step, a little
more work for PyTorch.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL, SCHEME = "mcunet-5fps", "49kb"
WARMUP = 2
ROUNDS = 3


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def _case(n):
    sys.path.insert(0, str(HERE))
    import paper_models
    return next(paper_models.cases(n, {MODEL: [SCHEME]}))


def _measure(step, n) -> dict:
    """CPU ms per step (median after the warm-up) and the peak RSS growth
    over warm-up and steps (what the steps allocate, cached or not)."""
    _reset_peak()
    base = _rss("VmRSS")
    for _ in range(WARMUP):
        step(0)
    times = []
    for i in range(n):
        t0 = time.process_time()
        step(i)
        times.append(time.process_time() - t0)
    return {"ms": 1e3 * statistics.median(times), "rss_growth": max(0, _rss("VmHWM") - base)}


def run_sim(n: int) -> dict:
    from tinytrain.trainer import Trainer
    case = _case(n)
    t = Trainer(case.plan.data)
    r = _measure(lambda i: t.step(case.xs[i % len(case.xs)], case.ys[i % len(case.ys)]), n)
    r["arena"] = case.plan.arena_size
    return r


def torch_net(graph, scheme):
    """A float32 PyTorch module computing the int8 graph's function (dequantised)."""
    import torch
    import torch.nn.functional as F

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.params = torch.nn.ParameterDict()
            for layer in graph.param_layers:
                x = graph.tensors[layer.inputs[0]]
                w = layer.weight.astype("float32") * layer.w_scale.astype("float32").reshape(
                    (-1,) + (1,) * (layer.weight.ndim - 1))
                w = torch.from_numpy(w)
                w = w.permute(0, 3, 1, 2) if layer.kind == "conv" else w.unsqueeze(1)
                b = torch.from_numpy((layer.bias * layer.w_scale * x.scale).astype("float32"))
                self.params[layer.name + "_w"] = torch.nn.Parameter(w.contiguous(),
                                                                     requires_grad=layer.name in scheme.weights)
                self.params[layer.name + "_b"] = torch.nn.Parameter(b, requires_grad=layer.name in scheme.bias)

        def forward(self, x):
            acts = {graph.input: x}
            for layer in graph.layers:
                a = acts[layer.inputs[0]]
                y_t = graph.tensors[layer.output]
                if layer.kind in ("conv", "dwconv"):
                    kh, kw = layer.kernel
                    h, w = a.shape[2:]
                    oh, ow = y_t.shape[:2]
                    top, left = layer.pad
                    bottom = max(0, (oh - 1) * layer.stride + kh - h - top)
                    right = max(0, (ow - 1) * layer.stride + kw - w - left)
                    a = F.pad(a, (left, right, top, bottom))
                    y = F.conv2d(a, self.params[layer.name + "_w"], self.params[layer.name + "_b"],
                                 layer.stride, groups=a.shape[1] if layer.kind == "dwconv" else 1)
                elif layer.kind == "add":
                    y = a + acts[layer.inputs[1]]
                else:
                    y = a.mean(dim=(2, 3), keepdim=True)
                lo = (layer.act_min - y_t.zero) * y_t.scale
                hi = (layer.act_max - y_t.zero) * y_t.scale
                acts[layer.output] = torch.clamp(y, lo, hi)
            return acts[graph.output].flatten(1)

    return Net()


def run_torch(n: int) -> dict:
    import numpy as np
    import torch
    torch.set_num_threads(1)
    case = _case(n)
    from tinytrain.convert import tte
    from tinytrain.compiler import graph_from_model
    graph = graph_from_model(case.plan.data)
    scheme = tte.published_scheme(graph, MODEL, SCHEME)
    net = torch_net(graph, scheme)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01)
    t_in = graph.tensors[graph.input]
    xs = [torch.from_numpy(((x.astype(np.float32) - t_in.zero) * t_in.scale).reshape(1, *t_in.shape))
          .permute(0, 3, 1, 2).contiguous() for x in case.xs]
    ys = [torch.tensor([y]) for y in case.ys]

    # the same function: PyTorch's float logits against the int8 core's, dequantised
    from tinytrain.trainer import Trainer
    t_out = graph.tensors[graph.output]
    q = np.frombuffer(Trainer(case.plan.data).logits(case.xs[0]), np.int8).astype(np.float32)
    with torch.no_grad():
        f = net(xs[0]).numpy()[0]
    agreement = float(np.corrcoef((q - t_out.zero) * t_out.scale, f)[0, 1])

    def step(i):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(xs[i % len(xs)]), ys[i % len(ys)])
        loss.backward()
        opt.step()

    r = _measure(step, n)
    r["version"] = torch.__version__
    r["logit_correlation"] = agreement
    return r


def run(steps: int = 10) -> dict:
    """Both engines, each in a fresh process; the table's dict."""
    cmd = f"python benchmarks/host_vs_torch.py --steps {steps}"
    out = {"case": f"{MODEL} {SCHEME}", "steps": steps, "warmup": WARMUP, "rounds": ROUNDS, "command": cmd,
           "note": "PyTorch computes whole weight gradients where the scheme trains part of a layer."}
    try:
        import torch  # noqa: F401
    except ImportError:
        out["skipped"] = "torch is not installed (pip install torch)"
        print(f"host table: {out['skipped']}")
        return out
    # Other work on a shared machine only ever slows a run down: each engine
    # runs ROUNDS times, alternating, and its fastest run counts.
    for _ in range(ROUNDS):
        for engine in ("sim", "torch"):
            p = subprocess.run([sys.executable, str(Path(__file__)), "--engine", engine, "--steps", str(steps)],
                               capture_output=True, text=True, timeout=3600)
            if p.returncode:
                raise RuntimeError(f"{engine}: {p.stderr}")
            r = json.loads(p.stdout.splitlines()[-1])
            key = "simulator" if engine == "sim" else "torch"
            if key not in out or r["ms"] < out[key]["ms"]:
                out[key] = r
    s, t = out["simulator"], out["torch"]
    print(f"host, {out['case']}: simulator {s['ms']:.1f} ms/step, PyTorch {t['ms']:.1f} ms/step "
          f"({s['ms'] / t['ms']:.2f}x); peak RSS growth {s['rss_growth'] / 1e6:.2f} MB vs {t['rss_growth'] / 1e6:.2f} MB")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=("sim", "torch"))
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    if args.engine:
        print(json.dumps(run_sim(args.steps) if args.engine == "sim" else run_torch(args.steps)))
    else:
        run(args.steps)


if __name__ == "__main__":
    main()
