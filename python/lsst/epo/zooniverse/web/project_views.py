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
        where = [DATASETS.c.project_id == project_id]
        if state:
            where.append(IMAGES.c.state == state)
        if batch:
            where.append(DATASETS.c.batch == batch)
        joined = IMAGES.join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
        query = (
            sa.select(
                DATASETS.c.batch,
                DATASETS.c.dataset_type,
                DATASETS.c.data_id,
                IMAGES.c.entry,
                IMAGES.c.object_id,
                IMAGES.c.state,
                IMAGES.c.reason,
                IMAGES.c.public_url.label("url"),
            )
            .select_from(joined)
            .where(*where)
            .order_by(DATASETS.c.id, IMAGES.c.entry)
            .offset(offset)
            .limit(limit)
        )
        with self.store.reading() as connection:
            total = connection.execute(sa.select(sa.func.count()).select_from(joined).where(*where)).scalar()
            rows = [dict(row) for row in connection.execute(query).mappings()]
        for row in rows:
            row["reason"] = row["reason"] or ""
            row["url"] = row["url"] or ""
        return {"total": int(total or 0), "offset": offset, "limit": limit, "images": rows}

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
            subject order), ordered by batch and entry.
        """
        where = (DATASETS.c.project_id == project_id, IMAGES.c.state == "published")
        joined = IMAGES.join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
        query = (
            sa.select(
                IMAGES.c.id,
                DATASETS.c.batch,
                IMAGES.c.entry,
                IMAGES.c.object_id,
                IMAGES.c.public_url.label("url"),
            )
            .select_from(joined)
            .where(*where)
            .order_by(DATASETS.c.batch, IMAGES.c.entry)
            .offset(offset)
            .limit(limit)
        )
        with self.store.reading() as connection:
            total = connection.execute(sa.select(sa.func.count()).select_from(joined).where(*where)).scalar()
            rows = [dict(row) for row in connection.execute(query).mappings()]
            frames: dict[int, list[str]] = {}
            ids = [row["id"] for row in rows]
            if ids:
                found = connection.execute(
                    sa.select(IMAGE_FRAMES.c.image_id, IMAGE_FRAMES.c.public_key)
                    .where(IMAGE_FRAMES.c.image_id.in_(ids))
                    .order_by(IMAGE_FRAMES.c.image_id, IMAGE_FRAMES.c.position)
                )
                for image_id, key in found:
                    frames.setdefault(image_id, []).append(self.public.url(key))
        for row in rows:
            row["frames"] = frames.get(row.pop("id"), [])
            row["url"] = row["url"] or ""
        return {"total": int(total or 0), "offset": offset, "limit": limit, "subjects": rows}
