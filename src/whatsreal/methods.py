"""Training methods beside flow matching (config ``method``): what each trains and exports.

NOTE (issue 15): the contrastive engineer owns this registry (``contrastive``,
``single_latent`` and the flow-matching entry); this branch creates it with the ``cvae``
entry only. At the merge, keep one module: their interface, with this entry added.

A method is a Lightning module (built as ``module(config, provenance)``), a data module,
the files its training reads (the train rule's inputs and the checkpoint's fingerprint:
common.smk ``run_data`` and :func:`whatsreal.train.run.train` ask
:func:`training_data_files`), the config sections its weights depend on besides ``model``
and ``train`` (:func:`whatsreal.rule_settings.rule_settings` adds them to rule ``train``),
and how a trained checkpoint exports ``embeddings.parquet`` (the embed rule). Flow
matching, the paper's method, is not registered here: :func:`registered_method` returns
None for it, the callers keep their flow-matching code path, and its settings gain
nothing, so its runs neither retrain nor refuse to resume. Each factory imports its
modules when called: the workflow imports this registry while planning and never loads
torch for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from whatsreal.layout import DatasetLayout

if TYPE_CHECKING:
    import lightning as L
    import pandas as pd
    import torch

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "Method",
    "checkpoint_method",
    "method_settings",
    "registered_method",
    "training_data_files",
]

DEFAULT_METHOD = "flow_matching"


@dataclass(frozen=True)
class Method:
    """One training method's factories (see the module docstring)."""

    name: str
    data_files: Callable[[dict, DatasetLayout], list[Path]]
    """(run config, dataset layout) -> every file its training reads."""
    module: Callable[[dict, dict | None], L.LightningModule]
    """(run config, provenance) -> a fresh LightningModule."""
    datamodule: Callable[[dict, DatasetLayout], L.LightningDataModule]
    """(run config, dataset layout) -> its LightningDataModule."""
    export: Callable[[Path, DatasetLayout, Path, Path, int, torch.device], pd.DataFrame]
    """(checkpoint, dataset layout, embeddings out, tokens out, batch size, device) -> the embeddings written."""
    settings: tuple[str, ...] = ()
    """Config prefixes besides rule train's own that determine its trained weights."""


def _cvae_files(config: dict, data: DatasetLayout) -> list[Path]:
    from whatsreal.data.cvae import training_files

    return training_files(config, data)


def _cvae_module(config: dict, provenance: dict | None) -> L.LightningModule:
    from whatsreal.train.cvae import CvaeModule

    return CvaeModule(config, provenance)


def _cvae_datamodule(config: dict, data: DatasetLayout) -> L.LightningDataModule:
    from whatsreal.data.cvae import CvaeDataModule

    return CvaeDataModule(config, data)


def _cvae_export(
    checkpoint: Path, data: DatasetLayout, out: Path, tokens_out: Path, batch_size: int, device: torch.device
) -> pd.DataFrame:
    from whatsreal.model.cvae_embed import export_cvae_embeddings

    return export_cvae_embeddings(checkpoint, data, out, tokens_out, batch_size, device)


METHODS: dict[str, Method] = {
    # Seed 003: physics-informed CVAE on one survey's cutouts (whatsreal.model.cvae).
    "cvae": Method("cvae", _cvae_files, _cvae_module, _cvae_datamodule, _cvae_export, settings=("method", "cvae")),
}
"""Registered methods by their ``method`` config value (flow matching is the callers' default path)."""


def registered_method(config: dict) -> Method | None:
    """The registered method of a run config, or None for flow matching (the callers' own path)."""
    name = config.get("method", DEFAULT_METHOD)
    if name == DEFAULT_METHOD:
        return None
    if name not in METHODS:
        raise ValueError(f"method '{name}' is not registered (known: {DEFAULT_METHOD}, {', '.join(METHODS)})")
    return METHODS[name]


def training_data_files(config: dict, data: DatasetLayout | str | Path) -> list[Path]:
    """Every file a run's training reads: the method's own list, or flow matching's triplets
    (images, metadata, split and the run's neighbour graph)."""
    data = DatasetLayout.of(data)
    method = registered_method(config)
    if method is None:
        return data.run_data_files(config["neighbours"]["mode"])
    return method.data_files(config, data)


def method_settings(config: dict) -> tuple[str, ...]:
    """The config prefixes a run's method adds to rule ``train``'s settings (none for flow matching)."""
    method = registered_method(config)
    return () if method is None else method.settings


def checkpoint_method(path: str | Path) -> Method | None:
    """The registered method that wrote a checkpoint (its stored config's ``method``), or None."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return registered_method(ckpt.get("hyper_parameters", {}).get("config", {}))
