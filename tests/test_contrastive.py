"""Seed 001's methods: the generalised InfoNCE, the dual encoder and single latent, the method registry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from whatsreal.config import run_config, validate_config
from whatsreal.experiments.embeddings import SPACES, latent_columns, paired_latents, read_embeddings
from whatsreal.export import export_model
from whatsreal.layout import DatasetLayout
from whatsreal.methods import METHODS, build_module, export_checkpoint, method_of, run_method
from whatsreal.model.checkpoint import load_trained_model
from whatsreal.model.contrastive import (
    DualContrastiveModel,
    SingleLatentModel,
    build_contrastive_model,
    contrastive_candidates,
    generalized_info_nce,
)
from whatsreal.plan import BASE_RULES, GENERATIVE_RULES, generative_runs, run_rules
from whatsreal.provenance import describe_differences, training_fingerprint
from whatsreal.rule_settings import rule_settings
from whatsreal.train.module import ContrastiveModule, FlowMatchingModule
from whatsreal.train.run import train

from .conftest import SCHEMA, TINY_MODEL, tiny_config, tiny_model_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NO_DECODER = {"export", "conditioning_gain", "noise_model", "posterior_samples", *GENERATIVE_RULES}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --------------------------------------------------------------------------- the loss


def test_generalized_info_nce_equals_the_seed_formula_by_hand():
    rng = np.random.default_rng(0)
    anchors = rng.normal(size=(3, 5))
    candidates = rng.normal(size=(6, 5))
    positive = np.zeros((3, 6), dtype=bool)
    positive[0, [3]] = True
    positive[1, [4, 5]] = True  # two positives
    valid = np.ones((3, 6), dtype=bool)
    valid[0, 0] = valid[1, 1] = valid[2, 2] = False  # the anchor itself
    valid[1, 2] = False  # a padded view: neither positive nor negative
    tau = 0.3
    loss, has = generalized_info_nce(
        torch.tensor(anchors), torch.tensor(candidates), torch.tensor(positive), torch.tensor(valid), tau
    )
    sims = _unit(anchors) @ _unit(candidates).T / tau
    expected = []
    for i in range(2):
        pos = np.exp(sims[i, positive[i]]).sum()
        neg = np.exp(sims[i, valid[i] & ~positive[i]]).sum()
        expected.append(-np.log(pos / (pos + neg)))
    np.testing.assert_allclose(loss.numpy()[:2], expected, rtol=1e-5)
    assert has.tolist() == [True, True, False]
    assert loss[2] == 0  # no positive: no term, left out of the batch mean


def test_two_positives_are_summed_inside_the_log():
    """Eq. 7 sums the positives' exponentials in the numerator: two positives at similarities
    s1, s2 weigh as one of similarity tau*log(e^{s1/tau} + e^{s2/tau}), not as the mean of two
    one-positive losses (the SupCon "outside" form)."""
    tau = 0.5
    a = torch.tensor([[1.0, 0.0]])
    angles = torch.tensor([0.3, 1.1, 2.0, 2.8])  # two positives, two negatives
    c = torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    positive = torch.tensor([[True, True, False, False]])
    valid = torch.ones_like(positive)
    loss, _ = generalized_info_nce(a, c, positive, valid, tau)
    e = torch.exp(torch.cos(angles) / tau)
    assert loss.item() == pytest.approx(-torch.log((e[0] + e[1]) / e.sum()).item(), rel=1e-6)
    one_each = [-torch.log(e[p] / (e[p] + e[2] + e[3])).item() for p in (0, 1)]
    assert loss.item() != pytest.approx(float(np.mean(one_each)), rel=1e-3)
    # A duplicate of a positive doubles its weight in the numerator and the denominator.
    dup, _ = generalized_info_nce(a, c[[0, 0, 2, 3]], positive, valid, tau)
    assert dup.item() == pytest.approx(
        -np.log(2 * e[0].item() / (2 * e[0].item() + e[2].item() + e[3].item())), rel=1e-5
    )


def test_info_nce_pulls_same_object_embeddings_together():
    """A planted toy: each object is a direction in 8-D, its two views add a view-specific
    "instrument" offset much larger than the object signal. A few steps of InfoNCE on a linear
    encoder raise the similarity of same-object views over that of different objects."""
    g = torch.Generator().manual_seed(0)
    n, d = 16, 8
    objects = torch.randn(n, d, generator=g)
    instruments = 3 * torch.randn(2, d, generator=g)
    view_a = objects + instruments[0] + 0.1 * torch.randn(n, d, generator=g)
    view_b = objects + instruments[1] + 0.1 * torch.randn(n, d, generator=g)
    torch.manual_seed(0)
    encoder = torch.nn.Linear(d, 4)
    opt = torch.optim.Adam(encoder.parameters(), lr=0.05)
    positive = torch.cat([torch.zeros(n, n, dtype=torch.bool), torch.eye(n, dtype=torch.bool)], 1)
    valid = torch.cat([~torch.eye(n, dtype=torch.bool), torch.ones(n, n, dtype=torch.bool)], 1)

    def gap() -> float:
        with torch.no_grad():
            za = torch.nn.functional.normalize(encoder(view_a), dim=1)
            zb = torch.nn.functional.normalize(encoder(view_b), dim=1)
            sim = za @ zb.T
            return (sim.diag().mean() - sim[~torch.eye(n, dtype=torch.bool)].mean()).item()

    before = gap()
    losses = []
    for _ in range(30):
        za, zb = encoder(view_a), encoder(view_b)
        loss, has = generalized_info_nce(za, torch.cat([za, zb]), positive, valid, 0.2)
        loss = loss[has].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert gap() > before + 0.15, (before, gap())  # 0.06 -> 0.23 with this seed


# --------------------------------------------------------------------------- the models


def _batch(b: int = 4, k: int = 3, size: int = 48, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, k, dtype=torch.bool)
    mask[0] = False  # an anchor without neighbours
    mask[1, 1:] = False
    return {
        "target": torch.randn(b, 4, size, size, generator=g),
        "physics": torch.randn(b, 1, 4, size, size, generator=g),
        "physics_mask": torch.ones(b, 1, dtype=torch.bool),
        "instrument": torch.randn(b, k, 4, size, size, generator=g),
        "instrument_mask": mask,
        "anchor": torch.tensor([0, 1] * (b // 2)),
        "pair": torch.arange(b),
    }


def _contrastive_cfg(method: str = "contrastive", **contrastive) -> dict:
    cfg = tiny_config(model=TINY_MODEL, contrastive=contrastive)
    cfg["method"] = method
    return validate_config(cfg, SCHEMA)


def test_dual_model_losses_mask_padded_neighbours_and_reconstruct():
    torch.manual_seed(0)
    model = build_contrastive_model(_contrastive_cfg())
    assert isinstance(model, DualContrastiveModel) and model.decoder is not None
    batch = _batch()
    losses = model.losses(batch)
    assert losses.physics_has.all()
    assert losses.instrument_has.tolist() == [False, True, True, True]
    assert losses.reconstruction.shape == (4,) and (losses.reconstruction > 0).all()
    parts = losses.total({"physics": 1.0, "instrument": 2.0, "reconstruction": 0.5})
    expected = parts["physics"] + 2 * parts["instrument"] + 0.5 * parts["reconstruction"]
    assert parts["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["instrument"].item() == pytest.approx(losses.instrument[1:].mean().item(), rel=1e-6)
    # A padded neighbour's pixels change nothing.
    changed = {**batch, "instrument": batch["instrument"].clone()}
    changed["instrument"][1, 2] += 100.0
    model.eval()
    with torch.no_grad():
        a, b = model.losses(batch), model.losses(changed)
    torch.testing.assert_close(a.instrument, b.instrument)
    without = build_contrastive_model(_contrastive_cfg(reconstruction=False))
    assert without.decoder is None and without.losses(batch).reconstruction is None


def test_single_latent_has_one_encoder_and_the_physics_loss_only():
    model = build_contrastive_model(_contrastive_cfg("single_latent"))
    assert isinstance(model, SingleLatentModel) and not hasattr(model, "instrument_encoder")
    losses = model.losses(_batch())
    assert set(losses.terms()) == {"physics"} and losses.physics_has.all()


# --------------------------------------------------------------------------- registry, settings, plan


def test_method_key_defaults_to_flow_matching_and_picks_the_module():
    assert validate_config({}, SCHEMA)["method"] == "flow_matching"
    assert method_of({}).name == "flow_matching"
    assert set(METHODS) >= {"flow_matching", "contrastive", "single_latent"}
    assert isinstance(build_module(tiny_config(model=TINY_MODEL)), FlowMatchingModule)
    assert isinstance(build_module(_contrastive_cfg()), ContrastiveModule)


def test_train_settings_hold_method_keys_only_for_the_methods_that_read_them():
    flow = tiny_config(model=TINY_MODEL)
    settings = json.loads(rule_settings(flow, "train"))
    assert set(settings) == {"model", "train", "neighbours.mode", "preprocess"}  # as before methods existed
    changed = {**flow, "contrastive": {**flow["contrastive"], "temperature": 0.5}}
    assert rule_settings(changed, "train") == rule_settings(flow, "train")
    con = _contrastive_cfg()
    assert {"method", "contrastive"} <= set(json.loads(rule_settings(con, "train")))
    hotter = _contrastive_cfg(temperature=0.5)
    assert rule_settings(hotter, "train") != rule_settings(con, "train")
    single = _contrastive_cfg("single_latent")
    no_decoder = _contrastive_cfg("single_latent", reconstruction=False)
    assert rule_settings(single, "train") == rule_settings(no_decoder, "train")  # it has no decoder


def test_plan_gives_non_flow_runs_the_embedding_rules_only():
    cfg = tiny_config(
        runs={"main": {}, "contrastive": {"method": "contrastive"}, "single": {"method": "single_latent"}},
        experiments={"generative_runs": None, "ablation": {"reference": "main", "ablated": "contrastive"}},
    )
    assert run_method(cfg, "contrastive").name == "contrastive" and run_method(cfg, "main").name == "flow_matching"
    assert generative_runs(cfg) == ["main"]
    main, con, single = (run_rules(cfg, r) for r in ("main", "contrastive", "single"))
    assert set(BASE_RULES) <= set(main) and "posterior_samples" in main
    assert con[:6] == ["train", "embed", "umap", "outliers", "probes", "retrieval"]
    assert not NO_DECODER & set(con)
    assert "ablation" in con and "truth_metrics" in con
    assert single == ["train", "embed"]
    cfg["experiments"]["ablation"]["ablated"] = "single"
    assert "ablation" not in run_rules(cfg, "single")  # no probe tables to compare


# --------------------------------------------------------------------------- training and export


@pytest.mark.slow  # trains two tiny models in-process
@pytest.mark.parametrize("method", ["contrastive", "single_latent"])
def test_tiny_training_writes_the_run_and_its_embeddings_pass_the_contract(method, tiny_data, tmp_path):
    _, data = tiny_data
    base = tiny_model_config(max_steps=4, val_every_steps=2, checkpoint_every_steps=2)
    base["runs"] = {"run": {"method": method}}
    cfg = run_config(base, "run", SCHEMA)
    run_dir = tmp_path / "run"
    train(cfg, data, run_dir, run_dir / "model.ckpt")
    assert (run_dir / "model.ckpt").exists() and (run_dir / "checkpoints" / "last.ckpt").exists()
    metrics = pd.read_csv(run_dir / "metrics.csv")
    for col in ("train/loss", "val/loss", "train/loss_physics", "val/loss_hsc", "lr"):
        assert col in metrics.columns and metrics[col].notna().any(), col
    assert ("train/loss_instrument" in metrics.columns) == (method == "contrastive")
    assert np.isfinite(metrics["train/loss"].dropna()).all()

    ckpt = torch.load(run_dir / "model.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4
    saved_prov = ckpt["hyper_parameters"]["provenance"]
    files = DatasetLayout.of(data).run_data_files(cfg["neighbours"]["mode"])
    assert describe_differences(saved_prov, training_fingerprint(rule_settings(cfg, "train"), files)) == []
    hotter = {**cfg, "contrastive": {**cfg["contrastive"], "temperature": 0.5}}
    reasons = describe_differences(saved_prov, training_fingerprint(rule_settings(hotter, "train"), files))
    assert any("temperature" in r for r in reasons), reasons  # a changed setting retrains, never resumes

    net, saved = load_trained_model(run_dir / "model.ckpt", cfg)
    assert isinstance(net, DualContrastiveModel if method == "contrastive" else SingleLatentModel)
    assert saved["method"] == method
    out, tokens = tmp_path / "embeddings.parquet", tmp_path / "tokens.npz"
    export_checkpoint(run_dir / "model.ckpt", data, out, tokens, batch_size=16)  # as the embed rule does
    spaces = METHODS[method].spaces
    emb = read_embeddings(out, spaces=spaces)
    n_pairs = len(np.load(data / "images_hsc.npy", mmap_mode="r"))
    assert len(emb) == 2 * n_pairs and set(emb["survey"]) == {"hsc", "legacysurvey"}
    assert len(latent_columns(emb, SPACES["physics"], out)) == 64
    assert ("inst_0" in emb.columns) == (method == "contrastive")
    if method == "contrastive":
        assert len(latent_columns(emb, SPACES["instrument"], out)) == 16
    x = paired_latents(emb, SPACES["physics"], np.arange(n_pairs), out)
    assert np.isfinite(x).all() and x.std(axis=0).max() > 0
    with np.load(tokens) as npz:
        assert {f"hsc_{s}" for s in spaces} <= set(npz.files)
        assert ("hsc_instrument" in npz.files) == (method == "contrastive")
    meta = {s: data / f"meta_{s}.parquet" for s in ("hsc", "legacysurvey")}
    with pytest.raises(ValueError, match="no flow-matching decoder to export"):
        export_model(run_dir / "model.ckpt", meta, tmp_path / "model")
    assert not (tmp_path / "model").exists()


@pytest.mark.slow  # trains a tiny model in-process, twice
def test_killed_contrastive_training_resumes_from_last_checkpoint(tiny_data, tmp_path, monkeypatch):
    _, data = tiny_data
    base = tiny_model_config(max_steps=4, val_every_steps=2, checkpoint_every_steps=2)
    base["runs"] = {"run": {"method": "contrastive"}}
    cfg = run_config(base, "run", SCHEMA)
    run_dir = tmp_path / "run"
    original = ContrastiveModule.training_step

    def dies_at_step_3(self, batch, batch_idx):
        if self.global_step == 3:
            raise RuntimeError("SIGTERM: time limit")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(ContrastiveModule, "training_step", dies_at_step_3)
    with pytest.raises(RuntimeError, match="time limit"):
        train(cfg, data, run_dir, run_dir / "model.ckpt")
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    monkeypatch.setattr(ContrastiveModule, "training_step", original)
    train(cfg, data, run_dir, run_dir / "model.ckpt")  # the retry resumes at step 2
    assert torch.load(run_dir / "model.ckpt", weights_only=True)["global_step"] == 4
    steps = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["train/loss"])["step"]
    assert sorted(set(steps)) == [0, 1, 2, 3], "history from before the restart is kept"
    assert not (run_dir / "stale").exists(), "same settings and data: resumed, not restarted"


# --------------------------------------------------------------------------- negatives across DDP ranks


def _toy_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """8 anchors (16-D), 11 views owned unevenly (anchor 5 has none), as one process would see them."""
    g = torch.Generator().manual_seed(seed)
    anchors = torch.randn(8, 16, generator=g)
    owner = torch.tensor([0, 0, 1, 2, 3, 3, 3, 4, 6, 7, 7])
    views = anchors[owner] + 0.5 * torch.randn(len(owner), 16, generator=g)
    return anchors, views, owner


def _rank_share(rank: int) -> tuple[slice, torch.Tensor]:
    """Rank 0 holds anchors 0-3, rank 1 anchors 4-7; each holds its anchors' views (7 and 4 of them)."""
    _, _, owner = _toy_batch()
    rows = slice(0, 4) if rank == 0 else slice(4, 8)
    return rows, (owner >= rows.start) & (owner < rows.stop)


