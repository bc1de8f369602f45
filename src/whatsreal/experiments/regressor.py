"""A timm ResNet trained from scratch to regress scalars from images: the supervised image baselines.

Two experiments need the same thing: the cross-predict baseline of Table 5 (a
ResNet that predicts one survey's instrument properties from the *other*
survey's image) and the zero-shot transfer test (a ResNet that predicts
ellipticity from real HSC images, later applied to generated ones). Both train
one network on several standardised targets at once, with a masked loss so a
galaxy missing one label still teaches the others.

Recipe (``experiments.baselines``): AdamW, cosine learning-rate decay over all
steps, Smooth L1 on standardised targets, a seeded initialisation and batch
order; bf16 autocast on CUDA. The network is the encoder architecture of the
model (``model.encoder.name``), pretrained=False, so the baselines have the same
capacity as our encoders.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from whatsreal.device import compute_device, cuda_bf16
from whatsreal.model.encoders import create_timm_model

__all__ = ["ImageRegressor", "masked_smooth_l1", "one_cpu_thread", "train_image_regressor"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def one_cpu_thread() -> Iterator[None]:
    """Run torch on one intra-op CPU thread inside the block, restoring the setting afterwards.

    On the shared 2-core machines this pipeline targets, OpenMP's thread
    synchronisation dominates the small tensors of these baselines: measured
    5x (ResNet epoch) to 40x (MLP probe) slower wall time with two threads than
    with one when the cores are busy, with most of the CPU spent spin-waiting.
    Snakemake runs independent experiments side by side, which uses the cores.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def masked_smooth_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over targets of each target's mean Smooth L1 over its labelled rows (0 where none).

    Summing per-target means (not one mean over all cells) keeps each target's
    gradient the same whatever the other targets' missing labels are.
    """
    loss = nn.functional.smooth_l1_loss(pred, torch.where(mask, target, pred.detach()), reduction="none")
    loss = (loss * mask).sum(dim=0)
    count = mask.sum(dim=0).clamp(min=1)
    return (loss / count).sum()


@dataclass
class ImageRegressor:
    """A trained network plus the target standardisation it was trained on."""

    net: nn.Module
    mean: np.ndarray
    std: np.ndarray
    targets: list[str]

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, C, H, W) images (any array-like, e.g. a memmap) -> (N, n_targets) in the targets' units."""
        dev = next(self.net.parameters()).device
        if dev.type == "cpu":
            with one_cpu_thread():
                return self._predict(images, batch_size, dev)
        return self._predict(images, batch_size, dev)

    def _predict(self, images: np.ndarray, batch_size: int, dev: torch.device) -> np.ndarray:
        self.net.eval()
        out = []
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.array(images[start : start + batch_size], dtype=np.float32)).to(dev)
            with cuda_bf16(dev):
                out.append(self.net(x).float().cpu().numpy())
        pred = np.concatenate(out) if out else np.empty((0, len(self.targets)), np.float32)
        return pred * self.std + self.mean


