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

"""Answers of the JSON API (pydantic models): they document the answers in
the OpenAPI schema.  Fields the service adds later pass through
(``extra="allow"``), so the service can grow without breaking the API.
"""

from __future__ import annotations

__all__ = [
    "BatchPage",
    "BatchSummary",
    "CatalogReport",
    "ClassificationTable",
    "DecisionResults",
    "ImagePage",
    "ManifestList",
    "Marked",
    "NotificationList",
    "Project",
    "ProjectList",
    "PublishResult",
    "SubjectPage",
    "SubjectSetList",
    "Withdrawal",
    "WithdrawalList",
]

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Page(_Answer):
    total: int = Field(description="Items matching the request.")
    offset: int
    limit: int


class Project(_Answer):
    """A registered project with its counts by state."""

    name: str
    owner: str
    zooniverse_project_id: int
    repo: str
    collections: str
    dataset_types: list[str]
    contact: str | None = None
    metadata_policy: str
    registered_at: str
    registered_by: str
    datasets: dict[str, int] = Field(default_factory=dict, description="Batches by state.")
    images: dict[str, int] = Field(default_factory=dict, description="Pictures by state.")


class ProjectList(_Answer):
    """The caller's projects."""

    projects: list[Project]


class BatchSummary(_Answer):
    """A batch (one Butler dataset) of a project."""

    batch: str
    project: str
    owner: str
    state: str
    reason: str | None = None
    dataset_type: str
    data_id: dict[str, Any]
    discovered_at: str
    updated_at: str
    images: dict[str, int] = Field(description="Pictures by state.")
    stretch: dict[str, str] = Field(description="The stretch and bands of its pictures' index rows.")
    already_public: int = Field(description="Pictures of objects another batch has already published.")
    already_public_sample: list[str] = Field(description="Up to 10 of those objects.")


class BatchPage(_Page):
    """A page of batches."""

    batches: list[BatchSummary]


class ImageRow(_Answer):
    """A picture, or a rejected dataset without pictures."""

    batch: str
    dataset_type: str
    data_id: str
    entry: str
    object_id: str
    state: str
    reason: str
    url: str


class ImagePage(_Page):
    """A page of pictures."""

    images: list[ImageRow]


class Subject(_Answer):
    """A published subject."""

    batch: str
    entry: str
    object_id: str
    url: str
    frames: list[str]


class SubjectPage(_Page):
    """A page of published subjects."""

    subjects: list[Subject]


class CatalogReport(_Answer):
    """One row per catalog row."""

    rows: list[dict[str, Any]]


class ManifestList(_Answer):
    """Public URLs of the import manifests."""

    manifests: list[str]


class Withdrawal(_Answer):
    """A withdrawal request."""

    id: int
    username: str
    project: str
    batch: str | None = None
    entry: str | None = None
    reason: str
    state: str
    created_at: str
    resolved_by: str | None = None
    resolved_at: str | None = None
    note: str | None = None


class WithdrawalList(_Answer):
    """Withdrawal requests."""

    withdrawals: list[Withdrawal]


class Notification(_Answer):
    """A digest in the inbox."""

    id: int
    created_at: str
    summary: str
    items: list[dict[str, Any]] = Field(
        description="The events: event, project, batch, what, summary, details."
    )
    read: bool


class NotificationList(_Answer):
    """Digests, newest first."""

    notifications: list[Notification]


class Marked(_Answer):
    """How many messages became read."""

    marked: int


class DecisionResult(_Answer):
    """The decision on one batch."""

    batch: str
    ok: bool
    images: int
    error: str | None = None


class DecisionResults(_Answer):
    """The decisions of a bulk request."""

    results: list[DecisionResult]


class PublishResult(_Answer):
    """What a publication run did."""

    published: int
    already_present: int
    rejected: int
    batches: int
    superseded: int = 0
    urls: list[str]
    errors: list[str]


class ClassificationColumn(_Answer):
    """A column of the classification table."""

    name: str
    dtype: str = Field(description="numpy dtype string, e.g. <f8, <i8, <U12, |b1.")
    unit: str | None = None
    description: str | None = None


class ClassificationTable(_Answer):
    """Volunteers' answers per subject, task and answer
    (doc/classifications.md).
    """

    columns: list[ClassificationColumn]
    rows: list[dict[str, Any]] = Field(description="One object per row; masked values are null.")
    summary: dict[str, Any] = Field(description="What reading the export found (counts, problems).")


class SubjectSet(_Answer):
    """A Zooniverse subject set EPO filled for the project."""

    subject_set_id: int | str
    name: str
    zooniverse_project_id: int | str
    subjects: int = Field(description="Subjects EPO recorded as sent to the set.")
    last_sent_at: str | None = None


class SubjectSetList(_Answer):
    """The project's subject sets, as EPO recorded them."""

    subject_sets: list[SubjectSet]
