"""Render one object's cutout in one survey with GalSim: its whole scene, noise and artefacts.

The stamp is centred on the survey's catalogue position, so the galaxy sits off
centre by minus that survey's astrometric error, as in real cutouts. Everything
else the sky holds there (catalogued or fainter neighbouring galaxies, field
stars; see :mod:`whatsreal.sim.scene`) is drawn with it: all sources are summed
and convolved with the local PSF in one GalSim draw per band, so they share the
PSF exactly. Noise is background-limited Gaussian sky noise with the per-band
sigma of the local conditions, and ``image_ivar`` is exactly 1/sigma^2 of what
was added. Mask convention is MMU's: True means a clean pixel.

Labelled artefacts (saturated star, stripe, high-noise patch) are placed inside
``ObjectSpec.artefact_box``, the central region the model is trained on (the
preprocessing crop), so a label always flags something the model can see.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import galsim
import numpy as np

from whatsreal.sim.psf import GSPARAMS, psf_model
from whatsreal.surveys import Survey

__all__ = [
    "Galaxy",
    "ObjectSpec",
    "Stamp",
    "Star",
    "anchor_only",
    "artefact_region",
    "band_fluxes",
    "galaxy_profile",
    "lensed_source_image",
    "render_stamp",
    "scene_profile",
]

SATURATION_SIGMAS = 3000.0
"""Pixels saturate at this many sky sigmas (a stand-in for a full-well level)."""
STRIPE_SIGMAS = 8.0
"""A stripe artefact adds this many sky sigmas to a few rows or columns of one band."""
SATURATED_STAR_RADIUS = (0.3, 0.8)
"""A saturated star's centre lies at this range of fractions of the artefact box's half-side
from the stamp centre: off the galaxy, inside what the model sees."""
LENS_SOURCE_SERSIC_B = 1.678  # exp(-b r / r_e) is an exponential disk with r_e its half-light radius


@dataclass(frozen=True)
class Galaxy:
    """A galaxy in a stamp other than its anchor (plain values, picklable)."""

    mags: tuple[float, ...]
    """Observed magnitudes per band of the survey, extinction included."""
    offset_arcsec: tuple[float, float]
    """Position relative to the stamp centre."""
    half_light_radius: float
    sersic_n: float
    e1: float
    e2: float
    companion: tuple[float, ...] | None = None
    lens: tuple[float, ...] | None = None
    source_mags: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Star:
    """A field star in a stamp: a point source through the PSF."""

    mags: tuple[float, ...]
    offset_arcsec: tuple[float, float]


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
    neighbours: tuple[Galaxy, ...] = ()
    """Other galaxies whose light reaches the stamp."""
    stars: tuple[Star, ...] = ()
    """Field stars whose light reaches the stamp."""
    artefact_box: int | None = None
    """Side (pixels) of the central square that labelled artefacts are placed in: the
    preprocessing crop of this survey. None: the whole stamp."""


@dataclass
class Stamp:
    image: np.ndarray  # (B, S, S) float32
    ivar: np.ndarray  # (B, S, S) float32
    mask: np.ndarray  # (B, S, S) bool, True = clean
    model: np.ndarray
    """(B, S, S) float32: the noiseless, artefact-free scene (anchor, neighbours, faint
    galaxies and stars) - what the instrument would record without noise."""
    artefact: np.ndarray
    """(B, S, S) bool: pixels changed by a labelled artefact."""
    artefact_centres: tuple[tuple[str, float, float], ...] = ()
    """(kind, row, column) array coordinates of each labelled artefact's centre."""


def band_fluxes(mags: np.ndarray, zero_point: float) -> np.ndarray:
    """Image-unit fluxes for AB magnitudes at the survey's zero-point."""
    return 10 ** (-0.4 * (np.asarray(mags) - zero_point))


def anchor_only(spec: ObjectSpec) -> ObjectSpec:
    """The same object with nothing else in its stamp: its own noiseless light alone."""
    return replace(spec, neighbours=(), stars=())


def artefact_region(spec: ObjectSpec, size: int) -> tuple[int, int]:
    """Pixel range [lo, hi) per axis of the central square artefacts are placed in."""
    side = size if spec.artefact_box is None else min(int(spec.artefact_box), size)
    lo = (size - side) // 2
    return lo, lo + side


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
    spec: ObjectSpec | Galaxy,
    fluxes: np.ndarray,
    band: int,
    src_fluxes: np.ndarray | None,
    lensed: tuple[galsim.GSObject, float] | None,
) -> galsim.GSObject:
    """The intrinsic (pre-PSF) light of one galaxy in one band, centred on its own position."""
    if spec.sersic_n == 1.0:  # analytic in Fourier space: cheap for the many faint disks
        main = galsim.Exponential(half_light_radius=spec.half_light_radius, gsparams=GSPARAMS)
    else:
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


