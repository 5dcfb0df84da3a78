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

"""Stretches that turn three float channel images into one 8-bit RGB
image.

The inputs are already mixed into red, green and blue channels (same shape
``(H, W)``, any real dtype, NaN and infinities allowed).  Every function
returns a C-contiguous ``uint8`` array of shape ``(H, W, 3)``; row order is
kept (the caller flips the image if it wants north up).

All arithmetic after the per-band offset is done in ``float32``; the result
is 8 bits, so ``float32`` is far more precise than needed and about twice as
fast as ``float64``.  Non-finite input pixels are set to the band's black
level (see each function), so they never reach the ``uint8`` cast.  Every
mode truncates ``255 * value`` to an integer (as astropy and
``lsst.afw.display`` do), so full scale is 255 and anything below 1/255 of
it is 0.
"""

from __future__ import annotations

__all__ = [
    "as_channel_images",
    "asinh_nonnegative",
    "asinh_rgb",
    "broadcast_to_bands",
    "check_number",
    "finite_or_zero",
    "interleave_channels",
    "linear_rgb",
    "lupton_rgb",
    "per_band_levels",
    "shifted_channels",
]

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).tiny)

_FAST_ASINH_LIMIT = 1.0e18
"""Largest argument of the ``log(x + sqrt(x*x + 1))`` form of asinh used
on the fast path (``x*x`` must not overflow ``float32``).
"""

_Q_EPSILON = 1.0 / 2**23
_Q_MAX = 1.0e10


def finite_or_zero(array: Any) -> np.ndarray:
    """Return a floating-point copy of an array with every NaN and
    infinity replaced by zero.

    Parameters
    ----------
    array : `numpy.ndarray` or array-like
        Input values of any real dtype.

    Returns
    -------
    result : `numpy.ndarray`
        A new array of the same shape: the input dtype if it is floating
        point, ``float32`` otherwise.
    """
    array = np.asarray(array)
    dtype = array.dtype if np.issubdtype(array.dtype, np.floating) else np.float32
    result = np.array(array, dtype=dtype, copy=True)
    np.copyto(result, 0, where=~np.isfinite(result))
    return result


def lupton_rgb(
    red: Any,
    green: Any,
    blue: Any,
    *,
    minimum: float | Sequence[float] = 0.0,
    stretch: float = 5.0,
    Q: float = 8.0,
) -> np.ndarray:
    # Over 80 lines for its docstring (the algorithm, step by step).
    """Compose an RGB image with the colour-preserving asinh stretch of
    Lupton et al. (2004).

    Gives the same pixels as ``astropy.visualization.make_lupton_rgb``
    (astropy 7 and later) and ``lsst.afw.display.rgb.makeRGB`` (where
    ``stretch`` is called ``dataRange``), to within 1 DN.

    Parameters
    ----------
    red, green, blue : `numpy.ndarray`
        Channel images, all of the same 2-D shape.
    minimum : `float` or `~collections.abc.Sequence` [`float`], optional
        Black level: one value for all bands, or one per band in R, G, B
        order.
    stretch : `float`, optional
        Linear stretch (afw's ``dataRange``): the intensity above
        ``minimum`` over which the mapping is roughly linear. Must be
        positive.
    Q : `float`, optional
        Asinh softening parameter; larger values compress the bright end
        more. Must be positive.

    Returns
    -------
    rgb : `numpy.ndarray`
        ``uint8`` array of shape ``(H, W, 3)``.

    Raises
    ------
    ValueError
        Raised if the images are not 2-D arrays of one shape, or a
        parameter is out of range.
    TypeError
        Raised if an image does not have a real numeric dtype.

    Notes
    -----
    Per pixel, with ``x_c = channel_c - minimum_c``:

    1. ``I = (x_r + x_g + x_b) / 3``;
    2. ``f = asinh(Q * I / stretch) * 0.1 / asinh(0.1 * Q) / I`` (0 where
       ``I <= 0``);
    3. ``y_c = max(x_c * f, 0)``;
    4. where ``max(y) > 1`` all three are divided by ``max(y)``, which
       keeps the hue of saturated pixels instead of turning them white;
    5. ``trunc(255 * y_c)``.

    As in astropy and afw, ``Q`` below 2**-23 is replaced by 0.1 and ``Q``
    above 1e10 by 1e10. A NaN or infinite input value counts as
    ``minimum`` (contributes 0 to its pixel), so a pixel that is
    non-finite in every band is black.
    """
    images = as_channel_images(red, green, blue)
    minima = per_band_levels(minimum, "minimum")
    stretch = check_number(stretch, "stretch", lower=0.0)
    Q = check_number(Q, "Q", lower=0.0)
    if Q < _Q_EPSILON:
        Q = 0.1
    elif Q > _Q_MAX:
        Q = _Q_MAX
    soften = Q / stretch
    slope = 0.1 / math.asinh(0.1 * Q)

    with np.errstate(all="ignore"):
        x = shifted_channels(images, minima)
        intensity = x[0] + x[1]
        intensity += x[2]
        intensity /= 3.0
        # f(I)/I with 0 where I <= 0, without a masked assignment:
        # asinh(0) / tiny == 0.
        factor = np.clip(intensity, 0.0, np.inf)
        factor *= soften
        factor = asinh_nonnegative(factor, out=factor)
        factor *= slope
        np.clip(intensity, _F32_TINY, np.inf, out=intensity)
        factor /= intensity
        x *= factor
        np.clip(x, 0.0, np.inf, out=x)
        peak = np.maximum(x[0], x[1])
        np.maximum(peak, x[2], out=peak)
        # Hue-preserving clip: divide by the brightest channel where it
        # exceeds 1 (dividing by 1 elsewhere leaves the values unchanged).
        np.clip(peak, 1.0, np.inf, out=peak)
        x /= peak
        if peak.size and not np.isfinite(peak.max()):
            _fix_overflowed_lupton(x, peak, images, minima)
        x *= 255.0
        return _to_uint8_rgb(x)


