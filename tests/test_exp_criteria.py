"""The paper's claims judged from the experiments' tables (whatsreal.experiments.criteria): each
verdict follows its number and interval, the row names what decided it, and a claim whose table
is missing gets no row."""

from __future__ import annotations

import pandas as pd

from tests.conftest import tiny_config
from whatsreal.cli import main
from whatsreal.experiments.criteria import COLUMNS, CriteriaSettings, criteria_across, criteria_table, read_criteria
from whatsreal.experiments.summary import write_summary
from whatsreal.io import write_csv
from whatsreal.layout import DatasetLayout
from whatsreal.plan import summary_tables

SETTINGS = CriteriaSettings(ablation_drop=0.15, noise_slope=0.5, noise_direction="hsc")


def gains() -> pd.DataFrame:
    # HSC's instrument gain is positive but its interval reaches 0: not met.
    return pd.DataFrame(
        {
            "survey": ["hsc", "hsc", "legacysurvey", "legacysurvey"],
            "half": ["instrument", "physics", "instrument", "physics"],
            "gain": [0.0002, 0.003, 0.0013, 0.0057],
            "ci_lo": [0.0, 0.0003, 0.0007, 0.0028],
            "ci_hi": [0.0004, 0.006, 0.0019, 0.0093],
        }
    )


def survey_probes() -> pd.DataFrame:
    rows = []
    for survey in ("hsc", "legacysurvey"):
        for target, diff, lo, won in [("redshift", 0.2, 0.1, True), ("e1", 0.03, -0.02, survey == "hsc")]:
            rows.append(("physics", survey, target, diff, lo, diff + 0.05, won))
        for target, diff, lo in [("psf_fwhm", 0.01, -0.03), ("sky_sigma", 0.12, 0.07)]:
            rows.append(("instrument", survey, target, diff, lo, diff + 0.05, lo > 0))
    cols = ["group", "survey", "target", "diff", "diff_ci_lo", "diff_ci_hi", "disentangled"]
    return pd.DataFrame(rows, columns=cols)


def survey_ablation() -> pd.DataFrame:
    # HSC: the largest drop (sky 0.22) has an interval reaching below 0; depth (0.16, above 0)
    # passes and is the row shown. Legacy: nothing reaches 0.15, the largest drop is shown.
    # The physics latent's larger "drop" and a physics target are never the instrument row.
    rows = [
        ("hsc", "instrument", "sky_sigma", "instrument", 0.22, -0.01, 0.4),
        ("hsc", "instrument", "psfdepth_mag", "instrument", 0.16, 0.05, 0.3),
        ("hsc", "instrument", "psf_fwhm", "instrument", 0.01, -0.02, 0.04),
        ("hsc", "instrument", "sky_sigma", "physics", 0.5, 0.4, 0.6),
        ("hsc", "physics", "redshift", "instrument", 0.6, 0.5, 0.7),
        ("legacysurvey", "instrument", "sky_sigma", "instrument", 0.12, 0.08, 0.16),
        ("legacysurvey", "instrument", "psfdepth_mag", "instrument", 0.03, 0.01, 0.05),
    ]
    cols = ["survey", "group", "target", "latent", "drop", "drop_ci_lo", "drop_ci_hi"]
    return pd.DataFrame(rows, columns=cols)


def neighbour_probe() -> pd.DataFrame:
    rows = [
        ("hsc", "true_hsc_sky_sigma", True, 0.03, 0.01, 0.05),
        ("hsc", "true_hsc_psf_fwhm", True, 0.10, -0.1, 0.3),
        ("legacysurvey", "true_legacy_sky_sigma", True, 0.01, -0.02, 0.04),
    ]
    cols = ["survey", "target", "truth", "diff_ref_minus_abl", "diff_ref_minus_abl_ci_lo", "diff_ref_minus_abl_ci_hi"]
    return pd.DataFrame(rows, columns=cols)


def noise_slopes(slope: float = 0.77) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "direction": ["hsc", "hsc", "legacysurvey"],
            "axis": ["sky_sigma", "psf_fwhm", "sky_sigma"],
            "statistic": ["output_noise", "output_size", "output_noise"],
            "slope": [slope, 0.9, 0.95],
            "ci_lo": [slope - 0.03, 0.8, 0.9],
            "ci_hi": [slope + 0.02, 1.0, 1.0],
            "real_slope": [0.93, 0.15, 0.9],
        }
    )


