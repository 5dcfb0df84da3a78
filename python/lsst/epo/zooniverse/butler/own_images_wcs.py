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

"""The sky side of a user's own images: find the image HDU and its
celestial WCS (any frame astropy knows: ICRS, FK5, FK4, galactic,
ecliptic; any projection wcslib knows: TAN, SIN, CAR, AIT, ...; SIP and
other distortions), plan a Rubin-style tract (TAN, ICRS, north up, east
left) covering the images, and map tract pixels to image pixels.

The map from tract pixels to image pixels is computed exactly (astropy's
``all_world2pix``, frame transformation included) on nodes every
``step`` tract pixels and interpolated between them with a bicubic spline:
the WCS is smooth, so the interpolation error is far below a hundredth of
a pixel while the cost per pixel is a few spline evaluations.
"""

from __future__ import annotations

__all__ = [
    "MAX_TRACT_PIXELS",
    "MAX_TRACT_RADIUS_DEG",
    "ImageTile",
    "PixelMap",
    "covered_box",
    "footprint_icrs",
    "map_tract_pixels",
    "pixel_scale_arcsec",
    "plan_tract",
    "read_image_tile",
]

import dataclasses
import math
import os
import warnings
from pathlib import Path
from typing import Any

import astropy.units as u
import astropy.wcs
import numpy as np
from astropy.coordinates import (
    ICRS,
    BarycentricMeanEcliptic,
    BaseCoordinateFrame,
    HeliocentricMeanEcliptic,
    Supergalactic,
)
from astropy.io import fits
from astropy.time import Time
from astropy.wcs.utils import wcs_to_celestial_frame
from scipy.interpolate import RectBivariateSpline

from ..formats.wcs_metadata import wcs_to_header_string
from .own_images_units import OwnImagesError
from .skymap_geometry import Box2, TractGeometry, make_tan_wcs

MAX_TRACT_RADIUS_DEG = 30.0
"""Largest distance from the tract centre to an image corner: one TAN
tract stretches pixels by 1/cos² (33 % at 30°) beyond that."""

MAX_TRACT_PIXELS = 200_000
"""Largest tract side, pixels (a tract of 200,000² float pixels is 160 GB
per plane)."""

_IMAGE_NAMES = ("IMAGE", "SCI", "SCIENCE", "FLUX", "DATA")
_VARIANCE_NAMES = ("VARIANCE", "VAR")
_WEIGHT_NAMES = ("WEIGHT", "WHT", "IVAR", "INVVAR", "INV_VAR")
_MASK_NAMES = ("MASK", "DQ", "FLAGS", "BPM")


@dataclasses.dataclass
class ImageTile:
    """One FITS file of one band.

    Attributes
    ----------
    band : `str`
        The band.
    path : `pathlib.Path`
        The file.
    hdu : `int`
        Index of the image HDU.
    shape : `tuple` [`int`, `int`]
        ``(height, width)``.
    wcs : `astropy.wcs.WCS`
        Celestial WCS of the image (0-based pixels in calls).
    frame : `astropy.coordinates.BaseCoordinateFrame`
        Its sky frame.
    header : `astropy.io.fits.Header`
        The image HDU's header.
    variance_hdu, weight_hdu, mask_hdu : `int` or `None`
        Indices of the optional planes.
    """

    band: str
    path: Path
    hdu: int
    shape: tuple[int, int]
    wcs: astropy.wcs.WCS
    frame: BaseCoordinateFrame
    header: fits.Header
    variance_hdu: int | None = None
    weight_hdu: int | None = None
    mask_hdu: int | None = None

    @property
    def where(self) -> str:
        """The file and band, for messages (`str`)."""
        return f"{self.path} (band {self.band})"


def _image_shape(hdu: Any) -> tuple[int, ...] | None:
    if not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
        return None
    naxis = hdu.header.get("ZNAXIS" if isinstance(hdu, fits.CompImageHDU) else "NAXIS", 0)
    if hdu.is_image is False or not naxis:
        return None
    return tuple(hdu.shape)


def _choose_hdus(hdul: fits.HDUList) -> dict[str, int | None]:
    names = {i: str(h.header.get("EXTNAME", "")).strip().upper() for i, h in enumerate(hdul)}
    images = [i for i, h in enumerate(hdul) if _image_shape(h)]

    def find(candidates: tuple[str, ...]) -> int | None:
        return next((i for i in images if names[i] in candidates), None)

    chosen = {
        "variance": find(_VARIANCE_NAMES),
        "weight": find(_WEIGHT_NAMES),
        "mask": find(_MASK_NAMES),
    }
    others = {v for v in chosen.values() if v is not None}
    image = find(_IMAGE_NAMES)
    if image is None:
        image = next((i for i in images if i not in others), None)
    chosen["image"] = image
    return chosen


