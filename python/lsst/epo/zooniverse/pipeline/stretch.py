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
    "StretchConfig",
    "asinh_rgb",
    "finite_or_zero",
    "linear_rgb",
    "lupton_rgb",
    "perceptual_rgb",
]

import math
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

from lsst.pex.config import ChoiceField, Config, Field, FieldValidationError, ListField

_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).tiny)

_FAST_ASINH_LIMIT = 1.0e18
"""Largest argument of the ``log(x + sqrt(x*x + 1))`` form of asinh used
on the fast path (``x*x`` must not overflow ``float32``).
"""

_Q_EPSILON = 1.0 / 2**23
_Q_MAX = 1.0e10

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
    images = _as_images(red, green, blue)
    minima = _per_band(minimum, "minimum")
    stretch = _check_number(stretch, "stretch", lower=0.0)
    Q = _check_number(Q, "Q", lower=0.0)
    if Q < _Q_EPSILON:
        Q = 0.1
    elif Q > _Q_MAX:
        Q = _Q_MAX
    soften = Q / stretch
    slope = 0.1 / math.asinh(0.1 * Q)

    with np.errstate(all="ignore"):
        x = _shifted(images, minima)
        intensity = x[0] + x[1]
        intensity += x[2]
        intensity /= 3.0
        # f(I)/I with 0 where I <= 0, without a masked assignment:
        # asinh(0) / tiny == 0.
        factor = np.clip(intensity, 0.0, np.inf)
        factor *= soften
        factor = _asinh_nonnegative(factor, out=factor)
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
    images = _as_images(red, green, blue)
    minima, ranges = _band_ranges(minimum, maximum)
    softening = _check_number(softening, "softening", lower=0.0)
    with np.errstate(all="ignore"):
        x = _normalized(images, minima, ranges)
        x /= softening
        x = _asinh_nonnegative(x, out=x)
        # Normalize by asinh(1/a) computed exactly as the pixels were, so
        # that a pixel at `maximum` gives exactly 1 (and 255, not 254).
        top = np.ones(1, dtype=np.float32)
        top /= softening
        x /= _asinh_nonnegative(top)[0]
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
    images = _as_images(red, green, blue)
    minima, ranges = _band_ranges(minimum, maximum)
    with np.errstate(all="ignore"):
        x = _normalized(images, minima, ranges)
        x *= 255.0
        return _to_uint8_rgb(x)


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
    images = _as_images(red, green, blue)
    maxima = _per_band(maximum, "maximum")
    if not all(value > 0 for value in maxima):
        raise ValueError(f"maximum must be positive, not {maxima}.")
    stretch = _check_number(luminance_stretch, "luminance_stretch", lower=0.0)
    max_luminance = _check_number(max_luminance, "max_luminance", lower=0.0, upper=1.0, upper_open=False)
    midtone = _check_number(midtone, "midtone", lower=0.0, upper=1.0)
    saturation = _check_number(saturation, "saturation", lower=0.0, lower_open=False)
    max_chroma = _check_number(max_chroma, "max_chroma", lower=0.0)
    floor = _check_number(floor, "floor", lower=0.0, lower_open=False, upper=1.0)

    shape = images[0].shape
    with np.errstate(all="ignore"):
        x = _shifted(images, (0.0, 0.0, 0.0))
        for band, value in zip(x, maxima):
            band /= value
        np.clip(x, 0.0, 1.0, out=x)
        lab = _oklab_from_linear_rgb(x.reshape(3, -1))
        lightness, chroma_a, chroma_b = lab

        # Luminance compression (step 2), midtone curve and ceiling (3).
        top = math.asinh(stretch)
        floor_lightness = float(_oklab_from_linear_rgb(np.full((3, 1), floor))[0, 0])
        bottom = (math.asinh(floor_lightness * stretch) - 0.2 * top) / 0.8
        new_lightness = np.clip(lightness, 0.0, np.inf)
        new_lightness *= stretch
        new_lightness = _asinh_nonnegative(new_lightness, out=new_lightness)
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

        rgb = _linear_rgb_from_oklab(lab)
        np.clip(rgb, 0.0, 1.0, out=rgb)
        return _interleave(_srgb_encode_uint8(rgb).reshape(3, *shape))


