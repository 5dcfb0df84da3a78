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
"""Reports of the service's state: counts by state, the review list of
quarantined batches, a project's images and rejected datasets, the fate
of every row of a PI's catalog, published images and the audit log.

These are read-only and return JSON-serialisable rows (dictionaries), as
the command line, the web application and the PI's client show them.
"""

from __future__ import annotations

__all__ = ["CATALOG_STATE_ORDER", "Reports"]

import json
from typing import Any

import sqlalchemy as sa

from .intake import ButlerCache
from .outcomes import ExportServiceError
from .policy import DataRightsPolicy
from .publication import PublicLocation
from .records import ProjectRecord
from .repository import StateRepository, indexed_images_query
from .state import AUDIT_LOG, DATASETS, IMAGE_FRAMES, IMAGES, PROJECTS

CATALOG_STATE_ORDER = {
    "published": 0,
    "publishing": 1,
    "approved": 2,
    "quarantined": 3,
    "superseded": 4,
    "rejected": 5,
}
"""Which image of an object the catalog report shows: the first in this
order."""

_EPO_REASONS = {
    "publishing": "being published",
    "approved": "approved, not yet published",
    "quarantined": "waiting for EPO's approval",
}

_REVIEW_IMAGE_COLUMNS = (
    IMAGES.c.entry,
    IMAGES.c.object_id,
    IMAGES.c.state,
    IMAGES.c.reason,
    IMAGES.c.size,
    IMAGES.c.width,
    IMAGES.c.height,
    IMAGES.c.quarantine_path,
    IMAGES.c.public_url,
)


