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

"""The sky black point (``StretchConfig.black_point="sky"``): a robust
sky level and noise measured on each colour channel, and the black level
``sky - sky_sigma_below * noise`` that follows them (``noise`` the
largest of the three, so that the sky is a neutral grey).
"""

from __future__ import annotations

__all__ = [
    "MAX_SKY_SAMPLES",
    "RankedValues",
    "robust_sky",
    "sample_stride",
    "sky_black_levels",
    "uses_sky_black",
]

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .ranked_values import RankedValues

MAX_SKY_SAMPLES = 250_000
"""Most pixels of one channel the sky is measured on; more are sampled
with a regular stride (see `sample_stride`).  A median of this many values
has a standard error of about 0.003 of the noise (independent Gaussian
pixels); on the benchmark's patches of 800 stamps the pictures differ from
those measured on 2 million pixels by at most 1 in a channel value, in 5 %
of the values, for an eighth of the cost (bench/RESULTS.md)."""

MIN_SKY_PIXELS = 16
"""Fewest usable pixels for a sky measurement."""

CLIP_SIGMA = 3.0
"""Sigma-clipping threshold of `robust_sky`."""

CLIP_ITERATIONS = 5
"""Most sigma-clipping iterations of `robust_sky`."""

MAD_TO_SIGMA = 1.4826
"""Standard deviation over median absolute deviation for Gaussian noise."""


def uses_sky_black(config: Any) -> bool:
    """Return whether a stretch takes its black level from the sky.

    Parameters
    ----------
    config : `StretchConfig`
        The stretch.

    Returns
    -------
    sky : `bool`
        `True` for ``black_point="sky"`` with an algorithm that has a
        black level (lupton, asinh, linear; perceptual has none).
    """
    return config.black_point == "sky" and config.algorithm != "perceptual"


def robust_sky(values: np.ndarray) -> tuple[float, float] | None:
    """Return the sky level and noise of a set of pixel values.

    Parameters
    ----------
    values : `numpy.ndarray`
        Pixel values, any shape. Non-finite values and values exactly 0
        (the pixels composeRgb blanks: bad mask planes, no data) are left
        out.

    Returns
    -------
    sky : `tuple` [`float`, `float`] or `None`
        ``(level, noise)``, or `None` with fewer than `MIN_SKY_PIXELS`
        usable pixels or no noise (half of them or more equal: a flat or
        synthetic image, whose sky cannot be told from its sources).

    Notes
    -----
    The values are sigma clipped (`CLIP_SIGMA` times the noise around the
    median, at most `CLIP_ITERATIONS` times, until nothing more is
    clipped). The noise is `MAD_TO_SIGMA` times the median absolute
    deviation of the clipped values. The level is the SExtractor mode
    estimate ``2.5 median - 1.5 mean`` of the clipped values, or their
    median where the mean and median differ by more than 0.3 noise (a
    crowded distribution the mode estimate does not describe). All sums
    are in float64 over values in a fixed order, so the result is the
    same on every run.
    """
    values = np.asarray(values)
    # float32 input is tested and searched in float32 (the same values
    # and order as in float64, with faster passes).
    flat = values.ravel() if values.dtype == np.float32 else np.asarray(values, dtype=np.float64).ravel()
    flat = flat[np.isfinite(flat) & (flat != 0.0)]
    if flat.size < MIN_SKY_PIXELS:
        return None
    # Every median and clip is an order statistic or a count of the usable
    # values, found without sorting them all (see `RankedValues`); the
    # numbers are those of np.median and boolean selection.
    sample = RankedValues(flat)
    for _ in range(CLIP_ITERATIONS):
        median = sample.median()
        noise = MAD_TO_SIGMA * sample.median_deviation(median)
        if not noise > 0:
            return None
        start, stop = sample.within(median, CLIP_SIGMA * noise)
        if stop - start == sample.size or stop - start < MIN_SKY_PIXELS:
            break
        sample.start, sample.stop = start, stop
    median = sample.median()
    # The mean sums the kept values in their original order, as the
    # unsorted computation does (the kept values are a range of the sorted
    # ones, so a value test selects them).
    kept = flat
    if sample.size != flat.size:
        low, high = (flat.dtype.type(sample.at(k)) for k in (sample.start, sample.stop - 1))
        kept = flat[(flat >= low) & (flat <= high)]
    mean = float(np.mean(kept.astype(np.float64)))
    noise = MAD_TO_SIGMA * sample.median_deviation(median)
    if not noise > 0:
        return None
    level = median if abs(mean - median) > 0.3 * noise else 2.5 * median - 1.5 * mean
    return level, noise


def sample_stride(n_pixels: int, width: int, limit: int = MAX_SKY_SAMPLES) -> int:
    """Return the stride that keeps at most about ``limit`` of
    ``n_pixels`` pixels.

    Parameters
    ----------
    n_pixels : `int`
        Pixels to sample from.
    width : `int`
        Row length of the images the pixels come from; the stride is made
        prime to it so that the samples do not fall on the same columns
        of every row.
    limit : `int`, optional
        Most samples.

    Returns
    -------
    stride : `int`
        1 (every pixel) or more.
    """
    stride = max(1, math.ceil(n_pixels / limit))
    while stride > 1 and math.gcd(stride, max(1, width)) != 1:
        stride += 1
    return stride


def sky_black_levels(config: Any, channels: Sequence[Any]) -> list[float | None]:
    """Return the black level of each colour channel:
    ``sky - config.sky_sigma_below * noise``.

    Parameters
    ----------
    config : `StretchConfig`
        The stretch (its ``sky_sigma_below``).
    channels : `~collections.abc.Sequence` [`numpy.ndarray`]
        The red, green and blue pixels to measure the sky on (images, or
        1-D samples of several images).

    Returns
    -------
    black : `list` [`float` or `None`]
        One level per channel; `None` for a channel `robust_sky` cannot
        measure (too few usable pixels, or no noise), which keeps its
        configured level.

    Notes
    -----
    ``noise`` is the largest noise of the measured channels, the same for
    all three: the sky then sits at the same level above black in every
    channel and is a neutral dark grey (with each channel's own noise, a
    channel with more noise would tint the sky), and no channel blackens
    more than the Gaussian fraction ``Phi(-sky_sigma_below)`` of its sky
    pixels.
    """
    skies = [robust_sky(channel) for channel in channels]
    noises = [sky[1] for sky in skies if sky is not None]
    if not noises:
        return [None for _ in skies]
    offset = config.sky_sigma_below * max(noises)
    return [None if sky is None else sky[0] - offset for sky in skies]
