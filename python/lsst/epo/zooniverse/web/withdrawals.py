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

"""PIs' requests to withdraw a picture, a batch or a whole project: kept
for the operators, who act on them and close them as done or refused (the
export service has no withdrawal operation yet).
"""

from __future__ import annotations

__all__ = ["WITHDRAWAL_STATES", "WithdrawalRequests"]

from typing import Any

import sqlalchemy as sa

from ..timestamps import utc_now_iso
from .tables import WITHDRAWALS, create_web_tables, reading

WITHDRAWAL_STATES = ("open", "done", "refused")
"""States of a request."""


class WithdrawalRequests:
    """The withdrawal requests table.

    Parameters
    ----------
    engine : `sqlalchemy.Engine`
        The export service's database (the table is created if missing).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        create_web_tables(engine)

    def request(
        self, username: str, project: str, reason: str, *, batch: str | None = None, entry: str | None = None
    ) -> dict[str, Any]:
        """Record a request.

        Parameters
        ----------
        username : `str`
            The PI asking.
        project : `str`
            Their project.
        reason : `str`
            Why.
        batch, entry : `str`, optional
            One batch, or one picture of it; the whole project if neither.

        Returns
        -------
        request : `dict`
            The request as stored.
        """
        values = {
            "username": username,
            "project": project,
            "batch": batch,
            "entry": entry,
            "reason": reason,
            "state": "open",
            "created_at": utc_now_iso(),
            "resolved_by": None,
            "resolved_at": None,
            "note": None,
        }
        with self.engine.begin() as connection:
            result = connection.execute(WITHDRAWALS.insert().values(**values))
            values["id"] = int(result.inserted_primary_key[0])
        return values

    def resolve(self, request_id: int, state: str, operator: str, note: str | None = None) -> dict[str, Any]:
        """Close an open request.

        Parameters
        ----------
        request_id : `int`
            The request.
        state : `str`
            ``done`` or ``refused``.
        operator : `str`
            Who closes it.
        note : `str`, optional
            What was done, or why not (the PI sees it).

        Returns
        -------
        request : `dict`
            The request as stored now.

        Raises
        ------
        LookupError
            Raised if there is no open request with this id.
        ValueError
            Raised for a state other than ``done`` and ``refused``.
        """
        if state not in WITHDRAWAL_STATES[1:]:
            raise ValueError(f"A request is closed as {' or '.join(WITHDRAWAL_STATES[1:])}, not {state!r}.")
        with self.engine.begin() as connection:
            result = connection.execute(
                WITHDRAWALS.update()
                .where(WITHDRAWALS.c.id == request_id, WITHDRAWALS.c.state == "open")
                .values(state=state, resolved_by=operator, resolved_at=utc_now_iso(), note=note)
            )
            if result.rowcount != 1:
                raise LookupError(f"No open withdrawal request {request_id}.")
            row = (
                connection.execute(sa.select(WITHDRAWALS).where(WITHDRAWALS.c.id == request_id))
                .mappings()
                .one()
            )
        return dict(row)

    def list(self, *, username: str | None = None, project: str | None = None) -> list[dict[str, Any]]:
        """List requests, oldest first.

        Parameters
        ----------
        username : `str`, optional
            Only this PI's.
        project : `str`, optional
            Only this project's.

        Returns
        -------
        requests : `list` [`dict`]
            The requests.
        """
        query = sa.select(WITHDRAWALS).order_by(WITHDRAWALS.c.id)
        if username is not None:
            query = query.where(WITHDRAWALS.c.username == username)
        if project is not None:
            query = query.where(WITHDRAWALS.c.project == project)
        with reading(self.engine) as connection:
            return [dict(row) for row in connection.execute(query).mappings()]
