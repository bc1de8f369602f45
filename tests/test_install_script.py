"""tools/install.py, which ``make install`` runs: pip's configuration carried over to uv, and pip
used wherever it cannot be."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO

_spec = importlib.util.spec_from_file_location("install_tool", REPO / "tools" / "install.py")
install_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(install_tool)

# What `pip config list` printed on our 2-core machines: a find-links variable over the same
# setting in a file, two extra file indexes, a constraints file and a CA bundle.
CONFIG_LIST = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.disable-pip-version-check='1'
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/other.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/somewhere/else'
"""


def test_pip_settings_take_the_variable_over_the_file():
    settings = install_tool.pip_settings(CONFIG_LIST)
    assert settings["find-links"] == "/opt/wheels"
    assert settings["cert"] == "/etc/ssl/certs/ca-certificates.crt"
    assert settings["extra-index-url"] == "file:///opt/pypi/simple file:///opt/pypi-more/simple"


def test_every_index_constraint_and_the_ca_bundle_reach_uv():
    opts, env = install_tool.uv_options(install_tool.pip_settings(CONFIG_LIST))
    assert opts == [
        "--extra-index-url", "file:///opt/pypi/simple", "--extra-index-url", "file:///opt/pypi-more/simple",
        "--find-links", "/opt/wheels", "--constraint", "/etc/xdg/pip/constraints.txt",
    ]  # fmt: skip
    assert env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}
    cmd = install_tool.uv_command("/venv/bin/python", opts, ["torch==2.14.1", "-e", ".[dev]"])
    assert cmd[:5] == ["/venv/bin/python", "-m", "uv", "pip", "install"]
    # Resolved as pip resolves (best version over all indexes), compiled as pip compiles.
    assert "unsafe-best-match" in cmd and "--compile-bytecode" in cmd and cmd[-3:] == ["torch==2.14.1", "-e", ".[dev]"]


def test_a_replacement_index_and_no_index_are_passed_on():
    opts, _ = install_tool.uv_options({"index-url": "https://mirror/simple", "no-index": "true"})
    assert opts == ["--index-url", "https://mirror/simple", "--no-index"]


@pytest.mark.parametrize("setting", ["trusted-host", "only-binary", "pre"])
def test_a_setting_without_a_translation_keeps_pip(setting):
    why = install_tool.uv_options({"find-links": "/opt/wheels", setting: "x"})
    assert isinstance(why, str) and setting in why


def _wheel(directory: Path) -> Path:
    """A one-module pure-Python wheel (tinypkg 0.1): installable offline, with no build step."""
    files = {
        "tinypkg/__init__.py": "VALUE = 7\n",
        "tinypkg-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
        "tinypkg-0.1.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files["tinypkg-0.1.dist-info/RECORD"] = "\n".join([*record, "tinypkg-0.1.dist-info/RECORD,,"]) + "\n"
    path = directory / "tinypkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def test_the_script_installs_into_a_fresh_venv(tmp_path):
    """End to end: a new venv, a package from a local wheel, with uv where this machine can
    install it and pip otherwise; the package imports afterwards, compiled to bytecode."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k != "UV_CACHE_DIR"}
    res = subprocess.run(
        [python, str(REPO / "tools" / "install.py"), "--no-index", "--find-links", str(wheels), "tinypkg==0.1"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    out = subprocess.run([python, "-c", "import tinypkg; print(tinypkg.VALUE)"], capture_output=True, text=True)
    assert out.stdout.strip() == "7", out.stderr
    assert list(venv.glob("lib/python*/site-packages/tinypkg/__pycache__/__init__.*.pyc")), "not compiled"
    assert not list(venv.glob(".uv-cache-*")), "uv's cache was left in the environment"
