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

"""The PIs' notification inbox: one message per digest (`.digest`), each
listing the events of one notification cycle, with mark-as-read.
"""

from __future__ import annotations

__all__ = ["Inbox"]

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ..timestamps import utc_now_iso
from .tables import INBOX, create_web_tables, reading


class Inbox:
    """The inbox table.

    Parameters
    ----------
    engine : `sqlalchemy.Engine`
        The export service's database (the table is created if missing).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        create_web_tables(engine)

    def add(self, username: str, summary: str, items: Sequence[Mapping[str, Any]]) -> int:
        """Put a message in a user's inbox.

        Parameters
        ----------
        username : `str`
            The PI.
        summary : `str`
            One line.
        items : `~collections.abc.Sequence` [`~collections.abc.Mapping`]
            The events (JSON-serialisable).

        Returns
        -------
        id : `int`
            The message's id.
        """
        with self.engine.begin() as connection:
            result = connection.execute(
                INBOX.insert().values(
                    username=username,
                    created_at=utc_now_iso(),
                    summary=summary,
                    items=json.dumps([dict(item) for item in items], default=str),
                )
            )
            return int(result.inserted_primary_key[0])

    def messages(
        self, username: str, *, unread_only: bool = False, offset: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Return a user's messages, newest first.

        Parameters
        ----------
        username : `str`
            The PI.
        unread_only : `bool`, optional
            Only the unread ones.
        offset, limit : `int`, optional
            Paging.

        Returns
        -------
        messages : `list` [`dict`]
            ``id, created_at, summary, items, read`` (``items`` a list).
        """
        query = sa.select(INBOX).where(INBOX.c.username == username)
        if unread_only:
            query = query.where(INBOX.c.read_at.is_(None))
        query = query.order_by(INBOX.c.id.desc()).offset(offset).limit(limit)
        with reading(self.engine) as connection:
            rows = connection.execute(query).mappings().all()
        return [
            {
                "id": row["id"],
                "created_at": row["created_at"],
                "summary": row["summary"],
                "items": json.loads(row["items"]),
                "read": row["read_at"] is not None,
            }
            for row in rows
        ]

    def mark_read(self, username: str, ids: Iterable[int] | None = None) -> int:
        """Mark a user's messages as read.

        Parameters
        ----------
        username : `str`
            The PI; other users' messages are never touched.
        ids : `~collections.abc.Iterable` [`int`], optional
            These messages; all of the user's if not given.

        Returns
        -------
        count : `int`
            How many unread messages became read.
        """
        query = INBOX.update().where(INBOX.c.username == username, INBOX.c.read_at.is_(None))
        if ids is not None:
            query = query.where(INBOX.c.id.in_(list(ids)))
        with self.engine.begin() as connection:
            return connection.execute(query.values(read_at=utc_now_iso())).rowcount