def asinh_rgb(
    red: Any,
    green: Any,
    blue: Any,
    *,
    minimum: float | Sequence[float],
    maximum: float | Sequence[float],
    softening: float = 0.1,
) -> np.ndarray:
    """Compose an RGB image by stretching each band independently with an
    asinh curve.

    Gives the same pixels as ``astropy.visualization.make_rgb`` with
    ``interval=[ManualInterval(minimum_c, maximum_c) for each band]`` and
    ``stretch=AsinhStretch(a=softening)``, to within 1 DN.

    Parameters
    ----------
    red, green, blue : `numpy.ndarray`
        Channel images, all of the same 2-D shape.
    minimum : `float` or `~collections.abc.Sequence` [`float`]
        Black level: one value, or one per band in R, G, B order.
    maximum : `float` or `~collections.abc.Sequence` [`float`]
        White level: one value, or one per band; must exceed ``minimum``.
    softening : `float`, optional
        Asinh softening ``a``: the curve is linear for values well below
        ``a`` (as a fraction of the range) and logarithmic above. Must be
        positive.

    Returns
    -------
    rgb : `numpy.ndarray`
        ``uint8`` array of shape ``(H, W, 3)``.

    Raises
    ------
    ValueError
        Raised if the images are not 2-D arrays of one shape, or a
        parameter is out of range.
    TypeError
        Raised if an image does not have a real numeric dtype.

    Notes
    -----
    Per band ``x = clip((image - minimum) / (maximum - minimum), 0, 1)``,
    ``y = asinh(x / a) / asinh(1 / a)``, output ``trunc(255 * y)``; values
    at or above ``maximum`` give exactly 255. Non-finite values count as
    ``minimum`` (0 in that band).
    """
    images = as_channel_images(red, green, blue)
    minima, ranges = _band_ranges(minimum, maximum)
    softening = check_number(softening, "softening", lower=0.0)
    with np.errstate(all="ignore"):
        x = _normalized(images, minima, ranges)
        x /= softening
        x = asinh_nonnegative(x, out=x)
        # Normalize by asinh(1/a) computed exactly as the pixels were, so
        # that a pixel at `maximum` gives exactly 1 (and 255, not 254).
        top = np.ones(1, dtype=np.float32)
        top /= softening
        x /= asinh_nonnegative(top)[0]
        x *= 255.0
        return _to_uint8_rgb(x)


def linear_rgb(
    red: Any,
    green: Any,
    blue: Any,
    *,
    minimum: float | Sequence[float],
    maximum: float | Sequence[float],
) -> np.ndarray:
    """Compose an RGB image by scaling each band linearly between a black
    and a white level.

    Gives the same pixels as ``astropy.visualization.make_rgb`` with
    per-band ``ManualInterval`` and ``LinearStretch``, to within 1 DN.

    Parameters
    ----------
    red, green, blue : `numpy.ndarray`
        Channel images, all of the same 2-D shape.
    minimum : `float` or `~collections.abc.Sequence` [`float`]
        Black level: one value, or one per band in R, G, B order.
    maximum : `float` or `~collections.abc.Sequence` [`float`]
        White level: one value, or one per band; must exceed ``minimum``.

    Returns
    -------
    rgb : `numpy.ndarray`
        ``uint8`` array of shape ``(H, W, 3)``.

    Raises
    ------
    ValueError
        Raised if the images are not 2-D arrays of one shape, or a
        parameter is out of range.
    TypeError
        Raised if an image does not have a real numeric dtype.

    Notes
    -----
    Per band ``x = clip((image - minimum) / (maximum - minimum), 0, 1)``,
    output ``trunc(255 * x)``. Non-finite values count as ``minimum``.
    """
    images = as_channel_images(red, green, blue)
    minima, ranges = _band_ranges(minimum, maximum)
    with np.errstate(all="ignore"):
        x = _normalized(images, minima, ranges)
        x *= 255.0
        return _to_uint8_rgb(x)


