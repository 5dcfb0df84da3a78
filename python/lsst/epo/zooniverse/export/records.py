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
"""Typed records of the state database.

The service's collaborators read projects, datasets, images and band
frames as these frozen dataclasses (from `.repository.StateRepository`),
never as untyped rows; the service's public methods turn them into
dictionaries where its callers expect those.  The states and the rule that
derives a batch's state from its images' states are here too.
"""

from __future__ import annotations

__all__ = [
    "DatasetRecord",
    "FrameRecord",
    "ImageRecord",
    "PictureCandidate",
    "ProjectRecord",
    "RowRecord",
    "batch_state",
]

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Self


def _from_row[T](cls: type[T], row: Mapping[str, Any], **overrides: Any) -> T:
    values = {field.name: row[field.name] for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values.update(overrides)
    return cls(**values)


class RowRecord:
    """Base of the records that are one row of a state-database table,
    column for field.
    """

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """Make a record from a database row.

        Parameters
        ----------
        row : `~collections.abc.Mapping`
            The row (extra keys are ignored).

        Returns
        -------
        record : `RowRecord`
            The record.
        """
        return _from_row(cls, row)


@dataclasses.dataclass(frozen=True)
class ProjectRecord(RowRecord):
    """A registered PI project (a row of ``projects``)."""

    id: int
    name: str
    zooniverse_project_id: int
    owner: str
    contact: str | None
    repo: str
    collections: str
    dataset_types: tuple[str, ...]
    metadata_policy: str
    registered_at: str
    registered_by: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """Make a record from a row of ``projects`` (as `RowRecord.from_row`;
        ``dataset_types`` is JSON text there).
        """
        return _from_row(cls, row, dataset_types=tuple(json.loads(row["dataset_types"])))

    @property
    def full_metadata(self) -> bool:
        """Whether the project keeps its images' metadata (the ``full``
        policy) rather than anonymising them.
        """
        return self.metadata_policy == "full"

    @property
    def recipients(self) -> tuple[str, ...]:
        """The contact's e-mail addresses."""
        return tuple(address for address in (self.contact or "").split(",") if address)

    def as_dict(self) -> dict[str, Any]:
        """Return the record as the service's public methods give it.

        Returns
        -------
        project : `dict`
            Its columns, ``dataset_types`` as a list.
        """
        result = dataclasses.asdict(self)
        result["dataset_types"] = list(self.dataset_types)
        return result


@dataclasses.dataclass(frozen=True)
class DatasetRecord(RowRecord):
    """A Butler dataset found by a poll, an operator's batch (a row of
    ``datasets``).
    """

    id: int
    project_id: int
    dataset_uuid: str
    dataset_type: str
    run: str
    data_id: str
    """The data ID as JSON text (keys sorted)."""
    batch: str
    state: str
    reason: str | None
    artifact: str | None
    artifact_sha256: str | None
    n_images: int
    n_rejected: int
    claimed_by: str | None
    claim_expires: float | None
    retrieval_failures: int
    """Polls that found the dataset's file unavailable (schema version
    6)."""
    discovered_at: str
    updated_at: str

    def data_id_values(self) -> dict[str, Any]:
        """Return the data ID as a `dict`.

        Returns
        -------
        data_id : `dict`
            Dimension names to values.
        """
        return json.loads(self.data_id)


@dataclasses.dataclass(frozen=True)
class ImageRecord(RowRecord):
    """An image of a dataset that passed or failed validation (a row of
    ``images``).
    """

    id: int
    dataset_id: int
    entry: str
    object_id: str
    state: str
    reason: str | None
    sha256: str | None
    size: int | None
    width: int | None
    height: int | None
    quarantine_path: str | None
    public_key: str | None
    public_url: str | None
    published_at: str | None
    updated_at: str


@dataclasses.dataclass(frozen=True)
class FrameRecord(RowRecord):
    """A band frame of a multi-frame subject (a row of ``image_frames``)."""

    image_id: int
    position: int
    band: str
    entry: str
    sha256: str
    size: int
    quarantine_path: str
    public_key: str


@dataclasses.dataclass(frozen=True)
class PictureCandidate:
    """An approved, public or superseded picture of a catalog object: a
    candidate for the object's one published picture.
    """

    id: int
    """The image's database id."""
    object_id: str
    state: str
    entry: str
    batch: str
    dataset_id: int
    """Its dataset's database id (a later discovery has a larger id)."""
    dataset_type: str
    data_id: str
    """Its dataset's data ID as JSON text (keys sorted)."""
    index_row: str | None
    """The image's ``index.csv`` row as JSON text (`None` for cutouts and
    images validated before schema version 3)."""

    def is_outdated_by(self, other: PictureCandidate) -> bool:
        """Tell whether another candidate is a newer picture of this one's
        object from a rerun: the same dataset type and data ID (the same
        patch) in a dataset discovered later.

        Parameters
        ----------
        other : `PictureCandidate`
            Another candidate of the same object.

        Returns
        -------
        outdated : `bool`
            Whether ``other`` replaces this picture.
        """
        return (
            other.dataset_type == self.dataset_type
            and other.data_id == self.data_id
            and other.dataset_id > self.dataset_id
        )

    def index_values(self) -> dict[str, Any]:
        """Return the index row as a `dict`.

        Returns
        -------
        index_row : `dict`
            Column names to values; empty if there is none or it is not
            JSON.
        """
        try:
            return json.loads(self.index_row) if self.index_row else {}
        except ValueError:
            return {}


def batch_state(image_states: set[str], current: str) -> str:
    """Return a batch's state from its images' states (after approval,
    rejection or publication).

    Parameters
    ----------
    image_states : `set` [`str`]
        The states of the batch's images.
    current : `str`
        The batch's state now (kept if it has no images).

    Returns
    -------
    state : `str`
        ``quarantined`` while an image waits for a decision, ``approved``
        while one waits for publication, ``published`` once its objects
        are public, else ``rejected``.
    """
    if "quarantined" in image_states:
        return "quarantined"
    if image_states & {"approved", "publishing"}:
        return "approved"
    if image_states & {"published", "superseded"}:
        # Done: its objects are public (through this or another batch).
        return "published"
    return "rejected" if image_states else current
