"""Render one object's cutout in one survey with GalSim, plus its artefacts.

The stamp is centred on the survey's catalogue position, so the galaxy sits off
centre by minus that survey's astrometric error, as in real cutouts. Noise is
background-limited Gaussian sky noise with the per-band sigma of the local
conditions, and ``image_ivar`` is exactly 1/sigma^2 of what was added. Mask
convention is MMU's: True means a clean pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import galsim
import numpy as np

from whatsreal.sim.psf import GSPARAMS, psf_model
from whatsreal.surveys import Survey

__all__ = ["ObjectSpec", "Stamp", "band_fluxes", "galaxy_profile", "lensed_source_image", "render_stamp"]

SATURATION_SIGMAS = 3000.0
"""Pixels saturate at this many sky sigmas (a stand-in for a full-well level)."""
STRIPE_SIGMAS = 8.0
"""A stripe artefact adds this many sky sigmas to a few rows or columns of one band."""
LENS_SOURCE_SERSIC_B = 1.678  # exp(-b r / r_e) is an exponential disk with r_e its half-light radius


@dataclass(frozen=True)
class ObjectSpec:
    """Everything needed to render one object in one survey (plain values, picklable)."""

    seed: tuple[int, ...]
    mags: tuple[float, ...]
    """Observed magnitudes per band of the survey, extinction included."""
    galaxy_class: str
    half_light_radius: float
    sersic_n: float
    e1: float
    e2: float
    offset_arcsec: tuple[float, float]
    psf_fwhm: tuple[float, ...]
    psf_g: tuple[float, float]
    sky_sigma: tuple[float, ...]
    companion: tuple[float, ...] | None = None
    """flux ratio, dx, dy, half-light radius, e1, e2, colour shift (mergers)."""
    lens: tuple[float, ...] | None = None
    """Einstein radius, source dx, dy, half-light radius (lenses)."""
    source_mags: tuple[float, ...] | None = None
    saturated_star: bool = False
    stripe: bool = False
    high_noise: bool = False
    high_noise_factor: float = 1.0


@dataclass
class Stamp:
    image: np.ndarray  # (B, S, S) float32
    ivar: np.ndarray  # (B, S, S) float32
    mask: np.ndarray  # (B, S, S) bool, True = clean
    model: np.ndarray  # (B, S, S) float32, noiseless, artefact-free


def band_fluxes(mags: np.ndarray, zero_point: float) -> np.ndarray:
    """Image-unit fluxes for AB magnitudes at the survey's zero-point."""
    return 10 ** (-0.4 * (np.asarray(mags) - zero_point))


