"""The `tinytrain` command: convert models, plan their training, inspect them."""
from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from . import modelfile as mf
from .lr_rule import lr_argument
from .plots import check_output
from .sram import step_sram


def _load_graph(src: str, classes=None, head="first", calib=None):
    p = Path(src)
    if not p.exists():
        raise FileNotFoundError(errno.ENOENT, "no such file", str(src))
    data = p.read_bytes()
    if data[:4] == mf.MAGIC:
        from .compiler import graph_from_model
        if classes is not None:
            raise ValueError("--classes applies to source models, not to a .ttm")
        return graph_from_model(data)
    if p.suffix == ".pkl":
        from .convert import tte
        return tte.load(p, n_classes=classes, head=head)
    if p.suffix == ".tflite" or data[4:8] == b"TFL3":
        from .convert import tflite
        return tflite.to_graph(data, n_classes=classes, head=head, src=src)
    if p.suffix == ".onnx":
        from .convert import onnx
        if calib is None:
            raise ValueError(f"{src}: a float ONNX model needs calibration data: --calib FILE "
                             "(tinytrain convert)")
        return onnx.convert(p, calib, n_classes=classes, head=head)
    raise ValueError(f"{src}: unsupported model format (supported: tinytrain .ttm, the paper's int8 .pkl, "
                     "float .onnx, int8 .tflite)")


def _compile(graph, args):
    from .compiler import compile_model
    from .schemes import parse_scheme
    scheme = parse_scheme(args.scheme, graph, lr=args.lr, residue=args.residue or None,
                          qas=False if args.no_qas else None)
    return compile_model(graph, scheme, fuse=not args.no_fuse, bias16=not args.no_bias16)


def _write(plan, args, budget=None):
    out = Path(args.output)
    out.write_bytes(plan.data)
    print(f"wrote {out} ({len(plan.data)} bytes): arena {plan.arena_size} bytes, "
          f"{plan.trained_params} trained parameters ({plan.persist_size} bytes)")
    if getattr(args, "report", None):
        Path(args.report).write_text(plan.report() + "\n")
        print(f"wrote {args.report}")
    if getattr(args, "plot", None):
        from .plots import plot_memory
        plot_memory(plan, args.plot, title=f"{out.name}: {args.scheme}", budget=budget)
        print(f"wrote {args.plot}")


def cmd_convert(args):
    graph = _load_graph(args.source, args.classes, args.head, args.calib)
    _write(_compile(graph, args), args)


def cmd_plan(args):
    from . import plancmd
    plancmd.check_search_options(args)
    budget = plancmd.parse_bytes(args.budget) if args.budget is not None else None
    graph = _load_graph(args.model, args.classes, args.head)
    if budget is not None and args.scheme is None:
        plancmd.search_and_write(graph, args, Path(args.model).name)  # tinytrain/plancmd.py
        return
    args.scheme = args.scheme or "last"
    plan = _compile(graph, args)
    print(plan.report() if args.verbose else "\n".join(plan.report().splitlines()[:3]))
    print(step_sram(plan.data).line())
    if budget is not None:
        print(plancmd.check_scheme(plan, budget, args.scheme))
    if args.check_peak:
        print(plancmd.check_peak(plan))
    _write(plan, args, budget)


def cmd_info(args):
    data = Path(args.model).read_bytes()
    if data[:4] != mf.MAGIC:
        raise ValueError(f"{args.model}: not a tinytrain model file (.ttm); make one with: tinytrain convert "
                         f"{args.model} -o model.ttm (see tinytrain convert -h)")
    from .api import Model
    from .trainer import Trainer
    Trainer(data)  # validates the file with the C core's reader
    print(f"{args.model}: {Model(data).describe()}")


