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

"""A tract's pixel frame and a patch's inner and outer boxes, derived from
the ``skymap``, ``tract`` and ``patch`` dimension records every Rubin
repository holds (no sky map dataset, no lsst.skymap).

What the records hold (lsst.skymap ``BaseSkyMap.register``): the tract's
region is the sky polygon through the outer corners of the tract's pixel
box, the patch's region the polygon through the outer corners of its
outer box, and the patch record carries its index (``cell_x``,
``cell_y``).  lsst.skymap (``tractBuilder.py``) makes the tract box a whole
number of inner patches starting at pixel 0 (``[0, nx*W) x [0, ny*H)``),
patch ``(i, j)``'s inner box is ``[i*W, (i+1)*W) x [j*H, (j+1)*H)`` and its
outer box the inner box grown by a border (clipped to the tract by the
legacy tract builder, not by the cell-based one).

The frame: a gnomonic (TAN) projection at the centre of the tract polygon
(for a TAN sky map, its tract WCS up to the tangent point, which lsst.skymap
puts within a few pixels of the box centre), with pixel axes along the
polygon's edges and the first pixel corner on the polygon's south-east
corner (north up, east left, as Rubin sky maps are), and the pixel scale
given by the caller (records do not hold it).  Patch counts come from the
patch's own outer box and index; a patch clipped by the tract edge falls
back to the skymap record's ``patch_nx_max``/``patch_ny_max``.
"""

from __future__ import annotations

__all__ = ["TractFrame", "patch_counts"]

import dataclasses
from typing import Any

import astropy.io.fits
import astropy.wcs
import numpy as np

from .skymap_geometry import Box2

_EDGE_TOLERANCE = 0.02
"""Pixels: how close a patch's outer edge must be to the tract's edge to
count as clipped by it, and how close derived sizes must be to integers.
"""


def _unit_tan_wcs(ra: float, dec: float) -> astropy.wcs.WCS:
    """TAN projection at (ra, dec) whose pixels are intermediate world
    coordinates in degrees (x towards east, y towards north).
    """
    wcs = astropy.wcs.WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [1.0, 1.0]
    wcs.wcs.cd = [[1.0, 0.0], [0.0, 1.0]]
    wcs.wcs.radesys = "ICRS"
    return wcs


def _vertices_xyz(region: Any) -> np.ndarray:
    """Return a convex polygon's vertices as unit vectors ``(n, 3)``."""
    return np.array([[v.x(), v.y(), v.z()] for v in region.getVertices()], dtype=float)


def _radec(xyz: np.ndarray) -> np.ndarray:
    """RA/Dec in degrees of unit vectors ``(n, 3)``, shape ``(n, 2)``."""
    ra = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0])) % 360.0
    dec = np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))
    return np.column_stack([ra, dec])


def _axis_count(size: int, index: int, lo: int, hi: int) -> tuple[int | None, float | None]:
    """Patch count and border along one axis from an unclipped (or a
    whole-tract) outer box; ``(None, None)`` if clipped on one side.
    """
    clipped_lo = abs(lo) <= _EDGE_TOLERANCE
    clipped_hi = abs(hi - size) <= _EDGE_TOLERANCE
    if clipped_lo and clipped_hi:
        return 1, 0.0
    if clipped_lo or clipped_hi:
        return None, None
    width = 0.5 * (lo + hi) / (index + 0.5)
    count = int(round(size / width)) if width > 0 else 0
    if count < 1:
        return 0, None
    return count, 0.5 * (hi - lo - size / count)


def _clipped_count(size: int, index: int, lo: int, hi: int, border: float) -> int:
    """Patch count along an axis where the outer box is clipped on one
    side, given the patch border.
    """
    # Clipped below (index 0): hi = W + border.  Clipped above (last
    # patch): lo = (n - 1) * W - border and size = n * W.
    width = hi - border if abs(lo) <= _EDGE_TOLERANCE else size - lo - border
    return int(round(size / width)) if width > 0 else 0


