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

"""The objects a ``pipetask`` process makes before its first quantum,
kept out of the garbage collector's later passes.

By its first quantum a ``pipetask run`` or ``run-qbb`` process holds about
240,000 objects the collector tracks: the middleware, astropy, scipy and
SQLAlchemy modules, the Butler, the quantum graph.  They live as long as
the process, yet each full collection walks them all again (0.14 s a
collection here, four of them in 16 patches of the fused pipeline).
`freeze_startup_objects` moves them, once per process, to the collector's
permanent generation (`gc.freeze`, Python's documented way of exempting
long-lived objects); what the quanta make afterwards is collected as
usual.  The middleware sets process-wide state the same way before
running quanta (``lsst.utils.threads.disable_implicit_threading``).

What it costs: a reference cycle that was already garbage at the first
quantum, or that a start-up object joins later, is not collected until
the process ends.  In a batch job that ends after its quanta this is
nothing; a long-lived process that runs quanta (a notebook, a test
session) can call `gc.unfreeze` to collect them again.
"""

from __future__ import annotations

__all__ = ["freeze_startup_objects"]

import gc


class _FreezeState:
    """Whether this process has frozen its start-up objects."""

    done = False


def freeze_startup_objects() -> bool:
    """Move every object the collector tracks now to its permanent
    generation, the first time this is called in a process.

    Returns
    -------
    frozen : `bool`
        Whether this call froze them (`False` after the first call, and
        in a child process forked after it).
    """
    if _FreezeState.done:
        return False
    _FreezeState.done = True
    gc.freeze()
    return True
