"""The methods comparison (whatsreal.experiments.comparison) on planted data: each section can tell a
representation that carries the answer from one that does not, and the costs come from the files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from whatsreal.experiments.comparison import (
    CVAE_SCORE,
    FEWSHOT_COLUMNS,
    FLOW_SCORE,
    RANDOM_INIT,
    RAW_PIXELS,
    TABLE_COLUMNS,
    ComparisonInputs,
    ComparisonSettings,
    Representation,
    RunFiles,
    cost_rows,
    counterpart_ranks,
    downsampled_pixels,
    few_shot_table,
    knn_outlier_scores,
    load_comparison,
    outlier_rows,
    precision_at_top,
    probe_rows,
    read_training_cost,
    retrieval_rows,
    run_comparison,
)
from whatsreal.experiments.probe_design import ProbeDesign, probe_folds
from whatsreal.experiments.summary import methods_compared_section, write_summary
from whatsreal.experiments.targets import Target
from whatsreal.layout import DatasetLayout
from whatsreal.methods import method_of
from whatsreal.rule_settings import rule_settings
from whatsreal.surveys import SURVEY_ORDER

from .conftest import tiny_config
from .test_exp_probes import write_embeddings, write_fake_dataset

BENCHMARK_TSV = (
    "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    "369.39\t0:06:09\t5118.91\t19697.25\t3492.88\t4102.57\t122.57\t565.25\t181.19\t669.97\n"
)
"""A train job's benchmark as Snakemake 9 writes it (the demo's train_main.tsv)."""


def _settings(**comparison: object) -> ComparisonSettings:
    fast = {"few_shot_sizes": [20, 60], "repeats": 3, **comparison}
    cfg = tiny_config(experiments={"comparison": fast, "bootstrap": {"n_resamples": 300}})
    return ComparisonSettings.from_config(cfg)


def _sky(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    split = np.where(np.arange(n) % 5 == 0, "val", "train")
    return pd.DataFrame({"pair": np.arange(n), "split": split, "ra": rng.uniform(0, 1, n), "dec": rng.uniform(0, 1, n)})


def _planted_inputs(n: int = 400, seed: int = 0) -> ComparisonInputs:
    """Two physics targets and one instrument target; ``planted`` encodes each in its own latent, ``noise``
    is independent of everything."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, 3))
    specs = [
        Target("true_redshift", "z", "physics", True),
        Target("true_log_mstar", "M", "physics", True),
        Target("true_hsc_psf_fwhm", "psf", "hsc_instrument", True),
    ]
    phys = np.c_[y[:, :2], rng.normal(size=(n, 4))]
    inst = np.c_[y[:, 2:], rng.normal(size=(n, 3))]
    planted = Representation("planted", "flow_matching", {"physics": (phys, phys), "instrument": (inst, inst)})
    noise = Representation("noise", "contrastive", {"physics": (rng.normal(size=(n, 6)), rng.normal(size=(n, 6)))})
    folds = probe_folds(ProbeDesign("all", "random", 256, 5), _sky(n, seed), 0.25, 0)
    return ComparisonInputs([planted, noise], y, specs, folds, np.arange(0, n, 5), None)


def _one(rows: list[dict], rep: str, metric: str, space: str) -> dict:
    found = [r for r in rows if (r["representation"], r["metric"], r["space"]) == (rep, metric, space)]
    assert len(found) == 1, (rep, metric, space, found)
    return found[0]


