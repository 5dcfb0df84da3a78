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

"""A minimal sky map: tracts with a TAN WCS cut into overlapping patches,
as Rubin sky maps are, without lsst.skymap (which needs afw).

Each tract has a pixel grid with a celestial WCS; patches tile the tract's
*inner* area and each patch's *outer* box extends ``border`` pixels into its
neighbours (clipped to the tract), so neighbouring patches overlap by twice
the border.  Patch ids are ``y * nx + x`` as in lsst.skymap.  Tract and patch
regions for the Butler registry are `lsst.sphgeom.ConvexPolygon` objects
through the corners of the outer boxes.
"""

from __future__ import annotations

__all__ = ["Box2", "SkyMapGeometry", "TractGeometry", "box_sky_polygon", "make_tan_wcs"]

import dataclasses
import hashlib
import json
from collections.abc import Iterator

import astropy.wcs
import numpy as np

from ..formats.wcs_metadata import wcs_from_header_string


@dataclasses.dataclass(frozen=True)
class Box2:
    """An integer pixel box, ``[x0, x1) × [y0, y1)``."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        """Number of columns (`int`)."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Number of rows (`int`)."""
        return self.y1 - self.y0

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether pixel positions (continuous, pixel centres at integers)
        fall inside the box.

        Parameters
        ----------
        x, y : `numpy.ndarray`
            Positions.

        Returns
        -------
        inside : `numpy.ndarray` [`bool`]
            Per position.
        """
        return (x >= self.x0 - 0.5) & (x < self.x1 - 0.5) & (y >= self.y0 - 0.5) & (y < self.y1 - 0.5)

    def distance_inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Signed distance in pixels from positions to the box boundary:
        positive inside, negative outside (per axis, the nearest edge).

        Parameters
        ----------
        x, y : `numpy.ndarray`
            Positions.

        Returns
        -------
        distance : `numpy.ndarray`
            Per position.
        """
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        return np.minimum.reduce(
            [x - (self.x0 - 0.5), (self.x1 - 0.5) - x, y - (self.y0 - 0.5), (self.y1 - 0.5) - y]
        )

    def dilated(self, border: int, limit: Box2) -> Box2:
        """Grow by ``border`` on every side, clipped to ``limit``.

        Parameters
        ----------
        border : `int`
            Pixels to add.
        limit : `Box2`
            Box to clip to.

        Returns
        -------
        box : `Box2`
            The grown box.
        """
        return Box2(
            max(self.x0 - border, limit.x0),
            max(self.y0 - border, limit.y0),
            min(self.x1 + border, limit.x1),
            min(self.y1 + border, limit.y1),
        )


@dataclasses.dataclass(frozen=True)
class TractGeometry:
    """One tract: a WCS, a pixel grid and its patches.

    Parameters
    ----------
    tract_id : `int`
        Tract number.
    wcs_header : `str`
        FITS header cards of the tract's 0-based-pixel celestial WCS.
    nx, ny : `int`
        Number of patches along x and y.
    patch_inner_size : `tuple` [`int`, `int`]
        Inner (non-overlapping) patch size ``(width, height)``.
    border : `int`
        Overlap border of every patch, in pixels.
    """

    tract_id: int
    wcs_header: str
    nx: int
    ny: int
    patch_inner_size: tuple[int, int]
    border: int

    @property
    def wcs(self) -> astropy.wcs.WCS:
        """The tract WCS (`astropy.wcs.WCS`)."""
        return wcs_from_header_string(self.wcs_header)

    @property
    def bbox(self) -> Box2:
        """Tract pixel box, including the outer border (`Box2`)."""
        width, height = self.patch_inner_size
        return Box2(0, 0, self.nx * width + 2 * self.border, self.ny * height + 2 * self.border)

    def patch_ids(self) -> Iterator[int]:
        """Yield the patch ids."""
        yield from range(self.nx * self.ny)

    def patch_index(self, patch_id: int) -> tuple[int, int]:
        """Return ``(x, y)`` patch indices of a patch id."""
        if not 0 <= patch_id < self.nx * self.ny:
            raise ValueError(f"Tract {self.tract_id} has no patch {patch_id}.")
        return patch_id % self.nx, patch_id // self.nx

    def patch_inner_bbox(self, patch_id: int) -> Box2:
        """Inner box of a patch (`Box2`)."""
        i, j = self.patch_index(patch_id)
        width, height = self.patch_inner_size
        x0 = self.border + i * width
        y0 = self.border + j * height
        return Box2(x0, y0, x0 + width, y0 + height)

    def patch_outer_bbox(self, patch_id: int) -> Box2:
        """Outer box of a patch: inner box plus border, clipped to the
        tract (`Box2`).
        """
        return self.patch_inner_bbox(patch_id).dilated(self.border, self.bbox)

    def sky_polygon(self, box: Box2):
        """Return the sky polygon through the outer corners of a pixel box.

        Parameters
        ----------
        box : `Box2`
            Pixel box.

        Returns
        -------
        polygon : `lsst.sphgeom.ConvexPolygon`
            Counter-clockwise polygon on the sky.
        """
        return box_sky_polygon(self.wcs, box)


