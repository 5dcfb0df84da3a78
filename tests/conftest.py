# This file is part of epo_zooniverse.
#
# See the COPYRIGHT file at the top-level directory of this distribution.
# Use of this source code is governed by the GPLv3 (see LICENSE).

"""pytest configuration: make the shared helpers importable and their
fixtures available to every test module.
"""

import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from postgres_server import PostgresNotFoundError, ThrowawayPostgres
from zooniverse_test_utils import test_butler  # noqa: F401


@pytest.fixture(scope="session")
def postgres_server():
    """A throw-away PostgreSQL server, one per pytest-xdist worker.

    Fails when PostgreSQL is not installed, unless
    EPO_ZOONIVERSE_SKIP_POSTGRES=1, which skips the tests that need it.
    """
    if os.environ.get("EPO_ZOONIVERSE_SKIP_POSTGRES") == "1":
        pytest.skip("EPO_ZOONIVERSE_SKIP_POSTGRES=1: PostgreSQL tests are skipped")
    try:
        server = ThrowawayPostgres()
    except PostgresNotFoundError as exc:
        missing = str(exc)
    else:
        missing = None
    if missing:
        # Outside the except block, so the report is this message alone.
        pytest.fail(
            f"{missing}\nInstall the test tools with 'bash scripts/setup_env.sh --test-tools', "
            "or set EPO_ZOONIVERSE_SKIP_POSTGRES=1 to skip the PostgreSQL tests.",
            pytrace=False,
        )
    with server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def state_db_url(request, tmp_path):
    """SQLAlchemy URL of an empty state database, on SQLite and on
    PostgreSQL (a fresh database per test, dropped afterwards).

    The PostgreSQL server is only started when a test gets this fixture's
    ``postgresql`` variant.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.sqlite3"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"state_{uuid.uuid4().hex[:16]}"
    server.create_database(name)
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)
