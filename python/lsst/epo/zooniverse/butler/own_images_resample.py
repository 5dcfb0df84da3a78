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

"""Resample a band's images (one or more tiles on one pixel grid) onto a
patch of a tract, in nJy per tract pixel.

Method: bilinear interpolation of the surface brightness. Values in a flux
per image pixel (nJy, nanomaggies, calibrated counts) are interpolated as
they are and multiplied by the local ratio of the tract pixel's area to
the image pixel's area (the Jacobian determinant of the pixel map), which
is the same as interpolating the surface brightness and multiplying by
the tract pixel's solid angle; values in a surface brightness (MJy/sr) are
interpolated and multiplied by the tract pixel's solid angle. Either way
the total flux of a source is kept (to the accuracy of the interpolation:
well-sampled sources) and a flat sky keeps its surface brightness, in any
projection. Variances are interpolated the same way and scaled by the
square of the same factor (the noise correlation that interpolation
introduces between neighbouring pixels is not tracked).

Tiles of a band are first pasted into a local mosaic on their common grid
(the first tile wins where they overlap), so interpolation runs across
tile borders without a seam.
"""

from __future__ import annotations

__all__ = ["BandMosaic", "check_same_grid", "resample_patch"]

import dataclasses
import warnings

import astropy.wcs
import numpy as np
from astropy.io import fits
from scipy.ndimage import map_coordinates

from ..formats.mask_planes import COADD_MASK_PLANES
from .own_images_units import FluxScale, OwnImagesError
from .own_images_wcs import ImageTile, covered_box, map_tract_pixels
from .skymap_geometry import Box2

_IGNORED_GRID_CARDS = ("CRPIX", "DATE", "MJD", "WCSAXES", "TSTART", "TSTOP", "XPOSURE", "TELAPSE")


@dataclasses.dataclass
class BandMosaic:
    """The tiles of one band, on one pixel grid.

    Attributes
    ----------
    band : `str`
        The band.
    tiles : `list` [`ImageTile`]
        The files; the first one's pixel grid is the band's grid.
    offsets : `list` [`tuple` [`int`, `int`]]
        Per tile, ``(dx, dy)`` from its pixels to the band's grid.
    scales : `list` [`FluxScale`]
        Per tile, the conversion to nJy.
    sigmas : `list` [`float`]
        Per tile, the sky noise in the tile's own units (used when it has
        no variance or weight plane).
    """

    band: str
    tiles: list[ImageTile]
    offsets: list[tuple[int, int]]
    scales: list[FluxScale]
    sigmas: list[float]

    @property
    def per_steradian(self) -> bool:
        """Whether the values are surface brightnesses (`bool`)."""
        return self.scales[0].per_steradian


def _grid_cards(wcs: astropy.wcs.WCS) -> dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = wcs.to_header(relax=True)
    return {k: v for k, v in header.items() if not k.startswith(_IGNORED_GRID_CARDS)}


def _same_value(a: object, b: object) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int):
        return bool(np.isclose(a, b, rtol=1e-9, atol=1e-12))
    return a == b


