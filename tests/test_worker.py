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

"""``zooniverse-epo worker``: poll and publish in a loop, one line per
cycle, a graceful stop on SIGTERM, ``--once``, and several workers against
one PostgreSQL database publishing each picture exactly once.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from export_test_utils import ExportRepo, assert_public_invariant

from lsst.epo.zooniverse.cli.epo import main
from lsst.epo.zooniverse.cli.epo_worker import worker
from lsst.epo.zooniverse.export.service import ExportService
from lsst.epo.zooniverse.export.service_config import ServiceConfig
from lsst.epo.zooniverse.export.state import AUDIT_LOG
from lsst.epo.zooniverse.export.worker import WorkerLoop
from lsst.epo.zooniverse.web.inbox import Inbox

# The group with the worker command, whether or not cli/epo.py registers it.
main.add_command(worker)
WORKER_MAIN = (
    "import sys; from lsst.epo.zooniverse.cli.epo import main; "
    "from lsst.epo.zooniverse.cli.epo_worker import worker; main.add_command(worker); sys.exit(main())"
)


def write_config(tmp_path, database):
    path = tmp_path / "epo.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database": database,
                "staging": str(tmp_path / "staging"),
                "public_root": str(tmp_path / "public"),
                "public_url": "http://127.0.0.1:1/",
            }
        )
    )
    return str(path)


def setup_project(tmp_path, database, n_datasets):
    repo = ExportRepo(str(tmp_path / "repo"))
    for patch in range(n_datasets):
        repo.put_rgb("u/alice/zoo/run1", patch=patch, n=3, seed=patch, first_id=10 * patch)
    config = write_config(tmp_path, database)
    with open_service(config) as service:
        service.register_project(
            "galaxies", zooniverse_project_id=77, owner="alice", repo=repo.root, collections="u/alice/zoo/*"
        )
    return config


def open_service(config):
    return ExportService(ServiceConfig.load(config))


def audit_counts(service, action):
    with service.engine.connect() as connection:
        rows = connection.execute(
            sa.select(AUDIT_LOG.c.batch, AUDIT_LOG.c.entry).where(AUDIT_LOG.c.action == action)
        ).all()
    return collections.Counter(rows)


def start_worker(config, *args):
    env = dict(os.environ)
    env.pop("ZOONIVERSE_EPO_FAULT", None)
    return subprocess.Popen(
        [sys.executable, "-c", WORKER_MAIN, "--config", config, "--no-progress", "worker", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for(condition, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_worker_once_polls_then_publishes_with_a_line_per_cycle(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lsst.epo.zooniverse.export.worker")
    config = setup_project(tmp_path, f"sqlite:///{tmp_path}/state.sqlite3", n_datasets=2)
    runner = CliRunner()
    result = runner.invoke(main, ["--config", config, "--no-progress", "worker", "--once"])
    assert result.exit_code == 0, result.output
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("export.worker")]
    cycles = [line for line in lines if " cycle 1: " in line]
    assert len(cycles) == 1 and "poll 2 new, 2 quarantined (6 images)" in cycles[0], lines
    assert "publish 0 images" in cycles[0] and "0 errors" in cycles[0]
    assert any("stopped after 1 cycles" in line for line in lines)
    with open_service(config) as service:
        for batch in service.review():
            service.approve(batch["batch"], operator="eve")
    caplog.clear()
    result = runner.invoke(main, ["--config", config, "--no-progress", "worker", "--once"])
    assert result.exit_code == 0, result.output
    (cycle,) = [r.getMessage() for r in caplog.records if " cycle 1: " in r.getMessage()]
    assert "poll 0 new" in cycle and "publish 6 images (2 batches)" in cycle
    with open_service(config) as service:
        assert len(assert_public_invariant(service)) == 6


def test_worker_sends_one_digest_per_pi_per_cycle(tmp_path):
    config = setup_project(tmp_path, f"sqlite:///{tmp_path}/state.sqlite3", n_datasets=3)
    with open_service(config) as service:
        service.register_project(
            "stars",
            zooniverse_project_id=78,
            owner="bob",
            repo=service.project("galaxies")["repo"],
            collections="u/bob/zoo/*",
        )
    runner = CliRunner()
    result = runner.invoke(main, ["--config", config, "--no-progress", "worker", "--once"])
    assert result.exit_code == 0, result.output
    with open_service(config) as service:
        inbox = Inbox(service.engine)
        # Three batches retrieved and quarantined: one message, six events.
        (message,) = inbox.messages("alice")
        assert message["summary"] == "6 updates on galaxies: 3 retrieved, 3 quarantined"
        assert sorted(item["event"] for item in message["items"]) == ["quarantined"] * 3 + ["retrieved"] * 3
        assert len({item["batch"] for item in message["items"]}) == 3
        assert inbox.messages("bob") == []  # nothing happened to bob's project
        for batch in service.review():
            service.approve(batch["batch"], operator="eve")
    result = runner.invoke(main, ["--config", config, "--no-progress", "worker", "--once"])
    assert result.exit_code == 0, result.output
    with open_service(config) as service:
        newest, first = Inbox(service.engine).messages("alice")
        assert first["id"] == message["id"]
        assert {item["event"] for item in newest["items"]} == {"published"}
        assert len(newest["items"]) == 3


def test_worker_once_fails_on_errors(tmp_path):
    config = setup_project(tmp_path, f"sqlite:///{tmp_path}/state.sqlite3", n_datasets=1)
    with open_service(config) as service:
        # A repository that cannot be opened: every poll of it is an error.
        with service.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE projects SET repo = '/nonexistent/repo'")
    result = CliRunner().invoke(main, ["--config", config, "--no-progress", "worker", "--once"])
    assert result.exit_code == 1 and "1 datasets or projects failed" in result.output


def test_stop_ends_a_poll_after_the_current_dataset(tmp_path):
    config = setup_project(tmp_path, f"sqlite:///{tmp_path}/state.sqlite3", n_datasets=3)
    with open_service(config) as service:
        loop = WorkerLoop(service, interval=1.0)
        asked = []

        def stop():
            # Stop once the first dataset is done.
            asked.append(1)
            return len(asked) > 2

        summary = service.poll(stop=stop)
        assert (summary.discovered, summary.quarantined) == (3, 1)
        loop.stop()
        assert loop.run() == 0 and loop.cycles == 0
    with pytest.raises(ValueError, match="interval"):
        WorkerLoop(None, interval=0)


def test_sigterm_stops_a_worker_gracefully(tmp_path):
    config = setup_project(tmp_path, f"sqlite:///{tmp_path}/state.sqlite3", n_datasets=1)
    process = start_worker(config, "--interval", "0.5")
    try:
        with open_service(config) as service:
            wait_for(lambda: service.status()["projects"]["galaxies"]["datasets"], what="a first cycle")
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert " cycle 1: poll 1 new, 1 quarantined" in stderr
    assert "stopping after the current dataset" in stderr and "stopped after" in stderr


def test_two_workers_on_postgresql_publish_each_picture_exactly_once(tmp_path, postgres_server):
    name = "worker_test"
    postgres_server.create_database(name)
    try:
        config = setup_project(tmp_path, postgres_server.url(name), n_datasets=6)
        workers = [start_worker(config, "--interval", "0.3") for _ in range(2)]
        try:
            with open_service(config) as service:

                def quarantined():
                    return service.status()["projects"]["galaxies"]["datasets"].get("quarantined") == 6

                wait_for(quarantined, what="6 quarantined batches")
                for batch in service.review():
                    service.approve(batch["batch"], operator="eve")

                def published():
                    return service.status()["projects"]["galaxies"]["images"] == {"published": 18}

                wait_for(published, what="18 published images")
                time.sleep(1.0)  # a few more cycles with nothing to do
            for process in workers:
                process.send_signal(signal.SIGTERM)
            outputs = [process.communicate(timeout=60)[1] for process in workers]
        finally:
            for process in workers:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        assert [p.returncode for p in workers] == [0, 0], outputs
        for stderr in outputs:
            assert " cycle 2: " in stderr and "stopped after" in stderr
        with open_service(config) as service:
            assert len(assert_public_invariant(service)) == 18
            for action in ("discovered", "retrieved", "quarantined"):
                counts = audit_counts(service, action)
                assert len(counts) == 6 and set(counts.values()) == {1}, (action, counts)
            per_image = {k: n for k, n in audit_counts(service, "published").items() if k[1] is not None}
            assert len(per_image) == 18 and set(per_image.values()) == {1}
            assert service.status()["projects"]["galaxies"]["datasets"] == {"published": 6}
    finally:
        postgres_server.drop_database(name)
