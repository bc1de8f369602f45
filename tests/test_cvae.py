"""Seed 003's physics-informed CVAE (``method: cvae``): the objective's terms by hand, a planted
property recovered, labels joined and masked, and a tiny training through ``train()`` whose
embeddings follow the contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from whatsreal.config import run_config, validate_config
from whatsreal.data.cvae import property_labels, training_files
from whatsreal.experiments.embeddings import paired_latents, read_embeddings
from whatsreal.layout import DatasetLayout
from whatsreal.methods import checkpoint_method, export_checkpoint, method_of, training_data_files
from whatsreal.model.checkpoint import read_checkpoint
from whatsreal.model.cvae import PhysicsCVAE, anomaly_scores, cvae_loss, gaussian_kl
from whatsreal.model.cvae_embed import ANOMALY_COLUMN, PREDICTION_PREFIX
from whatsreal.rule_settings import rule_settings
from whatsreal.surveys import SURVEY_ORDER
from whatsreal.train.datamodules import CvaeDataModule
from whatsreal.train.run import train

from .conftest import SCHEMA, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_CVAE = {"channels": [4, 8], "hidden": 16}
TRAIN = {
    "max_steps": 4,
    "batch_size": 8,
    "val_every_steps": 2,
    "checkpoint_every_steps": 2,
    "num_workers": 0,
    "accelerator": "cpu",
    "progress_bar": False,
    "log_every_steps": 1,
}


def _config(source: str = "synthetic", provabgs: str | None = None, **cvae: object) -> dict:
    """A validated cvae run config over 8x8 cutouts (the fake dataset's)."""
    cfg = {
        "dataset": {"name": "fake", "source": source, "mmu": {"hsc": "unused", "legacysurvey": "unused"}},
        "preprocess": {"size": 8},
        "aux": {"provabgs": {"path": provabgs}},
        "train": dict(TRAIN),
        "method": "cvae",
        "cvae": {**TINY_CVAE, **cvae},
    }
    return run_config(validate_config(cfg, SCHEMA, check_paths=False), "main", SCHEMA, check_paths=False)


def _fake_dataset(root, n: int = 40, seed: int = 0) -> tuple[DatasetLayout, pd.DataFrame]:
    """A preprocessed dataset in the layout (images, meta, split, truth, provabgs): galaxies whose
    brightness grows with redshift, pair 3 with no truth_id, pair 5 dropped (blank cutout)."""
    rng = np.random.default_rng(seed)
    data = DatasetLayout(root)
    data.root.mkdir(parents=True, exist_ok=True)
    truth = pd.DataFrame(
        {
            "truth_id": np.arange(100, 100 + n)[::-1],  # not in pair order: the join must use the id
            "redshift": rng.uniform(0.05, 1.0, n),
            "log_mstar": rng.normal(10.0, 0.5, n),
            "log_ssfr": rng.normal(-10.0, 0.8, n),
        }
    )
    truth["legacysurvey_object_id"] = [f"L{t}" for t in truth["truth_id"]]
    data.truth.parent.mkdir(parents=True, exist_ok=True)
    truth.to_parquet(data.truth)
    split = pd.DataFrame({"pair": np.arange(n), "split": np.where(np.arange(n) < n - 8, "train", "val")})
    split.to_parquet(data.split)
    tids = truth["truth_id"].to_numpy()[rng.permutation(n)]
    by_id = truth.set_index("truth_id")
    yy, xx = np.mgrid[:8, :8]
    blob = np.exp(-((yy - 3.5) ** 2 + (xx - 3.5) ** 2) / 4.0)
    for survey in SURVEY_ORDER:
        amp = by_id.loc[tids, "redshift"].to_numpy()
        images = amp[:, None, None, None] * blob + 0.05 * rng.normal(size=(n, 4, 8, 8))
        np.save(data.images(survey), images.astype(np.float32))
        meta = pd.DataFrame(
            {
                "pair": np.arange(n),
                "object_id": [f"{survey[0]}{i}" for i in range(n)],
                "truth_id": pd.array(tids, dtype="Int64"),
                "ra": rng.uniform(0, 1, n),
                "dec": rng.uniform(0, 1, n),
                "split": split["split"],
                "blank_dropped": np.arange(n) == 5,
            }
        )
        meta.loc[3, "truth_id"] = pd.NA
        meta.to_parquet(data.meta(survey))
    provabgs = pd.DataFrame({"pair": np.arange(n), "z": np.linspace(0.1, 0.5, n), "log_mstar": 10.0, "log_ssfr": -10.0})
    provabgs.loc[::4, "z"] = np.nan  # no spectrum
    provabgs.to_parquet(data.provabgs)
    return data, truth


# --------------------------------------------------------------------------- the objective


def test_objective_terms_equal_a_hand_computation():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 4, 4)
    rec = torch.randn(3, 2, 4, 4)
    props = torch.randn(3, 2)
    mu = torch.randn(3, 2)
    logvar = torch.randn(3, 2) * 0.5
    labels = torch.tensor([[0.5, float("nan")], [float("nan"), float("nan")], [-1.0, 2.0]])
    terms = cvae_loss(x, rec, props, mu, logvar, labels, reconstruction_weight=2.0, beta=0.5, property_weight=3.0)

    xn, rn, pn, mn, vn, ln = (t.double().numpy() for t in (x, rec, props, mu, logvar, labels))
    rec_hand = np.mean((rn - xn) ** 2)
    kl_hand = np.mean(np.sum(0.5 * (mn**2 + np.exp(vn) - 1.0 - vn), axis=1))
    known = np.isfinite(ln)
    prop_hand = np.mean((pn[known] - ln[known]) ** 2)  # 3 labelled entries of 6
    assert terms.n_labelled == 3
    assert terms.reconstruction.item() == pytest.approx(rec_hand, rel=1e-5)
    assert terms.kl.item() == pytest.approx(kl_hand, rel=1e-5)
    assert terms.property.item() == pytest.approx(prop_hand, rel=1e-5)
    assert terms.total.item() == pytest.approx(2.0 * rec_hand + 0.5 * kl_hand + 3.0 * prop_hand, rel=1e-5)
    # The closed-form KL is torch's own KL between the two Gaussians.
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    assert torch.allclose(gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p), atol=1e-6)


