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

"""Per-user rate limits: a token bucket per user (or per client address
before authentication), in the process's memory.
"""

from __future__ import annotations

__all__ = ["RateLimiter"]

import math
import threading
import time


class RateLimiter:
    """Allows each key ``per_minute`` requests a minute, in bursts of up to
    ``per_minute``.

    Parameters
    ----------
    per_minute : `int`
        Requests per minute per key.
    max_keys : `int`, optional
        Buckets kept; the fullest (idle) ones are forgotten beyond it.

    Notes
    -----
    Each replica of the application counts for itself: with N replicas a
    user gets up to N times the limit.
    """

    def __init__(self, per_minute: int, *, max_keys: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one request of a key's allowance.

        Parameters
        ----------
        key : `str`
            ``user:<name>`` or ``ip:<address>``.
        now : `float`, optional
            Monotonic time (tests).

        Returns
        -------
        retry_after : `float`
            0 if the request is allowed, else seconds until it would be.
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                allowed = 0.0
            else:
                self._buckets[key] = (tokens, now)
                allowed = (1.0 - tokens) / self.rate
            if len(self._buckets) > self.max_keys:
                self._forget(now)
        return allowed

    def _forget(self, now: float) -> None:
        full = [k for k, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.capacity]
        for key in full:
            del self._buckets[key]

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        """Return a ``Retry-After`` value (whole seconds, at least 1).

        Parameters
        ----------
        seconds : `float`
            The wait.

        Returns
        -------
        value : `str`
            The header value.
        """
        return str(max(1, math.ceil(seconds)))
