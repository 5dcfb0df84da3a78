# This file is part of epo_zooniverse.
#
# Developed for the LSST Data Management System.
# This product includes software developed by the LSST Project
# (https://www.lsst.org).
# See the COPYRIGHT file at the top-level directory of this distribution
# for details of code ownership.
#
# This program is free software: you can redistribute it and/or modify
# it under the terms of the GNU General Public License as published by
# the Free Software Foundation, either version 3 of the License, or
# (at your option) any later version.
#
# This program is distributed in the hope that it will be useful,
# but WITHOUT ANY WARRANTY; without even the implied warranty of
# MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# GNU General Public License for more details.
#
# You should have received a copy of the GNU General Public License
# along with this program.  If not, see <https://www.gnu.org/licenses/>.

"""Bring your own FITS images: resample them onto a Rubin-style tract grid
and write them into a Butler repository as ``deep_coadd`` datasets (nJy
per pixel, afw layout), with the sky map's skymap/tract/patch records and
bands, so that the cutout pipeline runs on them as on DRP coadds.

Everything is read and checked before the repository is touched: a bad
file or option leaves the repository as it was. See doc/own_images.md.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_PATCH_BORDER",
    "DEFAULT_PATCH_SIZE",
    "OWN_IMAGES_INSTRUMENT",
    "IngestSummary",
    "OwnImagesError",
    "ingest_own_images",
    "parse_band_values",
    "parse_image_specs",
    "prepare_bands",
]

import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from ..formats.mask_planes import COADD_MASK_PLANES
from .config import get_butler
from .dataset_types import DEEP_COADD, SKYMAP, register_dataset_types
from .legacy_coadd import write_legacy_masked_image
from .own_images_resample import BandMosaic, check_same_grid, resample_patch
from .own_images_units import OwnImagesError, resolve_flux_scale, robust_sigma
from .own_images_wcs import ImageTile, footprint_icrs, pixel_scale_arcsec, plan_tract, read_image_tile
from .skymap_geometry import SkyMapGeometry

DEFAULT_PATCH_SIZE = 2000
"""Inner patch size, pixels."""
DEFAULT_PATCH_BORDER = 100
"""Patch overlap border, pixels (neighbouring patches share twice this)."""
OWN_IMAGES_INSTRUMENT = "EpoZooniverseImages"
"""Instrument record made to carry bands the repository does not know yet
(a ``band`` record exists only through a ``physical_filter``)."""

_BAND_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,15}$")
_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


@dataclasses.dataclass
class IngestSummary:
    """What `ingest_own_images` wrote.

    Attributes
    ----------
    skymap : `SkyMapGeometry`
        The sky map (one tract).
    run : `str`
        The RUN collection of the ``deep_coadd`` and ``zooniverse_skymap``
        datasets.
    n_files : `int`
        Files read.
    coadds : `dict` [`str`, `list` [`int`]]
        Per band, the patches written.
    pixel_scale : `float`
        Tract pixel scale, arcseconds.
    """

    skymap: SkyMapGeometry
    run: str
    n_files: int
    coadds: dict[str, list[int]]
    pixel_scale: float

    @property
    def n_coadds(self) -> int:
        """Number of ``deep_coadd`` datasets written (`int`)."""
        return sum(len(p) for p in self.coadds.values())


def _check_band(band: str, where: str) -> str:
    if not _BAND_PATTERN.match(band):
        raise OwnImagesError(
            f"{where}: band {band!r} must start with a letter and hold at most 16 letters, digits or '_'."
        )
    return band


def parse_image_specs(specs: Iterable[str]) -> dict[str, list[str]]:
    """Parse ``BAND=FILE`` values (a band may be given several files:
    tiles).

    Parameters
    ----------
    specs : `~collections.abc.Iterable` [`str`]
        The ``--image`` values.

    Returns
    -------
    images : `dict` [`str`, `list` [`str`]]
        Files per band, in the order given.

    Raises
    ------
    OwnImagesError
        Raised if a value is not ``BAND=FILE`` or names a bad band, or if
        none is given.
    """
    images: dict[str, list[str]] = {}
    for spec in specs:
        band, sep, path = spec.partition("=")
        if not sep or not path:
            raise OwnImagesError(f"--image {spec!r}: expected BAND=FILE.")
        images.setdefault(_check_band(band.strip(), f"--image {spec!r}"), []).append(path)
    if not images:
        raise OwnImagesError("no --image BAND=FILE given.")
    return images


def parse_band_values(
    values: Iterable[str], option: str, bands: Iterable[str], convert: Callable[[str], Any] = str
) -> dict[str, Any]:
    """Parse per-band option values ``BAND=VALUE``; a bare ``VALUE``
    applies to every band.

    Parameters
    ----------
    values : `~collections.abc.Iterable` [`str`]
        The option's values.
    option : `str`
        The option's name, for messages.
    bands : `~collections.abc.Iterable` [`str`]
        The bands of the images.
    convert : callable, optional
        Turns a value's text into its value (`float` for numbers).

    Returns
    -------
    per_band : `dict` [`str`, `object`]
        The value of each band that has one.

    Raises
    ------
    OwnImagesError
        Raised for a band without images or a value ``convert`` refuses.
    """
    bands = list(bands)
    result: dict[str, Any] = {}
    for text in values:
        band, sep, value = text.partition("=")
        targets = [band.strip()] if sep else bands
        value = value if sep else text
        for target in targets:
            if target not in bands:
                raise OwnImagesError(f"{option} {text!r}: band {target!r} has no --image.")
            try:
                result[target] = convert(value.strip())
            except ValueError:
                raise OwnImagesError(f"{option} {text!r}: bad value {value.strip()!r}.") from None
    return result


def _read_pixels(tile: ImageTile) -> np.ndarray:
    with fits.open(tile.path, memmap=False) as hdul:
        hdu = hdul[tile.hdu]
        # A section reads only its pixels, with BSCALE/BZERO/BLANK applied
        # (which astropy refuses on memory-mapped data).
        index = (0,) * (len(hdu.shape) - 2) + (slice(None), slice(None))
        return np.asarray(hdu.section[index], dtype=np.float32).reshape(tile.shape)


def prepare_bands(
    images: Mapping[str, Sequence[str | os.PathLike]],
    *,
    units: Mapping[str, str] | None = None,
    zero_points: Mapping[str, float] | None = None,
    scales: Mapping[str, float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, BandMosaic]:
    """Read and check every file: WCS, units, data, grids of the tiles.

    Parameters
    ----------
    images : `~collections.abc.Mapping` [`str`, `~collections.abc.Sequence`]
        Files per band.
    units, zero_points, scales : `~collections.abc.Mapping`, optional
        Per band: unit (overrides ``BUNIT``), AB zero point of one count,
        or factor to nJy per pixel (see `resolve_flux_scale`).
    progress : callable, optional
        Called with a line per file.

    Returns
    -------
    bands : `dict` [`str`, `BandMosaic`]
        The bands, ready to resample.

    Raises
    ------
    OwnImagesError
        Raised for the first problem found (missing file, no celestial
        WCS, NaN-only image, unknown unit, tiles on different grids, ...).
    """
    say = progress or (lambda message: None)
    units, zero_points, scales = units or {}, zero_points or {}, scales or {}
    n_files = sum(len(paths) for paths in images.values())
    mosaics = {}
    count = 0
    for band, paths in images.items():
        tiles, flux_scales, sigmas = [], [], []
        for path in paths:
            count += 1
            tile = read_image_tile(band, path)
            pixels = _read_pixels(tile)
            finite = np.isfinite(pixels)
            if not finite.any():
                raise OwnImagesError(f"{tile.where}: every pixel is NaN or infinite.")
            scale = resolve_flux_scale(
                tile.header,
                tile.where,
                unit=units.get(band),
                zero_point=zero_points.get(band),
                scale=scales.get(band),
            )
            sigma = robust_sigma(pixels) if tile.variance_hdu is None and tile.weight_hdu is None else 0.0
            frame = tile.frame.name
            say(
                f"[{count}/{n_files}] {band}: {tile.path.name} {tile.shape[1]}x{tile.shape[0]} "
                f"{'/'.join(tile.wcs.wcs.ctype)} ({frame}), {scale.description}"
            )
            tiles.append(tile)
            flux_scales.append(scale)
            sigmas.append(sigma)
        if len({s.per_steradian for s in flux_scales}) > 1:
            raise OwnImagesError(
                f"band {band}: its tiles mix surface-brightness and per-pixel units; give one "
                f"--unit {band}=UNIT."
            )
        mosaics[band] = BandMosaic(band, tiles, check_same_grid(tiles), flux_scales, sigmas)
    return mosaics


def _register_bands(butler: Any, bands: Iterable[str]) -> None:
    """Make the bands known to the repository, through this package's own
    instrument's physical filters for those it does not know yet.
    """
    known = {record.name for record in butler.registry.queryDimensionRecords("band")}
    missing = [band for band in bands if band not in known]
    if not missing:
        return
    butler.registry.syncDimensionData(
        "instrument",
        {
            "name": OWN_IMAGES_INSTRUMENT,
            "visit_max": 1,
            "visit_system": 0,
            "exposure_max": 1,
            "detector_max": 1,
            "class_name": "lsst.epo.zooniverse.butler.own_images.OWN_IMAGES_INSTRUMENT",
        },
    )
    for band in missing:
        butler.registry.syncDimensionData(
            "physical_filter", {"instrument": OWN_IMAGES_INSTRUMENT, "name": f"{band}~own", "band": band}
        )


# One function reads as the recipe: check options, read every file, plan
# the tract, then write the repository; splitting it would scatter it.
def ingest_own_images(
    repo: str,
    *,
    skymap: str,
    images: Mapping[str, Sequence[str | os.PathLike]],
    run: str | None = None,
    units: Mapping[str, str] | None = None,
    zero_points: Mapping[str, float] | None = None,
    scales: Mapping[str, float] | None = None,
    pixel_scale: float | None = None,
    patch_size: int = DEFAULT_PATCH_SIZE,
    patch_border: int = DEFAULT_PATCH_BORDER,
    progress: Callable[[str], None] | None = None,
) -> IngestSummary:
    """Resample a user's images onto a new sky map's tract and ingest them
    as ``deep_coadd`` datasets.

    Parameters
    ----------
    repo : `str`
        Butler repository (with this package's configuration).
    skymap : `str`
        Name of the new sky map (must not exist in ``repo``).
    images : `~collections.abc.Mapping` [`str`, `~collections.abc.Sequence`]
        Files per band (several files of a band are tiles of one grid).
    run : `str`, optional
        RUN collection to write (default ``images/<skymap>``).
    units, zero_points, scales : `~collections.abc.Mapping`, optional
        Per-band flux unit options (see `prepare_bands`).
    pixel_scale : `float`, optional
        Tract pixel scale in arcseconds (default: the finest of the
        images').
    patch_size, patch_border : `int`, optional
        Inner patch size and overlap border, pixels.
    progress : callable, optional
        Called with a line per file and per patch written.

    Returns
    -------
    summary : `IngestSummary`
        What was written.

    Raises
    ------
    OwnImagesError
        Raised for a bad file or option (nothing is written then) or an
        existing sky map name.
    """
    from lsst.daf.butler import CollectionType

    say = progress or (lambda message: None)
    if not _NAME_PATTERN.match(skymap):
        raise OwnImagesError(
            f"--skymap {skymap!r}: use letters, digits, '_', '.', '-' (start with a letter)."
        )
    if patch_size < 100 or not 0 <= patch_border < patch_size:
        raise OwnImagesError(
            f"--patch-size {patch_size}, --patch-border {patch_border}: need size >= 100, 0 <= border < size."
        )
    if pixel_scale is not None and not (np.isfinite(pixel_scale) and pixel_scale > 0):
        raise OwnImagesError(f"--pixel-scale {pixel_scale!r}: must be a positive number of arcseconds.")
    run = run or f"images/{skymap}"
    mosaics = prepare_bands(images, units=units, zero_points=zero_points, scales=scales, progress=say)
    tiles = [tile for mosaic in mosaics.values() for tile in mosaic.tiles]
    scale = pixel_scale or min(pixel_scale_arcsec(tile) for tile in tiles)
    outline = [footprint_icrs(tile) for tile in tiles]
    ra = np.concatenate([o[0] for o in outline])
    dec = np.concatenate([o[1] for o in outline])
    tract = plan_tract(ra, dec, scale_arcsec=scale, patch_inner=patch_size, border=patch_border)
    geometry = SkyMapGeometry(name=skymap, tracts=(tract,))
    box = tract.bbox
    say(
        f"sky map {skymap}: tract {tract.tract_id} {box.width}x{box.height} pixels of {scale:.4g} arcsec, "
        f"{tract.nx}x{tract.ny} patches"
    )

    try:
        butler = get_butler(repo, writeable=True)
    except (FileNotFoundError, OSError, ValueError) as err:
        raise OwnImagesError(f"{repo}: not a Butler repository ({err}).") from None
    if skymap in {record.name for record in butler.registry.queryDimensionRecords("skymap")}:
        raise OwnImagesError(f"--skymap {skymap!r} already exists in {repo}; choose another name.")
    _register_bands(butler, mosaics)
    geometry.register(butler)
    register_dataset_types(butler)
    butler.registry.registerCollection(run, CollectionType.RUN)
    butler.put(geometry, SKYMAP.name, skymap=skymap, run=run)
    coadds = {}
    staging_parent = repo if os.path.isdir(repo) else None
    staging = Path(tempfile.mkdtemp(prefix="own-images-", dir=staging_parent))
    try:
        for band, mosaic in mosaics.items():
            coadds[band] = _write_band(butler, geometry, mosaic, run, staging, say)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return IngestSummary(skymap=geometry, run=run, n_files=len(tiles), coadds=coadds, pixel_scale=scale)


def _write_band(
    butler: Any,
    geometry: SkyMapGeometry,
    mosaic: BandMosaic,
    run: str,
    staging: Path,
    say: Callable[[str], None],
) -> list[int]:
    """Resample one band onto every patch, write and ingest (move) the
    files; return the patches written.
    """
    from lsst.daf.butler import DatasetRef, FileDataset

    from .formatters import LegacyCoaddFormatter

    tract = geometry.tracts[0]
    tract_wcs = tract.wcs
    dataset_type = DEEP_COADD.make(butler.dimensions)
    written = []
    datasets = []
    n_patches = tract.nx * tract.ny
    for patch in tract.patch_ids():
        box = tract.patch_outer_bbox(patch)
        planes = resample_patch(mosaic, tract_wcs, box)
        if planes is None:
            continue
        image, mask, variance = planes
        path = staging / f"deep_coadd_{geometry.name}_{tract.tract_id}_{patch}_{mosaic.band}.fits"
        write_legacy_masked_image(
            path,
            image=image,
            mask=mask,
            variance=variance,
            x0=box.x0,
            y0=box.y0,
            wcs=tract_wcs,
            mask_planes=COADD_MASK_PLANES,
            metadata={"BAND": mosaic.band, "SKYMAP": geometry.name, "TRACT": tract.tract_id, "PATCH": patch},
        )
        data_id = {"skymap": geometry.name, "tract": tract.tract_id, "patch": patch, "band": mosaic.band}
        ref = DatasetRef(dataset_type, butler.registry.expandDataId(data_id), run=run)
        datasets.append(FileDataset(path=str(path), refs=[ref], formatter=LegacyCoaddFormatter))
        written.append(patch)
        coverage = float(np.isfinite(image).mean())
        say(f"band {mosaic.band}: patch {patch} ({patch + 1}/{n_patches}) written, {coverage:.0%} covered")
    if datasets:
        butler.ingest(*datasets, transfer="move")
    return written
