"""The training methods a run can use (config ``method``), and what each one implies.

The triplet methods train on the same triplets (:class:`whatsreal.train.datamodules.TripletDataModule`);
the CVAE (seed 003) on one survey's cutouts with their physical labels. All export the same
``embeddings.parquet`` contract (:mod:`whatsreal.model.embed`), so the experiments compare them
on equal terms. What differs, and is decided here in one place:

- the Lightning module that trains it and the network that module trains (both imported only
  when a run is built, so the workflow's planning, which imports this module, never loads
  torch); inference rebuilds the network alone (:mod:`whatsreal.model.checkpoint`), without Lightning;
- the files its training reads (the train rule's inputs and the checkpoint's fingerprint:
  :func:`training_data_files`), its data module and how a checkpoint exports embeddings;
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

from whatsreal.layout import DatasetLayout
from whatsreal.surveys import training_surveys

if TYPE_CHECKING:
    import lightning as L
    import pandas as pd
    import torch


__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "Method",
    "build_datamodule",
    "build_module",
    "build_network",
    "checkpoint_method",
    "export_checkpoint",
    "method_of",
    "module_class",
    "run_method",
    "training_data_files",
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
    network: str
    """``package.module:callable`` building the network its LightningModule trains (``self.model``) as
    ``f(config)``: what a checkpoint's weights load into for inference (whatsreal.model.checkpoint)."""
    spaces: tuple[str, ...]
    """Latent spaces written to embeddings.parquet (whatsreal.experiments.embeddings.SPACES names)."""
    rules: tuple[str, ...] | None
    """Per-run rules it supports; None: every rule (the flow-matching decoder's included)."""
    settings: tuple[str, ...] = ()
    """Config prefixes besides rule train's own that determine its trained weights."""
    datamodule: str = "whatsreal.methods:triplet_datamodule"
    """``package.module:callable`` building its LightningDataModule as ``f(config, data)``."""
    data_files: str = "whatsreal.methods:triplet_files"
    """``package.module:callable``: ``f(config, data)`` -> every file its training reads."""
    exporter: str = "whatsreal.methods:export_triplet_method"
    """``package.module:callable``: ``f(checkpoint, data, out, tokens_out, batch_size, device)``
    writes embeddings.parquet and the token file and returns the table."""

    @property
    def generative(self) -> bool:
        """True when the run has the flow-matching decoder the sampling experiments need."""
        return self.rules is None


METHODS: dict[str, Method] = {
    "flow_matching": Method(
        "flow_matching",
        "whatsreal.train.module:FlowMatchingModule",
        "whatsreal.model.flow:build_model",
        spaces=("physics", "instrument"),
        rules=None,
    ),
    # Seed 001: dual encoder, generalised InfoNCE per space, optional multiplicative decoder.
    "contrastive": Method(
        "contrastive",
        "whatsreal.train.module:ContrastiveModule",
        "whatsreal.model.contrastive:build_contrastive_model",
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
        "whatsreal.model.contrastive:build_contrastive_model",
        spaces=("physics",),
        rules=("train", "embed"),
        settings=("method", "contrastive.temperature", "contrastive.projection_dim", "contrastive.lambda_physics"),
    ),
    # Seed 003: physics-informed CVAE on one survey's cutouts, latent tied to z, M*, sSFR
    # (whatsreal.model.cvae). One latent (phys_* only), so like single_latent it stops at the embeddings.
    "cvae": Method(
        "cvae",
        "whatsreal.train.cvae:CvaeModule",
        "whatsreal.model.cvae:build_cvae",
        spaces=("physics",),
        rules=("train", "embed"),
        settings=("method", "cvae"),
        datamodule="whatsreal.train.datamodules:CvaeDataModule",
        data_files="whatsreal.data.cvae:training_files",
        exporter="whatsreal.model.cvae_embed:export_cvae_embeddings",
    ),
}
"""Method name (config ``method``) -> what it is."""


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


def build_network(config: dict) -> torch.nn.Module:
    """A fresh network of ``config``'s method: what its module trains, and inference loads."""
    return _import(method_of(config).network)(config)


def triplet_datamodule(config: dict, data: DatasetLayout | str | Path) -> L.LightningDataModule:
    """The triplets of the run's split and neighbour mode, batched as ``train`` says."""
    from whatsreal.train.datamodules import TripletDataModule

    train_cfg = config["train"]
    return TripletDataModule(
        triplet_data(config, DatasetLayout.of(data)),
        mode=config["neighbours"]["mode"],
        batch_size=train_cfg["batch_size"],
        num_workers=train_cfg["num_workers"],
        seed=train_cfg["seed"],
        surveys=training_surveys(config),
    )


def triplet_data(config: dict, data: DatasetLayout) -> DatasetLayout:
    """Where the run's triplets are: the pairs, or with ``train.data: groups`` the N-way rows (``nway/``)."""
    return data.nway if config["train"]["data"] == "groups" else data


def triplet_files(config: dict, data: DatasetLayout) -> list[Path]:
    """Images, metadata, split and the run's own neighbour graph (rebuilding the other retrains
    nothing), of every survey the run trains on."""
    return triplet_data(config, data).run_data_files(config["neighbours"]["mode"], training_surveys(config))


def build_datamodule(config: dict, data: DatasetLayout | str | Path) -> L.LightningDataModule:
    """The data module that feeds ``config``'s method."""
    return _import(method_of(config).datamodule)(config, DatasetLayout.of(data))


def training_data_files(config: dict, data: DatasetLayout | str | Path) -> list[Path]:
    """Every file a run's training reads: what the train rule declares and a checkpoint fingerprints."""
    return list(_import(method_of(config).data_files)(config, DatasetLayout.of(data)))


def checkpoint_method(path: str | Path) -> Method:
    """The method that wrote a checkpoint (its stored config's ``method``)."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return method_of(ckpt.get("hyper_parameters", {}).get("config", {}))


def export_triplet_method(
    checkpoint: str | Path,
    data: DatasetLayout | str | Path,
    out: str | Path,
    tokens_out: str | Path,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """embeddings.parquet (and the token file) of a trained triplet method, with its latent spaces."""
    from whatsreal.model.checkpoint import load_trained_model
    from whatsreal.model.embed import export_embeddings

    net, saved = load_trained_model(checkpoint)
    return export_embeddings(net, data, out, tokens_out, batch_size, device, spaces=method_of(saved).spaces)


def export_checkpoint(
    checkpoint: str | Path,
    data: DatasetLayout | str | Path,
    out: str | Path,
    tokens_out: str | Path,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """The embed rule: a checkpoint's embeddings, exported the way its method exports them."""
    method = checkpoint_method(checkpoint)
    return _import(method.exporter)(Path(checkpoint), data, out, tokens_out, batch_size, device)
