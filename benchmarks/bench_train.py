"""Benchmark training, sampling and embedding on this machine (CPU unless a GPU is present).

- seconds per training step for a config's model (default: the CPU demo in config/config.yaml),
  and its split: the encoders' forward pass (anchor's physics view + instrument set), the
  UNet's loss forward pass, and the rest (backward + AdamW);
- sampling throughput, Euler with 250 steps vs Heun/midpoint with fewer;
- sampler accuracy: MSE between Euler-250 and Heun/midpoint at 10, 25, 50 steps, same x0,
  on a trained model (default: results/sim/runs/main/model.ckpt from `make run`);
- embedding export throughput.

Usage: python benchmarks/bench_train.py [--config FILE ...] [--checkpoint PATH] [--data results/sim]
  --config takes one or more files, merged as `--configfile` merges them, e.g.
  `--config config/config.yaml config/sim_science.yaml` (the demo's model before it was shrunk).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from whatsreal.config import effective_config
from whatsreal.data.triplets import TripletDataset
from whatsreal.model.checkpoint import load_trained_model
from whatsreal.model.embed import encode_images
from whatsreal.model.flow import build_model
from whatsreal.model.samplers import integrate

REPO = Path(__file__).resolve().parents[1]


def step_time(cfg: dict, data: Path, steps: int) -> dict[str, list[float]]:
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ds = TripletDataset(data, np.arange(len(np.load(data / "images_hsc.npy", mmap_mode="r"))))
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {"step": [], "encoders": [], "unet": []}
    for i in range(steps + 2):
        batch = ds.__getitems__(list(rng.integers(0, len(ds), cfg["train"]["batch_size"])))
        t = time.perf_counter()
        cond = model.condition_batch(batch)
        t_enc = time.perf_counter()
        loss, _ = model.loss(batch["target"], cond)
        t_unet = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:  # skip warm-up
            times["step"].append(time.perf_counter() - t)
            times["encoders"].append(t_enc - t)
            times["unet"].append(t_unet - t_enc)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", nargs="+", default=[str(REPO / "config" / "config.yaml")])
    parser.add_argument("--data", default=str(REPO / "results" / "sim"))
    parser.add_argument("--checkpoint", default=str(REPO / "results" / "sim" / "runs" / "main" / "model.ckpt"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--n-galaxies", type=int, default=16)
    args = parser.parse_args()
    data = Path(args.data)
    cfg = effective_config(args.config)
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads {torch.get_num_threads()}")
    times = step_time(cfg, data, args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"training step, config {' + '.join(Path(c).name for c in args.config)}, batch {cfg['train']['batch_size']}: "
        f"median {med['step']:.3f} s over {len(times['step'])} steps "
        f"({cfg['train']['batch_size'] / med['step']:.0f} samples/s); forward: encoders {med['encoders']:.3f} s, "
        f"UNet loss {med['unet']:.3f} s; backward + AdamW {med['step'] - med['encoders'] - med['unet']:.3f} s"
    )

    model, _ = load_trained_model(args.checkpoint)
    model = model.eval()
    split = pd.read_parquet(data / "split.parquet")
    val = split.loc[split["split"] == "val", "pair"].to_numpy()[: args.n_galaxies]
    ds = TripletDataset(data, val, anchors=np.zeros(len(val), dtype=np.int64))  # HSC-anchored
    batch = ds.__getitems__(list(range(len(ds))))
    with torch.no_grad():
        cond = model.condition_batch(batch)
    x0 = torch.randn(len(val), 4, 48, 48, generator=torch.Generator().manual_seed(0))
    t = time.perf_counter()
    ref = integrate(model, x0, cond, 250, "euler")
    t_ref = time.perf_counter() - t
    print(f"sampling: Euler 250 steps {len(val) / t_ref:.2f} images/s ({len(val)} HSC-anchored val galaxies)")
    for method in ("heun", "midpoint"):
        for steps in (10, 25, 50):
            t = time.perf_counter()
            out = integrate(model, x0, cond, steps, method)
            dt = time.perf_counter() - t
            mse = float(((out - ref) ** 2).mean())
            print(
                f"  {method:8s} {steps:3d} steps: {len(val) / dt:6.2f} images/s ({t_ref / dt:4.1f}x Euler-250), "
                f"MSE vs Euler-250 {mse:.2e} (target variance {float(batch['target'].var()):.3f})"
            )
    images = np.load(data / "images_hsc.npy", mmap_mode="r")
    t = time.perf_counter()
    encode_images(model, images, 256, torch.device("cpu"))
    dt = time.perf_counter() - t
    print(f"embedding export: {len(images) / dt:.0f} galaxies/s (both encoders, batch 256, CPU)")


if __name__ == "__main__":
    main()
