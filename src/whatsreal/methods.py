"""The training methods a run can use (config ``method``), and what each one implies.

Every method trains on the same triplets (:class:`whatsreal.data.triplets.TripletDataModule`)
and exports the same ``embeddings.parquet`` contract (:mod:`whatsreal.model.embed`), so the
experiments compare them on equal terms. What differs, and is decided here in one place:

- the Lightning module that trains it (imported only when a run is built, so the workflow's
  planning, which imports this module, never loads torch);
- the latent spaces it exports (``phys_*`` and ``inst_*``, or ``phys_*`` only for a single latent);
- the per-run rules it supports (:func:`whatsreal.plan.run_rules`): a method without the
  flow-matching decoder has no export, posterior samples, generative experiments,
  conditioning gain or noise model; one without an instrument space has none of the
  experiments that read ``inst_*``;
- the config sections beside ``model``/``train`` its trained weights depend on
  (:func:`whatsreal.rule_settings.rule_settings` adds them to rule ``train``). Flow matching adds
  none, so its settings, and the provenance stored in its checkpoints, are what they were before
  methods existed: its runs neither retrain nor refuse to resume.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning as L
    import pandas as pd
    import torch

    from whatsreal.layout import DatasetLayout

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "Method",
    "build_datamodule",
    "build_module",
    "export_embeddings",
    "method_of",
    "module_class",
    "run_method",
]

DEFAULT_METHOD = "flow_matching"

EMBEDDING_RULES: tuple[str, ...] = ("train", "embed", "umap", "outliers", "probes", "retrieval")
"""The per-run rules of a method that exports both latent spaces but has no generative decoder."""


@dataclass(frozen=True)
class Method:
    """One training method: how it is built and what a run of it gets."""

    name: str
    module: str
    """``package.module:Class`` of its LightningModule, built as ``Class(config, provenance)``."""
    spaces: tuple[str, ...]
    """Latent spaces written to embeddings.parquet (whatsreal.experiments.embeddings.SPACES names)."""
    rules: tuple[str, ...] | None
    """Per-run rules it supports; None: every rule (the flow-matching decoder's included)."""
    settings: tuple[str, ...] = ()
    """Config prefixes besides rule train's own that determine its trained weights."""
    datamodule: str = "whatsreal.data.triplets:TripletDataModule"
    """``package.module:Class`` of its LightningDataModule (the triplets, for every method so far)."""

    @property
    def generative(self) -> bool:
        """True when the run has the flow-matching decoder the sampling experiments need."""
        return self.rules is None


METHODS: dict[str, Method] = {
    "flow_matching": Method(
        "flow_matching",
        "whatsreal.train.module:FlowMatchingModule",
        spaces=("physics", "instrument"),
        rules=None,
    ),
    # Seed 001: dual encoder, generalised InfoNCE per space, optional multiplicative decoder.
    "contrastive": Method(
        "contrastive",
        "whatsreal.train.module:ContrastiveModule",
        spaces=("physics", "instrument"),
        rules=EMBEDDING_RULES,
        settings=("method", "contrastive"),
    ),
    # Seed 001's baseline: one encoder, InfoNCE on same-object pairs. Only phys_* is exported,
    # and umap/outliers/probes/retrieval read inst_* too, so its run stops at the embeddings
    # (read like the random-init baseline's file, physics space only).
    "single_latent": Method(
        "single_latent",
        "whatsreal.train.module:ContrastiveModule",
        spaces=("physics",),
        rules=("train", "embed"),
        settings=("method", "contrastive.temperature", "contrastive.projection_dim", "contrastive.lambda_physics"),
    ),
}
"""Method name (config ``method``) -> what it is. The CVAE (seed 003) registers here as ``cvae``."""


def method_of(config: Mapping[str, Any]) -> Method:
    """The method of a run's (validated) config; a config without the key is flow matching."""
    name = config.get("method", DEFAULT_METHOD)
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"method: unknown method '{name}' (known: {', '.join(METHODS)})") from None


def run_method(config: Mapping[str, Any], run: str) -> Method:
    """The method of the named run of a workflow config: its overlay's ``method``, else the config's."""
    overlay = config.get("runs", {}).get(run) or {}
    return method_of({"method": overlay.get("method", config.get("method", DEFAULT_METHOD))})


def _import(spec: str) -> Any:
    modname, _, name = spec.partition(":")
    return getattr(importlib.import_module(modname), name)


def module_class(method: Method | str) -> type[L.LightningModule]:
    """The LightningModule class of ``method`` (imported now)."""
    return _import((METHODS[method] if isinstance(method, str) else method).module)


def build_module(config: dict, provenance: dict | None = None) -> L.LightningModule:
    """A fresh module for ``config``'s method, storing ``config`` and ``provenance`` as its hyper-parameters."""
    return module_class(method_of(config))(config, provenance)


def build_datamodule(config: dict, data: DatasetLayout | str | Path) -> L.LightningDataModule:
    """The data module that feeds ``config``'s method: train/val batches of the run's split and neighbour mode."""
    train_cfg = config["train"]
    return _import(method_of(config).datamodule)(
        data,
        mode=config["neighbours"]["mode"],
        batch_size=train_cfg["batch_size"],
        num_workers=train_cfg["num_workers"],
        seed=train_cfg["seed"],
    )


def export_embeddings(
    module: L.LightningModule,
    data: DatasetLayout | str | Path,
    out: str | Path,
    tokens_out: str | Path,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """embeddings.parquet (and the token file) of a trained module, with its method's latent spaces."""
    from whatsreal.model.embed import export_embeddings as export

    spaces = method_of(module.config).spaces
    return export(module.model, data, out, tokens_out, batch_size, device, spaces=spaces)
