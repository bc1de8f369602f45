"""N-way matching: every survey's catalogue merged into groups, one galaxy per group.

With two surveys a galaxy is a pair (:func:`whatsreal.data.crossmatch.crossmatch`). With N
surveys a galaxy can be seen by any subset of them, so the pairwise one-to-one matches of
every pair of surveys are merged into groups. Pairwise matches need not agree: survey A's
object may match B's, B's may match C's, and C's may match a *different* A object (two
galaxies closer than the match radius, or astrometric scatter). Merging blindly would put
two A objects in one group, which has no meaning (a group has one row per survey).

The merge is Kruskal's: every pairwise match is an edge, taken in order of separation
(ties broken by survey order, then rows, so the result never depends on hash or input
order), and an edge joins two groups only if they share no survey. An edge that would put
two objects of one survey together is a *conflict*: it is dropped and reported, and its
two ends stay in the groups their closer matches gave them. The closest evidence wins,
which is the same rule the pairwise mutual-nearest match applies within one pair.

Output (:func:`group_catalogues`): one row per group, seen by 1..N surveys, with
``{survey}_row`` (the row in that survey's catalogue, -1 where unseen) and
``{survey}_object_id`` (empty string where unseen) for every survey in registry order,
``ra``/``dec`` of the first survey that saw it, ``n_surveys`` and ``max_sep_arcsec`` (the
largest separation among the matches that formed it; 0 for a single detection). Groups are
sorted by the first survey that saw them, then by that survey's row, so for two surveys the
groups seen by both are ``pairs.parquet``'s rows in ``pairs.parquet``'s order.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import DisjointSet

from whatsreal.data.crossmatch import CrossmatchError, mutual_matches

__all__ = ["GroupResult", "group_catalogues", "groups_from_pairs"]

log = logging.getLogger(__name__)

CONFLICT_COLUMNS = ("survey_a", "row_a", "survey_b", "row_b", "sep_arcsec", "clash")


@dataclass
class GroupResult:
    """The groups and the matches the merge dropped (``conflicts``, columns :data:`CONFLICT_COLUMNS`)."""

    groups: pd.DataFrame
    conflicts: pd.DataFrame


def _edges(catalogues: Mapping[str, pd.DataFrame], radius_arcsec: float) -> pd.DataFrame:
    """Every pairwise mutual match as an edge, in a deterministic order (separation, surveys, rows)."""
    names = list(catalogues)
    blocks = []
    for ia, ib in itertools.combinations(range(len(names)), 2):
        a, b = catalogues[names[ia]], catalogues[names[ib]]
        if len(a) == 0 or len(b) == 0:
            continue
        rows_a, rows_b, sep, not_mutual = mutual_matches(a, b, radius_arcsec)
        log.info(
            'groups: %d mutual matches %s x %s within %.2f" (%d nearest matches not mutual)',
            len(rows_a),
            names[ia],
            names[ib],
            radius_arcsec,
            not_mutual,
        )
        blocks.append(
            pd.DataFrame({"sep_arcsec": sep, "survey_a": ia, "row_a": rows_a, "survey_b": ib, "row_b": rows_b})
        )
    if not blocks:
        return pd.DataFrame(columns=["sep_arcsec", "survey_a", "row_a", "survey_b", "row_b"])
    edges = pd.concat(blocks, ignore_index=True)
    return edges.sort_values(["sep_arcsec", "survey_a", "survey_b", "row_a", "row_b"], kind="mergesort")


def _check_overlap(
    names: list[str], edges: pd.DataFrame, catalogues: Mapping[str, pd.DataFrame], radius: float
) -> None:
    """Every survey must share at least one galaxy with another one, or it cannot be anchored or condition anything."""
    linked = set(edges["survey_a"].astype(int)) | set(edges["survey_b"].astype(int))
    alone = [n for i, n in enumerate(names) if i not in linked]
    if alone:
        sizes = ", ".join(f"{n}: {len(catalogues[n])} objects" for n in names)
        raise CrossmatchError(
            f"surveys.{alone[0]}: no object matches any other survey's within {radius}\" ({sizes}); "
            "does its footprint overlap the others'?"
        )


def group_catalogues(catalogues: Mapping[str, pd.DataFrame], radius_arcsec: float) -> GroupResult:
    """Merge the pairwise mutual matches of ``catalogues`` (survey -> ``object_id, ra, dec``, in
    registry order) into groups; see the module docstring for the rule and the output."""
    names = list(catalogues)
    if len(names) < 2:
        raise ValueError(f"N-way matching needs at least two surveys, got {names}")
    edges = _edges(catalogues, radius_arcsec)
    _check_overlap(names, edges, catalogues, radius_arcsec)

    nodes = DisjointSet((i, r) for i, n in enumerate(names) for r in range(len(catalogues[n])))
    # Kept for merged groups only (keyed by their root): a root not in these is a single object,
    # whose surveys are its own and whose largest separation is 0.
    surveys_in: dict[tuple[int, int], frozenset[int]] = {}
    max_sep: dict[tuple[int, int], float] = {}
    conflicts = []
    for sep, ia, ra_, ib, rb in edges[["sep_arcsec", "survey_a", "row_a", "survey_b", "row_b"]].itertuples(index=False):
        u, v = (int(ia), int(ra_)), (int(ib), int(rb))
        root_u, root_v = nodes[u], nodes[v]
        if root_u == root_v:
            continue  # a triangle closing consistently: already one group
        in_u = surveys_in.get(root_u, frozenset([root_u[0]]))
        in_v = surveys_in.get(root_v, frozenset([root_v[0]]))
        clash = in_u & in_v
        if clash:
            conflicts.append(
                (names[u[0]], u[1], names[v[0]], v[1], float(sep), ",".join(names[c] for c in sorted(clash)))
            )
            continue
        surveys_in.pop(root_u, None)
        surveys_in.pop(root_v, None)
        merged = in_u | in_v
        worst = max(max_sep.pop(root_u, 0.0), max_sep.pop(root_v, 0.0), float(sep))
        nodes.merge(u, v)
        surveys_in[nodes[u]] = merged
        max_sep[nodes[u]] = worst

    groups = _groups_frame(names, catalogues, nodes, max_sep)
    conflict_frame = pd.DataFrame(conflicts, columns=list(CONFLICT_COLUMNS))
    _log_summary(names, groups, conflict_frame)
    return GroupResult(groups=groups, conflicts=conflict_frame)


def _groups_frame(
    names: list[str],
    catalogues: Mapping[str, pd.DataFrame],
    nodes: DisjointSet,
    max_sep: dict[tuple[int, int], float],
) -> pd.DataFrame:
    """One row per disjoint set: the row per survey (-1 where unseen), ids, first position, size."""
    subsets = [sorted(s) for s in nodes.subsets()]
    subsets.sort(key=lambda members: members[0])  # (first survey index, its row)
    n = len(subsets)
    rows = np.full((n, len(names)), -1, dtype=np.int64)
    for g, members in enumerate(subsets):
        for i, r in members:
            rows[g, i] = r
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        out[f"{name}_row"] = rows[:, i]
    for i, name in enumerate(names):
        ids = catalogues[name]["object_id"].astype(str).to_numpy()
        out[f"{name}_object_id"] = np.where(rows[:, i] >= 0, ids[np.maximum(rows[:, i], 0)] if len(ids) else "", "")
    first = np.array([members[0] for members in subsets], dtype=np.int64).reshape(n, 2)
    ra = np.empty(n)
    dec = np.empty(n)
    for i, name in enumerate(names):
        sel = first[:, 0] == i
        ra[sel] = catalogues[name]["ra"].to_numpy()[first[sel, 1]]
        dec[sel] = catalogues[name]["dec"].to_numpy()[first[sel, 1]]
    out["ra"] = ra
    out["dec"] = dec
    out["n_surveys"] = (rows >= 0).sum(axis=1).astype(np.int64)
    out["max_sep_arcsec"] = np.array([max_sep.get(nodes[tuple(members[0])], 0.0) for members in subsets])
    return pd.DataFrame(out)


def _log_summary(names: list[str], groups: pd.DataFrame, conflicts: pd.DataFrame) -> None:
    """How many galaxies each combination of surveys saw, and every dropped match."""
    seen = groups[[f"{n}_row" for n in names]].to_numpy() >= 0
    combos = pd.Series(["+".join(n for n, s in zip(names, row, strict=True) if s) for row in seen]).value_counts()
    log.info(
        "groups: %d galaxies (%s); %d pairwise matches dropped as conflicts",
        len(groups),
        ", ".join(f"{k}: {v}" for k, v in combos.items()),
        len(conflicts),
    )
    for c in conflicts.head(20).itertuples(index=False):
        log.warning(
            'groups: dropped the match %s row %d - %s row %d (%.3f") - it would put two %s objects in one group',
            c.survey_a,
            c.row_a,
            c.survey_b,
            c.row_b,
            c.sep_arcsec,
            c.clash,
        )
    if len(conflicts) > 20:
        log.warning("groups: ... and %d more dropped matches", len(conflicts) - 20)


def groups_from_pairs(pairs: pd.DataFrame, names: tuple[str, str]) -> pd.DataFrame:
    """The two-survey groups that ``pairs.parquet`` already is (source ``crossmatched_parquet``,
    where the shards come matched): the pairs' rows, ids and positions with ``n_surveys = 2``.
    Objects seen by one survey only are not in pre-matched shards, so no single-survey group exists."""
    na, nb = names
    out = pd.DataFrame(
        {
            f"{na}_row": pairs[f"{na}_row"].to_numpy(np.int64),
            f"{nb}_row": pairs[f"{nb}_row"].to_numpy(np.int64),
            f"{na}_object_id": pairs[f"{na}_object_id"].astype(str).to_numpy(),
            f"{nb}_object_id": pairs[f"{nb}_object_id"].astype(str).to_numpy(),
            "ra": pairs["ra"].to_numpy(float),
            "dec": pairs["dec"].to_numpy(float),
            "n_surveys": np.full(len(pairs), 2, dtype=np.int64),
            "max_sep_arcsec": pairs["sep_arcsec"].to_numpy(float),
        }
    )
    return out
