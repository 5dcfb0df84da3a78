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

"""World coordinates inside PNG files: FITS WCS text and AVM/XMP tags.

A PNG written here is north-up as a picture (row 0 at the top), while
FITS, AVM and astropy number rows from the bottom.  The WCS stored with an
image is therefore the FITS WCS of the picture with FITS pixel ``(1, 1)``
at its *bottom-left* corner, which is what AVM readers such as pyavm,
WorldWide Telescope and Aladin assume.
"""

from __future__ import annotations

__all__ = [
    "WCS_TEXT_KEY",
    "pixel_to_picture",
    "wcs_from_header_string",
    "wcs_to_header_string",
    "wcs_to_xmp",
]

import warnings

import astropy.io.fits as fits
import astropy.wcs
import numpy as np

WCS_TEXT_KEY = "WCS"
"""PNG text keyword holding the FITS WCS header cards."""


def wcs_to_header_string(wcs: astropy.wcs.WCS) -> str:
    """Serialise a WCS as concatenated 80-character FITS cards.

    Parameters
    ----------
    wcs : `astropy.wcs.WCS`
        The WCS.

    Returns
    -------
    text : `str`
        The header cards, without ``END``; deterministic for a given WCS.
        Floating-point values keep 17 significant digits, so that
        `wcs_from_header_string` gives back the same WCS (astropy's default
        of 14 would make a read-back WCS differ from the one written).
    """
    # relax=True means all informal extensions plus SIP; an integer relax
    # needs the SIP bit spelled out.
    relax = astropy.wcs.WCSHDO_all | astropy.wcs.WCSHDO_P17 | astropy.wcs.wcs.WCSHDO_SIP
    header = wcs.to_header(relax=relax)
    for key in ("DATE-OBS", "MJD-OBS", "DATEREF", "MJDREFI", "MJDREFF"):
        header.remove(key, ignore_missing=True)
    return "".join(str(card) for card in header.cards)


def wcs_from_header_string(text: str) -> astropy.wcs.WCS:
    """Parse the output of `wcs_to_header_string`.

    Parameters
    ----------
    text : `str`
        FITS header cards.

    Returns
    -------
    wcs : `astropy.wcs.WCS`
        The WCS.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", astropy.wcs.FITSFixedWarning)
        return astropy.wcs.WCS(fits.Header.fromstring(text))


def wcs_to_xmp(wcs: astropy.wcs.WCS, shape: tuple[int, int]) -> bytes:
    """Build the AVM/XMP packet of a picture's WCS with pyavm.

    Parameters
    ----------
    wcs : `astropy.wcs.WCS`
        Celestial WCS of the picture, FITS pixel ``(1, 1)`` at the bottom
        left.
    shape : `tuple` [`int`, `int`]
        Picture shape ``(height, width)``.

    Returns
    -------
    xmp : `bytes`
        The XMP packet (deterministic for a given WCS and shape).
    """
    from pyavm import AVM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AVM.from_wcs(wcs, shape=shape).to_xmp()


def pixel_to_picture(x: float | np.ndarray, y: float | np.ndarray, height: int) -> tuple:
    """Convert 0-based FITS-order pixel coordinates to picture coordinates.

    Parameters
    ----------
    x, y : `float` or `numpy.ndarray`
        0-based pixel coordinates with ``y`` counted from the bottom row (as
        returned by ``wcs.world_to_pixel``).
    height : `int`
        Picture height in pixels.

    Returns
    -------
    column, row : `tuple`
        Picture coordinates with ``row`` counted from the top, as used to
        index the picture's array.
    """
    return x, (height - 1) - y
