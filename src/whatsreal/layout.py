"""Every file the pipeline writes, by name: the one place that knows the results layout.

A dataset's results live under ``results/<dataset.name>/`` (:class:`DatasetLayout`), each
trained run's under ``runs/<run>/`` inside it (:class:`RunLayout`). The Snakemake rules take
their inputs and outputs from here, and library code that reads a dataset asks a layout for
a file instead of building its name, so renaming a file is one edit here and Snakemake
sees every file a rule reads.

The methods take wildcard placeholders as well as values: ``DatasetLayout(r).images("{survey}")``
is the preprocess rule's output pattern, ``DatasetLayout(r).images("hsc")`` one file.

Who writes and who reads each file (rule names as in ``workflow/rules/``):

================================  ======================  ===========================================
file                              written by              read by
================================  ======================  ===========================================
raw/<survey>/healpix=*/           simulate                catalog, preprocess (MMU layout)
raw/truth.parquet, stars.parquet  simulate                preprocess, outliers, probes, noise_model,
                                                          retrieval (lenses), truth_counterfactuals
raw/sky.png                       sky_figure              the report
catalog_<survey>.parquet          catalog                 crossmatch, preprocess, neighbours,
                                                          outliers, noise_model, provabgs_targets
pairs.parquet                     crossmatch              split, preprocess, neighbours
nway/pairs.parquet, split.parquet nway_rows               nway_preprocess, nway_neighbours, training
nway/images_, meta_<survey>,      nway_preprocess,        training of runs with train.data: groups
neighbours_<survey>_<mode>        nway_neighbours         (every registry survey, -1/zeros = unseen)
groups.parquet                    groups                  users (one row per galaxy seen by 1..N
                                                          surveys: the N-way match, issue 16)
split.parquet                     split                   preprocess, training, every experiment
images_<survey>.npy               preprocess              training, embed, experiments
meta_<survey>.parquet             preprocess              training (normalisation), experiments
neighbours_<survey>_<mode>.npz    neighbours              training, posterior_samples, ablation
provabgs.parquet                  provabgs_targets        probes
triplets_<mode>.png               triplet_figure          the report
baselines/*                       random_init_embeddings, probes, outliers
                                  cross_predict,
                                  baseline_probes,
                                  baseline_outliers
runs/<run>/model.ckpt             train                   embed, posterior_samples, noise_model,
                                                          conditioning_gain
runs/<run>/metrics.csv            train                   conditioning_gain
runs/<run>/tensorboard/, wandb/,  train (optional         users (TensorBoard, W&B); wandb_id: the
wandb_id                          loggers)                next (re)start of the same training
runs/<run>/embeddings.parquet     embed                   umap, outliers, probes, retrieval, ablation
runs/<run>/embeddings_tokens.npz  embed                   users (every token, not only the mean)
runs/<run>/model/                 export                  users: whatsreal.load, the whatsreal command
runs/<run>/samples/posterior_*    posterior_samples       counterfactuals, truth_counterfactuals,
                                                          zero_shot, spatial_structure, calibration
runs/<run>/tables/, figures/      one rule per figure     summary, the report
runs/<run>/tables/                outliers                comparison (Fig 3's flow ranking beside
outlier_scores.parquet                                    the other methods')
comparison/*                      comparison              summary, the report (every run, random init
                                                          and raw pixels side by side)
logs/, benchmarks/                every rule              rule_times, summary
summary.md, criteria.csv          summary                 users (every paper number beside ours; the
                                                          paper's claims judged, pass/fail)
================================  ======================  ===========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from whatsreal.surveys import SURVEY_ORDER

__all__ = ["FIGURES", "TABLES", "DatasetLayout", "ModelLayout", "RunLayout", "dataset_layout"]

FIGURES: dict[str, str] = {
    "fig2_umap": "umap",
    "fig3_outliers": "outliers",
    "fig4_probes": "probes",
    "fig5_retrieval": "retrieval",
    "fig6_counterfactuals": "counterfactuals",
    "fig7_noise_model": "noise_model",
    "fig8_spatial_structure": "spatial_structure",
    "fig9_calibration": "calibration",
    "fig9_zero_shot": "zero_shot",
    "ablation_neighbours": "ablation",
    "conditioning_gain": "conditioning_gain",
    "survey_probes": "survey_probes",
    "survey_directions": "survey_directions",
}
"""A run's figures (``figures/<name>.png``) -> the rule that draws it."""

