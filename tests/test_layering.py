"""The library never imports the demos: tinytrain.demos builds on the
library (tasks, data sets, compiler, planner...), never the reverse. Checked
on the source with ast, so a lazy import inside a function counts too."""
import ast
from pathlib import Path

import tinytrain

PACKAGE = Path(tinytrain.__file__).parent
# The `tinytrain` command: its `demo` subcommand runs the demos (it sits above them).
ENTRY_POINTS = {"tinytrain.cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set:
    """Absolute names of every module an import statement in the file names
    (for `from X import a`, both X and X.a: a may be a submodule)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def is_demo(name: str) -> bool:
    return name == "tinytrain.demos" or name.startswith("tinytrain.demos.")


def test_import_resolution_sees_relative_imports(tmp_path):
    """The checker itself: relative imports of every level resolve to the demos."""
    assert is_demo("tinytrain.demos.vision")
    found = {p.name: imported_modules(p) for p in PACKAGE.rglob("*.py")}
    assert "tinytrain.demos.backends" in found["vision.py"]  # `from .backends import ...` in demos/
    assert "tinytrain.compiler" in found["transfer.py"]     # `from .compiler import ...`
    assert any(n.startswith("tinytrain.demos") for n in imported_modules(PACKAGE / "cli.py"))


def test_library_does_not_import_demos():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if is_demo(name) or name in ENTRY_POINTS:
            continue
        bad = sorted(m for m in imported_modules(path) if is_demo(m))
        if bad:
            offenders.append(f"{name} imports {', '.join(bad)}")
    assert not offenders, "library modules import demo code:\n" + "\n".join(offenders)
