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

"""`RankedValues`: the order statistics the sky measurement needs
(medians, the median absolute deviation, a sigma-clipped range) of up to
millions of values, exactly as if they were sorted, without sorting them
all.
"""

from __future__ import annotations

__all__ = ["RankedValues"]

import math
from collections.abc import Callable

import numpy as np

FULL_SORT_SIZE = 65_536
"""Up to this many values are simply sorted once."""

GUIDE_SIZE = 16_384
"""About this many regularly spaced values, sorted, guide where the sorted
windows of larger sets are cut."""

WINDOW_HALF_WIDTH = 128
"""Half the width of a sorted window, in guide values (each stands for
about ``size / GUIDE_SIZE`` values); doubled until the window holds the
rank asked for."""


class RankedValues:
    """A range ``[start, stop)`` of the sorted order of finite values, with
    the medians and clipping `robust_sky` takes.

    Parameters
    ----------
    values : `numpy.ndarray`
        1-D finite ``float32`` or ``float64`` values, in any order (not
        changed, not copied).

    Notes
    -----
    The value of rank ``r`` (``at``) is read from a sorted window: the
    values between two values of a sorted regular sample (the guide) that
    bracket ``r``, selected by one comparison pass, and placed by counting
    the values below the window. The number of values below a threshold is
    one counting pass. So every result is that of the fully sorted values:
    ``median`` is the middle value, or the float64 mean ``(a + b) / 2`` of
    the two middle ones (as ``np.median``); ``median_deviation`` is the
    median of the float64 deviations ``|x - m|`` (whose rounding is
    monotonic: the deviations below ``m``, read downwards, and above it,
    read upwards, are two sorted sequences, searched from an estimate made
    on the guide); ``within`` counts the values too far below and the
    values not too far above (float64 comparisons: a float32 value is
    compared exactly).
    """

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.start = 0
        self.stop = len(values)
        self._windows: list[tuple[int, np.ndarray]] = []
        self._guide = None
        if len(values) <= FULL_SORT_SIZE:
            self._windows.append((0, np.sort(values)))
        else:
            self._guide = np.sort(values[:: max(1, len(values) // GUIDE_SIZE)])

    @property
    def size(self) -> int:
        """Number of values in the range (`int`)."""
        return self.stop - self.start

    def at(self, rank: int) -> float:
        """Return the value of a rank in the sorted order of all the
        values (as float64).

        Parameters
        ----------
        rank : `int`
            0-based rank.

        Returns
        -------
        value : `float`
            The value.
        """
        for first, window in self._windows:
            if first <= rank < first + len(window):
                return float(window[rank - first])
        return self._new_window(rank)

    def _new_window(self, rank: int) -> float:
        """Sort the values around a rank, keep them, and return the value
        of that rank.
        """
        values, guide = self.values, self._guide
        position = rank * len(guide) // len(values)
        half = WINDOW_HALF_WIDTH
        while True:
            low = position - half
            high = position + half
            if low < 0 and high >= len(guide):  # The window is everything.
                first, selected = 0, values
            else:
                selected = np.ones(len(values), dtype=bool)
                first = 0
                if low >= 0:
                    np.greater_equal(values, guide[low], out=selected)
                    first = len(values) - int(np.count_nonzero(selected))
                if high < len(guide):
                    selected &= values <= guide[high]
                selected = values[selected]
            if first <= rank < first + len(selected):
                window = np.sort(selected)
                self._windows.append((first, window))
                return float(window[rank - first])
            half *= 2

    def count_below(self, threshold: float) -> int:
        """Return how many values are below ``threshold`` (compared in
        float64).

        Parameters
        ----------
        threshold : `float`
            The threshold.

        Returns
        -------
        count : `int`
            The number of values ``< threshold``.
        """
        return int(np.count_nonzero(self.values < self._bound(threshold, up=True)))

    def _bound(self, threshold: float, up: bool) -> np.floating:
        """Return ``threshold`` in the values' dtype, rounded up or down:
        a value compares with it as it does with ``threshold`` in float64
        (``<`` for a bound rounded up, ``<=`` for one rounded down).
        """
        bound = self.values.dtype.type(threshold)
        if up and bound < threshold:
            bound = np.nextafter(bound, bound.dtype.type(math.inf))
        elif not up and bound > threshold:
            bound = np.nextafter(bound, bound.dtype.type(-math.inf))
        return bound

    def _count_where(self, condition: Callable[[np.ndarray], np.ndarray], edge: float, margin: float) -> int:
        """Return how many values satisfy a condition that holds for
        every value up to ``edge - margin`` and for none above
        ``edge + margin``; it is evaluated in float64 in between.
        """
        low, high = self._bound(edge - margin, up=False), self._bound(edge + margin, up=False)
        values = self.values
        below = int(np.count_nonzero(values <= low))
        if int(np.count_nonzero(values <= high)) == below:  # No value in between (the usual case).
            return below
        near = values[(values > low) & (values <= high)].astype(np.float64)
        return below + int(np.count_nonzero(condition(near)))

    def _clamp(self, count: int, start: int, stop: int) -> int:
        return min(max(count, start), stop)

    def _middle(self, kth: Callable[[int], float]) -> float:
        n = self.size
        if n % 2:
            return kth(n // 2)
        return (kth(n // 2 - 1) + kth(n // 2)) / 2

    def median(self) -> float:
        """Return the median of the range (`float`)."""
        return self._middle(lambda k: self.at(self.start + k))

    def median_deviation(self, center: float) -> float:
        """Return the median of ``|x - center|`` over the range.

        Parameters
        ----------
        center : `float`
            The centre.

        Returns
        -------
        deviation : `float`
            The median absolute deviation from ``center``.
        """
        start, stop = self.start, self.stop
        split = self._clamp(self.count_below(center), start, stop)
        n_below, n_above = split - start, stop - split
        at = self.at

        def below(i: int) -> float:  # i-th smallest deviation below center
            return center - at(split - 1 - i)

        def above(j: int) -> float:
            return at(split + j) - center

        def kth(k: int) -> float:
            # Take i deviations from below and k + 1 - i from above: the
            # first i with below(i) >= above(k - i) (the test is monotonic
            # in i), searched from an estimate outwards, then by bisection.
            low, high = max(0, k + 1 - n_above), min(k + 1, n_below)
            guess = min(max(self._guess_below(center, k, split), low), high)
            if guess < high and below(guess) < above(k - guess):
                low, step = guess + 1, 1
                while low + step < high and below(low + step) < above(k - low - step):
                    low, step = low + step + 1, 2 * step
                high = min(high, low + step)
            else:
                high, step = guess, 1
                while high - step >= low and not below(high - step) < above(k - high + step):
                    high, step = high - step, 2 * step
                low = max(low, high - step + 1)
            while low < high:
                i = (low + high) // 2
                if below(i) < above(k - i):
                    low = i + 1
                else:
                    high = i
            j = k + 1 - low
            return max(below(low - 1) if low > 0 else -math.inf, above(j - 1) if j > 0 else -math.inf)

        return self._middle(kth)

    def _guess_below(self, center: float, k: int, split: int) -> int:
        """Estimate, on the guide, how many of the ``k + 1`` smallest
        deviations from ``center`` are below it.
        """
        guide = self._guide
        if guide is None:
            return (k + 1) // 2
        # The guide values of about the same ranks as the range.
        scale = len(guide) / len(self.values)
        kept = guide[int(self.start * scale) : math.ceil(self.stop * scale)].astype(np.float64)
        if len(kept) == 0:
            return (k + 1) // 2
        deviations = np.abs(kept - center)
        rank = min(len(kept) - 1, (k + 1) * len(kept) // self.size)
        limit = np.partition(deviations, rank)[rank]
        fraction = np.count_nonzero((kept < center) & (deviations <= limit)) / len(kept)
        return int(fraction * self.size)

    def within(self, center: float, limit: float) -> tuple[int, int]:
        """Return the range of values with ``|x - center| < limit``
        (``limit > 0``) within the current range.

        Parameters
        ----------
        center, limit : `float`
            The centre and the distance.

        Returns
        -------
        start, stop : `int`
            The sub-range.
        """
        # The values too low are those up to some value near
        # center - limit, the values too high those from some value near
        # center + limit: counted, with the exact float64 test near the edge.
        margin = 2.0**-20 * (abs(center) + abs(limit))

        def too_low(x: np.ndarray) -> np.ndarray:
            return (x < center) & ~(np.abs(x - center) < limit)

        def not_too_high(x: np.ndarray) -> np.ndarray:
            return ~((x > center) & ~(np.abs(x - center) < limit))

        keep = self._clamp(self._count_where(too_low, center - limit, margin), self.start, self.stop)
        end = self._clamp(self._count_where(not_too_high, center + limit, margin), keep, self.stop)
        return keep, end
