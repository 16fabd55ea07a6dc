"""Training schemes by name: what `tinytrain convert/plan --scheme` accept.

    last                 the classifier's weights and biases
    bias:K               biases of the last K layers with parameters (classifier weights too)
    full                 every weight and bias
    MODEL:LABEL          a scheme published with the paper, e.g. mcunet-5fps:99kb
    path/to/scheme.json  {"bias": [...], "weights": {layer: ratio}, "residue": false,
                          "qas": true, "lr": 0.05}; layers by name or by index among
                          the layers with parameters (negative counts from the end)
"""
from __future__ import annotations

import json
from pathlib import Path

from .compiler import Scheme
from .graph import QGraph

SCHEME_HELP = __doc__.split("\n", 2)[2]


def _layer_name(graph: QGraph, key) -> str:
    names = [layer.name for layer in graph.param_layers]
    if isinstance(key, int) or (isinstance(key, str) and key.lstrip("-").isdigit()):
        i = int(key)
        if not -len(names) <= i < len(names):
            raise ValueError(f"layer index {i} out of range: {len(names)} layers have parameters")
        return names[i]
    graph.layer(key)  # raises with the known names
    return key


def parse_scheme(spec: str, graph: QGraph, **options) -> Scheme:
    """A Scheme from a spec string; options (lr, residue, qas) override."""
    from .convert import tte

    head = graph.param_layers[-1].name
    opts = {k: v for k, v in options.items() if v is not None}
    if spec == "last":
        return Scheme(bias={head}, weights={head: 1.0}, **opts)
    if spec == "full":
        return Scheme.full(graph, **opts)
    if spec.startswith("bias:"):
        k = int(spec.split(":", 1)[1])
        names = [layer.name for layer in graph.param_layers]
        if not 1 <= k <= len(names):
            raise ValueError(f"bias:{k}: the model has {len(names)} layers with parameters")
        return Scheme(bias=set(names[-k:]), weights={head: 1.0}, **opts)
    if spec.endswith(".json") or Path(spec).is_file():
        d = json.loads(Path(spec).read_text())
        unknown = set(d) - {"bias", "weights", "residue", "qas", "lr", "lr_scale", "loss"}
        if unknown:
            raise ValueError(f"{spec}: unknown keys {sorted(unknown)}")
        kw = {k: d[k] for k in ("residue", "qas", "lr", "loss") if k in d}
        kw.update(opts)
        return Scheme(bias={_layer_name(graph, k) for k in d.get("bias", [])},
                      weights={_layer_name(graph, k): float(v) for k, v in d.get("weights", {}).items()},
                      lr_scale={_layer_name(graph, k): float(v) for k, v in d.get("lr_scale", {}).items()},
                      **kw)
    if ":" in spec:
        model, label = spec.split(":", 1)
        return tte.published_scheme(graph, model, label, **opts)
    raise ValueError(f"unknown scheme {spec!r}; use one of:\n{SCHEME_HELP}")
