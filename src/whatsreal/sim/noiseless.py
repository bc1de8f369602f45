"""Noiseless, artefact-free renders of simulated objects, exactly as the simulator drew them.

The counterfactual truth metrics compare generated images with what the target
instrument would have recorded without noise or artefacts. ``simulate_sky``
keeps that image only in memory (``Stamp.model``), so this module rebuilds the
very same :class:`~whatsreal.sim.render.ObjectSpec` (same random streams, same
order of draws) and renders it again with :func:`~whatsreal.sim.render.render_stamp`.
Nothing is re-implemented: it calls the simulator's own population, conditions,
observation, id and spec builders in the order ``simulate_sky`` does, and a test
checks that the rebuilt specs reproduce the stored noisy cutouts bit for bit.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pandas as pd

from whatsreal.sim.render import ObjectSpec, Stamp, render_stamp
from whatsreal.sim.sky import (
    STREAMS,
    SURVEY_CODE,
    _assign_ids,
    _rng,
    _specs,
    build_population,
    observe_survey,
)
from whatsreal.surveys import SURVEY_ORDER, SURVEYS

__all__ = ["render_object", "sky_specs"]


def sky_specs(cfg: dict, surveys: tuple[str, ...] = SURVEY_ORDER) -> dict[str, dict[str, ObjectSpec]]:
    """Per survey: object_id (as str) -> the ObjectSpec ``simulate_sky`` rendered for it.

    ``cfg`` must be the validated config that simulated the sky (its ``simulation``
    section and seed); a different one gives a different sky, which callers detect
    by comparing with ``truth.parquet``. Results are cached per simulation config
    within a process (several experiments ask for the same sky).
    """
    return _cached_specs(json.dumps(cfg["simulation"], sort_keys=True), tuple(surveys))


@lru_cache(maxsize=4)
def _cached_specs(sim_json: str, surveys: tuple[str, ...]) -> dict[str, dict[str, ObjectSpec]]:
    sim = json.loads(sim_json)
    seed = sim["seed"]
    patch, pop = build_population(sim)
    out: dict[str, dict[str, ObjectSpec]] = {}
    for name in surveys:
        survey = SURVEYS[name]
        scfg = sim["surveys"][name]
        code = SURVEY_CODE[name]
        obs, cat, cond = observe_survey(sim, patch, pop, name)
        prng = _rng(seed, STREAMS["pathologies"], code)
        rates = sim["pathologies"]
        flags = pd.DataFrame(
            {k: prng.uniform(size=len(obs)) < rates[k] for k in ("saturated_star", "stripe", "high_noise")},
            index=obs.index,
        )
        ids = _assign_ids(survey, cat, scfg, _rng(seed, STREAMS["ids"], code))
        order = np.lexsort((cat["ra"].to_numpy(), cat["healpix"].to_numpy()))
        obs, flags, ids = obs.iloc[order], flags.iloc[order], ids[order]
        cond = {k: v[order] for k, v in cond.items()}
        specs = _specs(survey, sim, pop, obs, cond, flags)
        keys = ids.astype(str) if ids.dtype.kind in "SU" else ids.astype(np.int64).astype(str)
        out[name] = dict(zip(keys, specs, strict=True))
    return out


def render_object(spec: ObjectSpec, survey: str, cfg: dict) -> Stamp:
    """The object's stamp exactly as the simulator rendered it (``.model`` is the noiseless,
    artefact-free image; ``.image`` the stored noisy cutout)."""
    sim = cfg["simulation"]
    return render_stamp(spec, SURVEYS[survey], sim["cutout_size"], sim["surveys"][survey]["psf_beta"])
