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

"""``zooniverse-epo`` as operators run it, in real processes: kill -9 at
every fault point then resume, two pollers at once, credentials kept out
of every output, and every reported URL fetched from ``serve``.
"""

from __future__ import annotations

import collections
import csv
import io
import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest
import sqlalchemy as sa
import yaml
from export_test_utils import ExportRepo, assert_public_invariant, serving

from lsst.epo.zooniverse.export.faults import FAULT_POINTS
from lsst.epo.zooniverse.export.service import ExportService
from lsst.epo.zooniverse.export.service_config import ServiceConfig
from lsst.epo.zooniverse.export.state import AUDIT_LOG


def write_config(tmp_path, database, public_url="http://127.0.0.1:1/", **extra):
    config = {
        "database": database,
        "staging": str(tmp_path / "staging"),
        "public_root": str(tmp_path / "public"),
        "public_url": public_url,
        **extra,
    }
    path = tmp_path / "epo.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def cli(config, *args, env=None, check=True, timeout=300):
    full_env = dict(os.environ)
    full_env.pop("ZOONIVERSE_EPO_FAULT", None)
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "lsst.epo.zooniverse.cli.epo", "--config", config, "--no-progress", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"zooniverse-epo {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
        )
    return result


def open_service(config):
    return ExportService(ServiceConfig.load(config))


def audit_counts(service, action):
    with service.engine.connect() as connection:
        rows = connection.execute(
            sa.select(AUDIT_LOG.c.batch, AUDIT_LOG.c.entry).where(AUDIT_LOG.c.action == action)
        ).all()
    return collections.Counter(rows)


def register_args(repo):
    """Arguments registering Alice's project on the test repository."""
    return [
        "register", "galaxies", "--zooniverse-project", "77", "--owner", "alice", "--repo", repo.root,
        "--collections", "u/alice/zoo/*",
    ]  # fmt: skip


def setup_project(tmp_path, url, n_datasets=2, public_url="http://127.0.0.1:1/"):
    repo = ExportRepo(str(tmp_path / "repo"))
    for patch in range(n_datasets):
        repo.put_rgb("u/alice/zoo/run1", patch=patch, n=3, seed=patch, first_id=10 * patch)
    config = write_config(tmp_path, url, public_url=public_url)
    cli(config, *register_args(repo))
    return repo, config


POLL_POINTS = [p for p in FAULT_POINTS if not p.startswith("publish")]
PUBLISH_POINTS = [p for p in FAULT_POINTS if p.startswith("publish")]


@pytest.mark.parametrize("point", [*POLL_POINTS, *PUBLISH_POINTS, "publish.written:kill:4"])
def test_kill_at_each_fault_point_then_resume(tmp_path, state_db_url, point):
    _, config = setup_project(tmp_path, state_db_url)
    fault = {"ZOONIVERSE_EPO_FAULT": point if ":" in point else f"{point}:kill"}
    if point in POLL_POINTS:
        crashed = cli(config, "poll", env=fault, check=False)
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        with open_service(config) as service:
            assert_public_invariant(service)
    cli(config, "poll")
    with open_service(config) as service:
        batches = service.review()
        assert len(batches) == 2 and all(b["state"] == "quarantined" for b in batches)
        for action in ("discovered", "retrieved", "validated", "quarantined"):
            counts = audit_counts(service, action)
            assert sorted(counts.values()) == [1, 1], (action, counts)
        assert_public_invariant(service)
    cli(config, "approve", *[b["batch"] for b in batches], "--operator", "eve")
    if point not in POLL_POINTS:
        crashed = cli(config, "publish", env=fault, check=False)
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        with open_service(config) as service:
            assert_public_invariant(service)
    cli(config, "publish")
    assert "Published 0 images" in cli(config, "publish").stdout
    with open_service(config) as service:
        files = assert_public_invariant(service)
        assert len(files) == 6
        published = {k: n for k, n in audit_counts(service, "published").items() if k[1] is not None}
        assert len(published) == 6 and set(published.values()) == {1}
        status = service.status()["projects"]["galaxies"]
        assert status["images"] == {"published": 6} and status["datasets"] == {"published": 2}


