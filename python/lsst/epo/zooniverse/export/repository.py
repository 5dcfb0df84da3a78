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
"""Typed reads and writes of projects, datasets, images and band frames.

`StateRepository` is what the service's collaborators (intake, dataset
checks, decisions, publication, reports) use to read the state database:
it gives `.records` dataclasses, not rows.  Writes that belong to one
transition stay with the collaborator that makes the transition, in a
transaction from `.store.StateStore.writing`; the repository's methods
that take a ``connection`` read or lock inside such a transaction.
"""

from __future__ import annotations

__all__ = ["StateRepository", "indexed_images_query"]

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from .outcomes import ExportServiceError
from .records import DatasetRecord, FrameRecord, ImageRecord, PictureCandidate, ProjectRecord
from .state import DATASETS, IMAGE_FRAMES, IMAGE_INDEX_ROWS, IMAGES, PROJECTS
from .store import StateStore


class StateRepository:
    """Typed access to the state database's projects, datasets and images.

    Parameters
    ----------
    store : `~.store.StateStore`
        The database.
    """

    def __init__(self, store: StateStore) -> None:
        self.store = store

    # Projects.

    def add_project(self, connection: sa.Connection, values: Mapping[str, Any]) -> None:
        """Insert a project.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The registration's transaction.
        values : `~collections.abc.Mapping`
            Its columns (``dataset_types`` as JSON text).

        Raises
        ------
        sqlalchemy.exc.IntegrityError
            Raised if a project of that name exists.
        """
        connection.execute(PROJECTS.insert().values(**values))

    def project(self, name: str) -> ProjectRecord:
        """Return the `~.records.ProjectRecord` of a registered project (see
        `~.service.ExportService.project`, which returns it as a `dict`).

        Raises
        ------
        ExportServiceError
            Raised if there is no such project.
        """
        with self.store.reading() as connection:
            row = connection.execute(sa.select(PROJECTS).where(PROJECTS.c.name == name)).mappings().first()
        if row is None:
            raise ExportServiceError(f"No project named {name!r} is registered.")
        return ProjectRecord.from_row(row)

    def project_by_id(self, project_id: int, connection: sa.Connection | None = None) -> ProjectRecord:
        """Return the project of a dataset.

        Parameters
        ----------
        project_id : `int`
            The project's database id.
        connection : `sqlalchemy.Connection`, optional
            The transaction to read in (a new read-only connection if not
            given).

        Returns
        -------
        project : `~.records.ProjectRecord`
            Its record.
        """
        query = sa.select(PROJECTS).where(PROJECTS.c.id == project_id)
        if connection is not None:
            return ProjectRecord.from_row(connection.execute(query).mappings().one())
        with self.store.reading() as reader:
            return ProjectRecord.from_row(reader.execute(query).mappings().one())

    def projects(self) -> list[ProjectRecord]:
        """Return every registered project, by name.

        Returns
        -------
        projects : `list` [`~.records.ProjectRecord`]
            Their records.
        """
        with self.store.reading() as connection:
            rows = connection.execute(sa.select(PROJECTS).order_by(PROJECTS.c.name)).mappings().all()
        return [ProjectRecord.from_row(row) for row in rows]

    def selected_projects(self, name: str | None) -> list[ProjectRecord]:
        """Return one project, or all.

        Parameters
        ----------
        name : `str` or `None`
            The project's name; `None` for every project.

        Returns
        -------
        projects : `list` [`~.records.ProjectRecord`]
            Their records.

        Raises
        ------
        ExportServiceError
            Raised if there is no project of that name.
        """
        return [self.project(name)] if name else self.projects()

    def lock_project(self, connection: sa.Connection, project_id: int) -> None:
        """Lock a project's row for the transaction (PostgreSQL ``FOR
        UPDATE``; a SQLite writer holds the whole database).

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction.
        project_id : `int`
            The project's database id.
        """
        connection.execute(
            sa.select(PROJECTS.c.id).where(PROJECTS.c.id == project_id).with_for_update()
        ).all()

    # Datasets.

    def dataset(self, connection: sa.Connection, dataset_id: int) -> DatasetRecord | None:
        """Return a dataset, or `None` if there is none with that id.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction to read in.
        dataset_id : `int`
            The dataset's database id.

        Returns
        -------
        dataset : `~.records.DatasetRecord` or `None`
            Its record.
        """
        row = connection.execute(sa.select(DATASETS).where(DATASETS.c.id == dataset_id)).mappings().first()
        return None if row is None else DatasetRecord.from_row(row)

    def datasets(self, connection: sa.Connection, project_id: int) -> list[DatasetRecord]:
        """Return every dataset of a project, oldest first.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction to read in.
        project_id : `int`
            The project's database id.

        Returns
        -------
        datasets : `list` [`~.records.DatasetRecord`]
            Their records.
        """
        rows = connection.execute(
            sa.select(DATASETS).where(DATASETS.c.project_id == project_id).order_by(DATASETS.c.id)
        ).mappings()
        return [DatasetRecord.from_row(row) for row in rows]

    def dataset_by_batch(self, connection: sa.Connection, batch: str) -> DatasetRecord:
        """Return the dataset of a batch.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction to read in.
        batch : `str`
            Batch name.

        Returns
        -------
        dataset : `~.records.DatasetRecord`
            Its record.

        Raises
        ------
        ExportServiceError
            Raised if there is no such batch.
        """
        row = connection.execute(sa.select(DATASETS).where(DATASETS.c.batch == batch)).mappings().first()
        if row is None:
            raise ExportServiceError(f"No batch named {batch!r}.")
        return DatasetRecord.from_row(row)

    def lock_dataset(self, connection: sa.Connection, dataset_id: int) -> DatasetRecord:
        """Read a dataset and lock it for the transaction, so that
        approval, rejection and publication of one batch serialise.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction (PostgreSQL takes a ``FOR UPDATE`` row lock; a
            SQLite writer already holds the database).
        dataset_id : `int`
            The dataset's database id.

        Returns
        -------
        dataset : `~.records.DatasetRecord`
            Its record.
        """
        row = (
            connection.execute(sa.select(DATASETS).where(DATASETS.c.id == dataset_id).with_for_update())
            .mappings()
            .one()
        )
        return DatasetRecord.from_row(row)

    def dataset_ids(self, project_id: int, states: Iterable[str]) -> list[int]:
        """Return the ids of a project's datasets in some states, oldest
        first.

        Parameters
        ----------
        project_id : `int`
            The project's database id.
        states : `~collections.abc.Iterable` [`str`]
            Dataset states.

        Returns
        -------
        ids : `list` [`int`]
            Dataset ids.
        """
        with self.store.reading() as connection:
            return list(
                connection.execute(
                    sa.select(DATASETS.c.id)
                    .where(DATASETS.c.project_id == project_id, DATASETS.c.state.in_(tuple(states)))
                    .order_by(DATASETS.c.id)
                ).scalars()
            )

    def dataset_uuids(self, project_id: int) -> set[str]:
        """Return the UUIDs of every dataset of a project.

        Parameters
        ----------
        project_id : `int`
            The project's database id.

        Returns
        -------
        uuids : `set` [`str`]
            Butler dataset UUIDs (as text).
        """
        with self.store.reading() as connection:
            return set(
                connection.execute(
                    sa.select(DATASETS.c.dataset_uuid).where(DATASETS.c.project_id == project_id)
                ).scalars()
            )

    # Images and frames.

    def images(
        self,
        connection: sa.Connection,
        dataset_id: int,
        states: Iterable[str] | None = None,
        *,
        by_entry: bool = True,
    ) -> list[ImageRecord]:
        """Return a dataset's images.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction to read in.
        dataset_id : `int`
            The dataset's database id.
        states : `~collections.abc.Iterable` [`str`], optional
            Only images in these states (all if not given).
        by_entry : `bool`, optional
            In the order of their entry names (else in the order they were
            recorded).

        Returns
        -------
        images : `list` [`~.records.ImageRecord`]
            Their records.
        """
        query = sa.select(IMAGES).where(IMAGES.c.dataset_id == dataset_id)
        if states is not None:
            query = query.where(IMAGES.c.state.in_(tuple(states)))
        order = IMAGES.c.entry if by_entry else IMAGES.c.id
        rows = connection.execute(query.order_by(order)).mappings()
        return [ImageRecord.from_row(row) for row in rows]

    def image_states(self, connection: sa.Connection, dataset_id: int) -> set[str]:
        """Return the states a dataset's images are in.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction to read in.
        dataset_id : `int`
            The dataset's database id.

        Returns
        -------
        states : `set` [`str`]
            Image states.
        """
        return set(
            connection.execute(sa.select(IMAGES.c.state).where(IMAGES.c.dataset_id == dataset_id)).scalars()
        )

    def frames(self, connection: sa.Connection, dataset_id: int, state: str) -> dict[int, list[FrameRecord]]:
        """Return the band frames of a dataset's images in one state.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction to read in.
        dataset_id : `int`
            The dataset's database id.
        state : `str`
            The images' state.

        Returns
        -------
        frames : `dict` [`int`, `list` [`~.records.FrameRecord`]]
            Each image's frames in subject order, by image id (images
            without frames are absent).
        """
        frames: dict[int, list[FrameRecord]] = {}
        for row in connection.execute(
            sa.select(IMAGE_FRAMES)
            .join(IMAGES, IMAGES.c.id == IMAGE_FRAMES.c.image_id)
            .where(IMAGES.c.dataset_id == dataset_id, IMAGES.c.state == state)
            .order_by(IMAGE_FRAMES.c.image_id, IMAGE_FRAMES.c.position)
        ).mappings():
            frames.setdefault(row["image_id"], []).append(FrameRecord.from_row(row))
        return frames

    def picture_candidates(self, connection: sa.Connection, project_id: int) -> list[PictureCandidate]:
        """Return a project's approved, publishing, published and
        superseded images: the candidates of the one-picture-per-object
        choice.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction to read in.
        project_id : `int`
            The project's database id.

        Returns
        -------
        candidates : `list` [`~.records.PictureCandidate`]
            Their records (in no particular order).
        """
        query = indexed_images_query(
            project_id,
            ("approved", "publishing", "published", "superseded"),
            IMAGES.c.id,
            IMAGES.c.object_id,
            IMAGES.c.state,
            IMAGES.c.entry,
            DATASETS.c.batch,
            DATASETS.c.id.label("dataset_id"),
            DATASETS.c.dataset_type,
            DATASETS.c.data_id,
        )
        rows = connection.execute(query).mappings()
        return [PictureCandidate(**row) for row in rows]


def indexed_images_query(project_id: int, states: Iterable[str], *columns: Any) -> sa.Select:
    """Return the query of a project's images in some states, with their
    batch and ``index.csv`` row at hand.

    Parameters
    ----------
    project_id : `int`
        The project's database id.
    states : `~collections.abc.Iterable` [`str`]
        Image states.
    *columns
        Columns of ``images`` and ``datasets`` to select; the image's
        ``index_row`` (`None` if it has none) is selected after them.

    Returns
    -------
    query : `sqlalchemy.Select`
        The query (unordered).
    """
    return (
        sa.select(*columns, IMAGE_INDEX_ROWS.c.index_row)
        .select_from(IMAGES)
        .join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
        .outerjoin(IMAGE_INDEX_ROWS, IMAGE_INDEX_ROWS.c.image_id == IMAGES.c.id)
        .where(DATASETS.c.project_id == project_id, IMAGES.c.state.in_(tuple(states)))
    )
