"""rule_times.csv and its summary section, from Snakemake benchmark TSVs (whatsreal.rule_times)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from whatsreal.rule_times import (
    BENCHMARKED_RULES,
    COLUMNS,
    BenchmarkJob,
    benchmark_stem,
    collect_rule_times,
    ran_unmeasured,
    read_benchmark,
    read_rule_times,
    rule_times_section,
    write_rule_times,
)

from .conftest import REPO

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _tsv(path: Path, *rows: tuple[float, float, float, float]) -> Path:
    """A benchmark TSV in Snakemake 9's layout; rows are (s, max_rss, mean_load, cpu_time)."""
    lines = [HEADER]
    for s, rss, load, cpu in rows:
        hms = f"{int(s) // 3600}:{int(s) % 3600 // 60:02d}:{int(s) % 60:02d}"
        memory = f"{rss:.2f}\t{rss * 2:.2f}\t{rss / 2:.2f}\t{rss / 2:.2f}"
        lines.append(f"{s:.4f}\t{hms}\t{memory}\t1.00\t2.00\t{load}\t{cpu}\n")
    path.write_text("".join(lines))
    return path


def test_jobs_become_rows_slowest_first_with_their_wildcards(tmp_path):
    jobs = [
        BenchmarkJob("simulate", {}, _tsv(tmp_path / "simulate.tsv", (35.2, 812.5, 97.0, 34.1))),
        BenchmarkJob("train", {"run": "main"}, _tsv(tmp_path / "train_main.tsv", (384.0, 2100.0, 180.0, 690.0))),
        BenchmarkJob(
            "posterior_samples",
            {"run": "main", "direction": "hsc"},
            _tsv(tmp_path / "posterior_samples_main_hsc.tsv", (100.0, 900.0, 99.0, 98.0)),
        ),
    ]
    table = collect_rule_times(jobs)
    assert list(table.columns) == list(COLUMNS)
    assert list(table["rule"]) == ["train", "posterior_samples", "simulate"]
    assert list(table["job"]) == ["run=main", "run=main, direction=hsc", ""]
    train = table.iloc[0]
    assert train["seconds"] == pytest.approx(384.0) and train["max_rss_mb"] == pytest.approx(2100.0)
    assert train["cpu_time_s"] == pytest.approx(690.0) and train["mean_load_pct"] == pytest.approx(180.0)
    assert train["io_out_mb"] == pytest.approx(2.0) and train["repeats"] == 1
    assert train["benchmark"] == str(tmp_path / "train_main.tsv")


def test_repeats_average_time_and_keep_peak_memory(tmp_path):
    row = read_benchmark(_tsv(tmp_path / "b.tsv", (10.0, 100.0, 50.0, 5.0), (20.0, 300.0, 70.0, 15.0)))
    assert row is not None
    assert row["repeats"] == 2
    assert row["seconds"] == pytest.approx(15.0) and row["cpu_time_s"] == pytest.approx(10.0)
    assert row["max_rss_mb"] == pytest.approx(300.0)


def test_unmeasured_values_and_empty_files_are_not_measured(tmp_path):
    na = tmp_path / "na.tsv"
    na.write_text(HEADER + "0.0123\t0:00:00\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n")
    empty = tmp_path / "empty.tsv"
    empty.touch()  # a job kept from before benchmarks existed (README)
    table = collect_rule_times(
        [BenchmarkJob("embed", {"run": "a"}, empty), BenchmarkJob("umap", {"run": "a"}, na)],
    )
    assert list(table["rule"]) == ["umap", "embed"]  # measured first
    assert table.iloc[0]["seconds"] == pytest.approx(0.0123) and pd.isna(table.iloc[0]["max_rss_mb"])
    assert pd.isna(table.iloc[1]["seconds"]) and table.iloc[1]["repeats"] == 0
    text = "\n".join(rule_times_section(table))
    assert "1 of 2 jobs measured" in text
    assert "| embed | 1 | - | - | - |" in text


@pytest.mark.parametrize(
    "content",
    ["rule\ttime\ntrain\t3\n", HEADER, HEADER + "fast\t0:00:01\t1\t1\t1\t1\t1\t1\t1\t1\n"],
    ids=["no-s-column", "no-row", "s-not-a-number"],
)
def test_a_file_that_is_not_a_benchmark_is_named(tmp_path, content):
    bad = tmp_path / "benchmarks" / "train_main.tsv"
    bad.parent.mkdir()
    bad.write_text(content)
    with pytest.raises(ValueError, match=r"train_main\.tsv.*rerun"):
        collect_rule_times([BenchmarkJob("train", {"run": "main"}, bad)])


