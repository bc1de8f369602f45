"""Install packages into the running interpreter's environment, with uv where pip's settings allow.

``make install`` runs this with .venv's Python. uv installs the same releases as pip from the
same indexes in a fraction of the time: on a 2-core machine, torch's CUDA build and the
project's dependencies took 147 s with pip and 77 s with uv, bytecode compiled in both
(benchmarks/RESULTS.md, "make install with uv"). uv does not read pip's configuration, so
what pip is configured with (``pip config list``: files and ``PIP_*`` variables) is passed on:
indexes, find-links, constraints and the CA bundle. uv also resolves like pip across indexes
(``--index-strategy unsafe-best-match``: the best version from any index, where uv's default
takes the first index that has the package) and compiles bytecode as pip does, which matters
where ``PYTHONDONTWRITEBYTECODE`` is set: without it every later import compiles in memory
again.

uv's cache lives in a temporary folder inside the environment and is removed afterwards (it is
hard-linked into the environment, so it costs no second copy while it exists); set
``UV_CACHE_DIR`` to keep one between installs.

Plain pip is used instead, with a line saying why, when pip is configured with a setting this
does not translate, when uv cannot be installed (no index reachable for it), or when uv fails.

Standard library only: it runs before the project is installed.

    python tools/install.py torch==2.14.1 torchvision==0.29.1 -e '.[dev]'
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

LISTS = {"extra-index-url": "--extra-index-url", "find-links": "--find-links", "constraint": "--constraint"}
"""pip settings holding a space-separated list -> the uv option given once per item."""

SINGLE = {"index-url": "--index-url"}
"""pip settings holding one value -> the uv option."""

FLAGS = {"no-index": "--no-index"}
"""pip's boolean settings -> the uv flag given when the setting is true."""

NOT_RESOLVING = {
    "cache-dir", "cert", "default-timeout", "disable-pip-version-check", "no-cache-dir", "no-input",
    "progress-bar", "quiet", "retries", "root-user-action", "timeout", "verbose",
}  # fmt: skip
"""pip settings that change how pip talks, caches or prints, not what it installs (``cert`` is
passed on as ``SSL_CERT_FILE``; uv keeps its own cache)."""

PRECEDENCE = (":env:", "install", "global")
"""Where pip reads a setting, strongest first: ``PIP_*`` variables, then the config files'
``[install]`` and ``[global]`` sections."""


def pip_settings(config_list: str) -> dict[str, str]:
    """``pip config list`` output (``section.key='value'`` lines) -> key -> the value pip uses."""
    found: dict[str, dict[str, str]] = {}
    for line in config_list.splitlines():
        name, sep, value = line.partition("=")
        section, dot, key = name.rpartition(".")
        if not (sep and dot) or section not in PRECEDENCE:
            continue
        found.setdefault(key, {})[section] = value.strip().strip("'\"")
    return {key: next(by[s] for s in PRECEDENCE if s in by) for key, by in found.items()}


def uv_options(settings: dict[str, str]) -> tuple[list[str], dict[str, str]] | str:
    """(uv options, environment variables) carrying pip's settings; or, when one of them has no
    translation here, the message saying which (pip is used then)."""
    unknown = sorted(set(settings) - set(LISTS) - set(SINGLE) - set(FLAGS) - NOT_RESOLVING)
    if unknown:
        return f"pip is configured with {', '.join(unknown)}, which this does not pass on to uv"
    opts: list[str] = []
    for key, option in LISTS.items():
        for item in settings.get(key, "").split():
            opts += [option, item]
    for key, option in SINGLE.items():
        if settings.get(key):
            opts += [option, settings[key]]
    for key, flag in FLAGS.items():
        if settings.get(key, "").lower() in {"1", "true", "yes", "on"}:
            opts.append(flag)
    env = {"SSL_CERT_FILE": settings["cert"]} if settings.get("cert") else {}
    return opts, env


def uv_command(python: str, opts: list[str], requirements: list[str]) -> list[str]:
    """The ``uv pip install`` command for ``python``'s environment."""
    return [
        python, "-m", "uv", "pip", "install", "--quiet", "--python", python,
        "--index-strategy", "unsafe-best-match", "--compile-bytecode", *opts, *requirements,
    ]  # fmt: skip


def run_uv(command: list[str], env: dict[str, str], prefix: str) -> int:
    """Run ``command`` with uv's cache in a temporary folder inside the environment ``prefix``,
    removed afterwards, unless ``UV_CACHE_DIR`` names one.

    uv unpacks every wheel into its cache and hard-links the files into the environment; on
    one filesystem that costs no second copy, and the 6.5 GB that torch's CUDA build takes
    would otherwise stay behind in ``~/.cache/uv`` after .venv is removed (or be copied twice
    where the home folder is on another filesystem).
    """
    if os.environ.get("UV_CACHE_DIR"):
        return subprocess.call(command, env={**os.environ, **env})
    with tempfile.TemporaryDirectory(prefix=".uv-cache-", dir=prefix) as cache:
        return subprocess.call(command, env={**os.environ, **env, "UV_CACHE_DIR": cache})


def install(requirements: list[str], python: str = sys.executable, prefix: str = sys.prefix) -> int:
    """Install ``requirements`` (pip's syntax) into ``python``'s environment (``prefix``); the exit status."""
    pip = [python, "-m", "pip", "install", "--quiet", *requirements]
    listed = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False)
    translated = uv_options(pip_settings(listed.stdout))
    if isinstance(translated, str):
        why = translated
    elif subprocess.call([python, "-m", "pip", "install", "--quiet", "uv"]) != 0:
        why = "uv could not be installed"
    elif run_uv(uv_command(python, translated[0], requirements), translated[1], prefix) != 0:
        why = "uv failed (above)"
    else:
        return 0
    print(f"install: {why}; installing with pip", file=sys.stderr)
    return subprocess.call(pip)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(f"usage: {sys.argv[0]} REQUIREMENT... (pip's syntax, e.g. torch==2.14.1 -e '.[dev]')")
    sys.exit(install(sys.argv[1:]))
