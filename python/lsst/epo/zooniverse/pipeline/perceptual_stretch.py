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

"""The perceptual stretch: luminance compression and chroma scaling in
the Oklab colour space (Björn Ottosson, 2020, for linear sRGB with a D65
white point), encoded with the sRGB transfer function.
"""

from __future__ import annotations

__all__ = [
    "linear_rgb_from_oklab",
    "oklab_from_linear_rgb",
    "perceptual_rgb",
    "srgb_encode",
    "srgb_encode_uint8",
]

import math
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

from .stretch_algorithms import (
    as_channel_images,
    asinh_nonnegative,
    check_number,
    interleave_channels,
    per_band_levels,
    shifted_channels,
)

_F32_TINY = float(np.finfo(np.float32).tiny)

# Björn Ottosson's Oklab (2020), for linear sRGB with a D65 white point:
# linear sRGB -> LMS, cube root, LMS' -> Lab, and the inverses.
_LMS_FROM_RGB = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ]
)
_LAB_FROM_LMS = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ]
)
_LMS_FROM_LAB = np.array(
    [
        [1.0, 0.3963377774, 0.2158037573],
        [1.0, -0.1055613458, -0.0638541728],
        [1.0, -0.0894841775, -1.2914855480],
    ]
)
_RGB_FROM_LMS = np.array(
    [
        [4.0767416621, -3.3077115913, 0.2309699292],
        [-1.2684380046, 2.6097574011, -0.3413193965],
        [-0.0041960863, -0.7034186147, 1.7076147010],
    ]
)
_LMS_FROM_RGB_32 = _LMS_FROM_RGB.astype(np.float32)
_LAB_FROM_LMS_32 = _LAB_FROM_LMS.astype(np.float32)
_LMS_FROM_LAB_32 = _LMS_FROM_LAB.astype(np.float32)
_RGB_FROM_LMS_32 = _RGB_FROM_LMS.astype(np.float32)

_CUBE_ROOT_FLOOR = 1.0e-30
"""Smallest LMS value passed to the ``float32`` cube root (Oklab L of
1e-10, invisible after any stretch).
"""

_SRGB_LUT_SIZE = 65536
"""Entries of the linear -> 8-bit sRGB lookup table.

Its step (1/65535 in linear light) moves the output by at most 0.05 DN
(near black, where the sRGB curve is steepest).
"""


def _cube_root_nonnegative(values: np.ndarray) -> np.ndarray:
    """Return the cube root of a non-negative ``float32`` array in place.

    ``exp(log(x) / 3)`` is several times faster than ``numpy.cbrt`` and
    exact to a few ``float32`` ulps; ``x = 0`` gives 0.
    """
    np.log(values, out=values)
    values /= 3.0
    return np.exp(values, out=values)


def oklab_from_linear_rgb(rgb: np.ndarray) -> np.ndarray:
    """Convert linear sRGB, shape ``(3, N)`` with values >= 0, to Oklab
    ``(L, a, b)``, shape ``(3, N)``.

    Parameters
    ----------
    rgb : `numpy.ndarray`
        Linear sRGB; ``float32`` is computed in ``float32`` (fast path),
        anything else in ``float64``.

    Returns
    -------
    lab : `numpy.ndarray`
        Oklab ``(L, a, b)``.
    """
    if rgb.dtype == np.float32:
        # einsum is much faster than matmul for a 3x3 matrix times 3xN.
        lms = np.einsum("ij,jn->in", _LMS_FROM_RGB_32, rgb)
        # A floor far below anything visible keeps log() away from 0,
        # where numpy's vectorized log and exp take a slow path.
        np.clip(lms, _CUBE_ROOT_FLOOR, np.inf, out=lms)
        return np.einsum("ij,jn->in", _LAB_FROM_LMS_32, _cube_root_nonnegative(lms))
    lms = np.maximum(_LMS_FROM_RGB @ np.asarray(rgb, dtype=np.float64), 0.0)
    return _LAB_FROM_LMS @ np.cbrt(lms)


