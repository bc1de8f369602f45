"""The spatial-neighbour ablation per survey, on every galaxy each survey saw.

The paper's ablation (appendix A.5) trains the instrument encoder on random same-survey galaxies
instead of spatial neighbours and shows the instrument latent's R^2 on the survey's conditions
collapse. The question is asked of each survey: does survey s's instrument latent lose its
conditions when s's instrument views are random? For runs trained on N-way groups this is the
only ablation that scores a third survey; for runs trained on pairs it asks Table 5's question
(whatsreal.experiments.ablation) of all pairs with a linear probe instead of a tenth of them
with an MLP, so the interval of a drop is a few hundredths wide rather than about 0.2.

Both runs' ``survey_probe_predictions.npz`` (whatsreal.experiments.survey_probes) hold
out-of-fold predictions of the same targets for the same galaxies (every galaxy the survey saw,
the same folds): the drop R^2(reference) - R^2(ablated) is bootstrapped *paired*, both terms on
the same resampled galaxies (``experiments.bootstrap``), for each survey, target and latent.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.experiments.bootstrap import BootstrapR2
from whatsreal.io import write_csv

__all__ = ["ABLATION_COLUMNS", "read_survey_predictions", "survey_ablation_table"]

log = logging.getLogger(__name__)

ABLATION_COLUMNS = (
    "survey",
    "group",
    "target",
    "latent",
    "n",
    "r2_reference",
    "r2_ablated",
    "drop",
    "drop_ci_lo",
    "drop_ci_hi",
)
SPACES = ("instrument", "physics")


def read_survey_predictions(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``{survey: {"rows", "targets", "y", "physics", "instrument"}}`` from a survey_probe_predictions.npz."""
    with np.load(path, allow_pickle=False) as f:
        surveys = sorted({k.rsplit("_", 1)[0] for k in f.files if k.endswith("_rows")})
        out = {}
        for s in surveys:
            missing = [f"{s}_{k}" for k in ("rows", "targets", "y", *SPACES) if f"{s}_{k}" not in f.files]
            if missing:
                raise KeyError(f"{path}: missing array(s) {missing}")
            out[s] = {k: f[f"{s}_{k}"] for k in ("rows", "targets", "y", *SPACES)}
    return out


def survey_ablation_table(
    reference: str | Path, ablated: str | Path, bootstrap: tuple[int, int, float], out: str | Path
) -> pd.DataFrame:
    """``survey_ablation.csv``: per survey, target and latent, both runs' R^2 and the paired drop
    (:data:`ABLATION_COLUMNS`); an error names a survey or galaxy list the two files disagree on."""
    n_resamples, seed, confidence = bootstrap
    ref, abl = read_survey_predictions(reference), read_survey_predictions(ablated)
    if set(ref) != set(abl):
        raise ValueError(f"{reference} has surveys {sorted(ref)}, {ablated} {sorted(abl)}")
    rows = []
    for survey, r in ref.items():
        a = abl[survey]
        if not (np.array_equal(r["rows"], a["rows"]) and np.array_equal(r["targets"], a["targets"])):
            raise ValueError(f"{reference} and {ablated}: {survey}'s galaxies or targets differ; rerun survey_probes")
        boot = BootstrapR2.for_rows(len(r["rows"]), n_resamples, seed, confidence)
        for space in SPACES:
            boot.add(f"ref/{space}", r["y"], r[space])
            boot.add(f"abl/{space}", r["y"], a[space])
            drop, lo, hi = boot.diff(f"ref/{space}", f"abl/{space}")
            for t, name in enumerate(r["targets"]):
                group, target = str(name).split(":", 1)
                rows.append(
                    {
                        "survey": survey,
                        "group": group,
                        "target": target,
                        "latent": space,
                        "n": int(np.isfinite(r["y"][:, t]).sum()),
                        "r2_reference": float(boot.point[f"ref/{space}"][t]),
                        "r2_ablated": float(boot.point[f"abl/{space}"][t]),
                        "drop": float(drop[t]),
                        "drop_ci_lo": float(lo[t]),
                        "drop_ci_hi": float(hi[t]),
                    }
                )
                if group == "instrument" and space == "instrument":
                    log.info(
                        "%s %s, instrument latent: R^2 %.3f -> %.3f, drop %.3f [%.3f, %.3f]",
                        *(survey, target, rows[-1]["r2_reference"], rows[-1]["r2_ablated"], drop[t], lo[t], hi[t]),
                    )
    df = pd.DataFrame(rows, columns=list(ABLATION_COLUMNS))
    write_csv(df, out)
    return df
