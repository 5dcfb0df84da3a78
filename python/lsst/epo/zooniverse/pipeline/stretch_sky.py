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
    "robust_sky",
    "sample_stride",
    "sky_black_levels",
    "uses_sky_black",
]

import bisect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MAX_SKY_SAMPLES = 2_000_000
"""Most pixels of one channel the sky is measured on; more are sampled
with a regular stride (see `sample_stride`)."""

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
    flat = np.asarray(values, dtype=np.float64).ravel()
    usable = np.isfinite(flat) & (flat != 0.0)
    flat = flat[usable]
    if flat.size < MIN_SKY_PIXELS:
        return None
    # One sort, then every median and clip is a search in it (the same
    # numbers as np.median and boolean selection on the unsorted values,
    # see `_SortedSample`). float32 input sorts in float32: the order is
    # the same and the sort faster.
    if values.dtype == np.float32:
        ordered = np.sort(values.ravel()[usable]).astype(np.float64)
    else:
        ordered = np.sort(flat)
    sample = _SortedSample(ordered)
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
    if sample.size == flat.size:
        mean = float(np.mean(flat))
    else:
        low, high = ordered[sample.start], ordered[sample.stop - 1]
        mean = float(np.mean(flat[(flat >= low) & (flat <= high)]))
    noise = MAD_TO_SIGMA * sample.median_deviation(median)
    if not noise > 0:
        return None
    level = median if abs(mean - median) > 0.3 * noise else 2.5 * median - 1.5 * mean
    return level, noise


class _SortedSample:
    """A range ``[start, stop)`` of sorted float64 values, with the
    medians `robust_sky` takes, found by search.

    The results are those of ``np.median`` on the values in any order: the
    middle value, or the float64 mean ``(a + b) / 2`` of the two middle
    ones. The absolute deviations ``|x - m|`` (float64 subtraction, whose
    rounding is monotonic) of the values below ``m``, read downwards, and
    of the others, read upwards, are two sorted sequences; their median is
    found by a binary search over both, and the values within a distance
    of ``m`` are a range found by bisection.

    Parameters
    ----------
    ordered : `numpy.ndarray`
        Sorted float64 values.
    """

    def __init__(self, ordered: np.ndarray) -> None:
        self.ordered = ordered
        self.start = 0
        self.stop = len(ordered)

    @property
    def size(self) -> int:
        return self.stop - self.start

    def _middle(self, kth: Callable[[int], float]) -> float:
        n = self.size
        if n % 2:
            return kth(n // 2)
        return (kth(n // 2 - 1) + kth(n // 2)) / 2

    def median(self) -> float:
        """Return the median of the range."""
        return self._middle(lambda k: float(self.ordered[self.start + k]))

    def median_deviation(self, center: float) -> float:
        """Return the median of ``|x - center|`` over the range."""
        ordered, start, stop = self.ordered, self.start, self.stop
        split = start + int(np.searchsorted(ordered[start:stop], center, side="left"))
        n_below, n_above = split - start, stop - split

        def below(i: int) -> float:  # i-th smallest deviation below center
            return center - float(ordered[split - 1 - i])

        def above(j: int) -> float:
            return float(ordered[split + j]) - center

        def kth(k: int) -> float:
            # Take i deviations from below and k + 1 - i from above.
            low, high = max(0, k + 1 - n_above), min(k + 1, n_below)
            while low < high:
                i = (low + high) // 2
                if below(i) < above(k - i):
                    low = i + 1
                else:
                    high = i
            j = k + 1 - low
            return max(below(low - 1) if low > 0 else -math.inf, above(j - 1) if j > 0 else -math.inf)

        return self._middle(kth)

    def within(self, center: float, limit: float) -> tuple[int, int]:
        """Return the range of values with ``|x - center| < limit``."""
        ordered = self.ordered

        def too_low(j: int) -> bool:
            x = float(ordered[j])
            return x < center and not abs(x - center) < limit

        def too_high(j: int) -> bool:
            x = float(ordered[j])
            return x > center and not abs(x - center) < limit

        # Too low, kept, too high: two bisections.
        keep = bisect.bisect_left(range(self.start, self.stop), True, key=lambda j: not too_low(j))
        keep += self.start
        end = keep + bisect.bisect_left(range(keep, self.stop), True, key=too_high)
        return keep, end


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
