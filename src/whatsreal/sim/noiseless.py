"""Noiseless, artefact-free renders of simulated objects, exactly as the simulator drew them.

The counterfactual truth metrics compare generated images with what the target
instrument would have recorded without noise or artefacts. ``simulate_sky``
keeps that image only in memory (``Stamp.model``), so this module rebuilds the
very same :class:`~whatsreal.sim.render.ObjectSpec` (same random streams, same
order of draws) and renders it again with :func:`~whatsreal.sim.render.render_stamp`.
Nothing is re-implemented: it builds the simulator's own :class:`~whatsreal.sim.sky.Sky`
(population, background, conditions and selection) and takes its per-survey plans,
the very steps ``simulate_sky`` renders, and a test checks that the rebuilt specs
reproduce the stored noisy cutouts bit for bit.

What the noiseless truth contains: ``render_object(...).model`` is the whole scene
the stamp holds - the anchor galaxy, the neighbouring and faint galaxies and the
field stars, all through the same PSF - without noise and without the labelled
artefacts. That is what the target instrument records of the sky there, the same
light as in the stored cutout (whose neighbours the physics view also shows), so
it is the right reference for counterfactual images. :func:`render_anchor` gives the
anchor galaxy's light alone, for metrics about the galaxy itself.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from whatsreal.sim.render import ObjectSpec, Stamp, anchor_only, render_stamp
from whatsreal.sim.sky import Sky
from whatsreal.surveys import SURVEY_ORDER, Survey, survey_registry

__all__ = ["object_spec", "render_anchor", "render_object", "sky_specs"]


def sky_specs(cfg: dict, surveys: tuple[str, ...] = SURVEY_ORDER) -> dict[str, dict[str, ObjectSpec]]:
    """Per survey: object_id (as str) -> the ObjectSpec ``simulate_sky`` rendered for it.

    ``cfg`` must be the validated config that simulated the sky (its ``simulation``
    section and ``preprocess.crop``, which places the artefacts); a different one gives
    a different sky, which callers detect by comparing with ``truth.parquet``. Results
    are cached per configuration within a process (several experiments ask for the
    same sky).
    """
    # The registry as a list: its order keys the random streams, the rest is order-free.
    registry = [[name, cfg["surveys"][name]] for name in survey_registry(cfg)]
    key = {"simulation": cfg["simulation"], "crop": cfg["preprocess"]["crop"], "surveys": registry}
    return _cached_specs(json.dumps(key, sort_keys=True), tuple(surveys))


@lru_cache(maxsize=4)
def _cached_specs(key_json: str, surveys: tuple[str, ...]) -> dict[str, dict[str, ObjectSpec]]:
    key = json.loads(key_json)
    out: dict[str, dict[str, ObjectSpec]] = {}
    registry = survey_registry({"surveys": dict(key["surveys"])})
    for name, plan in Sky.build(key["simulation"], key["crop"], registry, surveys).plans():
        ids = plan.cat["object_id"].to_numpy()
        keys = ids.astype(str) if ids.dtype.kind in "SU" else ids.astype(np.int64).astype(str)
        out[name] = dict(zip(keys, plan.specs, strict=True))
    return out


def object_spec(specs: dict[str, ObjectSpec], survey: str, object_id: object) -> ObjectSpec:
    """The spec of ``object_id`` among one survey's :func:`sky_specs`, or an error that says the
    config may not be the one that simulated the data (the usual reason an id is missing)."""
    key = str(object_id)
    if key not in specs:
        raise KeyError(
            f"{survey} object {key} is not in the sky that cfg['simulation'] rebuilds; "
            "is this the config that simulated the data?"
        )
    return specs[key]


def render_object(spec: ObjectSpec, survey: str, cfg: dict) -> Stamp:
    """The object's stamp exactly as the simulator rendered it (``.model`` is the noiseless,
    artefact-free scene; ``.image`` the stored noisy cutout)."""
    sim = cfg["simulation"]
    survey_spec = Survey.from_entry(survey, cfg["surveys"][survey])
    return render_stamp(spec, survey_spec, sim["cutout_size"], sim["surveys"][survey]["psf_beta"])


def render_anchor(spec: ObjectSpec, survey: str, cfg: dict) -> np.ndarray:
    """(B, S, S) noiseless image of the object's own galaxy alone, through the same PSF and
    pixels as its stored cutout (no neighbours, stars, noise or artefacts)."""
    return render_object(anchor_only(spec), survey, cfg).model