class StretchConfig(Config):
    """How the red, green and blue channel images become an 8-bit RGB
    image.

    ``algorithm`` selects one of `lupton_rgb`, `asinh_rgb`, `linear_rgb`
    and `perceptual_rgb`; only the fields that algorithm uses are read.
    With ``scaling="global"`` the numbers below are used as they are, so
    the same config gives the same colour for the same flux in every
    image; with ``scaling="per_image"`` the black and white levels are
    measured on each image (see ``scaling``).
    """

    algorithm = ChoiceField[str](
        doc="Stretch algorithm.",
        allowed={
            "lupton": "Lupton et al. (2004) colour-preserving asinh stretch of the mean intensity "
            "(like astropy make_lupton_rgb and afw makeRGB); uses Q, stretch, minimum.",
            "asinh": "Independent asinh stretch of each band (like astropy make_rgb with AsinhStretch); "
            "uses minimum, maximum, softening.",
            "linear": "Independent linear scaling of each band (like astropy make_rgb with "
            "LinearStretch); uses minimum, maximum.",
            "perceptual": "Oklab luminance compression and chroma scaling in the spirit of Rubin's "
            "PrettyPictureTask; uses maximum and the perceptual fields.",
        },
        default="lupton",
    )
    Q = Field[float](
        doc="Lupton asinh softening parameter (astropy's name; must be > 0). "
        "Larger values compress bright regions more.",
        default=8.0,
    )
    stretch = Field[float](
        doc="Lupton linear stretch (afw's dataRange): the intensity above minimum over which the "
        "mapping is roughly linear, in image units (must be > 0).",
        default=5.0,
    )
    minimum = ListField[float](
        doc="Black level in image units: one value for all bands or three in R, G, B order "
        "(lupton, asinh, linear).",
        default=[0.0],
    )
    maximum = ListField[float](
        doc="White level in image units: one value for all bands or three in R, G, B order "
        "(asinh and linear: must exceed minimum; perceptual: must be > 0).",
        default=[1.0],
    )
    softening = Field[float](
        doc="Softening 'a' of the asinh algorithm, as a fraction of maximum - minimum (must be > 0); "
        "the curve is linear well below it and logarithmic above.",
        default=0.1,
    )
    luminance_stretch = Field[float](
        doc="Perceptual: asinh stretch of Oklab lightness (must be > 0).",
        default=400.0,
    )
    max_luminance = Field[float](
        doc="Perceptual: highest output Oklab lightness, in (0, 1].",
        default=0.85,
    )
    midtone = Field[float](
        doc="Perceptual: midtone balance in (0, 1); 0.5 is neutral, smaller brightens mid-tones.",
        default=0.5,
    )
    saturation = Field[float](
        doc="Perceptual: chroma gain (>= 0; 0 gives grey).",
        default=0.6,
    )
    max_chroma = Field[float](
        doc="Perceptual: largest output Oklab chroma (must be > 0).",
        default=0.4,
    )
    floor = Field[float](
        doc="Perceptual: linear level, as a fraction of maximum, mapped to the very dark grey "
        "Oklab L = 0.2 (21 DN); fainter light goes to black. In [0, 1). With 0, black itself is that "
        "grey and sky noise becomes bright grey; set it near sky noise / maximum for a black sky.",
        default=0.0,
    )
    scaling = ChoiceField[str](
        doc="Where the black and white levels come from.",
        allowed={
            "global": "Use minimum, maximum and stretch as configured: the same flux gets the same "
            "colour in every image and every patch.",
            "per_image": "Measure them on each image from its finite pixels: minimum = per-band "
            "per_image_percentiles[0] percentile; maximum = per-band per_image_percentiles[1] "
            "percentile (asinh, linear, perceptual); lupton stretch = per_image_percentiles[1] "
            "percentile of the intensity mean(R - minimum_R, G - minimum_G, B - minimum_B) over "
            "pixels finite in all bands.",
        },
        default="global",
    )
    per_image_percentiles = ListField[float](
        doc="Low and high percentiles (0 <= low < high <= 100) used when scaling='per_image'.",
        default=[1.0, 99.5],
    )

    def validate(self):
        super().validate()
        cls = type(self)
        for name in ("Q", "stretch", "softening", "luminance_stretch", "max_chroma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise FieldValidationError(
                    getattr(cls, name), self, f"must be positive and finite, not {value}."
                )
        for name in ("saturation", "floor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise FieldValidationError(getattr(cls, name), self, f"must be >= 0 and finite, not {value}.")
        if not self.floor < 1:
            raise FieldValidationError(
                cls.floor, self, f"must be < 1 (a fraction of maximum), not {self.floor}."
            )
        if not 0 < self.max_luminance <= 1:
            raise FieldValidationError(
                cls.max_luminance, self, f"must be in (0, 1], not {self.max_luminance}."
            )
        if not 0 < self.midtone < 1:
            raise FieldValidationError(cls.midtone, self, f"must be in (0, 1), not {self.midtone}.")
        for name in ("minimum", "maximum"):
            values = list(getattr(self, name))
            if len(values) not in (1, 3):
                raise FieldValidationError(
                    getattr(cls, name), self, f"must have 1 or 3 values (R, G, B), not {len(values)}."
                )
            if not all(math.isfinite(v) for v in values):
                raise FieldValidationError(getattr(cls, name), self, f"values must be finite, not {values}.")
        percentiles = list(self.per_image_percentiles)
        if len(percentiles) != 2:
            raise FieldValidationError(
                cls.per_image_percentiles, self, f"must have 2 values (low, high), not {len(percentiles)}."
            )
        low, high = percentiles
        if not 0 <= low < high <= 100:
            raise FieldValidationError(
                cls.per_image_percentiles, self, f"must satisfy 0 <= low < high <= 100, not {percentiles}."
            )
        # Levels are only checked where they are used: lupton ignores
        # maximum, and per_image scaling replaces both.
        if self.scaling == "global":
            minima = _broadcast3(self.minimum)
            maxima = _broadcast3(self.maximum)
            if self.algorithm in ("asinh", "linear") and not all(hi > lo for lo, hi in zip(minima, maxima)):
                raise FieldValidationError(
                    cls.maximum,
                    self,
                    f"must exceed minimum in every band: minimum={minima}, maximum={maxima}.",
                )
            if self.algorithm == "perceptual" and not all(hi > 0 for hi in maxima):
                raise FieldValidationError(
                    cls.maximum, self, f"must be positive for the perceptual algorithm, not {maxima}."
                )

    def apply(self, red: Any, green: Any, blue: Any) -> np.ndarray:
        """Compose one RGB image with this configuration.

        Parameters
        ----------
        red, green, blue : `numpy.ndarray`
            Channel images, all of the same 2-D shape (NaN allowed).

        Returns
        -------
        rgb : `numpy.ndarray`
            ``uint8`` array of shape ``(H, W, 3)``; all black if
            ``scaling`` is ``per_image`` and the image has no finite
            pixel.
        """
        if self.scaling == "per_image":
            images = _as_images(red, green, blue)
            kwargs = self._per_image_parameters(images)
            if kwargs is None:
                return np.zeros((*images[0].shape, 3), dtype=np.uint8)
        else:
            kwargs = self._global_parameters()
        return _ALGORITHMS[self.algorithm](red, green, blue, **kwargs)

    def describe(self) -> str:
        """Return a one-line description of the stretch, to be stored with
        each image.

        Returns
        -------
        description : `str`
            For example ``lupton(Q=8,stretch=5,minimum=0)`` or
            ``asinh(softening=0.1);per_image(1,99.5)``. Only the parameters
            that affect the pixels appear (levels that ``per_image``
            measures on each image are left out), so equal configs give
            equal strings and configs that render differently give
            different ones.
        """
        algorithm = self.algorithm
        per_image = self.scaling == "per_image"
        parts: list[tuple[str, Any]] = []
        if algorithm == "lupton":
            parts.append(("Q", self.Q))
            if not per_image:
                parts += [("stretch", self.stretch), ("minimum", self.minimum)]
        elif algorithm in ("asinh", "linear"):
            if not per_image:
                parts += [("minimum", self.minimum), ("maximum", self.maximum)]
            if algorithm == "asinh":
                parts.append(("softening", self.softening))
        else:
            if not per_image:
                parts.append(("maximum", self.maximum))
            parts += [
                (name, getattr(self, name))
                for name in (
                    "luminance_stretch",
                    "max_luminance",
                    "midtone",
                    "saturation",
                    "max_chroma",
                    "floor",
                )
            ]
        text = algorithm + "(" + ",".join(f"{name}={_format_value(value)}" for name, value in parts) + ")"
        if per_image:
            low, high = self.per_image_percentiles
            text += f";per_image({_format_number(low)},{_format_number(high)})"
        return text

    def _global_parameters(self) -> dict[str, Any]:
        """Return the keyword arguments of the algorithm function for
        ``scaling="global"``.
        """
        if self.algorithm == "lupton":
            return {"minimum": list(self.minimum), "stretch": self.stretch, "Q": self.Q}
        if self.algorithm == "linear":
            return {"minimum": list(self.minimum), "maximum": list(self.maximum)}
        if self.algorithm == "asinh":
            return {"minimum": list(self.minimum), "maximum": list(self.maximum), "softening": self.softening}
        return {"maximum": list(self.maximum), **self._perceptual_parameters()}

    def _perceptual_parameters(self) -> dict[str, float]:
        return {
            name: getattr(self, name)
            for name in ("luminance_stretch", "max_luminance", "midtone", "saturation", "max_chroma", "floor")
        }

    def _per_image_parameters(self, images: tuple[np.ndarray, ...]) -> dict[str, Any] | None:
        """Return the keyword arguments of the algorithm function with the
        levels measured on these images, or `None` if no pixel is finite.

        Percentiles use numpy's default (linear interpolation) over the
        finite pixels of each band. A band without finite pixels is black
        whatever its levels. Where the high percentile does not exceed the
        low one (a nearly flat band), the largest finite value is used
        instead; if that does not either, the band is flat and renders
        black.
        """
        low, high = self.per_image_percentiles
        finite_values = [_finite_values(image) for image in images]
        if all(values.size == 0 for values in finite_values):
            return None
        algorithm = self.algorithm
        minima = []
        maxima = []
        for values in finite_values:
            if values.size == 0:
                minima.append(0.0)
                maxima.append(1.0)
                continue
            if algorithm == "perceptual":
                top = float(values.max())
                (value_high,) = _percentiles(values, (high,))
                if not value_high > 0:
                    value_high = top if top > 0 else 1.0
                minima.append(0.0)
                maxima.append(value_high)
            elif algorithm == "lupton":
                (value_low,) = _percentiles(values, (low,))
                minima.append(value_low)
            else:
                top = float(values.max())
                value_low, value_high = _percentiles(values, (low, high))
                if not value_high > value_low:
                    value_high = top if top > value_low else value_low + 1.0
                minima.append(value_low)
                maxima.append(value_high)
        if algorithm == "lupton":
            stretch = self._per_image_lupton_stretch(images, minima, high)
            return {"minimum": minima, "stretch": stretch, "Q": self.Q}
        if algorithm == "linear":
            return {"minimum": minima, "maximum": maxima}
        if algorithm == "asinh":
            return {"minimum": minima, "maximum": maxima, "softening": self.softening}
        return {"maximum": maxima, **self._perceptual_parameters()}

    def _per_image_lupton_stretch(
        self, images: tuple[np.ndarray, ...], minima: list[float], percentile: float
    ) -> float:
        """Return the ``percentile`` percentile of the Lupton intensity
        ``mean(x_c - minimum_c)`` over pixels finite in all three bands,
        falling back to its maximum and then to the configured ``stretch``
        where that is not positive (the image is then black anyway).
        """
        with np.errstate(all="ignore"):
            finite = np.isfinite(images[0]) & np.isfinite(images[1]) & np.isfinite(images[2])
            x = _shifted(images, tuple(minima))
            intensity = x[0] + x[1]
            intensity += x[2]
            intensity /= 3.0
            values = intensity.ravel() if finite.all() else intensity[finite]
        if values.size == 0:
            return self.stretch
        top = float(values.max())
        (stretch,) = _percentiles(values, (percentile,))
        if not (math.isfinite(stretch) and stretch > 0):
            stretch = top if math.isfinite(top) and top > 0 else self.stretch
        return stretch


_ALGORITHMS = {
    "lupton": lupton_rgb,
    "asinh": asinh_rgb,
    "linear": linear_rgb,
    "perceptual": perceptual_rgb,
}


def _as_images(red: Any, green: Any, blue: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the three channel images as arrays after checking that they
    are 2-D, of one shape and of a real numeric dtype.
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


def _broadcast3(value: Any) -> tuple[float, float, float]:
    """Return a scalar, or a sequence of 1 or 3 numbers, as 3 floats;
    raise `ValueError` for any other length.
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


def _per_band(value: Any, name: str) -> tuple[float, float, float]:
    """Return a per-band parameter as 3 finite floats."""
    try:
        values = _broadcast3(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: {err}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be finite, not {values}.")
    return values


def _band_ranges(minimum: Any, maximum: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return per-band minima and ``maximum - minimum``, checking that the
    range is positive.
    """
    minima = _per_band(minimum, "minimum")
    maxima = _per_band(maximum, "maximum")
    ranges = tuple(hi - lo for lo, hi in zip(minima, maxima))
    if not all(r > 0 and math.isfinite(r) for r in ranges):
        raise ValueError(f"maximum must exceed minimum in every band: minimum={minima}, maximum={maxima}.")
    return minima, ranges


def _check_number(
    value: Any,
    name: str,
    *,
    lower: float | None = None,
    upper: float | None = None,
    lower_open: bool = True,
    upper_open: bool = True,
) -> float:
    """Return ``value`` as a finite float inside the given bounds, or raise
    `ValueError`.
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


def _shifted(images: tuple[np.ndarray, ...], minima: Sequence[float]) -> np.ndarray:
    """Return ``image_c - minimum_c`` as one ``float32`` array of shape
    ``(3, H, W)``, with non-finite values set to 0.

    The subtraction is done in the input precision (``float64`` inputs are
    offset before being rounded to ``float32``). Finite values beyond the
    ``float32`` range are clipped to it rather than treated as non-finite.
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
    x = _shifted(images, minima)
    for band, value in zip(x, ranges):
        band /= value
    np.clip(x, 0.0, 1.0, out=x)
    return x


def _asinh_nonnegative(values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Return ``asinh(values)`` for a non-negative ``float32`` array.

    numpy's ``arcsinh`` is not vectorized on common CPUs and costs several
    times more than ``log``; ``log(x + sqrt(x*x + 1))`` is exact for
    ``x >= 0`` up to rounding (absolute error about 1e-7). Arrays with
    values too large for ``x*x`` fall back to ``numpy.arcsinh``.
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
    original = _shifted(images, minima)[:, bad]
    np.maximum(original, 0.0, out=original)
    brightest = original.max(axis=0)
    x[:, bad] = np.divide(original, brightest, out=np.zeros_like(original), where=brightest > 0)


def _to_uint8_rgb(x: np.ndarray) -> np.ndarray:
    """Truncate a ``(3, H, W)`` array with values in [0, 255] to an
    ``(H, W, 3)`` ``uint8`` array.
    """
    return _interleave(x.astype(np.uint8))


def _interleave(channels: np.ndarray) -> np.ndarray:
    """Return a ``(3, H, W)`` array as a C-contiguous ``(H, W, 3)`` array.

    Three strided channel copies are several times faster than a
    transposed copy.
    """
    rgb = np.empty((*channels.shape[1:], 3), dtype=channels.dtype)
    for index in range(3):
        rgb[..., index] = channels[index]
    return rgb


def _cube_root_nonnegative(values: np.ndarray) -> np.ndarray:
    """Return the cube root of a non-negative ``float32`` array in place.

    ``exp(log(x) / 3)`` is several times faster than ``numpy.cbrt`` and
    exact to a few ``float32`` ulps; ``x = 0`` gives 0.
    """
    np.log(values, out=values)
    values /= 3.0
    return np.exp(values, out=values)


def _oklab_from_linear_rgb(rgb: np.ndarray) -> np.ndarray:
    """Convert linear sRGB, shape ``(3, N)`` with values >= 0, to Oklab
    ``(L, a, b)``, shape ``(3, N)``.
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


def _linear_rgb_from_oklab(lab: np.ndarray) -> np.ndarray:
    """Convert Oklab ``(L, a, b)``, shape ``(3, N)``, to linear sRGB (not
    clipped).
    """
    if lab.dtype == np.float32:
        lms = np.einsum("ij,jn->in", _LMS_FROM_LAB_32, lab)
        cubed = lms * lms
        cubed *= lms
        return np.einsum("ij,jn->in", _RGB_FROM_LMS_32, cubed)
    lms = _LMS_FROM_LAB @ np.asarray(lab, dtype=np.float64)
    return _RGB_FROM_LMS @ lms**3


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Apply the sRGB transfer function (IEC 61966-2-1) to linear values
    in [0, 1].
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
    encoded = _srgb_encode(np.linspace(0.0, 1.0, _SRGB_LUT_SIZE))
    # A hair of tolerance so that exact integers (0 and 255) are not lost
    # to float64 rounding of the transfer function.
    table = np.floor(np.clip(encoded, 0.0, 1.0) * 255.0 + 1e-9).astype(np.uint8)
    table[-1] = 255
    return table


def _srgb_encode_uint8(linear: np.ndarray) -> np.ndarray:
    """Return ``trunc(255 * sRGB(linear))`` for a ``float32`` array with
    values in [0, 1], through a lookup table.

    The value is truncated to one of 65536 linear levels and the table
    holds the output of the level's lower edge, so the result is exact
    except, rarely, 1 DN low where a DN boundary falls inside a level;
    only a value of exactly 1 gives 255.
    """
    index = linear * float(_SRGB_LUT_SIZE - 1)
    return np.take(_srgb_lut(), index.astype(np.uint16))


def _finite_values(image: np.ndarray) -> np.ndarray:
    """Return a 1-D floating-point copy of the finite pixels of an image
    (``float32`` stays ``float32``).
    """
    flat = image.ravel()
    dtype = np.result_type(flat.dtype, np.float32)
    finite = np.isfinite(flat)
    if finite.all():
        return np.array(flat, dtype=dtype, copy=True)
    return np.asarray(flat[finite], dtype=dtype)


def _percentiles(values: np.ndarray, percents: Sequence[float]) -> list[float]:
    """Return percentiles of a non-empty 1-D array with numpy's default
    linear interpolation, partitioning ``values`` in place.

    One ``numpy.partition`` with all the needed ranks is about twice as fast
    as ``numpy.percentile`` on stamp-sized arrays.
    """
    last = values.size - 1
    positions = [p / 100.0 * last for p in percents]
    ranks = set()
    for position in positions:
        below = math.floor(position)
        ranks.update((below, min(below + 1, last)))
    values.partition(sorted(ranks))
    result = []
    for position in positions:
        below = math.floor(position)
        fraction = position - below
        low = float(values[below])
        high = float(values[min(below + 1, last)])
        result.append(low + (high - low) * fraction if fraction else low)
    return result


def _format_number(value: float) -> str:
    """Return the shortest text that reads back as ``value``, without a
    trailing ``.0`` (``8.0`` -> ``8``, ``0.1`` -> ``0.1``).
    """
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _format_value(value: Any) -> str:
    """Format a number, or a list of numbers (one value is shown bare)."""
    if isinstance(value, str | int | float):
        return _format_number(value)
    values = list(value)
    if len(values) == 1:
        return _format_number(values[0])
    return "[" + ",".join(_format_number(v) for v in values) + "]"
