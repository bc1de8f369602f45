"""Paper-scale speed on one accelerator (issue 17): training, sampling and embedding throughput, with MFU.

One command prints, for a config (default: the paper's, ``config/paper.yaml``) and a preprocessed
dataset (default: ``results/sim``, the demo's sky, whose 48 x 48 x 4 images are the paper's shape):

- **training samples/s and peak memory** at ``--batch`` (64, the paper's per-GPU batch) for each
  case: eager fp32; bf16 autocast; bf16 + channels_last; bf16 + fused AdamW; bf16 with PyTorch's
  reference (math) attention instead of its flash/memory-efficient choice (the attention-backend
  switch, off); bf16 + ``torch.compile``. Batches come from the real ``TripletDataModule``
  (memory-mapped files, its DataLoader) and, for the same case, from batches already resident on
  the device: the difference is the loader's share (the compiled case runs on resident batches
  only);
- **model FLOPs** per training sample and per UNet evaluation, counted with
  ``torch.utils.flop_counter.FlopCounterMode``, and **MFU** against ``--peak-tflops`` (default: the
  device's dense bf16 peak when it is an H100/H200, else none);
- **sampling images/s** for Euler-250 and Heun/midpoint at fewer steps (same x0, same conditioning;
  the MSE against Euler-250 is printed beside), and with ``--compile`` on an accelerator Euler-250
  again with the UNet compiled in ``reduce-overhead`` mode (CUDA graphs), after the embedding;
- **embedding galaxies/s** (both encoders over the HSC images, repeated to 16,384 on an accelerator);
- **the largest batch that fits** (doubling from ``--batch`` until out of memory; accelerator only)
  and the bf16 rate at half of it, for batch-size and learning-rate scaling.

The order is cheapest first, so a time limit that cuts a run short loses the compiled cases and
the batch search, not the eager table, sampling or embedding (on one H200 the compilation of the
paper UNet alone outlasted the last minute or so of a 180-s limit). Fused AdamW exists only on
CUDA: on a CPU that case runs the default AdamW.

``--quick`` makes every case tiny (1 timed step and no warm-up, batch 2, 8 images to sample, no batch
search, no compile unless ``--compile`` is given) so the test suite runs the whole script on a CPU and
it never rots; its numbers mean nothing (bf16 autocast on a CPU without bf16 units is several times
slower than fp32, which is why the quick cases are this small). Numbers from a real run go to
benchmarks/RESULTS.md with the device and the commit.

Usage: python benchmarks/bench_gpu.py [--config config/paper.yaml ...] [--data results/sim]
       [--batch 64] [--steps 20] [--quick] [--compile | --no-compile] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from whatsreal.config import effective_config
from whatsreal.device import cuda_bf16
from whatsreal.experiments.posterior import nfe_per_step
from whatsreal.model.embed import encode_images
from whatsreal.model.flow import Conditioning, FlowMatchingModel, build_model
from whatsreal.model.samplers import integrate
from whatsreal.train.datamodules import TripletDataModule

REPO = Path(__file__).resolve().parents[1]

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
"""Dense bf16 tensor-core peaks (vendor data sheets, SXM parts), matched against the device name."""


@dataclass(frozen=True)
class Case:
    """One way of running a training step."""

    name: str
    bf16: bool = False
    channels_last: bool = False
    fused_adamw: bool = False
    compile: bool = False
    math_attention: bool = False


CASES = (
    Case("eager fp32"),
    Case("bf16 autocast", bf16=True),
    Case("bf16 + channels_last", bf16=True, channels_last=True),
    Case("bf16 + fused AdamW", bf16=True, fused_adamw=True),
    Case("bf16 + math attention", bf16=True, math_attention=True),
    Case("bf16 + torch.compile", bf16=True, compile=True),
)


def attention_backend(math: bool) -> contextlib.AbstractContextManager:
    """PyTorch's reference (math) attention kernel when ``math``, else its own choice (flash or
    memory-efficient where they apply): the attention-backend switch, measured on and off."""
    return sdpa_kernel(SDPBackend.MATH) if math else contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool) -> dict[str, torch.Tensor]:
    """A batch on ``device``; image tensors in channels_last when asked (4-d targets only: the
    (B, V, C, H, W) views are flattened to 4-d inside the encoders)."""
    out = {}
    for key, value in batch.items():
        value = value.to(device, non_blocking=True)
        if channels_last and value.ndim == 4 and value.is_floating_point():
            value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


def train_step_fn(model: FlowMatchingModel, case: Case, lr: float) -> Callable[[dict[str, torch.Tensor]], None]:
    """One optimiser step of the flow-matching loss, run the way ``case`` says."""
    device = next(model.parameters()).device
    fused = case.fused_adamw and device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=lr, fused=fused or None)

    def loss_of(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        cond = model.condition_batch(batch)
        return model.loss(batch["target"], cond)[0]

    compute = torch.compile(loss_of) if case.compile else loss_of
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=case.bf16)

    def step(batch: dict[str, torch.Tensor]) -> None:
        with autocast:
            loss = compute(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def loader_batches(data: Path, batch: int, workers: int) -> Iterator[dict[str, torch.Tensor]]:
    """Training batches from the real data module (memory-mapped images, its DataLoader), epoch
    after epoch. Not ``itertools.cycle``, which would keep every batch of the first epoch in memory
    and replay them instead of loading."""
    dm = TripletDataModule(data, batch_size=batch, num_workers=workers, seed=0)
    dm.setup("fit")
    if len(dm.train_set) < batch:
        raise SystemExit(f"{data}: {len(dm.train_set)} training pairs, fewer than one batch of {batch}")
    loader = dm.train_dataloader()
    while True:
        yield from loader


def repeated(batch: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """A batch of ``n`` samples made by repeating ``batch``'s (for sizes larger than the dataset)."""
    index = torch.arange(n, device=batch["target"].device) % batch["target"].shape[0]
    return {k: v[index] for k, v in batch.items()}


