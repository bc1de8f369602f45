"""Load and validate the pipeline configuration.

The JSON schema :data:`SCHEMA_PATH` (``src/whatsreal/schemas/config.schema.yaml``, shipped
inside the package) is the single source of
truth for keys, types and defaults. Validation fills in defaults (so a config file
only lists what it changes), rejects unknown keys (so a typo cannot silently fall
back to a default) and then applies the cross-key checks a schema cannot express.
Every error names the dotted key it is about, and every YAML syntax error the file, line
and column (Snakemake's own loader of ``--configfile`` says only "not valid JSON or YAML":
``python -m whatsreal.config check FILE...`` says where).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = [
    "DEMO_CONFIG",
    "SCHEMA_PATH",
    "ConfigError",
    "check_config_files",
    "complete_stored_config",
    "config_value",
    "deep_merge",
    "effective_config",
    "load_config",
    "load_schema",
    "path_problems",
    "read_config_file",
    "read_yaml",
    "run_config",
    "schema_default",
    "validate_config",
    "workflow_config_files",
    "write_effective_config",
]

SCHEMA_PATH = Path(str(resources.files("whatsreal").joinpath("schemas", "config.schema.yaml")))
"""The config's JSON schema: package data, so an installed wheel validates configs too, and
the workflow, the training CLI and the tests all read this one file."""


class ConfigError(ValueError):
    """A configuration that cannot be run; the message names the offending key(s).

    ``problems``: one line per problem, each starting with its dotted key, where validation
    found them (:func:`validate_config`); empty for an error raised with a message alone."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


def _with_defaults(validator_class: type) -> type:
    """Return a validator class that fills ``default`` values while validating.

    Defaults are inserted before the ``properties`` keyword descends, so nested
    objects whose own default is ``{}`` get their members' defaults too.
    """
    check_properties = validator_class.VALIDATORS["properties"]

    def fill_then_check(
        validator: Any, properties: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
    ) -> Iterator[jsonschema.ValidationError]:
        if isinstance(instance, dict):
            for key, subschema in properties.items():
                if key not in instance and "default" in subschema:
                    instance[key] = copy.deepcopy(subschema["default"])
        yield from check_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": fill_then_check})


_FillingValidator = _with_defaults(jsonschema.Draft7Validator)