def as_channel_images(red: Any, green: Any, blue: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the three channel images as arrays after checking that they
    are 2-D, of one shape and of a real numeric dtype.

    Parameters
    ----------
    red, green, blue : `numpy.ndarray` or array-like
        Channel images.

    Returns
    -------
    images : `tuple` [`numpy.ndarray`, `numpy.ndarray`, `numpy.ndarray`]
        The three images as arrays (not copied).

    Raises
    ------
    TypeError
        Raised if an image does not have a real numeric dtype.
    ValueError
        Raised if the images are not 2-D arrays of one shape.
    """
    images = tuple(np.asarray(image) for image in (red, green, blue))
    for name, image in zip(("red", "green", "blue"), images):
        if image.dtype.kind not in "biuf":
            raise TypeError(f"{name} image must have a real numeric dtype, not {image.dtype}.")
        if image.ndim != 2:
            raise ValueError(f"{name} image must be 2-D, not of shape {image.shape}.")
    if not images[0].shape == images[1].shape == images[2].shape:
        raise ValueError(
            f"channel images must have one shape: red {images[0].shape}, green {images[1].shape}, "
            f"blue {images[2].shape}."
        )
    return images


def broadcast_to_bands(value: Any) -> tuple[float, float, float]:
    """Return a scalar, or a sequence of 1 or 3 numbers, as 3 floats.

    Parameters
    ----------
    value : `float` or `~collections.abc.Sequence` [`float`]
        One value for all bands, or one per band in R, G, B order.

    Returns
    -------
    values : `tuple` [`float`, `float`, `float`]
        One value per band.

    Raises
    ------
    ValueError
        Raised for a sequence of another length.
    """
    if np.ndim(value) == 0:
        number = float(value)
        return (number, number, number)
    values = [float(v) for v in np.ravel(value)]
    if len(values) == 1:
        return (values[0], values[0], values[0])
    if len(values) != 3:
        raise ValueError(f"expected 1 or 3 values (R, G, B), not {len(values)}.")
    return (values[0], values[1], values[2])


def per_band_levels(value: Any, name: str) -> tuple[float, float, float]:
    """Return a per-band parameter as 3 finite floats.

    Parameters
    ----------
    value : `float` or `~collections.abc.Sequence` [`float`]
        One value for all bands, or one per band in R, G, B order.
    name : `str`
        Parameter name, for the error message.

    Returns
    -------
    values : `tuple` [`float`, `float`, `float`]
        One value per band.

    Raises
    ------
    ValueError
        Raised for another number of values or a non-finite value.
    """
    try:
        values = broadcast_to_bands(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: {err}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be finite, not {values}.")
    return values


def _band_ranges(minimum: Any, maximum: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return per-band minima and ``maximum - minimum``, checking that the
    range is positive.
    """
    minima = per_band_levels(minimum, "minimum")
    maxima = per_band_levels(maximum, "maximum")
    ranges = tuple(hi - lo for lo, hi in zip(minima, maxima))
    if not all(r > 0 and math.isfinite(r) for r in ranges):
        raise ValueError(f"maximum must exceed minimum in every band: minimum={minima}, maximum={maxima}.")
    return minima, ranges


def check_number(
    value: Any,
    name: str,
    *,
    lower: float | None = None,
    upper: float | None = None,
    lower_open: bool = True,
    upper_open: bool = True,
) -> float:
    """Return ``value`` as a finite float inside the given bounds.

    Parameters
    ----------
    value : `float`
        The value.
    name : `str`
        Parameter name, for the error message.
    lower, upper : `float`, optional
        Bounds (none by default).
    lower_open, upper_open : `bool`, optional
        Whether the bound itself is excluded.

    Returns
    -------
    number : `float`
        ``float(value)``.

    Raises
    ------
    ValueError
        Raised if the value is not finite or is out of bounds.
    """
    number = float(value)
    ok = math.isfinite(number)
    if ok and lower is not None:
        ok = number > lower if lower_open else number >= lower
    if ok and upper is not None:
        ok = number < upper if upper_open else number <= upper
    if not ok:
        low = "-inf" if lower is None else f"{lower:g}"
        high = "inf" if upper is None else f"{upper:g}"
        interval = ("(" if lower_open else "[") + f"{low}, {high}" + (")" if upper_open else "]")
        raise ValueError(f"{name} must be in {interval}, not {value}.")
    return number


def shifted_channels(images: tuple[np.ndarray, ...], minima: Sequence[float]) -> np.ndarray:
    """Return ``image_c - minimum_c`` as one ``float32`` array of shape
    ``(3, H, W)``, with non-finite values set to 0.

    The subtraction is done in the input precision (``float64`` inputs are
    offset before being rounded to ``float32``). Finite values beyond the
    ``float32`` range are clipped to it rather than treated as non-finite.

    Parameters
    ----------
    images : `tuple` [`numpy.ndarray`, ...]
        The red, green and blue channel images (see `as_channel_images`).
    minima : `~collections.abc.Sequence` [`float`]
        Black level per band.

    Returns
    -------
    x : `numpy.ndarray`
        ``float32`` array of shape ``(3, H, W)``.
    """
    x = np.empty((3, *images[0].shape), dtype=np.float32)
    for band, image, value in zip(x, images, minima):
        np.subtract(image, value, out=band, casting="same_kind")
    if not np.isfinite(x).all():
        for band, image, value in zip(x, images, minima):
            bad = ~np.isfinite(band)
            if not bad.any():
                continue
            exact = np.subtract(image[bad], value, dtype=np.float64)
            band[bad] = np.where(np.isfinite(exact), np.clip(exact, -_F32_MAX, _F32_MAX), 0.0)
    return x


def _normalized(
    images: tuple[np.ndarray, ...], minima: Sequence[float], ranges: Sequence[float]
) -> np.ndarray:
    """Return ``clip((image_c - minimum_c) / range_c, 0, 1)`` as a
    ``float32`` array of shape ``(3, H, W)``; non-finite inputs give 0.
    """
    x = shifted_channels(images, minima)
    for band, value in zip(x, ranges):
        band /= value
    np.clip(x, 0.0, 1.0, out=x)
    return x


def asinh_nonnegative(values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Return ``asinh(values)`` for a non-negative ``float32`` array.

    numpy's ``arcsinh`` is not vectorized on common CPUs and costs several
    times more than ``log``; ``log(x + sqrt(x*x + 1))`` is exact for
    ``x >= 0`` up to rounding (absolute error about 1e-7). Arrays with
    values too large for ``x*x`` fall back to ``numpy.arcsinh``.

    Parameters
    ----------
    values : `numpy.ndarray`
        Non-negative ``float32`` values.
    out : `numpy.ndarray`, optional
        Where to write the result (may be ``values``).

    Returns
    -------
    result : `numpy.ndarray`
        ``asinh(values)``.
    """
    if values.size and not values.max() <= _FAST_ASINH_LIMIT:
        return np.arcsinh(values, out=out)
    work = np.multiply(values, values)
    work += 1.0
    np.sqrt(work, out=work)
    work += values
    return np.log(work, out=work if out is None else out)


def _fix_overflowed_lupton(
    x: np.ndarray, peak: np.ndarray, images: tuple[np.ndarray, ...], minima: Sequence[float]
) -> None:
    """Redo pixels where the Lupton scaling overflowed ``float32``.

    Only pixels with values near the ``float32`` limit get here. They are
    saturated, so the hue-preserving clip makes them ``x / max(x)``
    whatever the asinh factor.
    """
    bad = ~np.isfinite(peak)
    original = shifted_channels(images, minima)[:, bad]
    np.maximum(original, 0.0, out=original)
    brightest = original.max(axis=0)
    x[:, bad] = np.divide(original, brightest, out=np.zeros_like(original), where=brightest > 0)


def _to_uint8_rgb(x: np.ndarray) -> np.ndarray:
    """Truncate a ``(3, H, W)`` array with values in [0, 255] to an
    ``(H, W, 3)`` ``uint8`` array.
    """
    return interleave_channels(x.astype(np.uint8))


def interleave_channels(channels: np.ndarray) -> np.ndarray:
    """Return a ``(3, H, W)`` array as a C-contiguous ``(H, W, 3)`` array.

    Three strided channel copies are several times faster than a
    transposed copy.

    Parameters
    ----------
    channels : `numpy.ndarray`
        Array of shape ``(3, H, W)``.

    Returns
    -------
    rgb : `numpy.ndarray`
        New array of shape ``(H, W, 3)``, same dtype.
    """
    rgb = np.empty((*channels.shape[1:], 3), dtype=channels.dtype)
    for index in range(3):
        rgb[..., index] = channels[index]
    return rgb
