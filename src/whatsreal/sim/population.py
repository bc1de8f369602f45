"""The galaxy population: one set of physical galaxies, before any instrument.

A deliberately simple but physically wired model, so that the quantities the
probes later try to recover are tied together the way they are in real data:
redshift sets distance (astropy's Planck18 cosmology), hence apparent magnitude
and angular size; stellar mass sets luminosity, size and the chance of being
quenched; star formation sets colour and Sersic index. Colours redden with
redshift. Rare classes (mergers, strong lenses) carry extra components.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from astropy.cosmology import Planck18

from whatsreal.sim.geometry import Patch
from whatsreal.truth import CLASSES

__all__ = ["BANDS", "COMPANION_COLUMNS", "LENS_COLUMNS", "LENS_GEOMETRY_COLUMNS", "draw_population"]

BANDS = ("g", "r", "i", "z", "y")
SERSIC_STEP = 0.1
"""Sersic indices are drawn on this grid: GalSim caches one profile table per
index value, and a continuous index would rebuild it for every galaxy."""
SOLAR_ABS_MAG_R = 4.65
COMPANION_COLUMNS = (
    "comp_flux_ratio",
    "comp_dx_arcsec",
    "comp_dy_arcsec",
    "comp_half_light_radius_arcsec",
    "comp_e1",
    "comp_e2",
    "comp_color_shift",
)
"""A merger's second component, in the order ``ObjectSpec.companion`` takes them."""
LENS_GEOMETRY_COLUMNS = ("einstein_radius_arcsec", "src_dx_arcsec", "src_dy_arcsec", "src_half_light_radius_arcsec")
"""What ray-tracing a lens needs, in the order ``ObjectSpec.lens`` takes them."""
LENS_COLUMNS = (*LENS_GEOMETRY_COLUMNS, "src_redshift", "src_mag_r", "src_g_r")


