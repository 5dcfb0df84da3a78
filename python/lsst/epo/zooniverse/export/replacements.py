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
"""Picture replacement: a PI's rerun (a new stretch, into a new run of
their collection) supersedes public pictures once an operator approves it.

The one-picture-per-object choice (`.publishing.Publisher`) prefers, for
each patch, the picture of the newest dataset of that dataset type and
data ID; when such a picture is published, every older public picture of
its object becomes ``superseded`` in the same transaction and a row of
``image_replacements`` records the pair (`record_replacements`).  The new
picture has its own public URL (its batch is new); the old picture's
public file stays, so the Zooniverse subject that shows it keeps working,
until the Zooniverse side has replaced the subject and called
`Replacements.complete`, which removes it.  Nothing that was not approved
is ever public: both pictures were approved.
"""

from __future__ import annotations

__all__ = ["Replacements", "external_id", "record_replacements"]

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ..timestamps import utc_now_iso
from .manifest import anonymous_subject_id
from .outcomes import ExportServiceError
from .publication import PublicLocation
from .records import ImageRecord, ProjectRecord
from .repository import StateRepository
from .state import DATASETS, IMAGE_FRAMES, IMAGE_REPLACEMENTS, IMAGES, PROJECTS

_IDS_PER_QUERY = 5000


def external_id(project: ProjectRecord, object_id: str) -> str:
    """Return the Zooniverse ``external_id`` of a project's object (the
    same for every picture of it, as `.manifest.subject_row` makes it).

    Parameters
    ----------
    project : `~.records.ProjectRecord`
        The project.
    object_id : `str`
        The PI's object id.

    Returns
    -------
    external_id : `str`
        ``<project>:<object_id>``, or the opaque id of an anonymised
        project.
    """
    if project.full_metadata:
        return f"{project.name}:{object_id}"
    return anonymous_subject_id(project.name, object_id)


def record_replacements(
    connection: sa.Connection, project: ProjectRecord, published: Sequence[ImageRecord], actor: str
) -> list[dict[str, Any]]:
    """Supersede the older public pictures of newly published pictures'
    objects and record each replacement, in the publication's transaction.

    Parameters
    ----------
    connection : `sqlalchemy.Connection`
        The transaction that recorded ``published`` as published.
    project : `~.records.ProjectRecord`
        Their project.
    published : `~collections.abc.Sequence` [`~.records.ImageRecord`]
        Pictures just recorded as published.
    actor : `str`
        Who publishes (audited).

    Returns
    -------
    records : `list` [`dict`]
        Audit records of the replacements (the caller appends them).
    """
    if not published:
        return []
    new_by_object = {image.object_id: image for image in published}
    old_rows = connection.execute(
        sa.select(IMAGES.c.id, IMAGES.c.object_id, IMAGES.c.entry, DATASETS.c.batch)
        .join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
        .where(
            DATASETS.c.project_id == project.id,
            IMAGES.c.state == "published",
            IMAGES.c.object_id.in_(list(new_by_object)),
            IMAGES.c.id.not_in([image.id for image in published]),
        )
    ).all()
    now = utc_now_iso()
    records, updates, inserts = [], [], []
    for old_id, object_id, entry, batch in old_rows:
        new = new_by_object[object_id]
        reason = f"replaced: {new.public_key} is this object's picture (a newer approved rerun)"
        updates.append({"old_id": old_id, "new_reason": reason})
        inserts.append(
            {
                "project_id": project.id,
                "object_id": object_id,
                "old_image_id": old_id,
                "new_image_id": new.id,
                "recorded_at": now,
            }
        )
        records.append(
            {
                "actor": actor,
                "action": "replaced",
                "project": project.name,
                "batch": batch,
                "entry": entry,
                "from_state": "published",
                "to_state": "superseded",
                "detail": reason,
            }
        )
    if updates:
        # One statement each, executed for many rows.
        connection.execute(
            IMAGES.update()
            .where(IMAGES.c.id == sa.bindparam("old_id"), IMAGES.c.state == "published")
            .values(state="superseded", reason=sa.bindparam("new_reason"), updated_at=now),
            updates,
        )
        connection.execute(IMAGE_REPLACEMENTS.insert(), inserts)
    return records


