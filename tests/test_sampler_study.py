"""The sampler study (issue 17): candidates, the adaptive solver, the selection rule, and the
benchmark script end to end on the tiny sky."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from whatsreal.experiments.sampler_study import (
    STUDY_COLUMNS,
    Candidate,
    EvaluationLimitError,
    fastest_within,
    integrate_adaptive,
    parse_candidates,
    run_sampler_study,
)
from whatsreal.model.samplers import integrate
from whatsreal.surveys import SURVEY_ORDER

from .conftest import REPO, run_script, save_untrained_checkpoint, tiny_model_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class LinearFlow:
    """dx/dt = -(1 + t) x: x(1) = x0 exp(-1.5) exactly, a flow whose answer is known."""

    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        return -(1 + t) * x


def test_parse_candidates_reads_fixed_and_adaptive_specs():
    got = parse_candidates(["heun-10", "euler-250", "midpoint-3", "dopri5-1e-3"])
    assert got == [
        Candidate("heun", 10),
        Candidate("euler", 250),
        Candidate("midpoint", 3),
        Candidate("dopri5", rtol=1e-3),
    ]
    assert [c.name for c in got] == ["heun-10", "euler-250", "midpoint-3", "dopri5-0.001"]
    assert [c.fixed_nfe for c in got] == [20, 250, 6, None]


@pytest.mark.parametrize("spec", ["heun", "heun-0", "rk4-10", "heun-x", "dopri5-0", "dopri5-abc"])
def test_parse_candidates_names_a_bad_spec(spec):
    with pytest.raises(ValueError, match=re.escape(f"'{spec}'")):
        parse_candidates([spec])


def test_second_order_and_adaptive_solvers_converge_on_a_known_flow():
    x0 = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    exact = x0 * math.exp(-1.5)

    def err(x: torch.Tensor) -> float:
        return float((x - exact).abs().max())

    euler = err(integrate(LinearFlow(), x0, None, 8, "euler"))
    assert err(integrate(LinearFlow(), x0, None, 16, "euler")) > euler / 2.5  # first order: halving the step halves it
    for method in ("heun", "midpoint"):
        second = err(integrate(LinearFlow(), x0, None, 8, method))
        # Second order against first at the same step size, and halving the step quarters it.
        assert second < euler / 5, method
        assert err(integrate(LinearFlow(), x0, None, 16, method)) < second / 3, method
    x, nfe = integrate_adaptive(LinearFlow(), x0, None, rtol=1e-6)
    assert err(x) < 1e-4 and 6 <= nfe < 200
    loose, loose_nfe = integrate_adaptive(LinearFlow(), x0, None, rtol=1e-2)
    assert loose_nfe < nfe and err(loose) < 1e-2
    with pytest.raises(EvaluationLimitError, match="more than 3 evaluations"):
        integrate_adaptive(LinearFlow(), x0, None, rtol=1e-6, max_nfe=3)


def _table(rows: list[tuple[str, str, int, float, float, float]]) -> pd.DataFrame:
    """A study table from (direction, candidate, nfe, rel_mse_samples, rel_mse_posterior_mean, rel_z_std)."""
    return pd.DataFrame(
        [
            {
                "direction": d,
                "candidate": c,
                "nfe": n,
                "seconds": 1.0,
                "rel_mse_samples": a,
                "rel_mse_posterior_mean": b,
                "rel_z_std": z,
            }
            for d, c, n, a, b, z in rows
        ]
    )


def test_fastest_within_needs_every_metric_in_every_direction():
    rows = []
    for d in ("hsc", "legacysurvey"):
        rows += [(d, "euler-250", 250, 0.0, 0.0, 0.0), (d, "heun-10", 20, 0.001, -0.004, 0.01)]
    # heun-4 is within 2 % in HSC only; midpoint-5 fails the z std in Legacy only.
    rows += [("hsc", "heun-4", 8, 0.0, 0.0, 0.0), ("legacysurvey", "heun-4", 8, 0.0, 0.05, 0.0)]
    rows += [("hsc", "midpoint-5", 10, 0.0, 0.0, 0.0), ("legacysurvey", "midpoint-5", 10, 0.0, 0.0, -0.021)]
    # dopri5 is within 2 % but was only run in one direction.
    rows += [("hsc", "dopri5-0.01", 6, 0.0, 0.0, 0.0)]
    best = fastest_within(_table(rows), "euler-250", 0.02)
    assert best is not None and best.name == "heun-10"
    assert best["nfe"] == 20 and best["worst"] == pytest.approx(0.01)
    assert fastest_within(_table(rows), "euler-250", 0.005) is None
    assert fastest_within(_table(rows), "euler-250", 0.05).name == "heun-4"


def test_fastest_within_breaks_ties_by_the_smaller_difference():
    rows = [("hsc", "euler-250", 250, 0, 0, 0), ("hsc", "heun-5", 10, 0.015, 0, 0)]
    rows += [("hsc", "midpoint-5", 10, 0.004, 0, 0)]
    assert fastest_within(_table(rows), "euler-250").name == "midpoint-5"
    assert fastest_within(_table(rows[:1]), "euler-250") is None


def test_study_compares_every_candidate_with_the_reference_on_the_same_noise(tiny_data, tmp_path):
    from whatsreal.model.checkpoint import load_trained_model

    _, data = tiny_data
    net, _ = load_trained_model(save_untrained_checkpoint(tiny_model_config(), tmp_path))
    split = pd.read_parquet(data / "split.parquet")
    pairs = np.sort(split.loc[split["split"] == "val", "pair"].to_numpy())[:2]
    ref = Candidate("euler", 16)
    cands = [Candidate("heun", 8), ref, Candidate("euler", 2)]
    table = run_sampler_study(
        net, str(data), pairs, SURVEY_ORDER, SURVEY_ORDER, "spatial", 3, cands, ref, 0, torch.device("cpu")
    )
    assert list(table.columns) == list(STUDY_COLUMNS)
    # The reference once per direction, first; a candidate equal to it is not run twice.
    assert table["candidate"].tolist() == ["euler-16", "heun-8", "euler-2"] * 2
    assert table["nfe"].tolist() == [16, 16, 2] * 2
    refs = table[table["candidate"] == "euler-16"]
    assert (refs[["rel_mse_samples", "rel_mse_posterior_mean", "rel_z_std"]] == 0).all().all()
    assert np.isfinite(table[["mse_samples", "mse_posterior_mean", "z_std"]].to_numpy()).all()
    # Same x0 and conditioning: Heun with as many evaluations lands nearer to Euler-16 than Euler-2 does.
    for direction in SURVEY_ORDER:
        rows = table[table["direction"] == direction].set_index("candidate")
        assert abs(rows.loc["heun-8", "rel_mse_samples"]) < abs(rows.loc["euler-2", "rel_mse_samples"])


@pytest.mark.slow  # the script end to end: loads a model and samples
def test_sampler_study_script_quick_runs_on_a_cpu(tiny_data, tmp_path):
    _, data = tiny_data
    ckpt = save_untrained_checkpoint(tiny_model_config(), tmp_path)
    csv = tmp_path / "study.csv"
    res = run_script(REPO / "benchmarks" / "sampler_study.py", "--quick", "--model", ckpt, "--data", data, "--csv", csv)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    table = pd.read_csv(csv)
    assert sorted(table["direction"].unique()) == sorted(SURVEY_ORDER)
    assert table["candidate"].tolist() == ["euler-8", "heun-2", "midpoint-2"] * 2
    verdict = res.stdout.strip().splitlines()[-2]
    assert verdict.startswith(("fastest within 2% of euler-8: ", "no candidate within 2% of euler-8")), res.stdout