def _yaml_problem(path: str | Path, err: yaml.YAMLError) -> str:
    """``FILE, line L, column C: problem (context)`` and the offending line, 1-based like editors."""
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return f"{path}: not valid YAML: {err}"
    problem = getattr(err, "problem", None) or "not valid YAML"
    text = f"{path}, line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context:
        where = f" at line {context_mark.line + 1}, column {context_mark.column + 1}" if context_mark else ""
        text += f" ({context}{where})"
    if "\\t" in problem:
        text += "; indent YAML with spaces, never tabs"
    snippet = mark.get_snippet()
    return f"{text}\n{snippet}" if snippet else text


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated within one mapping: PyYAML (and
    Snakemake) silently keep the last one, so two registry surveys with the same name, or any
    key written twice, would quietly lose a value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    f"while constructing a mapping (first at line {seen[key].line + 1})",
                    node.start_mark,
                    f"duplicate key '{key}'",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """Parse the YAML file at ``path``.

    A syntax error, or a key repeated within one mapping, raises ``ConfigError`` naming the
    file, the line and column where the parser gave up (1-based), its problem and the
    offending line. A missing file raises
    ``FileNotFoundError`` as ``open`` does.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")  # parsed from a string, so errors can quote the line
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: as safe as safe_load
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_problem(path, err)) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in the config file ``path`` (empty file: ``{}``), not yet validated.

    Every YAML read of a config goes through here (or :func:`load_config`), so a syntax
    error always names the file and line; see :func:`read_yaml`.
    """
    raw = read_yaml(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level of a config must be a mapping of sections, not {type(raw).__name__}")
    return raw


def load_schema(path: str | Path) -> dict[str, Any]:
    """The YAML-encoded JSON schema at ``path``: a fresh copy, free to change.

    Parsed once per process and version of the file (its modification time and size), because every
    validation reads it: one :func:`effective_config` validates each file it merges, and
    PyYAML's pure-Python parser needs about 0.1 s for the schema on a 2-core machine, which
    the test suite and every Snakemake process paid again and again.
    """
    p = Path(path)
    stat = p.stat()
    return copy.deepcopy(_parsed_schema(str(p.resolve()), stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=8)
def _parsed_schema(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """The parse :func:`load_schema` copies; ``mtime_ns`` and ``size`` key a changed file to a new parse."""
    return read_yaml(path)


def load_config(path: str | Path, schema_path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and return it validated, with defaults filled in."""
    raw = read_config_file(path)
    try:
        return validate_config(raw, schema_path)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line per problem, always starting with the dotted key."""
    where = list(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in allowed)
        names = ", ".join(_key([*where, k]) for k in unknown)
        return f"{names}: unknown key (allowed here: {', '.join(sorted(allowed))})"
    return f"{_key(where)}: {error.message}"


def validate_config(config: dict[str, Any], schema_path: str | Path, *, check_paths: bool = True) -> dict[str, Any]:
    """Validate ``config`` in place against the schema, fill defaults, and return it.

    Raises ``ConfigError`` listing every problem, each prefixed by its dotted key.
    ``check_paths=False`` skips only the checks that the data paths exist (see
    :func:`path_problems`), so a config can be shown on a machine without the data.
    """
    schema = load_schema(schema_path)
    validator = _FillingValidator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        described = [_describe(e) for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(described), described)
    problems = list(_semantic_problems(config))
    if check_paths:
        problems += list(path_problems(config))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems), problems)
    return config


def _semantic_problems(cfg: dict[str, Any]) -> Iterator[str]:
    """Cross-key checks: values each valid alone but impossible together."""
    yield from _registry_problems(cfg)
    ds = cfg["dataset"]
    registry = list(cfg["surveys"])
    if ds["source"] == "mmu":
        for survey in registry:
            if not ds["mmu"].get(survey):
                yield f"dataset.mmu.{survey}: required when dataset.source is 'mmu' (a directory of healpix=*/*.hdf5)"
    if ds["source"] == "crossmatched_parquet" and not ds.get("crossmatched_parquet"):
        yield "dataset.crossmatched_parquet: required when dataset.source is 'crossmatched_parquet'"

    pre = cfg["preprocess"]
    for survey, clamp in pre["clamp"].items():
        if len(clamp) != len(pre["bands"]):
            yield (
                f"preprocess.clamp.{survey}: {len(clamp)} values for "
                f"{len(pre['bands'])} bands ({', '.join(pre['bands'])})"
            )
    for survey in registry:
        if survey not in pre["crop"]:
            yield f"preprocess.crop.{survey}: required for every registry survey (surveys.{survey})"
    if ds["source"] == "synthetic":
        size = cfg["simulation"]["cutout_size"]
        for survey, crop in pre["crop"].items():
            if crop > size:
                yield f"preprocess.crop.{survey}: {crop} exceeds simulation.cutout_size {size}"

    if cfg["train"]["data"] == "groups":
        if cfg["method"] != "flow_matching":
            yield f"train.data: 'groups' trains the flow only; method '{cfg['method']}' trains on pairs"
        for survey in registry:
            if survey not in pre["clamp"]:
                yield f"preprocess.clamp.{survey}: required to preprocess every registry survey (train.data: groups)"
            lacking = [b for b in pre["bands"] if b not in cfg["surveys"][survey]["bands"]]
            if lacking:
                yield (
                    f"surveys.{survey}.bands: lacks preprocess.bands {lacking}, the model's channels, so it "
                    "cannot be trained on (train.data: groups)"
                )
    unet = cfg["model"]["unet"]
    n_blocks = len(unet["block_out_channels"])
    for key in ("down_block_types", "up_block_types"):
        if len(unet[key]) != n_blocks:
            yield f"model.unet.{key}: {len(unet[key])} blocks for {n_blocks} block_out_channels"
    if any(c % unet["norm_num_groups"] for c in unet["block_out_channels"]):
        yield f"model.unet.norm_num_groups: {unet['norm_num_groups']} must divide every block_out_channels entry"

    sim = cfg["simulation"]
    fractions = sim["class_fractions"]
    if fractions["merger"] + fractions["lens"] >= 1:
        yield "simulation.class_fractions: merger + lens must be below 1"
    pop = sim["population"]
    if pop["redshift_min"] >= pop["redshift_max"]:
        yield "simulation.population.redshift_min: must be below redshift_max"
    if pop["log_mstar_min"] >= pop["log_mstar_max"]:
        yield "simulation.population.log_mstar_min: must be below log_mstar_max"
    boxes = {}
    for survey, scfg in sim["surveys"].items():
        fp = scfg["footprint"]
        for axis in ("ra", "dec"):
            if fp[f"{axis}_min"] >= fp[f"{axis}_max"]:
                yield (
                    f"simulation.surveys.{survey}.footprint.{axis}_min: must be below "
                    f"{axis}_max ({fp[f'{axis}_min']} >= {fp[f'{axis}_max']})"
                )
        boxes[survey] = fp
    if not _overlap(boxes["hsc"], boxes["legacysurvey"]):
        yield "simulation.surveys: the hsc and legacysurvey footprints do not overlap"
    for survey, box in boxes.items():
        if survey not in ("hsc", "legacysurvey") and not any(
            _overlap(box, other) for name, other in boxes.items() if name != survey
        ):
            yield (
                f"simulation.surveys.{survey}.footprint: overlaps no other survey's footprint, "
                "so none of its galaxies could be matched"
            )


def _overlap(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """Whether two footprint boxes (fractions of the patch) share an area."""
    overlap_ra = min(a["ra_max"], b["ra_max"]) - max(a["ra_min"], b["ra_min"])
    overlap_dec = min(a["dec_max"], b["dec_max"]) - max(a["dec_min"], b["dec_min"])
    return overlap_ra > 0 and overlap_dec > 0


SURVEY_SECTIONS = ("dataset.mmu", "simulation.surveys", "preprocess.crop", "preprocess.clamp")
"""The per-survey sections: each is keyed by registry names (``surveys``)."""
PER_BAND_SIMULATION_KEYS = ("psf_fwhm_arcsec", "depth_mag", "nexp")


def _registry_problems(cfg: dict[str, Any]) -> Iterator[str]:
    """The survey registry against itself and against every per-survey section."""
    from whatsreal.surveys import SURVEYS, Survey, entry_problems  # here: that module reads this one's SCHEMA_PATH

    registry = cfg["surveys"]
    for name, entry in registry.items():
        problems = entry_problems(name, entry)
        yield from problems
        if name in SURVEYS and not problems and Survey.from_entry(name, entry) != SURVEYS[name]:
            yield (
                f"surveys.{name}: the paired surveys' entries keep their defaults until the model's pixel "
                "grid, the export and the API read the registry (issue 16); add a survey under a new name instead"
            )
    known = ", ".join(registry)
    for dotted in SURVEY_SECTIONS:
        section, key = dotted.split(".")
        for survey in cfg[section][key]:
            if survey not in registry:
                yield f"{dotted}.{survey}: no survey '{survey}' in the registry (surveys: {known})"
    sim_surveys = cfg["simulation"]["surveys"]
    if cfg["dataset"]["source"] == "synthetic":
        for survey in registry:
            if survey not in sim_surveys:
                yield f"simulation.surveys.{survey}: required to simulate registry survey '{survey}' (surveys.{survey})"
    for survey, scfg in sim_surveys.items():
        if survey not in registry:
            continue
        bands = list(registry[survey]["bands"])
        for key in PER_BAND_SIMULATION_KEYS:
            missing = [b for b in bands if b not in scfg[key]]
            extra = [b for b in scfg[key] if b not in bands]
            if missing or extra:
                yield (
                    f"simulation.surveys.{survey}.{key}: bands {sorted(scfg[key])} do not match "
                    f"surveys.{survey}.bands ({', '.join(bands)})"
                )
        if scfg["selection"]["band"] not in bands:
            yield (
                f"simulation.surveys.{survey}.selection.band: '{scfg['selection']['band']}' is not a "
                f"{survey} band ({', '.join(bands)})"
            )


def path_problems(cfg: dict[str, Any]) -> Iterator[str]:
    """The configured data paths that do not exist on this machine, one line per key.

    Kept apart from the other checks: the workflow needs the data and stops on these, but a
    config can still be read (``show``) where the data is not, e.g. a paper config on a laptop.
    """
    ds = cfg["dataset"]
    if ds["source"] == "mmu":
        for survey in cfg["surveys"]:
            path = ds["mmu"].get(survey)
            if path and not Path(path).is_dir():
                yield f"dataset.mmu.{survey}: directory '{path}' does not exist"
    if ds["source"] == "crossmatched_parquet":
        path = ds.get("crossmatched_parquet")
        if path and not Path(path).exists():
            yield f"dataset.crossmatched_parquet: '{path}' does not exist"
    provabgs = cfg.get("aux", {}).get("provabgs", {}).get("path")
    if provabgs and not Path(provabgs).is_dir():
        yield (
            f"aux.provabgs.path: directory '{provabgs}' does not exist; point it at MMU's desi_provabgs "
            "datafiles (healpix=<N>/001-of-001.h5), or set it to null to probe without the spectroscopic targets"
        )


def complete_stored_config(saved: Mapping[str, Any], schema_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """A config stored with a trained model (a checkpoint's, an exported model's training
    config), completed with this version's schema defaults and validated; a copy.

    Why: a key added to the schema after a model was trained is missing from the config the
    model carries, and the model builders read every key, so an older model would stop
    loading with a bare ``KeyError`` deep inside them. A new key's default is the behaviour
    from before the key existed (that is the rule for adding one), so filling it rebuilds
    the network that was trained. What cannot be completed (a stored key this version no
    longer knows, a value it no longer accepts) raises :class:`ConfigError` naming the key.
    Data paths are not checked: a model is used away from the data it was trained on. The
    message is one line (its problems joined by ``;``), for the one-line errors of the
    commands that load a model.
    """
    try:
        return validate_config(copy.deepcopy(dict(saved)), schema_path, check_paths=False)
    except ConfigError as err:
        raise ConfigError("; ".join(err.problems), err.problems) from None


def schema_default(config: Mapping[str, Any], path: Sequence[str], schema: Mapping[str, Any]) -> Any:
    """The value the schema fills in at ``path`` (a key's parts) when ``config`` leaves it out.

    Why not read the ``default`` keyword: a section's default is completed with its members'
    defaults, and a key under a user-named entry (a survey) takes the entry's schema, as
    validation does; so the same filling validator answers. Raises ``KeyError`` when nothing
    is filled in there (no default, or a parent that is not in ``config``)."""
    trimmed = copy.deepcopy(dict(config))
    parent: Any = trimmed
    for part in path[:-1]:
        parent = parent.get(part) if isinstance(parent, dict) else None
    if not isinstance(parent, dict):
        raise KeyError(".".join(path))
    parent.pop(path[-1], None)
    for _ in _FillingValidator(schema).iter_errors(trimmed):
        pass  # only the filling matters here; the config was validated before
    value: Any = trimmed
    for part in path:
        if not isinstance(value, dict) or part not in value:
            raise KeyError(".".join(path))
        value = value[part]
    return value


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``overlay`` merged in, recursively for nested mappings."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def run_config(
    config: dict[str, Any], run: str, schema_path: str | Path, *, check_paths: bool = True
) -> dict[str, Any]:
    """The config of one named run: ``runs[run]`` overlaid on the rest, validated.

    Errors name the run, so a typo in an overlay is reported as ``runs.<run>: ...``.
    """
    runs = config.get("runs", {})
    if run not in runs:
        raise ConfigError(f"runs: no run named '{run}' (configured: {', '.join(runs) or 'none'})")
    merged = deep_merge({k: v for k, v in config.items() if k != "runs"}, runs[run])
    merged["runs"] = {run: runs[run]}
    try:
        return validate_config(merged, schema_path, check_paths=check_paths)
    except ConfigError as err:
        raise ConfigError(f"runs.{run}: {err}") from None


def check_config_files(
    paths: Sequence[str | Path], schema_path: str | Path = SCHEMA_PATH, *, check_paths: bool = True
) -> dict[str, Any]:
    """The config the files ``paths`` make, merged in order over the schema defaults, validated.

    What ``snakemake --configfile A B`` runs (see :func:`effective_config` for no file),
    checked before Snakemake reads it: a syntax error names its file and line, a bad value
    its dotted key (prefixed by the file, or the files, it came from), and every run overlay
    in ``runs`` is validated too.
    """
    if not paths:
        raise ConfigError("no config file given")
    merged: dict[str, Any] = {}
    for path in paths:
        merged = deep_merge(merged, read_config_file(path))
    source = " + ".join(str(p) for p in paths)
    try:
        config = validate_config(merged, schema_path, check_paths=check_paths)
        for run in config.get("runs") or {}:
            run_config(config, run, schema_path, check_paths=check_paths)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return config


DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "config.yaml"
"""The demo's config: what the workflow runs when no ``--configfile`` is named (the
repository's file: valid for a source checkout or an editable install)."""


def workflow_config_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files the workflow merges for ``snakemake --configfile PATHS``: exactly those, in
    order; with none named, the demo's config/config.yaml alone.

    The demo file is never a base layer under a named file: a paper run must not inherit the
    demo's cut-down settings for the keys its own file leaves to the schema (the paper's values).
    """
    return [Path(p) for p in paths] if paths else [DEMO_CONFIG]


def effective_config(
    paths: Sequence[str | Path], schema_path: str | Path = SCHEMA_PATH, *, check_paths: bool = True
) -> dict[str, Any]:
    """The config the workflow runs for ``--configfile PATHS`` (none: the demo's): the schema
    defaults with the files merged in order, validated (the Snakefile does the same)."""
    return check_config_files(workflow_config_files(paths), schema_path, check_paths=check_paths)


def write_effective_config(config: dict[str, Any], sources: Sequence[str | Path], path: str | Path) -> None:
    """Write ``config`` as YAML to ``path`` (atomically), headed by the files it was merged from.

    Every result folder keeps the exact config it was built with, so a reader of the results
    (or a rerun months later) never has to reconstruct which files and defaults applied.
    """
    from whatsreal.io import atomic_path

    header = "# The effective config of this run (schema defaults + " + (
        ", ".join(str(s) for s in sources) or "config/config.yaml"
    )
    header += "), as `python -m whatsreal.config show` prints it.\n"
    with atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def _check_main(argv: list[str]) -> int:
    """``check FILE [FILE ...]``: exit 0 printing "ok", or 1 printing the error."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m whatsreal.config check",
        description="Parse the config files, merge them in order over the schema defaults and validate the "
        "result (and every run overlay, and that the data paths exist); a YAML syntax error is named by file, "
        "line and column.",
    )
    parser.add_argument("files", nargs="+", type=Path, help="config YAML files, in --configfile order")
    parser.add_argument("--schema", type=Path, default=SCHEMA_PATH, help="the config's JSON schema")
    args = parser.parse_args(argv)
    try:
        check_config_files(args.files, args.schema)
    except (ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("ok")
    return 0


def config_value(config: Mapping[str, Any], dotted: str) -> Any:
    """The value at the dotted key ``dotted`` (``train.lr``); ``KeyError(dotted)`` if there is none."""
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def _show_main(argv: list[str]) -> int:
    """``show [--configfile FILE ...] [--key DOTTED]``: the effective config as YAML (or one value)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m whatsreal.config show",
        description="Print the effective config exactly as the workflow runs it for `snakemake --configfile "
        "FILE ...`: the schema defaults with the named files merged in order (no file: config/config.yaml), "
        "validated. Data paths that do not exist here are reported as `# warning:` comments above the YAML "
        "(on stderr with --key); the workflow stops on them, but the config is still printed.",
    )
    parser.add_argument("--configfile", nargs="*", type=Path, default=[], help="config files, in --configfile order")
    parser.add_argument("--key", help="print only this dotted key's value (e.g. dataset.name)")
    parser.add_argument("--schema", type=Path, default=SCHEMA_PATH)
    args = parser.parse_args(argv)
    try:
        config = effective_config(args.configfile, args.schema, check_paths=False)
    except (ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    warnings = [f"warning: {p} (the workflow stops on it; set it to your download)" for p in path_problems(config)]
    if args.key is None:
        # Warnings as YAML comments on stdout: the output stays one valid YAML document even
        # where a caller reads stdout and stderr together.
        print("".join(f"# {w}\n" for w in warnings) + yaml.safe_dump(config, sort_keys=False), end="")
        return 0
    for warning in warnings:  # one value for shell use: `$(... --key K)` must capture it alone
        print(warning, file=sys.stderr)
    try:
        value = config_value(config, args.key)
    except KeyError:
        print(f"error: the config has no key '{args.key}'", file=sys.stderr)
        return 1
    print(value if not isinstance(value, (dict, list)) else yaml.safe_dump(value, sort_keys=False), end="")
    if not isinstance(value, (dict, list)):
        print()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Commands for users and shell tooling (the Makefile), so neither re-implements the defaults.

    ``python -m whatsreal.config check FILE [FILE ...]``: validate config files (exit 0
    and "ok", or exit 1 and the error with its file, line or key).
    ``python -m whatsreal.config show [--configfile FILE ...] [--key DOTTED]``: print the
    effective config as YAML (or one value), as the workflow runs it.
    """
    import argparse

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="python -m whatsreal.config",
        description=main.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["check", "show"], help="check: validate files; show: print the config")
    if argv[:1] == ["check"]:
        return _check_main(argv[1:])
    if argv[:1] == ["show"]:
        return _show_main(argv[1:])
    parser.parse_args(argv[:1])  # exits 2 with the usage for anything else
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
