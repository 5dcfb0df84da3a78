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

"""afw's "A" WCS: the linear WCS, named ``A``, by which an afw image HDU
records the parent-frame (patch or tract pixel) origin of its pixels.
"""

from __future__ import annotations

__all__ = ["A_WCS_COMMENTS", "a_wcs_origin", "a_wcs_values"]

from typing import Any

A_WCS_COMMENTS = (
    ("CTYPE1A", "Type of projection"),
    ("CTYPE2A", "Type of projection"),
    ("CRPIX1A", "Column Pixel Coordinate of Reference"),
    ("CRPIX2A", "Row Pixel Coordinate of Reference"),
    ("CRVAL1A", "Column pixel of Reference Pixel"),
    ("CRVAL2A", "Row pixel of Reference Pixel"),
    ("CUNIT1A", "Column unit"),
    ("CUNIT2A", "Row unit"),
)
"""Keywords and comments of the "A" WCS, in the order afw writes them."""


def a_wcs_values(x0: float, y0: float) -> tuple[Any, ...]:
    """Return the values afw writes for the "A" WCS keywords.

    Parameters
    ----------
    x0, y0 : `float`
        Parent-frame coordinates of the image's first pixel.

    Returns
    -------
    values : `tuple`
        One value per keyword of `A_WCS_COMMENTS`, in that order.
    """
    return ("LINEAR", "LINEAR", 1.0, 1.0, float(x0), float(y0), "PIXEL", "PIXEL")


def a_wcs_origin(header: Any) -> tuple[int, int] | None:
    """Return the parent-frame origin an "A" WCS records.

    Parameters
    ----------
    header : `astropy.io.fits.Header` or `~.fits_cards.Header`
        The header of an image HDU.

    Returns
    -------
    origin : `tuple` [`int`, `int`] or `None`
        ``(x0, y0)``; `None` unless the header has ``CRVAL1A`` and
        ``CRPIX1A`` and ``CRPIX2A`` are 1 (afw then reads ``(0, 0)``).
    """
    if header.get("CRPIX1A") == 1 and header.get("CRPIX2A") == 1 and "CRVAL1A" in header:
        return round(header["CRVAL1A"]), round(header["CRVAL2A"])
    return None
