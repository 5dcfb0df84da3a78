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

"""Named fault points, for testing crash and resume.

The service calls `fault_point` at each step where a crash would leave
work half done (after a copy, before a state record, ...).  Normally that
does nothing.  With the environment variable ``ZOONIVERSE_EPO_FAULT`` set
to ``<point>`` or ``<point>:<action>[:<n>]`` the process acts at the
``n``-th time (default first) it reaches that point:

``kill``
    ``SIGKILL`` itself, as ``kill -9`` would (the default);
``raise``
    raise `InjectedFaultError` (an ordinary error the service must survive).

Every point the service has is listed in `FAULT_POINTS`; naming another is
an error, so tests cannot silently inject nothing.
"""

from __future__ import annotations

__all__ = ["FAULT_ENVIRONMENT_VARIABLE", "FAULT_POINTS", "InjectedFaultError", "fault_point"]

import os
import signal
import threading

FAULT_ENVIRONMENT_VARIABLE = "ZOONIVERSE_EPO_FAULT"

FAULT_POINTS = (
    "poll.discovered",
    "retrieve.claimed",
    "retrieve.copied",
    "retrieve.recorded",
    "validate.files_written",
    "validate.recorded",
    "publish.claimed",
    "publish.marked",
    "publish.written",
    "publish.recorded",
)
"""Where faults can be injected, in the order the service reaches them."""


class InjectedFaultError(RuntimeError):
    """The error raised at a fault point set to ``raise``."""


_counts: dict[str, int] = {}
_lock = threading.Lock()


def _parse(value: str) -> tuple[str, str, int]:
    parts = value.split(":")
    point = parts[0]
    action = parts[1] if len(parts) > 1 and parts[1] else "kill"
    try:
        nth = int(parts[2]) if len(parts) > 2 else 1
    except ValueError:
        raise ValueError(f"{FAULT_ENVIRONMENT_VARIABLE}={value!r}: the count must be an integer.") from None
    if point not in FAULT_POINTS:
        raise ValueError(
            f"{FAULT_ENVIRONMENT_VARIABLE}={value!r}: unknown fault point; known: {FAULT_POINTS}."
        )
    if action not in ("kill", "raise"):
        raise ValueError(f"{FAULT_ENVIRONMENT_VARIABLE}={value!r}: the action must be 'kill' or 'raise'.")
    return point, action, nth


def fault_point(name: str) -> None:
    """Mark a point where a crash can be injected.

    Parameters
    ----------
    name : `str`
        One of `FAULT_POINTS`.

    Raises
    ------
    InjectedFaultError
        Raised if the environment asks for a ``raise`` fault here.
    """
    if name not in FAULT_POINTS:
        raise ValueError(f"Unknown fault point {name!r}.")
    value = os.environ.get(FAULT_ENVIRONMENT_VARIABLE)
    if not value:
        return
    point, action, nth = _parse(value)
    if point != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        reached = _counts[name]
    if reached != nth:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFaultError(f"Injected fault at {name} (occurrence {nth}).")
