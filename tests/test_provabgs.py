"""PROVABGS spectroscopic targets: MMU's layout read, matched to the pairs, bad input named, Table 5 rows."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from whatsreal.config import ConfigError, validate_config
from whatsreal.data.provabgs import (
    PAIR_COLUMNS,
    SHARD_NAME,
    ProvabgsError,
    match_to_pairs,
    read_provabgs,
    write_provabgs_shards,
)
from whatsreal.data.stages import run_provabgs_targets
from whatsreal.experiments.targets import build_targets
from whatsreal.sim.geometry import healpix_of

from .conftest import SCHEMA, run_snakemake, tiny_config
from .test_exp_probes import FAST, probe_inputs, run_tiny_probes

ARCSEC = 1.0 / 3600.0


def _catalogue(n: int, seed: int = 0, ra0: float = 150.0, dec0: float = 2.0, spread: float = 8.0) -> pd.DataFrame:
    """A PROVABGS-like table in the project's names, spread over several nside-16 healpix."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "object_id": 39_633_000_000_000_000 + np.arange(n, dtype=np.int64),
            "ra": ra0 + rng.uniform(0, spread, n),
            "dec": dec0 + rng.uniform(0, spread, n),
            "z": rng.uniform(0.02, 0.5, n),
            "z_err": rng.uniform(1e-5, 1e-4, n),
            "log_mstar": rng.uniform(8.5, 11.8, n),
            "log_mstar_err": rng.uniform(0.05, 0.2, n),
            "log_ssfr": rng.uniform(-12.5, -9.0, n),
            "t_age": rng.uniform(1.0, 11.0, n),
            "log_z_met": rng.uniform(-3.0, -1.5, n),
        }
    )


# --------------------------------------------------------------------------- the reader


def test_reader_reads_mmu_layout_and_converts_to_the_project_targets(tmp_path):
    cat = _catalogue(40)
    root = tmp_path / "desi_provabgs" / "datafiles"
    written = write_provabgs_shards(root, cat)
    # MMU's layout: one healpix=<N>/001-of-001.h5 per nested nside-16 pixel, upper-case VAC columns.
    hp = healpix_of(cat["ra"].to_numpy(), cat["dec"].to_numpy())
    assert len(written) == len(np.unique(hp)) > 1
    assert {p.relative_to(root).as_posix() for p in written} == {f"healpix={h}/{SHARD_NAME}" for h in np.unique(hp)}
    with h5py.File(written[0], "r") as f:
        assert {"object_id", "ra", "dec", "healpix", "Z_HP", "ZERR", "PROVABGS_LOGMSTAR_BF", "AVG_SFR"} <= set(f)
        assert {"TAGE_MW", "Z_MW", "PROVABGS_LOGMSTAR"} <= set(f)
        assert f["object_id"].dtype == np.int64 and f["ra"].dtype == np.float64
        assert f["PROVABGS_LOGMSTAR"].ndim == 2 and f["PROVABGS_LOGMSTAR"].shape[1] == 100
        assert (f["AVG_SFR"][()] > 0).all() and (f["Z_MW"][()] < 1).all()  # linear SFR and mass fraction

    got = read_provabgs(root).set_index("object_id").loc[cat["object_id"]]
    want = cat.set_index("object_id")
    for col in ("ra", "dec", "z", "z_err", "log_mstar", "log_ssfr", "t_age", "log_z_met"):
        np.testing.assert_allclose(got[col], want[col], rtol=1e-9, atol=1e-9, err_msg=col)
    # The mass error comes from the posterior samples' 16-84 % range.
    np.testing.assert_allclose(got["log_mstar_err"], want["log_mstar_err"], rtol=0.03)
    # MMU ships SFR, age and metallicity at the best fit only: no error to report.
    assert got[["log_ssfr_err", "t_age_err", "log_z_met_err"]].isna().all().all()
    np.testing.assert_array_equal(got["healpix"], hp)


