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

"""The PI's HTTP client (`lsst.epo.zooniverse.pi.client.EpoClient`): it
imports neither SQLAlchemy nor the service, finds the RSP token, retries
when asked to slow down, and does the PI's whole round trip against a real
uvicorn process; ``zooniverse-epo-web token`` makes, lists and revokes the
tokens it uses.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import httpx
import pytest
from click.testing import CliRunner
from web_test_utils import WebSite, Worker, free_port, make_repo, write_config

from lsst.epo.zooniverse.cli.epo import main as epo_main
from lsst.epo.zooniverse.cli.epo_web import token as token_group
from lsst.epo.zooniverse.cli.epo_web import web_main
from lsst.epo.zooniverse.pi.client import EpoClient, EpoClientError

FORBIDDEN = ("sqlalchemy", "fastapi", "starlette", "uvicorn", "psycopg", "safir")
FORBIDDEN_LSST = ("lsst.epo.zooniverse.export", "lsst.epo.zooniverse.web", "lsst.daf.butler")

CHECK = """
import json, sys
import {module}
bad = sorted(
    m for m in sys.modules
    if m.split(".")[0] in {forbidden!r} or m.startswith({forbidden_lsst!r})
)
print(json.dumps({{"bad": bad, "httpx": "httpx" in sys.modules}}))
"""


def imported(module):
    code = CHECK.format(module=module, forbidden=FORBIDDEN, forbidden_lsst=FORBIDDEN_LSST)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_client_imports_no_database_and_no_service():
    found = imported("lsst.epo.zooniverse.pi.client")
    assert found == {"bad": [], "httpx": True}
    # The check itself sees such imports (the service has them).
    assert "sqlalchemy" in {m.split(".")[0] for m in imported("lsst.epo.zooniverse.export.service")["bad"]}


def recording_transport(seen, responses=None):
    responses = list(responses or [])

    def handler(request):
        seen.append(request)
        if responses:
            return responses.pop(0)
        return httpx.Response(200, json={"projects": []})

    return httpx.MockTransport(handler)


def test_token_sources(tmp_path, monkeypatch):
    seen = []
    monkeypatch.delenv("ACCESS_TOKEN", raising=False)
    monkeypatch.delenv("EPO_ZOONIVERSE_TOKEN_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(EpoClientError, match="No token"):
        EpoClient("https://epo.example.org/epo-zooniverse")
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    EpoClient("https://x/epo", token_file=token_file, transport=recording_transport(seen)).projects()
    monkeypatch.setenv("EPO_ZOONIVERSE_TOKEN_FILE", str(token_file))
    EpoClient("https://x/epo", transport=recording_transport(seen)).projects()
    monkeypatch.setenv("ACCESS_TOKEN", "from-rsp")
    client = EpoClient("https://x/epo", transport=recording_transport(seen))
    client.projects()
    EpoClient("https://x/epo", token="explicit", transport=recording_transport(seen)).projects()
    assert [r.headers["Authorization"] for r in seen] == [
        "Bearer from-file",
        "Bearer from-file",
        "Bearer from-rsp",
        "Bearer explicit",
    ]
    assert str(seen[0].url) == "https://x/epo/v1/projects"
    assert "from-rsp" not in repr(client)
    monkeypatch.setenv("EXTERNAL_INSTANCE_URL", "https://data.example.org/")
    default = EpoClient(transport=recording_transport(seen))
    default.projects()
    assert str(seen[-1].url) == "https://data.example.org/epo-zooniverse/v1/projects"


def test_client_retries_when_asked_and_reports_errors(monkeypatch):
    seen = []
    sleeps = []
    monkeypatch.setattr("lsst.epo.zooniverse.pi.client.time.sleep", sleeps.append)
    slow = httpx.Response(429, headers={"Retry-After": "2"}, json={"detail": "Too many requests; slow down."})
    client = EpoClient("https://x/epo", token="t0ken", transport=recording_transport(seen, [slow, slow]))
    assert client.projects() == []
    assert len(seen) == 3 and sleeps == [2.0, 2.0]
    gone = httpx.Response(401, json={"detail": "Unknown, expired or revoked token."})
    client = EpoClient("https://x/epo", token="t0ken", transport=recording_transport([], [gone]))
    with pytest.raises(EpoClientError) as err:
        client.projects()
    assert err.value.status == 401 and "expired" in str(err.value) and "t0ken" not in str(err.value)
    always = [httpx.Response(503)] * 5
    client = EpoClient("https://x/epo", token="t", retries=2, transport=recording_transport([], always))
    with pytest.raises(EpoClientError) as err:
        client.projects()
    assert err.value.status == 503


def test_token_commands(tmp_path):
    config = write_config(tmp_path / "epo")
    runner = CliRunner()
    result = runner.invoke(
        web_main, ["--config", config, "token", "create", "--user", "alice", "--scope", "pi", "--days", "2"]
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("epozoo_") and "\n" not in token
    assert "alice" in result.stderr and token not in result.stderr
    listed = runner.invoke(web_main, ["--config", config, "token", "list"])
    key = token.split(".")[0].removeprefix("epozoo_")
    assert key in listed.stdout and token.split(".")[1] not in listed.stdout
    bad = runner.invoke(web_main, ["--config", config, "token", "create", "--user", "a b", "--scope", "pi"])
    assert bad.exit_code != 0 and "User name" in bad.output
    assert runner.invoke(web_main, ["--config", config, "token", "revoke", key]).exit_code == 0
    again = runner.invoke(web_main, ["--config", config, "token", "revoke", key])
    assert again.exit_code != 0 and "No live token" in again.output
    assert "revoked" in runner.invoke(web_main, ["--config", config, "token", "list"]).stdout
    # The same commands under zooniverse-epo, whose options they read.
    epo = click.Group(
        name="zooniverse-epo",
        params=epo_main.params,
        callback=epo_main.callback,
        commands={**epo_main.commands, "token": token_group},
    )
    database = f"sqlite:///{tmp_path}/other.sqlite3"
    made = runner.invoke(
        epo, ["--database", database, "token", "create", "--user", "eve", "--scope", "operator"]
    )
    assert made.exit_code == 0, made.output
    listed = runner.invoke(epo, ["--database", database, "token", "list"]).stdout
    assert "eve  operator" in listed and "alice" not in listed


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("web_client")
    repo = make_repo(root / "repo")
    port = free_port()
    config = write_config(root / "epo", port=port)
    worker = Worker(config)
    site = WebSite(config, str(root / "server.log"), port=port)
    try:
        yield repo, worker, site
    finally:
        site.close()
        worker.close()


def test_pi_round_trip(world):
    repo, worker, site = world
    alice = EpoClient(site.api, token=worker.token("alice", "pi"))
    eve = site.client(worker.token("eve", "operator"))
    project = alice.register(
        "galaxies",
        zooniverse_project_id=7,
        repo=repo.root,
        collections="u/alice/zoo/*",
        contact="a@example.org",
    )
    assert project["owner"] == "alice"
    with pytest.raises(EpoClientError) as err:
        alice.register("theft", zooniverse_project_id=7, repo=repo.root, collections="u/bob/zoo/*")
    assert err.value.status == 403
    worker.cycle()
    assert alice.project("galaxies")["datasets"] == {"quarantined": 3}
    batches = alice.batches("galaxies")
    assert len(batches) == 3 and all(b["stretch"] for b in batches)
    assert len(alice.images("galaxies")) == 10
    assert alice.images("galaxies", batch=batches[0]["batch"])[0]["batch"] == batches[0]["batch"]
    (digest,) = alice.notifications(unread=True)
    assert len(digest["items"]) == 6
    chosen = [b["batch"] for b in batches if b["data_id"]["patch"] == 1]
    r = eve.post("/v1/operator/decisions", json={"decision": "approve", "batches": chosen})
    assert r.status_code == 200 and r.json()["results"][0]["ok"]
    assert eve.post("/v1/operator/publish", json={}).status_code == 200
    subjects = alice.subjects("galaxies")
    assert len(subjects) == 4 and all(s["url"] for s in subjects)
    assert alice.manifests("galaxies") == []
    assert [p["name"] for p in alice.projects()] == ["galaxies"]
    assert alice.mark_read() == 3
    assert alice.notifications(unread=True) == []
    request = alice.withdraw("galaxies", "wrong field", batch=chosen[0], entry=subjects[0]["entry"])
    assert request["state"] == "open"
    with pytest.raises(EpoClientError) as err:
        alice.project("nosuch")
    assert err.value.status == 404
    bob = EpoClient(site.api, token=worker.token("bob", "pi"))
    with pytest.raises(EpoClientError) as err:
        bob.batches("galaxies")
    assert err.value.status == 404
    expired = EpoClient(site.api, token=worker.token("alice", "pi", days=1e-9))
    with pytest.raises(EpoClientError) as err:
        expired.projects()
    assert err.value.status == 401
