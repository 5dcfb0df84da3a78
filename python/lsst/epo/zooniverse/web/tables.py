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

"""The web application's own tables, in the export service's database but
with their own `sqlalchemy.MetaData`: bearer tokens, the PIs' inbox and
their withdrawal requests.  Names start with ``web_`` so they never meet
the export service's tables.
"""

from __future__ import annotations

__all__ = [
    "INBOX",
    "TOKENS",
    "WEB_METADATA",
    "WEB_TABLES_LOCK_KEY",
    "WITHDRAWALS",
    "create_web_tables",
    "reading",
]

import sqlalchemy as sa

WEB_METADATA = sa.MetaData()
"""The web application's schema."""

TOKENS = sa.Table(
    "web_tokens",
    WEB_METADATA,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Text, nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
)

INBOX = sa.Table(
    "web_inbox",
    WEB_METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("items", sa.Text, nullable=False),
    sa.Column("read_at", sa.Text, nullable=True),
)

WITHDRAWALS = sa.Table(
    "web_withdrawals",
    WEB_METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("batch", sa.String(128), nullable=True),
    sa.Column("entry", sa.String(160), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("resolved_by", sa.String(64), nullable=True),
    sa.Column("resolved_at", sa.Text, nullable=True),
    sa.Column("note", sa.Text, nullable=True),
)


WEB_TABLES_LOCK_KEY = 7306510916
"""PostgreSQL advisory lock key taken while the web tables are created (the
export state's migrations use 7306510915)."""


def create_web_tables(engine: sa.Engine) -> None:
    """Create the web application's tables where they are missing.

    Parameters
    ----------
    engine : `sqlalchemy.Engine`
        The export service's database.

    Notes
    -----
    Several processes (web replicas, workers) may open a new database at
    once: on PostgreSQL a transaction-level advisory lock makes them create
    the tables one after the other (otherwise the loser's ``CREATE TABLE``
    fails on the catalogue's unique index); on SQLite the service's engine
    takes the write lock at ``BEGIN``.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WEB_TABLES_LOCK_KEY})")
        WEB_METADATA.create_all(connection, checkfirst=True)


def reading(engine: sa.Engine) -> sa.Connection:
    """Return a connection for reads only.

    Parameters
    ----------
    engine : `sqlalchemy.Engine`
        The export service's database engine.

    Returns
    -------
    connection : `sqlalchemy.Connection`
        With the export service's ``epo_read_only`` execution option: on
        SQLite its transactions do not take the write lock (as
        `lsst.epo.zooniverse.export.store.StateStore.reading`), so reads
        of the web tables neither wait for a worker's writes nor block
        them.  Use it as a context manager.
    """
    return engine.connect().execution_options(epo_read_only=True)
