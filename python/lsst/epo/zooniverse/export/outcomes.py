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
"""What the export service's operations report to their callers."""

from __future__ import annotations

__all__ = ["ExportServiceError", "PollSummary", "PublishSummary"]

import dataclasses


class ExportServiceError(RuntimeError):
    """A request the service refuses (bad input, wrong state, ownership)."""


@dataclasses.dataclass
class PollSummary:
    """What one poll did."""

    discovered: int = 0
    """New datasets found."""
    quarantined: int = 0
    """Datasets validated and waiting for approval."""
    rejected: int = 0
    """Datasets rejected (validation, policy, vanished)."""
    images_quarantined: int = 0
    """Images waiting for approval."""
    images_rejected: int = 0
    """Images refused by validation."""
    refused: list[str] = dataclasses.field(default_factory=list)
    """Collections or datasets refused by the ownership rules."""
    skipped: int = 0
    """Datasets another worker is processing."""
    errors: list[str] = dataclasses.field(default_factory=list)
    """Unexpected failures (the dataset or project is retried next time)."""


@dataclasses.dataclass
class PublishSummary:
    """What one publication run did."""

    published: int = 0
    """Images newly published."""
    already_present: int = 0
    """Images whose public copy a crashed run had written (recorded now)."""
    rejected: int = 0
    """Images refused at publication (staging copy changed)."""
    batches: int = 0
    """Batches finished."""
    urls: list[str] = dataclasses.field(default_factory=list)
    """Public URLs of the images published by this run."""
    errors: list[str] = dataclasses.field(default_factory=list)
    """Unexpected failures (the batch is retried next time)."""
    superseded: int = 0
    """Approved images not published: a better picture of the same object
    is (or already was)."""
    replaced: int = 0
    """Public pictures replaced by a newer approved picture of the same
    object (a rerun with a new stretch)."""