def test_a_planted_latent_beats_a_random_one_with_disjoint_intervals():
    rows = probe_rows(_planted_inputs(), _settings())
    planted = _one(rows, "planted", "r2_physics_targets", "physics")
    noise = _one(rows, "noise", "r2_physics_targets", "physics")
    assert planted["value"] > 0.95 and noise["value"] < 0.1
    assert planted["ci_lo"] > noise["ci_hi"]  # the intervals do not overlap
    assert planted["ci_lo"] <= planted["value"] <= planted["ci_hi"]
    # Each latent reads its own group, not the other one (crossed: the leak).
    assert _one(rows, "planted", "r2_instrument_targets", "instrument")["value"] > 0.95
    assert _one(rows, "planted", "r2_instrument_targets", "physics")["value"] < 0.1
    assert _one(rows, "planted", "r2_physics_targets", "instrument")["value"] < 0.1
    assert "leak" in _one(rows, "planted", "r2_physics_targets", "instrument")["note"]
    # The noise representation has no instrument space, so no instrument-latent rows.
    assert not [r for r in rows if r["representation"] == "noise" and r["space"] == "instrument"]
    per_target = [r for r in rows if r["section"] == "probe_target" and r["representation"] == "planted"]
    assert {r["metric"] for r in per_target} == {"true_redshift", "true_log_mstar", "true_hsc_psf_fwhm"}


def test_few_shot_r2_rises_with_the_number_of_labels():
    rng = np.random.default_rng(1)
    n, d = 600, 40
    x = rng.normal(size=(n, d))
    y = x @ rng.normal(size=(d, 1)) + 2.0 * rng.normal(size=(n, 1))  # linear, noisy: more labels help
    rep = Representation("planted", "cvae", {"physics": (x, x)})
    folds = probe_folds(ProbeDesign("all", "random", 256, 5), _sky(n), 0.25, 0)
    inputs = ComparisonInputs([rep], y, [Target("true_redshift", "z", "physics", True)], folds, np.arange(n), None)
    curves = few_shot_table(inputs, _settings(few_shot_sizes=[15, 40, 120], repeats=4))
    assert list(curves.columns) == list(FEWSHOT_COLUMNS)
    curve = curves.sort_values("n_train")
    assert list(curve["n_train"]) == [15, 40, 120, 450]  # the configured sizes, then all 450 training pairs
    assert list(curve["n_repeats"]) == [4, 4, 4, 1]
    r2 = curve["r2_mean"].to_numpy()
    assert r2[-1] > r2[0] + 0.3 and np.all(np.diff(r2) > -0.02)
    assert (curve["ci_lo"].iloc[:-1] <= curve["r2_mean"].iloc[:-1]).all() and np.isnan(curve["ci_lo"].iloc[-1])


def test_retrieval_finds_identical_latents_and_random_ones_at_chance():
    inputs = _planted_inputs(n=500)
    rows = retrieval_rows(inputs, _settings())
    assert _one(rows, "planted", "top1", "physics")["value"] == 1.0
    assert _one(rows, "planted", "median_rank", "physics")["value"] == 1.0
    noise1, noise10 = _one(rows, "noise", "top1", "physics"), _one(rows, "noise", "top10", "physics")
    assert noise1["reference"] == pytest.approx(1 / 500) and noise10["reference"] == pytest.approx(10 / 500)
    assert noise1["value"] <= 0.03 and noise10["value"] <= 0.1
    assert noise10["ci_hi"] < 0.15 and _one(rows, "planted", "top10", "physics")["ci_lo"] == 1.0
    # The median rank has a bootstrap interval too: [1, 1] for the planted latent, around chance for noise.
    planted_rank, noise_rank = (
        _one(rows, "planted", "median_rank", "physics"),
        _one(rows, "noise", "median_rank", "physics"),
    )
    assert planted_rank["ci_lo"] == planted_rank["ci_hi"] == 1.0
    assert noise_rank["ci_lo"] < noise_rank["value"] < noise_rank["ci_hi"]
    assert (
        noise_rank["ci_lo"] < noise_rank["reference"] < noise_rank["ci_hi"]
        and noise_rank["ci_hi"] - noise_rank["ci_lo"] > 50
    )
    # A latent that maps everything to one point ranks each counterpart in the middle, not first.
    same = np.zeros((50, 3))
    assert np.all(counterpart_ranks(same, same, np.arange(50)) == 25.5)


