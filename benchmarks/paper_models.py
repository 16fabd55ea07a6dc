"""The paper's three int8 models with every published sparse scheme, on real
inputs: scikit-learn's digits upscaled to 128x128x3 (10 classes, a fresh
classifier), as `tinytrain plan MODEL.pkl --classes 10 --head fresh
--scheme MODEL:LABEL` plans them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinytrain import datasets
from tinytrain import modelfile as mf
from tinytrain.compiler import Plan, compile_model

TTE = Path(__file__).resolve().parents[2] / "shared" / "models" / "tte"
MODELS = ("mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3")
# "On-Device Training Under 256KB Memory", STM32F746, sparse update + operator reordering
PAPER_KB = {"mcunet-5fps": 173, "mbv2-w0.35": 141, "proxyless-w0.3": 135}
PAPER_MS = {"mcunet-5fps": 546, "mbv2-w0.35": 373, "proxyless-w0.3": 443}
PAPER_MHZ = 216


@dataclass
class Case:
    model: str
    scheme: str
    plan: Plan
    xs: list  # int8 inputs
    ys: list  # labels


def missing() -> str | None:
    absent = [m for m in MODELS if not (TTE / f"{m}.pkl").exists()]
    return f"{', '.join(absent)} not found in {TTE}" if absent else None


def digits(graph, n: int) -> tuple:
    """n digits (one of each class first), upscaled, as the model's int8 inputs."""
    images, labels = datasets.digits_images()
    order = np.concatenate([np.flatnonzero(labels == c)[:1] for c in range(10)] +
                           [np.arange(len(labels))])
    idx = list(dict.fromkeys(order.tolist()))[:n]
    xs = datasets.to_model_inputs(graph, images, idx)
    return [x for x in xs], [int(labels[i]) for i in idx]


def cases(n_samples: int, only=None):
    """Every published scheme of the three models; only: {model: [labels]} to restrict."""
    from tinytrain.convert import tte
    for model in MODELS:
        if only is not None and model not in only:
            continue
        g = tte.load(str(TTE / f"{model}.pkl"), n_classes=10, head="fresh", seed=0)
        xs, ys = digits(g, n_samples)
        for label in tte.PUBLISHED[model]:
            if only is not None and only[model] and label not in only[model]:
                continue
            plan = compile_model(g, tte.published_scheme(g, model, label))
            yield Case(model, label, plan, xs, ys)


def op_kinds(model: mf.Model) -> list:
    """A short kind name for every op: 'fwd conv1x1', 'bwd dwconv3x3', 'fwd fused', ..."""
    names = []
    for op in model.ops:
        if op.kind == mf.OP_LOSS:
            names.append("loss")
            continue
        if op.kind == mf.OP_GRAD_ADD:
            names.append("bwd gradient sum")
            continue
        L = model.layers[op.layer]
        if op.kind == mf.OP_FWD_FUSED:
            names.append("fwd fused (row by row)")
            continue
        kind = mf.LAYER_KIND_NAMES[L.kind]
        if L.kind in (mf.L_CONV, mf.L_DWCONV):
            kind += f"{L.kh}x{L.kw}"
            if L.kind == mf.L_CONV and model.tensors[L.inp].c == 3:
                kind = "stem " + kind
        names.append(("fwd " if op.kind == mf.OP_FWD else "bwd ") + kind)
    return names


def breakdown(model: mf.Model, per_op: list) -> dict:
    """Instructions per op kind, largest first."""
    kinds = op_kinds(model)
    out: dict = {}
    for k, v in zip(kinds, per_op):
        out[k] = out.get(k, 0) + int(v)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
