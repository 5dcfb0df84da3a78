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

"""Subjects and set membership of the Panoptes stand-in
(`lsst.epo.zooniverse.demo.panoptes_standin`): what its routes and import
jobs (`~lsst.epo.zooniverse.demo.panoptes_imports.SubjectStore`) read and
change, with an index by external id so that a 10,000-row import does not
scan the set for every row.
"""

from __future__ import annotations

__all__ = ["SetMembers"]

from typing import Any


class SetMembers:
    """Subjects, and which sets hold them (a mixin of
    `~lsst.epo.zooniverse.demo.panoptes_standin.PanoptesStandIn`).
    """

    def __init__(self) -> None:
        self.subjects: dict[str, dict[str, Any]] = {}
        self.members: list[tuple[str, str]] = []  # (subject_set_id, subject_id), in link order
        self.uploaded = 0
        """Subjects the account made (never goes down)."""
        self._ids = 1000
        self._index_key: tuple[int, int] | None = None
        self._by_external: dict[tuple[str, str | None], list[str]] = {}
        self._member_set: set[tuple[str, str]] = set()

    def set_subjects(self, subject_set_id: str | int) -> list[dict[str, Any]]:
        """Return the subjects of a set, in link order."""
        return [self.subjects[s] for k, s in self.members if k == str(subject_set_id)]

    def external_ids(self, subject_set_id: str | int) -> list[str]:
        """External ids of a set's subjects (``external_id``, else the
        ``#external_id`` metadata), duplicates kept.
        """
        return [
            s.get("external_id") or s["metadata"].get("#external_id")
            for s in self.set_subjects(subject_set_id)
        ]

    def _index(self) -> dict[tuple[str, str | None], list[str]]:
        """Members by (set, external id), rebuilt if `members` was changed
        from outside (tests edit it).
        """
        if self._index_key != (id(self.members), len(self.members)):
            self._by_external = {}
            for set_id, subject_id in self.members:
                key = (set_id, self.subjects[subject_id].get("external_id"))
                self._by_external.setdefault(key, []).append(subject_id)
            self._member_set = set(self.members)
            self._index_key = (id(self.members), len(self.members))
        return self._by_external

    def find_in_set(self, set_id: str, external_id: str | None) -> str | None:
        """Return the first subject of a set with this external id."""
        return next(iter(self._index().get((set_id, external_id), [])), None)

    def is_member(self, set_id: str, subject_id: str) -> bool:
        """Say whether a subject is in a set."""
        self._index()
        return (set_id, subject_id) in self._member_set

    def link(self, subject_set_id: str, subject_id: str) -> None:
        """Add a subject to a set (once)."""
        index = self._index()
        if (subject_set_id, subject_id) not in self._member_set:
            self.members.append((subject_set_id, subject_id))
            self._member_set.add((subject_set_id, subject_id))
            key = (subject_set_id, self.subjects[subject_id].get("external_id"))
            index.setdefault(key, []).append(subject_id)
            self._index_key = (id(self.members), len(self.members))
            self.subjects[subject_id]["links"]["subject_sets"].append(subject_set_id)

    def unlink(self, subject_set_id: str, subject_id: str) -> None:
        """Take a subject out of a set (the subject remains)."""
        self._index()
        if (subject_set_id, subject_id) in self._member_set:
            self.members.remove((subject_set_id, subject_id))
            self._member_set.discard((subject_set_id, subject_id))
            key = (subject_set_id, self.subjects[subject_id].get("external_id"))
            self._by_external[key].remove(subject_id)
            self._index_key = (id(self.members), len(self.members))
            self.subjects[subject_id]["links"]["subject_sets"].remove(subject_set_id)

    def new_subject(self, project, locations, metadata, external_id=None) -> dict[str, Any]:
        """Make a subject, counted against the account's uploads."""
        self._ids += 1
        subject = {
            "id": str(self._ids),
            "external_id": external_id,
            "locations": locations,
            "metadata": metadata,
            "links": {"project": project, "collections": [], "subject_sets": []},
        }
        self.subjects[subject["id"]] = subject
        self.uploaded += 1
        return subject
