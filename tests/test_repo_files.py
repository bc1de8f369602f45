"""The repository's own files agree with each other: LICENSE, CITATION.cff and pyproject.toml
state one license, the citation file is well formed CFF 1.2.0 naming the paper, and every
figure the README shows is committed and small."""

from __future__ import annotations

import re
import tomllib

import yaml

from whatsreal.plots.readme_figures import MAX_BYTES, readme_sources

from .conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PAPER_TITLE = (
    "Learning What's Real: Disentangling Signals from Measurement Artifacts in Multi-Sensor Data, "
    "with Applications to Astrophysics"
)
"""As the paper's text (shared/seeds/000_*.txt) gives it."""


def test_license_file_is_the_license_pyproject_declares():
    assert PYPROJECT["license"] == {"text": "MIT"}
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the whatsreal developers" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_citation_file_is_cff_1_2_0_citing_the_paper():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    # The keys CFF 1.2.0 requires, and the ones this project promises.
    assert {"cff-version", "message", "title", "authors"} <= cff.keys()
    assert cff["cff-version"] == "1.2.0"
    assert cff["type"] == "software"
    assert cff["title"] == PYPROJECT["name"]
    assert cff["version"] == PYPROJECT["version"]
    assert cff["license"] == PYPROJECT["license"]["text"]
    assert all(a.get("name") or a.get("family-names") for a in cff["authors"])

    paper = cff["preferred-citation"]
    assert {"type", "title", "authors"} <= paper.keys()
    assert " ".join(paper["title"].split()) == PAPER_TITLE
    names = [f"{a['given-names']} {a['family-names']}" for a in paper["authors"]]
    assert names[0] == "Pablo Mercader-Perez" and len(names) == 8
    assert names[-1] == "William T. Freeman"
    # The paper's text states no DOI or arXiv id: none may be made up.
    assert not {"doi", "identifiers", "url"} & paper.keys()


def test_every_figure_the_readme_shows_is_committed_and_small():
    readme = (REPO / "README.md").read_text()
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", readme)
    expected = [f"docs/figures/{fig.source.name}" for fig in readme_sources("results/sim")]
    assert shown == expected
    for path in shown:
        size = (REPO / path).stat().st_size
        assert size <= MAX_BYTES, (path, size)