def _ranked_losses(rank: int, world: int, init_file: str, out: str) -> None:
    """One gloo rank: InfoNCE over the gathered candidates, its loss per anchor and the gradients of its rows."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    anchors, views, owner = _toy_batch()
    rows, mine = _rank_share(rank)
    a = anchors[rows].clone().requires_grad_(True)
    v = views[mine].clone().requires_grad_(True)
    c, positive, valid = contrastive_candidates(a, v, owner[mine] - rows.start)
    loss, has = generalized_info_nce(a, c, positive, valid, 0.2)
    ((loss * has).sum() / has.sum()).backward()
    torch.save({"loss": loss.detach(), "has": has, "grad_a": a.grad, "grad_v": v.grad}, out)
    dist.destroy_process_group()


@pytest.mark.slow  # spawns two processes (a gloo group), each importing torch and the package
def test_negatives_are_gathered_from_every_ddp_rank_with_their_gradients(tmp_path):
    """Two CPU ranks (gloo) holding half a batch each score every anchor exactly as one process holding the
    whole batch (same candidates: all anchors and views of both ranks), and each rank's rows get the
    gradient of both ranks' losses (DDP then averages the parameters' gradients over the ranks)."""
    import torch.multiprocessing as mp

    outs = [str(tmp_path / f"rank{r}.pt") for r in range(2)]
    mp.start_processes(
        _ranked_losses_entry, args=(2, str(tmp_path / "init"), outs), nprocs=2, join=True, start_method="spawn"
    )
    anchors, views, owner = _toy_batch()
    a, v = anchors.clone().requires_grad_(True), views.clone().requires_grad_(True)
    c, positive, valid = contrastive_candidates(a, v, owner)  # one process: nothing is gathered
    assert c.shape == (19, 16) and positive.shape == valid.shape == (8, 19)
    loss, has = generalized_info_nce(a, c, positive, valid, 0.2)
    assert has.tolist() == [True] * 5 + [False] + [True] * 2
    # The ranks' objective: each rank's mean over its own anchors with a positive, summed over ranks.
    (sum((loss[r] * has[r]).sum() / has[r].sum() for r in (slice(0, 4), slice(4, 8)))).backward()
    ranks = [torch.load(o) for o in outs]
    torch.testing.assert_close(torch.cat([r["loss"] for r in ranks]), loss.detach())
    assert torch.equal(torch.cat([r["has"] for r in ranks]), has)
    for rank, r in enumerate(ranks):
        rows, mine = _rank_share(rank)
        torch.testing.assert_close(r["grad_a"], a.grad[rows])
        torch.testing.assert_close(r["grad_v"], v.grad[mine])


def _ranked_losses_entry(rank: int, world: int, init_file: str, outs: list[str]) -> None:
    _ranked_losses(rank, world, init_file, outs[rank])
