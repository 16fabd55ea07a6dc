"""The Python API beside the `tinytrain` command: the same names and defaults.

    m = tinytrain.convert("net.onnx", calib="calib.npy", classes=10)   # tinytrain convert
    m = tinytrain.plan(m, budget="64k", data="train.npz")              # tinytrain plan
    m.save("net.ttm")                   # or m.data: the .ttm bytes
    m.input_shape, m.input_scale, m.input_zero, m.layout
    m.layers                            # names as the planner, reports and --weight-layers use them
    m.trains                            # {layer name: what trains}
    x8 = m.quantize(x)                  # real values in the source layout to int8 inputs
    t = tinytrain.Trainer(m.data)

Keyword arguments are the command's options with '-' as '_' (no_qas=True is
--no-qas); convert's scheme defaults to 'last', plan's to 'last' unless a
budget is given (then the search picks it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import modelfile as mf
from .inputs import ModelIO


@dataclass(frozen=True)
class Layer:
    index: int
    name: str
    kind: str
    in_shape: tuple   # (h, w, c)
    out_shape: tuple
    kernel: tuple | None
    stride: int | None
    trained: str      # '' (frozen), 'bias', 'w 8/32', 'bias w 32/32'; 'bias16': int16 bias changes


class Model:
    """A tinytrain model file (.ttm), read: what it takes and what it trains."""

    def __init__(self, data, plan=None):
        data = Path(data).read_bytes() if isinstance(data, (str, os.PathLike)) else bytes(data)
        if data[:4] != mf.MAGIC:
            raise ValueError("not a tinytrain model file (.ttm): make one with tinytrain.convert(...)")
        self.data = data
        self._plan = plan  # the compiler's plan when built here (report(), plots)
        self._m = mf.Model.parse(data)
        self._io = ModelIO(data)
        h = self._m.header
        self.input_shape = self._io.input_shape  # (h, w, c): the input slot, as Trainer.info() says
        self.sample_shape = self._io.sample_shape  # one input as quantize() takes it
        self.input_scale, self.input_zero = self._io.in_scale, self._io.in_zero
        self.output_scale, self.output_zero = self._io.out_scale, self._io.out_zero
        self.layout = self._io.layout
        self.classes = h.n_classes
        self.loss = "mse" if h.loss_kind == mf.LOSS_MSE else "softmax cross-entropy"
        self.lr = h.lr
        self.arena_size, self.persist_size = h.arena_size, h.persist_size
        self.layers = [_layer(i, L, self._m.tensors) for i, L in enumerate(self._m.layers)]

    @property
    def trains(self) -> dict:
        """{layer name: what trains} for the layers that train."""
        return {L.name: L.trained for L in self.layers if L.trained}

    @property
    def calibration_range(self) -> tuple:
        return self._io.calibration_range

    def quantize(self, x):
        """Real values (one sample in the source layout, or a batch) to int8
        inputs; see Trainer.quantize."""
        return self._io.quantize(x)

    def save(self, path) -> None:
        Path(path).write_bytes(self.data)

    def __bytes__(self) -> bytes:
        return self.data

    def report(self) -> str:
        """The memory plan per op (models built by convert/plan here)."""
        if self._plan is None:
            raise ValueError("the memory report is made when the model is planned: tinytrain.plan(model)")
        return self._plan.report()

    def describe(self) -> str:
        """What `tinytrain info` prints."""
        from .sram import step_sram
        h = self._m.header
        lines = [f"format {h.version_major}.{h.version_minor}, {h.file_size} bytes",
                 f"input {'x'.join(map(str, self.input_shape))} int8 (scale {self.input_scale:.6g}, zero "
                 f"{self.input_zero}; the source model's layout {self.layout}: one sample "
                 f"{'x'.join(map(str, self.sample_shape))}), {self.classes} outputs, loss {self.loss}, lr {self.lr:g}",
                 f"arena {self.arena_size} bytes, of which trained parameters {self.persist_size}",
                 step_sram(self.data).line()]
        width = max([len(L.name) for L in self.layers] + [4])
        lines.append(f"{'#':>3} {'name':{width}} {'kind':8} {'in':>12} {'out':>12} {'k':>5} {'s':>2} {'trained':>16}")
        for L in self.layers:
            k = f"{L.kernel[0]}x{L.kernel[1]}" if L.kernel else ""
            lines.append(f"{L.index:3d} {L.name:{width}} {L.kind:8} {'x'.join(map(str, L.in_shape)):>12} "
                         f"{'x'.join(map(str, L.out_shape)):>12} {k:>5} {L.stride or '':>2} {L.trained:>16}")
        m = self._m
        for op in m.ops[:h.n_fwd_ops]:
            if op.kind != mf.OP_FWD_FUSED:
                continue
            chain = [i for i in (op.t[mf.FUSED_A], op.layer, op.t[mf.FUSED_C]) if i != mf.NONE]
            ring = f", ring {m.tensors[op.t[mf.FUSED_RING]].size} B" if op.t[mf.FUSED_RING] != mf.NONE else ""
            lines.append(f"fused: layers {'+'.join(m.layers[i].name for i in chain)} run row by row{ring}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<tinytrain.Model {len(self.data)} bytes: input {self.sample_shape} {self.layout}, "
                f"{self.classes} classes, arena {self.arena_size} B, trains {len(self.trains)} layers>")


def _layer(i: int, L, tensors) -> Layer:
    x, y = tensors[L.inp], tensors[L.out]
    windowed = L.kind in (mf.L_CONV, mf.L_DWCONV, mf.L_MAXPOOL, mf.L_AVGPOOL2D)  # kernel and stride
    tr = []
    if L.flags & mf.LF_TRAIN_BIAS:
        tr.append("bias16" if L.flags & mf.LF_BIAS16 else "bias")
    if L.n_train:
        tr.append(f"w {L.n_train}/{x.c if L.kind == mf.L_CONV else y.c}")
    return Layer(i, L.name, mf.LAYER_KIND_NAMES[L.kind], x.shape, y.shape, (L.kh, L.kw) if windowed else None,
                 L.stride if windowed else None, " ".join(tr))


# -- convert and plan ---------------------------------------------------------------
def _namespace(cmd: str, positional: str, options: dict):
    """The command's parsed defaults with options put in, each checked to be one of its options."""
    from .cli import build_parser
    from .lr_rule import check_lr
    ap = build_parser()
    sub = next(a for a in ap._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    p = sub.choices[cmd]
    args = p.parse_args([positional, "-o", ""])
    known = set(vars(args)) - {"fn", "source", "model", "output", "report", "plot"}
    for key, value in options.items():
        if key not in known:
            raise TypeError(f"tinytrain.{cmd}() has no option {key!r}; options: {', '.join(sorted(known))}")
        setattr(args, key, value)
    if args.lr is not None:
        args.lr = check_lr(args.lr)
    args.output, args.report, args.plot = None, None, None
    return args


def _source(model) -> tuple:
    """(a path the loaders read, a temporary file to remove or None) for a path, a Model or .ttm bytes."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model), None
    import tempfile
    data = model.data if isinstance(model, Model) else bytes(model)
    fd, tmp = tempfile.mkstemp(suffix=".ttm")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return tmp, tmp


def convert(source, **options) -> Model:
    """tinytrain convert SOURCE: a model file from the paper's .pkl, a float
    .onnx (calib= float inputs or a .npy/.npz) or an int8 .tflite."""
    from .cli import _compile, _load_graph
    args = _namespace("convert", os.fspath(source), options)
    graph = _load_graph(args.source, args.classes, args.head, args.calib)
    plan = _compile(graph, args)
    return Model(plan.data, plan)


def plan(model, **options) -> Model:
    """tinytrain plan MODEL: a .ttm (path, bytes or Model) or a source model
    planned again under scheme=..., or searched under budget=... with data=."""
    from . import plancmd
    from .cli import _compile, _load_graph
    path, tmp = _source(model)
    try:
        args = _namespace("plan", path, options)
        plancmd.check_search_options(args)
        if args.budget is not None:
            args.budget = str(args.budget)
        graph = _load_graph(args.model, args.classes, args.head)
        if args.budget is not None and args.scheme is None:
            built, *_ = plancmd.search(graph, args)
            return Model(built.data, built)
        args.scheme = args.scheme or "last"
        built = _compile(graph, args)
        if args.budget is not None:
            plancmd.check_scheme(built, plancmd.parse_bytes(args.budget), args.scheme)
        return Model(built.data, built)
    finally:
        if tmp:
            os.remove(tmp)
