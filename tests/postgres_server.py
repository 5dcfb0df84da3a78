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

"""A throw-away PostgreSQL server for the state-database tests.

The server runs from a fresh temporary directory on 127.0.0.1 and a free
port, and is gone (process and files) after `ThrowawayPostgres.stop`.
PostgreSQL refuses to run as root, so as root every server command runs as
the ``postgres`` user (``runuser -u postgres --``).  Passwords are random,
never put on a command line, and never sent to the server in clear text
(roles get a SCRAM verifier computed by libpq), so they cannot end up in
the server log.
"""

from __future__ import annotations

__all__ = ["PostgresNotFoundError", "ThrowawayPostgres", "find_postgres_bin_dir"]

import atexit
import contextlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

# The role the tests connect as, and the server's superuser.
_ROLE = "epo"
_SUPERUSER = "postgres"
# The OS account that runs the server when we are root.
_SERVER_ACCOUNT = "postgres"
_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Settings for speed: a throw-away server never needs to survive a crash.
_SPEED_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
_START_ATTEMPTS = 3


class PostgresNotFoundError(RuntimeError):
    """The PostgreSQL server programs (initdb, pg_ctl) are not installed."""


def find_postgres_bin_dir() -> Path | None:
    """Return the directory holding ``initdb`` and ``pg_ctl``, or `None`.

    ``PATH`` is searched first, then the Debian layout
    ``/usr/lib/postgresql/<version>/bin``, highest version first.
    """
    initdb = shutil.which("initdb")
    if initdb:
        # Use pg_ctl from the same installation as initdb.
        for candidate in (Path(initdb).parent, Path(initdb).resolve().parent):
            if os.access(candidate / "pg_ctl", os.X_OK):
                return candidate
    versions = []
    for bin_dir in Path("/usr/lib/postgresql").glob("*/bin"):
        if os.access(bin_dir / "initdb", os.X_OK) and os.access(bin_dir / "pg_ctl", os.X_OK):
            key = tuple(int(part) if part.isdigit() else -1 for part in bin_dir.parent.name.split("."))
            versions.append((key, bin_dir))
    return max(versions)[1] if versions else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _conf_string(value: str) -> str:
    """Quote a value for postgresql.conf."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class ThrowawayPostgres:
    """Start a private PostgreSQL server and remove it afterwards.

    Parameters
    ----------
    bin_dir : `str` or `pathlib.Path`, optional
        Directory with ``initdb`` and ``pg_ctl``; found with
        `find_postgres_bin_dir` when not given.
    start : `bool`, optional
        Start the server now (the default); otherwise call `start`.

    Raises
    ------
    PostgresNotFoundError
        Raised if the server programs cannot be found, or if running as
        root and there is no ``postgres`` account to run the server as.
    RuntimeError
        Raised if the server cannot be set up or started; the message
        ends with the tail of the server log.

    Notes
    -----
    Use it as a context manager, or call `stop` when done::

        with ThrowawayPostgres() as server:
            server.create_database("scratch")
            engine = sqlalchemy.create_engine(server.url("scratch"))
    """

    def __init__(self, bin_dir: str | Path | None = None, *, start: bool = True) -> None:
        found = Path(bin_dir) if bin_dir is not None else find_postgres_bin_dir()
        if found is None:
            raise PostgresNotFoundError(
                "PostgreSQL server programs (initdb, pg_ctl) were not found on PATH or under "
                "/usr/lib/postgresql/*/bin."
            )
        self.bin_dir = found
        self._account = None
        if os.geteuid() == 0:
            try:
                self._account = pwd.getpwnam(_SERVER_ACCOUNT)
            except KeyError:
                raise PostgresNotFoundError(
                    f"PostgreSQL refuses to run as root and there is no {_SERVER_ACCOUNT!r} account "
                    "to run it as (the Debian 'postgresql' package creates it)."
                ) from None
            if shutil.which("runuser") is None:
                raise PostgresNotFoundError("runuser (util-linux) is needed to run PostgreSQL as root.")
        self.directory: Path | None = None
        self.port: int | None = None
        self._superuser_password = secrets.token_urlsafe(24)
        self._password = secrets.token_urlsafe(24)
        self._admin = None
        if start:
            self.start()

    def __repr__(self) -> str:
        state = f"port={self.port}" if self.running else "stopped"
        return f"ThrowawayPostgres({state}, directory={str(self.directory)!r})"

    def __enter__(self) -> ThrowawayPostgres:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server has been started and not stopped (`bool`)."""
        return self.port is not None

    @property
    def data_dir(self) -> Path:
        """The server's data directory (`pathlib.Path`)."""
        return self._require_directory() / "data"

    @property
    def socket_dir(self) -> Path:
        """The directory holding the server's Unix socket (`pathlib.Path`)."""
        return self._require_directory()

    @property
    def log_path(self) -> Path:
        """The server log file (`pathlib.Path`)."""
        return self._require_directory() / "server.log"

    def start(self) -> None:
        """Create the cluster, start the server and create the role.

        Raises
        ------
        RuntimeError
            Raised if any step fails; the server is then cleaned up.
        """
        if self.running:
            return
        try:
            self._make_directory()
            self._initdb()
            for attempt in range(_START_ATTEMPTS):
                port = _free_port()
                self._configure(port)
                if self._pg_ctl_start():
                    break
                # Another process may have taken the port between our probe
                # and the server's bind: try again on a new one.
                if attempt + 1 == _START_ATTEMPTS or "already in use" not in self.log_tail():
                    raise RuntimeError(
                        f"PostgreSQL did not start (pg_ctl in {self.bin_dir}).\n"
                        f"Server log tail:\n{self.log_tail()}"
                    )
            self.port = port
            atexit.register(self.stop)
            self._create_role()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (immediate mode) and remove its directory.

        Safe to call more than once.
        """
        atexit.unregister(self.stop)
        if self._admin is not None:
            try:
                self._admin.close()
            except Exception:
                pass
            self._admin = None
        if self.directory is not None:
            if (self.data_dir / "postmaster.pid").exists():
                self._run(
                    [self._tool("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate", "-w"],
                    check=False,
                )
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None
        self.port = None

    def url(self, database: str) -> str:
        """Return the SQLAlchemy URL of ``database`` for the ``epo`` role.

        Parameters
        ----------
        database : `str`
            Database name.

        Returns
        -------
        url : `str`
            ``postgresql+psycopg://epo:<password>@127.0.0.1:<port>/<database>``;
            it contains the password, so do not log it.
        """
        if not self.running:
            raise RuntimeError("The PostgreSQL server is not running.")
        return (
            f"postgresql+psycopg://{_ROLE}:{quote(self._password, safe='')}"
            f"@127.0.0.1:{self.port}/{quote(database, safe='')}"
        )

    def create_database(self, name: str) -> None:
        """Create an empty database owned by the ``epo`` role.

        Parameters
        ----------
        name : `str`
            Database name: lower-case letters, digits and underscores.
        """
        from psycopg import sql

        self._execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(self._check_name(name)), sql.Identifier(_ROLE)
            )
        )

    def create_registry_database(self, name: str) -> str:
        """Create an empty database for a Butler registry and return its
        URL.

        daf_butler's PostgreSQL registry needs the ``btree_gist``
        extension; it is a trusted extension, so the database's owner (the
        ``epo`` role) creates it.

        Parameters
        ----------
        name : `str`
            Database name: lower-case letters, digits and underscores.

        Returns
        -------
        url : `str`
            The database's SQLAlchemy URL, as `url` gives it (it contains
            the password, so do not log it).
        """
        import sqlalchemy

        self.create_database(name)
        url = self.url(name)
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.begin() as connection:
                connection.execute(sqlalchemy.text("CREATE EXTENSION btree_gist"))
        finally:
            engine.dispose()
        return url

    @contextlib.contextmanager
    def temporary_registry_database(self, prefix: str) -> Iterator[str]:
        """Create a registry database of a new name, as
        `create_registry_database`, yield its URL and drop it on exit.

        Parameters
        ----------
        prefix : `str`
            Start of the name (lower-case letters, digits, underscores);
            a random suffix makes it unique.

        Yields
        ------
        url : `str`
            The database's SQLAlchemy URL.
        """
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        url = self.create_registry_database(name)
        try:
            yield url
        finally:
            self.drop_database(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, even with clients still connected to it.

        Parameters
        ----------
        name : `str`
            Database name; nothing happens if it does not exist.
        """
        from psycopg import sql

        name = self._check_name(name)
        admin = self._connection()
        if admin.info.server_version >= 130000:
            self._execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            return
        # Before PostgreSQL 13: block new connections, end the open ones.
        self._execute(
            sql.SQL("UPDATE pg_database SET datallowconn = false WHERE datname = {}").format(
                sql.Literal(name)
            )
        )
        self._execute(
            sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {}").format(
                sql.Literal(name)
            )
        )
        self._execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    def log_tail(self, lines: int = 30) -> str:
        """Return the last ``lines`` lines of the server log (`str`)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, RuntimeError):
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:]) or "(server log is empty)"

    # Internals.

    def _require_directory(self) -> Path:
        if self.directory is None:
            raise RuntimeError("The PostgreSQL server has no directory (not started, or stopped).")
        return self.directory

    def _tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _run(self, command: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
        """Run a server program, as the server account when we are root."""
        program = Path(command[0]).name
        if self._account is not None:
            command = ["runuser", "-u", self._account.pw_name, "--", *command]
        # The server account may not be able to enter our working directory.
        result = subprocess.run(
            command,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "LC_ALL": "C"},
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{program} failed "
                f"(exit {result.returncode}):\n{result.stdout.strip()}\n"
                f"Server log tail:\n{self.log_tail()}"
            )
        return result

    def _make_directory(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="epo-postgres-"))
        if self._account is not None:
            os.chown(self.directory, self._account.pw_uid, self._account.pw_gid)
        # Private to the server's account: it holds the data directory,
        # the Unix socket, the log and (briefly) the password file.
        os.chmod(self.directory, 0o700)
        if self._account is not None:
            probe = subprocess.run(
                ["runuser", "-u", self._account.pw_name, "--", "test", "-w", str(self.directory)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
            )
            if probe.returncode != 0:
                raise RuntimeError(
                    f"The {self._account.pw_name!r} account cannot use {self.directory}: a parent "
                    "directory is closed to it; set TMPDIR to a directory it can reach (e.g. /tmp)."
                )

    def _initdb(self) -> None:
        pwfile = self.directory / "superuser.pw"
        descriptor = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            stream.write(self._superuser_password + "\n")
        if self._account is not None:
            os.chown(pwfile, self._account.pw_uid, self._account.pw_gid)
        try:
            self._run(
                [
                    self._tool("initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    _SUPERUSER,
                    "--pwfile",
                    str(pwfile),
                    "--auth",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _configure(self, port: int) -> None:
        settings = {
            "listen_addresses": _conf_string("127.0.0.1"),
            "port": str(port),
            "unix_socket_directories": _conf_string(str(self.socket_dir)),
            **_SPEED_SETTINGS,
        }
        # postgresql.auto.conf is read last, so these win; rewriting it on
        # each attempt keeps a single port setting.
        text = "# Written by the epo_zooniverse tests (tests/postgres_server.py).\n"
        text += "".join(f"{key} = {value}\n" for key, value in settings.items())
        (self.data_dir / "postgresql.auto.conf").write_text(text)

    def _pg_ctl_start(self) -> bool:
        result = self._run(
            [
                self._tool("pg_ctl"),
                "start",
                "--pgdata",
                str(self.data_dir),
                "--log",
                str(self.log_path),
                "--wait",
                "--timeout",
                "60",
            ],
            check=False,
        )
        return result.returncode == 0

    def _connection(self):
        """Return the superuser's connection (autocommit) to ``postgres``."""
        import psycopg

        if self._admin is None or self._admin.closed:
            if not self.running:
                raise RuntimeError("The PostgreSQL server is not running.")
            self._admin = psycopg.connect(
                host="127.0.0.1",
                port=self.port,
                user=_SUPERUSER,
                password=self._superuser_password,
                dbname="postgres",
                autocommit=True,
                connect_timeout=30,
            )
        return self._admin

    def _execute(self, statement) -> None:
        self._connection().execute(statement)

    def _create_role(self) -> None:
        from psycopg import sql

        admin = self._connection()
        # Send a SCRAM verifier, not the password: the server never sees it.
        verifier = admin.pgconn.encrypt_password(
            self._password.encode(), _ROLE.encode(), b"scram-sha-256"
        ).decode()
        self._execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(_ROLE), sql.Literal(verifier)
            )
        )

    @staticmethod
    def _check_name(name: str) -> str:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(
                f"Database name {name!r} must be lower-case letters, digits and underscores (<= 63)."
            )
        return name
