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

"""The export service's state database: schema, migrations and connection.

The schema is defined here with SQLAlchemy Core and created or upgraded by
`open_state_database` through numbered migrations (`MIGRATIONS`); the
applied versions are recorded in ``schema_migrations``.  The same code runs
on SQLite (the default, one file) and PostgreSQL (production).  Nobody runs
SQL by hand: a new schema version is a new entry in `MIGRATIONS`.

Tables
------
``projects``
    One row per registered PI project (a Zooniverse project, its owner, the
    Butler repository, collection pattern and dataset types).
``datasets``
    One row per Butler dataset found by a poll (unique per project and
    dataset UUID); the dataset is an operator's *batch*.
``images``
    One row per image of a dataset that passed or failed validation.
``image_index_rows``
    The ``index.csv`` row of each accepted image (schema version 3).
``image_frames``
    The band frames of an accepted image that is a multi-frame subject,
    in subject order (schema version 5).
``zooniverse_imports``
    One row per ``subject_set_imports`` the service started, until it is
    seen finished (schema version 5): a rerun waits for a running import
    instead of starting an overlapping one.
``zooniverse_subject_sets``
    One row per Zooniverse subject set the service created or adopted for
    a project (schema version 4).
``zooniverse_subjects``
    One row per subject known to be in such a set, by ``external_id``,
    with its Zooniverse subject id (schema version 4): what makes sending
    a subject set idempotent.
``image_replacements``
    One row per public picture replaced by a newer approved picture of the
    same object (schema version 6): the old and the new image, and when
    the Zooniverse side replaced the subject (then the old public file is
    removed).
``audit_log``
    Append-only record of every transition: who, when, what, why.  From
    schema version 2 the database itself refuses updates and deletes.
"""

from __future__ import annotations

__all__ = [
    "AUDIT_LOG",
    "DATASETS",
    "DATASET_STATES",
    "IMAGES",
    "IMAGE_FRAMES",
    "IMAGE_INDEX_ROWS",
    "IMAGE_REPLACEMENTS",
    "IMAGE_STATES",
    "MIGRATIONS",
    "PROJECTS",
    "SCHEMA_VERSION",
    "ZOONIVERSE_IMPORTS",
    "ZOONIVERSE_SUBJECTS",
    "ZOONIVERSE_SUBJECT_SETS",
    "StateDatabaseError",
    "insert_ignoring_duplicates",
    "open_state_database",
    "schema_version",
]

import logging
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from ..timestamps import utc_now_iso

_LOG = logging.getLogger(__name__)

DATASET_STATES = ("discovered", "retrieved", "quarantined", "approved", "published", "rejected")
"""States of a dataset (batch).  ``validated`` is recorded in the audit log
but is never a resting state: a validated dataset is quarantined in the
same transaction."""

IMAGE_STATES = ("quarantined", "approved", "publishing", "published", "rejected", "superseded")
"""States of an image.  ``publishing`` marks an image whose public copy may
or may not have been written (a crash between the write and its record);
``superseded``: approved, but another picture of the same catalog object
is the one published (patches overlap), or a newer approved picture of the
same object from a rerun replaced it (``image_replacements``)."""

METADATA = sa.MetaData()

MIGRATIONS_TABLE = sa.Table(
    "schema_migrations",
    METADATA,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Text, nullable=False),
)

PROJECTS = sa.Table(
    "projects",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("zooniverse_project_id", sa.BigInteger, nullable=False),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("contact", sa.Text, nullable=True),
    sa.Column("repo", sa.Text, nullable=False),
    sa.Column("collections", sa.Text, nullable=False),
    sa.Column("dataset_types", sa.Text, nullable=False),
    sa.Column("metadata_policy", sa.String(16), nullable=False),
    sa.Column("registered_at", sa.Text, nullable=False),
    sa.Column("registered_by", sa.Text, nullable=False),
)