def row(table: pd.DataFrame, criterion: str, survey: str, target: str = "") -> pd.Series:
    sel = table[(table["criterion"] == criterion) & (table["survey"] == survey) & (table["target"] == target)]
    assert len(sel) == 1, (criterion, survey, target, sel)
    return sel.iloc[0]


def test_each_verdict_follows_its_interval_and_threshold():
    t = criteria_table(
        SETTINGS,
        gain=gains(),
        survey_probes=survey_probes(),
        survey_ablation=survey_ablation(),
        neighbour_probe=neighbour_probe(),
        noise_slopes=noise_slopes(),
    )
    assert list(t.columns) == COLUMNS
    assert not row(t, "gain_instrument", "hsc")["met"]  # lower end exactly 0
    assert row(t, "gain_physics", "hsc")["met"] and row(t, "gain_instrument", "legacysurvey")["met"]

    hsc, legacy = row(t, "physics_targets_won", "hsc"), row(t, "physics_targets_won", "legacysurvey")
    assert (hsc["value"], hsc["threshold"], hsc["met"]) == (2, 2, True)
    assert (legacy["value"], legacy["met"]) == (1, False) and legacy["note"].startswith("e1 +0.030")
    assert row(t, "instrument_target_won", "hsc", "sky_sigma")["met"]
    assert not row(t, "instrument_target_won", "hsc", "psf_fwhm")["met"]

    abl = row(t, "ablation_drop", "hsc", "psfdepth_mag")  # the passing row, not the larger failing one
    assert abl["met"] and abl["value"] == 0.16
    abl = row(t, "ablation_drop", "legacysurvey", "sky_sigma")  # none passes: the largest drop
    assert not abl["met"] and abl["value"] == 0.12
    assert len(t[t["criterion"] == "ablation_drop"]) == 2

    assert row(t, "neighbour_probe_drop", "hsc", "true_hsc_sky_sigma")["met"]
    assert not row(t, "neighbour_probe_drop", "legacysurvey", "true_legacy_sky_sigma")["met"]

    slope = row(t, "noise_slope", "hsc", "sky_sigma")
    assert slope["met"] and slope["value"] == 0.77 and "0.930" in slope["note"]
    # Rows come grouped by claim, in the order summary.md lists them.
    assert list(t["criterion"].drop_duplicates()) == [
        "gain_instrument",
        "gain_physics",
        "physics_targets_won",
        "instrument_target_won",
        "ablation_drop",
        "neighbour_probe_drop",
        "noise_slope",
    ]


def test_thresholds_come_from_the_settings():
    strict = CriteriaSettings(ablation_drop=0.2, noise_slope=0.8, noise_direction="legacysurvey")
    t = criteria_table(strict, survey_ablation=survey_ablation(), noise_slopes=noise_slopes())
    assert not row(t, "ablation_drop", "hsc", "sky_sigma")["met"]  # 0.16 no longer passes
    slope = row(t, "noise_slope", "legacysurvey", "sky_sigma")
    assert slope["value"] == 0.95 and slope["met"] and slope["threshold"] == 0.8
    assert not criteria_table(SETTINGS, noise_slopes=noise_slopes(0.45)).iloc[0]["met"]


def test_a_claim_without_its_table_gets_no_row():
    assert criteria_table(SETTINGS).empty
    assert list(criteria_table(SETTINGS).columns) == COLUMNS
    only = criteria_table(SETTINGS, gain=gains())
    assert set(only["criterion"]) == {"gain_instrument", "gain_physics"}
    # Fig 7 not drawn for the judged direction: no slope row rather than a failed one.
    absent = criteria_table(CriteriaSettings(0.15, 0.5, "legacysurvey"), noise_slopes=noise_slopes().iloc[:2])
    assert absent.empty