TABLES: dict[str, str] = {
    "outliers.csv": "outliers",
    "truth_outliers.csv": "outliers",
    "outlier_scores.parquet": "outliers",
    "table5_probes.csv": "probes",
    "table5_probes_alternative.csv": "probes",
    "truth_probes.csv": "probes",
    "probe_predictions.npz": "probes",
    "probe_predictions_alternative.npz": "probes",
    "ablation_neighbours.csv": "ablation",
    "ablation_neighbours_alternative.csv": "ablation",
    "neighbour_probe.csv": "ablation",
    "retrieval.csv": "retrieval",
    "counterfactual_mse.csv": "counterfactuals",
    "truth_counterfactuals.csv": "truth_counterfactuals",
    "zero_shot.csv": "zero_shot",
    "noise_model.csv": "noise_model",
    "noise_model_slopes.csv": "noise_model",
    "spatial_structure.csv": "spatial_structure",
    "calibration.csv": "calibration",
    "conditioning_gain.csv": "conditioning_gain",
    "conditioning_sensitivity.csv": "conditioning_gain",
    "conditioning_sensitivity_by_t.csv": "conditioning_gain",
    "truth_metrics.csv": "truth_metrics",
    "survey_probes.csv": "survey_probes",
    "survey_retrieval.csv": "survey_probes",
    "survey_probe_predictions.npz": "survey_probes",
    "survey_ablation.csv": "survey_ablation",
    "survey_directions.csv": "survey_directions",
}
"""A run's tables (``tables/<file>``) -> the rule that writes it."""


@dataclass(frozen=True)
class RunLayout:
    """One trained run's files: ``results/<dataset>/runs/<run>/``."""

    root: Path

    @property
    def model(self) -> Path:
        """The trained model (Lightning checkpoint with the config and normalisation)."""
        return self.root / "model.ckpt"

    @property
    def metrics(self) -> Path:
        """Training and validation losses and conditioning gains per step."""
        return self.root / "metrics.csv"

    @property
    def checkpoints(self) -> Path:
        """Training's resumable state (``last.ckpt``, the finished marker)."""
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        """Where training saves its resumable state (every ``train.checkpoint_every_steps`` and on a signal)."""
        return self.checkpoints / "last.ckpt"

    @property
    def finished(self) -> Path:
        """Written when a training completes: a later job for the run retrains, never resumes."""
        return self.checkpoints / "finished.json"

    @property
    def stale(self) -> Path:
        """Where checkpoints of other settings are moved aside, by time stamp."""
        return self.root / "stale"

    @property
    def training_logs(self) -> Path:
        """Lightning's per-(re)start CSV logs, merged into :attr:`metrics`."""
        return self.root / "logs"

    def training_log_versions(self) -> list[Path]:
        """The CSV log of every (re)start (Lightning's ``version_<n>/metrics.csv``), in start order."""
        found = self.training_logs.glob("version_*/metrics.csv")
        return sorted(found, key=lambda p: int(p.parent.name.split("_")[1]))

    @property
    def tensorboard(self) -> Path:
        """TensorBoard's event files (``train.tensorboard``): ``tensorboard --logdir`` this directory."""
        return self.root / "tensorboard"

    @property
    def wandb(self) -> Path:
        """Weights & Biases' local files (``train.wandb``)."""
        return self.root / "wandb"

    @property
    def wandb_id(self) -> Path:
        """The run's W&B run id, kept so a resumed training (SLURM retry) continues the same W&B run."""
        return self.root / "wandb_id"

    @property
    def embeddings(self) -> Path:
        """Mean-pooled physics and instrument latents of every pair and survey."""
        return self.root / "embeddings.parquet"

    @property
    def embeddings_tokens(self) -> Path:
        """Every token of both latents, row-aligned with :attr:`embeddings`."""
        return self.root / "embeddings_tokens.npz"

    def figure(self, name: str) -> Path:
        """``figures/<name>.png`` for a name of :data:`FIGURES`."""
        if name not in FIGURES:
            raise KeyError(f"unknown figure '{name}'; known: {sorted(FIGURES)}")
        return self.root / "figures" / f"{name}.png"

    def table(self, name: str) -> Path:
        """``tables/<name>`` for a file name of :data:`TABLES`."""
        if name not in TABLES:
            raise KeyError(f"unknown table '{name}'; known: {sorted(TABLES)}")
        return self.root / "tables" / name

    def posterior(self, direction: str) -> Path:
        """Posterior samples of held-out anchors of one direction (named by its anchor survey)."""
        return self.root / "samples" / f"posterior_{direction}.npz"

    def counterfactual_fits(self, direction: str) -> Path:
        """Fig 6's counterfactuals of one direction as FITS."""
        return self.root / "fits" / f"counterfactuals_{direction}.fits"

    @property
    def export(self) -> ModelLayout:
        """The self-contained model directory (``whatsreal export``; ``whatsreal.load``)."""
        return ModelLayout(self.root / "model")