def cmd_demo(args):
    if args.name == "vision":
        return _demo_vision(args)
    for opt in ("data", "model", "scheme", "budget"):
        if getattr(args, opt) is not None:
            raise ValueError(f"--{opt} applies to the vision demo, not to {args.name}")
    from .demos import personalize  # lazily: pulls in the data set and training code
    args.subject = "4" if args.subject is None else args.subject
    args.plot = "personalize.png" if args.plot is None else args.plot
    subject = args.subject.lower()
    if subject != "all" and not subject.isdigit():
        raise ValueError(f"--subject must be a number 1..10 or 'all', not {args.subject!r}")
    if subject == "all" and args.save_model:
        raise ValueError("--save-model keeps one subject's model: give --subject N")
    check_output(args.plot, "--plot")
    check_output(args.save_model, "--save-model")
    extra = {} if args.lr is None else {"lr": args.lr}
    try:
        if subject == "all":
            personalize.run_all(args.target, seed=args.seed, epochs=args.epochs, quick=args.quick, plot=args.plot,
                                **extra)
        else:
            res = personalize.run(args.target, held_out=int(subject), seed=args.seed, epochs=args.epochs,
                                  quick=args.quick, plot=args.plot, **extra)
            _save_model(res.model, args.save_model)
    except (NotImplementedError, ImportError) as e:
        raise ValueError(str(e)) from None


def _save_model(data: bytes, path) -> None:
    if path:
        Path(path).write_bytes(data)
        print(f"wrote {path}: the model file the demo fine-tuned (train it again: tinytrain stream --model "
              f"{path} --data ...)")


