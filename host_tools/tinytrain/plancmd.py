"""`tinytrain plan MODEL --budget BYTES --data train.npz`: the sparse-update
scheme of highest measured accuracy gain whose exact arena fits a memory
budget (tinytrain.planner: contribution analysis in the simulator, then the
search), written into the model file with its arena plan.

Data files (.npz; the same arrays `tinytrain stream --data` reads):
  x (or X, inputs)    the inputs, one per row, in the source model's layout:
                      (N, C, H, W) for ONNX, (N, H, W, C) for TFLite and the
                      paper's models, or flat. int8 arrays are the values the
                      model takes; float arrays are real values, quantised
                      with the model's input scale and zero point, q =
                      clip(round(x / scale + zero), -128, 127), the scale
                      being the float32 the model file stores (values outside
                      the calibration range warned about); other integer
                      arrays (uint8, int64) are refused: cast them to say
                      which they are.
  y (or Y, labels)    class indices 0..classes-1, one per input.
  x_eval, y_eval      optional (or x_test/y_test): the validation set when
                      neither --val nor --val-split is given.
Validation: --val FILE.npz, or --val-split F (a seeded split of --data,
stratified by class); default: the file's x_eval/y_eval, else --val-split 0.2.

Learning rate: --lr, else picked before the analysis by a small sweep on
the data (LR_CANDIDATES: the classifier and the largest bias setting trained at each,
scored on the validation set); the analysis, the search and the written model
use it (`tinytrain info` prints it; `tinytrain stream --lr` overrides it).
Every run of the sweep and the analysis decays the rate linearly to 0 over
its steps (step i of N at lr (N - i) / N); to train as measured, do the same
on the board: `t.set_lr(lr * (N - i) / N)` before step i.

The analysis (--save-analysis FILE.json) can be reused with --analysis
FILE.json: no data is read and nothing is trained then; options that shape
an analysis must match the stored one when given.
"""
from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import planner
from .compiler import Scheme, compile_model
from .inputs import ModelIO, check_labels

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024 ** 2, "mb": 1024 ** 2,
          "mib": 1024 ** 2}
X_KEYS, Y_KEYS = ("x", "X", "inputs"), ("y", "Y", "labels", "label")
X_EVAL_KEYS, Y_EVAL_KEYS = ("x_eval", "x_test", "X_test"), ("y_eval", "y_test", "Y_test")
DEFAULT_LR = 0.05  # with --analysis or without data only; a search with data picks its own
HELP = __doc__.replace("LR_CANDIDATES", ", ".join(f"{v:g}" for v in planner.LR_CANDIDATES))