def test_reader_marks_missing_values_and_accepts_older_column_names(tmp_path):
    cat = _catalogue(7, spread=0.01)
    root = tmp_path / "prov"
    (path,) = write_provabgs_shards(root, cat)
    with h5py.File(path, "r+") as f:
        dec = f["dec"][()]
        dec[list(f["object_id"][()]).index(cat.loc[6, "object_id"])] = np.nan  # no position: cannot be matched
        f["dec"][...] = dec
        for name, row, value in (
            ("AVG_SFR", 0, 0.0),  # no star formation: log sSFR undefined
            ("Z_MW", 1, np.nan),
            ("TAGE_MW", 2, -1.0),
            ("PROVABGS_LOGMSTAR_BF", 3, -999.0),  # no best fit
            ("Z_HP", 4, np.inf),
        ):
            data = f[name][()]
            data[row] = value
            f[name][...] = data
        # Older builds of the dataset: SFR and t_ageMW instead of AVG_SFR and TAGE_MW; no mass samples.
        f.move("AVG_SFR", "SFR")
        f.move("TAGE_MW", "t_ageMW")
        del f["PROVABGS_LOGMSTAR"]
    table = read_provabgs(root)
    assert cat.loc[6, "object_id"] not in set(table["object_id"]) and len(table) == 6
    got = table.set_index("object_id").loc[cat["object_id"][:6]].reset_index()
    assert np.isnan(got.loc[0, "log_ssfr"]) and np.isfinite(got.loc[0, "log_mstar"])
    assert np.isnan(got.loc[1, "log_z_met"])
    assert np.isnan(got.loc[2, "t_age"])
    assert np.isnan(got.loc[3, "log_mstar"]) and np.isnan(got.loc[3, "log_ssfr"])  # sSFR needs the mass
    assert np.isnan(got.loc[4, "z"])
    np.testing.assert_allclose(got.loc[5, ["log_ssfr", "t_age"]].to_numpy(float), cat.loc[5, ["log_ssfr", "t_age"]])
    assert got["log_mstar_err"].isna().all()


# --------------------------------------------------------------------------- bad input


def test_missing_or_unusable_catalogue_names_the_key_the_file_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ProvabgsError, match=r"aux\.provabgs\.path: directory '.*nowhere' does not exist.*null"):
        read_provabgs(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ProvabgsError, match=r"aux\.provabgs\.path: .*no healpix=<N>/\*\.h5\|\*\.hdf5 files"):
        read_provabgs(empty)
    root = tmp_path / "prov"
    (path,) = write_provabgs_shards(root, _catalogue(3, spread=0.01))
    with h5py.File(path, "r+") as f:
        del f["Z_MW"]
    with pytest.raises(ProvabgsError, match=rf"{path}: no dataset 'Z_MW'.*set aux\.provabgs\.path"):
        read_provabgs(root)
    path.write_bytes(b"not hdf5")
    with pytest.raises(ProvabgsError, match=rf"{path}: not a readable HDF5 file"):
        read_provabgs(root)
    # At start-up, before any job: the config check names the key.
    with pytest.raises(ConfigError, match=r"aux\.provabgs\.path: directory '.*nowhere' does not exist"):
        validate_config({"aux": {"provabgs": {"path": str(missing)}}}, SCHEMA)


# --------------------------------------------------------------------------- crossmatch to the pairs


