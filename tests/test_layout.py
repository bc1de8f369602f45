"""The results layout has one owner (whatsreal.layout): no other module spells a file name,
and every figure and table the layout lists is an output of the rule it names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from whatsreal.layout import FIGURES, TABLES, DatasetLayout, RunLayout
from whatsreal.plan import benchmark_jobs, run_figures, run_rules, summary_tables
from whatsreal.rule_times import BENCHMARKED_RULES

from .conftest import REPO, tiny_config

SRC = REPO / "src" / "whatsreal"
FILE_NAME = re.compile(r"[\w{}./*-]*[\w{}]\.(npy|npz|parquet|csv|ckpt|png|fits|tsv|md|yaml|json|safetensors|log|html)")
"""A string that is a file name or path (``split.parquet``, ``images_{}.npy`` for an f-string),
not a bare suffix (``.parquet``: temporary files)."""
NOT_RESULTS_FILES = {"ascii.csv"}
"""Strings shaped like file names that name none (astropy's table format)."""
ALLOWED = {"layout.py", "config.py", "cli.py"}
"""The layout; the config module (it names config/config.yaml, the demo's config file); the
training command line (its --help names model.ckpt)."""


def _literals(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string that is not a docstring: plain constants as they are,
    f-strings as templates with ``{}`` for each placeholder."""
    docs, inner = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            docs.add(id(node.value))  # a module, class, function or attribute docstring
        if isinstance(node, ast.JoinedStr):
            inner.update(id(v) for v in node.values)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            out.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs | inner:
            out.append((node.lineno, node.value))
    return out


def file_name_literals(path: Path) -> list[str]:
    """``line: text`` of each string in ``path``'s code that is a file name (not prose about one)."""
    return [
        f"{line}: {text!r}"
        for line, text in _literals(ast.parse(path.read_text()))
        # A run's table is named by its TABLES key, which RunLayout.table resolves.
        if FILE_NAME.fullmatch(text) and text not in TABLES and text not in NOT_RESULTS_FILES
    ]


def test_no_module_but_the_layout_spells_a_results_file_name():
    offenders = {
        str(p.relative_to(REPO)): hits
        for p in sorted(SRC.rglob("*.py"))
        if p.name not in ALLOWED and (hits := file_name_literals(p))
    }
    assert not offenders, f"file names belong in whatsreal/layout.py: {offenders}"


def test_the_check_sees_a_file_name_in_code_but_not_in_a_docstring(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text('"""Reads images_{survey}.npy."""\ndef f(d, s):\n    return d / f"images_{s}.npy"\n')
    assert [h.split(":")[0] for h in file_name_literals(mod)] == ["3"]


def _rule_blocks() -> dict[str, str]:
    blocks = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule \w+:)", smk.read_text()):
            m = re.match(r"\s*rule (\w+):", block)
            if m:
                blocks[m.group(1)] = block
    return blocks


def test_every_listed_figure_and_table_is_an_output_of_its_rule():
    blocks = _rule_blocks()
    for name, rule in FIGURES.items():
        outputs = blocks[rule].split("output:")[1].split("log:")[0]
        assert f'RUN.figure("{name}")' in outputs, (name, rule)
    for name, rule in TABLES.items():
        outputs = blocks[rule].split("output:")[1].split("log:")[0]
        assert f'RUN.table("{name}")' in outputs, (name, rule)


def test_layout_paths_and_patterns():
    data = DatasetLayout("results/sim")
    assert data.images("hsc") == Path("results/sim/images_hsc.npy")
    assert str(data.images("{survey}")) == "results/sim/images_{survey}.npy"  # a rule's pattern
    run = data.run("main")
    assert isinstance(run, RunLayout) and run.embeddings == Path("results/sim/runs/main/embeddings.parquet")
    assert run.embeddings_tokens.parent == run.embeddings.parent
    assert data.run_data_files("spatial")[0] == data.split
    assert data.neighbours("hsc", "random") not in data.run_data_files("spatial")
    with pytest.raises(KeyError, match="unknown figure"):
        run.figure("fig1")
    with pytest.raises(KeyError, match="unknown table"):
        run.table("table6.csv")
    assert DatasetLayout.of("results/sim") == data and DatasetLayout.of(data) is data


def test_the_plan_follows_the_config():
    cfg = tiny_config()
    runs = list(cfg["runs"])
    sampled = cfg["experiments"]["generative_runs"] or runs
    for run in runs:
        rules = run_rules(cfg, run)
        assert ("posterior_samples" in rules) == (run in sampled)
        assert set(run_figures(cfg, run)) == {f for f, r in FIGURES.items() if r in rules}
        assert all(TABLES[t] in rules for t in summary_tables(cfg, run))
    jobs = benchmark_jobs(cfg)
    assert {rule for rule, _ in jobs} <= set(BENCHMARKED_RULES)
    assert all(set(wc) == set(BENCHMARKED_RULES[rule]) for rule, wc in jobs)
    real = {**cfg, "dataset": {**cfg["dataset"], "source": "mmu"}}
    assert "simulate" not in {rule for rule, _ in benchmark_jobs(real)}
    assert all("truth_metrics" not in run_rules(real, run) for run in runs)


def test_rules_take_their_paths_from_the_layout():
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        assert "{RESULTS}/" not in text and "RUN_DIR" not in text, smk.name
