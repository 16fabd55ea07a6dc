"""Transfer-learning tasks for the examples: a small network pretrained in
float on a source task, quantised to int8, and a shifted target task to
fine-tune it on, with the reference schemes a searched one is compared to.

    task = shifted_digits(seed=0)          # CNN pretrained on upright digits;
    task.graph                             # target: the same digits mirrored
    task.train.pair()                      # (int8 inputs (N, bytes), labels)
    task.train.x                           # the float inputs, for float references
    refs = reference_schemes(task.graph, lr=0.05)   # last layer, bias-only k, all layers

    imu = imu_subject(held_out=4, seed=0)  # the personalize demo's task: IMU CNN
                                           # pretrained on 9 subjects, a 10th to learn

Everything is deterministic given the seed. The data ship inside installed
wheels (scikit-learn's digits, seglearn's watch set): nothing is downloaded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .builder import NetBuilder, quantize_input
from .compiler import Scheme, compile_model
from .datasets import digits_images, resize_images
from .floatnet import FloatNet, train as float_train
from .graph import QGraph
from .planner import make_scheme, split_layers
from .tasks import imu_cnn, time_split

SHIFTED = {"mirror": "mirrored", "rotate": "rotated by 90 degrees", "invert": "inverted"}
SHIFTS = tuple(SHIFTED)


@dataclass
class Split:
    """One set of samples: float inputs (N, h, w, c), their int8 form (N, input
    bytes) for the model, labels, and where the task has them the recording
    each sample comes from (samples of a recording in time order)."""

    x: np.ndarray
    q: np.ndarray
    y: np.ndarray
    recording: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def pair(self) -> tuple:
        """(int8 inputs, labels): what tinytrain.planner takes."""
        return self.q, self.y

    def as_bytes(self) -> tuple:
        """(inputs back to back as bytes, labels as ints): what Trainer.evaluate takes."""
        return self.q.tobytes(), [int(v) for v in self.y]


@dataclass
class TransferTask:
    name: str
    description: str
    builder: NetBuilder          # the float network with its pretrained weights
    graph: QGraph                # the same network in int8
    train: Split                 # target samples to fine-tune on
    val: Split | None            # target samples to choose a scheme with (None: none)
    test: Split                  # held-out target samples
    source_acc: float            # float accuracy on source samples (see source_what)
    target_acc: float            # float accuracy on the target test set before fine-tuning
    source_what: str = "held-out source samples"
    seconds: dict = field(default_factory=dict)

    def summary(self) -> str:
        sizes = f"{len(self.train)} train" + (f" / {len(self.val)} validation" if self.val is not None else "") + \
            f" / {len(self.test)} test"
        return (f"{self.description}\n"
                f"target samples: {sizes}; pretrained float net: {100 * self.source_acc:.1f}% on "
                f"{self.source_what}, {100 * self.target_acc:.1f}% on the target test set before fine-tuning")


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, leave=False)


def _pretrain(b: NetBuilder, x, y, *, epochs: int, lr: float, batch: int, seed: int, progress: bool) -> float:
    net = FloatNet(b)
    bar = _progress(epochs * -(-len(x) // batch), "pretrain (float)", progress)
    t0 = time.time()
    try:
        float_train(net, x, y, epochs=epochs, lr=lr, batch_size=batch, momentum=0.9, weight_decay=1e-4,
                    seed=seed, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    return time.time() - t0


# -- digits, upright -> shifted ------------------------------------------------------
def shift_images(x: np.ndarray, shift: str) -> np.ndarray:
    """The target domain of images (N, h, w, c) in [0, 1]: 'mirror' (left-right),
    'rotate' (90 degrees counter-clockwise) or 'invert' (1 - x)."""
    if shift == "mirror":
        return x[:, :, ::-1].copy()
    if shift == "rotate":
        return np.rot90(x, 1, axes=(1, 2)).copy()
    if shift == "invert":
        return 1.0 - x
    raise ValueError(f"unknown shift {shift!r}; shifts: {', '.join(SHIFTS)}")


def digits_cnn(seed: int, size: int = 16) -> NetBuilder:
    """conv(8, 3x3, s2) -> conv(16, 3x3) -> conv(16, 3x3, s2) -> conv(32, 3x3),
    relu6 each, global average pool, fc(10)."""
    b = NetBuilder((size, size, 1), seed=seed)
    b.conv(8, 3, 2, act="relu6")
    b.conv(16, 3, 1, act="relu6")
    b.conv(16, 3, 2, act="relu6")
    b.conv(32, 3, 1, act="relu6")
    b.avgpool()
    b.fc(10)
    return b


def shifted_digits(seed: int = 0, shift: str = "mirror", *, n_source: int = 900, n_train: int = 300,
                  n_val: int = 300, size: int = 16, pretrain_epochs: int = 15, pretrain_lr: float = 0.05,
                  progress: bool = True) -> TransferTask:
    """scikit-learn's digits (1797 8x8 images) resized bilinearly to size x
    size (`tinytrain.datasets.resize_images`): a small CNN (`digits_cnn`) is
    pretrained in float on 85% of `n_source` upright images (the rest scores
    it); the target task is the other images, shifted (`shift_images`:
    mirrored by default, as a camera mounted the other way round would see
    them), split into `n_train` / `n_val` / the rest for test. Activation
    ranges are calibrated on source images (the vendor's data), inputs fixed
    to [0, 1]."""
    if shift not in SHIFTS:
        raise ValueError(f"unknown shift {shift!r}; shifts: {', '.join(SHIFTS)}")
    images, y = digits_images()
    n = len(y)
    if not (n_source > 0 and n_train > 0 and n_val >= 0 and n_source + n_train + n_val < n):
        raise ValueError(f"n_source + n_train + n_val must leave test images out of {n} (and each > 0)")
    x = resize_images(images, size, size)[..., None]
    perm = np.random.default_rng(seed).permutation(n)
    src, tgt = perm[:n_source], perm[n_source:]
    src_fit, src_test = src[:int(0.85 * n_source)], src[int(0.85 * n_source):]

    b = digits_cnn(seed, size)
    secs = {"pretrain": _pretrain(b, x[src_fit], y[src_fit], epochs=pretrain_epochs, lr=pretrain_lr, batch=32,
                                  seed=seed, progress=progress)}
    net = FloatNet(b)
    graph = b.quantize(x[src_fit[:300]], input_range=(0.0, 1.0))
    xt, yt = shift_images(x[tgt], shift), y[tgt]
    q = quantize_input(graph, xt).reshape(len(xt), -1)

    def split(a, z):
        return Split(xt[a:z], q[a:z], yt[a:z])

    tr, va, te = split(0, n_train), split(n_train, n_train + n_val), split(n_train + n_val, len(tgt))
    desc = (f"digits {size}x{size}: CNN pretrained in float on {len(src_fit)} upright images "
            f"({pretrain_epochs} epochs, seed {seed}), target: the other images, {SHIFTED[shift]}")
    return TransferTask(f"digits-{shift}", desc, b, graph, tr, va if n_val else None, te,
                        net.accuracy(x[src_test], y[src_test]), net.accuracy(te.x, te.y), seconds=secs)


# -- IMU: nine subjects -> the tenth --------------------------------------------------
def imu_subject(held_out: int = 4, seed: int = 0, *, pretrain_epochs: int = 15, learn_frac: float = 0.5,
                calib_windows: int = 1000, progress: bool = True) -> TransferTask:
    """The task of `tinytrain demo personalize`: seglearn's smartwatch IMU
    windows (2 s, 6 axes, 7 exercises); the demo's 1-D CNN pretrained in float
    on nine subjects; the target is the held-out subject: `train` the first
    `learn_frac` of each of their recordings, `test` the windows that start
    after the last training window ends (no shared samples); no validation."""
    from .datasets import watch_windows

    w = watch_windows(100, 50, held_out=held_out)
    src = w.subject != held_out
    if not src.any() or src.all():
        raise ValueError(f"subject must be one of {sorted(set(w.subject.tolist()))}, not {held_out}")
    learn, ev = time_split(w, held_out, learn_frac)
    b = imu_cnn(seed, input_shape=w.x.shape[1:], n_classes=len(w.y_labels))
    secs = {"pretrain": _pretrain(b, w.x[src], w.y[src], epochs=pretrain_epochs, lr=0.05, batch=32, seed=seed,
                                  progress=progress)}
    net = FloatNet(b)
    calib = np.sort(np.random.default_rng(seed).permutation(int(src.sum()))[:calib_windows])
    graph = b.quantize(w.x[src][calib])

    def split(idx):
        return Split(w.x[idx], quantize_input(graph, w.x[idx]).reshape(len(idx), -1), w.y[idx].astype(np.int64),
                     w.rec[idx])

    tr, te = split(learn), split(ev)
    desc = (f"IMU exercises (seglearn watch set): 1-D CNN pretrained in float on 9 subjects "
            f"({pretrain_epochs} epochs, seed {seed}), target: subject {held_out}, learning from the first "
            f"{learn_frac:.0%} of each recording, tested on its later windows")
    return TransferTask(f"imu-subject{held_out}", desc, b, graph, tr, None, te,
                        net.accuracy(w.x[src], w.y[src]), net.accuracy(te.x, te.y),
                        "the 9 subjects' windows it was trained on", secs)


# -- what a searched scheme is compared with ------------------------------------------
def full_scheme(graph: QGraph, **opts) -> Scheme:
    """Every weight and bias, with make_scheme's options (lr, lr_scale, qas, residue)."""
    backbone, _ = split_layers(graph)
    return make_scheme(graph, len(backbone), {name: 1.0 for name in backbone}, **opts)


def reference_schemes(graph: QGraph, **opts) -> dict:
    """{name: Scheme}: 'last layer' (the classifier's weights and bias), 'bias
    last k' for every k (the biases of the k backbone layers before the
    classifier, plus the last layer; the planner's k), and 'all layers'."""
    backbone, _ = split_layers(graph)
    out = {"last layer": make_scheme(graph, 0, **opts)}
    for k in range(1, len(backbone) + 1):
        out[f"bias last {k}"] = make_scheme(graph, k, **opts)
    out["all layers"] = full_scheme(graph, **opts)
    return out


def arenas(graph: QGraph, schemes: dict) -> dict:
    """{name: exact arena bytes} of schemes {name: Scheme}."""
    return {name: compile_model(graph, s).arena_size for name, s in schemes.items()}


def analysis_options(graph: QGraph, *, lr: float, epochs: int, seeds, jobs=None) -> dict:
    """The contribution analysis the budget examples share: biases of the last
    k backbone layers for every k, each backbone layer's weights at 1/4, 1/2
    and all channels; QAS, no residue (keyword arguments of
    planner.contribution_analysis / plan_under_budget)."""
    backbone, _ = split_layers(graph)
    return dict(bias_ks=range(len(backbone) + 1), weight_layers=backbone, ratios=(0.25, 0.5, 1.0),
                epochs=epochs, seeds=seeds, jobs=jobs, lr=lr, qas=True, residue=False)


def scheme_label(graph: QGraph, k: int, weights: dict) -> str:
    """A short description of a planner scheme (k, {layer: ratio}), trained
    channels counted: 'bias last 2 + conv2 8/16 + conv3 32/32' (the last
    layer is always trained and not named)."""
    probe = Scheme(weights=dict(weights))
    parts = [f"bias last {k}"] if k else []
    for name, r in weights.items():
        if r > 0:
            layer = graph.layer(name)
            total = layer.weight.shape[3] if layer.kind == "conv" else layer.weight.shape[0]
            parts.append(f"{name} {probe.n_train(layer)}/{total}")
    return " + ".join(parts) if parts else "last layer"