def time_steps(
    step: Callable, batches: Iterator, device: torch.device, steps: int, channels_last: bool, warmup: int = 2
) -> list[float]:
    """Seconds per step (``warmup`` steps, which include compilation, left out)."""
    times = []
    for i in range(steps + warmup):
        t = time.perf_counter()
        step(to_device(next(batches), device, channels_last))
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return times


def flops_per_sample(model: FlowMatchingModel, batch: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(training FLOPs per sample: forward + backward of encoders and UNet; FLOPs of one UNet
    evaluation per image), counted by torch's FLOP counter on one batch."""
    n = batch["target"].shape[0]
    counter = FlopCounterMode(display=False)
    with counter:
        cond = model.condition_batch(batch)
        loss = model.loss(batch["target"], cond)[0]
        loss.backward()
    train = counter.get_total_flops() / n
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        cond = model.condition_batch(batch)
        counter = FlopCounterMode(display=False)
        with counter:
            model.velocity(batch["target"], torch.full((n,), 0.5, device=batch["target"].device), cond)
    return train, counter.get_total_flops() / n


def peak_memory_gib(device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a (CPU)"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"


def largest_batch(cfg: dict, sample: dict[str, torch.Tensor], start: int, device: torch.device) -> int:
    """The largest power-of-two multiple of ``start`` whose bf16 step fits in memory (batches made by
    repeating ``sample``, so the search is not limited by the dataset's size)."""
    best, batch = 0, start
    while batch <= 65536:
        model = build_model(cfg).to(device)
        step = train_step_fn(model, Case("probe", bf16=True), 1e-4)
        try:
            step(repeated(sample, batch))
            synchronize(device)
            best = batch
        except torch.OutOfMemoryError:
            break
        finally:
            # Free this size's model, optimiser state and activations before the next size is
            # built, or the search would stop early with two models in memory.
            del model, step
            if device.type == "cuda":
                torch.cuda.empty_cache()
        batch *= 2
    return best


def train_case(
    cfg: dict, case: Case, source: str, args: argparse.Namespace, resident: list, device: torch.device, flops: float
) -> None:
    """Print one training case's samples/s, peak memory and MFU."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    if case.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = train_step_fn(model, case, float(cfg["train"]["lr"]))
    batches = loader_batches(args.data, args.batch, args.workers) if source == "loader" else itertools.cycle(resident)
    with attention_backend(case.math_attention):
        times = time_steps(step, batches, device, args.steps, case.channels_last, 0 if args.quick else 2)
    med = statistics.median(times)
    rate = args.batch / med
    mfu = f", MFU {rate * flops / (args.peak * 1e12):.1%}" if args.peak else ""
    print(
        f"  {case.name:24s} {source:8s} {rate:9.1f} samples/s (median step {med * 1e3:.1f} ms), "
        f"peak memory {peak_memory_gib(device)}{mfu}",
        flush=True,
    )


@dataclass
class Sampled:
    """What the CUDA-graph case reuses from :func:`sampling`: the same network, noise,
    conditioning and Euler-``steps`` reference (``None`` until that reference is integrated)."""

    model: FlowMatchingModel
    x0: torch.Tensor
    cond: Conditioning
    steps: int
    reference: torch.Tensor | None = None


def time_integration(
    sampled: Sampled, method: str, steps: int, label: str, args: argparse.Namespace, device: torch.device, flops: float
) -> torch.Tensor:
    """Integrate ``sampled``'s noise, print images/s, evaluations, MSE to the reference and MFU
    (MSE 0 for the integration that is itself the reference)."""
    n_img = sampled.x0.shape[0]
    autocast = cuda_bf16(device)
    with torch.no_grad(), autocast:
        synchronize(device)
        t = time.perf_counter()
        out = integrate(sampled.model, sampled.x0, sampled.cond, steps, method).float()
        synchronize(device)
    dt = time.perf_counter() - t
    evals = steps * nfe_per_step(method)
    mfu = f", MFU {n_img * evals * flops / dt / (args.peak * 1e12):.1%}" if args.peak else ""
    reference = out if sampled.reference is None else sampled.reference
    mse = float(((out - reference) ** 2).mean())
    print(
        f"sampling {label:8s} {steps:3d} steps ({evals:3d} evaluations): {n_img / dt:8.2f} images/s, "
        f"MSE vs Euler-{sampled.steps} {mse:.2e}{mfu}",
        flush=True,
    )
    return out


def sampling(cfg: dict, first: dict, args: argparse.Namespace, device: torch.device, unet_flops: float) -> Sampled:
    """Sampling images/s of Euler-250 and the fast samplers from the same x0, with their MSE to Euler-250."""
    model = build_model(cfg).to(device).eval()
    n_img = 8 if args.quick else 64
    batch = repeated(first, n_img)
    autocast = cuda_bf16(device)
    with torch.no_grad(), autocast:
        cond = model.condition_batch(batch)
    x0 = torch.randn(batch["target"].shape, generator=torch.Generator().manual_seed(0)).to(device)
    steps = 4 if args.quick else 250
    sampled = Sampled(model, x0, cond, steps)
    sampled.reference = time_integration(sampled, "euler", steps, "euler", args, device, unet_flops)
    for method in ("heun", "midpoint"):
        for s in (2,) if args.quick else (10, 25):
            time_integration(sampled, method, s, method, args, device, unet_flops)
    return sampled


def cuda_graph_sampling(sampled: Sampled, args: argparse.Namespace, device: torch.device, unet_flops: float) -> None:
    """Euler-250 again with the UNet compiled in ``reduce-overhead`` mode (CUDA graphs), the switch
    that removes the launch gaps between its small kernels; compilation and capture stay outside
    the timing."""
    sampled.model.unet = torch.compile(sampled.model.unet, mode="reduce-overhead")
    autocast = cuda_bf16(device)
    with torch.no_grad(), autocast:
        integrate(sampled.model, sampled.x0, sampled.cond, 3, "euler")
    time_integration(sampled, "euler", sampled.steps, "euler + CUDA graphs", args, device, unet_flops)


def embedding(cfg: dict, args: argparse.Namespace, device: torch.device) -> None:
    """Galaxies/s through both encoders (the embedding export), over the dataset's HSC images
    repeated to at least 16,384 on an accelerator so the timing is not one short burst."""
    model = build_model(cfg).to(device).eval()
    images = np.load(args.data / "images_hsc.npy", mmap_mode="r")
    images = images[:64] if args.quick else np.concatenate([images] * max(1, -(-16384 // len(images))))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    encode_images(model, images[:256], 256, device, dtype)  # warm-up
    synchronize(device)
    t = time.perf_counter()
    encode_images(model, images, 1024 if device.type == "cuda" else 256, device, dtype)
    synchronize(device)
    print(f"embedding: {len(images) / (time.perf_counter() - t):.0f} galaxies/s (both encoders, {len(images)} images)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", nargs="+", default=[str(REPO / "config" / "paper.yaml")])
    ap.add_argument("--data", type=Path, default=REPO / "results" / "sim")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers for the loader-fed cases")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, so the test suite runs it on a CPU")
    ap.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the torch.compile cases (default: on an accelerator, off with --quick)",
    )
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak for MFU")
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.quick:
        args.batch, args.steps, args.workers = 2, 1, 0
    args.compile = args.compile if args.compile is not None else (device.type == "cuda" and not args.quick)
    cfg = effective_config(args.config, check_paths=False)  # it reads --data, not the config's sources
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    args.peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    print(
        f"device {name}; torch {torch.__version__}; config {' + '.join(Path(c).name for c in args.config)}; "
        f"data {args.data}; batch {args.batch}; {args.steps} timed steps per case",
        flush=True,
    )

    probe_model = build_model(cfg).to(device)
    n_params = sum(p.numel() for p in probe_model.parameters())
    feed = loader_batches(args.data, args.batch, 0)
    resident = [to_device(next(feed), device, False) for _ in range(2)]  # the device-resident cases' data
    first = resident[0]
    train_flops, unet_flops = flops_per_sample(probe_model, first)
    del probe_model
    print(
        f"model: {n_params / 1e6:.1f} M parameters; {train_flops / 1e9:.1f} GFLOP per training sample "
        f"(forward + backward, encoders and UNet); {unet_flops / 1e9:.2f} GFLOP per UNet evaluation per image",
        flush=True,
    )
    # Cheapest and most informative first: a time limit that cuts the run short loses the
    # compiled cases and the batch search, not the eager table, sampling or embedding.
    for case in CASES:
        if not case.compile:
            for source in ("loader", "resident"):
                train_case(cfg, case, source, args, resident, device, train_flops)
    sampled = sampling(cfg, first, args, device, unet_flops)
    embedding(cfg, args, device)
    if device.type == "cuda" and args.compile:
        cuda_graph_sampling(sampled, args, device, unet_flops)
    del sampled
    for case in CASES:
        if case.compile:
            if not args.compile:
                print(f"  {case.name:24s} skipped (--compile to run it)")
                continue
            # Device-resident only: the loader's share is measured by the eager cases.
            train_case(cfg, case, "resident", args, resident, device, train_flops)
    if device.type == "cuda" and not args.quick:
        best = largest_batch(cfg, first, args.batch, device)
        print(f"largest bf16 batch that fits: {best}", flush=True)
        if best > args.batch:
            # Throughput at the largest power-of-two batch that fits, for batch/LR scaling.
            big = [repeated(r, best // 2) for r in resident]
            args_big = argparse.Namespace(**{**vars(args), "batch": best // 2, "steps": 5})
            train_case(cfg, Case("bf16 autocast"), "resident", args_big, big, device, train_flops)
            print(f"  (the line above: batch {best // 2}, half the largest, as a training run would leave headroom)")


if __name__ == "__main__":
    main()