def parse_bytes(text, what: str = "--budget") -> int:
    """A byte count: 65536, 64k, 64K, 64kB, 64KiB, 1.5M (k = 1024 bytes, M = 1024 k)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", str(text).replace("_", ""))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS:
        raise ValueError(f"{what} {text!r} is not a number of bytes (e.g. 65536, 64k, 64KiB, 1.5M; k = 1024)")
    value = Fraction(m.group(1)) * _UNITS[unit]
    if value.denominator != 1:
        raise ValueError(f"{what} {text!r} is not a whole number of bytes ({float(value):g})")
    if value <= 0:
        raise ValueError(f"{what} {text!r}: must be a positive number of bytes")
    return int(value)


def add_arguments(p) -> None:
    """The budget-search options of `tinytrain plan`."""
    g = p.add_argument_group("planning under a memory budget (instead of --scheme; see below)")
    g.add_argument("--budget", help="arena bytes the scheme must fit: 65536, 64k, 64KiB (k = 1024). "
                   "With --scheme: check that scheme against it")
    g.add_argument("--data", help="training data .npz (x, y) for the contribution analysis")
    v = g.add_mutually_exclusive_group()
    v.add_argument("--val", help="validation data .npz (default: the x_eval/y_eval in --data, else --val-split 0.2)")
    v.add_argument("--val-split", type=float, help="fraction of --data held out for validation (stratified)")
    g.add_argument("--bias-ks", help="numbers k of layers before the classifier whose biases are tried, "
                   "e.g. 0,4,8 (default: about every eighth of them)")
    g.add_argument("--weight-layers", help="layers whose weights are tried: names or indices among the layers "
                   "with parameters, e.g. --weight-layers=-3,-5 (default: the last 8 convolutions)")
    g.add_argument("--ratios", help="fractions of a layer's input channels tried, e.g. 1/4,1/2,1 "
                   "(default 1/8,1/4,1/2,1)")
    g.add_argument("--backbone-lr-scale", type=float, help="lr multiplier of every layer but the classifier")
    g.add_argument("--epochs", type=int, help="epochs of each analysis run (default 1)")
    g.add_argument("--seeds", help="sample orders averaged per configuration: a count N (orders 0..N-1, "
                   "default 1) or a list 0,5,9")
    g.add_argument("--jobs", type=int, help="worker processes (default: every core)")
    g.add_argument("--method", choices=("exact", "dp", "evolution"), default="exact",
                   help="search: exact branch and bound (default), additive DP, evolutionary")
    g.add_argument("--analysis", help="reuse a contribution analysis saved with --save-analysis (no training)")
    g.add_argument("--save-analysis", help="write the contribution analysis as JSON")


def _ints(text: str, what: str) -> list:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a comma-separated list of whole numbers") from None


def _ratios(text: str) -> tuple:
    try:
        out = tuple(float(Fraction(v.strip())) for v in text.split(",") if v.strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"--ratios: {text!r} is not a list of fractions like 1/4,0.5,1") from None
    if not out or any(not 0 < r <= 1 for r in out):
        raise ValueError(f"--ratios: {text!r}: every ratio must lie in (0, 1]")
    return out


def _seeds(text: str) -> list:
    values = _ints(text, "--seeds")
    if not values:
        raise ValueError("--seeds: give a count or a list of seeds")
    if "," not in text:
        if values[0] < 1:
            raise ValueError(f"--seeds {values[0]}: the number of sample orders must be >= 1")
        return list(range(values[0]))
    return values


def _weight_layers(text: str) -> list:
    return [int(v) if re.fullmatch(r"-?\d+", v.strip()) else v.strip() for v in text.split(",") if v.strip()]


# -- data ---------------------------------------------------------------------------
def _pick(d: dict, keys):
    return next((k for k in keys if k in d), None)


def _read_npz(path: str, what: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} {path}: no such file")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # zip, format or pickle errors from numpy
        raise ValueError(f"{what} {path}: not a readable .npz file ({e})") from None


def _inputs(x: np.ndarray, graph, where: str) -> np.ndarray:
    """int8 (N, input bytes) by the rules of every entry (tinytrain/inputs.py)."""
    io = ModelIO.from_graph(graph)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"{where}: inputs of shape {x.shape}: expected a batch (N, "
                         f"{', '.join(map(str, io.sample_shape))}) of N >= 1 inputs, or (N, {io.input_bytes})")
    flat, _ = io.batch(x, where)
    return io.inputs(flat, None, where)


def _labels(y: np.ndarray, n: int, n_classes: int, where: str) -> np.ndarray:
    return check_labels(y, n, n_classes, where)


def load_data(path: str, graph, what: str = "--data") -> tuple:
    """((x int8 (N, input bytes), y int64), (x_eval, y_eval) or None) from an .npz."""
    d = _read_npz(path, what)
    kx, ky = _pick(d, X_KEYS), _pick(d, Y_KEYS)
    held = ", ".join(d) or "nothing"
    if kx is None:
        raise ValueError(f"{what} {path}: no array 'x' of inputs (it holds: {held})")
    if ky is None:
        raise ValueError(f"{what} {path}: no array 'y' of labels (it holds: {held})")
    n_cls = graph.tensors[graph.output].numel
    x = _inputs(d[kx], graph, f"{path} [{kx}]")
    y = _labels(d[ky], len(x), n_cls, f"{path} [{ky}]")
    kxe, kye = _pick(d, X_EVAL_KEYS), _pick(d, Y_EVAL_KEYS)
    ev = None
    if kxe is not None and kye is not None:
        xe = _inputs(d[kxe], graph, f"{path} [{kxe}]")
        ev = (xe, _labels(d[kye], len(xe), n_cls, f"{path} [{kye}]"))
    return (x, y), ev


def split(data: tuple, fraction: float, seed: int = 0) -> tuple:
    """(train, val): a seeded split, stratified by class (each class with
    at least two samples gives round(fraction * its count), at least one)."""
    if not 0 < fraction < 1:
        raise ValueError(f"--val-split {fraction:g}: must lie strictly between 0 and 1")
    x, y = data
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) >= 2:
            val.extend(idx[:min(len(idx) - 1, max(1, round(fraction * len(idx))))])
    mask = np.zeros(len(y), bool)
    mask[np.asarray(val, dtype=np.int64)] = True
    if not mask.any():
        raise ValueError(f"--val-split {fraction:g}: {len(y)} samples leave none for validation "
                         "(give --val FILE.npz)")
    return (x[~mask], y[~mask]), (x[mask], y[mask])


# -- budget checks ---------------------------------------------------------------------
def check_minimum(graph, budget: int, scheme_of_head) -> None:
    """Refuse a budget below the smallest searched scheme (the classifier's
    weights and bias), naming what the classifier's bias alone would need."""
    need = compile_model(graph, scheme_of_head).arena_size
    if budget >= need:
        return
    head = planner.split_layers(graph)[1]
    s = scheme_of_head
    bias_only = compile_model(graph, Scheme(bias={head}, weights={}, lr=s.lr, qas=s.qas, residue=s.residue,
                                            lr_scale=s.lr_scale)).arena_size
    if budget < bias_only:
        raise ValueError(f"budget of {budget:,} bytes is too small for even the classifier's bias: training it "
                         f"needs {bias_only:,} bytes of arena (the minimum); the classifier's weights and bias, "
                         f"the smallest scheme the search considers, need {need:,}")
    raise ValueError(f"budget of {budget:,} bytes is too small: the searched schemes all train the classifier's "
                     f"weights and bias, which needs {need:,} bytes of arena (the minimum); its bias alone fits "
                     f"in {bias_only:,} (a scheme file {{\"bias\": [-1]}} given to --scheme)")


