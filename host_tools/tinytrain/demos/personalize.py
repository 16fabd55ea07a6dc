"""Personalise an exercise classifier to a new user, on the device.

    tinytrain demo personalize                  # subject 4 held out, on the simulator
    tinytrain demo personalize --subject all    # every subject in turn, one table

The story: a smartwatch recognises 7 shoulder exercises from its 6-axis IMU
(seglearn's watch data set, 10 subjects). The vendor trains a small CNN on
9 people and ships it as an int8 model; the 10th person -- the user -- moves
differently, so it misclassifies some of their exercises. The user does each
exercise once while telling the watch which one it is; the watch fine-tunes
itself on those windows, on the device, and recognises that person's later
repetitions better. No data leaves the watch.

Steps (all deterministic given the seed):
1. windows of 2 s (100 samples at 50 Hz), 50% overlap, standardised with the
   statistics of the 9 training subjects (`tinytrain.datasets.watch_windows`);
2. pretrain in float64 on the 9 subjects (`tinytrain.floatnet`) the 1-D CNN
   `tinytrain.tasks.imu_cnn`: conv(16, 1x5, s2) -> conv(32, 1x5, s2) ->
   conv(32, 1x3, s2), relu6 each, global average pool, fc(7); minibatch SGD
   with momentum, cosine schedule;
3. quantise to int8 with calibration on training windows and compile with a
   sparse scheme (default 'bias+last2': the biases of every layer and the
   weights of the last conv and the classifier; QAS, 8-bit residue);
4. split every recording of the held-out subject in time: its first half is
   streamed to the device to learn on; windows that start after the last
   learning window ends are the evaluation set (no shared samples despite the
   50% overlap);
5. accuracy on the evaluation set before, while (the learning curve) and
   after fine-tuning on the device, one sample per step, shuffled each epoch;
   and the same fine-tuning in float64 on the host as the reference (same
   trainable parameters, same samples in the same order, batch 1, same lr,
   plain SGD: what the device computes, without int8).

Where the model trains is a `Device` from `tinytrain.demos.backends`
(`--target sim`, `qemu`, or a board's serial port: docs/streaming.md).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..builder import quantize_input
from ..compiler import Scheme, compile_model
from ..datasets import watch_windows
from ..floatnet import FloatNet, scheme_trainable, train
from ..tasks import SUBJECTS, imu_cnn, time_split
from .backends import check_target, open_device

DEFAULT_SUBJECT = 4
SCHEMES = {
    "last": "weights and biases of the classifier only",
    "bias+fc": "biases of every layer, weights of the classifier",
    "bias+last2": "biases of every layer, weights of the last conv and the classifier",
    "full": "every weight and bias",
}


@dataclass
class Config:
    held_out: int = DEFAULT_SUBJECT
    seed: int = 0
    epochs: int = 5                  # fine-tuning passes over the learning windows
    lr: float = 0.01                 # fine-tuning learning rate (device and float reference)
    scheme: str = "bias+last2"
    residue: bool = True
    learn_frac: float = 0.5          # first part of each recording the user streams to learn on
    window: int = 100                # samples (2 s at 50 Hz)
    step: int = 50                   # 50% overlap
    pretrain_epochs: int = 15
    pretrain_lr: float = 0.05
    pretrain_batch: int = 32
    momentum: float = 0.9
    weight_decay: float = 1e-4
    calib_windows: int = 1000        # training windows used to calibrate activation ranges
    evals_per_epoch: int = 4         # points of the learning curve per epoch


def quick_config(**kw) -> Config:
    """A reduced run for tests and smoke runs (a few seconds)."""
    base = dict(pretrain_epochs=6, epochs=3, calib_windows=500, evals_per_epoch=2)
    base.update(kw)
    return Config(**base)


# -- pieces ---------------------------------------------------------------
def make_scheme(graph, name: str, lr: float, residue: bool = True) -> Scheme:
    names = [layer.name for layer in graph.param_layers]
    if name == "last":
        return Scheme(bias={names[-1]}, weights={names[-1]: 1.0}, lr=lr, residue=residue)
    if name == "bias+fc":
        return Scheme(bias=set(names), weights={names[-1]: 1.0}, lr=lr, residue=residue)
    if name == "bias+last2":
        return Scheme(bias=set(names), weights={n: 1.0 for n in names[-2:]}, lr=lr, residue=residue)
    if name == "full":
        return Scheme.full(graph, lr=lr, residue=residue)
    raise ValueError(f"unknown scheme {name!r}; schemes: {', '.join(SCHEMES)}")


@dataclass
class Result:
    subject: int
    seed: int
    target: str
    scheme: str
    n_learn: int
    n_eval: int
    before: float                    # int8 on the device
    after: float
    float_before: float
    float_after: float
    curve_x: list = field(default_factory=list)      # samples seen
    curve_device: list = field(default_factory=list)
    curve_float: list = field(default_factory=list)
    pretrain_train_acc: float = 0.0
    trained_params: int = 0
    arena_bytes: int = 0
    model_bytes: int = 0
    seconds: dict = field(default_factory=dict)
    model: bytes = field(default=b"", repr=False)  # the model file fine-tuned (before fine-tuning)

    def table(self) -> str:
        lines = [f"held-out subject {self.subject}: {self.n_learn} windows to learn on (first part of each "
                 f"recording), {self.n_eval} later windows to evaluate",
                 f"target {self.target}, scheme {self.scheme} ({SCHEMES.get(self.scheme, '')}): "
                 f"{self.trained_params} trained parameters, arena {self.arena_bytes} bytes, "
                 f"model {self.model_bytes} bytes",
                 "",
                 f"{'held-out accuracy':<28}{'before':>8}{'after':>8}{'gain':>8}",
                 "-" * 52,
                 f"{'int8 on device (' + self.target + ')':<28}{100 * self.before:7.1f}%{100 * self.after:7.1f}%"
                 f"{100 * (self.after - self.before):+7.1f}",
                 f"{'float64 reference (host)':<28}{100 * self.float_before:7.1f}%{100 * self.float_after:7.1f}%"
                 f"{100 * (self.float_after - self.float_before):+7.1f}"]
        s = self.seconds
        lines += ["", "time: " + ", ".join(f"{k} {v:.1f}s" for k, v in s.items())]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def plot_curve(res: Result, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.axhline(100 * res.before, color="0.5", ls=":", lw=1.5, label=f"before fine-tuning ({100 * res.before:.1f}%)")
    ax.plot(res.curve_x, [100 * a for a in res.curve_float], "--", color="#ff7f0e", marker="s", ms=3,
            label=f"float64 reference, host ({100 * res.float_after:.1f}%)")
    ax.plot(res.curve_x, [100 * a for a in res.curve_device], "-", color="#1f77b4", marker="o", ms=3,
            label=f"int8 on device, {res.target} ({100 * res.after:.1f}%)")
    epoch = res.n_learn
    for k in range(1, int(res.curve_x[-1] // epoch) + 1):
        ax.axvline(k * epoch, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel(f"samples seen (one epoch = {res.n_learn} windows)")
    ax.set_ylabel("held-out accuracy (%)")
    lo = min([res.before, res.float_before] + res.curve_device + res.curve_float)
    ax.set_ylim(max(0.0, 100 * lo - 5), 100.5)
    ax.grid(alpha=0.3)
    ax.set_title(f"personalising to subject {res.subject}: {res.scheme}, seed {res.seed} "
                 f"({res.n_eval} later windows)")
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- the demo -------------------------------------------------------------
def run(target: str = "sim", held_out: int = DEFAULT_SUBJECT, seed: int = 0, epochs=None, quick: bool = False,
        plot=None, progress: bool = True, verbose: bool = True, config: Config | None = None, **overrides) -> Result:
    """Pretrain, quantise, fine-tune on `target` for the held-out subject;
    returns a Result (accuracies, learning curves, sizes, timings)."""
    if config is None:
        config = quick_config() if quick else Config()
    cfg = Config(**{**config.__dict__, "held_out": held_out, "seed": seed, **overrides,
                    **({"epochs": epochs} if epochs is not None else {})})
    if cfg.held_out not in SUBJECTS:
        raise ValueError(f"subject must be one of {SUBJECTS[0]}..{SUBJECTS[-1]}, not {cfg.held_out}")
    if cfg.epochs < 1:
        raise ValueError("epochs must be >= 1")
    # Fail early on a target that does not exist, before minutes of work.
    check_target(target)
    t_all = time.time()
    seconds = {}

    w = watch_windows(cfg.window, cfg.step, held_out=cfg.held_out)
    train_mask = w.subject != cfg.held_out
    x_tr, y_tr = w.x[train_mask], w.y[train_mask]
    learn, ev = time_split(w, cfg.held_out, cfg.learn_frac)
    x_l, y_l, x_e, y_e = w.x[learn], w.y[learn], w.x[ev], w.y[ev]

    rng = np.random.default_rng([cfg.seed, cfg.held_out])
    orders = [rng.permutation(len(learn)) for _ in range(cfg.epochs)]
    every = max(1, -(-len(learn) // cfg.evals_per_epoch))
    marks = sorted({k for k in range(every, cfg.epochs * len(learn) + 1, every)} | {cfg.epochs * len(learn)})

    n_pre = cfg.pretrain_epochs * -(-len(x_tr) // cfg.pretrain_batch)
    n_ft = cfg.epochs * len(learn)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_pre + 2 * n_ft, desc=f"subject {cfg.held_out}: pretrain", unit="step",
                   leave=verbose, dynamic_ncols=True)
    try:
        # 1. pretrain in float on the other subjects
        t0 = time.time()
        b = imu_cnn(cfg.seed, input_shape=w.x.shape[1:], n_classes=len(w.y_labels))
        net = FloatNet(b)
        train(net, x_tr, y_tr, epochs=cfg.pretrain_epochs, lr=cfg.pretrain_lr, batch_size=cfg.pretrain_batch,
              momentum=cfg.momentum, weight_decay=cfg.weight_decay, seed=cfg.seed, progress=bar)
        pre_acc = net.accuracy(x_tr, y_tr)
        seconds["pretrain"] = time.time() - t0

        # 2. quantise and compile
        t0 = time.time()
        calib_idx = np.random.default_rng(cfg.seed).permutation(len(x_tr))[:cfg.calib_windows]
        graph = b.quantize(x_tr[np.sort(calib_idx)])
        scheme = make_scheme(graph, cfg.scheme, cfg.lr, cfg.residue)
        plan = compile_model(graph, scheme)
        q_l = [v.tobytes() for v in quantize_input(graph, x_l)]
        q_e = quantize_input(graph, x_e).tobytes()
        labels_e = [int(v) for v in y_e]
        seconds["quantise"] = time.time() - t0

        # 3. fine-tune on the device
        t0 = time.time()
        if bar is not None:
            bar.set_description(f"subject {cfg.held_out}: on {target}")
        dev = open_device(target, plan.data)
        try:
            before = dev.evaluate(q_e, labels_e)
            curve_dev, seen = [], 0
            for order in orders:
                for i in order:
                    dev.step(q_l[i], int(y_l[i]))
                    seen += 1
                    if seen in marks:
                        curve_dev.append(dev.evaluate(q_e, labels_e))
                    if bar is not None:
                        bar.update(1)
            after = curve_dev[-1]
        finally:
            dev.close()
        seconds["device"] = time.time() - t0

        # 4. the float64 reference: same parameters trainable, same samples and order
        t0 = time.time()
        if bar is not None:
            bar.set_description(f"subject {cfg.held_out}: float reference")
        trainable, masks = scheme_trainable(graph, scheme)
        ref = FloatNet(b, trainable=trainable, masks=masks)
        float_before = ref.accuracy(x_e, y_e)
        curve_float = []

        def record(step, n_seen):
            if n_seen in marks:
                curve_float.append(ref.accuracy(x_e, y_e))

        train(ref, x_l, y_l, lr=cfg.lr, batch_size=1, momentum=0.0, weight_decay=0.0, lr_schedule="constant",
              orders=orders, callback=record, progress=bar, write_back=False)
        seconds["float reference"] = time.time() - t0
    finally:
        if bar is not None:
            bar.close()
    seconds["total"] = time.time() - t_all

    res = Result(cfg.held_out, cfg.seed, target, cfg.scheme, len(learn), len(ev), before, after, float_before,
                 curve_float[-1], [0] + marks, [before] + curve_dev, [float_before] + curve_float, pre_acc,
                 plan.trained_params, plan.arena_size, len(plan.data), seconds, plan.data)
    if plot:
        plot_curve(res, plot)
    if verbose:
        print(f"pretrained on subjects {', '.join(str(s) for s in SUBJECTS if s != cfg.held_out)}: "
              f"{len(x_tr)} windows, {cfg.pretrain_epochs} epochs, training accuracy {100 * pre_acc:.1f}%")
        print(f"fine-tuning: {cfg.epochs} epochs, lr {cfg.lr:g}, seed {cfg.seed}")
        print(res.table())
        if plot:
            print(f"learning curve: {plot}")
    return res


def run_all(target: str = "sim", seed: int = 0, subjects=SUBJECTS, progress: bool = True, verbose: bool = True,
            plot=None, **kw) -> list:
    """`run` with every subject held out in turn; prints one table (plot: a PNG of it)."""
    results = []
    for s in subjects:
        results.append(run(target, held_out=s, seed=seed, progress=progress, verbose=False, **kw))
    if plot:
        plot_all(results, plot)
    if verbose:
        print(summary_table(results))
        if plot:
            print(f"figure: {plot}")
    return results


def plot_all(results, path) -> None:
    """Held-out accuracy per subject: before, after on the device, the float reference."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r0 = results[0]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    idx = np.arange(len(results))
    for k, (key, label, color) in enumerate((("before", "before fine-tuning", "0.65"),
                                             ("after", f"int8 on device, {r0.target}", "#1f77b4"),
                                             ("float_after", "float64 reference, host", "#ff7f0e"))):
        vals = [100 * getattr(r, key) for r in results]
        ax.bar(idx + (k - 1) * 0.27, vals, 0.27, color=color,
               label=f"{label} (mean {np.mean(vals):.1f}%)")
    lo = min(min(r.before, r.after, r.float_after) for r in results)
    ax.set_ylim(max(0.0, 100 * lo - 5), 100.5)  # the differences are the point, not the distance from 0
    ax.set_xticks(idx, [str(r.subject) for r in results])
    ax.set_xlabel("held-out subject")
    ax.set_ylabel("held-out accuracy (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"personalising to each subject: {r0.scheme}, seed {r0.seed}")
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_table(results) -> str:
    r0 = results[0]
    lines = [f"held-out accuracy per subject, target {r0.target}, scheme {r0.scheme}, seed {r0.seed}",
             f"{'subject':>7}{'learn':>7}{'eval':>6}{'before':>9}{'after':>8}{'float after':>13}{'gain':>7}",
             "-" * 57]
    for r in results:
        lines.append(f"{r.subject:>7}{r.n_learn:>7}{r.n_eval:>6}{100 * r.before:8.1f}%{100 * r.after:7.1f}%"
                     f"{100 * r.float_after:12.1f}%{100 * (r.after - r.before):+7.1f}")
    m = lambda k: 100 * np.mean([getattr(r, k) for r in results])  # noqa: E731
    lines += ["-" * 57,
              f"{'mean':>7}{'':>13}{m('before'):8.1f}%{m('after'):7.1f}%{m('float_after'):12.1f}%"
              f"{m('after') - m('before'):+7.1f}",
              f"after > before for {sum(r.after > r.before for r in results)} of {len(results)} subjects; "
              f"total time {sum(r.seconds['total'] for r in results):.0f}s"]
    return "\n".join(lines)
