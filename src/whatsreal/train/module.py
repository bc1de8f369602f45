"""The LightningModules: counterfactual flow matching on triplets, and the seed-001 contrastive
methods on the same triplets (:class:`ContrastiveModule`; which one a run uses: whatsreal.methods).

AdamW with an optional linear warm-up (``train.warmup_steps``, 0 in the paper) and a
cosine schedule over the whole run *in steps* (the paper's code set
T_max to max_epochs = -1, so its learning rate flipped between 1e-4 and 0). The
loss is logged overall and per anchor survey. A non-finite loss stops training
with the step and the batch's pairs named; checkpoints written before it are kept.

Every validation also logs the conditioning gains (whatsreal.model.conditioning_gain):
``val/gain_instrument_{survey}`` and ``val/gain_physics_{survey}``, the loss increase
when that half of the conditioning comes from another pair anchored in the same
survey, on the same x0 and t. The partner comes from the same validation batch, a
random subset of the held-out pairs (TripletDataModule fixes their order), so it is
a sky neighbour only by chance, as often as any other pair. The draws are seeded by (train.seed, batch index), so
successive validations compare the same noise and only the model changes. One draw
per pair makes this a history; the `conditioning_gain` rule's many draws and
bootstrap interval are the measurement.
"""

from __future__ import annotations

import math

import lightning as L
import torch

from whatsreal.methods import build_network
from whatsreal.model.conditioning_gain import HALVES, conditioning_gains
from whatsreal.model.contrastive import DualContrastiveModel, SingleLatentModel
from whatsreal.model.flow import Conditioning, FlowMatchingModel
from whatsreal.surveys import training_surveys

__all__ = [
    "ContrastiveModule",
    "FlowMatchingModule",
    "MethodModule",
    "NonFiniteLossError",
    "adamw_cosine",
    "check_finite",
]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN/inf."""


class MethodModule(L.LightningModule):
    """What every method's LightningModule shares (whatsreal.methods), so that a comparison of
    methods differs in the model and its objective only: the config and provenance in each
    checkpoint, one optimiser and schedule (:func:`adamw_cosine`), and a training step that
    stops on a non-finite loss and logs the learning rate.

    The network is ``self.model``, built by the method's builder (:func:`whatsreal.methods.build_network`),
    the same one that rebuilds it from a checkpoint for inference (:mod:`whatsreal.model.checkpoint`).

    Subclasses implement ``_step(batch, stage)``, the loss of a batch with its logging
    (``stage``: ``train`` or ``val``); ``batch_key`` names the batch entry whose length is the
    batch size.
    """

    batch_key = "target"
    model: torch.nn.Module

    def __init__(self, config: dict, provenance: dict | None = None) -> None:
        super().__init__()
        # The whole validated config is stored in every checkpoint (plain dicts and lists,
        # loadable with weights_only=True), so a checkpoint says what built it; with the
        # provenance (whatsreal.provenance) a restart can tell whether it may resume.
        self.save_hyperparameters({"config": config, "provenance": provenance})
        self.config = config
        self.model = build_network(config)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        check_finite(loss, batch, self.global_step, batch_idx)
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log("lr", lr, batch_size=batch[self.batch_key].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self):
        return adamw_cosine(self.parameters(), self.config["train"])


class FlowMatchingModule(MethodModule):
    model: FlowMatchingModel

    def condition(self, batch: dict[str, torch.Tensor]) -> Conditioning:
        return self.model.condition_batch(batch)

    def _step(self, batch: dict[str, torch.Tensor], stage: str, cond: Conditioning | None = None) -> torch.Tensor:
        cond = self.condition(batch) if cond is None else cond
        loss, per_sample = self.model.loss(batch["target"], cond)
        bs = batch["target"].shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=bs, sync_dist=stage == "val")
        for a, survey in enumerate(training_surveys(self.config)):
            sel = batch["anchor"] == a
            if sel.any():
                self.log(
                    f"{stage}/loss_{survey}",
                    per_sample[sel].mean(),
                    batch_size=int(sel.sum()),
                    sync_dist=stage == "val",
                )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        cond = self.condition(batch)
        self._step(batch, "val", cond)
        gen = torch.Generator().manual_seed(int(self.config["train"]["seed"]) * 1_000_003 + batch_idx)
        gains = conditioning_gains(self.model, batch["target"], cond, batch["anchor"], gen)
        for a, survey in enumerate(training_surveys(self.config)):
            for half in HALVES:
                g = gains[half][(batch["anchor"] == a).cpu()]
                g = g[torch.isfinite(g)]
                if g.numel():
                    self.log(
                        f"val/gain_{half}_{survey}",
                        g.mean().float().to(self.device),  # NCCL reduces device tensors only
                        batch_size=int(g.numel()),
                        sync_dist=True,
                    )


def adamw_cosine(params, tcfg: dict) -> dict:
    """AdamW with ``train.lr``/``weight_decay``, linear warm-up and a per-step cosine to 0 at
    ``train.max_steps``: the optimiser of every method (whatsreal.methods), so a comparison of
    methods differs in the objective only."""
    opt = torch.optim.AdamW(params, lr=tcfg["lr"], weight_decay=tcfg["weight_decay"])
    total = tcfg["max_steps"]
    warmup = min(int(tcfg["warmup_steps"]), total - 1)

    def cosine(step: int) -> float:
        # Linear warm-up (none in the paper), then cosine from the peak to 0 at max_steps.
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * min(step - warmup, total - warmup) / (total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}


def check_finite(loss: torch.Tensor, batch: dict[str, torch.Tensor], step: int, batch_idx: int) -> None:
    """Stop training on a NaN/inf loss, naming the step and the batch's pairs."""
    if not torch.isfinite(loss):
        pairs = batch["pair"][:8].tolist()
        raise NonFiniteLossError(
            f"non-finite training loss at step {step} (batch {batch_idx}, pairs {pairs}...); "
            "the last good checkpoint is kept"
        )


