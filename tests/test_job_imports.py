"""What a workflow job's new interpreter imports: the jobs that only read tables or posterior
samples import neither torch nor, where they only compare images, scikit-learn.

Every Snakemake job is a new Python process, and on a 2-core machine importing torch costs
2-3 s of CPU and scikit-learn 1-2 s; the finished tiny workflow (tests/conftest.py) runs 54
jobs, so what each imports for nothing is paid many times over in CI and in ``make run``.
The modules are read off each script's own ``import`` statements, so a script that starts
importing a heavy module through a new helper fails here.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import whatsreal

from .conftest import REPO

NOT_IMPORTED = {
    "calibration": ("torch",),
    "spatial_structure": ("torch",),
    "comparison": ("torch",),
    "counterfactuals": ("torch", "sklearn"),
    "truth_counterfactuals": ("torch", "sklearn"),
}
"""workflow/scripts/<name>.py -> packages its job must not import."""


def script_modules(script: Path) -> list[str]:
    """The modules a workflow script imports at its top level, in order."""
    names = []
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def test_script_modules_reads_both_import_forms(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import json\nfrom whatsreal.io import write_csv\nif True:\n    import torch\n")
    assert script_modules(script) == ["json", "whatsreal.io"]


@pytest.mark.parametrize("name", sorted(NOT_IMPORTED))
def test_a_job_that_only_reads_tables_imports_no_torch(name):
    modules = script_modules(REPO / "workflow" / "scripts" / f"{name}.py")
    assert any(m.startswith("whatsreal.experiments") for m in modules), modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        f"print(sorted(p for p in {NOT_IMPORTED[name]!r} if p in sys.modules))\n"
    )
    # A fresh interpreter (this one has imported torch), on the same package as here.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(whatsreal.__file__).parents[1]), *sys.path])}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == "[]", f"the {name} job imports {res.stdout.strip()}"