def check_same_grid(tiles: list[ImageTile]) -> list[tuple[int, int]]:
    """Check that a band's tiles share one pixel grid (their WCS differ in
    CRPIX only, by whole pixels) and return their offsets to the first.

    Parameters
    ----------
    tiles : `list` [`ImageTile`]
        The tiles of one band.

    Returns
    -------
    offsets : `list` [`tuple` [`int`, `int`]]
        ``(dx, dy)``: pixel ``(x, y)`` of a tile is ``(x + dx, y + dy)`` on
        the first tile's grid.

    Raises
    ------
    OwnImagesError
        Raised, naming the first differing card, if two tiles are on
        different grids.
    """
    reference = tiles[0]
    cards = _grid_cards(reference.wcs)
    offsets = []
    for tile in tiles:
        other = _grid_cards(tile.wcs)
        for key in sorted(set(cards) | set(other)):
            if not _same_value(cards.get(key), other.get(key)):
                raise OwnImagesError(
                    f"tiles of band {tile.band} are on different grids: {reference.path} and {tile.path} "
                    f"differ in {key} ({cards.get(key)!r} vs {other.get(key)!r}); resample them to one grid "
                    "or give them different bands."
                )
        delta = reference.wcs.wcs.crpix - tile.wcs.wcs.crpix
        rounded = np.round(delta)
        if not np.allclose(delta, rounded, atol=1e-6):
            raise OwnImagesError(
                f"tiles of band {tile.band} are on different grids: {reference.path} and {tile.path} differ "
                f"in CRPIX by a fraction of a pixel ({delta[0]:g}, {delta[1]:g})."
            )
        offsets.append((int(rounded[0]), int(rounded[1])))
    return offsets


def _read_section(hdul: fits.HDUList, index: int, ys: slice, xs: slice) -> np.ndarray:
    hdu = hdul[index]
    lead = (0,) * (len(hdu.shape) - 2)
    return np.asarray(hdu.section[(*lead, ys, xs)], dtype=np.float32)


def _paste_tile(
    mosaic: BandMosaic, k: int, bounds: tuple[int, int, int, int], planes: tuple[np.ndarray, ...]
) -> None:
    """Paste tile ``k`` into the local planes (image, variance, bad) that
    cover band-grid pixels ``bounds = (x0, y0, x1, y1)``.
    """
    tile, (dx, dy), scale = mosaic.tiles[k], mosaic.offsets[k], mosaic.scales[k]
    x0, y0, x1, y1 = bounds
    height, width = tile.shape
    tx0, ty0 = max(x0 - dx, 0), max(y0 - dy, 0)
    tx1, ty1 = min(x1 - dx, width), min(y1 - dy, height)
    if tx0 >= tx1 or ty0 >= ty1:
        return
    image, variance, bad = planes
    target = (slice(ty0 + dy - y0, ty1 + dy - y0), slice(tx0 + dx - x0, tx1 + dx - x0))
    ys, xs = slice(ty0, ty1), slice(tx0, tx1)
    with fits.open(tile.path, memmap=False) as hdul:
        values = _read_section(hdul, tile.hdu, ys, xs) * np.float32(scale.factor)
        if tile.variance_hdu is not None:
            var = _read_section(hdul, tile.variance_hdu, ys, xs) * np.float32(scale.factor**2)
        elif tile.weight_hdu is not None:
            weight = _read_section(hdul, tile.weight_hdu, ys, xs)
            with np.errstate(divide="ignore", invalid="ignore"):
                var = np.where(weight > 0, np.float32(scale.factor**2) / weight, np.nan).astype(np.float32)
            values[~(weight > 0)] = np.nan
        else:
            var = np.full(values.shape, (mosaic.sigmas[k] * scale.factor) ** 2, dtype=np.float32)
        flagged = None
        if tile.mask_hdu is not None:
            flagged = _read_section(hdul, tile.mask_hdu, ys, xs) != 0
    empty = np.isnan(image[target])
    image[target] = np.where(empty, values, image[target])
    variance[target] = np.where(empty, var, variance[target])
    if flagged is not None:
        bad[target] = np.where(empty, flagged, bad[target])