class ContrastiveModule(MethodModule):
    """Seed 001's structured contrastive training (``method: contrastive``) and its single-latent
    baseline (``method: single_latent``), on the same triplet batches as flow matching.

    Logged like :class:`FlowMatchingModule` (metrics.csv): ``{stage}/loss`` (eq. 10's total) and
    ``{stage}/loss_{survey}`` per anchor survey, plus each term's mean, ``{stage}/loss_physics``,
    ``{stage}/loss_instrument`` and ``{stage}/loss_reconstruction`` (those the model has). The
    checkpoints hold the config and provenance as FlowMatchingModule's do, so train() resumes and
    load_trained_model() (whatsreal.model.checkpoint) rebuilds either network the same way.
    """

    model: DualContrastiveModel | SingleLatentModel

    def __init__(self, config: dict, provenance: dict | None = None) -> None:
        super().__init__(config, provenance)
        c = config["contrastive"]
        self.weights = {
            "physics": float(c["lambda_physics"]),
            "instrument": float(c["lambda_instrument"]),
            "reconstruction": float(c["lambda_reconstruction"]),
        }

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        losses = self.model.losses(batch)
        parts = losses.total(self.weights)
        bs = batch["target"].shape[0]
        sync = stage == "val"
        for name, value in parts.items():
            key = f"{stage}/loss" if name == "loss" else f"{stage}/loss_{name}"
            self.log(key, value, prog_bar=name == "loss", batch_size=bs, sync_dist=sync)
        for a, survey in enumerate(training_surveys(self.config)):
            sel = batch["anchor"] == a
            if sel.any():
                self.log(
                    f"{stage}/loss_{survey}",
                    losses.total(self.weights, sel)["loss"],
                    batch_size=int(sel.sum()),
                    sync_dist=sync,
                )
        return parts["loss"]
