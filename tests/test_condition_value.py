"""What knowing a condition is worth to the flow-matching loss (issue 10): the closed forms
against Monte Carlo of the Bayes predictors they describe, the PSF effect of a rendered stamp,
the table, and the benchmark script end to end on the finished tiny workflow."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from whatsreal.config import effective_config
from whatsreal.experiments.condition_value import (
    VALUE_COLUMNS,
    StampTerms,
    held_out_stamps,
    known_scene_loss,
    losses_at_times,
    mismatch_costs,
    stamp_terms,
    time_density,
    value_table,
    values_of_knowing,
)
from whatsreal.layout import DatasetLayout
from whatsreal.sim.render import ObjectSpec
from whatsreal.surveys import Survey

from .conftest import REPO, run_script


def toy_terms(pixels: int = 64, sd_log_sigma: float = 0.2, seed: int = 0) -> StampTerms:
    rng = np.random.default_rng(seed)
    sp = rng.uniform(0.1, 0.5, pixels)
    d = 0.1 * rng.standard_normal(pixels)
    return StampTerms(sp, sp * np.exp(sd_log_sigma), d, sd_log_sigma)


def k_of(t: float, sp: np.ndarray) -> np.ndarray:
    return (t * sp**2 - (1 - t)) / (t * t * sp**2 + (1 - t) ** 2)


@pytest.mark.parametrize("t", [0.3, 0.8, 0.95])
def test_mismatch_costs_are_what_a_wrongly_told_bayes_predictor_loses(t):
    terms = toy_terms()
    rng = np.random.default_rng(1)
    n = terms.sp * rng.standard_normal((20000, terms.sp.size))
    x0 = rng.standard_normal(n.shape)
    s = np.zeros(terms.sp.size)  # the scene's value drops out of every error
    x_t = t * (s + n) + (1 - t) * x0
    v = s + n - x0
    k = k_of(t, terms.sp)
    right = (s + k * (x_t - t * s) - v) ** 2
    wrong_noise = (s + k_of(t, terms.sp_alt) * (x_t - t * s) - v) ** 2
    s_told = s + terms.d
    wrong_scene = (s_told + k * (x_t - t * s_told) - v) ** 2
    noise, psf = mismatch_costs(t, terms)
    assert right.mean() == pytest.approx(known_scene_loss(t, terms), rel=0.02)
    assert (wrong_noise - right).mean() == pytest.approx(noise, rel=0.05)
    assert (wrong_scene - right).mean() == pytest.approx(psf, rel=0.05)
    assert noise > 0 and psf > 0


@pytest.mark.parametrize("t", [0.2, 0.6, 0.9])
def test_the_value_of_knowing_the_psf_is_what_the_posterior_mean_predictor_loses(t):
    """The PSF as a ~ N(0, 1) along d: told a, the predictor is exact; not told, it uses E[a | x_t]."""
    terms = toy_terms(pixels=32)
    rng = np.random.default_rng(2)
    draws = 40000
    a = rng.standard_normal((draws, 1))
    n = terms.sp * rng.standard_normal((draws, terms.sp.size))
    x0 = rng.standard_normal(n.shape)
    s = a * terms.d
    x_t = t * (s + n) + (1 - t) * x0
    v = s + n - x0
    var = t * t * terms.sp**2 + (1 - t) ** 2
    k = k_of(t, terms.sp)
    a_hat = (t * (terms.d * x_t / var).sum(1, keepdims=True)) / (1 + t * t * (terms.d**2 / var).sum())
    told = (s + k * (x_t - t * s) - v) ** 2
    s_hat = a_hat * terms.d
    untold = (s_hat + k * (x_t - t * s_hat) - v) ** 2
    _, psf = values_of_knowing(t, terms)
    assert (untold - told).mean() == pytest.approx(psf, rel=0.05)


def test_the_value_of_knowing_the_noise_is_what_the_posterior_predictor_loses():
    """log sigma ~ N(0, sd^2) times a known per-pixel pattern; not told, the predictor averages k
    over the posterior of log sigma (on a grid). The delta method holds for a narrow prior."""
    t, sd = 0.85, 0.1
    terms = toy_terms(pixels=24, sd_log_sigma=sd)
    rng = np.random.default_rng(3)
    draws = 20000
    grid = np.linspace(-5 * sd, 5 * sd, 401)
    log_s = sd * rng.standard_normal((draws, 1))
    sp = terms.sp * np.exp(log_s)
    n = sp * rng.standard_normal((draws, terms.sp.size))
    x0 = rng.standard_normal(n.shape)
    x_t = t * n + (1 - t) * x0  # the scene known (0): r = x_t
    v = n - x0
    told = (k_of(t, sp) * x_t - v) ** 2
    sp_grid = terms.sp[None, :] * np.exp(grid)[:, None]  # (grid, pixels)
    var_grid = t * t * sp_grid**2 + (1 - t) ** 2
    loglik = -0.5 * (x_t[:, None, :] ** 2 / var_grid[None] + np.log(var_grid)[None]).sum(2) - 0.5 * (grid / sd) ** 2
    post = np.exp(loglik - loglik.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    k_hat = post @ k_of(t, sp_grid)  # (draws, pixels)
    untold = (k_hat * x_t - v) ** 2
    noise, _ = values_of_knowing(t, terms)
    assert (untold - told).mean() == pytest.approx(noise, rel=0.15)
    # More pixels: the noise level is read off x_t better and is worth less to be told.
    more, _ = values_of_knowing(t, StampTerms(*(np.tile(x, 8) for x in (terms.sp, terms.sp_alt, terms.d)), sd))
    assert 0 < more < noise / 2


def test_nothing_is_worth_knowing_where_x_t_is_the_image_or_tells_nothing():
    terms = toy_terms()
    noise_1, psf_1 = values_of_knowing(1 - 1e-9, terms)
    assert noise_1 == pytest.approx(0, abs=1e-9) and psf_1 == pytest.approx(0, abs=1e-9)
    noise_0, psf_0 = values_of_knowing(0.0, terms)
    assert noise_0 == 0  # at t = 0 the noise level does not change the predictor
    assert psf_0 == pytest.approx(float((terms.d**2).mean()))  # the whole prior's worth of scene


class RecordingNet:
    """A stand-in model whose per-sample loss is t plus the mean of its x0 draw; it keeps the
    draws it was given."""

    def __init__(self) -> None:
        self.x0s: list[torch.Tensor] = []

    def loss(self, x1, cond, x0, t):
        self.x0s.append(x0)
        per = t + x0.flatten(1).mean(1)
        return per.mean(), per


def test_losses_at_times_holds_t_fixed_and_shares_the_x0_draws_across_times():
    net = RecordingNet()
    x1 = torch.zeros(3, 2, 4, 4)
    out = losses_at_times(net, None, x1, [0.2, 0.9], draws=2, seed=0)
    assert out.shape == (2, 3)
    assert len(net.x0s) == 4 and torch.equal(net.x0s[0], net.x0s[2]) and torch.equal(net.x0s[1], net.x0s[3])
    mean_x0 = ((net.x0s[0] + net.x0s[1]) / 2).flatten(1).mean(1).double().numpy()
    assert np.allclose(out, np.array([[0.2], [0.9]]) + mean_x0, atol=1e-6)


def test_the_table_bins_the_training_t_and_weights_the_all_t_row_by_it():
    ts = {"distribution": "logit_normal", "loc": 1.0, "scale": 1.0}
    grid = np.linspace(1e-4, 1 - 1e-4, 200001)
    assert np.trapezoid(time_density(grid, ts), grid) == pytest.approx(1, abs=1e-3)
    terms = {"hsc": [toy_terms(seed=0), toy_terms(seed=1)], "legacysurvey": [toy_terms(seed=2)]}
    table = value_table(terms, ts, 4)
    assert list(table.columns) == VALUE_COLUMNS
    assert len(table) == 2 * 5 * 2  # surveys x (all t + 4 bins) x conditions
    assert (table[["mismatch_cost", "value_of_knowing"]] > 0).all().all()
    hsc = table[(table.survey == "hsc") & (table.condition == "PSF FWHM")]
    bins = hsc[hsc.t_lo + hsc.t_hi != 1.0]
    assert bins.t_lo.iloc[0] == 0 and bins.t_hi.iloc[-1] == pytest.approx(1)
    assert bins.t_hi.iloc[1] == pytest.approx(1 / (1 + np.exp(-1.0)))  # the median of the logit-normal
    # Equal-probability bins: the all-t row is (close to) the mean of the bins' rows.
    assert hsc[hsc.t_lo + hsc.t_hi == 1.0].mismatch_cost.iloc[0] == pytest.approx(bins.mismatch_cost.mean(), rel=0.02)
    assert set(table.n_stamps) == {2, 1}
    with pytest.raises(ValueError, match="legacysurvey: no stamps"):
        value_table({"legacysurvey": []}, ts, 4)
    with pytest.raises(ValueError, match="bins must be at least 1"):
        value_table(terms, ts, 0)


def test_a_wider_psf_takes_light_from_the_rendered_galaxy_s_core():
    cfg = effective_config([str(REPO / "config" / "config.yaml")])
    entry = Survey.from_entry("hsc", cfg["surveys"]["hsc"])
    spec = ObjectSpec(
        seed=(1, 2, 3),
        mags=(21.0, 20.5, 20.2, 20.0, 19.9),
        galaxy_class="normal",
        half_light_radius=0.5,
        sersic_n=2.0,
        e1=0.0,
        e2=0.0,
        offset_arcsec=(0.0, 0.0),
        psf_fwhm=(0.7, 0.7, 0.6, 0.6, 0.6),
        psf_g=(0.0, 0.0),
        sky_sigma=(0.02, 0.03, 0.04, 0.05, 0.06),
    )
    sim = cfg["simulation"]
    norm = {"norm_mean": 0.0, "norm_std": 0.1}
    args = (entry, sim["cutout_size"], sim["surveys"]["hsc"]["psf_beta"], cfg["preprocess"], norm)
    terms = stamp_terms(spec, *args, 0.1, 0.2, np.random.default_rng(0), noise_draws=8)
    size = cfg["preprocess"]["size"]
    assert terms.d.shape == terms.sp.shape == (len(cfg["preprocess"]["bands"]), size, size)
    c = size // 2
    assert (terms.d[:, c - 1 : c + 1, c - 1 : c + 1] < 0).all()  # the core dims
    assert np.abs(terms.d[:, :4, :4]).max() < 1e-2 * np.abs(terms.d).max()  # the corners do not move
    corner = (terms.sp_alt / terms.sp)[:, :6, :6]  # background: the stretch is linear there
    assert np.median(corner) == pytest.approx(np.exp(0.2), rel=0.1)
    same = stamp_terms(spec, *args, 0.0, 0.2, np.random.default_rng(0), noise_draws=8)
    assert not same.d.any()
    with pytest.raises(ValueError, match="noise_draws must be at least 2"):
        stamp_terms(spec, *args, 0.1, 0.2, np.random.default_rng(0), noise_draws=1)


@pytest.mark.slow  # reads the finished tiny workflow (session fixture)
def test_the_script_tables_both_surveys_of_a_finished_workflow(finished_tiny_run, tmp_path):
    workdir, cfg, _ = finished_tiny_run
    out = tmp_path / "value.csv"
    cmd = [
        str(REPO / "benchmarks" / "condition_value.py"),
        "--data",
        str(workdir / "results" / "tiny"),
        "--config",  # the workflow's own config alone: the model is checked against it
        str(cfg),
        "--stamps",
        "3",
        "--noise-draws",
        "2",
        "--bins",
        "2",
        "--out",
        str(out),
        "--model",
        str(workdir / "results" / "tiny" / "runs" / "main" / "model.ckpt"),
        "--times",
        "0.5",
        "0.9",
        "--draws",
        "1",
    ]
    res = run_script(*cmd)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    # The ablated run's overlay changes a model key: its checkpoint is refused, naming the key,
    # unless --run applies the overlay as the workflow's jobs do.
    ablated = workdir / "results" / "tiny" / "runs" / "random_neighbours" / "model.ckpt"
    fewer = [*cmd[: cmd.index("--out")], "--model", ablated, "--times", "0.9", "--draws", "1"]
    refused = run_script(*fewer)
    assert refused.returncode == 1 and "model.unet.attention_head_dim" in refused.stderr, refused.stderr[-2000:]
    ran = run_script(*fewer, "--run", "random_neighbours")
    assert ran.returncode == 0 and "random_neighbours/model.ckpt: loss on the same" in ran.stdout, ran.stderr[-2000:]
    assert re.search(r"^legacysurvey\s+t 0\.90: loss \d", ran.stdout, re.M), ran.stdout
    table = pd.read_csv(out)
    assert list(table.columns) == VALUE_COLUMNS
    assert set(table.survey) == {"hsc", "legacysurvey"} and set(table.n_stamps) == {3}
    scored = re.findall(r"^(hsc|legacysurvey)\s+t (\S+): loss \d\S*, known-scene floor \d", res.stdout, re.M)
    assert sorted(scored) == [("hsc", "0.50"), ("hsc", "0.90"), ("legacysurvey", "0.50"), ("legacysurvey", "0.90")]
    assert len(table) == 2 * 3 * 2
    assert (table.value_of_knowing > 0).all()
    assert "PSF/noise" in res.stdout


def test_held_out_stamps_refuse_a_sky_without_truth_and_an_empty_choice(tmp_path):
    cfg = effective_config([str(REPO / "config" / "config.yaml")])
    layout = DatasetLayout(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"truth\.parquet: no truth table"):
        held_out_stamps(layout, cfg, 3, 2, 0)
    with pytest.raises(ValueError, match="stamps must be at least 1"):
        held_out_stamps(layout, cfg, 0, 2, 0)
