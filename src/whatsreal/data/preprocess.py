"""AION-style preprocessing of paired cutouts into one memory-mappable array per survey.

For each survey, in this order:

1. keep bands g, r, i, z (HSC's y is dropped) and zero every NaN/inf pixel and
   every pixel with ``image_ivar == 0`` (counted and logged);
2. clamp each band to +-max (HSC 80/110/200/330, Legacy 6/15/20/25, in each
   survey's native flux units);
3. put fluxes on the Legacy zero-point: divide by 10**((zp - 22.5) / 2.5);
4. HSC: centre-crop to 48x48; Legacy: resample the centre 31x31 onto 48x48 with
   bilinear interpolation (upsampling, so antialiasing changes nothing), the
   output grid centred exactly on the cutout centre, so a source in the centre
   stays in the centre whatever the cutout's parity;
5. arcsinh(x / 0.01) * 0.01 * 10;
6. one scalar standardisation per survey, mean and std fitted on the training
   pairs only.

A cutout with a band that has no valid pixel where the crop reads (every pixel NaN/inf,
``ivar == 0`` or exactly 0: MMU masks are judged through ivar, as in step 1, because
their bits also flag ordinary pixels) would become a blank training image. Such
cutouts are found per band (:meth:`BandTransform.blank_bands`), listed in the log by
object id and band, and recorded in the survey's metadata (``DatasetLayout.meta``: ``blank_bands``,
``blank_dropped``); ``preprocess.blank_cutouts: drop`` (the default) leaves them out of
the standardisation fit here and their pairs out of everything that trains or evaluates
(:func:`whatsreal.data.usable.usable_pairs`), ``flag`` keeps them.

Row i of the image array (``DatasetLayout.images``) is pair i. Images are streamed shard by shard,
chunk by chunk; nothing holds more than one chunk of raw cutouts in memory.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from whatsreal.data.catalog import band_letters
from whatsreal.data.crossmatched import parquet_band_letters, read_parquet_images
from whatsreal.data.mmu import MMUFormatError, read_images
from whatsreal.io import atomic_path
from whatsreal.parallel import ordered_map
from whatsreal.progress import Progress
from whatsreal.surveys import SURVEYS, Survey

__all__ = [
    "BandTransform",
    "PreprocessStats",
    "band_positions",
    "band_transform",
    "blank_band_labels",
    "crop_window",
    "iter_rows_by_file",
    "log_blank_cutouts",
    "model_pixel_scale",
    "model_pixels_to_flux",
    "native_band_transform",
    "preprocess_survey",
    "resample_centre",
]

log = logging.getLogger(__name__)


def _interpolation_matrix(src: int, crop: int, size: int) -> np.ndarray:
    """(size, src) bilinear weights: output pixel j samples input coordinate
    ``c + (j - (size-1)/2) * crop/size`` with ``c = (src-1)/2``; zero outside the input."""
    coords = (src - 1) / 2 + (np.arange(size) - (size - 1) / 2) * (crop / size)
    lo = np.floor(coords).astype(int)
    frac = coords - lo
    w = np.zeros((size, src), dtype=np.float64)
    for j, (i0, f) in enumerate(zip(lo, frac, strict=True)):
        if 0 <= i0 < src:
            w[j, i0] += 1 - f
        if 0 <= i0 + 1 < src:
            w[j, i0 + 1] += f
    return w.astype(np.float32)


def crop_window(s: int, crop: int, size: int) -> slice:
    """The input pixels (per axis) of an ``s``-pixel cutout that :func:`resample_centre` reads.

    Exactly the central ``crop`` pixels for a pixel copy; for a resampling, every pixel
    with a non-zero interpolation weight (a bilinear tap can reach one pixel beyond the
    nominal crop). A band is blank for training when nothing valid lies in this window.
    """
    if crop == size and (s - crop) % 2 == 0:
        start = (s - crop) // 2
        return slice(start, start + crop)
    used = np.flatnonzero(_interpolation_matrix(s, crop, size).any(axis=0))
    return slice(int(used[0]), int(used[-1]) + 1)


def resample_centre(images: np.ndarray, crop: int, size: int) -> np.ndarray:
    """Bilinear resampling of the central ``crop`` x ``crop`` pixels onto ``size`` x ``size``.

    Output pixel centres map to input coordinates ``c + (j - (size-1)/2) * crop/size``
    with ``c = (S-1)/2`` the cutout centre, so the output is centred on the input
    exactly, whatever the parities (the ``align_corners=False`` convention of
    ``torch.nn.functional.interpolate`` on a centred crop). Bilinear interpolation
    is separable, so this is two small matrix products. When ``crop == size`` and
    the parities allow it, it is an exact pixel copy.
    """
    s, s2 = images.shape[-2:]
    if s != s2:
        raise ValueError(f"cutouts must be square, got {s}x{s2}")
    if crop > s:
        raise ValueError(f"cannot take the central {crop} pixels of a {s}-pixel cutout")
    if crop == size and (s - crop) % 2 == 0:
        start = (s - crop) // 2
        return np.ascontiguousarray(images[:, :, start : start + crop, start : start + crop])
    w = _interpolation_matrix(s, crop, size)
    return (w @ images.astype(np.float32, copy=False) @ w.T).astype(np.float32)


@dataclass
class BandTransform:
    """Steps 1-5 for one survey (standardisation is fitted afterwards)."""

    survey: str
    band_index: list[int]
    """Positions of g, r, i, z in the shard's band axis."""
    clamp: np.ndarray
    crop: int
    size: int
    softening: float
    scale: float
    reference_zero_point: float
    zero_point: float | None = None
    """The survey's zero point (its registry entry); None: the paired surveys' (``SURVEYS``)."""

    @property
    def flux_scale(self) -> float:
        zero_point = SURVEYS[self.survey].zero_point if self.zero_point is None else self.zero_point
        return 10 ** ((zero_point - self.reference_zero_point) / 2.5)

    def __call__(self, image: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, int]:
        """(n, B, S, S) raw cutouts and ivar -> (n, 4, size, size) float32, and the number of zeroed pixels."""
        x = image[:, self.band_index].astype(np.float32, copy=True)
        w = ivar[:, self.band_index]
        bad = ~np.isfinite(x) | ~(w > 0)
        n_bad = int(bad.sum())
        x[bad] = 0.0
        lim = self.clamp[None, :, None, None]
        np.clip(x, -lim, lim, out=x)
        x /= self.flux_scale
        x = resample_centre(x, self.crop, self.size)
        return (np.arcsinh(x / self.softening) * self.softening * self.scale).astype(np.float32), n_bad

    def invert(self, y: np.ndarray) -> np.ndarray:
        """Steps 5 and 3 undone: arcsinh-scaled pixels back to the survey's native flux units,
        on the model's pixel grid (the crop itself for HSC, the resampled grid for Legacy).

        Exact inside the clamp range; clamped and zeroed pixels (step 1-2) cannot come back.
        Values beyond the clamp (a generated pixel can overshoot) come back as the clamp: the
        model never saw brighter pixels, and sinh of them would overflow.
        """
        y = np.asarray(y, dtype=np.float64)
        band_axis = y.ndim - 3  # (..., band, H, W)
        shape = [1] * y.ndim
        shape[band_axis] = -1
        lim = np.arcsinh(self.clamp.astype(np.float64) / self.flux_scale / self.softening) * self.softening * self.scale
        y = np.clip(y, -lim.reshape(shape), lim.reshape(shape))
        x = np.sinh(y / (self.softening * self.scale)) * self.softening
        return (x * self.flux_scale).astype(np.float32)

    def blank_bands(self, image: np.ndarray, ivar: np.ndarray) -> np.ndarray:
        """(n, 4) True where a band has no valid pixel in the window the crop reads.

        Valid: finite, ``ivar > 0`` and not exactly 0 (real and simulated pixels carry
        noise, so an all-zero band is a fill value, not sky).
        """
        win = crop_window(image.shape[-1], self.crop, self.size)
        x = image[:, self.band_index, win, win]
        w = ivar[:, self.band_index, win, win]
        valid = np.isfinite(x) & (w > 0) & (x != 0)
        return ~valid.any(axis=(-2, -1))


