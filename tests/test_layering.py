"""The library never imports the demos: tinytrain.demos builds on the
library (tasks, data sets, compiler, planner...), never the reverse. Checked
on the source with ast, so a lazy import inside a function counts too."""
import ast
import re
from pathlib import Path

import tinytrain

PACKAGE = Path(tinytrain.__file__).parent
# The `tinytrain` command: its `demo` subcommand runs the demos (it sits above them).
ENTRY_POINTS = {"tinytrain.cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, name: str, is_package: bool = False) -> set:
    """Absolute names of every module the import statements of module `name`
    name, at any depth (for `from X import a`, both X and X.a: a may be a
    submodule)."""
    package = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def is_demo(name: str) -> bool:
    return name == "tinytrain.demos" or name.startswith("tinytrain.demos.")


def test_checker_sees_every_form_of_import():
    src = ("import tinytrain.demos.vision\n"
           "def f():\n"
           "    from ..demos import personalize\n"
           "    from ..demos.backends import open_device\n"
           "class C:\n"
           "    def g(self):\n"
           "        from tinytrain.demos import vision\n"
           "from . import sources\n")
    found = imported_modules(src, "tinytrain.stream.x")
    assert {"tinytrain.demos.vision", "tinytrain.demos.personalize", "tinytrain.demos.backends",
            "tinytrain.stream.sources"} <= found
    assert "tinytrain.demos" in imported_modules("from . import demos\n", "tinytrain", is_package=True)
    assert "tinytrain.demos.vision" in imported_modules("from .vision import run\n", "tinytrain.demos.x")
    assert not any(is_demo(m) for m in imported_modules("from .demosaic import x\nimport demos\n",
                                                        "tinytrain.x"))


def test_library_does_not_import_demos():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if is_demo(name) or name in ENTRY_POINTS:
            continue
        bad = sorted(m for m in imported_modules(path.read_text(), name, path.name == "__init__.py")
                     if is_demo(m))
        if bad:
            offenders.append(f"{name} imports {', '.join(bad)}")
    assert not offenders, "library modules import demo code:\n" + "\n".join(offenders)


# An op's tensor ids by slot number (`op.t[3]`, `op->t[3]`): the slot's meaning then lives
# at the use, not in the one table of slot names (modelfile.py's FWD_/BWD_/LOSS_/GRAD_ADD_/
# FUSED_ constants, the core's tt_format.h enums).
BARE_SLOT = re.compile(r"(?:\.|->)t\[\s*\d+\s*\]")
CORE = Path(__file__).resolve().parent.parent / "micropython_modules" / "tinytrain"


def bare_slot_uses(paths) -> list:
    return [f"{p.name}:{n}: {line.strip()}" for p in paths
            for n, line in enumerate(p.read_text().splitlines(), 1) if BARE_SLOT.search(line)]


def test_bare_slot_pattern_sees_both_languages():
    assert BARE_SLOT.search("masks[op.t[0]] = m") and BARE_SLOT.search("tt_tensor(m, op->t[ 3 ])")
    assert not BARE_SLOT.search("op.t[mf.BWD_MASK]") and not BARE_SLOT.search("op->t[TT_FUSED_A]")


def test_op_slots_are_read_by_name():
    py = [p for p in PACKAGE.rglob("*.py") if p.name != "modelfile.py"]
    c = [p for p in CORE.rglob("*") if p.suffix in (".c", ".h") and p.name != "tt_format.h"]
    assert py and c
    offenders = bare_slot_uses(sorted(py) + sorted(c))
    assert not offenders, "op slots read by number:\n" + "\n".join(offenders)
