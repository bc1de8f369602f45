"""Fingerprints of what determines a training result, stored in its checkpoints.

A training job resumes from ``checkpoints/last.ckpt`` only when that checkpoint was made
from the same settings and the same data files; anything else would silently continue a
different training (another learning rate, another split) and label the result as if
trained from scratch. The fingerprint records:

- ``settings``: the run's result-determining config values (``rule_settings`` of rule
  ``train`` with the run's overlay: model, train, preprocess, neighbour mode);
- ``data``: per data file, its size and a SHA-256 of its content. Files above
  ``full_hash_bytes`` (paper-scale image arrays, tens of GB) are identified by size,
  modification time and the hash of their first and last MiB instead: rewriting such a
  file always changes its mtime, and hashing it in full would cost minutes per start.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["describe_differences", "file_fingerprint", "training_fingerprint"]

_MIB = 1 << 20


def file_fingerprint(path: str | Path, full_hash_bytes: int = 512 * _MIB) -> str:
    """A string that changes whenever the file's content does (see module docstring)."""
    path = Path(path)
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        if stat.st_size <= full_hash_bytes:
            for chunk in iter(lambda: fh.read(8 * _MIB), b""):
                digest.update(chunk)
            return f"size={stat.st_size} sha256={digest.hexdigest()}"
        digest.update(fh.read(_MIB))
        fh.seek(-_MIB, 2)
        digest.update(fh.read(_MIB))
    return f"size={stat.st_size} mtime_ns={stat.st_mtime_ns} sha256(first+last MiB)={digest.hexdigest()}"


def training_fingerprint(settings: str, data_files: Iterable[str | Path]) -> dict[str, Any]:
    """The provenance a checkpoint carries: settings JSON and one fingerprint per data file (by name)."""
    return {
        "settings": settings,
        "data": {Path(p).name: file_fingerprint(p) for p in sorted(data_files, key=lambda p: Path(p).name)},
    }


def describe_differences(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Human-readable reasons why ``old`` (from a checkpoint) is not ``new``; empty when equal."""
    if not old:
        return ["the checkpoint records no provenance (written by an older whatsreal)"]
    reasons = []
    if old.get("settings") != new["settings"]:
        before, after = json.loads(old.get("settings") or "{}"), json.loads(new["settings"])
        changed = sorted(_changed_keys(before, after))
        reasons.append("settings changed: " + ", ".join(changed[:12]) + (" ..." if len(changed) > 12 else ""))
    old_data, new_data = old.get("data", {}), new["data"]
    for name in sorted(set(old_data) | set(new_data)):
        if old_data.get(name) != new_data.get(name):
            reasons.append(f"data file {name} changed")
    return reasons


def _changed_keys(a: Any, b: Any, prefix: str = "") -> Iterable[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            name = f"{prefix}.{key}" if prefix else str(key)
            # the top level is keyed by dotted prefix already ("model", "neighbours.mode")
            yield from _changed_keys(a.get(key), b.get(key), name)
    elif a != b:
        yield f"{prefix} ({a!r} -> {b!r})"