def read_image_tile(band: str, path: str | os.PathLike) -> ImageTile:
    """Open a user's FITS file and find its image, WCS and optional planes.

    The image is the HDU named IMAGE, SCI, SCIENCE, FLUX or DATA, else the
    first image HDU with data; VARIANCE/VAR, WEIGHT/WHT/IVAR/INVVAR
    (inverse variance) and MASK/DQ/FLAGS/BPM extensions of the same shape
    are used when present.

    Parameters
    ----------
    band : `str`
        The band of the file.
    path : `str` or `os.PathLike`
        The file.

    Returns
    -------
    tile : `ImageTile`
        What was found.

    Raises
    ------
    OwnImagesError
        Raised if the file is missing or unreadable, holds no 2-D image,
        or has no celestial WCS.
    """
    path = Path(path)
    where = f"{path} (band {band})"
    if not path.is_file():
        raise OwnImagesError(f"{where}: no such file.")
    try:
        hdul = fits.open(path, memmap=True, lazy_load_hdus=False)
    except (OSError, ValueError) as err:
        raise OwnImagesError(f"{where}: not a readable FITS file ({err}).") from None
    with hdul:
        chosen = _choose_hdus(hdul)
        if chosen["image"] is None:
            raise OwnImagesError(f"{where}: no image HDU with data.")
        hdu = hdul[chosen["image"]]
        shape = tuple(int(n) for n in hdu.shape)
        header = hdu.header.copy()
        core = tuple(n for n in shape if n != 1)
        if len(core) != 2 or len(shape) > 2 and shape[-2:] != core:
            raise OwnImagesError(f"{where}: HDU {chosen['image']} has shape {shape}, not a 2-D image.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                wcs = astropy.wcs.WCS(header, fobj=hdul)
            except Exception as err:  # wcslib raises many types for bad cards
                raise OwnImagesError(f"{where}: invalid WCS ({err}).") from None
        if not wcs.has_celestial or wcs.wcs.lng not in (0, 1) or wcs.wcs.lat not in (0, 1):
            raise OwnImagesError(
                f"{where}: no celestial WCS on the image axes (CTYPE1/CTYPE2 = "
                f"{header.get('CTYPE1')!r}/{header.get('CTYPE2')!r})."
            )
        celestial = wcs.celestial if wcs.naxis > 2 else wcs
        if celestial.wcs.lng != 0:
            raise OwnImagesError(
                f"{where}: latitude on the first image axis is not supported (CTYPE1 = "
                f"{header.get('CTYPE1')!r})."
            )
        frame = _celestial_frame(celestial, where)
        for kind in ("variance", "weight", "mask"):
            index = chosen[kind]
            if index is not None and tuple(n for n in hdul[index].shape if n != 1) != core:
                raise OwnImagesError(
                    f"{where}: {kind} HDU {index} has shape {hdul[index].shape}, the image {shape}."
                )
    return ImageTile(
        band=band,
        path=path,
        hdu=chosen["image"],
        shape=(core[0], core[1]),
        wcs=celestial,
        frame=frame,
        header=header,
        variance_hdu=chosen["variance"],
        weight_hdu=chosen["weight"],
        mask_hdu=chosen["mask"],
    )


def _celestial_frame(wcs: astropy.wcs.WCS, where: str) -> BaseCoordinateFrame:
    """Return the sky frame of a celestial WCS.

    Ecliptic axes (``ELON``/``ELAT``: the mean ecliptic and equinox of
    ``EQUINOX``, J2000 by default) and supergalactic axes are added to
    what astropy maps itself.
    """
    prefix = wcs.wcs.ctype[0][:4].upper()
    if prefix in ("ELON", "HLON"):
        equinox = wcs.wcs.equinox if np.isfinite(wcs.wcs.equinox) else 2000.0
        frame_class = BarycentricMeanEcliptic if prefix == "ELON" else HeliocentricMeanEcliptic
        return frame_class(equinox=Time(equinox, format="jyear"))
    if prefix == "SLON":
        return Supergalactic()
    try:
        return wcs_to_celestial_frame(wcs)
    except ValueError as err:
        raise OwnImagesError(f"{where}: unsupported celestial frame ({err}).") from None


def _to_icrs(frame: BaseCoordinateFrame, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sky = frame.realize_frame(_spherical(lon, lat)).transform_to(ICRS())
    return sky.spherical.lon.deg, sky.spherical.lat.deg


def _spherical(lon: np.ndarray, lat: np.ndarray) -> Any:
    from astropy.coordinates import UnitSphericalRepresentation

    return UnitSphericalRepresentation(lon * u.deg, lat * u.deg)


def _from_icrs(frame: BaseCoordinateFrame, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sky = ICRS(_spherical(ra, dec)).transform_to(frame)
    return sky.spherical.lon.deg, sky.spherical.lat.deg


def footprint_icrs(tile: ImageTile, per_side: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """ICRS positions along the outer edge of an image.

    Parameters
    ----------
    tile : `ImageTile`
        The image.
    per_side : `int`, optional
        Points per side.

    Returns
    -------
    ra, dec : `numpy.ndarray`
        Degrees; points off the sky (outside an all-sky projection) are
        left out.
    """
    height, width = tile.shape
    xs = np.linspace(-0.5, width - 0.5, per_side)
    ys = np.linspace(-0.5, height - 0.5, per_side)
    x = np.concatenate([xs, xs, np.full(per_side, -0.5), np.full(per_side, width - 0.5)])
    y = np.concatenate([np.full(per_side, -0.5), np.full(per_side, height - 0.5), ys, ys])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lon, lat = tile.wcs.all_pix2world(x, y, 0)
    good = np.isfinite(lon) & np.isfinite(lat)
    return _to_icrs(tile.frame, lon[good], lat[good])


def pixel_scale_arcsec(tile: ImageTile) -> float:
    """Return the image's pixel scale at its centre (square root of the
    pixel's solid angle), in arcseconds.

    Parameters
    ----------
    tile : `ImageTile`
        The image.

    Returns
    -------
    scale : `float`
        Arcseconds.
    """
    height, width = tile.shape
    cx, cy = (width - 1) / 2, (height - 1) / 2
    lon, lat = tile.wcs.all_pix2world([cx, cx + 1, cx], [cy, cy, cy + 1], 0)
    vectors = _unit_vectors(lon, lat)
    area = np.linalg.norm(np.cross(vectors[1] - vectors[0], vectors[2] - vectors[0]))
    return math.degrees(math.sqrt(area)) * 3600.0


def _unit_vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def _tan_extent(ra0: float, dec0: float, scale: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    wcs = make_tan_wcs(ra0, dec0, scale, 1, 1)
    x, y = wcs.wcs_world2pix(ra, dec, 0)
    return np.array([x.min(), x.max(), y.min(), y.max()])


def plan_tract(
    ra: np.ndarray,
    dec: np.ndarray,
    *,
    scale_arcsec: float,
    patch_inner: int,
    border: int,
    tract_id: int = 0,
) -> TractGeometry:
    """Plan one TAN tract (ICRS, north up, east left) covering sky points,
    cut into patches of ``patch_inner`` pixels overlapping by ``2 border``.

    Parameters
    ----------
    ra, dec : `numpy.ndarray`
        ICRS points to cover (image outlines), degrees.
    scale_arcsec : `float`
        Tract pixel scale.
    patch_inner : `int`
        Inner (non-overlapping) patch size, pixels.
    border : `int`
        Patch overlap border, pixels.
    tract_id : `int`, optional
        Tract number.

    Returns
    -------
    tract : `TractGeometry`
        The tract; its centre is the centre of the points' TAN extent.

    Raises
    ------
    OwnImagesError
        Raised if the points reach farther than `MAX_TRACT_RADIUS_DEG` from
        the centre.
    """
    vectors = _unit_vectors(ra, dec)
    mean = vectors.mean(axis=0)
    ra0 = math.degrees(math.atan2(mean[1], mean[0])) % 360.0
    dec0 = math.degrees(math.asin(max(-1.0, min(1.0, mean[2] / max(np.linalg.norm(mean), 1e-300)))))
    radius = np.degrees(np.arccos(np.clip(vectors @ _unit_vectors(ra0, dec0), -1, 1))).max()
    if not np.isfinite(radius) or radius > MAX_TRACT_RADIUS_DEG:
        raise OwnImagesError(
            f"the images reach {radius:.1f} deg from their centre (RA {ra0:.3f}, Dec {dec0:.3f}); one tract "
            f"covers at most {MAX_TRACT_RADIUS_DEG:g} deg: ingest distant fields under separate "
            "--skymap names."
        )
    for _ in range(3):
        x0, x1, y0, y1 = _tan_extent(ra0, dec0, scale_arcsec, ra, dec)
        wcs = make_tan_wcs(ra0, dec0, scale_arcsec, 1, 1)
        centre = wcs.wcs_pix2world([[(x0 + x1) / 2, (y0 + y1) / 2]], 0)[0]
        ra0, dec0 = float(centre[0]) % 360.0, float(centre[1])
    x0, x1, y0, y1 = _tan_extent(ra0, dec0, scale_arcsec, ra, dec)
    half_x = max(-x0, x1) + 1.0
    half_y = max(-y0, y1) + 1.0
    # The tract's outer border (in the edge patches' outer boxes) holds
    # data too.
    nx = max(1, math.ceil((2 * half_x + 1 - 2 * border) / patch_inner))
    ny = max(1, math.ceil((2 * half_y + 1 - 2 * border) / patch_inner))
    width, height = nx * patch_inner + 2 * border, ny * patch_inner + 2 * border
    if max(width, height) > MAX_TRACT_PIXELS:
        raise OwnImagesError(
            f"the tract would be {width}x{height} pixels of {scale_arcsec:g} arcsec (more than "
            f"{MAX_TRACT_PIXELS} on a side): the images spread over {2 * radius:.2f} deg; give a coarser "
            "--pixel-scale or ingest distant fields under separate --skymap names."
        )
    return TractGeometry(
        tract_id=tract_id,
        wcs_header=wcs_to_header_string(make_tan_wcs(ra0, dec0, scale_arcsec, width, height)),
        nx=nx,
        ny=ny,
        patch_inner_size=(patch_inner, patch_inner),
        border=border,
    )


@dataclasses.dataclass
class PixelMap:
    """Where the pixels of a tract box fall in an image.

    Attributes
    ----------
    coords : `numpy.ndarray`
        Image pixel coordinates (0-based), shape ``(2, height, width)`` of
        the box, ``y`` first (as `scipy.ndimage.map_coordinates` takes
        them); NaN off the image's projection.
    factor : `numpy.ndarray`
        Per tract pixel: its area over the image pixel's area (for fluxes
        per pixel) or its solid angle in steradians (for surface
        brightness), ``float32``.
    """

    coords: np.ndarray
    factor: np.ndarray


def _nodes(start: int, stop: int, step: int) -> np.ndarray:
    nodes = np.arange(start, stop, step, dtype=float)
    if nodes[-1] != stop - 1:
        nodes = np.append(nodes, stop - 1)
    if len(nodes) < 4:  # a cubic spline needs four nodes
        nodes = np.linspace(start, stop - 1, 4) if stop - start >= 4 else np.arange(start, stop, dtype=float)
    return nodes


def _spline(xs: np.ndarray, ys: np.ndarray, values: np.ndarray) -> RectBivariateSpline:
    kx, ky = min(3, len(xs) - 1), min(3, len(ys) - 1)
    return RectBivariateSpline(ys, xs, values, kx=ky, ky=kx)


def map_tract_pixels(
    tract_wcs: astropy.wcs.WCS,
    tile: ImageTile,
    box: Box2,
    *,
    surface_brightness: bool = False,
    step: int = 16,
) -> PixelMap:
    """Map the pixels of a tract box to image pixels.

    Parameters
    ----------
    tract_wcs : `astropy.wcs.WCS`
        The tract WCS (0-based pixels).
    tile : `ImageTile`
        The image (its WCS and frame).
    box : `Box2`
        Tract pixels to map (at least 2×2).
    surface_brightness : `bool`, optional
        Return the tract pixels' solid angles rather than the area ratios.
    step : `int`, optional
        Spacing of the exactly computed nodes, tract pixels.

    Returns
    -------
    pixel_map : `PixelMap`
        Image coordinates and area factors of every box pixel.
    """
    xs, ys = _nodes(box.x0, box.x1, step), _nodes(box.y0, box.y1, step)
    gx, gy = np.meshgrid(xs, ys)
    ix, iy = _node_coords(tract_wcs, tile, gx, gy)
    # Nodes off the image's projection (all-sky projections' outer parts)
    # make the box unmappable near them: mark the whole cell as NaN.
    bad = ~(np.isfinite(ix) & np.isfinite(iy))
    spline_x = _spline(xs, ys, np.where(bad, 0.0, ix))
    spline_y = _spline(xs, ys, np.where(bad, 0.0, iy))
    if surface_brightness:
        nodes_factor = _solid_angles(tract_wcs, gx, gy)
    else:
        nodes_factor = np.abs(
            spline_x(ys, xs, dx=0, dy=1) * spline_y(ys, xs, dx=1, dy=0)
            - spline_x(ys, xs, dx=1, dy=0) * spline_y(ys, xs, dx=0, dy=1)
        )
    out_x = np.arange(box.x0, box.x1, dtype=float)
    out_y = np.arange(box.y0, box.y1, dtype=float)
    coords = np.empty((2, box.height, box.width))
    coords[0] = spline_y(out_y, out_x)
    coords[1] = spline_x(out_y, out_x)
    factor = _spline(xs, ys, nodes_factor)(out_y, out_x).astype(np.float32)
    if bad.any():
        bad_cells = _spline(xs, ys, bad.astype(float))(out_y, out_x) > 1e-6
        coords[:, bad_cells] = np.nan
    return PixelMap(coords=coords, factor=factor)


def _node_coords(
    tract_wcs: astropy.wcs.WCS, tile: ImageTile, gx: np.ndarray, gy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Image pixel coordinates of tract pixels (exact)."""
    ra, dec = tract_wcs.wcs_pix2world(gx.ravel(), gy.ravel(), 0)
    lon, lat = _from_icrs(tile.frame, ra, dec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ix, iy = tile.wcs.all_world2pix(lon, lat, 0, quiet=True)
    return ix.reshape(gx.shape), iy.reshape(gx.shape)


def covered_box(
    tract_wcs: astropy.wcs.WCS, tile: ImageTile, box: Box2, extent: Box2, step: int = 64
) -> Box2 | None:
    """Return the part of a tract box that can see an image grid's extent.

    Parameters
    ----------
    tract_wcs : `astropy.wcs.WCS`
        The tract WCS (0-based pixels).
    tile : `ImageTile`
        An image of the grid (its WCS and frame).
    box : `Box2`
        Tract pixels.
    extent : `Box2`
        Pixels of the image grid that hold data (any tile).
    step : `int`, optional
        Spacing of the nodes tested, tract pixels.

    Returns
    -------
    covered : `Box2` or `None`
        A sub-box of ``box`` holding every tract pixel whose position
        falls inside ``extent`` (with a margin of one node cell), or `None`.
    """
    xs, ys = _nodes(box.x0, box.x1, step), _nodes(box.y0, box.y1, step)
    gx, gy = np.meshgrid(xs, ys)
    ix, iy = _node_coords(tract_wcs, tile, gx, gy)
    finite = np.isfinite(ix) & np.isfinite(iy)
    if not finite.any():
        return None
    # A cell spans at most this many image pixels: nodes that far outside
    # the extent may still have cell corners inside.
    spans = [np.nanmax(np.abs(np.diff(a, axis=k))) for a in (ix, iy) for k in (0, 1) if a.shape[k] > 1]
    margin = (max(spans) if spans else 0.0) + 2.0
    inside = (
        finite
        & (ix >= extent.x0 - margin)
        & (ix <= extent.x1 + margin)
        & (iy >= extent.y0 - margin)
        & (iy <= extent.y1 + margin)
    )
    if not inside.any():
        return None
    rows, cols = np.nonzero(inside)
    sub = Box2(
        int(xs[cols.min()]) - step,
        int(ys[rows.min()]) - step,
        int(xs[cols.max()]) + step + 1,
        int(ys[rows.max()]) + step + 1,
    )
    sub = Box2(max(sub.x0, box.x0), max(sub.y0, box.y0), min(sub.x1, box.x1), min(sub.y1, box.y1))
    if sub.width < 2 or sub.height < 2:
        return None
    return sub


def _solid_angles(wcs: astropy.wcs.WCS, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Solid angle of the tract pixels centred on ``gx, gy``."""
    corners = []
    for dx, dy in ((0.5, 0.0), (-0.5, 0.0), (0.0, 0.5), (0.0, -0.5)):
        lon, lat = wcs.wcs_pix2world((gx + dx).ravel(), (gy + dy).ravel(), 0)
        corners.append(_unit_vectors(lon, lat))
    area = np.linalg.norm(np.cross(corners[0] - corners[1], corners[2] - corners[3]), axis=-1)
    return area.reshape(gx.shape)