def lensed_source_image(
    lens: tuple[float, ...], size_arcsec: float, scale: float
) -> tuple[galsim.InterpolatedImage, float]:
    """Ray-trace an exponential source through a singular isothermal sphere.

    Returns the unit-flux lensed image (as a GalSim profile) and the
    magnification, measured as the ratio of lensed to unlensed light on the grid.
    """
    theta_e, sdx, sdy, src_re = lens
    n = int(np.ceil(size_arcsec / scale)) | 1
    c = (np.arange(n) - n // 2) * scale
    tx, ty = np.meshgrid(c, c)
    r = np.hypot(tx, ty)
    r = np.where(r == 0, scale * 1e-3, r)
    bx = tx - theta_e * tx / r - sdx
    by = ty - theta_e * ty / r - sdy
    lensed = np.exp(-LENS_SOURCE_SERSIC_B * np.hypot(bx, by) / src_re)
    unlensed = np.exp(-LENS_SOURCE_SERSIC_B * np.hypot(tx - sdx, ty - sdy) / src_re)
    mu = float(lensed.sum() / unlensed.sum())
    img = galsim.InterpolatedImage(galsim.Image(lensed / lensed.sum(), scale=scale), gsparams=GSPARAMS)
    return img, mu


def galaxy_profile(
    spec: ObjectSpec,
    fluxes: np.ndarray,
    band: int,
    src_fluxes: np.ndarray | None,
    lensed: tuple[galsim.GSObject, float] | None,
) -> galsim.GSObject:
    """The intrinsic (pre-PSF) light of the object in one band."""
    main = galsim.Sersic(n=spec.sersic_n, half_light_radius=spec.half_light_radius, gsparams=GSPARAMS)
    main = main.shear(g1=spec.e1, g2=spec.e2)
    flux = float(fluxes[band])
    if spec.companion is not None:
        ratio, dx, dy, re, ce1, ce2, shift = spec.companion
        comp_flux = flux * ratio * 10 ** (-0.4 * shift * (band - 1.5))
        comp = galsim.Sersic(n=1.0, half_light_radius=re, gsparams=GSPARAMS).shear(g1=ce1, g2=ce2)
        return main.withFlux(flux) + comp.withFlux(comp_flux).shift(dx, dy)
    if lensed is not None and src_fluxes is not None:
        img, mu = lensed
        return main.withFlux(flux) + img.withFlux(float(src_fluxes[band]) * mu)
    return main.withFlux(flux)


def render_stamp(spec: ObjectSpec, survey: Survey, size: int, psf_beta: float) -> Stamp:
    """Draw, add noise and artefacts; deterministic given ``spec.seed``."""
    rng = np.random.default_rng(list(spec.seed))
    nb = len(survey.bands)
    scale = survey.pixel_scale
    fluxes = band_fluxes(spec.mags, survey.zero_point)
    src_fluxes = band_fluxes(spec.source_mags, survey.zero_point) if spec.source_mags is not None else None
    lensed = lensed_source_image(spec.lens, size * scale, scale / 3) if spec.lens is not None else None
    offset = galsim.PositionD(spec.offset_arcsec[0] / scale, spec.offset_arcsec[1] / scale)

    model = np.empty((nb, size, size), dtype=np.float32)
    for b in range(nb):
        psf = psf_model(psf_beta, scale).profile(spec.psf_fwhm[b], *spec.psf_g)
        prof = galsim.Convolve(galaxy_profile(spec, fluxes, b, src_fluxes, lensed), psf)
        model[b] = prof.drawImage(nx=size, ny=size, scale=scale, offset=offset).array

    sigma = np.broadcast_to(np.asarray(spec.sky_sigma, dtype=np.float64)[:, None, None], model.shape).copy()
    if spec.high_noise:
        h, w = rng.integers(size // 4, size // 2 + 1, size=2)
        y0, x0 = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        sigma[:, y0 : y0 + h, x0 : x0 + w] *= spec.high_noise_factor
    image = model + sigma * rng.standard_normal(model.shape)
    ivar = 1.0 / sigma**2
    mask = np.ones(model.shape, dtype=bool)

    if spec.stripe:
        b = int(rng.integers(nb))
        width = int(rng.integers(1, 4))
        start = int(rng.integers(0, size - width))
        amp = STRIPE_SIGMAS * spec.sky_sigma[b] * rng.uniform(0.5, 1.5)
        if rng.uniform() < 0.5:
            image[b, start : start + width, :] += amp
        else:
            image[b, :, start : start + width] += amp
    if spec.saturated_star:
        _add_saturated_star(image, ivar, mask, spec, survey, size, psf_beta, rng)

    return Stamp(image.astype(np.float32), ivar.astype(np.float32), mask, model)


def _add_saturated_star(
    image: np.ndarray,
    ivar: np.ndarray,
    mask: np.ndarray,
    spec: ObjectSpec,
    survey: Survey,
    size: int,
    psf_beta: float,
    rng: np.random.Generator,
) -> None:
    """A bright star away from the centre: clipped at saturation, with a bleed trail
    along the readout columns; saturated pixels are masked and get ivar 0."""
    scale = survey.pixel_scale
    r = rng.uniform(size / 5, size / 2.5)
    ang = rng.uniform(0, 2 * np.pi)
    pos = galsim.PositionD(r * np.cos(ang), r * np.sin(ang))
    # How far past saturation the star's peak goes: log-uniform, the same star in every band.
    overshoot = 10 ** rng.uniform(np.log10(3.0), np.log10(300.0))
    cx, cy = round(size / 2 + pos.x), round(size / 2 + pos.y)
    for b in range(len(spec.mags)):
        psf = psf_model(psf_beta, scale).profile(spec.psf_fwhm[b])
        unit = psf.withFlux(1.0).drawImage(nx=size, ny=size, scale=scale, offset=pos).array
        level = SATURATION_SIGMAS * spec.sky_sigma[b]
        image[b] += unit * (overshoot * level / unit.max())
        saturated = image[b] >= level
        excess = float(np.clip(image[b] - level, 0, None).sum())
        trail = int(min(size, excess / (level * 3) + 1)) if saturated.any() else 0
        if trail:
            x0, x1 = max(cx - 1, 0), min(cx + 2, size)
            y0, y1 = max(cy - trail // 2, 0), min(cy + trail // 2 + 1, size)
            saturated[y0:y1, x0:x1] = True
        image[b][saturated] = level
        ivar[b][saturated] = 0.0
        mask[b][saturated] = False