class Reports:
    """Read-only reports of the state database.

    Parameters
    ----------
    repository : `~.repository.StateRepository`
        The state database.
    public : `~.publication.PublicLocation`
        Where public images are (for URLs).
    policy : `~.policy.DataRightsPolicy`
        Which collections an owner may name.
    butlers : `~.intake.ButlerCache`
        Butlers of the registered repositories (for the catalog report).
    """

    def __init__(
        self,
        repository: StateRepository,
        public: PublicLocation,
        policy: DataRightsPolicy,
        butlers: ButlerCache,
    ) -> None:
        self.repository = repository
        self.store = repository.store
        self.public = public
        self.policy = policy
        self.butlers = butlers

    def status(self, project: str | None = None) -> dict[str, Any]:
        """Count datasets and images by state, per project: see
        `~.service.ExportService.status`.
        """
        result: dict[str, Any] = {"public_url": self.public.url_prefix, "projects": {}}
        # The projects are read first: asking the pool for a second
        # connection while holding one deadlocks it under load.
        records = self.repository.selected_projects(project)
        with self.store.reading() as connection:
            for record in records:
                datasets = dict(
                    connection.execute(
                        sa.select(DATASETS.c.state, sa.func.count())
                        .where(DATASETS.c.project_id == record.id)
                        .group_by(DATASETS.c.state)
                    ).all()
                )
                images = dict(
                    connection.execute(
                        sa.select(IMAGES.c.state, sa.func.count())
                        .join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
                        .where(DATASETS.c.project_id == record.id)
                        .group_by(IMAGES.c.state)
                    ).all()
                )
                result["projects"][record.name] = {
                    "owner": record.owner,
                    "zooniverse_project_id": record.zooniverse_project_id,
                    "collections": record.collections,
                    "datasets": datasets,
                    "images": images,
                }
        return result

    def review(self, project: str | None = None, batch: str | None = None) -> list[dict[str, Any]]:
        """List quarantined batches with their images and findings: see
        `~.service.ExportService.review`.
        """
        query = sa.select(DATASETS, PROJECTS.c.name.label("project")).join(
            PROJECTS, PROJECTS.c.id == DATASETS.c.project_id
        )
        if batch:
            query = query.where(DATASETS.c.batch == batch)
        else:
            query = query.where(DATASETS.c.state == "quarantined")
        if project:
            query = query.where(PROJECTS.c.name == project)
        with self.store.reading() as connection:
            batches = [dict(r) for r in connection.execute(query.order_by(DATASETS.c.id)).mappings()]
            for record in batches:
                record["images"] = [
                    dict(r)
                    for r in connection.execute(
                        sa.select(*_REVIEW_IMAGE_COLUMNS)
                        .where(IMAGES.c.dataset_id == record["id"])
                        .order_by(IMAGES.c.entry)
                    ).mappings()
                ]
        if batch and not batches:
            raise ExportServiceError(f"No batch named {batch!r}.")
        return batches

    def report(self, project: str) -> list[dict[str, Any]]:
        """Return one row per image and per rejected dataset of a project:
        see `~.service.ExportService.report`.
        """
        record = self.repository.project(project)
        rows = []
        with self.store.reading() as connection:
            for dataset in self.repository.datasets(connection, record.id):
                images = self.repository.images(connection, dataset.id)
                base = {
                    "batch": dataset.batch,
                    "dataset_type": dataset.dataset_type,
                    "data_id": dataset.data_id,
                }
                if not images:
                    rows.append(
                        dict(
                            base,
                            entry="",
                            object_id="",
                            state=dataset.state,
                            reason=dataset.reason or "",
                            url="",
                        )
                    )
                rows += [
                    dict(
                        base,
                        entry=image.entry,
                        object_id=image.object_id,
                        state=image.state,
                        reason=image.reason or "",
                        url=image.public_url or "",
                    )
                    for image in images
                ]
        return rows

    def _best_image_states(self, record: ProjectRecord) -> dict[str, dict[str, Any]]:
        """Return, per object id, the state, reason and URL of its image
        that comes first in `CATALOG_STATE_ORDER`.
        """
        states: dict[str, dict[str, Any]] = {}
        query = (
            sa.select(IMAGES.c.object_id, IMAGES.c.state, IMAGES.c.reason, IMAGES.c.public_url)
            .join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
            .where(DATASETS.c.project_id == record.id)
        )
        with self.store.reading() as connection:
            for object_id, state, reason, url in connection.execute(query):
                best = states.get(object_id)
                if best is None or CATALOG_STATE_ORDER[state] < CATALOG_STATE_ORDER[best["state"]]:
                    states[object_id] = {"state": state, "reason": reason, "url": url}
        return states

    def catalog_report(self, project: str, collection: str) -> list[dict[str, Any]]:
        """Say, for every row of the PI's original catalog, its public URL
        or why it has none: see `~.service.ExportService.catalog_report`.
        """
        from ..pipeline.accounting import account_targets

        record = self.repository.project(project)
        if not self.policy.allows_collection(collection, record.owner):
            raise ExportServiceError(f"Collection {collection!r} is not in {record.owner}'s namespace.")
        try:
            accounting = account_targets(self.butlers.get(record.repo), collection)
        except LookupError as err:
            raise ExportServiceError(str(err)) from None
        states = self._best_image_states(record)
        rows = [_catalog_row(line, states) for line in accounting]
        if len(rows) != accounting.meta.get("n_rows", len(rows)):
            raise ExportServiceError(
                f"The accounting of {collection} has {len(rows)} lines for "
                f"{accounting.meta['n_rows']} catalog rows."
            )
        return rows

    def published_images(self, project: str) -> list[dict[str, Any]]:
        """Return the published images of a project with their index rows:
        see `~.service.ExportService.published_images`.
        """
        record = self.repository.project(project)
        query = indexed_images_query(
            record.id,
            ("published",),
            IMAGES.c.id,
            DATASETS.c.batch,
            IMAGES.c.entry,
            IMAGES.c.object_id,
            IMAGES.c.public_url,
            IMAGES.c.sha256,
        ).order_by(DATASETS.c.batch, IMAGES.c.entry)
        frames_query = (
            sa.select(IMAGE_FRAMES.c.image_id, IMAGE_FRAMES.c.public_key)
            .join(IMAGES, IMAGES.c.id == IMAGE_FRAMES.c.image_id)
            .join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
            .where(DATASETS.c.project_id == record.id, IMAGES.c.state == "published")
            .order_by(IMAGE_FRAMES.c.image_id, IMAGE_FRAMES.c.position)
        )
        with self.store.reading() as connection:
            frames: dict[int, list[str]] = {}
            for image_id, key in connection.execute(frames_query):
                frames.setdefault(image_id, []).append(self.public.url(key))
            return [
                {
                    "batch": batch,
                    "entry": entry,
                    "object_id": object_id,
                    "url": url,
                    "sha256": sha256,
                    "index_row": json.loads(index_row) if index_row else {},
                    "frames": frames.get(image_id, []),
                }
                for image_id, batch, entry, object_id, url, sha256, index_row in connection.execute(query)
            ]

    def audit_log(self, *, batch: str | None = None, project: str | None = None) -> list[dict[str, Any]]:
        """Return audit records, oldest first: see
        `~.service.ExportService.audit_log`.
        """
        query = sa.select(AUDIT_LOG).order_by(AUDIT_LOG.c.id)
        if batch:
            query = query.where(AUDIT_LOG.c.batch == batch)
        if project:
            query = query.where(AUDIT_LOG.c.project == project)
        with self.store.reading() as connection:
            return [dict(r) for r in connection.execute(query).mappings()]


def _catalog_row(line: Any, states: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Return the catalog report's row of one accounting line."""
    object_id = str(line["object_id"])
    row = {"row_index": int(line["row_index"]), "object_id": object_id, "url": ""}
    if line["status"] == "rejected":
        row.update(outcome="not_published", stage="sharding", reason=f"{line['reason']}: {line['detail']}")
    elif line["status"] != "pictured":
        row.update(
            outcome="not_published",
            stage="pipeline",
            reason=f"{line['status']}: {line['reason']} {line['detail']}".strip(),
        )
    elif object_id not in states:
        row.update(outcome="not_published", stage="epo", reason="not retrieved by EPO yet")
    else:
        state = states[object_id]
        if state["state"] == "published":
            row.update(outcome="published", stage="epo", reason="", url=state["url"])
        else:
            reason = _EPO_REASONS.get(state["state"]) or state["reason"] or state["state"]
            row.update(outcome="not_published", stage="epo", reason=reason)
    return row
