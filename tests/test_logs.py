"""Every failure is logged: a step's log holds its traceback, and a rerun keeps the old log."""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from whatsreal.logs import log_to_file, rotate_log

from .conftest import REPO

SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))


@pytest.fixture
def restore_logging():
    """log_to_file changes process-wide state (root handlers, sys.excepthook); put it back."""
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    yield
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook = hook


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_an_uncaught_exception_leaves_its_traceback_in_the_log(tmp_path):
    # A failing import after log_to_file: what a step whose heavy import breaks does.
    got = _python(
        """
        from whatsreal.logs import log_to_file
        log = log_to_file("logs/step.log")
        log.info("step starts")
        import module_that_does_not_exist
        """,
        tmp_path,
    )
    assert got.returncode == 1
    text = (tmp_path / "logs" / "step.log").read_text()
    assert "step starts" in text
    assert "CRITICAL" in text and "Traceback (most recent call last)" in text
    assert "ModuleNotFoundError: No module named 'module_that_does_not_exist'" in text
    # stderr still gets the traceback, once (from the chained default hook, not twice).
    assert got.stderr.count("Traceback (most recent call last)") == 1


def test_the_previous_excepthook_still_runs(tmp_path):
    got = _python(
        """
        import sys
        from pathlib import Path
        def mine(kind, value, tb):
            Path("hook_ran").write_text(kind.__name__)
        sys.excepthook = mine
        from whatsreal.logs import log_to_file
        log_to_file("step.log")
        log_to_file("step.log")  # a second call must not chain the hook twice
        raise ValueError("boom")
        """,
        tmp_path,
    )
    assert got.returncode == 1
    assert (tmp_path / "hook_ran").read_text() == "ValueError"
    assert (tmp_path / "step.log").read_text().count("ValueError: boom") == 1


def test_a_rerun_keeps_the_previous_attempts(tmp_path, restore_logging):
    path = tmp_path / "logs" / "step.log"
    for attempt in range(1, 5):
        log_to_file(path, keep=2).info("attempt %d", attempt)
        if attempt == 2:
            path.unlink()  # what Snakemake does to a job's log before running the job again
    for h in logging.getLogger().handlers:
        h.flush()
    assert "attempt 4" in path.read_text()
    assert "attempt 3" in Path(f"{path}.1").read_text()
    assert "attempt 2" in Path(f"{path}.2").read_text()  # survived the unlink through its hidden link
    assert not Path(f"{path}.3").exists()  # keep=2
    assert "attempt 4" not in Path(f"{path}.1").read_text()  # the current log truncated nothing kept


def test_rotation_is_safe_on_missing_and_empty_logs(tmp_path):
    path = tmp_path / "step.log"
    assert rotate_log(path) == []  # nothing there: nothing to do
    path.write_text("")
    assert rotate_log(path) == []  # an empty log is not worth keeping
    assert not path.exists() and not Path(f"{path}.1").exists()
    path.write_text("written by something else\n")
    assert rotate_log(path, keep=3) == [Path(f"{path}.1")]
    assert Path(f"{path}.1").read_text() == "written by something else\n"
    path.write_text("again\n")
    rotate_log(path, keep=0)  # keep nothing
    assert not path.exists() and not Path(f"{path}.2").exists()


@pytest.mark.slow
def test_snakemake_failed_job_then_rerun_keeps_the_failure_log(tmp_path):
    """A real Snakemake run of a `script:` rule: it deletes the log before a rerun."""
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            """
            rule step:
                output: "out.txt"
                log: "logs/step.log"
                script: "step.py"
            """
        )
    )
    (tmp_path / "step.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path

            from whatsreal.logs import log_to_file

            log = log_to_file(snakemake.log[0])
            log.info("attempt starts")
            if Path("fail").exists():
                raise RuntimeError("the input was bad")
            Path(snakemake.output[0]).write_text("done\\n")
            log.info("attempt succeeded")
            """
        )
    )
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--quiet"]
    (tmp_path / "fail").touch()
    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode != 0
    log = tmp_path / "logs" / "step.log"
    failed = log.read_text()
    assert "RuntimeError: the input was bad" in failed and "Traceback" in failed

    (tmp_path / "fail").unlink()
    second = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "attempt succeeded" in log.read_text() and "RuntimeError" not in log.read_text()
    assert Path(f"{log}.1").read_text() == failed


def _imported_modules(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return []


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_every_workflow_script_opens_its_log_before_anything_can_fail(script):
    """Before log_to_file(sm.log[0]) only the docstring, the logs import and ``sm = snakemake``."""
    body = ast.parse(script.read_text()).body
    calls = [
        i
        for i, node in enumerate(body)
        if isinstance(node, ast.Expr | ast.Assign)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", None) == "log_to_file"
    ]
    assert calls, f"{script.name} never calls log_to_file"
    for node in body[: calls[0]]:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.Assign) and ast.unparse(node) == "sm = snakemake":
            continue
        assert _imported_modules(node) == ["whatsreal.logs"], (
            f"{script.name} line {node.lineno}: `{ast.unparse(node)}` runs before the log is open"
        )