def test_outlier_scores_and_precision():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 4))
    x[:3] += 25.0  # three isolated objects
    score = knn_outlier_scores(x, k=5)
    assert set(np.argsort(-score)[:3]) == {0, 1, 2}
    positive = np.zeros(300, bool)
    positive[:3] = True
    p, lo, hi, m = precision_at_top(score, positive, 0.01, 0.95)
    assert (p, m) == (1.0, 3) and 0.3 < lo < 1.0 and hi == pytest.approx(1.0)
    p, lo, hi, _ = precision_at_top(-score, positive, 0.01, 0.95)
    assert p == 0.0 and lo == pytest.approx(0.0, abs=1e-12) and 0.0 < hi < 0.8


def test_training_cost_from_a_planted_benchmark_and_metrics(tmp_path):
    data = DatasetLayout(tmp_path)
    tsv = data.benchmark("train_main")
    tsv.parent.mkdir(parents=True)
    tsv.write_text(BENCHMARK_TSV)
    metrics = data.run("main").metrics
    metrics.parent.mkdir(parents=True)
    pd.DataFrame({"epoch": [0, 0, 7], "step": [9, 99, 249], "train/loss": [1.0, 0.9, 0.7]}).to_csv(metrics, index=False)
    cost = read_training_cost(tsv, metrics)
    assert cost.seconds == pytest.approx(369.39) and cost.steps == 250
    assert cost.seconds_per_step == pytest.approx(369.39 / 250)
    files = RunFiles.of_layout(data, "main", "contrastive")
    assert files.benchmark == tsv and files.metrics == metrics and files.method == "contrastive"
    assert RunFiles.of_layout(data, "other").benchmark is None  # never timed
    unmeasured = read_training_cost(None, metrics)
    assert np.isnan(unmeasured.seconds) and np.isnan(unmeasured.seconds_per_step) and unmeasured.steps == 250
    tsv.write_text("")  # Snakemake could not measure the job
    assert np.isnan(read_training_cost(tsv, None).seconds)


def test_downsampled_pixels_are_block_means():
    images = np.arange(2 * 1 * 5 * 5, dtype=np.float32).reshape(2, 1, 5, 5)
    out = downsampled_pixels(images, 2)
    assert out.shape == (2, 4)  # a 5-px stamp loses its last row and column
    assert out[0, 0] == pytest.approx(images[0, 0, :2, :2].mean()) and out[1, 3] == images[1, 0, 2:4, 2:4].mean()


def test_run_method_and_settings():
    assert method_of({}).name == "flow_matching" and method_of({"method": "cvae"}).name == "cvae"
    s = _settings()
    assert s.retrieval_k == 10 and s.design.split == "random" and s.bootstrap[0] == 300
    cfg = tiny_config()
    changed = tiny_config(experiments={"probes": {"epochs": 1}})
    assert rule_settings(cfg, "comparison") == rule_settings(changed, "comparison")  # the MLP's schedule
    moved = tiny_config(experiments={"probes": {"test_fraction": 0.3}})
    assert rule_settings(cfg, "comparison") != rule_settings(moved, "comparison")  # the probe design


def _plant_rare_and_pathological(path) -> pd.DataFrame:
    """Make every 40th truth row a merger and every 60th (offset 1) an HSC pathology; the table back."""
    truth = pd.read_parquet(path)
    truth["galaxy_class"] = np.where(np.arange(len(truth)) % 40 == 0, "merger", "normal")
    for p in ("saturated_star", "stripe", "high_noise"):
        truth[f"hsc_{p}"] = np.arange(len(truth)) % 60 == 1
    truth.to_parquet(path, index=False)
    return truth


