"""A trained network from a training checkpoint, for inference, without Lightning.

A checkpoint (a run's ``model.ckpt``, ``checkpoints/*.ckpt``) is what Lightning's
``save_checkpoint`` writes: a torch pickle of plain containers, read here with
``weights_only=True`` (nothing arbitrary is unpickled). Its ``hyper_parameters`` hold the
whole validated config the run was trained with (and its provenance); its ``state_dict``
the LightningModule's tensors, the method's network under :data:`NETWORK_PREFIX` (every
method's module keeps it as ``self.model``: whatsreal.train.module.MethodModule) and, for
the CVAE, its label standardisation.

The stored config is completed with this version's schema defaults when the checkpoint is
read (:func:`whatsreal.config.complete_stored_config`), so a model trained before a config
key existed loads, and compares equal to a config that leaves the key at its default.

The network is rebuilt from the stored config by its method's builder
(:func:`whatsreal.methods.build_network`, the one the LightningModule trains) and given
the checkpoint's weights, so inference jobs (sampling, export, the generative
experiments) load a trained model without importing Lightning or building its module.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import whatsreal
from whatsreal.config import ConfigError, complete_stored_config, config_value
from whatsreal.methods import build_network, method_of

__all__ = ["NETWORK_PREFIX", "CheckpointError", "load_trained_model", "read_checkpoint", "trained_model"]

NETWORK_PREFIX = "model."
"""State-dict prefix of the network in a method's checkpoint (the LightningModule's ``self.model``)."""


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable, or was trained with another config than the one given; the message says which."""


def read_checkpoint(path: str | Path, config: dict | None = None) -> dict[str, Any]:
    """The checkpoint at ``path`` as saved (``weights_only``: no arbitrary unpickling), its stored
    config completed with the schema defaults of keys added since it was trained. With
    ``config``, refuse a checkpoint whose method or model/preprocess keys differ from it, listing them."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or not a checkpoint
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    hyper = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if isinstance(hyper, dict) and isinstance(hyper.get("config"), dict):
        try:
            hyper["config"] = complete_stored_config(hyper["config"])
        except ConfigError as err:
            raise CheckpointError(
                f"{path}: its stored config cannot be read by whatsreal {whatsreal.__version__} ({err}); "
                "retrain the run, or load it with the whatsreal that trained it"
            ) from None
    if config is not None:
        _check_config(path, ckpt, config)
    return ckpt


def trained_model(checkpoint: Mapping[str, Any]) -> tuple[nn.Module, dict]:
    """(network, config) of a read checkpoint: its method's network with the trained weights,
    in training mode as built (call ``.eval()`` for inference), and the config it was trained with."""
    saved = checkpoint["hyper_parameters"]["config"]
    net = build_network(saved)
    state = checkpoint["state_dict"]
    net.load_state_dict({k.removeprefix(NETWORK_PREFIX): v for k, v in state.items() if k.startswith(NETWORK_PREFIX)})
    return net, saved


def load_trained_model(path: str | Path, config: dict | None = None) -> tuple[nn.Module, dict]:
    """(network, config) of the checkpoint at ``path`` (:func:`read_checkpoint`, :func:`trained_model`):
    a :class:`~whatsreal.model.flow.FlowMatchingModel` for flow matching (and for checkpoints from
    before methods existed), else the network of the method its stored config names (whatsreal.methods)."""
    return trained_model(read_checkpoint(path, config))


def _check_config(path: str | Path, ckpt: Mapping[str, Any], config: dict) -> None:
    saved = ckpt.get("hyper_parameters", {}).get("config")
    if saved is None:
        raise CheckpointError(f"{path}: no whatsreal config stored in this checkpoint")
    diffs = [
        k
        for k in _flatten_keys({"model": config["model"], "preprocess": config["preprocess"]})
        if _get(saved, k) != _get(config, k)
    ]
    if method_of(saved).name != method_of(config).name:
        diffs.append("method")
    if diffs:
        raise CheckpointError(
            f"{path} was trained with a different config; mismatched keys: "
            + ", ".join(f"{k} ({_get(saved, k)!r} vs {_get(config, k)!r})" for k in diffs)
        )


def _flatten_keys(d: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in d.items():
        path = f"{prefix}{k}"
        keys.extend(_flatten_keys(v, path + ".") if isinstance(v, dict) else [path])
    return keys


def _get(d: dict, dotted: str) -> object:
    """The value at ``dotted``, or None where the config has no such key (an older checkpoint)."""
    try:
        return config_value(d, dotted)
    except KeyError:
        return None
