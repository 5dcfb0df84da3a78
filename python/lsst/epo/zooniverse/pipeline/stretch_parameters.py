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

"""The stretch parameters a `StretchConfig` gives the algorithm
functions: its own numbers (``scaling="global"``) or levels measured on
each image (``scaling="per_image"``).
"""

from __future__ import annotations

__all__ = [
    "STRETCH_FUNCTIONS",
    "apply_stretch",
    "global_stretch_parameters",
    "lupton_intensity",
    "per_image_stretch_parameters",
    "percentiles",
    "stretch_parameters",
]

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .perceptual_stretch import perceptual_rgb
from .stretch_algorithms import (
    as_channel_images,
    asinh_rgb,
    broadcast_to_bands,
    linear_rgb,
    lupton_rgb,
    shifted_channels,
)
from .stretch_sky import sky_black_levels, uses_sky_black

STRETCH_FUNCTIONS = {
    "lupton": lupton_rgb,
    "asinh": asinh_rgb,
    "linear": linear_rgb,
    "perceptual": perceptual_rgb,
}
"""The algorithm function of each ``StretchConfig.algorithm``."""


def apply_stretch(
    config: Any, red: Any, green: Any, blue: Any, black: Sequence[float | None] | None = None
) -> np.ndarray:
    """Compose one RGB image with a stretch configuration.

    Parameters
    ----------
    config : `StretchConfig`
        The stretch.
    red, green, blue : `numpy.ndarray`
        Channel images, all of the same 2-D shape (NaN allowed).
    black : `~collections.abc.Sequence` [`float` or `None`], optional
        Black level of each channel measured elsewhere, for
        ``black_point="sky"`` with ``scaling="global"`` (see
        `stretch_parameters`).

    Returns
    -------
    rgb : `numpy.ndarray`
        ``uint8`` array of shape ``(H, W, 3)``; all black if
        ``config.scaling`` is ``per_image`` and the image has no finite
        pixel.
    """
    images = as_channel_images(red, green, blue)
    kwargs = stretch_parameters(config, images, black)
    if kwargs is None:
        return np.zeros((*images[0].shape, 3), dtype=np.uint8)
    return STRETCH_FUNCTIONS[config.algorithm](red, green, blue, **kwargs)


def stretch_parameters(
    config: Any, images: tuple[np.ndarray, ...], black: Sequence[float | None] | None = None
) -> dict[str, Any] | None:
    """Return the keyword arguments of the algorithm function for these
    channel images.

    Parameters
    ----------
    config : `StretchConfig`
        The stretch.
    images : `tuple` [`numpy.ndarray`, ...]
        The red, green and blue channel images.
    black : `~collections.abc.Sequence` [`float` or `None`], optional
        With ``black_point="sky"`` and ``scaling="global"``, the black
        level of each channel (composeRgb measures it over the whole
        patch); `None` measures it on ``images``. Ignored otherwise
        (``per_image`` always measures on ``images``).

    Returns
    -------
    kwargs : `dict` [`str`, `typing.Any`] or `None`
        Keyword arguments of ``STRETCH_FUNCTIONS[config.algorithm]``, or
        `None` if ``scaling="per_image"`` and no pixel is finite.
    """
    if config.scaling == "per_image":
        return per_image_stretch_parameters(config, images)
    if uses_sky_black(config) and black is None:
        black = sky_black_levels(config, images)
    return global_stretch_parameters(config, black if uses_sky_black(config) else None)


def global_stretch_parameters(config: Any, black: Sequence[float | None] | None = None) -> dict[str, Any]:
    """Return the keyword arguments of the algorithm function for
    ``scaling="global"``: the configured numbers.

    Parameters
    ----------
    config : `StretchConfig`
        The stretch.
    black : `~collections.abc.Sequence` [`float` or `None`], optional
        Black level of each channel to use instead of ``config.minimum``
        (lupton, asinh, linear). A channel whose level is `None` or (asinh
        and linear) not below its ``maximum`` keeps its ``minimum``.

    Returns
    -------
    kwargs : `dict` [`str`, `typing.Any`]
        Keyword arguments of ``STRETCH_FUNCTIONS[config.algorithm]``.
    """
    minimum = list(config.minimum)
    if black is not None:
        # A level that is not measured, or (asinh, linear) not below
        # maximum, is the configured minimum.
        bounded = config.algorithm in ("asinh", "linear")
        configured = zip(broadcast_to_bands(config.minimum), broadcast_to_bands(config.maximum))
        minimum = [
            lo if b is None or (bounded and not b < hi) else float(b)
            for b, (lo, hi) in zip(black, configured)
        ]
    if config.algorithm == "lupton":
        return {"minimum": minimum, "stretch": config.stretch, "Q": config.Q}
    if config.algorithm == "linear":
        return {"minimum": minimum, "maximum": list(config.maximum)}
    if config.algorithm == "asinh":
        return {
            "minimum": minimum,
            "maximum": list(config.maximum),
            "softening": config.softening,
        }
    return {"maximum": list(config.maximum), **_perceptual_parameters(config)}


def _perceptual_parameters(config: Any) -> dict[str, float]:
    return {
        name: getattr(config, name)
        for name in ("luminance_stretch", "max_luminance", "midtone", "saturation", "max_chroma", "floor")
    }