def linear_rgb_from_oklab(lab: np.ndarray) -> np.ndarray:
    """Convert Oklab ``(L, a, b)``, shape ``(3, N)``, to linear sRGB (not
    clipped).

    Parameters
    ----------
    lab : `numpy.ndarray`
        Oklab ``(L, a, b)``; ``float32`` stays ``float32``.

    Returns
    -------
    rgb : `numpy.ndarray`
        Linear sRGB, shape ``(3, N)``.
    """
    if lab.dtype == np.float32:
        lms = np.einsum("ij,jn->in", _LMS_FROM_LAB_32, lab)
        cubed = lms * lms
        cubed *= lms
        return np.einsum("ij,jn->in", _RGB_FROM_LMS_32, cubed)
    lms = _LMS_FROM_LAB @ np.asarray(lab, dtype=np.float64)
    return _RGB_FROM_LMS @ lms**3


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Apply the sRGB transfer function (IEC 61966-2-1) to linear values
    in [0, 1].

    Parameters
    ----------
    linear : `numpy.ndarray`
        Linear values.

    Returns
    -------
    encoded : `numpy.ndarray`
        ``float64`` sRGB-encoded values.
    """
    linear = np.asarray(linear, dtype=np.float64)
    return np.where(
        linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(np.maximum(linear, 0.0031308), 1 / 2.4) - 0.055
    )


@cache
def _srgb_lut() -> np.ndarray:
    """Return the lookup table from linear level ``i / 65535`` to
    ``trunc(255 * sRGB(i / 65535))``.
    """
    encoded = srgb_encode(np.linspace(0.0, 1.0, _SRGB_LUT_SIZE))
    # A hair of tolerance so that exact integers (0 and 255) are not lost
    # to float64 rounding of the transfer function.
    table = np.floor(np.clip(encoded, 0.0, 1.0) * 255.0 + 1e-9).astype(np.uint8)
    table[-1] = 255
    return table


def srgb_encode_uint8(linear: np.ndarray) -> np.ndarray:
    """Return ``trunc(255 * sRGB(linear))`` for a ``float32`` array with
    values in [0, 1], through a lookup table.

    The value is truncated to one of 65536 linear levels and the table
    holds the output of the level's lower edge, so the result is exact
    except, rarely, 1 DN low where a DN boundary falls inside a level;
    only a value of exactly 1 gives 255.

    Parameters
    ----------
    linear : `numpy.ndarray`
        ``float32`` linear values in [0, 1].

    Returns
    -------
    encoded : `numpy.ndarray`
        ``uint8`` values, same shape.
    """
    index = linear * float(_SRGB_LUT_SIZE - 1)
    return np.take(_srgb_lut(), index.astype(np.uint16))


def perceptual_rgb(
    red: Any,
    green: Any,
    blue: Any,
    *,
    maximum: float | Sequence[float],
    luminance_stretch: float = 400.0,
    max_luminance: float = 0.85,
    midtone: float = 0.5,
    saturation: float = 0.6,
    max_chroma: float = 0.4,
    floor: float = 0.0,
) -> np.ndarray:
    # Over 80 lines: a 75-line docstring (the algorithm); the code is 63.
    """Compose an RGB image by compressing luminance and rescaling chroma
    in the Oklab colour space.

    A compact, numpy-only mode in the spirit of Rubin's
    ``PrettyPictureTask`` (``lsst.pipe.tasks.prettyPictureMaker``): its
    luminance compression and chroma scaling, without exposure brackets,
    local contrast, deconvolution or gamut inpainting.

    Parameters
    ----------
    red, green, blue : `numpy.ndarray`
        Channel images (linear flux), all of the same 2-D shape.
    maximum : `float` or `~collections.abc.Sequence` [`float`]
        Value that becomes 1 (full scale) in linear light: one value, or
        one per band in R, G, B order. Must be positive.
    luminance_stretch : `float`, optional
        Asinh stretch applied to Oklab lightness; larger values brighten
        faint light more. Must be positive.
    max_luminance : `float`, optional
        Highest output lightness (Oklab L), in (0, 1]; below 1 leaves
        headroom so that bright cores keep some colour.
    midtone : `float`, optional
        Midtone balance in (0, 1); 0.5 leaves the curve unchanged, smaller
        values brighten mid-tones, larger values darken them.
    saturation : `float`, optional
        Chroma gain, >= 0; 0 gives a grey image.
    max_chroma : `float`, optional
        Largest output chroma (Oklab C), > 0.
    floor : `float`, optional
        Linear level, as a fraction of ``maximum``, that is mapped to the
        very dark grey Oklab L = 0.2 (21 DN); fainter light gets darker and
        reaches black. In [0, 1). With 0, black input itself is that grey
        and the sky noise is stretched to bright grey (a sky at 1% of
        ``maximum`` gives 194 DN); set it near the sky level or noise
        divided by ``maximum`` for a black sky (Rubin's production HiPS
        use 1.5 nJy divided by their maximum).

    Returns
    -------
    rgb : `numpy.ndarray`
        ``uint8`` array of shape ``(H, W, 3)``, sRGB encoded.

    Raises
    ------
    ValueError
        Raised if the images are not 2-D arrays of one shape, or a
        parameter is out of range.
    TypeError
        Raised if an image does not have a real numeric dtype.

    Notes
    -----
    1. ``x_c = clip(channel_c / maximum_c, 0, 1)`` (non-finite values
       count as 0), taken as linear sRGB and converted to Oklab ``(L, a,
       b)`` with Björn Ottosson's matrices.
    2. ``L' = (asinh(L * s) - bottom) / (asinh(s) - bottom)`` clipped to
       [0, 1], with ``s = luminance_stretch`` and ``bottom = (asinh(Lf *
       s) - 0.2 * asinh(s)) / 0.8``, where ``Lf`` is the Oklab lightness
       of a grey of linear level ``floor`` (so ``floor`` maps to 0.2).
    3. Midtone curve ``L'' = (m - 1) L' / ((2m - 1) L' - m)`` with ``m =
       midtone``, then clipped to ``[0, max_luminance]``.
    4. ``(a, b)`` multiplied by ``saturation * L'' / L`` (hue kept), then
       scaled down to chroma ``max_chroma`` where it is larger.
    5. Back to linear sRGB, clipped to [0, 1], sRGB transfer function,
       ``trunc(255 * value)``.

    Grey input stays grey, and the output lightness never decreases when
    the input of a grey pixel increases. Unlike ``PrettyPictureTask`` the
    white point is D65 (not ``cieWhitePoint``), chroma is scaled by
    ``saturation`` itself (not by its square root with a bright-end
    fall-off) and out-of-gamut colours are clipped.
    """
    images = as_channel_images(red, green, blue)
    maxima = per_band_levels(maximum, "maximum")
    if not all(value > 0 for value in maxima):
        raise ValueError(f"maximum must be positive, not {maxima}.")
    stretch = check_number(luminance_stretch, "luminance_stretch", lower=0.0)
    max_luminance = check_number(max_luminance, "max_luminance", lower=0.0, upper=1.0, upper_open=False)
    midtone = check_number(midtone, "midtone", lower=0.0, upper=1.0)
    saturation = check_number(saturation, "saturation", lower=0.0, lower_open=False)
    max_chroma = check_number(max_chroma, "max_chroma", lower=0.0)
    floor = check_number(floor, "floor", lower=0.0, lower_open=False, upper=1.0)

    shape = images[0].shape
    with np.errstate(all="ignore"):
        x = shifted_channels(images, (0.0, 0.0, 0.0))
        for band, value in zip(x, maxima):
            band /= value
        np.clip(x, 0.0, 1.0, out=x)
        lab = oklab_from_linear_rgb(x.reshape(3, -1))
        lightness, chroma_a, chroma_b = lab

        # Luminance compression (step 2), midtone curve and ceiling (3).
        top = math.asinh(stretch)
        floor_lightness = float(oklab_from_linear_rgb(np.full((3, 1), floor))[0, 0])
        bottom = (math.asinh(floor_lightness * stretch) - 0.2 * top) / 0.8
        new_lightness = np.clip(lightness, 0.0, np.inf)
        new_lightness *= stretch
        new_lightness = asinh_nonnegative(new_lightness, out=new_lightness)
        new_lightness -= bottom
        new_lightness /= top - bottom
        np.clip(new_lightness, 0.0, 1.0, out=new_lightness)
        denominator = new_lightness * (2.0 * midtone - 1.0)
        denominator -= midtone
        new_lightness *= midtone - 1.0
        new_lightness /= denominator
        np.clip(new_lightness, 0.0, max_luminance, out=new_lightness)

        # Chroma scaling with hue kept (step 4): one gain per pixel, capped
        # so that the chroma does not exceed max_chroma.
        gain = new_lightness * saturation
        gain /= np.clip(lightness, _F32_TINY, np.inf)
        chroma = chroma_a * chroma_a
        chroma += chroma_b * chroma_b
        np.sqrt(chroma, out=chroma)
        np.clip(chroma, _F32_TINY, np.inf, out=chroma)
        np.divide(max_chroma, chroma, out=chroma)
        np.minimum(gain, chroma, out=gain)
        chroma_a *= gain
        chroma_b *= gain
        lightness[...] = new_lightness

        rgb = linear_rgb_from_oklab(lab)
        np.clip(rgb, 0.0, 1.0, out=rgb)
        return interleave_channels(srgb_encode_uint8(rgb).reshape(3, *shape))