def test_run_comparison_writes_the_table_curves_and_figure(tmp_path):
    n = 240
    paths = write_fake_dataset(tmp_path / "data", n)
    truth = _plant_rare_and_pathological(paths["truth"])
    rng = np.random.default_rng(3)
    z = truth.set_index("truth_id").loc[1000 + np.arange(n), "redshift"].to_numpy()
    phys = {s: np.c_[z, rng.normal(size=(n, 3))] for s in SURVEY_ORDER}
    data = DatasetLayout(paths["truth"].parent.parent)
    main = data.run("main")
    main.root.mkdir(parents=True)
    write_embeddings(main.embeddings, phys, {s: rng.normal(size=(n, 2)) for s in SURVEY_ORDER}, n)
    pd.DataFrame({"step": [0, 19]}).to_csv(main.metrics, index=False)
    data.random_init_embeddings.parent.mkdir(parents=True)
    write_embeddings(data.random_init_embeddings, {s: rng.normal(size=(n, 5)) for s in SURVEY_ORDER}, None, n)
    out = tmp_path / "out"
    result = run_comparison(
        [RunFiles.of_layout(data, "main")],
        data.random_init_embeddings,
        images={s: data.images(s) for s in SURVEY_ORDER},
        meta={s: data.meta(s) for s in SURVEY_ORDER},
        truth=paths["truth"],
        settings=_settings(),
        outputs=(out / "comparison.csv", out / "fewshot.csv", out / "comparison.png"),
    )
    table = pd.read_csv(out / "comparison.csv")
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert list(dict.fromkeys(table["representation"])) == ["main", RANDOM_INIT, RAW_PIXELS]
    assert set(table["section"]) == {"probe", "probe_target", "retrieval", "outliers", "cost"}
    main_z = table.query("representation == 'main' and metric == 'true_redshift' and space == 'physics'")
    assert main_z["value"].iloc[0] > 0.9  # the planted redshift is read back
    assert table.query("section == 'outliers'")["reference"].between(0, 1).all()
    assert set(table.query("representation == 'raw_pixels'")["space"]) == {"physics"}
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert set(result.few_shot["representation"]) == {"main", RANDOM_INIT, RAW_PIXELS}
    section = methods_compared_section(table, k=10)
    assert section[0] == "## Methods compared" and any("main (flow_matching)" in line for line in section)
    assert any(line.startswith("| Legacy counterpart top-10 |") for line in section)
    assert not any("is supervised" in line for line in section)  # no cvae run: no caveat
    text = write_summary(tiny_config(), tmp_path, ["main"], tmp_path / "summary.md", comparison=out / "comparison.csv")
    assert text.index("## Methods compared") < text.index("## Run `main`")


