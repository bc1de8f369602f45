"""Would the decoder use an observing condition if it were handed to it? (synthetic sky)

The instrument encoder learns only what the flow-matching loss rewards: a property the decoder
has no use for gets no gradient, whatever the encoder could read. This script separates the two.
It trains the demo's model with its instrument half replaced by *oracle* tokens: a small MLP
(``ORACLE_HIDDEN`` units) of the anchor's true conditions in its survey (per band, log PSF FWHM
and/or log sky sigma, standardised over the pairs, plus a one-hot of the anchor survey), with
the model's ``model.encoder.tokens`` tokens of ``token_dim`` numbers. Everything else is the
configured training: the physics encoder and UNet, AdamW with warm-up and cosine
(``whatsreal.train.module.adamw_cosine``), ``model.time_sampling``, ``train.batch_size``, anchors
drawn at random among the surveys, on the training pairs.

Then, like rule ``conditioning_gain``, every held-out pair anchored in each survey is scored with
every *other* held-out pair's instrument half, on ``--draws`` shared draws of (x0, t), and the
swaps' gains go through the pipeline's own regression
(whatsreal.experiments.conditioning_sensitivity): slope per standard deviation of |log sky-noise|
and |PSF FWHM| mismatch, 95 % interval by bootstrap over anchors. ``--t-bins`` repeats the fit within
equal-count bins of the draws' flow time t, which says *where* on the path from noise to image a
condition pays, if anywhere. ``--floor N`` scores the model on N held-out stamps per survey at
fixed t against the loss of a decoder that knows the noiseless scene. ``--model`` scores a
trained run's model (its own instrument encoder) on exactly the same swaps, for comparison.

A PSF slope at 0 for the oracle says that, at this budget, the decoder does not collect what the
loss pays for knowing the PSF even when it is given, and no encoder trained by it can be expected
to read the PSF. The loss itself does pay for it, about as much as for the sky noise, to a
decoder that knows the scene (benchmarks/condition_value.py; RESULTS, "What the loss pays for
the PSF").

On a GPU (``--device``, default: CUDA when there is one) the training batches are drawn from
device-resident images (``--resident``, the default there: the oracle needs no neighbour
views, so a batch is two gathers), in bf16 autocast (whatsreal.device.cuda_bf16), and
``--seconds`` sizes the training to a time budget: the step rate is timed on a throwaway copy
of the model first, and the cosine schedule is then laid over the steps that fit, so the
run anneals as a ``--steps`` run does. That is the check to run first when a GPU is lent
(benchmarks/gpu_session.sh, part 5): whether the PSF slope leaves 0 at many times the CPU's
budget.

Usage: python benchmarks/oracle_conditioning.py --data results/sim [--config config/config.yaml ...]
       [--steps 1500 | --seconds 300] [--batch-size 32] [--features both|fwhm|sigma] [--draws 4]
       [--device cpu|cuda] [--resident] [--save oracle.pt | --load oracle.pt] [--t-bins 4] [--floor 60]
       [--threads 1]
       python benchmarks/oracle_conditioning.py --data results/sim --model results/sim/runs/main/model.ckpt
Cost: the demo model's steps (0.6-1.1 s each on 2 cores) plus 2 x 56 x draws loss evaluations of
57 pairs (a few minutes).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from whatsreal.config import effective_config
from whatsreal.data.triplets import TripletDataset
from whatsreal.data.usable import seen_rows, usable_pairs
from whatsreal.device import compute_device, cuda_bf16
from whatsreal.experiments.bootstrap import bootstrap_config
from whatsreal.experiments.condition_value import FLOOR_TIMES, floor_lines, floor_table, held_out_stamps
from whatsreal.experiments.conditioning_gain import SWAP_COLUMNS, truth_ids_by_row, val_pairs
from whatsreal.experiments.conditioning_sensitivity import sensitivity_by_time, sensitivity_table, swap_differences
from whatsreal.layout import DatasetLayout
from whatsreal.model.checkpoint import load_trained_model
from whatsreal.model.flow import Conditioning, FlowMatchingModel, build_model
from whatsreal.surveys import SURVEY_ORDER
from whatsreal.train.module import adamw_cosine

REPO = Path(__file__).resolve().parents[1]
ORACLE_HIDDEN = 64
FEATURES = {"both": ("psf_fwhm", "sky_sigma"), "fwhm": ("psf_fwhm",), "sigma": ("sky_sigma",)}


def oracle_features(layout: DatasetLayout, truth: pd.DataFrame, quantities: tuple[str, ...], bands: list[str]):
    """Per survey index: (n_pairs, F) standardised logs of the anchor's true per-band conditions."""
    ids = truth_ids_by_row(layout, SURVEY_ORDER)
    table = truth.set_index("truth_id")
    out = {}
    for a, survey in enumerate(SURVEY_ORDER):
        rows = table.loc[ids[survey].sort_index().to_numpy()]
        x = np.log(np.column_stack([rows[f"{survey}_{q}_{b}"].to_numpy(float) for q in quantities for b in bands]))
        out[a] = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    return out


