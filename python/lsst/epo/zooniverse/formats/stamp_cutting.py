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

"""Cutting stamps out of a parent image held in memory, and their coverage."""

from __future__ import annotations

__all__ = ["CoverageMap", "cut_stamp"]

from typing import Any

import numpy as np

from .mask_planes import DEFAULT_MASK_PLANES
from .stamps import Stamp


class CoverageMap:
    """Count the pixels with data in any box of a parent image.

    A pixel has data when its image value is finite and its mask does not
    have the ``NO_DATA`` bit, as `cut_stamp` counts them; pixels
    outside the parent have none.  The counts come from a summed-area
    table made once, so the coverage of a stamp costs four look-ups
    instead of a pass over its pixels.

    Parameters
    ----------
    image : `numpy.ndarray`
        Parent image.
    mask : `numpy.ndarray` or `None`
        Parent mask, of the image's shape (`None`: no ``NO_DATA`` pixels).
    no_data_bit : `int`
        The ``NO_DATA`` bit of the mask.
    parent_x0, parent_y0 : `int`
        Parent-frame coordinates of ``image[0, 0]``.
    """

    def __init__(
        self, image: np.ndarray, mask: np.ndarray | None, no_data_bit: int, parent_x0: int, parent_y0: int
    ) -> None:
        has_data = np.isfinite(image)
        if mask is not None:
            has_data &= (mask & (1 << no_data_bit)) == 0
        height, width = has_data.shape
        table = np.zeros((height + 1, width + 1), dtype=np.int64)
        # Along the rows first, then the rows added one to the next (each
        # pass over contiguous memory; integer sums, so the order changes
        # nothing).
        np.cumsum(has_data, axis=1, out=table[1:, 1:])
        np.add.accumulate(table[1:, 1:], axis=0, out=table[1:, 1:])
        self._table = table
        self._shape = (height, width)
        self._origin = (parent_x0, parent_y0)

    def count(self, x0: int, y0: int, width: int, height: int) -> int:
        """Return the pixels with data in a box.

        Parameters
        ----------
        x0, y0, width, height : `int`
            The box, in the parent frame.

        Returns
        -------
        count : `int`
            Pixels of the box inside the parent that have data.
        """
        rows, columns = self._shape
        left = min(max(x0 - self._origin[0], 0), columns)
        right = min(max(x0 - self._origin[0] + width, 0), columns)
        bottom = min(max(y0 - self._origin[1], 0), rows)
        top = min(max(y0 - self._origin[1] + height, 0), rows)
        table = self._table
        return int(table[top, right] - table[bottom, right] - table[top, left] + table[bottom, left])

    def coverage(self, x0: int, y0: int, width: int, height: int) -> float:
        """Return the fraction of a box's pixels that have data.

        Parameters
        ----------
        x0, y0, width, height : `int`
            The box, in the parent frame (positive size).

        Returns
        -------
        coverage : `float`
            ``count / (width * height)``: the value ``cut_stamp`` gives,
            bit for bit (the mean of a boolean array is its count divided
            by its size in float64).
        """
        return self.count(x0, y0, width, height) / (width * height)


def cut_stamp(
    image: np.ndarray,
    mask: np.ndarray | None,
    variance: np.ndarray | None,
    *,
    parent_x0: int,
    parent_y0: int,
    x0: int,
    y0: int,
    width: int,
    height: int,
    no_data_bit: int = DEFAULT_MASK_PLANES["NO_DATA"],
    share: bool = False,
    coverage: float | None = None,
    **kwargs: Any,
) -> Stamp:
    """Cut a stamp from parent planes held in memory, padding the part that
    falls outside them.

    Parameters
    ----------
    image, mask, variance : `numpy.ndarray`
        Parent planes (``mask`` and ``variance`` may be `None`), row 0 at
        ``parent_y0``.
    parent_x0, parent_y0 : `int`
        Parent-frame coordinates of ``image[0, 0]``.
    x0, y0, width, height : `int`
        The stamp's bounding box in the parent frame.
    no_data_bit : `int`, optional
        Mask bit set on padded pixels, and counted as "no data" for the
        coverage.
    share : `bool`, optional
        If `True`, a stamp wholly inside the parent gets views of its
        planes, not copies (which must then not change while the stamp is
        in use); padded stamps are copies either way.
    coverage : `float`, optional
        The coverage if known (`CoverageMap`).
    **kwargs
        Further `Stamp` fields (``ra``, ``dec``, ``object_id``,
        ``edge_distance``, ``wcs``).

    Returns
    -------
    stamp : `Stamp`
        The stamp.  Pixels outside the parent are NaN in image and variance
        and have the ``NO_DATA`` bit set in the mask; ``coverage`` is the
        fraction of pixels that are finite and not flagged ``NO_DATA``.

    Raises
    ------
    ValueError
        Raised for a non-positive stamp size.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"Stamp size must be positive, not {width}x{height}.")
    px0, py0 = x0 - parent_x0, y0 - parent_y0
    inside = 0 <= px0 <= image.shape[1] - width and 0 <= py0 <= image.shape[0] - height
    if share and inside and mask is not None:
        box = (slice(py0, py0 + height), slice(px0, px0 + width))
        planes = (image[box], mask[box], None if variance is None else variance[box])
    else:
        planes = _padded_planes(image, mask, variance, px0, py0, width, height, no_data_bit)
    if coverage is None:
        coverage = float((np.isfinite(planes[0]) & ((planes[1] & (1 << no_data_bit)) == 0)).mean())
    return Stamp(*planes, x0=x0, y0=y0, coverage=coverage, **kwargs)


def _padded_planes(
    image: np.ndarray,
    mask: np.ndarray | None,
    variance: np.ndarray | None,
    px0: int,
    py0: int,
    width: int,
    height: int,
    no_data_bit: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Copy a stamp's planes from its parent's, padding the part outside
    them (NaN, ``NO_DATA``); ``px0, py0`` is its corner in parent array
    indices.
    """
    stamp_image = np.full((height, width), np.nan, dtype=np.float32)
    stamp_mask = np.full((height, width), 1 << no_data_bit, dtype=np.int32)
    stamp_variance = np.full((height, width), np.nan, dtype=np.float32)
    # Overlap in parent array indices.
    ix0, iy0 = max(px0, 0), max(py0, 0)
    ix1, iy1 = min(px0 + width, image.shape[1]), min(py0 + height, image.shape[0])
    if ix1 > ix0 and iy1 > iy0:
        target = (slice(iy0 - py0, iy1 - py0), slice(ix0 - px0, ix1 - px0))
        source = (slice(iy0, iy1), slice(ix0, ix1))
        stamp_image[target] = image[source]
        stamp_mask[target] = 0 if mask is None else mask[source]
        if variance is not None:
            stamp_variance[target] = variance[source]
    return stamp_image, stamp_mask, stamp_variance if variance is not None else None