def check_scheme(plan, budget: int, spec: str) -> str:
    if plan.arena_size > budget:
        raise ValueError(f"scheme {spec} needs {plan.arena_size:,} bytes of arena, over the budget of "
                         f"{budget:,} bytes by {plan.arena_size - budget:,}")
    return f"scheme {spec} fits the budget: arena {plan.arena_size:,} of {budget:,} bytes " \
           f"({budget - plan.arena_size:,} spare)"


def check_peak(plan, samples=None, steps: int = 2, seed: int = 0) -> str:
    """Train `steps` samples in the simulator (random inputs unless given)
    and compare the arena bytes touched with the plan's; raises on a difference."""
    from .trainer import measure_peak

    h = plan.model.header
    n_in = plan.model.tensors[h.input_tensor].numel
    if samples is None:
        rng = np.random.default_rng(seed)
        samples = [(rng.integers(-128, 128, n_in).astype(np.int8), int(rng.integers(h.n_classes)))
                   for _ in range(steps)]
    measured = measure_peak(plan.data, samples)
    if measured != plan.used_bytes:
        raise ValueError(f"the simulator touched {measured:,} arena bytes, the plan places its last byte at "
                         f"{plan.used_bytes:,}: plan and core disagree")
    return (f"simulator: {len(samples)} training steps touched {measured:,} arena bytes = the plan's last "
            f"placed byte (arena {plan.arena_size:,} bytes: that, rounded up to 4)")


# -- the search -------------------------------------------------------------------
def _requested(args, graph) -> dict:
    """The analysis settings given on the command line (None: not given)."""
    r = {"bias_ks": _ints(args.bias_ks, "--bias-ks") if args.bias_ks is not None else None,
         "weight_layers": _weight_layers(args.weight_layers) if args.weight_layers is not None else None,
         "ratios": _ratios(args.ratios) if args.ratios is not None else None,
         "epochs": args.epochs, "seeds": _seeds(args.seeds) if args.seeds is not None else None,
         "lr": args.lr, "lr_scale": args.backbone_lr_scale,
         "qas": False if args.no_qas else None, "residue": True if args.residue else None}
    if r["epochs"] is not None and r["epochs"] < 1:
        raise ValueError(f"--epochs {r['epochs']}: must be >= 1")
    if r["weight_layers"] is not None:
        r["weight_layers"] = [planner.resolve_layer(graph, k) for k in r["weight_layers"]]
    return r