def test_written_table_reads_back_and_sums_per_rule(tmp_path):
    jobs = [
        BenchmarkJob("train", {"run": "main"}, _tsv(tmp_path / "t1.tsv", (300.0, 2000.0, 150.0, 450.0))),
        BenchmarkJob("train", {"run": "other"}, _tsv(tmp_path / "t2.tsv", (100.0, 2500.0, 150.0, 150.0))),
        BenchmarkJob("simulate", {}, _tsv(tmp_path / "s.tsv", (30.0, 500.0, 90.0, 27.0))),
    ]
    out = tmp_path / "out" / "rule_times.csv"
    written = write_rule_times(jobs, out)
    back = read_rule_times(out)
    pd.testing.assert_frame_equal(back, written, check_dtype=False)
    assert back.loc[back["rule"] == "simulate", "job"].item() == ""
    lines = rule_times_section(back)
    assert "3 of 3 jobs measured, 0:07:10 in all" in lines[0]
    per_rule = [line for line in lines if line.startswith("| train | 2 ")]
    assert per_rule == ["| train | 2 | 0:06:40 | 300.0 | 2,500 |"]
    assert lines.index("| train | 2 | 0:06:40 | 300.0 | 2,500 |") < next(
        i for i, line in enumerate(lines) if line.startswith("| simulate | 1 ")
    )
    assert not list(out.parent.glob(".rule_times.csv*")), "no temporary file left behind"


def test_a_table_without_the_columns_is_refused(tmp_path):
    path = tmp_path / "rule_times.csv"
    path.write_text("rule,seconds\ntrain,3\n")
    with pytest.raises(ValueError, match=r"rule_times\.csv.*rerun the rule_times rule"):
        read_rule_times(path)


def test_reads_what_the_installed_snakemake_writes(tmp_path):
    """The format check: a real `benchmark:` (with repeat) from the Snakemake this project runs."""
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            """
            rule work:
                output: "out_{x}.txt"
                benchmark: repeat("benchmarks/work_{x}.tsv", 2)
                shell: "python -c 'sum(range(20_000_000))' && echo done > {output}"
            """
        )
    )
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "out_a.txt", "--cores", "1", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    table = collect_rule_times([BenchmarkJob("work", {"x": "a"}, tmp_path / "benchmarks" / "work_a.tsv")])
    row = table.iloc[0]
    assert row["repeats"] == 2
    assert 0 < row["seconds"] < 60
    assert row["max_rss_mb"] > 1  # a Python process: megabytes, measured by Snakemake's psutil sampler


def test_every_benchmarked_rule_is_listed_and_named_like_its_log():
    """The workflow's `benchmark:` rules are exactly BENCHMARKED_RULES, each TSV named as its log."""
    found = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule \w+:)", smk.read_text()):
            m = re.match(r"\s*rule (\w+):", block)
            if m and "benchmark:" in block:
                found[m.group(1)] = block
    assert set(found) == set(BENCHMARKED_RULES)
    for rule, block in found.items():
        assert f'benchmark_file("{rule}")' in block, rule
        log = re.search(r'log:\n\s+DATA\.log\("(\S+)"\)', block)
        assert log, rule
        wildcards = {w: w for w in BENCHMARKED_RULES[rule]}
        assert log.group(1).replace("{", "").replace("}", "") == benchmark_stem(rule, wildcards), rule
    with pytest.raises(KeyError, match="BENCHMARKED_RULES"):
        benchmark_stem("retrieval", {"run": "main"})


def test_jobs_that_ran_before_their_benchmark_are_not_collected(tmp_path):
    """Upgrading old results must not rerun training to time it: a logged job without a TSV
    is 'ran unmeasured'; a job never run, or one with its TSV, is collected."""
    results = tmp_path / "results" / "sim"
    (results / "logs").mkdir(parents=True)
    (results / "benchmarks").mkdir()
    (results / "logs" / "train_main.log").write_text("ran\n")
    (results / "logs" / "simulate.log").write_text("ran\n")
    _tsv(results / "benchmarks" / "simulate.tsv", (30.0, 500.0, 90.0, 27.0))
    assert ran_unmeasured(results, "train", {"run": "main"})
    assert not ran_unmeasured(results, "simulate", {})
    assert not ran_unmeasured(results, "train", {"run": "random_neighbours"})
    assert not ran_unmeasured(results, "posterior_samples", {"run": "main", "direction": "hsc"})