def patch_counts(
    size: tuple[int, int], index: tuple[int, int], outer: Box2, fallback: tuple[int, int]
) -> tuple[int, int]:
    """Count the patches along x and y of a tract, from one patch.

    Parameters
    ----------
    size : `tuple` [`int`, `int`]
        Tract size in pixels (a whole number of inner patches).
    index : `tuple` [`int`, `int`]
        The patch's ``(cell_x, cell_y)``.
    outer : `Box2`
        The patch's outer box in tract pixels.
    fallback : `tuple` [`int`, `int`]
        The skymap record's ``(patch_nx_max, patch_ny_max)``, used only for
        a patch clipped by the tract's edge on one side along both axes
        (a corner patch of a legacy tract builder's tract).

    Returns
    -------
    counts : `tuple` [`int`, `int`]
        Patches along x and y.

    Raises
    ------
    ValueError
        Raised if no whole number of patches fits the geometry.

    Notes
    -----
    An unclipped outer box is the inner box ``[i*W, (i+1)*W)`` grown by the
    border on both sides, so its centre is ``(i + 1/2) * W``; the border
    is the same along both axes, so an axis clipped on one side takes it
    from the other axis.
    """
    spans = ((outer.x0, outer.x1), (outer.y0, outer.y1))
    found = [_axis_count(size[k], index[k], *spans[k]) for k in range(2)]
    borders = [b for _, b in found if b is not None and b > 0]
    counts = []
    for k in range(2):
        count = found[k][0]
        if count is None:
            if borders:
                count = _clipped_count(size[k], index[k], *spans[k], borders[0])
            else:
                count = int(fallback[k])
                width = size[k] / count if count else 0
                other = size[1 - k] / int(fallback[1 - k]) if fallback[1 - k] else 0
                # Both axes clipped below (or above): the border they imply
                # must agree.
                border = spans[k][1] - spans[k][0] - width
                other_border = spans[1 - k][1] - spans[1 - k][0] - other
                if abs(border - other_border) > 1:
                    count = 0
        counts.append(count)
    for k, count in enumerate(counts):
        if count < 1 or index[k] >= count or size[k] % count:
            lo, hi = spans[k]
            raise ValueError(
                f"Patch index {index[k]} with outer box [{lo}, {hi}) does not fit a tract of {size[k]} "
                f"pixels cut into {count} whole patches (is the tract pixel scale right?)."
            )
    return counts[0], counts[1]


