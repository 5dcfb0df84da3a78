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
    "WCS_TIME_KEYS",
    "AvmSpatial",
    "CrpixTemplates",
    "pixel_to_picture",
    "wcs_from_header_string",
    "wcs_to_header_string",
    "wcs_to_xmp",
]

import math
import warnings
from typing import Any

import astropy.io.fits as fits
import astropy.wcs
import numpy as np

from .fits_cards import CARD

WCS_TEXT_KEY = "WCS"
"""PNG text keyword holding the FITS WCS header cards."""

_TEXT_RELAX = astropy.wcs.WCSHDO_all | astropy.wcs.WCSHDO_P17 | astropy.wcs.wcs.WCSHDO_SIP
WCS_TIME_KEYS = ("DATE-OBS", "MJD-OBS", "DATEREF", "MJDREFI", "MJDREFF")
"""Time cards `astropy.wcs.WCS.to_header` may write; the WCS cards this
package writes (PNG text, coadds) leave them out.
"""


def _wcslib_relax(relax: bool | int) -> int:
    """Return the flags `astropy.wcs.WCS.to_header` passes to wcslib for
    ``relax`` (its own logic, repeated so that the raw wcslib text can be
    compared).
    """
    if relax is True:
        flags = astropy.wcs.WCSHDO_all
    elif relax is False:
        flags = astropy.wcs.WCSHDO_safe
    else:
        flags = relax & ~astropy.wcs.wcs.WCSHDO_SIP
    return astropy.wcs.WCSHDO_P14 | flags


def _find_card(raw: str, prefix: str) -> int:
    """Offset of the one card of ``raw`` starting with ``prefix``, or -1."""
    start = raw.find(prefix)
    while start >= 0 and start % CARD:
        start = raw.find(prefix, start + 1)
    if start < 0:
        return -1
    later = raw.find(prefix, start + CARD)
    while later >= 0 and later % CARD:
        later = raw.find(prefix, later + 1)
    return start if later < 0 else -1


class CrpixTemplates:
    """Card images of ``wcs.to_header(relax)``, post-processed by
    ``finish``, made by astropy once per family of WCS that differ only in
    their reference pixel.

    Stamps of one patch (and the pictures made from them) share everything
    but CRPIX.  astropy's `~astropy.wcs.WCS.to_header` parses wcslib's
    header text card by card, so for a WCS without SIP its output is a
    function of that text alone: the text with the two CRPIX cards cut out
    is the family key, and the CRPIX cards of the text itself are put in
    the places astropy's output has them.  Any WCS that does not fit (SIP,
    no or repeated CRPIX cards, a CRPIX card astropy would rewrite) goes
    through astropy every time.

    Parameters
    ----------
    relax : `bool` or `int`
        ``relax`` argument of `~astropy.wcs.WCS.to_header`.
    finish : callable
        Turns the `~astropy.io.fits.Header` from ``to_header`` into the
        final list of card images (each a multiple of 80 characters).
    maxsize : `int`, optional
        Families kept; the cache is emptied when it grows beyond this.
    """

    def __init__(self, relax: bool | int, finish: Any, maxsize: int = 256) -> None:
        self._relax = relax
        self._flags = _wcslib_relax(relax)
        self._finish = finish
        self._maxsize = maxsize
        self._families: dict[str, tuple[list[str], int, int] | None] = {}

    def _slow(self, wcs: astropy.wcs.WCS) -> list[str]:
        return self._finish(wcs.to_header(relax=self._relax))

    def cards(self, wcs: astropy.wcs.WCS) -> list[str]:
        """Return the card images for ``wcs``.

        Parameters
        ----------
        wcs : `astropy.wcs.WCS`
            The WCS.

        Returns
        -------
        cards : `list` [`str`]
            What ``finish(wcs.to_header(relax))`` gives.
        """
        if wcs.sip is not None or wcs.wcs is None:
            return self._slow(wcs)
        raw = wcs.wcs.to_header(self._flags)
        first = _find_card(raw, "CRPIX1  =")
        second = _find_card(raw, "CRPIX2  =")
        if first < 0 or second < 0:
            return self._slow(wcs)
        low, high = sorted((first, second))
        key = f"{first < second}{raw[:low]}{raw[low + CARD : high]}{raw[high + CARD :]}"
        crpix1 = raw[first : first + CARD]
        crpix2 = raw[second : second + CARD]
        try:
            family = self._families[key]
        except KeyError:
            cards = self._slow(wcs)
            family = None
            if cards.count(crpix1) == 1 and cards.count(crpix2) == 1:
                family = (cards, cards.index(crpix1), cards.index(crpix2))
            if len(self._families) >= self._maxsize:
                self._families.clear()
            self._families[key] = family
            return list(cards)
        if family is None:
            return self._slow(wcs)
        cards, index1, index2 = family
        cards = list(cards)
        cards[index1] = crpix1
        cards[index2] = crpix2
        return cards


def _text_cards(header: fits.Header) -> list[str]:
    for key in WCS_TIME_KEYS:
        header.remove(key, ignore_missing=True)
    return [str(card) for card in header.cards]