DATASETS = sa.Table(
    "datasets",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("dataset_uuid", sa.String(36), nullable=False),
    sa.Column("dataset_type", sa.Text, nullable=False),
    sa.Column("run", sa.Text, nullable=False),
    sa.Column("data_id", sa.Text, nullable=False),
    sa.Column("batch", sa.String(128), nullable=False, unique=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("artifact", sa.Text, nullable=True),
    sa.Column("artifact_sha256", sa.String(64), nullable=True),
    sa.Column("n_images", sa.Integer, nullable=False, server_default="0"),
    sa.Column("n_rejected", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claimed_by", sa.Text, nullable=True),
    sa.Column("claim_expires", sa.Float, nullable=True),
    sa.Column("retrieval_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("discovered_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.UniqueConstraint("project_id", "dataset_uuid", name="datasets_project_uuid"),
    sa.Index("datasets_state", "state"),
)

IMAGES = sa.Table(
    "images",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("entry", sa.String(160), nullable=False),
    sa.Column("object_id", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("size", sa.BigInteger, nullable=True),
    sa.Column("width", sa.Integer, nullable=True),
    sa.Column("height", sa.Integer, nullable=True),
    sa.Column("quarantine_path", sa.Text, nullable=True),
    sa.Column("public_key", sa.Text, nullable=True),
    sa.Column("public_url", sa.Text, nullable=True),
    sa.Column("published_at", sa.Text, nullable=True),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.UniqueConstraint("dataset_id", "entry", name="images_dataset_entry"),
    sa.Index("images_state", "state"),
)

AUDIT_LOG = sa.Table(
    "audit_log",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("project", sa.String(64), nullable=True),
    sa.Column("batch", sa.String(128), nullable=True),
    sa.Column("entry", sa.String(160), nullable=True),
    sa.Column("from_state", sa.String(16), nullable=True),
    sa.Column("to_state", sa.String(16), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Index("audit_log_batch", "batch"),
)


IMAGE_INDEX_ROWS = sa.Table(
    "image_index_rows",
    METADATA,
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), primary_key=True, autoincrement=False),
    sa.Column("index_row", sa.Text, nullable=False),
)
"""The ``index.csv`` row of each accepted image (JSON), from schema
version 3: what manifests and the one-image-per-object choice read."""


IMAGE_FRAMES = sa.Table(
    "image_frames",
    METADATA,
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), primary_key=True, autoincrement=False),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("band", sa.String(16), nullable=False),
    sa.Column("entry", sa.String(255), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("quarantine_path", sa.Text, nullable=False),
    sa.Column("public_key", sa.Text, nullable=False),
)
"""Band frames of an accepted image (schema version 5): the second and
further pictures of a multi-frame subject, published with the image (at
``public_key``, next to it) and never on their own."""

ZOONIVERSE_SUBJECT_SETS = sa.Table(
    "zooniverse_subject_sets",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("zooniverse_project_id", sa.BigInteger, nullable=False),
    sa.Column("subject_set_id", sa.BigInteger, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.UniqueConstraint("endpoint", "subject_set_id", name="zooniverse_subject_sets_endpoint_set"),
    sa.Index("zooniverse_subject_sets_project", "project_id"),
)
"""Zooniverse subject sets of a project (schema version 4), identified by
the API endpoint and the set's id there (staging and production number
their sets independently)."""

ZOONIVERSE_SUBJECTS = sa.Table(
    "zooniverse_subjects",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subject_set", sa.Integer, sa.ForeignKey("zooniverse_subject_sets.id"), nullable=False),
    sa.Column("external_id", sa.Text, nullable=False),
    sa.Column("subject_id", sa.BigInteger, nullable=True),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("locations", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.Text, nullable=False),
    sa.UniqueConstraint("subject_set", "external_id", name="zooniverse_subjects_set_external_id"),
)
"""Subjects sent to (or found in) a subject set (schema version 4): one
row per ``external_id`` and set, with the Zooniverse subject id and the
image URLs (JSON list)."""


ZOONIVERSE_IMPORTS = sa.Table(
    "zooniverse_imports",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subject_set", sa.Integer, sa.ForeignKey("zooniverse_subject_sets.id"), nullable=False),
    sa.Column("import_id", sa.BigInteger, nullable=False),
    sa.Column("source_url", sa.Text, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Text, nullable=False),
    sa.Column("finished_at", sa.Text, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.UniqueConstraint("subject_set", "import_id", name="zooniverse_imports_set_import"),
)
"""Subject-set imports started on Zooniverse (schema version 5); an
import without ``finished_at`` may still be running there."""


IMAGE_REPLACEMENTS = sa.Table(
    "image_replacements",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("object_id", sa.Text, nullable=False),
    sa.Column("old_image_id", sa.Integer, sa.ForeignKey("images.id"), nullable=False, unique=True),
    sa.Column("new_image_id", sa.Integer, sa.ForeignKey("images.id"), nullable=False),
    sa.Column("recorded_at", sa.Text, nullable=False),
    sa.Column("completed_at", sa.Text, nullable=True),
    sa.Column("completed_by", sa.Text, nullable=True),
    sa.Index("image_replacements_pending", "project_id", "completed_at"),
)
"""Public pictures replaced by a newer approved picture of the same object
(schema version 6).  A row without ``completed_at`` is pending: the old
picture's public file stays until the Zooniverse side has replaced the
subject and completed the row."""


class StateDatabaseError(RuntimeError):
    """The state database cannot be opened or is newer than this code."""


def _migration_1(connection: sa.Connection) -> None:
    for table in (PROJECTS, DATASETS, IMAGES, AUDIT_LOG):
        table.create(connection)


_SQLITE_APPEND_ONLY = (
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
)
_POSTGRESQL_APPEND_ONLY = (
    "CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql",
    "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
)


def _migration_2(connection: sa.Connection) -> None:
    statements = {"sqlite": _SQLITE_APPEND_ONLY, "postgresql": _POSTGRESQL_APPEND_ONLY}.get(
        connection.dialect.name
    )
    if statements is None:
        raise StateDatabaseError(f"No append-only audit log for database dialect {connection.dialect.name}.")
    for statement in statements:
        connection.exec_driver_sql(statement)


def _migration_3(connection: sa.Connection) -> None:
    IMAGE_INDEX_ROWS.create(connection)


def _migration_4(connection: sa.Connection) -> None:
    ZOONIVERSE_SUBJECT_SETS.create(connection)
    ZOONIVERSE_SUBJECTS.create(connection)


def _migration_5(connection: sa.Connection) -> None:
    IMAGE_FRAMES.create(connection)
    ZOONIVERSE_IMPORTS.create(connection)


def _migration_6(connection: sa.Connection) -> None:
    IMAGE_REPLACEMENTS.create(connection)
    # Databases created at version 6 or later already have the column
    # (migration 1 creates ``datasets`` as this module defines it).
    columns = {column["name"] for column in sa.inspect(connection).get_columns("datasets")}
    if "retrieval_failures" not in columns:
        connection.exec_driver_sql(
            "ALTER TABLE datasets ADD COLUMN retrieval_failures INTEGER NOT NULL DEFAULT 0"
        )
    # Until version 5 the count was derived from the audited errors of
    # unavailable files; carry it over once.
    failures = (
        sa.select(sa.func.count())
        .select_from(AUDIT_LOG)
        .where(
            AUDIT_LOG.c.action == "error",
            AUDIT_LOG.c.batch == DATASETS.c.batch,
            AUDIT_LOG.c.detail.startswith("RetrievalUnavailableError: "),
        )
        .scalar_subquery()
    )
    connection.execute(DATASETS.update().values(retrieval_failures=failures))


MIGRATIONS: tuple[tuple[int, str, Callable[[sa.Connection], None]], ...] = (
    (1, "projects, datasets, images and audit_log tables", _migration_1),
    (2, "audit_log refuses updates and deletes (triggers)", _migration_2),
    (3, "image_index_rows: the index.csv row of each accepted image", _migration_3),
    (4, "zooniverse_subject_sets and zooniverse_subjects: what was sent to Zooniverse", _migration_4),
    (5, "image_frames (band frames of multi-frame subjects) and zooniverse_imports", _migration_5),
    (6, "image_replacements and datasets.retrieval_failures (a counter, not audit text)", _migration_6),
)
"""Schema migrations: (version, description, function), applied in order."""

SCHEMA_VERSION = MIGRATIONS[-1][0]
"""The schema version this code writes."""


def schema_version(connection: sa.Connection) -> int:
    """Return the schema version of a state database (0 if empty).

    Parameters
    ----------
    connection : `sqlalchemy.Connection`
        A connection to the database.

    Returns
    -------
    version : `int`
        The highest applied migration.
    """
    if not sa.inspect(connection).has_table(MIGRATIONS_TABLE.name):
        return 0
    value = connection.execute(sa.select(sa.func.max(MIGRATIONS_TABLE.c.version))).scalar()
    return int(value or 0)


def _lock_for_migration(connection: sa.Connection) -> None:
    # Two processes opening a new database at once must not both migrate.
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7306510915)")
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is turned off (isolation_level
    # None) so that SQLAlchemy's BEGIN decides; WAL lets readers and one
    # writer work at once, busy_timeout makes writers wait their turn.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    # Writers take the lock at BEGIN, so a transaction never fails half-way
    # with "database is locked" on upgrading a read lock; connections made
    # with the execution option ``epo_read_only`` only read.
    if connection.info.get("in_migration"):
        return
    if connection.get_execution_options().get("epo_read_only"):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _create_engine(url: sa.URL, echo: bool) -> sa.Engine:
    """Create the engine of a SQLite or PostgreSQL state database."""
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if url.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = sa.create_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _migrate(connection: sa.Connection, shown: str, wanted: int, upgrade: bool) -> None:
    """Apply the migrations up to version ``wanted`` (the caller commits)."""
    _lock_for_migration(connection)
    current = schema_version(connection)
    if current > SCHEMA_VERSION:
        raise StateDatabaseError(
            f"State database {shown} has schema version {current}; this software knows "
            f"versions up to {SCHEMA_VERSION}. Upgrade lsst-epo-zooniverse."
        )
    if current < wanted and not upgrade:
        raise StateDatabaseError(
            f"State database {shown} has schema version {current}, not {wanted}; "
            "run any zooniverse-epo command without --no-upgrade to migrate it."
        )
    if current == 0:
        MIGRATIONS_TABLE.create(connection, checkfirst=True)
    for version, description, migrate in MIGRATIONS:
        if current < version <= wanted:
            _LOG.info("Migrating state database %s to version %d: %s", shown, version, description)
            migrate(connection)
            connection.execute(
                MIGRATIONS_TABLE.insert().values(
                    version=version, description=description, applied_at=utc_now_iso()
                )
            )


def open_state_database(
    url: str | sa.URL, *, upgrade: bool = True, target_version: int | None = None, echo: bool = False
) -> sa.Engine:
    """Connect to a state database, creating or upgrading its schema.

    Parameters
    ----------
    url : `str` or `sqlalchemy.URL`
        SQLAlchemy URL: ``sqlite:///path`` or
        ``postgresql+psycopg://user@host/db``.
    upgrade : `bool`, optional
        Apply missing migrations.  If `False`, a database that is not at
        the current version is an error.
    target_version : `int`, optional
        Stop after this migration (tests of the upgrade path).
    echo : `bool`, optional
        Log SQL statements.

    Returns
    -------
    engine : `sqlalchemy.Engine`
        The engine.

    Raises
    ------
    StateDatabaseError
        Raised if the database cannot be reached, its schema is newer than
        this code, or it needs an upgrade and ``upgrade`` is `False`.  The
        message never contains the password.
    """
    url = sa.make_url(url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise StateDatabaseError(f"Unsupported state database {shown}: use sqlite:/// or postgresql://.")
    engine = _create_engine(url, echo)
    wanted = SCHEMA_VERSION if target_version is None else target_version
    try:
        with engine.connect() as connection:
            connection.info["in_migration"] = True
            try:
                _migrate(connection, shown, wanted, upgrade)
                connection.commit()
            finally:
                connection.info["in_migration"] = False
    except sa.exc.SQLAlchemyError as err:
        engine.dispose()
        # The DBAPI message can quote connection parameters; keep only the
        # exception class and the first line, with the password removed.
        message = str(getattr(err, "orig", err)).splitlines()[0] if str(err) else type(err).__name__
        if url.password:
            message = message.replace(str(url.password), "***")
        raise StateDatabaseError(f"Cannot open state database {shown}: {message}") from None
    return engine


def insert_ignoring_duplicates(connection: sa.Connection, table: sa.Table, rows: list[Mapping[str, Any]]):
    """Insert rows, skipping any that violate a unique constraint.

    Parameters
    ----------
    connection : `sqlalchemy.Connection`
        Connection in a transaction.
    table : `sqlalchemy.Table`
        Table to insert into.
    rows : `list` [`~collections.abc.Mapping`]
        Rows to insert.

    Returns
    -------
    inserted : `int`
        Number of rows actually inserted.
    """
    if not rows:
        return 0
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # RETURNING tells which rows went in; rowcount is not reliable for
    # multi-row statements on every driver.
    inserted = 0
    for row in rows:
        statement = insert(table).values(**row).on_conflict_do_nothing().returning(table.c.id)
        inserted += len(connection.execute(statement).all())
    return inserted
