"""The lens catalogue: parsed from a VizieR-format response through astroquery, local files, offline errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import requests

from whatsreal.data.lenses import LensCatalogError, fetch_lens_catalog

DATA = Path(__file__).parent / "data"


class _Response:
    def __init__(self, content: bytes) -> None:
        self.content = content
        self.text = content.decode()
        self.status_code = 200

    def raise_for_status(self) -> None:
        return None


def test_vizier_response_is_parsed_by_astroquery(monkeypatch, tmp_path):
    from astroquery.vizier.core import VizierClass

    calls = []

    def fake_request(self, method, url, **kwargs):
        calls.append(kwargs.get("data"))
        return _Response((DATA / "vizier_lenses_votable.xml").read_bytes())

    monkeypatch.setattr(VizierClass, "_request", fake_request)
    out = tmp_path / "resources" / "lens_catalog.csv"
    df = fetch_lens_catalog("J/ApJ/909/27", None, out)
    assert calls and "J/ApJ/909/27" in str(calls[0])
    assert list(df.columns[:2]) == ["ra", "dec"]
    assert len(df) == 3 and df["ra"].iloc[2] == pytest.approx(359.95)
    assert "Name" in df.columns
    assert pd.read_csv(out).shape == df.shape


def test_offline_fetch_says_which_file_to_provide(monkeypatch, tmp_path):
    from astroquery.vizier.core import VizierClass

    def offline(self, method, url, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve host")

    monkeypatch.setattr(VizierClass, "_request", offline)
    out = tmp_path / "lens_catalog.csv"
    with pytest.raises(LensCatalogError, match=r"set aux\.lens_catalog\.local to its path") as err:
        fetch_lens_catalog("J/ApJ/909/27", None, out)
    assert "J/ApJ/909/27" in str(err.value) and str(out) in str(err.value)
    assert not out.exists()


def test_local_file_is_used_instead(tmp_path):
    src = tmp_path / "mine.csv"
    pd.DataFrame({"RA": [10.0, 11.0], "DEC": [-1.0, float("nan")], "name": ["a", "b"]}).to_csv(src, index=False)
    df = fetch_lens_catalog("J/ApJ/909/27", str(src), tmp_path / "out.csv")
    assert df[["ra", "dec"]].values.tolist() == [[10.0, -1.0]]


def test_local_file_without_positions_is_named(tmp_path):
    src = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1.0]}).to_csv(src, index=False)
    with pytest.raises(LensCatalogError, match=r"bad\.csv: no RA column"):
        fetch_lens_catalog(None, str(src), tmp_path / "out.csv")
    with pytest.raises(LensCatalogError, match="does not exist"):
        fetch_lens_catalog(None, str(tmp_path / "missing.csv"), tmp_path / "out.csv")