def resample_patch(
    mosaic: BandMosaic, tract_wcs: astropy.wcs.WCS, box: Box2, step: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Resample a band onto a tract box.

    Parameters
    ----------
    mosaic : `BandMosaic`
        The band's tiles.
    tract_wcs : `astropy.wcs.WCS`
        The tract WCS (0-based pixels).
    box : `Box2`
        The tract pixels to fill (a patch's outer box).
    step : `int`, optional
        Node spacing of the pixel map (`map_tract_pixels`).

    Returns
    -------
    planes : `tuple` [`numpy.ndarray`, ...] or `None`
        ``(image, mask, variance)``: nJy per tract pixel (``float32``),
        ``COADD_MASK_PLANES`` bits (``int32``; ``NO_DATA`` where no tile
        covers, ``BAD`` where a tile's mask plane is non-zero), nJy²
        (``float32``); `None` if no tile reaches the box.
    """
    extent = _grid_extent(mosaic)
    full = box
    box = covered_box(tract_wcs, mosaic.tiles[0], full, Box2(*extent))
    if box is None:
        return None
    pixel_map = map_tract_pixels(
        tract_wcs, mosaic.tiles[0], box, surface_brightness=mosaic.per_steradian, step=step
    )
    coords = pixel_map.coords
    valid = np.isfinite(coords[0])
    if not valid.any():
        return None
    bounds = (
        int(np.floor(np.nanmin(coords[1]))) - 1,
        int(np.floor(np.nanmin(coords[0]))) - 1,
        int(np.floor(np.nanmax(coords[1]))) + 3,
        int(np.floor(np.nanmax(coords[0]))) + 3,
    )
    bounds = (
        max(bounds[0], extent[0]),
        max(bounds[1], extent[1]),
        min(bounds[2], extent[2]),
        min(bounds[3], extent[3]),
    )
    if bounds[0] >= bounds[2] or bounds[1] >= bounds[3]:
        return None
    shape = (bounds[3] - bounds[1], bounds[2] - bounds[0])
    planes = (np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32), np.zeros(shape, bool))
    for k in range(len(mosaic.tiles)):
        _paste_tile(mosaic, k, bounds, planes)
    coords[0] -= bounds[1]
    coords[1] -= bounds[0]
    coords[:, ~valid] = -10.0  # outside: map_coordinates gives cval
    kwargs = {"order": 1, "mode": "constant", "cval": np.nan, "prefilter": False}
    image = map_coordinates(planes[0], coords, output=np.float32, **kwargs)
    if not np.isfinite(image).any():
        return None
    variance = map_coordinates(planes[1], coords, output=np.float32, **kwargs)
    bad = map_coordinates(planes[2].astype(np.uint8), coords, order=0, mode="constant", cval=0) != 0
    factor = pixel_map.factor
    image *= factor
    variance *= factor * factor
    no_data = ~np.isfinite(image)
    image[no_data] = np.nan
    variance[no_data] = np.nan
    mask = np.zeros(image.shape, np.int32)
    mask[no_data] |= 1 << COADD_MASK_PLANES["NO_DATA"]
    mask[bad] |= 1 << COADD_MASK_PLANES["BAD"]
    return (image, mask, variance) if box == full else _embed((image, mask, variance), box, full)


def _embed(
    planes: tuple[np.ndarray, np.ndarray, np.ndarray], box: Box2, full: Box2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put planes covering ``box`` into ``full``; the rest is NO_DATA."""
    result = (
        np.full((full.height, full.width), np.nan, np.float32),
        np.full((full.height, full.width), 1 << COADD_MASK_PLANES["NO_DATA"], np.int32),
        np.full((full.height, full.width), np.nan, np.float32),
    )
    inner = (slice(box.y0 - full.y0, box.y1 - full.y0), slice(box.x0 - full.x0, box.x1 - full.x0))
    for target, plane in zip(result, planes):
        target[inner] = plane
    return result


def _grid_extent(mosaic: BandMosaic) -> tuple[int, int, int, int]:
    """Band-grid pixel box covered by any tile."""
    x0 = min(dx for dx, _ in mosaic.offsets)
    y0 = min(dy for _, dy in mosaic.offsets)
    x1 = max(dx + t.shape[1] for t, (dx, _) in zip(mosaic.tiles, mosaic.offsets))
    y1 = max(dy + t.shape[0] for t, (_, dy) in zip(mosaic.tiles, mosaic.offsets))
    return x0, y0, x1, y1
