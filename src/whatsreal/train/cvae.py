"""The LightningModule of ``method: cvae`` (seed 003's physics-informed VAE, whatsreal.model.cvae).

Trained by the same ``train`` rule and :func:`whatsreal.train.run.train` as flow matching
(resume, provenance, loggers, checkpoints); only the module and the data differ
(registered in :mod:`whatsreal.methods`). The label standardisation fitted on the training
split is stored in the checkpoint (two buffers, ``label_mean`` and ``label_std``), so the exported
predictions (:mod:`whatsreal.model.cvae_embed`) are in the properties' own units without reading
the training data again.

Logged: ``{train,val}/loss`` and its three unweighted terms ``/reconstruction``, ``/kl``,
``/property`` (the last only for batches with a label), and per property
``val/property_mse_<name>`` (standardised units) and ``lr``.
"""

from __future__ import annotations

import torch

from whatsreal.model.cvae import PhysicsCVAE, cvae_loss
from whatsreal.train.module import MethodModule

__all__ = ["CvaeModule"]


class CvaeModule(MethodModule):
    """Built as every method's module, ``CvaeModule(config, provenance)``.

    The labels' standardisation (training split's mean and standard deviation per property)
    is a pair of buffers, filled in :meth:`setup` from the :class:`~whatsreal.train.datamodules.CvaeDataModule`
    that trains it, so it is saved in every checkpoint's state dict and the export turns a
    trained model's property dimensions back into redshift and dex without the training data.
    """

    model: PhysicsCVAE
    label_mean: torch.Tensor
    label_std: torch.Tensor

    batch_key = "image"

    def __init__(self, config: dict, provenance: dict | None = None) -> None:
        super().__init__(config, provenance)
        n = len(config["cvae"]["properties"])
        self.register_buffer("label_mean", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("label_std", torch.ones(n, dtype=torch.float64))

    def setup(self, stage: str) -> None:
        """Take the standardisation from the data module (its ``setup`` runs first)."""
        labels = getattr(self.trainer.datamodule, "labels", None)
        if labels is not None:
            self.label_mean.copy_(torch.as_tensor(labels.mean, dtype=torch.float64))
            self.label_std.copy_(torch.as_tensor(labels.std, dtype=torch.float64))

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        cfg = self.config["cvae"]
        x, labels = batch["image"], batch["labels"]
        rec, props, mu, logvar = self.model(x, sample=stage == "train")
        terms = cvae_loss(
            x,
            rec,
            props,
            mu,
            logvar,
            labels,
            reconstruction_weight=cfg["reconstruction_weight"],
            beta=cfg["beta"],
            property_weight=cfg["property_weight"],
        )
        bs = x.shape[0]
        sync = stage == "val"
        self.log(f"{stage}/loss", terms.total, prog_bar=True, batch_size=bs, sync_dist=sync)
        self.log(f"{stage}/reconstruction", terms.reconstruction, batch_size=bs, sync_dist=sync)
        self.log(f"{stage}/kl", terms.kl, batch_size=bs, sync_dist=sync)
        if terms.n_labelled:
            self.log(f"{stage}/property", terms.property, batch_size=terms.n_labelled, sync_dist=sync)
        if stage == "val":
            for j, name in enumerate(cfg["properties"]):
                known = torch.isfinite(labels[:, j])
                if known.any():
                    err = (props[known, j].float() - labels[known, j]).pow(2).mean()
                    self.log(f"val/property_mse_{name}", err, batch_size=int(known.sum()), sync_dist=True)
        return terms.total