class Replacements:
    """Lists and completes a project's picture replacements.

    Parameters
    ----------
    repository : `~.repository.StateRepository`
        The state database.
    public : `~.publication.PublicLocation`
        Where public pictures are.
    """

    def __init__(self, repository: StateRepository, public: PublicLocation) -> None:
        self.repository = repository
        self.store = repository.store
        self.public = public

    def _pictures(self, connection: sa.Connection, image_ids: list[int]) -> dict[int, dict[str, Any]]:
        """Return where pictures are public, by image id: batch, entry,
        URL, keys and locations (the picture, then its band frames).
        """
        rows, frames = [], {}
        for start in range(0, len(image_ids), _IDS_PER_QUERY):
            chunk = image_ids[start : start + _IDS_PER_QUERY]
            rows += connection.execute(
                sa.select(IMAGES.c.id, DATASETS.c.batch, IMAGES.c.entry, IMAGES.c.public_key, IMAGES.c.sha256)
                .join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
                .where(IMAGES.c.id.in_(chunk))
            ).all()
            for image_id, key in connection.execute(
                sa.select(IMAGE_FRAMES.c.image_id, IMAGE_FRAMES.c.public_key)
                .where(IMAGE_FRAMES.c.image_id.in_(chunk))
                .order_by(IMAGE_FRAMES.c.image_id, IMAGE_FRAMES.c.position)
            ):
                frames.setdefault(image_id, []).append(key)
        pictures = {}
        for row in rows:
            keys = [row.public_key, *frames.get(row.id, [])]
            pictures[row.id] = {
                "image_id": row.id,
                "batch": row.batch,
                "entry": row.entry,
                "sha256": row.sha256,
                "url": self.public.url(row.public_key),
                "locations": [self.public.url(key) for key in keys],
                "keys": keys,
            }
        return pictures

    def find(
        self, project: str | None = None, *, pending: bool = True, replacement_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Return picture replacements, oldest first: see
        `~.service.ExportService.pending_replacements` (``pending=False``
        also gives completed ones; ``replacement_id`` only that one).
        """
        query = (
            sa.select(IMAGE_REPLACEMENTS, PROJECTS.c.name.label("project"))
            .join(PROJECTS, PROJECTS.c.id == IMAGE_REPLACEMENTS.c.project_id)
            .order_by(IMAGE_REPLACEMENTS.c.id)
        )
        if project:
            query = query.where(PROJECTS.c.name == project)
            self.repository.project(project)
        if pending:
            query = query.where(IMAGE_REPLACEMENTS.c.completed_at.is_(None))
        if replacement_id is not None:
            query = query.where(IMAGE_REPLACEMENTS.c.id == replacement_id)
        projects = {record.id: record for record in self.repository.projects()}
        with self.store.reading() as connection:
            rows = connection.execute(query).mappings().all()
            ids = sorted({row[k] for row in rows for k in ("old_image_id", "new_image_id")})
            pictures = self._pictures(connection, ids)
            return [
                {
                    "id": row["id"],
                    "project": row["project"],
                    "object_id": row["object_id"],
                    "external_id": external_id(projects[row["project_id"]], row["object_id"]),
                    "old": pictures[row["old_image_id"]],
                    "new": pictures[row["new_image_id"]],
                    "recorded_at": row["recorded_at"],
                    "completed_at": row["completed_at"],
                    "completed_by": row["completed_by"],
                }
                for row in rows
            ]

    def complete(self, replacement_id: int, actor: str) -> dict[str, Any]:
        """Mark a replacement done and remove the old picture's public
        files: see `~.service.ExportService.complete_replacement`.
        """
        with self.store.reading() as connection:
            row = (
                connection.execute(
                    sa.select(IMAGE_REPLACEMENTS).where(IMAGE_REPLACEMENTS.c.id == replacement_id)
                )
                .mappings()
                .first()
            )
            if row is None:
                raise ExportServiceError(f"No picture replacement with id {replacement_id}.")
            old = self._pictures(connection, [row["old_image_id"]])[row["old_image_id"]]
        project = self.repository.project_by_id(row["project_id"])
        # The files go first: a crash after this leaves the row pending and
        # a second call finishes it (removing nothing).
        for key in old["keys"]:
            self.public.remove(key)
        with self.store.writing() as connection:
            result = connection.execute(
                IMAGE_REPLACEMENTS.update()
                .where(IMAGE_REPLACEMENTS.c.id == replacement_id, IMAGE_REPLACEMENTS.c.completed_at.is_(None))
                .values(completed_at=utc_now_iso(), completed_by=actor)
            )
            if result.rowcount == 1:
                self.store.audit(
                    connection,
                    actor,
                    "replacement_completed",
                    project=project.name,
                    batch=old["batch"],
                    entry=old["entry"],
                    detail=f"old public files removed: {', '.join(old['keys'])}",
                )
        return self.find(pending=False, replacement_id=replacement_id)[0]
