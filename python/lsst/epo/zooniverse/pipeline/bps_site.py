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

"""A ctrl_bps_parsl site for the local machine that starts its workers at
once.
"""

from __future__ import annotations

__all__ = ("DEFAULT_STRATEGY_PERIOD", "QuickStartLocal")

import math

import epo_zooniverse_zipfile_fix
import parsl.config

from lsst.ctrl.bps.parsl.configuration import get_bps_config_value
from lsst.ctrl.bps.parsl.sites import Local

DEFAULT_STRATEGY_PERIOD = 0.5
"""Seconds between parsl's scaling decisions at this site (parsl: 5)."""


class QuickStartLocal(Local):
    """ctrl_bps_parsl's ``Local`` site, with parsl's scaling strategy run
    every ``strategyPeriod`` seconds (default 0.5) instead of every 5.

    Notes
    -----
    parsl starts the local worker pool at the first run of its scaling
    strategy, one strategy period after the workflow starts, so with
    parsl's default every local ``bps submit`` waits about 4 s with nothing
    running.  The strategy itself is cheap: the provider's status is still
    polled at the provider's own interval.  Everything else is ``Local``:
    ``site.<computeSite>.cores`` workers on this machine.

    On Python 3.12.0-3.12.8 and 3.13.0-3.13.1 the jobs' quantum-graph
    reads need the zipfile workaround at interpreter start-up
    (`epo_zooniverse_zipfile_fix`); without it the site refuses to start
    the workflow, with a message saying how to install it.

    Set in the submit file::

        site:
          local:
            class: lsst.epo.zooniverse.pipeline.bps_site.QuickStartLocal
            cores: 2
            strategyPeriod: 0.5  # optional
    """

    def get_parsl_config(self) -> parsl.config.Config:
        """Get the parsl configuration of ``Local``, with the strategy
        period of this site.

        Returns
        -------
        config : `parsl.config.Config`
            The configuration.

        Raises
        ------
        ValueError
            Raised if ``strategyPeriod`` is not a positive number of
            seconds.
        epo_zooniverse_zipfile_fix.ZipfileBugError
            Raised if this Python has CPython's zipfile seek bug and the
            environment does not patch it at interpreter start-up: the
            jobs, new interpreters, would misread their quantum graph.
        """
        epo_zooniverse_zipfile_fix.require_active(f"bps submit with {type(self).__qualname__}")
        try:
            period = get_bps_config_value(self.site, "strategyPeriod", (int, float), DEFAULT_STRATEGY_PERIOD)
        except RuntimeError:
            period = None  # Not a number.
        if type(period) not in (int, float) or not math.isfinite(period) or period <= 0:
            raise ValueError(f"site strategyPeriod must be a positive number of seconds, not {period!r}.")
        config = super().get_parsl_config()
        config.strategy_period = period
        return config
