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

"""Tests of the state-database fixtures: ``state_db_url`` on SQLite and on
a throw-away PostgreSQL server (tests/postgres_server.py).
"""

import fcntl
import os

import postgres_server as pg
import pytest
import sqlalchemy as sa


def _identity(engine: sa.Engine) -> str:
    """Return something that names the database behind an engine."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            name = connection.execute(sa.text("SELECT current_database()")).scalar_one()
        return f"postgresql:{engine.url.port}/{name}"
    return f"sqlite:{engine.url.database}"


def _seen_before(tmp_path_factory, identity: str) -> list[str]:
    """Record ``identity`` in a file shared by all pytest-xdist workers of
    this session and return what earlier tests recorded.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-N/, shared by the popen-gwN/ directories.
    with open(base / "state_db_identities.txt", "a+") as stream:
        fcntl.flock(stream, fcntl.LOCK_EX)
        stream.seek(0)
        seen = stream.read().splitlines()
        stream.write(identity + "\n")
    return seen


@pytest.mark.parametrize("round", [1, 2, 3])
def test_each_test_gets_its_own_empty_writable_database(state_db_url, round, tmp_path_factory):
    engine = sa.create_engine(state_db_url)
    try:
        assert engine.dialect.name == sa.make_url(state_db_url).get_backend_name()
        # Every round makes the same table: a shared database would fail here.
        assert sa.inspect(engine).get_table_names() == []
        metadata = sa.MetaData()
        widgets = sa.Table(
            "widgets",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(50), nullable=False),
        )
        metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(widgets.insert(), [{"id": 1, "name": "left"}, {"id": 2, "name": "right"}])
        with engine.connect() as connection:
            rows = connection.execute(sa.select(widgets.c.name).order_by(widgets.c.id)).scalars().all()
        assert rows == ["left", "right"]
        identity = _identity(engine)
    finally:
        engine.dispose()
    assert identity not in _seen_before(tmp_path_factory, identity)


def test_postgres_url_hides_its_password(postgres_server):
    url = postgres_server.url("some_db")
    parsed = sa.make_url(url)
    assert parsed.drivername == "postgresql+psycopg"
    assert parsed.username == "epo"
    assert parsed.host == "127.0.0.1" and parsed.port == postgres_server.port
    assert parsed.database == "some_db"
    password = parsed.password
    assert password and len(password) >= 16
    hidden = parsed.render_as_string(hide_password=True)
    assert password not in hidden and "***" in hidden
    assert password not in repr(sa.create_engine(url))


# Only the PostgreSQL variant: indirect parametrisation overrides the
# fixture's own ["sqlite", "postgresql"].
@pytest.mark.parametrize("state_db_url", ["postgresql"], indirect=True)
def test_password_is_not_in_log_or_repr(postgres_server, state_db_url):
    password = sa.make_url(state_db_url).password
    assert password not in repr(postgres_server)
    # Log in, fail a statement (the server logs its text), fail to log in.
    engine = sa.create_engine(state_db_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE t (x integer)"))
            with pytest.raises(sa.exc.ProgrammingError):
                connection.execute(sa.text("SELECT x FROM no_such_table"))
        wrong = sa.make_url(state_db_url).set(password="not-the-password")
        with pytest.raises(sa.exc.OperationalError):
            sa.create_engine(wrong).connect()
    finally:
        engine.dispose()
    log = postgres_server.log_path.read_text()
    assert "no_such_table" in log and 'password authentication failed for user "epo"' in log
    assert password not in log


def test_password_never_reaches_server_log(postgres_server):
    # The server log must not hold the role's password, even though the role
    # was created and databases made and dropped.
    password = sa.make_url(postgres_server.url("postgres")).password
    postgres_server.create_database("log_probe")
    postgres_server.drop_database("log_probe")
    assert password not in postgres_server.log_path.read_text()
    assert password not in repr(postgres_server)


def test_database_is_dropped_even_with_open_connections(postgres_server):
    postgres_server.create_database("held_open")
    engine = sa.create_engine(postgres_server.url("held_open"))
    connection = engine.connect()
    try:
        postgres_server.drop_database("held_open")
        with pytest.raises(sa.exc.OperationalError):
            sa.create_engine(postgres_server.url("held_open")).connect()
    finally:
        connection.invalidate()
        engine.dispose()


def test_database_names_are_checked(postgres_server):
    with pytest.raises(ValueError):
        postgres_server.create_database('bad"; DROP ROLE epo; --')


def test_server_lifecycle_and_failure_message(monkeypatch):
    if os.environ.get("EPO_ZOONIVERSE_SKIP_POSTGRES") == "1":
        pytest.skip("EPO_ZOONIVERSE_SKIP_POSTGRES=1")
    if pg.find_postgres_bin_dir() is None:
        pytest.fail("PostgreSQL is not installed: run scripts/setup_env.sh --test-tools", pytrace=False)
    with pg.ThrowawayPostgres() as server:
        directory = server.directory
        assert server.running and directory.is_dir()
    assert not server.running and not directory.exists()
    server.stop()  # A second stop does nothing.

    # A setting the server rejects: a clear error, and nothing left behind.
    monkeypatch.setitem(pg._SPEED_SETTINGS, "shared_buffers", "'plenty'")
    server = pg.ThrowawayPostgres(start=False)
    with pytest.raises(RuntimeError, match="(?s)did not start.*Server log tail:.*shared_buffers"):
        server.start()
    assert server.directory is None and not server.running