def run_at_once(config, command, n=2):
    env = dict(os.environ)
    env.pop("ZOONIVERSE_EPO_FAULT", None)
    argv = [sys.executable, "-m", "lsst.epo.zooniverse.cli.epo", "--config", config, "--no-progress", command]
    processes = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0] * n, outputs
    return outputs


def test_two_pollers_and_two_publishers_at_once_do_no_double_work(tmp_path, state_db_url):
    _, config = setup_project(tmp_path, state_db_url, n_datasets=6)
    run_at_once(config, "poll")
    with open_service(config) as service:
        for action in ("discovered", "retrieved", "validated", "quarantined"):
            counts = audit_counts(service, action)
            assert len(counts) == 6 and set(counts.values()) == {1}, (action, counts)
        assert service.status()["projects"]["galaxies"]["images"] == {"quarantined": 18}
        batches = [b["batch"] for b in service.review()]
    cli(config, "approve", *batches, "--operator", "eve")
    outputs = run_at_once(config, "publish")
    published_by = [int(out.split("Published ")[1].split()[0]) for out, _ in outputs]
    assert sum(published_by) == 18, outputs
    with open_service(config) as service:
        files = assert_public_invariant(service)
        assert len(files) == 18
        per_image = {k: n for k, n in audit_counts(service, "published").items() if k[1] is not None}
        assert len(per_image) == 18 and set(per_image.values()) == {1}
        assert service.status()["projects"]["galaxies"]["datasets"] == {"published": 6}


class HostileReports:
    """A service whose report rows hold formulas."""

    def report(self, project):
        return [
            {"batch": "b1", "object_id": "=HYPERLINK(\"http://evil/\")", "state": "rejected",
             "reason": "@SUM(A1)", "url": "-2+3", "data_id": "-5.3", "entry": "\tx", "dataset_type": "+x"},
        ]  # fmt: skip

    def catalog_report(self, project, collection):
        return [
            {"row_index": -1, "object_id": "-7", "outcome": "\r=1", "stage": "+1", "reason": "ok", "url": ""}
        ]