@dataclass
class PreprocessStats:
    """Running sums for the training-split standardisation, and the bad-pixel count."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    bad_pixels: int = 0

    def add(self, x: np.ndarray) -> None:
        x64 = x.astype(np.float64)
        self.n += x64.size
        self.total += float(x64.sum())
        self.total_sq += float((x64**2).sum())

    @property
    def mean(self) -> float:
        return self.total / self.n

    @property
    def std(self) -> float:
        return float(np.sqrt(max(self.total_sq / self.n - self.mean**2, 0.0)))


def band_transform(
    survey: str, preprocess_cfg: dict, band_index: list[int] | None = None, zero_point: float | None = None
) -> BandTransform:
    """Steps 1-5 for ``survey`` as ``preprocess_cfg`` sets them; ``band_index``: where g, r, i, z
    sit in the input's band axis (default: already in that order); ``zero_point``: the survey's
    registry zero point (default: the paired surveys')."""
    bands = preprocess_cfg["bands"]
    return BandTransform(
        survey,
        list(range(len(bands))) if band_index is None else list(band_index),
        np.asarray(preprocess_cfg["clamp"][survey], dtype=np.float32),
        int(preprocess_cfg["crop"][survey]),
        int(preprocess_cfg["size"]),
        float(preprocess_cfg["arcsinh_softening"]),
        float(preprocess_cfg["arcsinh_scale"]),
        float(preprocess_cfg["reference_zero_point"]),
        zero_point,
    )


def native_band_transform(survey: str, preprocess_cfg: dict, entry: Survey | None = None) -> BandTransform:
    """:func:`band_transform` for cutouts whose bands are in the survey's own order (MMU's,
    the simulator's): every band of ``preprocess.bands`` must be one of the survey's.
    ``entry``: the survey's registry entry (bands, zero point); default the paired surveys'."""
    entry = SURVEYS[survey] if entry is None else entry
    bands = list(entry.bands)
    missing = [b for b in preprocess_cfg["bands"] if b not in bands]
    if missing:
        raise ValueError(f"preprocess.bands {missing} are not {survey} bands ({bands})")
    index = [bands.index(b) for b in preprocess_cfg["bands"]]
    return band_transform(survey, preprocess_cfg, index, entry.zero_point)


def model_pixel_scale(survey: str, preprocess_cfg: dict) -> float:
    """Arcseconds per pixel of the model's grid: the central ``crop`` native pixels span ``size``
    (HSC: its own 0.168"; Legacy: 31 x 0.262" resampled onto 48 pixels)."""
    return SURVEYS[survey].pixel_scale * int(preprocess_cfg["crop"][survey]) / int(preprocess_cfg["size"])


def model_pixels_to_flux(x: np.ndarray, survey: str, preprocess_cfg: dict, mean: float, std: float) -> np.ndarray:
    """Standardised model pixels -> ``survey``'s native flux on the model grid: the
    standardisation (``mean``, ``std``: the fitted normalisation) and steps 5 and 3 undone."""
    return band_transform(survey, preprocess_cfg).invert(np.asarray(x, dtype=np.float64) * std + mean)


def iter_rows_by_file(files: np.ndarray, rows: np.ndarray, chunk: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Group output positions by shard and yield (file, shard rows, output positions) in chunks.

    Reading a shard's rows in increasing order touches each compressed chunk once.
    """
    order = np.lexsort((rows, files))
    files_sorted = files[order]
    bounds = np.flatnonzero(np.r_[True, files_sorted[1:] != files_sorted[:-1], True])
    for lo, hi in itertools.pairwise(bounds):
        for start in range(lo, hi, chunk):
            sel = order[start : min(start + chunk, hi)]
            yield str(files[sel[0]]), rows[sel], sel


def _transform_chunk(transform: BandTransform, path: str, rows: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Read one chunk of a shard, transform it and find its blank bands (runs in a worker process)."""
    image, ivar = read_cutouts(path, rows, transform.survey)
    x, n_bad = transform(image, ivar)
    return x, n_bad, transform.blank_bands(image, ivar)


def band_positions(path: str, survey: str, wanted: list[str]) -> list[int]:
    """Where each wanted band sits in a shard's band axis (MMU HDF5 or crossmatched parquet)."""
    if path.endswith(".parquet"):
        letters = parquet_band_letters(path, survey)
    else:
        with h5py.File(path, "r") as f:
            letters = band_letters(f["image_band"][0])
    missing = [b for b in wanted if b not in letters]
    if missing:
        raise MMUFormatError(f"{path}: bands {missing} missing from {survey} images ({letters})")
    return [letters.index(b) for b in wanted]


def read_cutouts(path: str, rows: np.ndarray, survey: str) -> tuple[np.ndarray, np.ndarray]:
    """Cutouts and ivar for ``rows`` of one shard, whichever format it is."""
    if path.endswith(".parquet"):
        got = read_parquet_images(path, rows, survey)
    else:
        got = read_images(path, rows, ("image_array", "image_ivar"))
    return got["image_array"], got["image_ivar"]


def preprocess_survey(
    survey: str,
    catalog: pd.DataFrame,
    rows: np.ndarray,
    train: np.ndarray,
    preprocess_cfg: dict,
    out_npy: str | Path,
    workers: int = 1,
    zero_point: float | None = None,
) -> dict[str, Any]:
    """Preprocess the catalogue rows ``rows`` (row i = pair i) into ``out_npy``; a row of -1 (a
    galaxy this survey did not see, N-way data) stays all zeros and is neither read nor fitted.

    ``train`` marks the pairs whose pixels fit the standardisation (less their blank
    cutouts when ``preprocess_cfg["blank_cutouts"]`` is ``drop``: they are never trained on);
    chunks are read and transformed in ``workers`` processes. Returns the
    normalisation and counts (also logged) and ``blank``, (n, bands) True where a band
    of pair i's cutout is blank. The array is written to a temporary file and renamed
    only when complete.
    """
    n_bands = len(preprocess_cfg["bands"])
    rows = np.asarray(rows)
    seen = np.flatnonzero(rows >= 0)
    n = len(seen)
    size = int(preprocess_cfg["size"])
    chunk_size = int(preprocess_cfg["chunk_size"])
    drop_blank = preprocess_cfg["blank_cutouts"] == "drop"
    files = catalog["file"].to_numpy()[rows[seen]]
    shard_rows = catalog["row"].to_numpy()[rows[seen]]
    chunks = [(path, r, seen[pos]) for path, r, pos in iter_rows_by_file(files, shard_rows, chunk_size)]
    transforms = _band_transforms(survey, preprocess_cfg, [path for path, _, _ in chunks], zero_point)
    with atomic_path(out_npy, ".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(rows), n_bands, size, size))
        t0 = time.perf_counter()
        with Progress(n, f"preprocess {survey}", "cutouts", log=log) as shown:
            stats, blank = _transform_chunks(out, chunks, transforms, train, drop_blank, workers, shown)
        elapsed = time.perf_counter() - t0
        mean, std = _fitted_standardisation(survey, stats, drop_blank and blank.any())
        _standardise(out, mean, std, chunk_size)
        unseen = np.flatnonzero(rows < 0)
        for start in range(0, unseen.size, chunk_size):  # absent views stay exact zeros
            out[unseen[start : start + chunk_size]] = 0.0
        out.flush()
        del out
    info = {
        "norm_mean": mean,
        "norm_std": std,
        "bad_pixels": stats.bad_pixels,
        "cutouts_per_s": n / elapsed if elapsed > 0 else float("inf"),
        "blank": blank,
    }
    log.info(
        "%s: %d cutouts -> %s in %.1f s (%.0f cutouts/s); %d NaN/inf/ivar=0 pixels set to 0; "
        "standardisation mean %.5f std %.5f (training split)",
        survey,
        n,
        out_npy,
        elapsed,
        info["cutouts_per_s"],
        stats.bad_pixels,
        mean,
        std,
    )
    return info


def _standardise(out: np.ndarray, mean: float, std: float, chunk_size: int) -> None:
    """Step 6 in place, ``chunk_size`` rows at a time (``out`` is a memory map larger than memory)."""
    for start in range(0, len(out), chunk_size):
        block = out[start : start + chunk_size]
        block -= mean
        block /= std


def _band_transforms(
    survey: str, preprocess_cfg: dict, paths: Sequence[str], zero_point: float | None = None
) -> dict[str, BandTransform]:
    """One :class:`BandTransform` per shard: shards of one survey may order their bands differently."""
    bands = list(preprocess_cfg["bands"])
    return {
        path: band_transform(survey, preprocess_cfg, band_positions(path, survey, bands), zero_point)
        for path in dict.fromkeys(paths)
    }


def _transform_chunks(
    out: np.ndarray,
    chunks: list[tuple[str, np.ndarray, np.ndarray]],
    transforms: dict[str, BandTransform],
    train: np.ndarray,
    drop_blank: bool,
    workers: int,
    shown: Progress | None = None,
) -> tuple[PreprocessStats, np.ndarray]:
    """Transform every chunk (steps 1-5) into its rows of ``out``, in ``workers`` processes,
    counting the cutouts done on ``shown``.

    Returns the standardisation's running sums over the training pairs (less the blank
    cutouts when ``drop_blank``) and the (n, bands) blank-band flags.
    """
    stats = PreprocessStats()
    blank = np.zeros(out.shape[:2], dtype=bool)
    jobs = ((transforms[path], path, file_rows) for path, file_rows, _ in chunks)
    for (_, _, positions), (x, n_bad, blank_chunk) in zip(
        chunks, ordered_map(_transform_chunk, jobs, workers), strict=True
    ):
        stats.bad_pixels += n_bad
        out[positions] = x
        blank[positions] = blank_chunk
        in_train = train[positions]
        if drop_blank:
            in_train = in_train & ~blank_chunk.any(axis=1)
        if in_train.any():
            stats.add(x[in_train])
        if shown is not None:
            shown.update(len(positions))
    return stats, blank


def _fitted_standardisation(survey: str, stats: PreprocessStats, blank_dropped: bool) -> tuple[float, float]:
    """(mean, std) of the training pixels, refusing a fit on nothing or on constant pixels.

    ``blank_dropped``: blank cutouts were left out of the fit (named in the error when that
    left nothing)."""
    if stats.n == 0:
        why = " that is not blank (preprocess.blank_cutouts: drop)" if blank_dropped else ""
        raise ValueError(f"{survey}: no training pair{why} to fit the standardisation on")
    mean, std = stats.mean, stats.std
    if not std > 0:
        raise ValueError(f"{survey}: preprocessed training pixels have zero variance; are the images empty?")
    return mean, std


def blank_band_labels(blank: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """Per row, the blank bands as text (``"g,z"``), ``""`` where every band has pixels."""
    names = np.asarray(bands, dtype=object)
    return np.array([",".join(names[row]) for row in np.asarray(blank, dtype=bool)], dtype=object)


def log_blank_cutouts(survey: str, object_ids: Sequence, labels: np.ndarray, mode: str, crop: int) -> int:
    """Log the cutouts with a blank band: a warning with the count per band, then one line
    per object (every one, however many), so ``grep blank`` on the log lists them all.
    Returns their number."""
    labels = np.asarray(labels, dtype=object)
    hit = np.flatnonzero(labels != "")
    if hit.size == 0:
        log.info("%s: no cutout has a blank band inside the %d-pixel crop", survey, crop)
        return 0
    per_band: dict[str, int] = {}
    for label in labels[hit]:
        for band in label.split(","):
            per_band[band] = per_band.get(band, 0) + 1
    consequence = (
        "their pairs are left out of training, validation and pair-sampling experiments, and never used as "
        "neighbour views"
        if mode == "drop"
        else "they are kept and trained on as they are"
    )
    log.warning(
        "%s: %d of %d cutouts have a blank band (no finite, ivar > 0, non-zero pixel inside the %d-pixel crop; "
        "per band: %s); preprocess.blank_cutouts is %s: %s. They are listed below and in the "
        "%s metadata file (column blank_bands)",
        survey,
        hit.size,
        len(labels),
        crop,
        ", ".join(f"{b} {k}" for b, k in per_band.items()),
        mode,
        consequence,
        survey,
    )
    ids = np.asarray(object_ids)
    for i in hit:
        log.warning("%s blank cutout: object_id %s, pair %d, band(s) %s", survey, ids[i], i, labels[i])
    return int(hit.size)
