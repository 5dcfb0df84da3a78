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

"""What operators look at: batches across projects, filtered by project
and state and paged, with their image counts, their stretch settings and
the objects already public in another batch (read-only queries of the
export service's state database).
"""

from __future__ import annotations

__all__ = ["BatchPage", "OperatorViews"]

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ..export.state import DATASET_STATES, DATASETS, IMAGE_INDEX_ROWS, IMAGES, PROJECTS
from ..export.store import StateStore

_STRETCH_COLUMNS = ("stretch", "bands")
_SAMPLE = 10
_CHUNK = 900


@dataclasses.dataclass
class BatchPage:
    """One page of batches.

    Parameters
    ----------
    total : `int`
        Batches matching the filter.
    offset, limit : `int`
        The page.
    batches : `list` [`dict`]
        The page's batches.
    """

    total: int
    offset: int
    limit: int
    batches: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """Return the page as JSON-compatible types.

        Returns
        -------
        page : `dict`
            ``total, offset, limit, batches``.
        """
        return dataclasses.asdict(self)


class OperatorViews:
    """Operators' queries.

    Parameters
    ----------
    store : `~lsst.epo.zooniverse.export.store.StateStore`
        The state database.
    """

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def batches(
        self,
        *,
        project: str | None = None,
        state: str | None = "quarantined",
        offset: int = 0,
        limit: int = 50,
    ) -> BatchPage:
        """Return a page of batches, oldest first.

        Parameters
        ----------
        project : `str`, optional
            Only this project.
        state : `str`, optional
            Only batches in this state (one of ``DATASET_STATES``); all if
            `None`.
        offset, limit : `int`, optional
            The page.

        Returns
        -------
        page : `BatchPage`
            Each batch: ``batch, project, owner, state, reason,
            dataset_type, data_id, discovered_at, updated_at, images``
            (count by state), ``stretch`` (the ``stretch`` and ``bands``
            of its first picture's index row), ``already_public`` (count)
            and ``already_public_sample`` (up to 10 object ids already
            published from another batch of the project).

        Raises
        ------
        ValueError
            Raised for an unknown state.
        """
        if state is not None and state not in DATASET_STATES:
            raise ValueError(f"Unknown batch state {state!r}; known: {', '.join(DATASET_STATES)}.")
        where = []
        if project:
            where.append(PROJECTS.c.name == project)
        if state:
            where.append(DATASETS.c.state == state)
        joined = DATASETS.join(PROJECTS, PROJECTS.c.id == DATASETS.c.project_id)
        query = (
            sa.select(
                DATASETS.c.id,
                DATASETS.c.batch,
                PROJECTS.c.name.label("project"),
                PROJECTS.c.owner,
                DATASETS.c.state,
                DATASETS.c.reason,
                DATASETS.c.dataset_type,
                DATASETS.c.data_id,
                DATASETS.c.discovered_at,
                DATASETS.c.updated_at,
            )
            .select_from(joined)
            .where(*where)
            .order_by(DATASETS.c.id)
            .offset(offset)
            .limit(limit)
        )
        with self.store.reading() as connection:
            total = connection.execute(sa.select(sa.func.count()).select_from(joined).where(*where)).scalar()
            rows = [dict(row) for row in connection.execute(query).mappings()]
            ids = [row["id"] for row in rows]
            counts = self._image_counts(connection, ids)
            stretch = self._stretch(connection, ids)
            public = self.already_public(connection, ids)
        for row in rows:
            dataset_id = row.pop("id")
            row["data_id"] = json.loads(row["data_id"]) if row["data_id"] else {}
            row["images"] = counts.get(dataset_id, {})
            row["stretch"] = stretch.get(dataset_id, {})
            sample = public.get(dataset_id, [])
            row["already_public"] = len(sample)
            row["already_public_sample"] = sample[:_SAMPLE]
        return BatchPage(total=int(total or 0), offset=offset, limit=limit, batches=rows)

    def batch_already_public(self, batch: str) -> set[str]:
        """Return the object ids of a batch's pictures that another batch
        of the project has already published.

        Parameters
        ----------
        batch : `str`
            The batch.

        Returns
        -------
        object_ids : `set` [`str`]
            The objects.
        """
        with self.store.reading() as connection:
            ids = [
                row
                for (row,) in connection.execute(sa.select(DATASETS.c.id).where(DATASETS.c.batch == batch))
            ]
            return set(self.already_public(connection, ids).get(ids[0], [])) if ids else set()

    def batch_stretch(self, batch: str) -> dict[str, str]:
        """Return a batch's stretch settings.

        Parameters
        ----------
        batch : `str`
            The batch.

        Returns
        -------
        stretch : `dict` [`str`, `str`]
            The ``stretch`` and ``bands`` of its first picture's index row
            (empty for cutouts and old batches).
        """
        with self.store.reading() as connection:
            ids = [
                row
                for (row,) in connection.execute(sa.select(DATASETS.c.id).where(DATASETS.c.batch == batch))
            ]
            return self._stretch(connection, ids).get(ids[0], {}) if ids else {}

    @staticmethod
    def _image_counts(connection: sa.Connection, ids: Sequence[int]) -> dict[int, dict[str, int]]:
        counts: dict[int, dict[str, int]] = {}
        if not ids:
            return counts
        query = (
            sa.select(IMAGES.c.dataset_id, IMAGES.c.state, sa.func.count())
            .where(IMAGES.c.dataset_id.in_(ids))
            .group_by(IMAGES.c.dataset_id, IMAGES.c.state)
        )
        for dataset_id, state, n in connection.execute(query):
            counts.setdefault(dataset_id, {})[state] = n
        return counts

    @staticmethod
    def _stretch(connection: sa.Connection, ids: Sequence[int]) -> dict[int, dict[str, str]]:
        if not ids:
            return {}
        first = (
            sa.select(sa.func.min(IMAGES.c.id).label("image_id"))
            .where(IMAGES.c.dataset_id.in_(ids))
            .group_by(IMAGES.c.dataset_id)
            .subquery()
        )
        query = (
            sa.select(IMAGES.c.dataset_id, IMAGE_INDEX_ROWS.c.index_row)
            .join(first, first.c.image_id == IMAGES.c.id)
            .join(IMAGE_INDEX_ROWS, IMAGE_INDEX_ROWS.c.image_id == IMAGES.c.id)
        )
        found = {}
        for dataset_id, text in connection.execute(query):
            try:
                row = json.loads(text)
            except ValueError:
                continue
            found[dataset_id] = {key: str(row[key]) for key in _STRETCH_COLUMNS if key in row}
        return found

    @staticmethod
    def already_public(connection: sa.Connection, ids: Sequence[int]) -> dict[int, list[str]]:
        """Return, per batch, the object ids of its unpublished pictures
        that another batch of the same project has published.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            A connection to read with.
        ids : `~collections.abc.Sequence` [`int`]
            Dataset ids.

        Returns
        -------
        objects : `dict` [`int`, `list` [`str`]]
            Sorted object ids per dataset id (only datasets that have some).
        """
        if not ids:
            return {}
        # The images table has no object_id index, and a join on it is
        # planned badly when the statistics are stale (a nested loop over
        # every published picture for every waiting one, seconds at
        # 100,000 pictures).  Here the waiting pictures' objects are sent
        # as lists of values, without a join: each chunk costs one scan of
        # the published pictures (a hashed IN on PostgreSQL), and the
        # projects are matched here.
        waiting = sa.and_(IMAGES.c.dataset_id.in_(ids), IMAGES.c.state.in_(("quarantined", "approved")))
        candidates = connection.execute(
            sa.select(IMAGES.c.dataset_id, DATASETS.c.project_id, IMAGES.c.object_id)
            .join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
            .where(waiting)
        ).all()
        projects = {project_id for _, project_id, _ in candidates}
        objects = sorted({object_id for _, _, object_id in candidates})
        project_of = dict(
            connection.execute(
                sa.select(DATASETS.c.id, DATASETS.c.project_id).where(DATASETS.c.project_id.in_(projects))
            ).all()
        )
        published: dict[tuple[int, str], set[int]] = {}
        for start in range(0, len(objects), _CHUNK):
            rows = connection.execute(
                sa.select(IMAGES.c.object_id, IMAGES.c.dataset_id).where(
                    IMAGES.c.state == "published", IMAGES.c.object_id.in_(objects[start : start + _CHUNK])
                )
            )
            for object_id, dataset_id in rows:
                if dataset_id in project_of:
                    published.setdefault((project_of[dataset_id], object_id), set()).add(dataset_id)
        found: dict[int, set[str]] = {}
        for dataset_id, project_id, object_id in candidates:
            if published.get((project_id, object_id), set()) - {dataset_id}:
                found.setdefault(dataset_id, set()).add(object_id)
        return {dataset_id: sorted(values) for dataset_id, values in found.items()}