class OracleConditioning(nn.Module):
    """The model's physics tokens beside oracle instrument tokens made from the true conditions."""

    def __init__(self, net: FlowMatchingModel, features: dict[int, torch.Tensor], tokens: int, token_dim: int) -> None:
        super().__init__()
        self.net = net
        # (anchor survey, pair, feature): a buffer, so it moves to the model's device with it.
        self.register_buffer("features", torch.stack([features[a] for a in sorted(features)]), persistent=False)
        self.tokens, self.token_dim = tokens, token_dim
        width = self.features.shape[2] + self.features.shape[0]
        out = tokens * token_dim
        self.mlp = nn.Sequential(nn.Linear(width, ORACLE_HIDDEN), nn.GELU(), nn.Linear(ORACLE_HIDDEN, out))

    def __call__(self, batch: dict[str, torch.Tensor]) -> Conditioning:
        a, p = batch["anchor"], batch["pair"]
        x = torch.cat([self.features[a, p], nn.functional.one_hot(a, self.features.shape[0]).float()], 1)
        b = x.shape[0]
        pt, pm = self.net.encode_views(self.net.physics_encoder, batch["physics"], batch["physics_mask"])
        it = self.mlp(x).view(b, self.tokens, self.token_dim)
        im = torch.ones(b, self.tokens, dtype=torch.bool, device=it.device)
        return Conditioning(torch.cat([pt, it], 1), torch.cat([pm, im], 1), n_physics=pt.shape[1])


ORACLE_KEYS = ("target", "physics", "physics_mask", "anchor", "pair")
"""What the oracle's loss reads of a triplet batch: no neighbour views."""


def training_pairs(layout: DatasetLayout) -> np.ndarray:
    """The usable training pairs, sorted (the rows the training draws from)."""
    split = pd.read_parquet(layout.split, columns=["pair", "split"])
    ok = usable_pairs(layout.root, SURVEY_ORDER)
    train = np.sort(split.loc[split["split"] == "train", "pair"].to_numpy())
    return train[ok[train]]


class DatasetBatches:
    """Random training batches as the pipeline builds them (``TripletDataset``, anchors drawn by
    torch's global generator, rows by numpy's seeded one), moved to ``device``: the draws every
    CPU oracle in benchmarks/RESULTS.md trained on."""

    def __init__(self, layout: DatasetLayout, pairs: np.ndarray, device: torch.device) -> None:
        self.ds = TripletDataset(layout.root, pairs, "spatial")
        self.rng = np.random.default_rng(0)
        self.device = device

    def draw(self, size: int) -> dict[str, torch.Tensor]:
        batch = self.ds.__getitems__(self.rng.choice(len(self.ds), size, replace=False).tolist())
        return {k: batch[k].to(self.device, non_blocking=True) for k in ORACLE_KEYS}


