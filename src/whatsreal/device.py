"""The torch device that computation outside Lightning training runs on: one rule, one place.

Embedding export, the experiments and the image baselines run wherever Snakemake
placed their job, so they take the GPU when the node has one and the CPU
otherwise; results do not depend on the choice beyond floating-point detail.
Training is different: Lightning is told its accelerator through
``train.accelerator`` (:func:`whatsreal.train.run.resolve_hardware`), which can
also demand a GPU and fail clearly where there is none.
"""

from __future__ import annotations

import torch

__all__ = ["compute_device", "cuda_bf16"]


def compute_device() -> torch.device:
    """CUDA when this machine has a usable GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cuda_bf16(device: torch.device) -> torch.autocast:
    """bf16 autocast on a CUDA device, a no-op elsewhere: the precision rule of the image
    baselines and the sampler study, in one place. GPUs run bf16 matmuls and convolutions at
    several times float32's rate; CPUs without bf16 units would only be slower, so the CPU stays
    in float32 (and its results reproducible to the bit)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
