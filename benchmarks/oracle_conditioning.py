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
and |PSF FWHM| mismatch, 95 % interval by bootstrap over anchors. ``--model`` scores a trained
run's model (its own instrument encoder) on exactly the same swaps, for comparison.

A PSF slope at 0 for the oracle says that, at this budget, the loss does not reward knowing the
PSF even when it is given: no encoder trained by it can be expected to read the PSF.

Usage: python benchmarks/oracle_conditioning.py --data results/sim [--config config/config.yaml ...]
       [--steps 1500] [--features both|fwhm|sigma] [--draws 4] [--save oracle.pt | --load oracle.pt]
       python benchmarks/oracle_conditioning.py --data results/sim --model results/sim/runs/main/model.ckpt
Cost: the demo model's steps (0.6-1.1 s each on 2 cores) plus 2 x 56 x draws loss evaluations of
57 pairs (a few minutes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from whatsreal.config import effective_config
from whatsreal.data.triplets import TripletDataset
from whatsreal.data.usable import usable_pairs
from whatsreal.experiments.bootstrap import bootstrap_config
from whatsreal.experiments.conditioning_gain import SWAP_COLUMNS, truth_ids_by_row, val_pairs
from whatsreal.experiments.conditioning_sensitivity import sensitivity_table, swap_differences
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
        self.features = features
        self.tokens, self.token_dim = tokens, token_dim
        width = next(iter(features.values())).shape[1] + len(features)
        out = tokens * token_dim
        self.mlp = nn.Sequential(nn.Linear(width, ORACLE_HIDDEN), nn.GELU(), nn.Linear(ORACLE_HIDDEN, out))

    def __call__(self, batch: dict[str, torch.Tensor]) -> Conditioning:
        a, p = batch["anchor"], batch["pair"]
        x = torch.stack([self.features[int(ai)][int(pi)] for ai, pi in zip(a, p, strict=True)])
        x = torch.cat([x, nn.functional.one_hot(a, len(self.features)).float()], 1)
        b = x.shape[0]
        pt, pm = self.net.encode_views(self.net.physics_encoder, batch["physics"], batch["physics_mask"])
        it = self.mlp(x).view(b, self.tokens, self.token_dim)
        im = torch.ones(b, self.tokens, dtype=torch.bool)
        return Conditioning(torch.cat([pt, it], 1), torch.cat([pm, im], 1), n_physics=pt.shape[1])


def train_oracle(cfg: dict, layout: DatasetLayout, cond: OracleConditioning, steps: int) -> None:
    """The configured optimiser and schedule over ``steps`` steps of random training batches."""
    net = cond.net
    split = pd.read_parquet(layout.split, columns=["pair", "split"])
    ok = usable_pairs(layout.root, SURVEY_ORDER)
    train = np.sort(split.loc[split["split"] == "train", "pair"].to_numpy())
    train = train[ok[train]]
    ds = TripletDataset(layout.root, train, "spatial")
    params = [p for n, p in net.named_parameters() if not n.startswith("instrument_encoder")]
    opt_cfg = adamw_cosine([*params, *cond.mlp.parameters()], {**cfg["train"], "max_steps": steps})
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    rng = np.random.default_rng(0)
    t0 = time.time()
    net.train()
    for step in range(steps):
        batch = ds.__getitems__(rng.choice(len(train), cfg["train"]["batch_size"], replace=False).tolist())
        loss, _ = net.loss(batch["target"], cond(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    net.eval()


@torch.no_grad()
def all_pair_swaps(net: FlowMatchingModel, condition, layout: DatasetLayout, draws: int) -> pd.DataFrame:
    """Every held-out pair given every other one's instrument half, per anchor survey, on
    ``draws`` shared (x0, t) draws: rows of :data:`SWAP_COLUMNS`."""
    pairs = val_pairs(layout.split, usable=usable_pairs(layout.root, SURVEY_ORDER))
    n = pairs.size
    rows = []
    for a, survey in enumerate(SURVEY_ORDER):
        ds = TripletDataset(layout.root, pairs, "spatial", anchors=np.full(n, a))
        batch = ds.__getitems__(list(range(n)))
        cond, x1 = condition(batch), batch["target"]
        gen = torch.Generator().manual_seed(11 + a)
        for d in range(draws):
            x0 = torch.randn(x1.shape, generator=gen)
            t = net.sample_time(n, gen)
            _, base = net.loss(x1, cond, x0=x0, t=t)
            for k in range(1, n):
                perm = torch.roll(torch.arange(n), -k)
                _, swapped = net.loss(x1, cond.with_half_from("instrument", perm), x0=x0, t=t)
                rows.append(
                    pd.DataFrame(
                        {
                            "survey": survey,
                            "half": "instrument",
                            "draw": d,
                            "pair": pairs,
                            "partner": pairs[perm.numpy()],
                            "gain": (swapped - base).double().numpy(),
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
    ap.add_argument("--features", choices=sorted(FEATURES), default="both")
    ap.add_argument("--draws", type=int, default=4)
    ap.add_argument("--save", type=Path, help="write the trained oracle model here")
    ap.add_argument("--load", type=Path, help="score an oracle model saved with --save instead of training")
    ap.add_argument("--model", type=Path, help="score this trained run's model.ckpt (its own encoders) instead")
    args = ap.parse_args()
    torch.set_num_threads(1)

    cfg = effective_config(args.config)
    layout = DatasetLayout(args.data)
    truth = pd.read_parquet(layout.truth)
    if args.model is not None:
        net, _ = load_trained_model(args.model, cfg)
        net.eval()
        condition = net.condition_batch
        print(f"scoring {args.model}")
    else:
        torch.manual_seed(0)
        net = build_model(cfg)
        enc = cfg["model"]["encoder"]
        features = oracle_features(layout, truth, FEATURES[args.features], cfg["preprocess"]["bands"])
        condition = OracleConditioning(net, features, enc["tokens"], enc["token_dim"])
        if args.load is not None:
            condition.load_state_dict(torch.load(args.load))
            net.eval()
        else:
            train_oracle(cfg, layout, condition, args.steps)
            if args.save is not None:
                torch.save(condition.state_dict(), args.save)
        print(f"oracle tokens from the true {' and '.join(FEATURES[args.features])}")
    swaps = all_pair_swaps(net, condition, layout, args.draws)
    diffs = swap_differences(swaps, truth, truth_ids_by_row(layout, SURVEY_ORDER), cfg["preprocess"]["bands"])
    table = sensitivity_table(diffs, *bootstrap_config(cfg))
    for r in table.itertuples():
        print(
            f"{r.survey:13s} {r.property:14s} gain per sd of mismatch {r.slope:+.4f} [{r.ci_lo:+.4f}, {r.ci_hi:+.4f}]"
            f"  (mean swap gain {r.mean_gain:.4f}, {r.n_swaps} swaps of {r.n_pairs} anchors)"
        )


if __name__ == "__main__":
    main()