def test_each_method_s_own_outlier_score_is_ranked_beside_the_knn_ones(tmp_path):
    """Fig 3's per-object flow scores of a run and a CVAE's anomaly column rank the same HSC objects at the
    same fraction as the kNN rows; a planted score that puts the positives first has precision 1."""
    n = 240
    paths = write_fake_dataset(tmp_path / "data", n)
    truth = _plant_rare_and_pathological(paths["truth"])
    by_pair = truth.set_index("truth_id").loc[1000 + np.arange(n)]
    rare = (by_pair["galaxy_class"] == "merger").to_numpy()
    pathological = by_pair["hsc_stripe"].to_numpy(bool)
    rng = np.random.default_rng(5)
    data = DatasetLayout(paths["truth"].parent.parent)
    for name in ("main", "cv"):
        data.run(name).root.mkdir(parents=True)
    main, cv = data.run("main"), data.run("cv")
    write_embeddings(main.embeddings, *[{s: rng.normal(size=(n, 3)) for s in SURVEY_ORDER} for _ in "pi"], n)
    write_embeddings(cv.embeddings, {s: rng.normal(size=(n, 3)) for s in SURVEY_ORDER}, None, n)
    emb = pd.read_parquet(cv.embeddings)
    # The CVAE's own score: the planted mergers first among the HSC rows; the Legacy rows are noise.
    emb["cvae_anomaly"] = np.r_[rare[emb["pair"].to_numpy()[:n]] * 10.0 + rng.uniform(size=n), rng.uniform(size=n)]
    emb.to_parquet(cv.embeddings, index=False)
    # Fig 3's flows (shuffled rows, as the file's order is not the pair order): pathologies first in the
    # instrument space, the physics space noise.
    order = rng.permutation(n)
    flows = [
        pd.DataFrame({"space": space, "pair": order, "object_id": "x", "nll": score[order]})
        for space, score in (
            ("instrument", pathological * 10.0 + rng.uniform(size=n)),
            ("physics", rng.uniform(size=n)),
        )
    ]
    main.table("outlier_scores.parquet").parent.mkdir(parents=True)
    pd.concat(flows).to_parquet(main.table("outlier_scores.parquet"), index=False)
    runs = [RunFiles.of_layout(data, "main", scored=True), RunFiles.of_layout(data, "cv", "cvae")]
    inputs = load_comparison(
        runs,
        main.embeddings,  # as the random-init features: any embeddings file
        images={s: data.images(s) for s in SURVEY_ORDER},
        meta={s: data.meta(s) for s in SURVEY_ORDER},
        truth=paths["truth"],
        settings=_settings(),
    )
    assert set(inputs.reps[0].own_scores) == {FLOW_SCORE.format(space="physics"), FLOW_SCORE.format(space="instrument")}
    assert set(inputs.reps[1].own_scores) == {CVAE_SCORE}
    rows = outlier_rows(inputs, _settings())
    cvae_rare = _one(rows, "cv", "precision_rare", CVAE_SCORE)
    assert cvae_rare["value"] == 1.0 and cvae_rare["n"] == 3 and "CVAE latent anomaly score" in cvae_rare["note"]
    flow_patho = _one(rows, "main", "precision_pathology", "instrument flow")
    assert flow_patho["value"] == 1.0 and "instrument-flow -log p (Fig 3)" in flow_patho["note"]
    assert _one(rows, "main", "precision_pathology", "physics flow")["value"] < 1.0  # the physics flow is noise
    # The kNN rows of every latent are still there, with the same base rates.
    knn = _one(rows, "cv", "precision_rare", "physics")
    assert knn["reference"] == cvae_rare["reference"] == pytest.approx(rare.mean())
    # The summary and the figure show the own scores beside the kNN ones.
    table = pd.DataFrame(rows + cost_rows(inputs.reps), columns=list(TABLE_COLUMNS))
    section = "\n".join(methods_compared_section(table, k=10))
    assert "| rare classes in top outliers (CVAE anomaly score) |" in section
    assert "| pathologies in top outliers (Fig 3 flow, instrument) |" in section
    assert "A `cvae` run is supervised" in section  # its physics rows are not a held-out measurement
    # A flow-score file that lacks a pair is named in the error.
    pd.concat(flows)[lambda d: d["pair"] != 7].to_parquet(main.table("outlier_scores.parquet"), index=False)
    with pytest.raises(ValueError, match=r"outlier_scores.parquet: no 'nll' for pair\(s\) \[7\]"):
        load_comparison(
            runs,
            main.embeddings,
            {s: data.images(s) for s in SURVEY_ORDER},
            {s: data.meta(s) for s in SURVEY_ORDER},
            paths["truth"],
            _settings(),
        )


def test_real_data_uses_the_catalogue_targets_and_skips_the_outliers(tmp_path):
    """Without a truth table (real data) the probes read the catalogue targets and no outlier is scored."""
    n = 160
    paths = write_fake_dataset(tmp_path / "data", n)
    data = DatasetLayout(paths["truth"].parent.parent)
    rng = np.random.default_rng(4)
    emb = tmp_path / "embeddings.parquet"
    write_embeddings(emb, {s: rng.normal(size=(n, 3)) for s in SURVEY_ORDER}, None, n)  # a single latent
    inputs = load_comparison(
        [RunFiles("single", "single_latent", emb, None, None)],
        emb,
        images={s: data.images(s) for s in SURVEY_ORDER},
        meta={s: data.meta(s) for s in SURVEY_ORDER},
        truth=None,
        settings=_settings(),
    )
    assert inputs.labels is None and not any(t.truth for t in inputs.specs)
    assert {"hsc_e1", "legacy_psfsize"} <= {t.name for t in inputs.specs}
    assert [r.name for r in inputs.reps] == ["single", RANDOM_INIT, RAW_PIXELS]
    assert list(inputs.reps[0].spaces) == ["physics"]  # no inst_* columns: no instrument space
    assert outlier_rows(inputs, _settings()) == []
    with pytest.raises(ValueError, match="taken by a baseline"):
        load_comparison([RunFiles(RAW_PIXELS, "cvae", emb, None, None)], emb, {}, {}, None, _settings())