def test_a_source_half_an_arcsec_away_is_matched_and_one_two_arcsec_away_is_not(tmp_path):
    dec0 = 2.0
    pair_ra = 150.0 + np.arange(4) * 0.01
    pair_dec = np.full(4, dec0)
    cos = np.cos(np.radians(dec0))
    cat = _catalogue(3, spread=0.0)
    # Pair 0: 0.5" east; pair 2: 2" north; pair 3: 0.3" south; pair 1: nothing nearby.
    cat["ra"] = [pair_ra[0] + 0.5 * ARCSEC / cos, pair_ra[2], pair_ra[3]]
    cat["dec"] = [dec0, dec0 + 2.0 * ARCSEC, dec0 - 0.3 * ARCSEC]
    root = tmp_path / "prov"
    write_provabgs_shards(root, cat)
    # Through the rule's stage: the pairs' Legacy rows point into the Legacy catalogue (reversed order).
    legacy = pd.DataFrame({"ra": pair_ra[::-1], "dec": pair_dec[::-1]})
    legacy.to_parquet(tmp_path / "catalog_legacysurvey.parquet")
    pd.DataFrame({"legacysurvey_row": np.arange(4)[::-1]}).to_parquet(tmp_path / "pairs.parquet")
    out = tmp_path / "provabgs.parquet"
    cfg = tiny_config(crossmatch={"radius_arcsec": 1.0})
    run_provabgs_targets(
        root,
        tmp_path / "pairs.parquet",
        tmp_path / "catalog_legacysurvey.parquet",
        cfg["crossmatch"]["radius_arcsec"],
        out,
    )
    table = pd.read_parquet(out)
    assert list(table.columns) == list(PAIR_COLUMNS)
    np.testing.assert_array_equal(table["pair"], np.arange(4))
    assert table["provabgs_object_id"].tolist()[0] == cat.loc[0, "object_id"]
    assert table["provabgs_object_id"].tolist()[3] == cat.loc[2, "object_id"]
    assert table["provabgs_object_id"].isna().tolist() == [False, True, True, False]
    assert table.loc[0, "sep_arcsec"] == pytest.approx(0.5, abs=1e-3)
    assert table.loc[3, "sep_arcsec"] == pytest.approx(0.3, abs=1e-3)
    assert table.loc[0, "z"] == pytest.approx(cat.loc[0, "z"])
    assert table.loc[3, "t_age"] == pytest.approx(cat.loc[2, "t_age"])
    assert table.loc[[1, 2], ["z", "log_mstar", "log_ssfr", "t_age", "log_z_met"]].isna().all().all()
    # A wider radius takes the 2" source too.
    wide = match_to_pairs(pair_ra, pair_dec, read_provabgs(root), 2.5)
    assert wide["provabgs_object_id"].notna().tolist() == [True, False, True, True]
    # No pair anywhere near the catalogue: an error naming the key, not a table of NaN.
    with pytest.raises(ProvabgsError, match=r"aux\.provabgs\.path: no pair object has a provabgs counterpart"):
        match_to_pairs(pair_ra + 10.0, pair_dec, read_provabgs(root), 1.0)


# --------------------------------------------------------------------------- Table 5


def _provabgs_parquet(path, z: np.ndarray, labelled: np.ndarray, seed: int = 0) -> None:
    """A provabgs.parquet: redshift planted, other targets noise, NaN where a pair has no spectrum."""
    rng = np.random.default_rng(seed)
    n = len(z)
    table = {"pair": np.arange(n), "provabgs_object_id": pd.array(np.arange(n), dtype="Int64"), "sep_arcsec": 0.1}
    for col in PAIR_COLUMNS[3:]:
        table[col] = rng.normal(size=n)
    table["z"] = z
    df = pd.DataFrame(table)
    df.loc[~labelled, list(PAIR_COLUMNS[2:])] = np.nan
    df.loc[~labelled, "provabgs_object_id"] = pd.NA
    df.to_parquet(path, index=False)


def test_probes_gain_the_five_spectroscopic_rows_with_their_own_n(tmp_path):
    n = 240
    inp = probe_inputs(tmp_path, n)
    truth = pd.read_parquet(inp["paths"]["truth"]).set_index("truth_id").loc[1000 + np.arange(n)]
    labelled = np.random.default_rng(3).random(n) < 0.8
    labelled[:3] = False
    prov = tmp_path / "provabgs.parquet"
    _provabgs_parquet(prov, truth["redshift"].to_numpy(), labelled)
    cfg = tiny_config(experiments={"probes": {**FAST, "test_fraction": 0.2}})
    out = tmp_path / "out"
    run_tiny_probes(inp, cfg, out, truth=None, provabgs=prov)
    table = pd.read_csv(out / "table5.csv").set_index("target")
    names = [f"provabgs_{t}" for t in ("z", "log_mstar", "log_ssfr", "t_age", "log_z_met")]
    assert set(names) <= set(table.index)
    assert (table.loc[names, "group"] == "physics").all() and not table.loc[names, "truth"].any()
    # Missing labels are dropped for these targets only: n_train + n_test = the labelled pairs.
    assert (table.loc[names, "n_train"] + table.loc[names, "n_test"] == labelled.sum()).all()
    assert (table.loc["hsc_e1", ["n_train", "n_test"]].sum()) == n
    # The physics latents carry the redshift: the probe finds it on the labelled held-out pairs.
    assert table.loc["provabgs_z", "ours_physics"] > 0.7
    assert table.loc["provabgs_log_mstar", "ours_physics"] < 0.3  # noise labels