class ResidentBatches:
    """Random training batches drawn on ``device`` from images held there: a pair uniformly
    without replacement, its anchor uniformly among the surveys, the other surveys' images as
    its physics views. The same distribution as :class:`DatasetBatches` for a sky where every
    survey sees every pair (checked), at the cost of two gathers per batch."""

    def __init__(self, layout: DatasetLayout, pairs: np.ndarray, device: torch.device, seed: int = 0) -> None:
        seen = seen_rows(layout, SURVEY_ORDER)[pairs]
        if not seen.all():
            raise ValueError(f"{layout.root}: --resident needs every training pair seen by every survey")
        self.images = torch.stack(
            [torch.from_numpy(np.load(layout.images(s), mmap_mode="r")[pairs].astype(np.float32)) for s in SURVEY_ORDER]
        ).to(device)  # (surveys, pairs, C, H, W)
        self.pairs = torch.as_tensor(pairs, device=device)
        n = len(SURVEY_ORDER)
        # Row a: the surveys other than a, in order (the physics views of an anchor in a).
        self.others = torch.tensor([[o for o in range(n) if o != a] for a in range(n)], device=device)
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.device = device

    def draw(self, size: int) -> dict[str, torch.Tensor]:
        n_surveys, n = self.images.shape[:2]
        j = torch.randperm(n, generator=self.gen, device=self.device)[:size]
        a = torch.randint(n_surveys, (size,), generator=self.gen, device=self.device)
        o = self.others[a]  # (size, surveys - 1)
        return {
            "target": self.images[a, j],
            "physics": self.images[o, j[:, None]],
            "physics_mask": torch.ones(o.shape, dtype=torch.bool, device=self.device),
            "anchor": a,
            "pair": self.pairs[j],
        }


def trainable(cond: OracleConditioning) -> list[nn.Parameter]:
    """What the oracle trains: the model without its (unused) instrument encoder, and the MLP."""
    net = [p for n, p in cond.net.named_parameters() if not n.startswith("instrument_encoder")]
    return [*net, *cond.mlp.parameters()]


def train_step(
    cond: OracleConditioning, batch: dict[str, torch.Tensor], opt: torch.optim.Optimizer, device: torch.device
) -> torch.Tensor:
    """One optimiser step on the flow-matching loss of ``batch`` (bf16 autocast on a GPU); its loss."""
    with cuda_bf16(device):
        loss, _ = cond.net.loss(batch["target"], cond(batch))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def train_oracle(
    cfg: dict, cond: OracleConditioning, batches: DatasetBatches | ResidentBatches, steps: int, batch_size: int
) -> None:
    """The configured optimiser and schedule over ``steps`` steps of ``batch_size``, in bf16
    autocast on a GPU (whatsreal.device.cuda_bf16)."""
    net = cond.net
    device = next(net.parameters()).device
    opt_cfg = adamw_cosine(trainable(cond), {**cfg["train"], "max_steps": steps})
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    t0 = time.time()
    net.train()
    for step in range(steps):
        loss = train_step(cond, batches.draw(batch_size), opt, device)
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    net.eval()


