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

"""`StretchConfig`: how the red, green and blue channel images of a
picture become 8 bits.

The config holds the numbers. The algorithms are functions, re-exported
here: `lupton_rgb`, `asinh_rgb` and `linear_rgb` from
`lsst.epo.zooniverse.pipeline.stretch_algorithms`, `perceptual_rgb` from
`lsst.epo.zooniverse.pipeline.perceptual_stretch`; the parameters a
config gives them are computed by
`lsst.epo.zooniverse.pipeline.stretch_parameters`.
"""

from __future__ import annotations

__all__ = [
    "StretchConfig",
    "asinh_rgb",
    "finite_or_zero",
    "linear_rgb",
    "lupton_rgb",
    "perceptual_rgb",
    "sky_black_levels",
]

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lsst.pex.config import ChoiceField, Config, Field, ListField

from .config_errors import ConfigValueError
from .perceptual_stretch import perceptual_rgb
from .stretch_algorithms import asinh_rgb, broadcast_to_bands, finite_or_zero, linear_rgb, lupton_rgb
from .stretch_parameters import apply_stretch
from .stretch_sky import sky_black_levels, uses_sky_black


class StretchConfig(Config):
    """How the red, green and blue channel images become an 8-bit RGB
    image.

    ``algorithm`` selects one of `lupton_rgb`, `asinh_rgb`, `linear_rgb`
    and `perceptual_rgb`; only the fields that algorithm uses are read.
    With ``scaling="global"`` the numbers below are used as they are, so
    the same config gives the same colour for the same flux above the
    black level in every image; with ``scaling="per_image"`` the black
    and white levels are measured on each image (see ``scaling``).  The
    black level follows the sky by default (``black_point="sky"``: a
    robust sky level minus ``sky_sigma_below`` noise sigmas, per channel)
    or is configured (``black_point="fixed"``).
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
    black_point = ChoiceField[str](
        doc="Where the black level (lupton, asinh, linear; perceptual has none) comes from.",
        allowed={
            "sky": "Follow the sky: per colour channel, black = sky - sky_sigma_below * noise (noise: the "
            "largest of the three channels' noises, so that the sky is a neutral grey), with a "
            "robust sky level and noise (sigma-clipped mode estimate and 1.4826 MAD; pixels exactly 0, "
            "which composeRgb blanks, left out). With scaling='global' composeRgb measures them per "
            "patch over all the patch's pictures (so the pictures of a patch share their levels); with "
            "scaling='per_image', or when apply() is given no levels, on each picture.",
            "fixed": "The configured level, as before this field existed: minimum with scaling='global', "
            "the per_image_percentiles[0] percentile of each band with scaling='per_image'.",
        },
        default="sky",
    )
    sky_sigma_below = Field[float](
        doc="black_point='sky': the black level is this many sky noise sigmas below the sky level "
        "(>= 0). With Gaussian noise, 2 blackens about 2.3 % of pure-sky pixels in each channel.",
        default=2.0,
    )

    def validate(self):
        # Every refusal is a ConfigValueError: one line naming the field,
        # the value and what is allowed, which pipetask prints as its only
        # error line (config_errors.py).
        super().validate()
        cls = type(self)
        for name in ("Q", "stretch", "softening", "luminance_stretch", "max_chroma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigValueError(getattr(cls, name), self, value, "a finite number > 0")
        for name in ("saturation", "floor", "sky_sigma_below"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigValueError(getattr(cls, name), self, value, "a finite number >= 0")
        if not self.floor < 1:
            raise ConfigValueError(cls.floor, self, self.floor, "a fraction of the maximum in [0, 1)")
        if not 0 < self.max_luminance <= 1:
            raise ConfigValueError(cls.max_luminance, self, self.max_luminance, "a number in (0, 1]")
        if not 0 < self.midtone < 1:
            raise ConfigValueError(cls.midtone, self, self.midtone, "a number in (0, 1)")
        for name in ("minimum", "maximum"):
            values = list(getattr(self, name))
            if len(values) not in (1, 3) or not all(math.isfinite(v) for v in values):
                raise ConfigValueError(
                    getattr(cls, name), self, values, "1 or 3 finite numbers (one for all bands, or R, G, B)"
                )
        percentiles = list(self.per_image_percentiles)
        if len(percentiles) != 2 or not 0 <= percentiles[0] < percentiles[1] <= 100:
            raise ConfigValueError(
                cls.per_image_percentiles,
                self,
                percentiles,
                "two numbers low, high with 0 <= low < high <= 100",
            )
        # Levels are only checked where they are used: lupton ignores
        # maximum, and per_image scaling replaces both.
        if self.scaling == "global":
            minima = broadcast_to_bands(self.minimum)
            maxima = broadcast_to_bands(self.maximum)
            if self.algorithm in ("asinh", "linear") and not all(hi > lo for lo, hi in zip(minima, maxima)):
                raise ConfigValueError(
                    cls.maximum,
                    self,
                    list(self.maximum),
                    f"above minimum={list(self.minimum)} in every band for the {self.algorithm} algorithm",
                )
            if self.algorithm == "perceptual" and not all(hi > 0 for hi in maxima):
                raise ConfigValueError(
                    cls.maximum, self, list(self.maximum), "positive values for the perceptual algorithm"
                )

    def apply(
        self, red: Any, green: Any, blue: Any, black: Sequence[float | None] | None = None
    ) -> np.ndarray:
        """Compose one RGB image with this configuration (see
        `apply_stretch`).

        Parameters
        ----------
        red, green, blue : `numpy.ndarray`
            Channel images, all of the same 2-D shape (NaN allowed).
        black : `~collections.abc.Sequence` [`float` or `None`], optional
            With ``black_point="sky"`` and ``scaling="global"``: the black
            level of each channel measured elsewhere (e.g. over a whole
            patch with `sky_black_levels`); by default it is measured on
            these images. Ignored otherwise.

        Returns
        -------
        rgb : `numpy.ndarray`
            ``uint8`` array of shape ``(H, W, 3)``; all black if
            ``scaling`` is ``per_image`` and the image has no finite
            pixel.
        """
        return apply_stretch(self, red, green, blue, black)

    def describe(self) -> str:
        """Return a one-line description of the stretch, to be stored with
        each image.

        Returns
        -------
        description : `str`
            For example ``lupton(Q=8,stretch=5,black=sky-2sigma)``,
            ``lupton(Q=8,stretch=5,minimum=0)`` (``black_point="fixed"``) or
            ``asinh(softening=0.1);per_image(1,99.5)``. Only the parameters
            that affect the pixels appear (levels that ``per_image``
            measures on each image are left out), so equal configs give
            equal strings and configs that render differently give
            different ones.
        """
        algorithm = self.algorithm
        per_image = self.scaling == "per_image"
        parts: list[tuple[str, Any]] = []
        sky = uses_sky_black(self)
        # The black level: the sky rule, or the configured minimum.
        black = [("black", f"sky-{_format_number(self.sky_sigma_below)}sigma")] if sky else []
        if not (sky or per_image):
            black = [("minimum", self.minimum)]
        if algorithm == "lupton":
            parts.append(("Q", self.Q))
            if not per_image:
                parts.append(("stretch", self.stretch))
            parts += black
        elif algorithm in ("asinh", "linear"):
            parts += black
            if not per_image:
                parts.append(("maximum", self.maximum))
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


def _format_number(value: float) -> str:
    """Return the shortest text that reads back as ``value``, without a
    trailing ``.0`` (``8.0`` -> ``8``, ``0.1`` -> ``0.1``).
    """
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _format_value(value: Any) -> str:
    """Format a number, or a list of numbers (one value is shown bare)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return _format_number(value)
    values = list(value)
    if len(values) == 1:
        return _format_number(values[0])
    return "[" + ",".join(_format_number(v) for v in values) + "]"
