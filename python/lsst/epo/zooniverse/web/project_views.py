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

"""A project's pictures and published subjects, a page at a time, for the
PI API: paged in the database, so that a project of 100,000 pictures
answers as fast as one of ten (the service's reports read them all).
"""

from __future__ import annotations

__all__ = ["ProjectViews"]

from typing import Any

import sqlalchemy as sa

from ..export.publication import PublicLocation
from ..export.state import DATASETS, IMAGE_FRAMES, IMAGES
from ..export.store import StateStore


class ProjectViews:
    """Paged reads of one project's pictures.

    Parameters
    ----------
    store : `~lsst.epo.zooniverse.export.store.StateStore`
        The state database.
    public : `~lsst.epo.zooniverse.export.publication.PublicLocation`
        The public location (URLs of band frames).
    """

    def __init__(self, store: StateStore, public: PublicLocation) -> None:
        self.store = store
        self.public = public

    def images(
        self,
        project_id: int,
        *,
        state: str | None = None,
        batch: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        """Return a page of a project's pictures, by batch and entry.

        Parameters
        ----------
        project_id : `int`
            The project's database id.
        state : `str`, optional
            Only pictures in this state.
        batch : `str`, optional
            Only this batch's.
        offset, limit : `int`, optional
            The page.

        Returns
        -------
        page : `dict`
            ``total, offset, limit, images``; each picture ``batch,
            dataset_type, data_id, entry, object_id, state, reason, url``
            (as the service's report gives them).
        """
        with self.store.reading() as connection:
            datasets = self._datasets(connection, project_id, batch)
            where = [IMAGES.c.dataset_id.in_(list(datasets))]
            if state:
                where.append(IMAGES.c.state == state)
            total, found = self._page(
                connection,
                where,
                offset,
                limit,
                IMAGES.c.dataset_id,
                IMAGES.c.entry,
                IMAGES.c.object_id,
                IMAGES.c.state,
                IMAGES.c.reason,
                IMAGES.c.public_url,
            )
        rows = []
        for dataset_id, entry, object_id, image_state, reason, url in found:
            dataset = datasets[dataset_id]
            rows.append(
                {
                    "batch": dataset["batch"],
                    "dataset_type": dataset["dataset_type"],
                    "data_id": dataset["data_id"],
                    "entry": entry,
                    "object_id": object_id,
                    "state": image_state,
                    "reason": reason or "",
                    "url": url or "",
                }
            )
        return {"total": total, "offset": offset, "limit": limit, "images": rows}

    def subjects(self, project_id: int, *, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        """Return a page of a project's published pictures.

        Parameters
        ----------
        project_id : `int`
            The project's database id.
        offset, limit : `int`, optional
            The page.

        Returns
        -------
        page : `dict`
            ``total, offset, limit, subjects``; each ``batch, entry,
            object_id, url, frames`` (public URLs of its band frames, in
            subject order), ordered by batch (as found) and entry.
        """
        with self.store.reading() as connection:
            datasets = self._datasets(connection, project_id, None)
            where = [IMAGES.c.dataset_id.in_(list(datasets)), IMAGES.c.state == "published"]
            total, found = self._page(
                connection,
                where,
                offset,
                limit,
                IMAGES.c.id,
                IMAGES.c.dataset_id,
                IMAGES.c.entry,
                IMAGES.c.object_id,
                IMAGES.c.public_url,
            )
            frames: dict[int, list[str]] = {}
            ids = [row[0] for row in found]
            if ids:
                keys = connection.execute(
                    sa.select(IMAGE_FRAMES.c.image_id, IMAGE_FRAMES.c.public_key)
                    .where(IMAGE_FRAMES.c.image_id.in_(ids))
                    .order_by(IMAGE_FRAMES.c.image_id, IMAGE_FRAMES.c.position)
                )
                for image_id, key in keys:
                    frames.setdefault(image_id, []).append(self.public.url(key))
        rows = [
            {
                "batch": datasets[dataset_id]["batch"],
                "entry": entry,
                "object_id": object_id,
                "url": url or "",
                "frames": frames.get(image_id, []),
            }
            for image_id, dataset_id, entry, object_id, url in found
        ]
        return {"total": total, "offset": offset, "limit": limit, "subjects": rows}

    @staticmethod
    def _datasets(connection: sa.Connection, project_id: int, batch: str | None) -> dict[int, dict[str, Any]]:
        # The project's batches first, then its pictures by dataset id: no
        # join for the planner to get wrong on stale statistics.
        query = sa.select(DATASETS.c.id, DATASETS.c.batch, DATASETS.c.dataset_type, DATASETS.c.data_id).where(
            DATASETS.c.project_id == project_id
        )
        if batch:
            query = query.where(DATASETS.c.batch == batch)
        return {row["id"]: dict(row) for row in connection.execute(query).mappings()}

    @staticmethod
    def _page(
        connection: sa.Connection, where: list[Any], offset: int, limit: int, *columns: Any
    ) -> tuple[int, list[Any]]:
        total = connection.execute(sa.select(sa.func.count()).select_from(IMAGES).where(*where)).scalar()
        query = (
            sa.select(*columns)
            .where(*where)
            .order_by(IMAGES.c.dataset_id, IMAGES.c.entry)
            .offset(offset)
            .limit(limit)
        )
        return int(total or 0), list(connection.execute(query))