def _demo_vision(args):
    from .demos import vision  # lazily: pulls in the data sets and training code
    if args.subject is not None:
        raise ValueError("--subject applies to the personalize demo, not to vision")
    if args.budget is not None and args.scheme is not None:
        raise ValueError("give --scheme or --budget, not both")
    from .plancmd import parse_bytes
    budget = parse_bytes(args.budget) if args.budget is not None else None
    plot = "vision.png" if args.plot is None else args.plot
    check_output(plot, "--plot")
    check_output(args.save_model, "--save-model")
    extra = {} if args.lr is None else {"lr": args.lr}
    try:
        res = vision.run(args.target, data=args.data or "digits", model=args.model, scheme=args.scheme or "auto",
                         budget=budget, seed=args.seed, epochs=args.epochs, quick=args.quick, plot=plot, **extra)
        _save_model(res.rows[0].model, args.save_model)
    except (NotImplementedError, ImportError, FileNotFoundError) as e:
        raise ValueError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (tinytrain.api takes its names and defaults from it)."""
    from .schemes import SCHEME_HELP
    ap = argparse.ArgumentParser(prog="tinytrain", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def scheme_args(p):
        p.add_argument("--scheme", default="last", help="what to train (default: last)")
        p.add_argument("--lr", type=lr_argument, help="default learning rate stored in the model (> 0)")
        p.add_argument("--residue", action="store_true", help="8 fraction bits per trained weight")
        p.add_argument("--no-qas", action="store_true", help="plain int8 SGD (for comparison)")
        p.add_argument("--no-fuse", action="store_true",
                       help="no fused ops: every layer's output stored whole (a larger arena, for comparison)")
        p.add_argument("--no-bias16", action="store_true",
                       help="every trained bias int32 in the arena (by default a layer's are int16 changes "
                            "where those reach far enough: 2 bytes a bias instead of 4; for comparison)")
        p.add_argument("-o", "--output", required=True, help="model file to write (.ttm)")
        p.add_argument("--report", help="write the memory report to this text file")
        p.add_argument("--plot", help="write a PNG of live memory over the schedule")

    from .convert.onnx import SUPPORTED_HELP as onnx_help
    from .convert.tflite import SUPPORTED_HELP as tflite_help
    p = sub.add_parser("convert", help="convert a model into a tinytrain model file",
                       epilog=onnx_help + "\n\n" + tflite_help + "\n\nschemes:\n" + SCHEME_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="the paper's int8 .pkl, a float ONNX model (.onnx, needs --calib), "
                   "or a full-integer int8 TFLite model (.tflite)")
    p.add_argument("--calib", help="ONNX: calibration inputs, float, in the model's own layout (NCHW: "
                   "(N, C, H, W); 1-D (N, C, L)): a .npy, or a .npz holding them under the model's "
                   "input name (or as its only array)")
    p.add_argument("--classes", type=int, help="new classifier with this many classes")
    p.add_argument("--head", choices=("first", "fresh"), default="first",
                   help="new classifier: first N rows of the old one, or fresh random weights")
    scheme_args(p)
    p.set_defaults(fn=cmd_convert)

    from .plancmd import HELP as plan_doc, add_arguments as add_plan_arguments
    p = sub.add_parser("plan", help="plan training of a model under a scheme or a memory budget",
                       epilog="schemes:\n" + SCHEME_HELP + "\n" + plan_doc,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a .ttm or a source model")
    p.add_argument("-v", "--verbose", action="store_true", help="print the per-op memory report")
    p.add_argument("--classes", type=int, help="source models: new classifier with this many classes")
    p.add_argument("--head", choices=("first", "fresh"), default="first",
                   help="new classifier: first N rows of the old one, or fresh random weights")
    p.add_argument("--check-peak", action="store_true",
                   help="train two steps in the simulator and check the arena bytes touched are the plan's")
    scheme_args(p)
    p.set_defaults(fn=cmd_plan, scheme=None)  # --scheme: default last, unless --budget searches one
    add_plan_arguments(p)  # --budget, --data, ... (tinytrain/plancmd.py)

    p = sub.add_parser("info", help="describe a model file")
    p.add_argument("model")
    p.set_defaults(fn=cmd_info)

    p = sub.add_parser("demo", help="run a demo (personalize: fine-tune to a new user on the device; "
                       "vision: transfer learning on images)")
    p.add_argument("name", choices=("personalize", "vision"))
    p.add_argument("--target", default="sim", help="where to train: sim (default), qemu, or a board's serial port")
    p.add_argument("--subject", help="personalize: held-out subject 1..10, or 'all' (default 4)")
    p.add_argument("--seed", type=int, default=0, help="init, calibration and sample-order seed (default 0)")
    p.add_argument("--epochs", type=int, help="fine-tuning epochs (personalize: default 5, 3 with --quick; "
                   "vision: 3, 2 with --quick)")
    p.add_argument("--plot", help="PNG of the learning curve (default personalize.png, vision.png; personalize "
                   "--subject all: accuracy per subject)")
    p.add_argument("--quick", action="store_true", help="reduced run (personalize: shorter pretraining, 3 epochs; "
                   "vision: fewer images, well under a minute)")
    p.add_argument("--data", choices=("digits", "faces"), help="vision: digits (default; 10 classes) or faces "
                   "(lfw_subset: faces vs other patches)")
    p.add_argument("--model", help="vision: the paper's int8 .pkl (default ../shared/models/tte/mcunet-5fps.pkl "
                   "beside the repository, else a small CNN), or 'small'")
    p.add_argument("--scheme", help="vision: what to train, comma-separated to compare (default auto: the "
                   "published scheme that fits the F746's 192 KiB arena; see `tinytrain convert -h`)")
    p.add_argument("--budget", help="vision: plan the scheme under this many bytes of arena, e.g. 150000 or 150k (contribution "
                   "analysis + search: a few minutes more)")
    p.add_argument("--lr", type=lr_argument, help="fine-tuning learning rate (default: the demo's, printed "
                   "with its results)")
    p.add_argument("--save-model", metavar="FILE", help="write the model file the demo fine-tunes (.ttm; vision: "
                   "the first scheme's), for `tinytrain stream --model FILE`")
    p.set_defaults(fn=cmd_demo)

    from .stream.commands import add_commands as add_stream_commands
    add_stream_commands(sub)  # stream, pull, push (tinytrain/stream/commands.py)
    from .install import add_command as add_install_command
    add_install_command(sub)  # install (tinytrain/install.py)
    return ap


def main(argv=None):
    from .stream.session import StreamError
    args = build_parser().parse_args(argv)
    try:
        rc = args.fn(args)
    except StreamError as e:  # a device's or a link's error, in a demo on a device
        print(f"tinytrain: {e}", file=sys.stderr)
        return 1
    except (ValueError, KeyError) as e:
        print(f"tinytrain: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written: -o, --report, a scheme .json, info's model
        where = f"{e.filename}: " if e.filename else ""
        print(f"tinytrain: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinytrain: interrupted", file=sys.stderr)
        return 130
    return rc if isinstance(rc, int) else 0  # stream from a live source: 130 when Ctrl-C ended it


if __name__ == "__main__":
    sys.exit(main())
