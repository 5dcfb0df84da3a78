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

"""What one subject-set run did: `SubjectSetSummary`."""

from __future__ import annotations

__all__ = ["SubjectSetSummary"]

import dataclasses
from typing import Any


@dataclasses.dataclass
class SubjectSetSummary:
    """What one subject-set run did (or, with ``dry_run``, would do)."""

    project: str
    """EPO project name."""
    zooniverse_project: int
    """Zooniverse project id."""
    subject_set_name: str
    """Display name of the subject set."""
    method: str
    """``import`` or ``subjects``."""
    dry_run: bool = False
    """Nothing was sent."""
    endpoint: str | None = None
    """Zooniverse API endpoint (`None` in a dry run without credentials)."""
    subject_set_id: int | None = None
    """Zooniverse id of the set (`None` in a dry run for a new set)."""
    subject_set_created: bool = False
    """The set was created by this run."""
    total: int = 0
    """Subjects the set should hold (one per published catalog object)."""
    pending: int = 0
    """Subjects this run had to send (would send, in a dry run)."""
    created: int = 0
    """Subjects this run created (or imported)."""
    already_present: int = 0
    """Subjects already in the set (by external id)."""
    linked: int = 0
    """Subjects created earlier (recorded) but missing from the set, linked
    to it again (``subjects`` method)."""
    failed: int = 0
    """Subjects that did not arrive (e.g. counted in an import's
    ``failed_count``)."""
    failed_external_ids: list[str] = dataclasses.field(default_factory=list)
    """External ids of the subjects that did not arrive (first 100)."""
    duplicates: list[str] = dataclasses.field(default_factory=list)
    """External ids the set held more than once (two imports that ran at
    the same time, a create retried after a lost answer, or made outside
    this service); all but one subject of each were unlinked."""
    unlinked: int = 0
    """Extra copies of subjects unlinked from the set (not deleted)."""
    manifests: list[str] = dataclasses.field(default_factory=list)
    """Manifest parts written: public URLs (``import``) or local paths
    (dry run and ``subjects``)."""
    imports: list[int] = dataclasses.field(default_factory=list)
    """Ids of the subject_set_imports created."""

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready `dict`."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        where = f"subject set {self.subject_set_name!r}" + (
            f" ({self.subject_set_id})" if self.subject_set_id is not None else ""
        )
        if self.dry_run:
            return (
                f"Dry run ({self.method}): would send {self.pending} of {self.total} subjects to {where} "
                f"of Zooniverse project {self.zooniverse_project}."
            )
        text = (
            f"{where} of Zooniverse project {self.zooniverse_project} ({self.method}): "
            f"{self.total} subjects, {self.created} sent now, {self.already_present} already there"
        )
        if self.linked:
            text += f", {self.linked} linked again"
        if self.failed:
            text += f", {self.failed} failed"
        if self.duplicates:
            text += f", {len(self.duplicates)} held twice ({self.unlinked} extra copies unlinked)"
        return text[0].upper() + text[1:] + "."
