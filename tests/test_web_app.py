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

"""The web application in this process: digests sent every
``EPO_WEB_DIGEST_SECONDS`` and when it stops, secrets masked in its logs,
the internal metadata route.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from web_test_utils import free_port, write_config

from lsst.epo.zooniverse.export.notify import Notification
from lsst.epo.zooniverse.export.redaction import default_redactor
from lsst.epo.zooniverse.web.app import create_app
from lsst.epo.zooniverse.web.context import WebContext
from lsst.epo.zooniverse.web.settings import load_web_settings


@pytest.fixture
def restore_logging():
    """Safir's set-up replaces the ``lsst`` logger's handlers: put them
    back for the other tests.
    """
    names = ("lsst", "uvicorn", "uvicorn.access", "uvicorn.error")
    saved = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).level) for name in names}
    yield
    for name, (handlers, level) in saved.items():
        logging.getLogger(name).handlers = handlers
        logging.getLogger(name).setLevel(level)


def event(batch):
    return Notification(
        event="published", project="galaxies", owner="alice", recipients=(), batch=batch, summary="done"
    )


def test_digest_period_and_shutdown(tmp_path, restore_logging):
    settings = load_web_settings(
        {}, config=write_config(tmp_path / "epo"), digest_seconds=1, log_level="WARNING"
    )
    context = WebContext.build(settings)
    try:
        with TestClient(create_app(settings, context)) as client:
            assert client.get("/").json()["name"] == "epo-zooniverse"
            context.digest.notify(event("b1"))
            deadline = time.monotonic() + 10
            while not context.inbox.messages("alice") and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [m["items"][0]["batch"] for m in context.inbox.messages("alice")] == ["b1"]
            context.digest.notify(event("b2"))
            context.digest.notify(event("b3"))
        # Stopping sends what was left, as one digest.
        messages = context.inbox.messages("alice")
        assert len(messages) == 2 and [i["batch"] for i in messages[0]["items"]] == ["b2", "b3"]
    finally:
        context.close()


def test_secrets_masked_in_logs(tmp_path, capsys, restore_logging):
    settings = load_web_settings({}, config=write_config(tmp_path / "epo"), log_profile="production")
    context = WebContext.build(settings)
    try:
        create_app(settings, context)
        default_redactor().add("hunter2-database-password")
        logging.getLogger("lsst.epo.zooniverse.export.somewhere").warning(
            "cannot connect with %s", "hunter2-database-password"
        )
        import structlog

        structlog.get_logger("lsst.epo.zooniverse.web").warning("oops", detail="hunter2-database-password")
    finally:
        context.close()
    out = capsys.readouterr().out
    assert "cannot connect with" in out and '"event": "oops"' in out
    assert "hunter2-database-password" not in out


def test_uvicorn_factory(tmp_path):
    """``uvicorn --factory lsst.epo.zooniverse.web.app:create_app`` with the
    settings in the environment (the container's other way to start).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPO_WEB_")}
    env.update(
        EPO_WEB_CONFIG=write_config(tmp_path / "epo"), EPO_WEB_PATH_PREFIX="/zoo", EPO_WEB_LOG_LEVEL="WARNING"
    )
    command = [sys.executable, "-m", "uvicorn", "--factory", "lsst.epo.zooniverse.web.app:create_app"]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--no-proxy-headers"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/zoo/healthz", timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and server.poll() is None, server.stdout.read()
                time.sleep(0.2)
        assert answer.json()["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/zoo/v1/projects").status_code == 401
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=15)
