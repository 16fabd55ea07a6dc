"""The int8 core against a float64 copy of the same network, trained the same
way: is a sparse update's accuracy the arithmetic's or the protocol's?

Task and training as `bench_sparse_update.py` (MCUNet-5fps, fresh 10-class
head, digits upscaled to 128x128, 300 training images, 2 epochs, lr 0.03 for
the classifier and x1/30 for the backbone, decaying linearly to 0 over the
run unless --constant, the planner's sample orders) and one scheme: biases
of the last k layers, the classifier and some layers' weights at a ratio.

The float64 copy: every conv's int8 weights and int32 biases dequantised
(w s_w, b s_w s_x), ReLU6 where the int8 output's range starts at 0 (zero
point -128), linear elsewhere, the input dequantised; it trains the same
parameters (the same input channels of a partly trained layer) by plain SGD
at the same per-layer rates. The layers before the first trained one are
frozen, so they run once per image, up to the last tensor that alone
carries everything to the trained layers.

--gradients N first compares the gradients of the first step on each of N
training images: the core's (its gradient hook: every weight and bias
gradient as the update reads it, int16 activation gradients included)
against the float64 copy's at the same parameters, per trained layer:
cosine, norm ratio, and the fraction of exact zeros in each.

    python3 benchmarks/bench_sparse_float.py                       # the searched 49kb-arena scheme
    python3 benchmarks/bench_sparse_float.py --k 16 --weights 21:0.25,39:1 --constant --gradients 3
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

try:
    import tinytrain
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "host_tools"))
    import tinytrain
from tinytrain import floatops, planner
from tinytrain.builder import FloatLayer
from tinytrain.compiler import compile_model
from tinytrain.datasets import digits_split, to_model_inputs
from tinytrain.floatnet import FloatNet, scheme_trainable
from tinytrain.lr_rule import linear_decay_lr

TTE = Path(__file__).resolve().parents[2] / "shared" / "models" / "tte"


def float_layers(graph) -> list:
    """The graph's layers as float64 FloatLayers (conv, depthwise, add, global pool)."""
    out = []
    for layer in graph.layers:
        x, y = graph.tensors[layer.inputs[0]], graph.tensors[layer.output]
        act = "relu6" if y.zero == -128 else None
        if layer.kind in ("conv", "dwconv"):
            sw = layer.w_scale.astype(np.float64)
            w = layer.weight.astype(np.float64) * sw.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
            out.append(FloatLayer(layer.name, layer.kind, list(layer.inputs), layer.output, weight=w,
                                  bias=layer.bias.astype(np.float64) * sw * x.scale, stride=layer.stride,
                                  pad=tuple(layer.pad), act=act))
        elif layer.kind in ("add", "avgpool"):
            out.append(FloatLayer(layer.name, layer.kind, list(layer.inputs), layer.output,
                                  act=act if layer.kind == "add" else None))
        else:
            raise ValueError(f"layer {layer.name}: no float copy of a {layer.kind} layer here")
    return out


def cut_point(layers: list, trained: set) -> int:
    """Index of the last layer whose output alone feeds every layer after it,
    before the first trained layer (-1: none, the input)."""
    first = min(i for i, L in enumerate(layers) if L.name in trained)
    best = -1
    for i in range(first):
        produced_before = {L.output for L in layers[:i + 1]} | {"input"}
        needed = {t for L in layers[i + 1:] for t in L.inputs if t in produced_before}
        if needed == {layers[i].output}:
            best = i
    return best


def conv_call(L, x):
    return floatops.conv_forward_cached(x, L.weight, L.bias, L.stride, L.pad, L.kind == "dwconv")