def _inverse_cdf_sample(grid: np.ndarray, pdf: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    cdf = np.cumsum(pdf)
    cdf = cdf / cdf[-1]
    return np.interp(rng.uniform(size=n), cdf, grid)


def _truncated_rayleigh(sigma: float, n: int, rng: np.random.Generator, cap: float = 0.8) -> np.ndarray:
    e = rng.rayleigh(sigma, size=n)
    while np.any(bad := e > cap):
        e[bad] = rng.rayleigh(sigma, size=int(bad.sum()))
    return e


def draw_population(patch: Patch, sim_cfg: dict, rng: np.random.Generator) -> pd.DataFrame:
    """Draw every galaxy in the patch brighter than ``population.mag_max_render`` (r).

    Returns one row per galaxy with intrinsic (extinction-free) magnitudes; the
    instruments add extinction, PSF and noise later. The steps below draw from ``rng``
    in a fixed order (the sky is reproducible from its seed), so they run in this order.
    """
    pop = sim_cfg["population"]
    g = _draw_stellar_populations(patch, sim_cfg, rng)
    keep = g["mag_r"] < pop["mag_max_render"]
    g = {k: v[np.flatnonzero(keep)] for k, v in g.items()}
    mags = _observed_magnitudes(g, rng)
    shapes = _draw_shapes(g, pop, rng)
    frac = sim_cfg["class_fractions"]
    u = rng.uniform(size=len(g["z"]))
    cls = np.where(u < frac["merger"], "merger", np.where(u < frac["merger"] + frac["lens"], "lens", "normal"))

    df = pd.DataFrame(
        {
            "truth_id": np.arange(len(g["z"]), dtype=np.int64),
            "x_arcmin": g["x"],
            "y_arcmin": g["y"],
            "redshift": g["z"],
            "log_mstar": g["logm"],
            "log_ssfr": g["log_ssfr"],
            "quenched": g["quenched"],
            **shapes,
            **{f"mag_{b}": mags[b] for b in BANDS},
            "galaxy_class": pd.Categorical(cls, categories=CLASSES),
        }
    )
    ra, dec = patch.to_radec(g["x"], g["y"])
    df.insert(1, "ra", ra)
    df.insert(2, "dec", dec)
    _add_companions(df, rng)
    _add_lenses(df, rng)
    return df


def _draw_stellar_populations(patch: Patch, sim_cfg: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Positions, redshift, stellar mass, star formation and apparent r of every galaxy of the
    patch, before the magnitude cut (which needs ``mag_r``)."""
    pop = sim_cfg["population"]
    n_total = rng.poisson(sim_cfg["density_per_arcmin2"] * patch.area_arcmin2)
    x = rng.uniform(-patch.width_arcmin / 2, patch.width_arcmin / 2, n_total)
    y = rng.uniform(-patch.height_arcmin / 2, patch.height_arcmin / 2, n_total)

    zgrid = np.linspace(pop["redshift_min"], pop["redshift_max"], 2048)
    z = _inverse_cdf_sample(zgrid, zgrid**2 * np.exp(-((zgrid / pop["redshift_z0"]) ** 1.5)), n_total, rng)

    mgrid = np.linspace(pop["log_mstar_min"], pop["log_mstar_max"], 2048)
    dm = mgrid - pop["schechter_log_mstar"]
    schechter = 10 ** ((pop["schechter_alpha"] + 1) * dm) * np.exp(-(10**dm))
    logm = _inverse_cdf_sample(mgrid, schechter, n_total, rng)

    # Quenching: more likely for massive galaxies, a little more at low redshift.
    p_quenched = 1 / (1 + np.exp(-(logm - pop["quenched_log_mstar"] + 0.3 * z) / 0.3))
    quenched = rng.uniform(size=n_total) < p_quenched
    log_ssfr = np.where(
        quenched,
        -11.8 + 0.4 * rng.standard_normal(n_total),
        -9.8 - 0.25 * (logm - 10) + 1.5 * np.log10(1 + z) + 0.3 * rng.standard_normal(n_total),
    )
    # Star-formation activity in [0, 1], the knob that colours and shapes follow.
    activity = np.clip((log_ssfr + 12.0) / 3.0, 0, 1)

    rest_gr = 0.8 - 0.5 * activity + 0.04 * rng.standard_normal(n_total)
    log_ml = -0.3 + 1.0 * rest_gr
    abs_r = SOLAR_ABS_MAG_R - 2.5 * (logm - log_ml)
    dist_mod = Planck18.distmod(z).value
    mag_r = abs_r + dist_mod + 2.5 * np.log10(1 + z) * (1 + rest_gr)
    return {
        "x": x,
        "y": y,
        "z": z,
        "logm": logm,
        "log_ssfr": log_ssfr,
        "activity": activity,
        "rest_gr": rest_gr,
        "mag_r": mag_r,
        "quenched": quenched,
    }


def _observed_magnitudes(g: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """grizy: the rest colour plus a redshift (k-correction-like) term, around ``mag_r``."""
    z, activity, mag_r = g["z"], g["activity"], g["mag_r"]
    noise = 0.04 * rng.standard_normal((4, len(z)))
    g_r = g["rest_gr"] + 0.9 * z + noise[0]
    r_i = 0.1 + 0.25 * (1 - activity) + 0.6 * z + noise[1]
    i_z = 0.02 + 0.15 * (1 - activity) + 0.4 * z + noise[2]
    z_y = 0.02 + 0.05 * (1 - activity) + 0.2 * z + noise[3]
    mags = {"g": mag_r + g_r, "r": mag_r, "i": mag_r - r_i, "z": mag_r - r_i - i_z}
    mags["y"] = mags["z"] - z_y
    return mags


def _draw_shapes(g: dict[str, np.ndarray], pop: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sizes (kpc and arcsec), Sersic index and ellipticity: the truth table's shape columns."""
    z, logm, quenched = g["z"], g["logm"], g["quenched"]
    n = len(z)
    # Mass-size relations (late types larger and shallower), in kpc.
    log_re = np.where(
        quenched,
        0.50 + 0.60 * (logm - 10.7) - 1.0 * np.log10(1 + z) + 0.15 * rng.standard_normal(n),
        0.65 + 0.22 * (logm - 10.5) - 0.7 * np.log10(1 + z) + 0.17 * rng.standard_normal(n),
    )
    re_kpc = 10**log_re
    kpc_per_arcsec = Planck18.kpc_proper_per_arcmin(z).value / 60.0
    re_arcsec = np.clip(re_kpc / kpc_per_arcsec, 0.08, 6.0)

    log_n = np.where(quenched, 0.55 + 0.10 * rng.standard_normal(n), 0.05 + 0.12 * rng.standard_normal(n))
    sersic_n = np.clip(np.round(10**log_n / SERSIC_STEP) * SERSIC_STEP, 0.5, 6.0)

    emag = _truncated_rayleigh(pop["ellipticity_sigma"], n, rng)
    emag = np.where(quenched, emag * 0.7, emag)
    phi = rng.uniform(0, np.pi, n)
    return {
        "half_light_radius_kpc": re_kpc,
        "half_light_radius_arcsec": re_arcsec,
        "sersic_n": sersic_n,
        "e1": emag * np.cos(2 * phi),
        "e2": emag * np.sin(2 * phi),
    }


def _add_companions(df: pd.DataFrame, rng: np.random.Generator) -> None:
    """Mergers: a second, overlapping component with its own shape and colour offset."""
    n = len(df)
    is_m = (df["galaxy_class"] == "merger").to_numpy()
    nan = np.full(n, np.nan)
    cols = {k: nan.copy() for k in COMPANION_COLUMNS}
    k = int(is_m.sum())
    if k:
        sep = rng.uniform(0.8, 2.0, k) * np.maximum(df.loc[is_m, "half_light_radius_arcsec"].to_numpy(), 0.5)
        ang = rng.uniform(0, 2 * np.pi, k)
        cols["comp_flux_ratio"][is_m] = rng.uniform(0.3, 1.0, k)
        cols["comp_dx_arcsec"][is_m] = sep * np.cos(ang)
        cols["comp_dy_arcsec"][is_m] = sep * np.sin(ang)
        primary_re = df.loc[is_m, "half_light_radius_arcsec"].to_numpy()
        cols["comp_half_light_radius_arcsec"][is_m] = primary_re * rng.uniform(0.5, 1.2, k)
        emag = rng.uniform(0.0, 0.5, k)
        phi = rng.uniform(0, np.pi, k)
        cols["comp_e1"][is_m], cols["comp_e2"][is_m] = emag * np.cos(2 * phi), emag * np.sin(2 * phi)
        cols["comp_color_shift"][is_m] = rng.normal(0, 0.15, k)
    for name, values in cols.items():
        df[name] = values


def _add_lenses(df: pd.DataFrame, rng: np.random.Generator) -> None:
    """Strong lenses: the galaxy becomes a red early-type deflector with a blue
    background source lensed by a singular isothermal sphere into arcs."""
    n = len(df)
    is_l = (df["galaxy_class"] == "lens").to_numpy()
    nan = np.full(n, np.nan)
    cols = {k: nan.copy() for k in LENS_COLUMNS}
    k = int(is_l.sum())
    if k:
        df.loc[is_l, "sersic_n"] = 4.0
        df.loc[is_l, "quenched"] = True
        theta_e = rng.uniform(1.0, 2.2, k)
        beta = theta_e * np.sqrt(rng.uniform(0.0, 0.16, k))
        ang = rng.uniform(0, 2 * np.pi, k)
        cols["einstein_radius_arcsec"][is_l] = theta_e
        cols["src_redshift"][is_l] = df.loc[is_l, "redshift"].to_numpy() + rng.uniform(0.4, 1.5, k)
        cols["src_dx_arcsec"][is_l] = beta * np.cos(ang)
        cols["src_dy_arcsec"][is_l] = beta * np.sin(ang)
        cols["src_half_light_radius_arcsec"][is_l] = rng.uniform(0.12, 0.35, k)
        cols["src_mag_r"][is_l] = df.loc[is_l, "mag_r"].to_numpy() + rng.uniform(0.8, 2.0, k)
        cols["src_g_r"][is_l] = rng.uniform(0.0, 0.35, k)
    for name, values in cols.items():
        df[name] = values
