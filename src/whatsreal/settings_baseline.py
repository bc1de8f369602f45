"""Which config keys a rule's settings must carry even at their default: those that already
existed when the settings baseline was frozen.

Why: a rule's settings (:mod:`whatsreal.rule_settings`) are the config values its result
depends on, compared by Snakemake's params trigger and stored in every checkpoint's
provenance. The config is validated with the schema's defaults filled in, so a key that a
newer whatsreal adds under ``model`` appears in the ``train`` rule's settings at its default
and every result trained before it would rerun (hours per run at paper scale), and no
interrupted training would resume, although nothing the run computes has changed: the rule
for adding a key is that its default is the behaviour from before it existed (config/README.md).

So a key the schema did not have at the baseline (:data:`BASELINE_FILE`, the schema's keys in
whatsreal 0.1.0) enters a rule's settings only when its value differs from the schema's
default. Setting it to anything else reruns exactly what it would have rerun had it always
existed; setting it back reruns again. What this gives up: a later change of such a key's
*default* reruns nothing, like a change of the package's code (Snakemake tracks neither);
``--forcerun`` rebuilds what it should.

Keys are dotted paths; ``*`` stands for one user-named entry of a mapping (a survey's name,
a run's name), as the schema's ``additionalProperties`` does. A path below a key that is a
leaf of the baseline (a value with no keys of its own in the schema, such as a run's overlay)
is part of that value, not a new key.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from whatsreal.config import SCHEMA_PATH, load_schema, schema_default

__all__ = ["BASELINE_FILE", "KeyTree", "baseline_keys", "schema_key_paths", "without_new_defaults"]

BASELINE_FILE = Path(str(resources.files("whatsreal").joinpath("schemas", "settings_baseline_keys.txt")))
"""The schema's keys when the baseline was frozen (whatsreal 0.1.0), one dotted path per line."""

WILDCARD = "*"


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """``node`` with a local ``$ref`` (``#/definitions/...``) followed; its own keywords win."""
    while "$ref" in node:
        target: Any = root
        for part in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def schema_key_paths(schema: Mapping[str, Any]) -> list[str]:
    """Every key the schema defines, as sorted dotted paths (``*`` for user-named entries)."""

    def walk(node: Mapping[str, Any], prefix: str) -> Iterator[str]:
        node = _resolve(node, schema)
        for key, sub in node.get("properties", {}).items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from walk(sub, path)
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping):
            path = f"{prefix}.{WILDCARD}" if prefix else WILDCARD
            yield path
            yield from walk(extra, path)

    return sorted(set(walk(schema, "")))


class KeyTree:
    """Dotted key paths as a tree, to ask whether a config path existed at the baseline."""

    def __init__(self, paths: list[str]) -> None:
        self.children: dict[str, KeyTree] = {}
        for path in paths:
            node = self
            for part in path.split("."):
                node = node.children.setdefault(part, KeyTree([]))

    def child(self, key: str) -> KeyTree | None:
        """The subtree of ``key`` (or of a user-named entry), None when it is a new key."""
        named = self.children.get(key)
        return named if named is not None else self.children.get(WILDCARD)

    @property
    def is_leaf(self) -> bool:
        """A key whose value has no keys of its own in the schema: all below it is its value."""
        return not self.children


@functools.cache
def baseline_keys(path: Path = BASELINE_FILE) -> KeyTree:
    """The baseline's keys, read once per process."""
    lines = Path(path).read_text().splitlines()
    return KeyTree([line.strip() for line in lines if line.strip() and not line.startswith("#")])


def without_new_defaults(
    config: Mapping[str, Any],
    picked: Mapping[str, Any],
    *,
    baseline: KeyTree | None = None,
    schema_path: str | Path = SCHEMA_PATH,
) -> dict[str, Any]:
    """``picked`` (dotted prefix -> that part of ``config``) without the keys that are new
    since the baseline and hold their schema default; a copy.

    A new key without a schema default is kept: it can only hold a value someone set."""
    tree = baseline_keys() if baseline is None else baseline

    def is_default(path: list[str], value: Any) -> bool:
        try:
            return schema_default(config, path, _schema(str(schema_path))) == value
        except KeyError:
            return False

    def prune(value: Any, path: list[str], node: KeyTree) -> Any:
        if node.is_leaf or not isinstance(value, Mapping):
            return value
        kept = {}
        for key, sub in value.items():
            below = node.child(key)
            if below is not None:
                kept[key] = prune(sub, [*path, key], below)
            elif not is_default([*path, key], sub):
                kept[key] = copy.deepcopy(sub)
        return kept

    out = {}
    for prefix, value in picked.items():
        path, node = prefix.split("."), tree
        for part in path:
            if node is None or node.is_leaf:
                break
            node = node.child(part)
        if node is not None:
            out[prefix] = prune(value, path, node)
        elif not is_default(path, value):
            out[prefix] = value
    return out


@functools.cache
def _schema(path: str) -> dict[str, Any]:
    """The schema, parsed once per process: settings are computed for every job of a workflow."""
    return load_schema(path)