def compare_gradients(g, model: bytes, scheme, float_net, xtr, ftr, ytr, n: int) -> None:
    """The first step's gradients, core against float64 copy, per trained layer."""
    from tinytrain.compiler import choose_channels

    names = [layer.name for layer in g.layers]
    print(f"first-step gradients on {n} training image(s): cosine, |core| / |float|, "
          "share of zeros core / float")
    for i in range(n):
        got: dict = {}
        t = tinytrain.Trainer(model)
        t.set_grad_hook(lambda li, idx, acc, scale: got.setdefault(li, {}).__setitem__(idx, acc * scale))
        t.step(xtr[i].tobytes(), int(ytr[i]))
        _, grads = float_net().loss_and_grads(ftr[i:i + 1], ytr[i:i + 1])
        for (name, kind), gf in grads.items():
            layer = g.layer(name)
            rec = got.get(names.index(name), {})
            if kind == "bias":
                want = gf.reshape(-1)
                core = np.array([rec.get(0x80000000 | c, np.nan) for c in range(len(want))])
            elif layer.kind == "conv":  # core order: (out channel, tap, trained input channel)
                nt = scheme.n_train(layer)
                cols = choose_channels(layer, nt)[:nt] if nt < gf.shape[3] else list(range(gf.shape[3]))
                want = gf[:, :, :, cols].reshape(-1)
                core = np.array([rec.get(j, np.nan) for j in range(len(want))])
            else:
                continue
            cos = float(core @ want / (np.linalg.norm(core) * np.linalg.norm(want)))
            print(f"  image {i} {name:<10} {kind:<6} {len(want):>6}: {cos:.4f}  "
                  f"{np.linalg.norm(core) / np.linalg.norm(want):.3f}  "
                  f"{np.mean(core == 0):.3f} / {np.mean(want == 0):.3f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=22, help="biases of the last k backbone layers (default 22)")
    ap.add_argument("--weights", default="21:1,30:0.25",
                    help="backbone layer index:ratio, comma-separated (default 21:1,30:0.25)")
    ap.add_argument("--constant", action="store_true", help="a constant rate instead of the linear decay")
    ap.add_argument("--residue", action="store_true", help="the int8 run keeps 8 fraction bits per weight")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--backbone-lr-scale", type=float, default=1 / 30)
    ap.add_argument("--seeds", type=int, default=3, help="sample orders (default 3)")
    ap.add_argument("--gradients", type=int, default=0, metavar="N",
                    help="first compare the first step's gradients on N training images")
    args = ap.parse_args(argv)
    from tinytrain.convert import tte
    path = TTE / "mcunet-5fps.pkl"
    if not path.exists():
        sys.exit(f"{path} is absent: this comparison needs the paper's MCUNet-5fps")
    g = tte.load(path, n_classes=10, head="fresh", seed=0)
    backbone = planner.split_layers(g)[0]
    weights = {backbone[int(i)]: float(r) for i, r in (p.split(":") for p in args.weights.split(",") if p)}
    scheme = planner.make_scheme(g, args.k, weights, lr=args.lr, lr_scale=args.backbone_lr_scale,
                                 residue=args.residue)
    images, labels, i_tr, _, i_te = digits_split(300, 300, 0)
    xtr, ytr = to_model_inputs(g, images, i_tr), labels[i_tr]
    xte, yte = to_model_inputs(g, images, i_te), labels[i_te]
    seeds = range(args.seeds)
    print(f"scheme: {', '.join(sorted(scheme.bias))} biases; weights {weights}; lr {args.lr:g} "
          f"(backbone x{args.backbone_lr_scale:.4g}), {'constant' if args.constant else 'decaying linearly to 0'}; "
          f"{args.epochs} epochs, orders {list(seeds)}")

    plan = compile_model(g, scheme)
    layers = float_layers(g)
    trainable, masks = scheme_trainable(g, scheme)
    cut = cut_point(layers, {name for name, _ in trainable})
    prefix, suffix = layers[:cut + 1], [copy.copy(L) for L in layers[cut + 1:]]
    cut_name = layers[cut].output if cut >= 0 else "input"
    for L in suffix:
        L.inputs = ["input" if i == cut_name else i for i in L.inputs]
    x_in = g.tensors[g.input]

    def features(xq):
        out = []
        for i in range(0, len(xq), 64):
            x = (xq[i:i + 64].astype(np.float64).reshape((-1,) + tuple(x_in.shape)) - x_in.zero) * x_in.scale
            out.append(floatops.forward(prefix, x, conv_call)[cut_name] if prefix else x)
        return np.concatenate(out)

    def float_net():
        return FloatNet(SimpleNamespace(layers=suffix, input_shape=ftr.shape[1:], last=suffix[-1].output),
                        trainable=trainable, masks=masks)

    ftr = features(xtr)
    if args.gradients:
        compare_gradients(g, plan.data, scheme, float_net, xtr, ftr, ytr, args.gradients)

    t0 = time.time()
    xs, ys = planner.as_dataset((xtr, ytr), g)
    tx, ty = planner.as_dataset((xte, yte), g)
    int8 = [planner.train_and_evaluate(plan.data, (xs, ys), tx.tobytes(), [int(v) for v in ty], s, args.epochs,
                                       decay=not args.constant) for s in seeds]
    print(f"int8 core{' (residue)' if args.residue else ''}: {100 * np.mean(int8):.1f}% "
          f"({' / '.join(f'{100 * a:.1f}' for a in int8)}), arena {plan.arena_size:,} B, {time.time() - t0:.0f} s")

    t0 = time.time()
    fte = features(xte)
    accs = []
    for s in seeds:
        net = float_net()
        steps = [i for order in planner.sample_orders(s, len(ftr), args.epochs) for i in order]
        for n, i in enumerate(steps):
            lr = args.lr if args.constant else linear_decay_lr(args.lr, n, len(steps))
            _, grads = net.loss_and_grads(ftr[i:i + 1], ytr[i:i + 1])
            for key, gr in grads.items():
                net.params[key] -= lr * scheme.lr_scale.get(key[0], 1.0) * gr
        accs.append(net.accuracy(fte, yte))
    print(f"float64 copy: {100 * np.mean(accs):.1f}% ({' / '.join(f'{100 * a:.1f}' for a in accs)}), "
          f"frozen up to {cut_name}, {time.time() - t0:.0f} s")
    print(f"int8 - float64: {100 * (np.mean(int8) - np.mean(accs)):+.1f} pp on {len(yte)} held-out images")


if __name__ == "__main__":
    main()
