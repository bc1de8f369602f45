"""The conditioning gain: swaps of one conditioning half, the gain on toys, the training log and the rule's table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from whatsreal.config import run_config
from whatsreal.experiments.conditioning_gain import (
    gain_table,
    measure_gains,
    partner_batches,
    run_conditioning_gain,
    val_pairs,
)
from whatsreal.model.checkpoint import load_trained_model
from whatsreal.model.conditioning_gain import conditioning_gains, derangement_within_groups
from whatsreal.model.flow import Conditioning, build_model
from whatsreal.train.run import train

from .conftest import SCHEMA, tiny_model_config


class OracleDecoder:
    """A decoder whose velocity is exact when its ``informative`` half names the anchor.

    Sample i's anchor is a constant image of value ``c_i``; the first token of the
    informative half carries ``c_i`` (the other half carries unrelated numbers). The
    velocity is the straight-line one towards that value: zero error with the true
    conditioning, an error that grows with |c_i - c_partner| with a swapped one."""

    def __init__(self, informative: str) -> None:
        self.informative = informative

    def sample_time(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.rand((n,), generator=generator) * 0.9

    def loss(self, x1, cond, x0, t):
        c = cond.tokens[:, cond.halves()[self.informative].start, 0]
        tt = t[:, None, None, None]
        x_t = (1 - tt) * x0 + tt * x1
        guess = c[:, None, None, None].expand_as(x1)
        x0_hat = (x_t - tt * guess) / (1 - tt)
        per = ((guess - x0_hat) - (x1 - x0)).pow(2).flatten(1).mean(1)
        return per.mean(), per


def _toy(b: int = 24, seed: int = 0) -> tuple[torch.Tensor, Conditioning, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    c = torch.randn(b, generator=gen)
    x1 = c[:, None, None, None].expand(b, 2, 6, 6).clone()
    phys = torch.randn(b, 4, 3, generator=gen)
    inst = torch.randn(b, 10, 3, generator=gen)
    phys[:, 0, 0] = c  # only the physics half names the anchor
    mask = torch.ones(b, 14, dtype=torch.bool)
    mask[::3, 10:] = False  # some padded neighbours
    groups = torch.arange(b) % 2
    return x1, Conditioning(torch.cat([phys, inst], 1), mask, n_physics=4), groups


def test_derangement_keeps_groups_and_moves_everyone():
    groups = torch.tensor([0, 1, 0, 0, 1, 2, 1, 0])
    for seed in range(20):
        perm = derangement_within_groups(groups, torch.Generator().manual_seed(seed))
        assert sorted(perm.tolist()) == list(range(8)), "a permutation"
        assert torch.equal(groups[perm], groups), "partners come from the same anchor survey"
        moved = perm != torch.arange(8)
        assert moved[groups != 2].all() and not moved[5], "only the singleton group keeps itself"


def test_swapping_one_half_keeps_the_other_half_and_moves_the_mask():
    _, cond, groups = _toy()
    perm = derangement_within_groups(groups, torch.Generator().manual_seed(3))
    inst = cond.with_half_from("instrument", perm)
    assert torch.equal(inst.tokens[:, :4], cond.tokens[:, :4])
    assert torch.equal(inst.tokens[:, 4:], cond.tokens[perm, 4:])
    assert torch.equal(inst.mask[:, 4:], cond.mask[perm, 4:])
    phys = cond.with_half_from("physics", perm)
    assert torch.equal(phys.tokens[:, 4:], cond.tokens[:, 4:])
    assert torch.equal(phys.tokens[:, :4], cond.tokens[perm, :4])


def test_gain_is_positive_only_for_the_half_that_carries_information():
    x1, cond, groups = _toy()
    gains = conditioning_gains(OracleDecoder("physics"), x1, cond, groups, torch.Generator().manual_seed(0), draws=4)
    assert gains["physics"].mean() > 0.5
    assert (gains["physics"] > 0).all()
    assert gains["instrument"].abs().max() < 1e-9, "the ignored half changes nothing"
    # and the other way round, with the informative token moved into the instrument half
    tokens = cond.tokens.clone()
    tokens[:, 4, 0] = tokens[:, 0, 0]
    tokens[:, 0, 0] = torch.randn(len(tokens))
    flipped = Conditioning(tokens, torch.ones_like(cond.mask), n_physics=4)
    gains = conditioning_gains(OracleDecoder("instrument"), x1, flipped, groups, torch.Generator().manual_seed(1))
    assert gains["instrument"].mean() > 0.5 and gains["physics"].abs().max() < 1e-9


def test_a_sample_without_partner_has_no_gain():
    x1, cond, _ = _toy(b=5)
    groups = torch.tensor([0, 0, 0, 0, 1])
    gains = conditioning_gains(OracleDecoder("physics"), x1, cond, groups)
    assert torch.isnan(gains["physics"][4]) and torch.isfinite(gains["physics"][:4]).all()


def test_global_conditioning_model_reads_the_pooled_tokens():
    cfg = tiny_model_config()
    cfg["model"]["unet"]["global_conditioning"] = True
    model = build_model(cfg).eval()
    b, size = 2, cfg["preprocess"]["size"]
    x = torch.randn(b, 4, size, size)
    cond = model.condition(
        torch.randn(b, 1, 4, size, size),
        torch.ones(b, 1, dtype=torch.bool),
        torch.randn(b, 3, 4, size, size),
        torch.tensor([[True, True, False], [True, False, False]]),
    )
    assert cond.pooled().shape == (b, 32)
    with torch.no_grad():
        v1 = model.velocity(x, torch.full((b,), 0.5), cond)
        # a padded neighbour's tokens must not matter, the real ones must
        padded = Conditioning(cond.tokens.clone(), cond.mask, cond.n_physics)
        padded.tokens[1, -4:] += 5.0
        v2 = model.velocity(x, torch.full((b,), 0.5), padded)
        real = Conditioning(cond.tokens.clone(), cond.mask, cond.n_physics)
        real.tokens[1, 4:8] += 5.0
        v3 = model.velocity(x, torch.full((b,), 0.5), real)
    assert torch.allclose(v1, v2, atol=1e-5)
    assert not torch.allclose(v1[1], v3[1], atol=1e-3)


def test_logit_normal_time_sampling_moves_mass_towards_the_data():
    cfg = tiny_model_config()
    cfg["model"]["time_sampling"] = {"distribution": "logit_normal", "loc": 1.0, "scale": 1.0}
    t = build_model(cfg).sample_time(20000, torch.Generator().manual_seed(0))
    assert 0 < t.min() and t.max() < 1
    assert t.median() == pytest.approx(1 / (1 + np.exp(-1.0)), abs=0.01)


@pytest.mark.parametrize(("n", "batch_size"), [(5, 4), (9, 4), (8, 4), (3, 8), (2, 1)])
def test_partner_batches_hold_every_row_once_and_none_alone(n, batch_size):
    """A lone last row joins the batch before it, whatever the number of batches (it used to
    overwrite another batch, or fail, when there were two)."""
    chunks = partner_batches(n, batch_size, seed=3)
    np.testing.assert_array_equal(np.sort(np.concatenate(chunks)), np.arange(n))
    assert all(len(c) >= 2 for c in chunks)


def test_gain_table_interval_covers_the_mean():
    rng = np.random.default_rng(0)
    per_pair = {("hsc", "instrument"): rng.normal(0.02, 0.01, 300), ("hsc", "physics"): rng.normal(0.0, 0.01, 300)}
    df = gain_table(per_pair, {"hsc": 0.5}, draws=4, n_resamples=500, seed=0, confidence=0.95)
    inst = df[df["half"] == "instrument"].iloc[0]
    assert inst["ci_lo"] > 0.015 and inst["ci_hi"] < 0.025 and inst["ci_lo"] < inst["gain"] < inst["ci_hi"]
    phys = df[df["half"] == "physics"].iloc[0]
    assert phys["ci_lo"] < 0 < phys["ci_hi"]


@pytest.mark.slow  # trains the tiny model in-process (minutes on 2 shared cores)
def test_training_logs_gains_and_the_rule_writes_table_and_figure(tiny_sky, tiny_data, tmp_path):
    _, raw, _ = tiny_sky
    _, data = tiny_data
    cfg = run_config(tiny_model_config(), "main", SCHEMA)
    run = tmp_path / "run"
    train(cfg, data, run, run / "model.ckpt")
    metrics = pd.read_csv(run / "metrics.csv")
    for col in ("val/gain_instrument_hsc", "val/gain_physics_legacysurvey"):
        assert col in metrics and metrics[col].notna().sum() == 2, "one value per validation"
    cfg["experiments"]["conditioning_gain"]["draws"] = 2
    df = run_conditioning_gain(
        cfg,
        run / "model.ckpt",
        data,
        run / "metrics.csv",
        tmp_path / "gain.png",
        tmp_path / "gain.csv",
        truth=raw / "truth.parquet",
        sensitivity=tmp_path / "sensitivity.csv",
    )
    assert set(zip(df["survey"], df["half"], strict=True)) == {
        (s, h) for s in ("hsc", "legacysurvey") for h in ("instrument", "physics")
    }
    assert (df["ci_lo"] <= df["gain"]).all() and (df["gain"] <= df["ci_hi"]).all()
    assert (tmp_path / "gain.png").stat().st_size > 10_000
    assert pd.read_csv(tmp_path / "gain.csv").shape == df.shape
    sens = pd.read_csv(tmp_path / "sensitivity.csv")
    assert len(sens) == 8, "two surveys x two halves x two properties"
    assert (sens["n_swaps"] == 2 * sens["n_pairs"]).all(), "every scored pair, once per draw"
    assert sens["slope"].notna().all()

    # The swaps are the gains' raw material: their mean per pair is the pair's gain.
    net, _ = load_trained_model(run / "model.ckpt", cfg)
    pairs = val_pairs(data / "split.parquet")
    per_pair, _, swaps = measure_gains(net.eval(), data, pairs, draws=3, seed=5, batch_size=8)
    assert (swaps["pair"] != swaps["partner"]).all()
    for (survey, half), gains in per_pair.items():
        block = swaps[(swaps["survey"] == survey) & (swaps["half"] == half)]
        assert (block.groupby("pair")["draw"].nunique() == 3).all()
        means = block.groupby("pair")["gain"].mean().reindex(pairs)
        np.testing.assert_allclose(means.to_numpy(), gains, rtol=1e-9, atol=1e-12)

    # Real data: no truth, the table keeps its header and the figure its one row.
    paths = (run / "metrics.csv", tmp_path / "g2.png", tmp_path / "g2.csv")
    run_conditioning_gain(cfg, run / "model.ckpt", data, *paths, sensitivity=tmp_path / "s2.csv")
    empty = pd.read_csv(tmp_path / "s2.csv")
    assert empty.empty and list(empty.columns)[:3] == ["survey", "half", "property"]