@dataclass(frozen=True)
class ModelLayout:
    """An exported model directory: what ``whatsreal.load`` reads, no pickle anywhere.

    ``config.json`` (model and preprocessing constants, fitted normalisation, surveys, provenance),
    ``model.safetensors`` (every weight: both encoders and the decoder) and ``unet/`` (a copy of the
    decoder in diffusers' layout, so ``UNet2DConditionModel.from_pretrained(root, subfolder="unet")``
    loads it without whatsreal).
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def weights(self) -> Path:
        return self.root / "model.safetensors"

    @property
    def unet(self) -> Path:
        return self.root / "unet"


@dataclass(frozen=True)
class DatasetLayout:
    """One dataset's files: ``results/<dataset.name>/``."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, where: DatasetLayout | str | Path) -> DatasetLayout:
        """A layout from itself or from its root directory (what library callers may pass)."""
        return where if isinstance(where, DatasetLayout) else cls(Path(where))

    @property
    def nway(self) -> DatasetLayout:
        """The N-way training data (``nway/``): the same file names (``pairs.parquet``: the
        galaxies of ``groups.parquet`` seen by two or more surveys; ``split``, ``images``,
        ``meta``, ``neighbours`` per registry survey), read by runs with ``train.data: groups``."""
        return DatasetLayout(self.root / "nway")

    # Simulated sky (synthetic source only).
    def raw(self, survey: str) -> Path:
        """The simulated sky of one survey, in the Multimodal Universe layout."""
        return self.root / "raw" / survey

    @property
    def truth(self) -> Path:
        """Every simulated galaxy's true parameters, per-survey conditions and flags."""
        return self.root / "raw" / "truth.parquet"

    @property
    def stars(self) -> Path:
        """Every simulated field star (position, magnitudes), for users checking the artefacts."""
        return self.root / "raw" / "stars.parquet"

    @property
    def sky_figure(self) -> Path:
        return self.root / "raw" / "sky.png"

    # Catalogues and pairs.
    def catalog(self, survey: str) -> Path:
        """One row per object of one survey's shards (positions, conditions, shard index)."""
        return self.root / f"catalog_{survey}.parquet"

    @property
    def pairs(self) -> Path:
        """Cross-matched pairs: row i is pair i everywhere downstream."""
        return self.root / "pairs.parquet"

    @property
    def groups(self) -> Path:
        """N-way matched galaxies: one row per galaxy, its row in every survey's catalogue (-1 where unseen)."""
        return self.root / "groups.parquet"

    @property
    def split(self) -> Path:
        """Each pair's train/val split."""
        return self.root / "split.parquet"

    @property
    def provabgs(self) -> Path:
        """PROVABGS spectroscopic targets per pair (real data with aux.provabgs.path)."""
        return self.root / "provabgs.parquet"

    # Preprocessed dataset.
    def images(self, survey: str) -> Path:
        """(n_pairs, bands, H, W) float32 preprocessed images; row i is pair i."""
        return self.root / f"images_{survey}.npy"

    def meta(self, survey: str) -> Path:
        """Per-pair metadata of one survey (ids, positions, conditions, split) and the normalisation."""
        return self.root / f"meta_{survey}.parquet"

    def neighbours(self, survey: str, mode: str) -> Path:
        """Each pair's instrument-view neighbours in one survey, for one neighbour mode."""
        return self.root / f"neighbours_{survey}_{mode}.npz"

    def triplet_figure(self, mode: str) -> Path:
        return self.root / f"triplets_{mode}.png"

    def image_files(self, surveys: tuple[str, ...] = SURVEY_ORDER) -> list[Path]:
        """Per survey, the preprocessed images and their metadata (what the encoders read)."""
        return [self.images(s) for s in surveys] + [self.meta(s) for s in surveys]

    def pair_files(self, surveys: tuple[str, ...] = SURVEY_ORDER) -> list[Path]:
        """The split, images and metadata: every pair-level consumer's inputs."""
        return [self.split, *self.image_files(surveys)]

    def run_data_files(self, mode: str, surveys: tuple[str, ...] = SURVEY_ORDER) -> list[Path]:
        """What training (and every triplet consumer) of a run with neighbour ``mode`` reads.

        Only the run's own neighbour graph: rebuilding the other graph retrains nothing, and a
        training checkpoint fingerprints exactly these files.
        """
        return [*self.pair_files(surveys), *(self.neighbours(s, mode) for s in surveys)]

    # Dataset-level baselines.
    @property
    def random_init_embeddings(self) -> Path:
        """Features of a frozen, randomly initialised encoder (``phys_*`` columns only)."""
        return self.root / "baselines" / "random_init_embeddings.parquet"

    @property
    def cross_predict(self) -> Path:
        """A supervised ResNet's instrument-property R^2 from the other survey's image."""
        return self.root / "baselines" / "cross_predict.csv"

    @property
    def cross_predict_alternative(self) -> Path:
        return self.root / "baselines" / "cross_predict_alternative.csv"

    @property
    def baseline_probe_predictions(self) -> Path:
        """Held-out probe predictions of Table 5's run-independent columns (random init, AION,
        pixel floor) under the primary design, fitted once for every run's table."""
        return self.root / "baselines" / "probe_predictions.npz"

    @property
    def baseline_probe_predictions_alternative(self) -> Path:
        return self.root / "baselines" / "probe_predictions_alternative.npz"

    @property
    def baseline_outlier_scores(self) -> Path:
        """The baseline space's (random init or AION) -log p per HSC object, for every run's Fig 3."""
        return self.root / "baselines" / "outlier_scores.parquet"

    # Every method side by side.
    @property
    def comparison(self) -> Path:
        """One row per (representation, metric): probes, retrieval, outliers and training cost of every run,
        the random-init encoder and raw pixels (whatsreal.experiments.comparison)."""
        return self.root / "comparison" / "comparison.csv"

    @property
    def comparison_fewshot(self) -> Path:
        """Few-shot curves: probe R^2 against the number of labelled training galaxies, per representation."""
        return self.root / "comparison" / "comparison_fewshot.csv"

    @property
    def comparison_figure(self) -> Path:
        """The comparison's figure: probe means, retrieval, outliers, cost and the few-shot curves."""
        return self.root / "comparison" / "comparison.png"

    # Runs.
    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, name: str) -> RunLayout:
        """The layout of one named run (``{run}`` for the rules' pattern)."""
        return RunLayout(self.runs / name)

    # Bookkeeping and report.
    def log(self, stem: str) -> Path:
        """``logs/<rule>[_<wildcard values>].log``."""
        return self.root / "logs" / f"{stem}.log"

    def benchmark(self, stem: str) -> Path:
        """``benchmarks/<rule>[_<wildcard values>].tsv``, named as the job's log."""
        return self.root / "benchmarks" / f"{stem}.tsv"

    @property
    def rule_times(self) -> Path:
        return self.root / "rule_times.csv"

    @property
    def summary(self) -> Path:
        return self.root / "summary.md"

    @property
    def criteria(self) -> Path:
        """The paper's claims judged against this dataset's tables, one row each (summary.md's first section)."""
        return self.root / "criteria.csv"

    @property
    def effective_config(self) -> Path:
        return self.root / "effective_config.yaml"

    @property
    def report(self) -> Path:
        return self.root / "report.html"


def dataset_layout(config: dict) -> DatasetLayout:
    """The layout of a config's dataset: ``results/<dataset.name>`` relative to the working directory."""
    return DatasetLayout(Path("results") / config["dataset"]["name"])
