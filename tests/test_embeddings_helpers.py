"""The embeddings helpers the benchmark scripts share: one latent per survey, and which runs to read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from whatsreal.experiments.embeddings import latents_by_survey, run_embedding_paths
from whatsreal.layout import DatasetLayout


def test_latents_by_survey_gives_each_survey_its_rows_of_the_pairs_asked_for_in_that_order():
    emb = pd.DataFrame(
        {
            "object_id": ["h0", "h1", "h2", "l0", "l1", "l2"],
            "pair": [0, 1, 2, 0, 1, 2],
            "survey": ["hsc"] * 3 + ["legacysurvey"] * 3,
            "phys_0": [0.0, 1.0, 2.0, 10.0, 11.0, 12.0],
        }
    )
    got = latents_by_survey(emb, "phys_", np.array([2, 0]), "emb.parquet")
    assert list(got) == ["hsc", "legacysurvey"]
    assert np.array_equal(got["hsc"][:, 0], [2.0, 0.0])
    assert np.array_equal(got["legacysurvey"][:, 0], [12.0, 10.0])
    with pytest.raises(ValueError, match=r"emb.parquet: pair\(s\) \[7\]"):
        latents_by_survey(emb, "phys_", np.array([7]), "emb.parquet")


def test_run_embedding_paths_finds_every_exported_run_and_names_a_missing_one(tmp_path):
    assert run_embedding_paths(DatasetLayout(tmp_path / "no_runs_yet")) == {}
    layout = DatasetLayout(tmp_path)
    for run in ("main", "random_neighbours"):
        layout.run(run).embeddings.parent.mkdir(parents=True)
        layout.run(run).embeddings.write_bytes(b"")
    layout.run("not_exported").root.mkdir(parents=True)
    assert list(run_embedding_paths(layout)) == ["main", "random_neighbours"]
    assert run_embedding_paths(layout, ["random_neighbours"]) == {
        "random_neighbours": layout.run("random_neighbours").embeddings
    }
    with pytest.raises(FileNotFoundError, match="run 'not_exported' has no exported embeddings"):
        run_embedding_paths(layout, ["main", "not_exported"])