def per_image_stretch_parameters(config: Any, images: tuple[np.ndarray, ...]) -> dict[str, Any] | None:
    """Return the keyword arguments of the algorithm function with the
    levels measured on these images.

    Parameters
    ----------
    config : `StretchConfig`
        The stretch (its ``per_image_percentiles`` and the fields the
        levels do not replace are used).
    images : `tuple` [`numpy.ndarray`, ...]
        The red, green and blue channel images.

    Returns
    -------
    kwargs : `dict` [`str`, `typing.Any`] or `None`
        Keyword arguments of ``STRETCH_FUNCTIONS[config.algorithm]``, or
        `None` if no pixel is finite.

    Notes
    -----
    Percentiles use numpy's default (linear interpolation) over the
    finite pixels of each band. With ``black_point="sky"`` (lupton,
    asinh, linear) the black level of each band is its sky level minus
    ``sky_sigma_below`` noise sigmas (`sky_black_levels`) instead of the
    low percentile, with the noise of the noisiest band (a band that
    cannot be measured keeps the low percentile). A band without finite
    pixels is black whatever its levels. Where the high percentile does
    not exceed the low one (a nearly flat band), the largest finite value
    is used instead; if that does not either, the band is flat and
    renders black.
    """
    low, high = config.per_image_percentiles
    finite_values = [_finite_values(image) for image in images]
    if all(values.size == 0 for values in finite_values):
        return None
    algorithm = config.algorithm
    black = sky_black_levels(config, finite_values) if uses_sky_black(config) else [None] * 3
    minima = []
    maxima = []
    for values, band_black in zip(finite_values, black):
        if values.size == 0:
            minima.append(0.0)
            maxima.append(1.0)
            continue
        if algorithm == "perceptual":
            top = float(values.max())
            (value_high,) = percentiles(values, (high,))
            if not value_high > 0:
                value_high = top if top > 0 else 1.0
            minima.append(0.0)
            maxima.append(value_high)
        elif algorithm == "lupton":
            (value_low,) = percentiles(values, (low,))
            minima.append(value_low if band_black is None else band_black)
        else:
            top = float(values.max())
            value_low, value_high = percentiles(values, (low, high))
            if band_black is not None:
                value_low = band_black
            if not value_high > value_low:
                value_high = top if top > value_low else value_low + 1.0
            minima.append(value_low)
            maxima.append(value_high)
    if algorithm == "lupton":
        stretch = _per_image_lupton_stretch(config, images, minima, high)
        return {"minimum": minima, "stretch": stretch, "Q": config.Q}
    if algorithm == "linear":
        return {"minimum": minima, "maximum": maxima}
    if algorithm == "asinh":
        return {"minimum": minima, "maximum": maxima, "softening": config.softening}
    return {"maximum": maxima, **_perceptual_parameters(config)}


def _per_image_lupton_stretch(
    config: Any, images: tuple[np.ndarray, ...], minima: list[float], percentile: float
) -> float:
    """Return the ``percentile`` percentile of the Lupton intensity
    ``mean(x_c - minimum_c)`` over pixels finite in all three bands,
    falling back to its maximum and then to the configured ``stretch``
    where that is not positive (the image is then black anyway).
    """
    with np.errstate(all="ignore"):
        finite = np.isfinite(images[0]) & np.isfinite(images[1]) & np.isfinite(images[2])
        intensity = lupton_intensity(images, tuple(minima))
        values = intensity.ravel() if finite.all() else intensity[finite]
    if values.size == 0:
        return config.stretch
    top = float(values.max())
    (stretch,) = percentiles(values, (percentile,))
    if not (math.isfinite(stretch) and stretch > 0):
        stretch = top if math.isfinite(top) and top > 0 else config.stretch
    return stretch


def lupton_intensity(images: tuple[np.ndarray, ...], minima: Sequence[float]) -> np.ndarray:
    """Return the Lupton intensity ``mean(image_c - minimum_c)``, computed
    as `lupton_rgb` computes it.

    Parameters
    ----------
    images : `tuple` [`numpy.ndarray`, ...]
        The red, green and blue channel images (see `as_channel_images`).
    minima : `~collections.abc.Sequence` [`float`]
        Black level per band.

    Returns
    -------
    intensity : `numpy.ndarray`
        ``float32`` image; non-finite inputs count as their band's
        minimum.
    """
    x = shifted_channels(images, minima)
    intensity = x[0] + x[1]
    intensity += x[2]
    intensity /= 3.0
    return intensity


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


def percentiles(values: np.ndarray, percents: Sequence[float]) -> list[float]:
    """Return percentiles of a non-empty 1-D array with numpy's default
    linear interpolation, partitioning ``values`` in place.

    One ``numpy.partition`` with all the needed ranks is about twice as fast
    as ``numpy.percentile`` on stamp-sized arrays.

    Parameters
    ----------
    values : `numpy.ndarray`
        Non-empty 1-D array; reordered in place.
    percents : `~collections.abc.Sequence` [`float`]
        Percentiles to return, in [0, 100].

    Returns
    -------
    result : `list` [`float`]
        One value per percent, what ``numpy.percentile`` returns.
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