def test_a_stale_provabgs_table_is_refused_naming_the_file(tmp_path):
    inp = probe_inputs(tmp_path, 30)
    meta = {"hsc": inp["paths"]["meta_hsc"], "legacysurvey": inp["paths"]["meta_legacysurvey"]}
    prov = tmp_path / "provabgs.parquet"
    _provabgs_parquet(prov, np.linspace(0.1, 0.5, 25), np.ones(25, bool))
    with pytest.raises(ValueError, match=r"provabgs\.parquet: 25 rows with 'pair' not 0\.\.29.*provabgs_targets"):
        build_targets(meta, None, ["g", "r", "i", "z"], prov)
    with pytest.raises(FileNotFoundError, match=r"gone\.parquet: file not found"):
        build_targets(meta, None, ["g", "r", "i", "z"], tmp_path / "gone.parquet")


# --------------------------------------------------------------------------- the workflow


@pytest.mark.slow
def test_rule_writes_provabgs_targets_and_feeds_the_probes(tmp_path, tiny_sky):
    """Real-data source on the tiny sky: rule provabgs_targets runs and is an input of the probes."""
    _, raw, _ = tiny_sky
    truth = pd.read_parquet(raw / "truth.parquet")
    seen = truth.dropna(subset=["legacysurvey_object_id"]).reset_index(drop=True)
    rng = np.random.default_rng(0)
    spec = seen.sample(frac=0.7, random_state=0).reset_index(drop=True)
    cat = pd.DataFrame(
        {
            "object_id": 1 + np.arange(len(spec), dtype=np.int64),
            "ra": spec["ra"],
            "dec": spec["dec"],
            "z": spec["redshift"],
            "z_err": 1e-4,
            "log_mstar": spec["log_mstar"],
            "log_mstar_err": 0.1,
            "log_ssfr": spec["log_ssfr"],
            "t_age": rng.uniform(1, 10, len(spec)),
            "log_z_met": rng.uniform(-3, -1.5, len(spec)),
        }
    )
    write_provabgs_shards(tmp_path / "provabgs", cat)
    config = tmp_path / "real.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "dataset": {
                    "name": "real",
                    "source": "mmu",
                    "mmu": {"hsc": str(raw / "hsc"), "legacysurvey": str(raw / "legacysurvey")},
                },
                "aux": {"provabgs": {"path": str(tmp_path / "provabgs")}},
            }
        )
    )
    dry = run_snakemake(tmp_path, "all", "-n", "--cores", "1", "--configfile", str(config))
    assert dry.returncode == 0, dry.stderr
    assert "provabgs_targets" in dry.stdout + dry.stderr
    res = run_snakemake(tmp_path, "results/real/provabgs.parquet", "--cores", "1", "--configfile", str(config))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    table = pd.read_parquet(tmp_path / "results/real/provabgs.parquet")
    pairs = pd.read_parquet(tmp_path / "results/real/pairs.parquet")
    assert len(table) == len(pairs)
    matched = table["provabgs_object_id"].notna()
    assert 0.4 * len(table) < matched.sum() < len(table)  # 70 % of the sky has spectra
    # Each matched pair got its own galaxy's redshift.
    legacy = pd.read_parquet(tmp_path / "results/real/catalog_legacysurvey.parquet", columns=["object_id"])
    ids = legacy["object_id"].astype(str).to_numpy()[pairs["legacysurvey_row"].to_numpy()]
    z_true = seen.assign(k=seen["legacysurvey_object_id"].astype(str)).set_index("k")["redshift"]
    np.testing.assert_allclose(table.loc[matched, "z"], z_true.loc[ids[matched.to_numpy()]].to_numpy())
    assert "provabgs" in (tmp_path / "results/real/logs/provabgs_targets.log").read_text()
    # Configured but missing: the workflow stops before any job, naming the key.
    config.write_text(config.read_text().replace(str(tmp_path / "provabgs"), str(tmp_path / "gone")))
    bad = run_snakemake(tmp_path, "all", "-n", "--cores", "1", "--configfile", str(config))
    assert bad.returncode != 0 and "aux.provabgs.path: directory" in bad.stdout + bad.stderr