def test_summary_opens_with_the_criteria_and_writes_them_as_csv(tmp_path):
    cfg = tiny_config()
    layout = DatasetLayout(tmp_path)
    assert "conditioning_gain.csv" in summary_tables(cfg, "main")
    path = layout.run("main").table("conditioning_gain.csv")
    path.parent.mkdir(parents=True)
    gains().to_csv(path, index=False)
    out = tmp_path / "criteria.csv"
    text = write_summary(cfg, layout, ["main", "random_neighbours"], tmp_path / "summary.md", criteria_out=out)
    first = text.index("## Does the method work on this sky?")
    assert first < text.index("## Run `main`")
    assert "0.0002 [0.0000, 0.0004]" in text and "3 of 4 met." in text
    assert "`main/tables/conditioning_gain.csv`" in text
    back = pd.read_csv(out)
    assert list(back.columns) == COLUMNS and len(back) == 4 and back["met"].sum() == 3


def test_summary_without_judged_tables_writes_an_empty_criteria_csv(tmp_path):
    out = tmp_path / "criteria.csv"
    text = write_summary(tiny_config(), tmp_path, ["main"], tmp_path / "summary.md", criteria_out=out)
    assert "Does the method work" not in text
    assert list(pd.read_csv(out).columns) == COLUMNS


def judged(drop_hsc: float, psf_lead: float) -> pd.DataFrame:
    """One training's criteria: an HSC ablation drop on sky noise and an HSC PSF lead."""
    abl = survey_ablation()
    abl.loc[abl["target"].eq("sky_sigma") & abl["latent"].eq("instrument") & abl["survey"].eq("hsc"), "drop_ci_lo"] = (
        0.1
    )
    abl.loc[abl["target"].eq("sky_sigma") & abl["latent"].eq("instrument") & abl["survey"].eq("hsc"), "drop"] = drop_hsc
    probes = survey_probes()
    psf = probes["target"].eq("psf_fwhm") & probes["survey"].eq("hsc")
    probes.loc[psf, ["diff", "diff_ci_lo", "disentangled"]] = [psf_lead, psf_lead - 0.03, psf_lead - 0.03 > 0]
    return criteria_table(SETTINGS, survey_probes=probes, survey_ablation=abl)


def test_criteria_across_trainings_counts_where_each_claim_holds():
    across = criteria_across({"s1": judged(0.22, 0.05), "s2": judged(0.12, 0.01), "s3": judged(0.18, 0.0)})
    psf = across[(across["criterion"] == "instrument_target_won") & (across["target"] == "psf_fwhm")]
    hsc_psf = psf[psf["survey"] == "hsc"].iloc[0]
    assert (hsc_psf["met_in"], hsc_psf["n"]) == (1, 3) and hsc_psf["s1"] == 0.05
    drop = across[(across["criterion"] == "ablation_drop") & (across["survey"] == "hsc")].iloc[0]
    # s2's sky-noise drop (0.12) fails, so its row is depth's passing 0.16: matched on claim and survey.
    assert drop["met_in"] == 3 and drop["targets"] == "sky_sigma / psfdepth_mag / sky_sigma"
    assert (drop["s1"], drop["s2"], drop["s3"]) == (0.22, 0.16, 0.18)
    assert across.loc[across["criterion"] == "physics_targets_won", "targets"].eq("").all()  # no target to pick


def test_criteria_command_reads_each_dataset_and_names_a_missing_file(tmp_path, capsys):
    for name, drop in (("sim_a", 0.22), ("sim_b", 0.12)):
        write_csv(judged(drop, 0.05), DatasetLayout(tmp_path / name).criteria)
    out = tmp_path / "across.csv"
    assert main(["criteria", str(tmp_path / "sim_a"), str(tmp_path / "sim_b"), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| claim | survey | target | met in | sim_a | sim_b |" in printed
    assert "| 2 of 2 | 0.22 | 0.16 |" in printed
    assert read_criteria(DatasetLayout(tmp_path / "sim_a").criteria)["met"].dtype == bool
    assert pd.read_csv(out)["n"].eq(2).all()

    assert main(["criteria", str(tmp_path / "sim_a"), str(tmp_path / "sim_c")]) == 2
    assert "sim_c/criteria.csv: not found" in capsys.readouterr().err
    (tmp_path / "sim_d").mkdir()
    (tmp_path / "sim_d" / "criteria.csv").write_text("a,b\n1,2\n")
    assert main(["criteria", str(tmp_path / "sim_d")]) == 2
    assert "sim_d/criteria.csv: not a criteria table, it lacks column(s) criterion" in capsys.readouterr().err