def steps_for(
    seconds: float, cond: OracleConditioning, batches, batch_size: int, cfg: dict, probe: int = 30, warmup: int = 10
) -> int:
    """The number of steps that fit in ``seconds``: the rate timed on up to ``probe`` steps of
    a throwaway copy, after up to ``warmup`` untimed ones, rounded down to a multiple of 100
    from 100 steps on, and at least one: a budget is trained for about that long. Each phase
    also stops once it has used a twentieth of the budget (after at least one warm-up and
    three timed steps), so sizing a budget costs at most about a tenth of it: on a 2-core CPU
    at 0.7 steps/s, the test suite's one second was sized by 60 s of steps."""
    trial = copy.deepcopy(cond)
    device = next(trial.parameters()).device
    opt = torch.optim.AdamW(trainable(trial), lr=cfg["train"]["lr"])
    trial.net.train()

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # The phases stop on the host's clock, without a sync per step: on a GPU the queued steps
    # then overrun the share a little, and the rate itself is timed between two syncs as before.
    share = seconds / 20
    t0 = time.perf_counter()
    for _ in range(warmup):
        train_step(trial, batches.draw(batch_size), opt, device)
        if time.perf_counter() - t0 > share:
            break
    synchronize()
    t0 = time.perf_counter()
    for timed in range(1, probe + 1):
        train_step(trial, batches.draw(batch_size), opt, device)
        if timed >= 3 and time.perf_counter() - t0 > share:
            break
    synchronize()
    rate = timed / (time.perf_counter() - t0)
    fit = int(rate * seconds)
    steps = fit // 100 * 100 if fit >= 100 else max(1, fit)
    print(f"{rate:.2f} steps/s at batch {batch_size} on {device}: {steps} steps for {seconds:.0f} s", flush=True)
    return steps