def box_sky_polygon(wcs: astropy.wcs.WCS, box: Box2):
    """Return the sky polygon through the outer corners of a pixel box, as
    lsst.skymap makes tract and patch regions (the corners of the box's
    pixel edges, half a pixel outside the first and last pixel centres).

    Parameters
    ----------
    wcs : `astropy.wcs.WCS`
        0-based-pixel celestial WCS.
    box : `Box2`
        Pixel box.

    Returns
    -------
    polygon : `lsst.sphgeom.ConvexPolygon`
        Counter-clockwise polygon on the sky.
    """
    from lsst.sphgeom import ConvexPolygon, LonLat, UnitVector3d

    corners_x = np.array([box.x0, box.x1, box.x1, box.x0], dtype=float) - 0.5
    corners_y = np.array([box.y0, box.y0, box.y1, box.y1], dtype=float) - 0.5
    ra, dec = wcs.wcs_pix2world(corners_x, corners_y, 0)
    vertices = [UnitVector3d(LonLat.fromDegrees(float(a), float(d))) for a, d in zip(ra, dec)]
    return ConvexPolygon.convexHull(vertices)


@dataclasses.dataclass(frozen=True)
class SkyMapGeometry:
    """A named set of tracts.

    Parameters
    ----------
    name : `str`
        Sky map name (the ``skymap`` dimension value).
    tracts : `tuple` [`TractGeometry`, ...]
        The tracts, by id.
    """

    name: str
    tracts: tuple[TractGeometry, ...]

    def tract(self, tract_id: int) -> TractGeometry:
        """Return a tract by id.

        Parameters
        ----------
        tract_id : `int`
            The tract number.

        Returns
        -------
        tract : `TractGeometry`
            The tract.
        """
        for tract in self.tracts:
            if tract.tract_id == tract_id:
                return tract
        raise LookupError(f"Sky map {self.name!r} has no tract {tract_id}.")

    def to_json(self) -> str:
        """Serialise (deterministically) to JSON.

        Returns
        -------
        text : `str`
            JSON text.
        """
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SkyMapGeometry:
        """Read the output of `to_json`.

        Parameters
        ----------
        text : `str`
            JSON text.

        Returns
        -------
        skymap : `SkyMapGeometry`
            The sky map.
        """
        data = json.loads(text)
        tracts = tuple(
            TractGeometry(**{**t, "patch_inner_size": tuple(t["patch_inner_size"])}) for t in data["tracts"]
        )
        return cls(name=data["name"], tracts=tracts)

    @property
    def hash(self) -> bytes:
        """SHA-1 of the JSON form, the ``skymap`` record's ``hash``."""
        return hashlib.sha1(self.to_json().encode()).digest()

    def register(self, butler) -> None:
        """Insert the skymap, tract and patch dimension records (with
        lsst.sphgeom regions) into a Butler repository, if absent.

        Parameters
        ----------
        butler : `lsst.daf.butler.Butler`
            A writeable Butler.
        """
        registry = butler.registry
        registry.syncDimensionData(
            "skymap",
            {
                "name": self.name,
                "hash": self.hash,
                "tract_max": max(t.tract_id for t in self.tracts) + 1,
                "patch_nx_max": max(t.nx for t in self.tracts),
                "patch_ny_max": max(t.ny for t in self.tracts),
            },
        )
        for tract in self.tracts:
            registry.syncDimensionData(
                "tract", {"skymap": self.name, "id": tract.tract_id, "region": tract.sky_polygon(tract.bbox)}
            )
            records = []
            for patch_id in tract.patch_ids():
                i, j = tract.patch_index(patch_id)
                records.append(
                    {
                        "skymap": self.name,
                        "tract": tract.tract_id,
                        "id": patch_id,
                        "cell_x": i,
                        "cell_y": j,
                        "region": tract.sky_polygon(tract.patch_outer_bbox(patch_id)),
                    }
                )
            registry.insertDimensionData("patch", *records, skip_existing=True)


def make_tan_wcs(ra: float, dec: float, scale_arcsec: float, width: int, height: int) -> astropy.wcs.WCS:
    """Make a north-up, east-left TAN WCS centred on a pixel grid.

    Parameters
    ----------
    ra, dec : `float`
        Centre in degrees.
    scale_arcsec : `float`
        Pixel scale.
    width, height : `int`
        Grid size; the centre pixel is ``((width-1)/2, (height-1)/2)``.

    Returns
    -------
    wcs : `astropy.wcs.WCS`
        0-based-pixel WCS (FITS CRPIX is 1-based, as always).
    """
    wcs = astropy.wcs.WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(width - 1) / 2 + 1, (height - 1) / 2 + 1]
    scale = scale_arcsec / 3600.0
    wcs.wcs.cd = [[-scale, 0.0], [0.0, scale]]
    wcs.wcs.radesys = "ICRS"
    return wcs
