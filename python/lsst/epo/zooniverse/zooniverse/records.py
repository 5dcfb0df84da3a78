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

"""What the state database knows was sent to Zooniverse:
`SubjectSetRecords`.

Three tables (`lsst.epo.zooniverse.export.state`): the subject sets this
service made or adopted (``zooniverse_subject_sets``), every subject
known to be in one (``zooniverse_subjects``) and the subject-set imports
started (``zooniverse_imports``).  Reruns read them to send only what is
missing.
"""

from __future__ import annotations

__all__ = ["SubjectSetRecords"]

import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..export.state import (
    ZOONIVERSE_IMPORTS,
    ZOONIVERSE_SUBJECT_SETS,
    ZOONIVERSE_SUBJECTS,
    insert_ignoring_duplicates,
)
from ..timestamps import utc_now_iso

if TYPE_CHECKING:
    from ..export.manifest import SubjectRow
    from ..export.redaction import Redactor
    from ..export.store import StateStore

_LOG = logging.getLogger(__name__)


class SubjectSetRecords:
    """Read and write the subject-set tables of the state database.

    Parameters
    ----------
    store : `~lsst.epo.zooniverse.export.store.StateStore`
        The export service's state database.
    redactor : `~lsst.epo.zooniverse.export.redaction.Redactor`
        Masks secrets in the messages logged when auditing fails.
    """

    def __init__(self, store: StateStore, redactor: Redactor) -> None:
        self.store = store
        self.redactor = redactor

    def find_set(
        self, project_row_id: int, endpoint: str | None, name: str, subject_set_id: int | None = None
    ) -> dict[str, Any] | None:
        """Return the latest record of a project's subject set.

        Parameters
        ----------
        project_row_id : `int`
            Row id of the EPO project.
        endpoint : `str` or `None`
            Zooniverse endpoint (`None`: any).
        name : `str`
            Display name of the set (ignored with ``subject_set_id``).
        subject_set_id : `int`, optional
            Zooniverse id of the set.

        Returns
        -------
        record : `dict` or `None`
            The ``zooniverse_subject_sets`` row, `None` if there is none.
        """
        query = sa.select(ZOONIVERSE_SUBJECT_SETS).where(
            ZOONIVERSE_SUBJECT_SETS.c.project_id == project_row_id
        )
        if endpoint is not None:
            query = query.where(ZOONIVERSE_SUBJECT_SETS.c.endpoint == endpoint)
        if subject_set_id is not None:
            query = query.where(ZOONIVERSE_SUBJECT_SETS.c.subject_set_id == subject_set_id)
        else:
            query = query.where(ZOONIVERSE_SUBJECT_SETS.c.name == name)
        with self.store.reading() as connection:
            rows = connection.execute(query.order_by(ZOONIVERSE_SUBJECT_SETS.c.id)).mappings().all()
        return dict(rows[-1]) if rows else None

    def set_owner(self, endpoint: str, subject_set_id: int) -> int | None:
        """Return the row id of the EPO project a subject set was recorded
        for.

        Parameters
        ----------
        endpoint : `str`
            Zooniverse endpoint.
        subject_set_id : `int`
            Zooniverse id of the set.

        Returns
        -------
        project_row_id : `int` or `None`
            `None` if the set was never recorded.
        """
        with self.store.reading() as connection:
            return connection.execute(
                sa.select(ZOONIVERSE_SUBJECT_SETS.c.project_id).where(
                    ZOONIVERSE_SUBJECT_SETS.c.endpoint == endpoint,
                    ZOONIVERSE_SUBJECT_SETS.c.subject_set_id == subject_set_id,
                )
            ).scalar()

    def record_set(
        self, project_row_id: int, endpoint: str, zooniverse_project: int, subject_set_id: int, name: str
    ) -> int:
        """Record that a subject set holds a project's subjects (once).

        Parameters
        ----------
        project_row_id : `int`
            Row id of the EPO project.
        endpoint : `str`
            Zooniverse endpoint.
        zooniverse_project : `int`
            Zooniverse project id.
        subject_set_id : `int`
            Zooniverse id of the set.
        name : `str`
            Display name of the set.

        Returns
        -------
        set_row_id : `int`
            Row id of the record.
        """
        with self.store.writing() as connection:
            insert_ignoring_duplicates(
                connection,
                ZOONIVERSE_SUBJECT_SETS,
                [
                    {
                        "project_id": project_row_id,
                        "endpoint": endpoint,
                        "zooniverse_project_id": zooniverse_project,
                        "subject_set_id": subject_set_id,
                        "name": name,
                        "created_at": utc_now_iso(),
                    }
                ],
            )
            return connection.execute(
                sa.select(ZOONIVERSE_SUBJECT_SETS.c.id).where(
                    ZOONIVERSE_SUBJECT_SETS.c.endpoint == endpoint,
                    ZOONIVERSE_SUBJECT_SETS.c.subject_set_id == subject_set_id,
                )
            ).scalar_one()

    def subject_ids(self, set_row_id: int | None) -> dict[str, int | None]:
        """Return the subjects recorded as in a set.

        Parameters
        ----------
        set_row_id : `int` or `None`
            Row id of the set's record (`None`: no record, no subjects).

        Returns
        -------
        subject_ids : `dict` [`str`, `int` or `None`]
            Zooniverse subject id by external id.
        """
        if set_row_id is None:
            return {}
        query = sa.select(ZOONIVERSE_SUBJECTS.c.external_id, ZOONIVERSE_SUBJECTS.c.subject_id).where(
            ZOONIVERSE_SUBJECTS.c.subject_set == set_row_id
        )
        with self.store.reading() as connection:
            return {str(e): s for e, s in connection.execute(query)}

    def record_subjects(
        self, set_row_id: int, method: str, subjects: Iterable[tuple[SubjectRow, int | None]]
    ) -> int:
        """Record subjects as in a set (those already recorded are kept).

        Parameters
        ----------
        set_row_id : `int`
            Row id of the set's record.
        method : `str`
            How they got there: ``import``, ``subjects`` or ``found``.
        subjects : `~collections.abc.Iterable` [`tuple`]
            Each subject's row and Zooniverse subject id.

        Returns
        -------
        n_recorded : `int`
            Subjects recorded now.
        """
        rows = [
            {
                "subject_set": set_row_id,
                "external_id": row.external_id,
                "subject_id": subject_id,
                "method": method,
                "locations": json.dumps(list(row.locations)),
                "recorded_at": utc_now_iso(),
            }
            for row, subject_id in subjects
        ]
        with self.store.writing() as connection:
            return insert_ignoring_duplicates(connection, ZOONIVERSE_SUBJECTS, rows)

    def recorded_subjects(
        self, project_row_id: int, subject_set_name: str | None = None
    ) -> list[dict[str, Any]]:
        """Return what was recorded as sent for a project, given by its row
        id: see `~.subject_sets.SubjectSetPublisher.recorded_subjects`.
        """
        sets, subjects = ZOONIVERSE_SUBJECT_SETS, ZOONIVERSE_SUBJECTS
        query = (
            sa.select(
                sets.c.endpoint,
                sets.c.zooniverse_project_id,
                sets.c.subject_set_id,
                sets.c.name.label("subject_set_name"),
                subjects.c.external_id,
                subjects.c.subject_id,
                subjects.c.method,
                subjects.c.locations,
                subjects.c.recorded_at,
            )
            .join(sets, sets.c.id == subjects.c.subject_set)
            .where(sets.c.project_id == project_row_id)
            .order_by(sets.c.id, subjects.c.external_id)
        )
        if subject_set_name is not None:
            query = query.where(sets.c.name == subject_set_name)
        with self.store.reading() as connection:
            result = [dict(r) for r in connection.execute(query).mappings()]
        for row in result:
            row["locations"] = json.loads(row["locations"])
        return result

    def record_import(self, set_row_id: int, import_id: int, url: str, rows: int) -> None:
        """Record a subject-set import as started.

        Parameters
        ----------
        set_row_id : `int`
            Row id of the set's record.
        import_id : `int`
            Zooniverse id of the import.
        url : `str`
            Public URL of its manifest.
        rows : `int`
            Subjects in the manifest.
        """
        with self.store.writing() as connection:
            insert_ignoring_duplicates(
                connection,
                ZOONIVERSE_IMPORTS,
                [
                    {
                        "subject_set": set_row_id,
                        "import_id": import_id,
                        "source_url": url,
                        "rows": rows,
                        "started_at": utc_now_iso(),
                    }
                ],
            )

    def finish_import(self, set_row_id: int, import_id: int, outcome: str) -> None:
        """Record a subject-set import as finished.

        Parameters
        ----------
        set_row_id : `int`
            Row id of the set's record.
        import_id : `int`
            Zooniverse id of the import.
        outcome : `str`
            ``done``, ``gone`` or ``stalled:<hash of the counts it stopped
            at>`` (`~.set_imports.import_signature`: it is waited for
            again if they change).
        """
        with self.store.writing() as connection:
            connection.execute(
                ZOONIVERSE_IMPORTS.update()
                .where(
                    ZOONIVERSE_IMPORTS.c.subject_set == set_row_id,
                    ZOONIVERSE_IMPORTS.c.import_id == import_id,
                )
                .values(finished_at=utc_now_iso(), outcome=outcome)
            )

    def dead_imports(self, set_row_id: int) -> dict[int, str]:
        """Return the imports into a set declared dead, with the counts
        they had then.

        Parameters
        ----------
        set_row_id : `int`
            Row id of the set's record.

        Returns
        -------
        dead : `dict` [`int`, `str`]
            The outcome (``stalled:<hash of the counts>``) by Zooniverse
            import id.
        """
        with self.store.reading() as connection:
            rows = connection.execute(
                sa.select(ZOONIVERSE_IMPORTS.c.import_id, ZOONIVERSE_IMPORTS.c.outcome).where(
                    ZOONIVERSE_IMPORTS.c.subject_set == set_row_id,
                    ZOONIVERSE_IMPORTS.c.outcome.like("stalled%"),
                )
            )
            return {int(i): str(o) for i, o in rows}

    def replace_subject(self, set_row_id: int, row: SubjectRow, subject_id: int) -> int | None:
        """Record a subject as replaced by a new one (same external id).

        Parameters
        ----------
        set_row_id : `int`
            Row id of the set's record.
        row : `~lsst.epo.zooniverse.export.manifest.SubjectRow`
            The new subject's row.
        subject_id : `int`
            Zooniverse id of the new subject.

        Returns
        -------
        old_subject_id : `int` or `None`
            The subject recorded before (`None` if none was).
        """
        table = ZOONIVERSE_SUBJECTS
        where = (table.c.subject_set == set_row_id, table.c.external_id == row.external_id)
        with self.store.writing() as connection:
            old = connection.execute(sa.select(table.c.subject_id).where(*where)).scalar()
            connection.execute(table.delete().where(*where))
            connection.execute(
                table.insert().values(
                    subject_set=set_row_id,
                    external_id=row.external_id,
                    subject_id=subject_id,
                    method="replacement",
                    locations=json.dumps(list(row.locations)),
                    recorded_at=utc_now_iso(),
                )
            )
        return old

    def unfinished_imports(self, set_row_id: int) -> list[int]:
        """Return the imports into a set not recorded as finished.

        Parameters
        ----------
        set_row_id : `int`
            Row id of the set's record.

        Returns
        -------
        import_ids : `list` [`int`]
            Zooniverse ids of the imports, oldest first.
        """
        with self.store.reading() as connection:
            return list(
                connection.execute(
                    sa.select(ZOONIVERSE_IMPORTS.c.import_id)
                    .where(
                        ZOONIVERSE_IMPORTS.c.subject_set == set_row_id,
                        ZOONIVERSE_IMPORTS.c.finished_at.is_(None),
                    )
                    .order_by(ZOONIVERSE_IMPORTS.c.id)
                )
                .scalars()
                .all()
            )

    def audit(self, actor: str, action: str, project: str, detail: Mapping[str, Any]) -> None:
        """Add a record to the audit log; log (not raise) a failure.

        Parameters
        ----------
        actor : `str`
            Who did it.
        action : `str`
            What was done (``subject_set_synced``, …).
        project : `str`
            EPO project name.
        detail : `~collections.abc.Mapping`
            Details, stored as JSON.
        """
        try:
            with self.store.writing() as connection:
                self.store.audit(
                    connection,
                    actor,
                    action,
                    project=project,
                    detail=json.dumps(detail, sort_keys=True, default=str),
                )
        except Exception as err:  # The database itself may be the problem.
            _LOG.error("Cannot write the audit record %s: %s", action, self.redactor.redact(err))