@torch.no_grad()
def all_pair_swaps(
    net: FlowMatchingModel, condition, layout: DatasetLayout, draws: int, partners: int | None = None
) -> pd.DataFrame:
    """Every held-out pair given every other one's instrument half (or, with ``partners``, that
    many others: the next ones in the pair order), per anchor survey, on ``draws`` shared (x0, t)
    draws: rows of :data:`SWAP_COLUMNS`."""
    pairs = val_pairs(layout.split, usable=usable_pairs(layout.root, SURVEY_ORDER))
    n = pairs.size
    rows = []
    device = next(net.parameters()).device
    for a, survey in enumerate(SURVEY_ORDER):
        ds = TripletDataset(layout.root, pairs, "spatial", anchors=np.full(n, a))
        batch = {k: v.to(device) for k, v in ds.__getitems__(list(range(n))).items()}
        cond, x1 = condition(batch), batch["target"]
        gen = torch.Generator().manual_seed(11 + a)  # on the CPU: the same draws on any device
        for d in range(draws):
            x0 = torch.randn(x1.shape, generator=gen).to(device)
            t = net.sample_time(n, gen).to(device)
            _, base = net.loss(x1, cond, x0=x0, t=t)
            for k in range(1, n if partners is None else min(n, partners + 1)):
                perm = torch.roll(torch.arange(n), -k)
                _, swapped = net.loss(x1, cond.with_half_from("instrument", perm.to(device)), x0=x0, t=t)
                rows.append(
                    pd.DataFrame(
                        {
                            "survey": survey,
                            "half": "instrument",
                            "draw": d,
                            "pair": pairs,
                            "partner": pairs[perm.numpy()],
                            "t": t.double().cpu().numpy(),
                            "gain": (swapped - base).double().cpu().numpy(),
                        }
                    )
                )
        print(f"{survey}: true-conditioning loss {float(base.mean()):.4f} (last draw)", flush=True)
    return pd.concat(rows, ignore_index=True)[list(SWAP_COLUMNS)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / "results" / "sim", help="a dataset's results directory")
    ap.add_argument("--config", nargs="+", default=[str(REPO / "config" / "config.yaml")])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seconds", type=float, help="train for the steps that fit in this many seconds instead")
    ap.add_argument("--batch-size", type=int, help="training batch (default: the config's train.batch_size)")
    ap.add_argument("--device", help="cpu or cuda (default: CUDA when there is one)")
    ap.add_argument(
        "--resident",
        action=argparse.BooleanOptionalAction,
        help="draw training batches from device-resident images (default: on a GPU only)",
    )
    ap.add_argument("--features", choices=sorted(FEATURES), default="both")
    ap.add_argument("--draws", type=int, default=4)
    ap.add_argument("--partners", type=int, help="score each anchor against this many others, not all (a quick check)")
    ap.add_argument(
        "--t-bins",
        type=int,
        default=4,
        help="also fit the slopes within this many equal-count bins of flow time t (1: no split)",
    )
    ap.add_argument(
        "--floor",
        type=int,
        default=0,
        metavar="STAMPS",
        help="also score the model on this many held-out stamps per survey at fixed t against the loss of a "
        "decoder that knows the scene (whatsreal.experiments.condition_value; 0: not)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: two oracles side by side)")
    ap.add_argument("--save", type=Path, help="write the trained oracle model here")
    ap.add_argument("--load", type=Path, help="score an oracle model saved with --save instead of training")
    ap.add_argument("--model", type=Path, help="score this trained run's model.ckpt (its own encoders) instead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = effective_config(args.config)
    layout = DatasetLayout(args.data)
    truth = pd.read_parquet(layout.truth)
    device = torch.device(args.device) if args.device else compute_device()
    if args.model is not None:
        net, _ = load_trained_model(args.model, cfg)
        net.to(device).eval()
        condition = net.condition_batch
        print(f"scoring {args.model}")
    else:
        torch.manual_seed(0)
        net = build_model(cfg)
        enc = cfg["model"]["encoder"]
        features = oracle_features(layout, truth, FEATURES[args.features], cfg["preprocess"]["bands"])
        condition = OracleConditioning(net, features, enc["tokens"], enc["token_dim"]).to(device)
        if args.load is not None:
            condition.load_state_dict(torch.load(args.load, map_location=device))
            net.eval()
        else:
            pairs = training_pairs(layout)
            resident = device.type == "cuda" if args.resident is None else args.resident
            batches = (ResidentBatches if resident else DatasetBatches)(layout, pairs, device)
            size = args.batch_size or cfg["train"]["batch_size"]
            steps = args.steps if args.seconds is None else steps_for(args.seconds, condition, batches, size, cfg)
            start = time.perf_counter()
            train_oracle(cfg, condition, batches, steps, size)
            print(
                f"trained {steps} steps of batch {size} on {device} in {time.perf_counter() - start:.0f} s "
                f"({'device-resident' if resident else 'dataset'} batches)",
                flush=True,
            )
            if args.save is not None:
                torch.save(condition.state_dict(), args.save)
        print(f"oracle tokens from the true {' and '.join(FEATURES[args.features])}")
    swaps = all_pair_swaps(net, condition, layout, args.draws, args.partners)
    diffs = swap_differences(swaps, truth, truth_ids_by_row(layout, SURVEY_ORDER), cfg["preprocess"]["bands"])
    bootstrap = bootstrap_config(cfg)
    table = sensitivity_table(diffs, *bootstrap)
    for r in table.itertuples():
        print(
            f"{r.survey:13s} {r.property:14s} gain per sd of mismatch {r.slope:+.4f} [{r.ci_lo:+.4f}, {r.ci_hi:+.4f}]"
            f"  (mean swap gain {r.mean_gain:.4f}, {r.n_swaps} swaps of {r.n_pairs} anchors)"
        )
    if args.floor > 0:
        stamps = held_out_stamps(layout, cfg, args.floor, 16, 0)
        print("loss at fixed t on held-out stamps, against a decoder that knows the scene:")
        print("\n".join(floor_lines(floor_table(net, condition, layout, stamps, FLOOR_TIMES, args.draws, 0))))
    if args.t_bins > 1:
        print("by flow time t (0: noise, 1: image):")
        for r in sensitivity_by_time(diffs, args.t_bins, *bootstrap).itertuples():
            print(
                f"t {r.t_lo:.2f}-{r.t_hi:.2f} {r.survey:13s} {r.property:14s} {r.slope:+.4f} [{r.ci_lo:+.4f}, "
                f"{r.ci_hi:+.4f}]  (mean swap gain {r.mean_gain:.4f}, {r.n_swaps} swaps)"
            )


if __name__ == "__main__":
    main()
