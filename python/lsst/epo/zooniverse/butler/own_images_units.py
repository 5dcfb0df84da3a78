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

"""Flux units of a user's own images, converted to nJy per pixel (the unit
of DRP's ``deep_coadd``) so that one stretch works across bands, and a
robust noise estimate for images without a variance plane.

A unit is either a flux per pixel (``nJy``, ``Jy``, ``nanomaggy``,
``Jy/pix``; counts with an AB zero point) or a surface brightness
(``MJy/sr``); the resampler needs to know which (``FluxScale.per_steradian``).
"""

from __future__ import annotations

__all__ = [
    "AB_ZERO_POINT_JY",
    "ZERO_POINT_CARDS",
    "FluxScale",
    "OwnImagesError",
    "resolve_flux_scale",
    "robust_sigma",
]

import dataclasses
from collections.abc import Mapping

import astropy.units as u
import numpy as np

AB_ZERO_POINT_JY = 3631.0
"""Flux density of AB magnitude 0, in Jy (Oke & Gunn 1983)."""

ZERO_POINT_CARDS = ("MAGZP", "MAGZERO", "ZEROPT", "PHOTZP", "ZP")
"""Header cards read, in this order, as the AB magnitude of one count."""

_COUNT_UNITS = (u.ct, u.DN, u.adu, u.electron, u.photon)
_ALIASES = {"nanomaggies": "nanomaggy", "maggies": "maggy", "counts": "ct", "cts": "ct", "e-": "electron"}


class OwnImagesError(ValueError):
    """A user's image or option cannot be ingested; the message is one line
    naming the file, band, key or value at fault.
    """


@dataclasses.dataclass(frozen=True)
class FluxScale:
    """How to turn an image's pixel values into nJy.

    Attributes
    ----------
    factor : `float`
        Multiply pixel values by this.
    per_steradian : `bool`
        If true, ``factor`` gives nJy per steradian (a surface brightness,
        multiplied by the output pixel's solid angle when resampling);
        otherwise nJy per input pixel (a flux, multiplied by the ratio of
        the output to the input pixel area).
    description : `str`
        Where the scale came from, for the progress output.
    """

    factor: float
    per_steradian: bool
    description: str


def _is_counts(unit: u.UnitBase) -> bool:
    for base in _COUNT_UNITS:
        if unit.is_equivalent(base) or (unit * u.s).is_equivalent(base):
            return True
    return False


def _parse_unit(text: str, where: str) -> u.UnitBase:
    cleaned = _ALIASES.get(text.strip().lower(), text.strip())
    try:
        return u.Unit(cleaned, parse_strict="raise")
    except ValueError:
        try:
            return u.Unit(cleaned.lower(), parse_strict="raise")
        except ValueError:
            raise OwnImagesError(
                f"{where}: unknown flux unit {text!r}; give --unit BAND=UNIT (nJy, Jy, nanomaggy, MJy/sr, "
                "counts with --zero-point) or --scale BAND=FACTOR (to nJy per pixel)."
            ) from None


def _zero_point(header: Mapping, override: float | None, where: str) -> tuple[float, str]:
    if override is not None:
        return float(override), "--zero-point"
    for card in ZERO_POINT_CARDS:
        value = header.get(card)
        if isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value):
            return float(value), card
    raise OwnImagesError(
        f"{where}: pixel values are counts but no zero point was given; pass --zero-point BAND=ZP "
        f"(AB magnitude of one count) or add a {ZERO_POINT_CARDS[0]} card."
    )


def resolve_flux_scale(
    header: Mapping,
    where: str,
    *,
    unit: str | None = None,
    zero_point: float | None = None,
    scale: float | None = None,
) -> FluxScale:
    """Find how to convert an image to nJy.

    Parameters
    ----------
    header : `~collections.abc.Mapping`
        The image HDU's header (``BUNIT`` and the zero-point cards are
        read).
    where : `str`
        Names the file and band in error messages.
    unit : `str`, optional
        Overrides ``BUNIT``.
    zero_point : `float`, optional
        AB magnitude of one count (for count-like units); overrides the
        header's `ZERO_POINT_CARDS`.
    scale : `float`, optional
        Factor to nJy per pixel; overrides everything else.

    Returns
    -------
    scale : `FluxScale`
        The conversion.

    Raises
    ------
    OwnImagesError
        Raised if the unit is missing, unknown or not a flux, or counts
        come without a zero point.
    """
    if scale is not None:
        if not np.isfinite(scale) or scale <= 0:
            raise OwnImagesError(f"{where}: --scale must be a positive number, not {scale!r}.")
        return FluxScale(float(scale), False, f"x{scale:g} (--scale)")
    text = unit if unit is not None else header.get("BUNIT")
    if text is None or not str(text).strip():
        raise OwnImagesError(
            f"{where}: no BUNIT card; give --unit BAND=UNIT (nJy, Jy, nanomaggy, MJy/sr, counts with "
            "--zero-point) or --scale BAND=FACTOR (to nJy per pixel)."
        )
    parsed = _parse_unit(str(text), where)
    origin = "--unit" if unit is not None else "BUNIT"
    if parsed.is_equivalent(u.nJy):
        return FluxScale(float(parsed.to(u.nJy)), False, f"{parsed} ({origin})")
    if (parsed * u.pix).is_equivalent(u.nJy):
        return FluxScale(float((parsed * u.pix).to(u.nJy)), False, f"{parsed} ({origin})")
    if parsed.is_equivalent(u.nJy / u.sr):
        return FluxScale(float(parsed.to(u.nJy / u.sr)), True, f"{parsed} ({origin})")
    if parsed.is_equivalent(u.mgy):
        return FluxScale(float(parsed.to(u.mgy)) * AB_ZERO_POINT_JY * 1e9, False, f"{parsed} ({origin})")
    if _is_counts(parsed):
        value, source = _zero_point(header, zero_point, where)
        factor = AB_ZERO_POINT_JY * 1e9 * 10.0 ** (-0.4 * value)
        return FluxScale(factor, False, f"{parsed} with zero point {value:g} ({source})")
    raise OwnImagesError(
        f"{where}: unit {text!r} ({origin}) is not a flux or surface brightness; give --unit BAND=UNIT "
        "or --scale BAND=FACTOR (to nJy per pixel)."
    )


def robust_sigma(values: np.ndarray, max_samples: int = 200_000) -> float:
    """Estimate the sky noise of an image: 1.4826 × the median absolute
    deviation of its finite pixels, after clipping at 5 sigma twice (so
    that stars do not count).

    Parameters
    ----------
    values : `numpy.ndarray`
        Pixel values (any shape); non-finite values are ignored.
    max_samples : `int`, optional
        At most this many pixels are used (a regular subsample).

    Returns
    -------
    sigma : `float`
        The noise, in the units of ``values`` (0 for a constant image).
    """
    flat = np.asarray(values).ravel()
    step = max(1, flat.size // max_samples)
    sample = flat[::step]
    sample = sample[np.isfinite(sample)].astype(np.float64)
    if sample.size == 0:
        return float("nan")
    for _ in range(2):
        median = np.median(sample)
        sigma = 1.4826 * np.median(np.abs(sample - median))
        if sigma == 0:
            break
        sample = sample[np.abs(sample - median) < 5 * sigma]
    median = np.median(sample)
    return float(1.4826 * np.median(np.abs(sample - median)))