def _check_reuse(a: planner.Analysis, req: dict, graph, path: str) -> None:
    if a.fingerprint != planner.graph_fingerprint(graph):
        raise ValueError(f"--analysis {path} was measured on another model (weights or shapes differ): "
                         "leave --analysis out to measure this one")
    s = a.settings
    have = {"bias_ks": sorted(a.bias), "weight_layers": sorted(a.weight_layers), "ratios": sorted(a.ratios),
            "epochs": s["epochs"], "seeds": list(s["seeds"]), "lr": s["lr"], "lr_scale": s["lr_scale"],
            "qas": s["qas"], "residue": s["residue"]}
    want = dict(req)
    if want["bias_ks"] is not None:
        want["bias_ks"] = sorted({0} | set(want["bias_ks"]))
    for key in ("weight_layers", "ratios"):  # their order does not change an analysis
        if want[key] is not None:
            want[key] = sorted(set(want[key]))
    flags = {"bias_ks": "--bias-ks", "weight_layers": "--weight-layers", "ratios": "--ratios",
             "epochs": "--epochs", "seeds": "--seeds", "lr": "--lr", "lr_scale": "--backbone-lr-scale",
             "qas": "--no-qas", "residue": "--residue"}
    for key, value in want.items():
        if value is None:
            continue
        same = value == have[key] if not isinstance(value, float) else \
            isinstance(have[key], (int, float)) and abs(value - have[key]) <= 1e-12 * max(1.0, abs(value))
        if not same:
            raise ValueError(f"{flags[key]}: the analysis in {path} was measured with {have[key]}, not {value}: "
                             f"leave {flags[key]} out to reuse it, or --analysis out to measure again")


def search_and_write(graph, args, model_name: str) -> None:
    """`tinytrain plan MODEL --budget B` without --scheme."""
    plan, result, analysis, budget = search(graph, args)
    write_searched(plan, result, analysis, budget, args, model_name)


