"""The fast tier (``pytest -m "not slow"``, ``make test-fast``) reaches every module of the package.

Checked statically, without running the tier: every module under ``src/whatsreal/`` must be
imported by a fast test, directly or through the package's own imports (importing
``whatsreal.data.stages`` imports ``whatsreal.data.split``; ``run_probes`` imports
``whatsreal.plots.probes`` inside the function, when it draws Fig. 4). A module that only the
slow tier or only the workflow's scripts import would be edited with no quick feedback at all;
this test names it. Coverage tools would say more but are not a dependency of the project.

What counts as a fast test's import: the module-level imports of a test file that has at least
one test not marked ``slow``, the imports inside such a test's body, and the modules it runs
with ``runpy.run_module`` (``whatsreal.train`` runs ``whatsreal.train.__main__``). Imports inside
a slow test, in a module marked slow as a whole (``pytestmark = pytest.mark.slow``), in a module
that has only slow tests, or in ``conftest.py`` fixtures do not count. Two over-approximations,
accepted to stay static: the helpers of a file with a fast test count (they may serve only its
slow tests), and so do the imports inside package functions (the fast tests may not call them).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from .conftest import REPO

SRC = REPO / "src"
PACKAGE = SRC / "whatsreal"
TESTS = REPO / "tests"


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(nodes: list[ast.AST]) -> set[str]:
    """The package modules named by the import statements among ``nodes`` (``from a import b``
    names ``a.b`` when that is a module, else ``a``) and run by ``runpy.run_module("a")``
    (``a.__main__``)."""
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "runpy.run_module" and node.args:
            if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found |= {node.args[0].value, f"{node.args[0].value}.__main__"}
    return found & set(MODULES)


def _is_slow_mark(node: ast.AST) -> bool:
    return ast.unparse(node).replace(" ", "") in {"pytest.mark.slow", "mark.slow"}


def _module_is_slow(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            marks = node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [node.value]
            return any(_is_slow_mark(m) for m in marks)
    return False


def fast_imports(path: Path) -> set[str]:
    """The package modules a test file imports for its fast tests (see the module docstring)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    if _module_is_slow(tree):
        return set()
    tests = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    fast = [t for t in tests if not any(_is_slow_mark(d) for d in t.decorator_list)]
    if not fast:
        return set()
    slow = {t.name for t in tests} - {t.name for t in fast}
    inside = [n for top in tree.body if getattr(top, "name", None) not in slow for n in ast.walk(top)]
    return _imported(inside)


def package_imports(path: Path) -> set[str]:
    """What a package module imports of the package, lazily inside functions too, and its parents."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = _module_name(path)
    parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
    # A module-level __getattr__ (whatsreal.load) imports only when that attribute is used, so
    # importing the package (as every submodule's import does) does not run it.
    lazy = {id(n) for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "__getattr__" for n in ast.walk(f)}
    return _imported([n for n in ast.walk(tree) if id(n) not in lazy]) | parents


@functools.cache
def _package_graph() -> dict[str, set[str]]:
    return {name: package_imports(path) for name, path in MODULES.items()}


def reached(start: set[str]) -> set[str]:
    """``start`` and every package module importing it imports, transitively."""
    graph = _package_graph()
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    return seen


def test_every_package_module_is_imported_by_a_fast_test():
    direct: dict[str, list[str]] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        for name in fast_imports(path):
            direct.setdefault(name, []).append(path.name)
    missing = sorted(set(MODULES) - reached(set(direct)))
    assert not missing, (
        f"no fast test imports {', '.join(missing)}: add a test without @pytest.mark.slow that imports "
        "it (see README.md, Development), so `make test-fast` exercises it"
    )


def test_the_tier_parser_sees_slow_marks_and_lazy_imports(tmp_path):
    """The checker itself: a slow module, a slow test's import and a fast test's import."""
    (tmp_path / "test_a.py").write_text(
        "import pytest\nimport whatsreal.logs\npytestmark = pytest.mark.slow\ndef test_x():\n    pass\n"
    )
    (tmp_path / "test_b.py").write_text(
        "import pytest\n"
        "@pytest.mark.slow\ndef test_slow():\n    from whatsreal.data import stages\n"
        "def test_fast():\n    from whatsreal.data import split\n"
        "def test_main():\n    runpy.run_module('whatsreal.train')\n"
    )
    assert fast_imports(tmp_path / "test_a.py") == set()
    expected = {"whatsreal.data", "whatsreal.data.split", "whatsreal.train", "whatsreal.train.__main__"}
    assert fast_imports(tmp_path / "test_b.py") == expected
    assert {"whatsreal.data.split", "whatsreal.data", "whatsreal"} <= reached({"whatsreal.data.stages"})
    assert "whatsreal.data.stages" not in reached({"whatsreal.data.split"})