@dataclasses.dataclass(frozen=True)
class TractFrame:
    """A tract's pixel frame and one patch's boxes, from dimension records.

    Parameters
    ----------
    tract_id : `int`
        The tract.
    wcs_header : `str`
        FITS cards of the frame's TAN WCS (0-based pixels).
    size : `tuple` [`int`, `int`]
        Tract box size in pixels; the box is ``[0, nx) x [0, ny)``.
    patch_counts : `tuple` [`int`, `int`]
        Patches along x and y.
    patch_id : `int`
        The patch the frame was made for.
    patch_index : `tuple` [`int`, `int`]
        Its ``(cell_x, cell_y)``.
    patch_outer : `Box2`
        Its outer box, from its region.
    """

    tract_id: int
    wcs_header: str
    size: tuple[int, int]
    patch_counts: tuple[int, int]
    patch_id: int
    patch_index: tuple[int, int]
    patch_outer: Box2

    @classmethod
    def from_records(
        cls, skymap_record: Any, tract_record: Any, patch_record: Any, *, pixel_scale_arcsec: float
    ) -> TractFrame:
        """Derive the frame from the skymap, tract and patch records.

        Parameters
        ----------
        skymap_record, tract_record, patch_record : `DimensionRecord`
            The records, e.g. a quantum's ``dataId.records[...]`` (anything
            with ``patch_nx_max``/``patch_ny_max``; ``id`` and ``region``;
            ``id``, ``cell_x``, ``cell_y`` and ``region``).
        pixel_scale_arcsec : `float`
            The sky map's pixel scale.

        Returns
        -------
        frame : `TractFrame`
            The frame.

        Raises
        ------
        ValueError
            Raised if the tract region is not a four-cornered polygon or the
            patch does not fit a whole number of patches.
        """
        xyz = _vertices_xyz(tract_record.region)
        if len(xyz) != 4:
            raise ValueError(
                f"Tract {tract_record.id} region has {len(xyz)} vertices; a sky map tract's region "
                "is the polygon through the 4 corners of its pixel box."
            )
        # The corners of a box centred on the tangent point are symmetric
        # about it: their mean direction is the tangent point.
        total = xyz.sum(axis=0)
        ra0, dec0 = (float(v) for v in _radec((total / np.linalg.norm(total))[np.newaxis])[0])
        plane = _unit_tan_wcs(ra0, dec0).wcs_world2pix(_radec(xyz), 0)
        # The pixel origin is the south-east corner (east is +x in the
        # plane, north +y; Rubin sky maps are north up, east left).
        origin = int(np.argmax(plane[:, 0] - plane[:, 1]))
        others = [k for k in range(4) if k != origin]
        opposite = max(others, key=lambda k: float(np.hypot(*(plane[k] - plane[origin]))))
        sides = [k for k in others if k != opposite]
        # The x side runs west (towards smaller plane x), the y side north.
        x_corner = min(sides, key=lambda k: float(plane[k, 0] - plane[origin, 0]))
        y_corner = next(k for k in sides if k != x_corner)
        scale = pixel_scale_arcsec / 3600.0
        ex = plane[x_corner] - plane[origin]
        ey = plane[y_corner] - plane[origin]
        size = (int(round(float(np.hypot(*ex)) / scale)), int(round(float(np.hypot(*ey)) / scale)))
        cd = np.column_stack([ex / size[0], ey / size[1]])
        wcs = _unit_tan_wcs(ra0, dec0)
        wcs.wcs.cd = cd
        # Pixel (-0.5, -0.5), the box's outer corner, is the origin corner.
        wcs.wcs.crpix = list(np.array([0.5, 0.5]) - np.linalg.solve(cd, plane[origin]))
        header = wcs.to_header(relax=True).tostring(sep="\n")
        patch_corners = _radec(_vertices_xyz(patch_record.region))
        px, py = wcs.wcs_world2pix(patch_corners[:, 0], patch_corners[:, 1], 0)
        outer = Box2(
            int(round(float(px.min()) + 0.5)),
            int(round(float(py.min()) + 0.5)),
            int(round(float(px.max()) + 0.5)),
            int(round(float(py.max()) + 0.5)),
        )
        index = (int(patch_record.cell_x), int(patch_record.cell_y))
        counts = patch_counts(
            size, index, outer, (int(skymap_record.patch_nx_max), int(skymap_record.patch_ny_max))
        )
        return cls(
            tract_id=int(tract_record.id),
            wcs_header=header,
            size=size,
            patch_counts=counts,
            patch_id=int(patch_record.id),
            patch_index=index,
            patch_outer=outer,
        )

    @property
    def wcs(self) -> astropy.wcs.WCS:
        """The frame's TAN WCS, 0-based tract pixels (`astropy.wcs.WCS`)."""
        return astropy.wcs.WCS(astropy.io.fits.Header.fromstring(self.wcs_header, sep="\n"))

    @property
    def bbox(self) -> Box2:
        """The tract's pixel box (`Box2`)."""
        return Box2(0, 0, *self.size)

    def _check_patch(self, patch_id: int) -> None:
        if patch_id != self.patch_id:
            raise LookupError(f"This frame was made for patch {self.patch_id}, not {patch_id}.")

    def patch_inner_bbox(self, patch_id: int) -> Box2:
        """Return the patch's inner box, its cell of the tract's patch grid.

        Parameters
        ----------
        patch_id : `int`
            The frame's patch.

        Returns
        -------
        box : `Box2`
            Tract pixels.
        """
        self._check_patch(patch_id)
        width = self.size[0] // self.patch_counts[0]
        height = self.size[1] // self.patch_counts[1]
        i, j = self.patch_index
        return Box2(i * width, j * height, (i + 1) * width, (j + 1) * height)

    def patch_outer_bbox(self, patch_id: int) -> Box2:
        """Return the patch's outer box, from its region's corners.

        Parameters
        ----------
        patch_id : `int`
            The frame's patch.

        Returns
        -------
        box : `Box2`
            Tract pixels.
        """
        self._check_patch(patch_id)
        return self.patch_outer