def test_a_batch_without_labels_adds_no_property_loss_but_keeps_the_graph():
    model = PhysicsCVAE(2, 8, n_properties=2, free_dims=1, channels=(4,), hidden=8)
    x = torch.randn(4, 2, 8, 8)
    rec, props, mu, logvar = model(x)
    terms = cvae_loss(x, rec, props, mu, logvar, torch.full((4, 2), float("nan")))
    assert terms.n_labelled == 0 and terms.property.item() == 0.0
    assert terms.total.item() == pytest.approx(terms.reconstruction.item() + terms.kl.item(), rel=1e-6)
    terms.total.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_the_decoder_returns_the_input_shape_for_odd_sizes():
    model = PhysicsCVAE(3, 13, n_properties=1, free_dims=2, channels=(4, 8, 8), hidden=8)
    rec, props, mu, logvar = model(torch.randn(2, 3, 13, 13))
    assert rec.shape == (2, 3, 13, 13) and props.shape == (2, 1) and mu.shape == logvar.shape == (2, 2)
    assert model.latent_mean(torch.randn(5, 3, 13, 13)).shape == (5, 3)


def test_the_property_dimension_recovers_a_planted_linear_property():
    """Images linear in a property (a blob whose amplitude is the property, plus noise): a few
    dozen steps of the full objective put it in the property dimension, held-out R^2 > 0.9."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    blob = torch.exp(-((yy - 5.5) ** 2 + (xx - 5.5) ** 2) / 8.0)

    def planted(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randn(n, generator=gen)
        x = y[:, None, None, None] * blob * torch.tensor([1.0, 0.5])[:, None, None]
        return x + 0.1 * torch.randn(n, 2, 12, 12, generator=gen), y[:, None]

    x_train, y_train = planted(512)
    x_test, y_test = planted(256)
    model = PhysicsCVAE(2, 12, n_properties=1, free_dims=1, channels=(8, 16), hidden=32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        idx = torch.randint(0, len(x_train), (64,), generator=gen)
        rec, props, mu, logvar = model(x_train[idx])
        cvae_loss(x_train[idx], rec, props, mu, logvar, y_train[idx]).total.backward()
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        pred = model.latent_mean(x_test)[:, 0]
    r2 = 1 - ((pred - y_test[:, 0]) ** 2).sum() / ((y_test[:, 0] - y_test.mean()) ** 2).sum()
    assert r2.item() > 0.9


def test_anomaly_scores_rank_a_planted_outlier_first_and_leave_self_matches_out():
    rng = np.random.default_rng(0)
    latents = np.concatenate([rng.normal(size=(200, 3)), [[8.0, 8.0, -8.0]]])
    reference = np.ones(len(latents), dtype=bool)
    reference[-1] = False
    scores = anomaly_scores(latents, reference, k=5, chunk=64)
    assert np.argmax(scores) == len(latents) - 1
    # A duplicated reference point is 0 away from its twin, never from itself.
    dup = np.concatenate([latents[:200], latents[:1]])
    s = anomaly_scores(dup, np.ones(201, dtype=bool), k=1)
    assert s[0] == 0.0 and s[200] == 0.0 and (s[1:200] > 0).all()


# --------------------------------------------------------------------------- data and labels


def test_labels_come_from_the_truth_table_by_truth_id_and_are_standardised_on_train(tmp_path):
    data, truth = _fake_dataset(tmp_path / "d")
    cfg = _config()
    labels = property_labels(cfg, data)
    meta = pd.read_parquet(data.meta("legacysurvey"))
    # An independent join: the meta object's truth row found by the truth table's own id column.
    by_id = truth.set_index("truth_id")
    for pair in (0, 7, 20):
        tid = int(meta.loc[pair, "truth_id"])
        assert labels.values[pair, 0] == pytest.approx(by_id.loc[tid, "redshift"])
        assert labels.values[pair, 2] == pytest.approx(by_id.loc[tid, "log_ssfr"])
    assert np.isnan(labels.values[3]).all(), "no truth_id, no label"
    train = (np.arange(40) < 32) & (np.arange(40) != 5) & (np.arange(40) != 3)
    z = labels.standardised()[train]
    assert np.allclose(z.mean(axis=0), 0.0, atol=1e-5) and np.allclose(z.std(axis=0), 1.0, atol=1e-4)

    dm = CvaeDataModule(cfg, data)
    dm.setup()
    assert 5 not in dm.train_set.pairs and len(dm.train_set) == 31 and len(dm.val_set) == 8
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 4, 8, 8) and batch["labels"].shape == (8, 3)
    images = np.load(data.images("legacysurvey"))
    assert np.array_equal(batch["image"].numpy(), images[batch["pair"].numpy()])


def test_real_data_reads_provabgs_when_set_and_no_labels_otherwise(tmp_path):
    data, _ = _fake_dataset(tmp_path / "d")
    with_spec = _config(source="mmu", provabgs=str(tmp_path), properties=["redshift"])
    labels = property_labels(with_spec, data)
    table = pd.read_parquet(data.provabgs)
    assert np.allclose(labels.values[:, 0], table["z"].to_numpy(), equal_nan=True)
    assert data.provabgs in training_files(with_spec, data) and data.truth not in training_files(with_spec, data)

    without = _config(source="mmu")
    assert np.isnan(property_labels(without, data).values).all()
    assert data.provabgs not in training_files(without, data)
    assert data.truth in training_files(_config(), data)


def test_the_registry_names_cvae_files_and_flow_matching_keeps_its_triplets(tmp_path):
    data = DatasetLayout(tmp_path)
    cfg = _config()
    assert method_of(cfg).name == "cvae"
    files = training_data_files(cfg, data)
    assert data.truth in files and not any("neighbours" in p.name for p in files)
    flow = dict(cfg, method="flow_matching")
    assert method_of(flow).name == "flow_matching"
    assert training_data_files(flow, data) == data.run_data_files(cfg["neighbours"]["mode"])
    # A changed CVAE weight is a different trained model: the train rule reruns ...
    assert rule_settings(cfg, "train") != rule_settings(_config(beta=0.5), "train")
    # ... but not a flow-matching run, which never reads the cvae section.
    flow_beta = dict(flow, cvae=dict(flow["cvae"], beta=0.5))
    assert rule_settings(flow, "train") == rule_settings(flow_beta, "train")
    assert '"cvae"' not in rule_settings(flow, "train") and '"cvae"' in rule_settings(cfg, "train")


# --------------------------------------------------------------------------- training and export


def test_a_tiny_training_writes_the_model_and_metrics_and_contract_embeddings(tmp_path):
    data, _ = _fake_dataset(tmp_path / "d")
    cfg = _config()
    run = tmp_path / "run"
    train(cfg, data, run, run / "model.ckpt")
    assert (run / "model.ckpt").exists()
    metrics = pd.read_csv(run / "metrics.csv")
    for column in ("train/loss", "train/reconstruction", "train/kl", "train/property", "val/loss", "lr"):
        assert column in metrics.columns and metrics[column].notna().any(), column
    assert metrics["step"].max() == 3

    assert checkpoint_method(run / "model.ckpt").name == "cvae"
    out, tokens = run / "embeddings.parquet", run / "embeddings_tokens.npz"
    export_checkpoint(run / "model.ckpt", data, out, tokens, 16, torch.device("cpu"))

    emb = read_embeddings(out, spaces=("physics",))
    assert not any(c.startswith("inst_") for c in emb.columns)
    with pytest.raises(ValueError, match="inst_"):
        read_embeddings(out)  # no instrument latent: the instrument experiments do not apply
    assert list(emb.columns[:6]) == ["object_id", "pair", "survey", "ra", "dec", "split"]
    assert len(emb) == 2 * 40 and list(emb["survey"].unique()) == list(SURVEY_ORDER)
    phys = [c for c in emb.columns if c.startswith("phys_")]
    assert phys == ["phys_0", "phys_1", "phys_2", "phys_3"]  # 3 properties + 1 free dimension
    both = paired_latents(emb, "phys_", np.arange(40), out)
    assert both.shape == (80, 4) and np.isfinite(both).all()

    ckpt = read_checkpoint(run / "model.ckpt")
    assert ckpt["hyper_parameters"]["config"]["method"] == "cvae"
    pred = emb[f"{PREDICTION_PREFIX}redshift"].to_numpy()
    mean, std = ckpt["state_dict"]["label_mean"].numpy(), ckpt["state_dict"]["label_std"].numpy()
    assert np.allclose(pred, emb["phys_0"] * std[0] + mean[0], rtol=1e-5)
    # The standardisation in the checkpoint is the training split's (usable, labelled pairs).
    train_z = property_labels(cfg, data).values[:32, 0]
    assert mean[0] == pytest.approx(np.nanmean(np.delete(train_z, 5)), rel=1e-9)
    assert std[0] == pytest.approx(np.nanstd(np.delete(train_z, 5)), rel=1e-9)
    assert np.isfinite(emb[ANOMALY_COLUMN]).all() and (emb[ANOMALY_COLUMN] >= 0).all()
    saved_tokens = np.load(tokens)
    assert saved_tokens["legacysurvey_physics"].shape == (40, 1, 4)
    assert np.allclose(saved_tokens["hsc_physics"][:, 0], both[:40])


@pytest.mark.slow  # simulates the tiny sky (session fixture) and trains on it
def test_a_cvae_run_on_the_simulated_sky_trains_on_its_truth_table(tiny_sky, tiny_data, tmp_path):
    """The real pipeline's files: labels joined through the preprocessed meta's truth_id, the
    default 48x48 cutouts, the run config as the workflow builds it."""
    _, raw, _ = tiny_sky
    _, out = tiny_data
    data = DatasetLayout(tmp_path / "data")
    data.truth.parent.mkdir(parents=True)
    for path in out.iterdir():
        (data.root / path.name).symlink_to(path)
    data.truth.symlink_to(raw / "truth.parquet")
    cfg = tiny_config(train=TRAIN, cvae=TINY_CVAE)
    cfg["runs"] = {"cvae": {"method": "cvae"}}
    cfg = run_config(cfg, "cvae", SCHEMA)
    labels = property_labels(cfg, data)
    truth = pd.read_parquet(raw / "truth.parquet").set_index("legacysurvey_object_id")
    meta = pd.read_parquet(data.meta("legacysurvey"))
    expected = truth.loc[meta["object_id"].astype(str), "redshift"].to_numpy()
    assert np.allclose(labels.values[:, 0], expected)
    run = tmp_path / "run"
    train(cfg, data, run, run / "model.ckpt")
    emb = export_of(run / "model.ckpt", data, run)
    assert len(emb) == 2 * len(meta) and np.isfinite(emb[f"{PREDICTION_PREFIX}log_mstar"]).all()


def export_of(checkpoint, data: DatasetLayout, run) -> pd.DataFrame:
    """The embed rule's dispatch: the checkpoint's method exports its embeddings."""
    export_checkpoint(
        checkpoint, data, run / "embeddings.parquet", run / "embeddings_tokens.npz", 32, torch.device("cpu")
    )
    return read_embeddings(run / "embeddings.parquet", spaces=("physics",))


def test_an_interrupted_cvae_training_resumes_at_its_last_checkpoint(tmp_path, monkeypatch):
    """The train rule's resumption (last.ckpt, provenance) holds for the CVAE's module too."""
    from whatsreal.train.cvae import CvaeModule

    data, _ = _fake_dataset(tmp_path / "d")
    cfg = _config()
    cfg["train"].update(max_steps=8, val_every_steps=4, checkpoint_every_steps=4)
    run = tmp_path / "run"
    original = CvaeModule.training_step

    def dies_at_step_6(self, batch, batch_idx):
        if self.global_step == 6:
            raise RuntimeError("SIGTERM: time limit")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(CvaeModule, "training_step", dies_at_step_6)
    with pytest.raises(RuntimeError, match="time limit"):
        train(cfg, data, run, run / "model.ckpt")
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    monkeypatch.setattr(CvaeModule, "training_step", original)
    train(cfg, data, run, run / "model.ckpt")
    assert torch.load(run / "model.ckpt", weights_only=True)["global_step"] == 8
    steps = pd.read_csv(run / "metrics.csv").dropna(subset=["train/loss"])["step"]
    assert list(steps) == list(range(8)), "the history from before the restart is kept, once"