def search(graph, args) -> tuple:
    """(plan, search result, analysis, budget): the scheme searched under
    args.budget (the `tinytrain plan` options), compiled; nothing written
    but args.save_analysis."""
    if args.no_fuse or args.no_bias16:
        flag = "--no-fuse" if args.no_fuse else "--no-bias16"
        raise ValueError(f"{flag}: the budget search plans the arenas the compiler writes by default; "
                         f"leave {flag} out (or give --scheme)")
    budget = parse_bytes(args.budget)
    for flag, path in (("-o", args.output), ("--report", args.report), ("--plot", args.plot),
                       ("--save-analysis", args.save_analysis)):
        folder = Path(path).parent if path else None
        if folder is not None and not folder.is_dir():  # found out now, not after the analysis
            raise ValueError(f"{flag} {path}: folder {folder} does not exist")
    req = _requested(args, graph)
    analysis = None
    if args.analysis:
        try:
            analysis = planner.Analysis.load(args.analysis)
        except FileNotFoundError:
            raise ValueError(f"--analysis {args.analysis}: no such file") from None
        except OSError as e:
            raise ValueError(f"--analysis {args.analysis}: cannot read it ({e.strerror})") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"--analysis {args.analysis}: not a saved analysis ({e!r})") from None
        _check_reuse(analysis, req, graph, args.analysis)
        check_minimum(graph, budget, analysis.scheme(graph, 0))
        s = analysis.settings
        print(f"reusing the contribution analysis in {args.analysis} ({s['n_train']} train / {s['n_val']} "
              f"validation samples); {'--data not read' if args.data else 'no data needed'}")
    else:
        opts = dict(lr=req["lr"] if req["lr"] is not None else DEFAULT_LR, lr_scale=req["lr_scale"],
                    qas=req["qas"] is None, residue=bool(req["residue"]))
        check_minimum(graph, budget, planner.make_scheme(graph, 0, **opts))
        if not args.data:
            raise ValueError("--budget needs training data: --data FILE.npz (or a saved --analysis FILE.json)")
        train, ev = load_data(args.data, graph)
        if args.val:
            val, _ = load_data(args.val, graph, "--val")
        elif args.val_split is None and ev is not None:
            val = ev
        else:
            train, val = split(train, 0.2 if args.val_split is None else args.val_split)
        if args.jobs is not None and args.jobs < 1:
            raise ValueError(f"--jobs {args.jobs}: must be >= 1")
        if req["lr"] is None:  # picked on the user's data, then used and stored (planner/lr_sweep.py)
            from .planner import lr_sweep
            opts["lr"], scores = planner.pick_lr(graph, train, val, epochs=req["epochs"] or 1,
                                                 seeds=req["seeds"] or [0], lr_scale=opts["lr_scale"],
                                                 qas=opts["qas"], residue=opts["residue"])
            print(lr_sweep.describe(opts["lr"], scores))
        print(f"contribution analysis: {len(train[0])} train / {len(val[0])} validation samples")
        analysis = planner.contribution_analysis(
            graph, train, val, bias_ks=req["bias_ks"], weight_layers=req["weight_layers"],
            ratios=req["ratios"] or planner.DEFAULT_RATIOS, epochs=req["epochs"] or 1,
            seeds=req["seeds"] or [0], jobs=args.jobs, **opts)
    if args.save_analysis:
        analysis.save(args.save_analysis)
        print(f"wrote {args.save_analysis}")

    result = planner.search(analysis, budget, graph, method=args.method, progress=True)
    plan = compile_model(graph, result.scheme)
    assert plan.arena_size == result.arena_size
    if args.verbose:
        print(analysis.table())
        print()
    print(result.report)
    return plan, result, analysis, budget


def write_searched(plan, result, analysis, budget: int, args, model_name: str) -> None:
    scheme_json = json.dumps(result.scheme_json(), sort_keys=True)
    out = Path(args.output)
    out.write_bytes(plan.data)
    print(f"wrote {out} ({len(plan.data)} bytes): arena {plan.arena_size:,} bytes (budget {budget:,}), "
          f"{plan.trained_params} trained parameters ({plan.persist_size} bytes)")
    if args.check_peak:
        print(check_peak(plan))
    if args.report:
        text = "\n".join([
            f"tinytrain plan {model_name} --budget {args.budget} ({budget:,} bytes)",
            "", result.report,
            "", "the scheme (as a file for --scheme FILE.json):", scheme_json,
            "", f"memory plan of {out.name} (live bytes per op, the peak and the tensors live there):",
            plan.report(),
            "", analysis.table()])
        Path(args.report).write_text(text + "\n")
        print(f"wrote {args.report}")
    if args.plot:
        from .plots import plot_memory
        plot_memory(plan, args.plot, title=f"{out.name}: searched under {budget:,} B "
                    f"(arena {plan.arena_size:,} B)", budget=budget)
        print(f"wrote {args.plot}")


def check_search_options(args) -> None:
    """Search options without --budget are a mistake."""
    used = [f for a, f in (("data", "--data"), ("val", "--val"), ("val_split", "--val-split"),
                           ("bias_ks", "--bias-ks"), ("weight_layers", "--weight-layers"), ("ratios", "--ratios"),
                           ("epochs", "--epochs"), ("seeds", "--seeds"), ("jobs", "--jobs"),
                           ("backbone_lr_scale", "--backbone-lr-scale"), ("analysis", "--analysis"),
                           ("save_analysis", "--save-analysis")) if getattr(args, a, None) is not None]
    if args.method != "exact":
        used.append("--method")
    if used and args.budget is None:
        raise ValueError(f"{', '.join(used)}: these plan under a memory budget; give --budget BYTES")
    if used and args.scheme is not None:
        raise ValueError(f"{', '.join(used)}: these search a scheme; --scheme {args.scheme} is given "
                         "(with --budget it is only checked against the budget)")
