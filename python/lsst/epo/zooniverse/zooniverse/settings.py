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

"""Settings of one subject-set run: `SyncSettings`."""

from __future__ import annotations

__all__ = ["SyncSettings"]

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class SyncSettings:
    """How a `SubjectSetSync` writes manifests, pages and waits (see
    `~lsst.epo.zooniverse.zooniverse.subject_sets.SubjectSetPublisher`).
    """

    part_rows: int
    """Most rows per manifest part."""
    link_batch_size: int
    """Subjects per link request when relinking."""
    page_size: int
    """Subjects per page when listing a set."""
    poll_interval: float
    """Seconds between polls of an import."""
    import_stall_seconds: float
    """An import whose counts do not change for this long is dead."""
    import_timeout: float
    """Give up waiting for an import after this many seconds."""
    sleep: Callable[[float], None]
    """How to wait."""
    lost_answer_grace: float = 120.0
    """After a lost answer to an import POST, look this long for the
    import the server made (a gateway gives up after about 60 s, the
    server may still be counting the manifest)."""
