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

"""A running EPO web application for the tests: a Butler repository with
Alice's and Bob's pictures, the service configuration, a uvicorn process
(``zooniverse-epo-web serve-api``) and an in-process "worker" that polls
with digests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import yaml
from export_test_utils import ExportRepo

from lsst.epo.zooniverse.export.notification import LogNotifier
from lsst.epo.zooniverse.export.service import ExportService
from lsst.epo.zooniverse.export.service_config import ServiceConfig
from lsst.epo.zooniverse.web.digest import DigestNotifier
from lsst.epo.zooniverse.web.inbox import Inbox
from lsst.epo.zooniverse.web.tokens import TokenStore

PREFIX = "/epo-zooniverse"
OUTPUT_DIR = os.path.join(os.path.dirname(__file__), ".output")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_repo(root):
    """Alice: two batches in run1 and, in run2, a batch of the same objects
    as run1's first (to be already public once that one is published).
    Bob: one batch.
    """
    repo = ExportRepo(str(root))
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=3, seed=1, first_id=0)
    repo.put_rgb("u/alice/zoo/run1", patch=1, n=4, seed=2, first_id=10)
    repo.put_rgb("u/alice/zoo/run2", patch=0, n=3, seed=3, first_id=0)
    repo.put_rgb("u/bob/zoo/run1", patch=2, n=2, seed=4, first_id=100)
    return repo


def write_config(directory, database=None, port=8080):
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "database": database or f"sqlite:///{directory}/state.sqlite3",
        "staging": str(directory / "staging"),
        "public_root": str(directory / "public"),
        "public_url": f"http://127.0.0.1:{port}/public/",
    }
    path = directory / "epo.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


class WebSite:
    """A uvicorn process serving the web application on a configuration.

    Parameters
    ----------
    config : `str`
        The service configuration.
    port : `int`, optional
        The port (its public URL's, if it serves the public files).
    log : `str`
        Where the server's output goes.
    **env
        ``EPO_WEB_*`` settings (keys without the prefix, lower case).
    """

    def __init__(self, config, log, port=None, **env):
        self.config = config
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = self.url + PREFIX
        environ = {k: v for k, v in os.environ.items() if not k.startswith("EPO_WEB_")}
        environ.update({f"EPO_WEB_{k.upper()}": str(v) for k, v in env.items()})
        environ.setdefault("EPO_WEB_LOG_PROFILE", "development")
        environ.setdefault("EPO_WEB_PUBLIC_PATH", "/public")
        self.log_path = log
        self._log = open(log, "w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from lsst.epo.zooniverse.cli.epo_web import web_main; web_main()",
                "--config",
                config,
                "serve-api",
                "--port",
                str(self.port),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environ,
        )
        deadline = time.time() + 90
        while True:
            try:
                if httpx.get(f"{self.api}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError(f"The web application did not start:\n{self.output()}")
            time.sleep(0.2)

    def output(self):
        with open(self.log_path) as stream:
            return stream.read()

    def close(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def client(self, token=None, **headers):
        """An httpx client for the API (``<prefix>`` included)."""
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.api, headers=headers, timeout=60)


class Worker:
    """The export service in this process, as a worker runs it: its
    notifications are collected and sent as digests after each cycle.
    """

    def __init__(self, config):
        self.notifier = DigestNotifier(None, LogNotifier())
        self.service = ExportService(ServiceConfig.load(config), notifier=self.notifier)
        self.notifier.inbox = Inbox(self.service.engine)
        self.tokens = TokenStore(self.service.engine)

    def cycle(self):
        summary = self.service.poll()
        sent = self.notifier.flush()
        return summary, sent

    def token(self, user, *scopes, days=1.0):
        value, _ = self.tokens.create(user, list(scopes), lifetime_seconds=days * 86400)
        return value

    def close(self):
        self.service.close()