_TEXT_TEMPLATES = CrpixTemplates(_TEXT_RELAX, _text_cards)


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

    Notes
    -----
    The text is what ``wcs.to_header`` with all informal extensions, SIP
    and 17 digits gives, less the date keywords.  astropy makes it once per
    family of WCS that differ only in CRPIX (`CrpixTemplates`); the others
    reuse it with their own CRPIX cards.
    """
    return "".join(_TEXT_TEMPLATES.cards(wcs))


def _wcs_to_header_string_astropy(wcs: astropy.wcs.WCS) -> str:
    """`wcs_to_header_string` through astropy every time (the reference)."""
    return "".join(_text_cards(wcs.to_header(relax=_TEXT_RELAX)))


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


class AvmSpatial:
    """The AVM 1.2 ``Spatial`` values of a picture's celestial WCS,
    computed here rather than by ``pyavm.AVM.from_wcs``.

    AVM 1.2 describes the linear part of a WCS as ``Spatial.Scale`` (CDELT,
    first element negative, second positive) and ``Spatial.Rotation``
    (CROTA2, the angle of the picture's y axis east of north), and readers
    force those signs.  pyavm's ``from_wcs`` takes CDELT and CROTA2 from the
    FITS convention (Calabretta & Greisen 2002, §6.2), which for half of
    all rotations is a *positive* first scale with the rotation turned by
    180°: AVM readers (pyavm's own ``to_wcs`` included) then read the
    picture turned by 180° about its reference pixel.  So:

    * with CD the linear part (``PC`` times ``CDELT``) and
      ``rho = atan2(-CD21 - CD12, CD22 - CD11)``, ``Rotation = rho`` (in
      degrees, in [0, 360)) and ``Scale = (CD11 cos rho + CD21 sin rho,
      CD22 cos rho - CD12 sin rho)``, which is negative then positive
      whenever ``det(CD) < 0`` (east left of north); exact for orthogonal
      columns, the closest such form (least squares) for a slightly skewed
      CD matrix;
    * a mirrored WCS (``det(CD) > 0``, east right of north) has no such
      form: only the CD matrix is written (``Spatial.CDMatrix``, deprecated
      in AVM 1.2 but read by pyavm), never a Scale and Rotation that would
      be read wrong;
    * AVM holds no distortion terms: a WCS with SIP (or other) distortions
      is replaced by the TAN WCS that fits it best over the whole picture
      (exact only to the distortion's curvature; the picture's text WCS
      chunk keeps the exact one).

    Parameters
    ----------
    wcs : `astropy.wcs.WCS`
        Celestial WCS of the picture, FITS pixel ``(1, 1)`` at the bottom
        left.
    shape : `tuple` [`int`, `int`]
        Picture shape ``(height, width)``.
    """

    def __init__(self, wcs: astropy.wcs.WCS, shape: tuple[int, int]) -> None:
        if wcs.has_distortion:
            wcs = _fitted_tan_wcs(wcs, shape)
        self.wcs = wcs
        self.shape = (int(shape[0]), int(shape[1]))
        self.cd = np.asarray(wcs.wcs.get_pc(), float) * np.asarray(wcs.wcs.get_cdelt(), float)[:, None]
        rho = math.atan2(-self.cd[1, 0] - self.cd[0, 1], self.cd[1, 1] - self.cd[0, 0])
        cos, sin = math.cos(rho), math.sin(rho)
        self.scale = (
            float(self.cd[0, 0] * cos + self.cd[1, 0] * sin),
            float(self.cd[1, 1] * cos - self.cd[0, 1] * sin),
        )
        self.rotation = math.degrees(rho) % 360.0
        self.mirrored = not float(np.linalg.det(self.cd)) < 0.0

    def to_avm(self) -> Any:
        """Return the ``pyavm.AVM`` object holding these values.

        Returns
        -------
        avm : ``pyavm.AVM``
            With the same ``Spatial`` fields as ``pyavm.AVM.from_wcs`` sets,
            and right values in them.
        """
        from pyavm import AVM

        prm = self.wcs.wcs
        avm = AVM()
        spatial = avm.Spatial
        spatial.Equinox = prm.equinox
        projection = prm.ctype[0][5:8]
        if projection != prm.ctype[1][5:8]:
            raise ValueError(f"Projections do not agree: {list(prm.ctype)}.")
        spatial.CoordsystemProjection = projection
        spatial.ReferenceDimension = [self.shape[1], self.shape[0]]
        spatial.ReferenceValue = prm.crval.tolist()
        spatial.ReferencePixel = prm.crpix.tolist()
        if self.mirrored:
            spatial.CDMatrix = self.cd.flatten().tolist()
        else:
            spatial.Scale = list(self.scale)
            spatial.Rotation = self.rotation
        axes = (prm.ctype[0][:4], prm.ctype[1][:4])
        if axes == ("RA--", "DEC-"):
            spatial.CoordinateFrame = str(prm.radesys) if prm.radesys in ("ICRS", "FK5", "FK4") else "ICRS"
        elif axes in _AVM_FRAMES:
            spatial.CoordinateFrame = _AVM_FRAMES[axes]
        else:
            raise ValueError(f"No AVM coordinate frame for axes {list(prm.ctype)}.")
        spatial.Quality = "Full"
        return avm


_AVM_FRAMES = {("ELON", "ELAT"): "ECL", ("GLON", "GLAT"): "GAL", ("SLON", "SLAT"): "SGAL"}
"""AVM ``Spatial.CoordinateFrame`` of non-equatorial FITS axes."""


def _fitted_tan_wcs(wcs: astropy.wcs.WCS, shape: tuple[int, int], samples: int = 9) -> astropy.wcs.WCS:
    """Return the distortion-free TAN WCS that fits ``wcs`` best (least
    squares on a grid of points) over a picture of ``shape``.
    """
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import fit_wcs_from_points

    height, width = shape
    xs, ys = np.meshgrid(np.linspace(-0.5, width - 0.5, samples), np.linspace(-0.5, height - 0.5, samples))
    xs, ys = xs.ravel(), ys.ravel()
    lon, lat = wcs.all_pix2world(xs, ys, 0)
    fitted = fit_wcs_from_points(
        (xs, ys), SkyCoord(lon * u.deg, lat * u.deg, frame="icrs"), proj_point="center", projection="TAN"
    )
    # The fit works in ICRS RA/Dec numbers; give back the original axes.
    fitted.wcs.ctype = [f"{wcs.wcs.ctype[0][:4]}-TAN", f"{wcs.wcs.ctype[1][:4]}-TAN"]
    fitted.wcs.radesys = wcs.wcs.radesys
    fitted.wcs.equinox = wcs.wcs.equinox
    fitted.wcs.set()
    return fitted


def _wcs_to_xmp_reference(wcs: astropy.wcs.WCS, shape: tuple[int, int]) -> bytes:
    """`wcs_to_xmp` computed in full every time (the reference)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AvmSpatial(wcs, shape).to_avm().to_xmp()


def _reference_pixel(crpix: Any) -> bytes:
    """Format the ``Spatial.ReferencePixel`` element as pyavm does."""
    first, second = (float(value) for value in crpix)
    return (
        b"<avm:Spatial.ReferencePixel><rdf:Seq>"
        + f"<rdf:li>{first:.16f}</rdf:li><rdf:li>{second:.16f}</rdf:li>".encode()
        + b"</rdf:Seq></avm:Spatial.ReferencePixel>"
    )


class _XmpTemplates:
    """AVM/XMP packets made once per family of WCS that differ only in
    their reference pixel.

    `AvmSpatial` reads the WCS's ``equinox``, ``ctype``, ``crval``,
    ``crpix``, ``radesys``, ``get_pc()`` and ``get_cdelt()`` and the
    picture shape, and CRPIX only becomes ``Spatial.ReferencePixel`` (for
    a WCS without distortion terms).
    Everything else is the family key; a new member's packet is the
    family's with its own reference pixel element.
    """

    def __init__(self, maxsize: int = 256) -> None:
        self._maxsize = maxsize
        self._families: dict[tuple, tuple[bytes, bytes] | None] = {}

    def xmp(self, wcs: astropy.wcs.WCS, shape: tuple[int, int]) -> bytes:
        """Return `_wcs_to_xmp_reference` of ``wcs`` and ``shape``."""
        if wcs.has_distortion:
            # The fitted TAN WCS depends on CRPIX too: no family to share.
            return _wcs_to_xmp_reference(wcs, shape)
        try:
            prm = wcs.wcs
            key = (
                tuple(prm.ctype),
                prm.crval.tobytes(),
                prm.get_pc().tobytes(),
                prm.get_cdelt().tobytes(),
                str(prm.radesys),
                np.float64(prm.equinox).tobytes(),
                tuple(shape),
                hasattr(wcs, "naxis1"),
            )
            crpix = prm.crpix.tolist()
        except Exception:  # Whatever pyavm makes of it (an error, most likely).
            return _wcs_to_xmp_reference(wcs, shape)
        try:
            family = self._families[key]
        except KeyError:
            packet = _wcs_to_xmp_reference(wcs, shape)
            element = _reference_pixel(crpix)
            family = None
            if packet.count(element) == 1:
                before, after = packet.split(element)
                family = (before, after)
            if len(self._families) >= self._maxsize:
                self._families.clear()
            self._families[key] = family
            return packet
        if family is None:
            return _wcs_to_xmp_reference(wcs, shape)
        return family[0] + _reference_pixel(crpix) + family[1]


_XMP_TEMPLATES = _XmpTemplates()


def wcs_to_xmp(wcs: astropy.wcs.WCS, shape: tuple[int, int]) -> bytes:
    """Build the AVM/XMP packet of a picture's WCS (`AvmSpatial`, written
    by pyavm).

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
        The XMP packet (deterministic for a given WCS and shape).  pyavm
        makes it once per family of WCS that differ only in CRPIX; the
        others get the same packet with their own reference pixel
        (`_XmpTemplates`).
    """
    return _XMP_TEMPLATES.xmp(wcs, shape)


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