def test_report_cells_are_escaped_against_formulas(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from lsst.epo.zooniverse.cli import epo

    monkeypatch.setattr(epo, "context_service", lambda ctx: HostileReports())
    out = tmp_path / "report.csv"
    result = CliRunner().invoke(epo.main, ["report", "galaxies", "-o", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = csv.DictReader(open(out, newline=""))
    assert row == {
        "batch": "b1", "dataset_type": "'+x", "data_id": "-5.3", "entry": "'\tx",
        "object_id": "'=HYPERLINK(\"http://evil/\")", "state": "rejected", "reason": "'@SUM(A1)",
        "url": "'-2+3",
    }  # fmt: skip
    result = CliRunner().invoke(epo.main, ["report", "galaxies", "--catalog", "u/alice/zoo/run1"])
    assert result.exit_code == 0, result.output
    (row,) = csv.DictReader(io.StringIO(result.stdout))
    assert row == {
        "row_index": "-1",
        "object_id": "-7",
        "outcome": "'\r=1",
        "stage": "+1",
        "reason": "ok",
        "url": "",
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_200_concurrent_status_requests(tmp_path):
    import concurrent.futures
    import threading
    import time

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    repo = ExportRepo(str(tmp_path / "repo"))
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/state.sqlite3", public_url=url)
    cli(config, *register_args(repo))
    barrier = threading.Barrier(200, timeout=60)

    def fetch(_):
        barrier.wait()
        try:
            with urllib.request.urlopen(url + "status.json", timeout=60) as response:
                return response.status, b'"galaxies"' in response.read()
        except OSError as err:
            return repr(err), False

    with serving(config, port, url + "status.json"):
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(200) as pool:
            answers = list(pool.map(fetch, range(200)))
        elapsed = time.monotonic() - start
    assert [a for a in answers if a != (200, True)] == []
    assert elapsed < 60


def test_serve_publishes_every_reported_url(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    _, config = setup_project(tmp_path, f"sqlite:///{tmp_path}/state.sqlite3", public_url=url)
    cli(config, "poll")
    with open_service(config) as service:
        batches = [b["batch"] for b in service.review()]
    cli(config, "approve", batches[0], "--operator", "eve")
    # Long commands draw a progress bar on request (here stderr is a pipe).
    progress = cli(config, "--progress", "publish")
    assert "publishing" in progress.stderr and "3/3" in progress.stderr, progress.stderr
    with serving(config, port, url + "status.json") as (_, status):
        assert b'"published": 3' in status
        report = list(csv.DictReader(io.StringIO(cli(config, "report", "galaxies").stdout)))
        published = [r for r in report if r["state"] == "published"]
        assert len(published) == 3 and len(report) == 6
        public_root = tmp_path / "public"
        for row in published:
            assert row["url"].startswith(url + "galaxies/" + batches[0] + "/")
            with urllib.request.urlopen(row["url"], timeout=10) as response:
                body = response.read()
            assert body == (public_root / row["url"][len(url) :]).read_bytes()
        for row in report:
            if row["state"] != "published":
                guess = f"{url}galaxies/{row['batch']}/{row['entry']}"
                with pytest.raises(urllib.error.HTTPError) as err:
                    urllib.request.urlopen(guess, timeout=10)
                assert err.value.code == 404


@pytest.mark.parametrize("state_db_url", ["postgresql"], indirect=True)
def test_credentials_never_appear(tmp_path, state_db_url):
    url = sa.make_url(state_db_url)
    password = url.password
    assert password and len(password) >= 8
    cloud_secret = "AKIA-cloud-secret-value-1234567890"
    webhook_token = "Bearer hook-token-abcdef123456"
    repo = ExportRepo(str(tmp_path / "repo"))
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=2, seed=1)
    config = write_config(
        tmp_path,
        url.set(password=None).render_as_string(hide_password=False),
        database_password_env="EPO_TEST_DB_PASSWORD",
        notify=[
            {"type": "log"},
            {
                "type": "webhook",
                "url": f"http://127.0.0.1:{free_port()}/hook",
                "header_env": {"Authorization": "EPO_TEST_WEBHOOK_TOKEN"},
            },
        ],
    )
    env = {
        "EPO_TEST_DB_PASSWORD": password,
        "AWS_SECRET_ACCESS_KEY": cloud_secret,
        "EPO_TEST_WEBHOOK_TOKEN": webhook_token,
    }
    outputs = []
    outputs.append(cli(config, "--log-level", "DEBUG", *register_args(repo), env=env))
    outputs.append(cli(config, "--log-level", "DEBUG", "poll", env=env))
    outputs.append(cli(config, "status", env=env))
    # Failures: a wrong password; a password inline in an unreachable URL.
    outputs.append(
        cli(config, "status", env=dict(env, EPO_TEST_DB_PASSWORD=password + "-wrong"), check=False)
    )
    inline = url.set(port=free_port()).render_as_string(hide_password=False)
    outputs.append(cli(config, "--database", inline, "status", env=env, check=False))
    assert outputs[-1].returncode != 0 and outputs[-2].returncode != 0
    assert "Cannot open state database" in outputs[-1].stderr
    # A failing command with the password given on the command line.
    outputs.append(cli(config, "--database", inline, "poll", env=env, check=False))
    text = "\n".join(o.stdout + o.stderr for o in outputs)
    assert "webhook" in text.lower() or "notification" in text.lower()
    with OpenServiceWithEnv(config, env) as service:
        audit = "\n".join(str(r) for r in service.audit_log())
    for secret in (password, password + "-wrong", cloud_secret, webhook_token, "hook-token-abcdef123456"):
        assert secret not in text
        assert secret not in audit


class OpenServiceWithEnv:
    def __init__(self, config, env):
        self.config, self.env = config, env

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        self.service = open_service(self.config)
        return self.service

    def __exit__(self, *args):
        self.service.close()
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_image_selection_needs_one_batch(tmp_path):
    _, config = setup_project(tmp_path, f"sqlite:///{tmp_path}/state.sqlite3")
    cli(config, "poll")
    with open_service(config) as service:
        batches = [b["batch"] for b in service.review()]
    result = cli(config, "approve", *batches, "--operator", "eve", "--image", "obj0.png", check=False)
    assert result.returncode == 2 and "--image needs exactly one batch" in result.stderr
    with open_service(config) as service:
        assert {b["state"] for b in service.review()} == {"quarantined"}
        assert not [r for r in service.audit_log() if r["action"] == "approved"]