def build_regressor(encoder_cfg: dict, in_chans: int, n_out: int, seed: int) -> nn.Module:
    """A fresh timm network of ``model.encoder``'s architecture (``name`` and ``options``, so the
    baselines match the encoders they are compared with) with ``n_out`` linear outputs,
    initialised from ``seed`` only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return create_timm_model(encoder_cfg["name"], in_chans, encoder_cfg.get("options"), num_classes=n_out)


def train_image_regressor(
    images: np.ndarray,
    targets: np.ndarray,
    train_rows: np.ndarray,
    bcfg: dict,
    encoder_cfg: dict,
    target_names: list[str],
    tag: str = "regressor",
) -> ImageRegressor:
    """Train on ``images[train_rows]`` -> ``targets[train_rows]`` (NaN = missing label).

    ``bcfg`` is ``cfg['experiments']['baselines']`` (epochs, batch_size, lr, weight_decay,
    seed); ``encoder_cfg`` is ``model.encoder`` (the architecture). Targets are standardised
    with the training rows' mean and std; batches are drawn from a seeded permutation each epoch.
    """
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim != 2 or targets.shape[0] != len(images):
        raise ValueError(f"{tag}: targets must be (N, T) with N = {len(images)} images, got {targets.shape}")
    train_rows = np.asarray(train_rows, dtype=np.int64)
    y = targets[train_rows]
    ok = np.isfinite(y)
    if (ok.sum(axis=0) < 2).any():
        bad = [t for t, k in zip(target_names, ok.sum(axis=0), strict=True) if k < 2]
        raise ValueError(f"{tag}: fewer than 2 training labels for target(s) {bad}")
    mean = np.array([y[ok[:, j], j].mean() for j in range(y.shape[1])])
    std = np.array([y[ok[:, j], j].std() for j in range(y.shape[1])])
    std = np.where(std > 0, std, 1.0)
    ystd = np.where(ok, (y - mean) / std, 0.0).astype(np.float32)

    dev = compute_device()
    with one_cpu_thread() if dev.type == "cpu" else contextlib.nullcontext():
        net = _fit(images, ystd, ok, train_rows, bcfg, encoder_cfg, dev, tag)
    return ImageRegressor(net=net, mean=mean, std=std, targets=list(target_names))


def _fit(
    images: np.ndarray,
    ystd: np.ndarray,
    ok: np.ndarray,
    train_rows: np.ndarray,
    bcfg: dict,
    encoder_cfg: dict,
    dev: torch.device,
    tag: str,
) -> nn.Module:
    """The training loop of :func:`train_image_regressor` on standardised labels ``ystd`` (``ok`` = labelled)."""
    seed = int(bcfg["seed"])
    net = build_regressor(encoder_cfg, images.shape[1], ystd.shape[1], seed).to(dev)
    batch = int(bcfg["batch_size"])
    epochs = int(bcfg["epochs"])
    steps_per_epoch = max(1, math.ceil(len(train_rows) / batch))
    opt = torch.optim.AdamW(net.parameters(), lr=float(bcfg["lr"]), weight_decay=float(bcfg["weight_decay"]))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    y_t = torch.from_numpy(ystd)
    m_t = torch.from_numpy(ok)
    t0 = time.perf_counter()
    log.info(
        "%s: training %s on %d images, %d target(s), %d epochs on %s",
        tag,
        encoder_cfg["name"],
        len(train_rows),
        ystd.shape[1],
        epochs,
        dev,
    )
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(train_rows), generator=gen).numpy()
        total, seen = 0.0, 0
        for start in range(0, len(perm), batch):
            idx = perm[start : start + batch]
            if len(idx) < 2:  # BatchNorm cannot train on one image
                continue
            rows = train_rows[idx]
            order = np.argsort(rows)  # sorted reads are kinder to a memmap
            x = torch.from_numpy(np.array(images[rows[order]], dtype=np.float32)).to(dev)
            yb, mb = y_t[idx[order]].to(dev), m_t[idx[order]].to(dev)
            with cuda_bf16(dev):
                pred = net(x).float()
            loss = masked_smooth_l1(pred, yb, mb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        log.info(
            "%s: epoch %d/%d loss %.4f (%.0f s)", tag, epoch + 1, epochs, total / max(seen, 1), time.perf_counter() - t0
        )
    _recalibrate_batchnorm(net, images, train_rows, batch, dev)
    log.info("%s: trained in %.0f s", tag, time.perf_counter() - t0)
    return net


@torch.no_grad()
def _recalibrate_batchnorm(net: nn.Module, images: np.ndarray, rows: np.ndarray, batch: int, dev: torch.device) -> None:
    """Re-estimate BatchNorm running statistics with the final weights ("precise BN"), then eval mode.

    The running averages collected during training lag behind weights that
    moved a lot in few steps (a short schedule, a high learning rate), so
    eval-mode predictions can be far off even when the training loss is low
    (seen as R^2 << 0 on held-out images after 3 epochs). One pass over the
    training images in train mode with a cumulative average fixes that.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the pass
        net.train()
        rows = np.sort(rows)
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            if len(chunk) < 2:
                continue
            x = torch.from_numpy(np.array(images[chunk], dtype=np.float32)).to(dev)
            with cuda_bf16(dev):
                net(x)
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
    net.eval()
