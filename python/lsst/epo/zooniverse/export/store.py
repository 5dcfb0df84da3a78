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
"""The EPO state database as the service and its collaborators use it:
connections for reading and writing, and the append-only audit log
(including the record of unexpected failures).

The schema and migrations are in `.state`; this module is the one door
to them for other modules (the subject-set publisher, the review page,
the reports), so that no module reaches into another's private members.
"""

from __future__ import annotations

__all__ = ["AUDIT_FIELDS", "StateStore"]

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ..timestamps import utc_now_iso
from .redaction import Redactor
from .state import AUDIT_LOG, open_state_database

_LOG = logging.getLogger(__name__)

AUDIT_FIELDS = ("actor", "action", "project", "batch", "entry", "from_state", "to_state", "detail")
"""Columns of an audit record that callers give (``at`` is added)."""


class StateStore:
    """Connections to the state database and its audit log.

    Parameters
    ----------
    url : `sqlalchemy.engine.URL` or `str`
        The database (created and migrated if needed).
    redactor : `~.redaction.Redactor`
        Masks secrets in audit actors and details.
    """

    def __init__(self, url: sa.URL | str, redactor: Redactor) -> None:
        self.engine = open_state_database(url)
        self.redactor = redactor

    def reading(self) -> sa.Connection:
        """Return a connection for reads only.

        Returns
        -------
        connection : `sqlalchemy.Connection`
            On SQLite its transactions do not take the write lock (see
            `.state.open_state_database`).  Use it as a context manager.
        """
        return self.engine.connect().execution_options(epo_read_only=True)

    def writing(self) -> Any:
        """Return a transaction context (``with store.writing() as c``)
        that commits on success and rolls back on error.
        """
        return self.engine.begin()

    def audit(self, connection: sa.Connection, actor: str, action: str, **fields: Any) -> None:
        """Append one record to the audit log.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction the record belongs to.
        actor : `str`
            Who did it (redacted).
        action : `str`
            What happened.
        **fields
            Other `AUDIT_FIELDS` (``project``, ``batch``, ``entry``,
            ``from_state``, ``to_state``, ``detail``).
        """
        self.audit_many(connection, [{"actor": actor, "action": action, **fields}])

    def audit_many(self, connection: sa.Connection, records: Sequence[Mapping[str, Any]]) -> None:
        """Append records to the audit log, all with the same time.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction the records belong to.
        records : `~collections.abc.Sequence` [`~collections.abc.Mapping`]
            Each with some of `AUDIT_FIELDS`; unknown keys are refused.
        """
        if not records:
            return
        at = utc_now_iso()
        rows = []
        for record in records:
            unknown = set(record) - set(AUDIT_FIELDS)
            if unknown:
                raise ValueError(f"Unknown audit fields {sorted(unknown)}; known: {list(AUDIT_FIELDS)}.")
            row = {key: record.get(key) for key in AUDIT_FIELDS}
            row["at"] = at
            row["actor"] = self.redactor.redact(row["actor"])
            if row["detail"] is not None:
                row["detail"] = self.redactor.redact(row["detail"])
            rows.append(row)
        connection.execute(AUDIT_LOG.insert(), rows)

    def audited(self, connection: sa.Connection, action: str, project: str, detail: str) -> bool:
        """Tell whether the audit log has a record of this action, project
        and detail.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction to read in.
        action : `str`
            The action.
        project : `str`
            The project.
        detail : `str`
            The detail, as recorded (redacted).

        Returns
        -------
        audited : `bool`
            Whether there is such a record.
        """
        found = connection.execute(
            sa.select(AUDIT_LOG.c.id)
            .where(AUDIT_LOG.c.action == action, AUDIT_LOG.c.project == project, AUDIT_LOG.c.detail == detail)
            .limit(1)
        ).first()
        return found is not None

    def record_failure(self, actor: str, project: str, batch: str | None, err: BaseException) -> str:
        """Log an unexpected failure and append it to the audit log.

        Parameters
        ----------
        actor : `str`
            Who failed (``poll@<worker>``, ``publish@<worker>``).
        project : `str`
            The project being worked on.
        batch : `str` or `None`
            The batch being worked on, if any.
        err : `BaseException`
            The failure.

        Returns
        -------
        line : `str`
            ``<project>[/<batch>]: <error>`` (redacted), for a summary's
            list of errors.
        """
        message = self.redactor.redact(f"{type(err).__name__}: {err}")
        _LOG.error("%s%s: %s", project, f" batch {batch}" if batch else "", message)
        _LOG.debug("Traceback", exc_info=err)
        try:
            with self.writing() as connection:
                self.audit(connection, actor, "error", project=project, batch=batch, detail=message)
        except Exception as audit_err:  # The database itself may be the problem.
            _LOG.error("Cannot record the error in the audit log: %s", self.redactor.redact(audit_err))
        return f"{project}{'/' + batch if batch else ''}: {message}"

    def dispose(self) -> None:
        """Release the database connections."""
        self.engine.dispose()