def scene_profile(spec: ObjectSpec, survey: Survey, size: int) -> list[galsim.GSObject]:
    """The intrinsic light of everything in the stamp, one profile per band, positioned
    relative to the stamp centre: the anchor, its neighbours and the stars."""
    scale, zp = survey.pixel_scale, survey.zero_point
    galaxies = []
    for g in (spec, *spec.neighbours):
        src = band_fluxes(g.source_mags, zp) if g.source_mags is not None else None
        lensed = lensed_source_image(g.lens, size * scale, scale / 3) if g.lens is not None else None
        galaxies.append((g, band_fluxes(g.mags, zp), src, lensed))
    stars = [(s, band_fluxes(s.mags, zp)) for s in spec.stars]
    out = []
    for b in range(len(survey.bands)):
        parts = [galaxy_profile(g, f, b, src, lensed).shift(*g.offset_arcsec) for g, f, src, lensed in galaxies]
        parts += [galsim.DeltaFunction(flux=float(f[b]), gsparams=GSPARAMS).shift(*s.offset_arcsec) for s, f in stars]
        out.append(parts[0] if len(parts) == 1 else galsim.Sum(parts))
    return out


def render_stamp(spec: ObjectSpec, survey: Survey, size: int, psf_beta: float) -> Stamp:
    """Draw the scene, add noise and artefacts; deterministic given ``spec.seed``."""
    rng = np.random.default_rng(list(spec.seed))
    nb = len(survey.bands)
    scale = survey.pixel_scale
    psfs = psf_model(psf_beta, scale)
    model = np.empty((nb, size, size), dtype=np.float32)
    for b, light in enumerate(scene_profile(spec, survey, size)):
        prof = galsim.Convolve(light, psfs.profile(spec.psf_fwhm[b], *spec.psf_g))
        model[b] = prof.drawImage(nx=size, ny=size, scale=scale).array

    lo, hi = artefact_region(spec, size)
    side = hi - lo
    artefact = np.zeros(model.shape, dtype=bool)
    centres: list[tuple[str, float, float]] = []
    sigma = np.broadcast_to(np.asarray(spec.sky_sigma, dtype=np.float64)[:, None, None], model.shape).copy()
    if spec.high_noise:
        h, w = rng.integers(max(side // 4, 1), max(side // 2, 1) + 1, size=2)
        y0, x0 = rng.integers(lo, hi - h + 1), rng.integers(lo, hi - w + 1)
        sigma[:, y0 : y0 + h, x0 : x0 + w] *= spec.high_noise_factor
        artefact[:, y0 : y0 + h, x0 : x0 + w] = True
        centres.append(("high_noise", y0 + (h - 1) / 2, x0 + (w - 1) / 2))
    image = model + sigma * rng.standard_normal(model.shape)
    ivar = 1.0 / sigma**2
    mask = np.ones(model.shape, dtype=bool)

    if spec.stripe:
        b = int(rng.integers(nb))
        width = int(rng.integers(1, 4))
        start = int(rng.integers(lo, max(hi - width, lo + 1)))
        amp = STRIPE_SIGMAS * spec.sky_sigma[b] * rng.uniform(0.5, 1.5)
        rows = rng.uniform() < 0.5
        band = np.s_[b, start : start + width, :] if rows else np.s_[b, :, start : start + width]
        image[band] += amp
        artefact[band] = True
        mid, line = start + (width - 1) / 2, (size - 1) / 2
        centres.append(("stripe", mid, line) if rows else ("stripe", line, mid))
    if spec.saturated_star:
        centres.append(_add_saturated_star(image, ivar, mask, artefact, spec, survey, size, psf_beta, rng))

    return Stamp(image.astype(np.float32), ivar.astype(np.float32), mask, model, artefact, tuple(centres))


def _add_saturated_star(
    image: np.ndarray,
    ivar: np.ndarray,
    mask: np.ndarray,
    artefact: np.ndarray,
    spec: ObjectSpec,
    survey: Survey,
    size: int,
    psf_beta: float,
    rng: np.random.Generator,
) -> tuple[str, float, float]:
    """A bright star off the galaxy but inside the artefact box: clipped at saturation, with a
    bleed trail along the readout columns; saturated pixels are masked and get ivar 0.
    Returns the star's centre as ("saturated_star", row, column)."""
    scale = survey.pixel_scale
    lo, hi = artefact_region(spec, size)
    r = rng.uniform(*SATURATED_STAR_RADIUS) * (hi - lo) / 2
    ang = rng.uniform(0, 2 * np.pi)
    pos = galsim.PositionD(r * np.cos(ang), r * np.sin(ang))
    # How far past saturation the star's peak goes: log-uniform, the same star in every band.
    overshoot = 10 ** rng.uniform(np.log10(3.0), np.log10(300.0))
    # Array index of the star's centre: the stamp's true centre is at (size - 1) / 2.
    cx, cy = round((size - 1) / 2 + pos.x), round((size - 1) / 2 + pos.y)
    for b in range(len(spec.mags)):
        psf = psf_model(psf_beta, scale).profile(spec.psf_fwhm[b])
        unit = psf.withFlux(1.0).drawImage(nx=size, ny=size, scale=scale, offset=pos).array
        level = SATURATION_SIGMAS * spec.sky_sigma[b]
        star = unit * (overshoot * level / unit.max())
        image[b] += star
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
        artefact[b] |= saturated | (star > spec.sky_sigma[b])
    return "saturated_star", (size - 1) / 2 + pos.y, (size - 1) / 2 + pos.x
