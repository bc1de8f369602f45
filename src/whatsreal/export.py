"""A trained run as a self-contained model directory: safetensors weights and a JSON config.

A Lightning checkpoint carries optimiser state and is read with ``torch.load``; the input
normalisation a model needs lives in the dataset's metadata files. An exported directory
(:class:`whatsreal.layout.ModelLayout`) holds everything needed to use the model on new
cutouts, in formats any tool can read without unpickling anything:

- ``config.json``: the format and its version, the model and preprocessing sections of the
  training config, the fitted standardisation per survey, per survey its bands, native and
  model-grid pixel scales and flux unit, the sampler defaults, and provenance (run, dataset,
  training steps, the data files' fingerprints, the whatsreal version and git commit that
  exported it); the whole training config under ``training_config``;
- ``model.safetensors``: every weight of the model (both encoders and the decoder);
- ``unet/``: the decoder again in diffusers' own layout, so that
  ``UNet2DConditionModel.from_pretrained(dir, subfolder="unet")`` loads it without whatsreal.

A directory is written under a temporary name and renamed into place, so a failed export
never leaves a half-written model behind, and a re-export replaces the old one whole.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

import whatsreal
from whatsreal.config import ConfigError, complete_stored_config
from whatsreal.data.preprocess import model_pixel_scale
from whatsreal.data.stages import read_normalisation
from whatsreal.fits_images import NATIVE_BUNIT
from whatsreal.layout import ModelLayout
from whatsreal.methods import method_of
from whatsreal.model.checkpoint import read_checkpoint, trained_model
from whatsreal.surveys import SURVEY_ORDER, SURVEYS

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelFormatError",
    "export_model",
    "read_model_config",
]

log = logging.getLogger(__name__)

FORMAT = "whatsreal-model"
FORMAT_VERSION = 1
"""Bumped whenever config.json or the weight names change in a way older readers cannot follow."""

REQUIRED_KEYS = ("format", "format_version", "model", "preprocess", "normalisation", "surveys", "sample")


class ModelFormatError(ValueError):
    """A model directory that this whatsreal cannot read; the message names the file and the fix."""


def _git_commit() -> str:
    """The commit of the whatsreal source that runs, or ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(whatsreal.__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def _model_config(config: dict, normalisation: Mapping[str, dict], provenance: dict) -> dict[str, Any]:
    pre = config["preprocess"]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": config["model"],
        "preprocess": pre,
        "normalisation": {
            s: {"mean": float(n["norm_mean"]), "std": float(n["norm_std"])} for s, n in normalisation.items()
        },
        "surveys": {
            s: {
                "bands": list(pre["bands"]),
                "native_bands": list(SURVEYS[s].bands),
                "native_pixel_scale_arcsec": SURVEYS[s].pixel_scale,
                "pixel_scale_arcsec": model_pixel_scale(s, pre),
                "zero_point": SURVEYS[s].zero_point,
                "flux_unit": NATIVE_BUNIT[s],  # one native image unit, as astropy parses it
            }
            for s in SURVEY_ORDER
        },
        "sample": config["sample"],
        "neighbours": {"k": int(config["neighbours"]["k"]), "mode": config["neighbours"]["mode"]},
        "provenance": provenance,
        "training_config": config,
    }


def export_model(
    checkpoint: str | Path, meta: Mapping[str, str | Path], out_dir: str | Path, *, run: str | None = None
) -> ModelLayout:
    """Write the model directory ``out_dir`` from a training checkpoint and each survey's
    metadata file (``{survey: path}``, where preprocessing stored the fitted standardisation)."""
    missing = [s for s in SURVEY_ORDER if s not in meta]
    if missing:
        raise ValueError(f"export needs every survey's metadata file; missing: {missing}")
    ckpt = read_checkpoint(checkpoint)
    method = method_of(ckpt["hyper_parameters"]["config"])
    if not method.generative:
        raise ValueError(
            f"{checkpoint}: a '{method.name}' run has no flow-matching decoder to export; its embeddings.parquet "
            "is its product (whatsreal.methods)"
        )
    net, config = trained_model(ckpt)
    trained = ckpt.get("hyper_parameters", {}).get("provenance") or {}
    provenance = {
        "run": run,
        "dataset": config["dataset"]["name"],
        "source": config["dataset"]["source"],
        "steps": int(ckpt.get("global_step", 0)),
        "data_files": trained.get("data", {}),
        "checkpoint": str(checkpoint),
        "whatsreal_version": whatsreal.__version__,
        "git_commit": _git_commit(),
    }
    normalisation = {s: read_normalisation(meta[s]) for s in SURVEY_ORDER}
    out = ModelLayout(Path(out_dir))
    out.root.parent.mkdir(parents=True, exist_ok=True)
    staging = ModelLayout(Path(tempfile.mkdtemp(prefix=f".{out.root.name}.", dir=out.root.parent)))
    try:
        net = net.eval()
        weights = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
        save_file(weights, staging.weights, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        net.unet.save_pretrained(staging.unet, safe_serialization=True)
        staging.config.write_text(json.dumps(_model_config(config, normalisation, provenance), indent=2) + "\n")
        _replace_dir(staging.root, out.root)
    except BaseException:
        shutil.rmtree(staging.root, ignore_errors=True)
        raise
    log.info("exported %s (step %d) to %s", checkpoint, provenance["steps"], out.root)
    return out


def _replace_dir(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``; an existing ``target`` is moved aside first and removed after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_model_config(path: str | Path) -> dict[str, Any]:
    """``config.json`` of a model directory, checked: the format, its version and the keys a
    reader needs; its model and preprocessing sections completed with the schema defaults of
    keys added since the export. Raises :class:`ModelFormatError` naming the file and what to do."""
    layout = ModelLayout(Path(path))
    if not layout.root.is_dir():
        raise ModelFormatError(
            f"{layout.root}: not a model directory; export a trained run with `whatsreal export RUN_DIR OUT_DIR`"
        )
    if not layout.config.exists():
        raise ModelFormatError(f"{layout.config}: missing; {layout.root} is not an exported whatsreal model")
    try:
        cfg = json.loads(layout.config.read_text())
    except (OSError, ValueError) as err:
        raise ModelFormatError(f"{layout.config}: not readable JSON ({err}); export the model again") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise ModelFormatError(f"{layout.config}: not a whatsreal model config (format is not '{FORMAT}')")
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ModelFormatError(
            f"{layout.config}: model format version {cfg.get('format_version')!r}, but whatsreal "
            f"{whatsreal.__version__} reads version {FORMAT_VERSION}; export the run again with this whatsreal "
            "(`whatsreal export RUN_DIR OUT_DIR`) or install the whatsreal that wrote it"
        )
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise ModelFormatError(f"{layout.config}: missing keys {missing}; export the model again")
    for name in (layout.weights, layout.unet):
        if not name.exists():
            raise ModelFormatError(f"{name}: missing from the model directory; export the model again")
    if isinstance(cfg.get("training_config"), dict):
        # Keys added to the schema since the export take their defaults (the behaviour it was
        # trained with), so an older model still builds (whatsreal.config.complete_stored_config).
        try:
            full = complete_stored_config(cfg["training_config"])
        except ConfigError as err:
            raise ModelFormatError(
                f"{layout.config}: its training config cannot be read by whatsreal {whatsreal.__version__} ({err}); "
                "export the run again with this whatsreal or install the whatsreal that wrote it"
            ) from None
        cfg = {**cfg, "training_config": full, "model": full["model"], "preprocess": full["preprocess"]}
    return cfg
