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

"""ctrl_bps_parsl sites that start their workers at once: this machine
(`QuickStartLocal`) and a Slurm cluster (`QuickStartSlurm`).
"""

from __future__ import annotations

__all__ = ("DEFAULT_STRATEGY_PERIOD", "QuickStartLocal", "QuickStartSlurm")

import math

import epo_zooniverse_zipfile_fix
import parsl.config
import parsl.executors.base

from lsst.ctrl.bps.parsl.configuration import get_bps_config_value
from lsst.ctrl.bps.parsl.sites import Local, Slurm

DEFAULT_STRATEGY_PERIOD = 0.5
"""Seconds between parsl's scaling decisions at these sites (parsl: 5)."""


def _quick_start(site, config: parsl.config.Config) -> parsl.config.Config:
    """Set the site's strategy period in a parsl configuration.

    Parameters
    ----------
    site : `lsst.ctrl.bps.BpsConfig`
        The ``site.<computeSite>`` section.
    config : `parsl.config.Config`
        The parsl configuration to change.

    Returns
    -------
    config : `parsl.config.Config`
        ``config``, with ``strategy_period`` set.
    """
    try:
        period = get_bps_config_value(site, "strategyPeriod", (int, float), DEFAULT_STRATEGY_PERIOD)
    except RuntimeError:
        period = None  # Not a number.
    if type(period) not in (int, float) or not math.isfinite(period) or period <= 0:
        raise ValueError(f"site strategyPeriod must be a positive number of seconds, not {period!r}.")
    config.strategy_period = period
    return config


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
        return _quick_start(self.site, super().get_parsl_config())


class QuickStartSlurm(Slurm):
    """ctrl_bps_parsl's ``Slurm`` site with parsl's scaling strategy run
    every ``strategyPeriod`` seconds (default 0.5), one worker per core of
    a node, and an optional ``address`` for the workers to call back.

    Notes
    -----
    Everything of ``Slurm`` applies (``nodes``, ``cores_per_node``,
    ``walltime``, ``mem_per_node``, ``qos``, ``account``,
    ``scheduler_options``, ...): parsl submits one Slurm job (a "block")
    of ``nodes`` nodes with ``sbatch`` and starts a worker pool on each node
    (``srun`` when ``nodes`` > 1); BPS jobs then run on those workers.
    What this site changes:

    - parsl submits the block at its first strategy run, so with parsl's
      5-s period every submission waits ~4 s before ``sbatch``;
    - a node's worker pool runs ``cores_per_node`` workers (parsl
      otherwise counts the host's cores, which over-subscribes nodes that
      are slices of a host or shared);
    - ``address`` (optional) is where the workers reach the submitting
      process; by default the address of this host's name, as ``Slurm``.

    The zipfile workaround is required as for `QuickStartLocal`.

    Set in the submit file (``config/bps/sites/slurm.yaml``)::

        computeSite: slurm
        site:
          slurm:
            class: lsst.epo.zooniverse.pipeline.bps_site.QuickStartSlurm
            nodes: 2
            cores_per_node: 32
            walltime: "04:00:00"
    """

    def get_address(self) -> str:
        """Return where the workers reach the submitting process: the
        site's ``address`` if set, else ``Slurm``'s.

        Returns
        -------
        address : `str`
            Host name or IP address.
        """
        address = get_bps_config_value(self.site, "address", str)
        return address if address else super().get_address()

    def make_executor(self, label: str, **kwargs) -> parsl.executors.base.ParslExecutor:
        """Make ``Slurm``'s executor with one worker per core of a node.

        Parameters
        ----------
        label : `str`
            Label for the executor.
        **kwargs
            Keyword arguments of ``Slurm.make_executor``.

        Returns
        -------
        executor : `parsl.executors.HighThroughputExecutor`
            Executor for Slurm jobs.
        """
        cores = get_bps_config_value(self.site, "cores_per_node", int, kwargs.get("cores_per_node"))
        if cores:
            options = dict(kwargs.pop("executor_options", None) or {})
            options.setdefault("max_workers_per_node", cores)
            kwargs["executor_options"] = options
        return super().make_executor(label, **kwargs)

    def get_parsl_config(self) -> parsl.config.Config:
        """Get the parsl configuration of ``Slurm``, with the strategy
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
            environment does not patch it at interpreter start-up.
        """
        epo_zooniverse_zipfile_fix.require_active(f"bps submit with {type(self).__qualname__}")
        return _quick_start(self.site, super().get_parsl_config())
