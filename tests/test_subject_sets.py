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

"""Subject sets (issue 5 §3): the real panoptes-client against a local
stand-in of the Panoptes endpoints it calls.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from export_test_utils import ExportRepo

from lsst.epo.zooniverse.cli.epo import main
from lsst.epo.zooniverse.demo.panoptes_standin import API_ACCEPT, PanoptesStandIn
from lsst.epo.zooniverse.export.redaction import default_redactor
from lsst.epo.zooniverse.export.service import ExportService
from lsst.epo.zooniverse.export.service_config import ServiceConfig
from lsst.epo.zooniverse.export.state import (
    PROJECTS,
    SCHEMA_VERSION,
    ZOONIVERSE_IMPORTS,
    ZOONIVERSE_SUBJECT_SETS,
    ZOONIVERSE_SUBJECTS,
    open_state_database,
    schema_version,
)
from lsst.epo.zooniverse.zooniverse.subject_sets import (
    EXTERNAL_ID_METADATA_KEY,
    CredentialsError,
    SubjectSetAuthError,
    SubjectSetError,
    SubjectSetPublisher,
    ZooniverseCredentials,
)

N_OBJECTS = 9
PANOPTES_VARIABLES = (
    "PANOPTES_ENDPOINT",
    "PANOPTES_CLIENT_ID",
    "PANOPTES_CLIENT_SECRET",
    "PANOPTES_USERNAME",
    "PANOPTES_PASSWORD",
)


class _PublicServer:
    """Serves the current test's public location (the URL prefix stays the
    same for the whole module, as the published URLs hold it)."""

    def __init__(self) -> None:
        self.root = "/nonexistent"
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=outer.root, **kwargs)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def public_server():
    server = _PublicServer()
    yield server
    server.close()


def make_service(root, public_url, database=None):
    config = ServiceConfig.load(
        None,
        database=database or f"sqlite:///{root}/state.sqlite3",
        staging=str(root / "staging"),
        public_root=str(root / "public"),
        public_url=public_url,
    )
    return ExportService(config)


def publish_project(service, repo_root):
    service.register_project(
        "galaxies",
        zooniverse_project_id=77,
        owner="alice",
        repo=repo_root,
        collections="u/alice/zoo/*",
        dataset_types=["zooniverse_rgb"],
    )
    service.poll()
    for batch in service.review():
        service.approve(batch["batch"], operator="eve")
    assert service.publish().published == N_OBJECTS


@pytest.fixture(scope="module")
def template(tmp_path_factory, public_server):
    """A state database, staging and public location with one project's
    nine published images, made once and copied by each test."""
    root = tmp_path_factory.mktemp("template")
    repo = ExportRepo(str(root / "repo"))
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=5, seed=1)
    repo.put_rgb("u/alice/zoo/run1", patch=1, n=4, seed=2, first_id=100)
    with make_service(root, public_server.url) as service:
        publish_project(service, repo.root)
    return root


@pytest.fixture
def service(template, tmp_path, public_server, monkeypatch):
    for name in PANOPTES_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for path in glob.glob(str(template / "state.sqlite3*")):
        shutil.copy(path, tmp_path)
    for name in ("staging", "public"):
        shutil.copytree(template / name, tmp_path / name)
    public_server.root = str(tmp_path / "public")
    with make_service(tmp_path, public_server.url) as service:
        yield service


@pytest.fixture
def standin():
    with PanoptesStandIn(project_id=77) as server:
        yield server


def credentials_for(standin, **changes):
    values = {"endpoint": standin.url, "client_id": standin.client_id, "client_secret": standin.client_secret}
    values.update(changes)
    return ZooniverseCredentials(**values)


def publisher(service, standin, credentials=None, **kwargs):
    waits = []
    options = {"retry_delay": 0.0, "server_retries": 1, "poll_interval": 0.01, "import_timeout": 20}
    options["sleep"] = waits.append
    options.update(kwargs)
    result = SubjectSetPublisher(service, credentials or credentials_for(standin), **options)
    result.waits = waits
    return result


def expected_rows(service):
    return {row.external_id: row for row in SubjectSetPublisher(service).rows("galaxies")}


def assert_set_complete(service, standin, set_id):
    rows = expected_rows(service)
    external_ids = standin.external_ids(set_id)
    assert sorted(external_ids) == sorted(rows), "every subject once, none twice"
    for subject in standin.set_subjects(set_id):
        row = rows[subject.get("external_id") or subject["metadata"][EXTERNAL_ID_METADATA_KEY]]
        assert subject["locations"] == [{"image/png": url} for url in row.locations]
        metadata = {k: v for k, v in subject["metadata"].items() if k != EXTERNAL_ID_METADATA_KEY}
        # An import reads an unquoted empty cell as Ruby's nil.
        assert {k: v or "" for k, v in metadata.items()} == dict(row.metadata)
    recorded = SubjectSetPublisher(service).recorded_subjects("galaxies")
    assert sorted(r["external_id"] for r in recorded) == sorted(rows)
    server_ids = {s["id"] for s in standin.set_subjects(set_id)}
    assert {str(r["subject_id"]) for r in recorded} == server_ids


def creates(standin):
    return [
        r
        for r in standin.api_requests("POST")
        if r.path in ("/api/subjects", "/api/subject_set_imports", "/api/subject_sets")
    ]


# --- both methods, and reruns ------------------------------------------------


@pytest.mark.parametrize("method", ["import", "subjects"])
def test_creates_set_and_subjects_once(service, standin, method):
    summary = publisher(service, standin).sync("galaxies", subject_set_name="Batch 1", method=method)
    assert summary.subject_set_created and summary.subject_set_id
    assert (summary.total, summary.created, summary.already_present, summary.failed) == (N_OBJECTS,) * 2 + (
        0,
        0,
    )
    (subject_set,) = standin.subject_sets.values()
    assert subject_set["display_name"] == "Batch 1" and subject_set["links"]["project"] == "77"
    assert_set_complete(service, standin, summary.subject_set_id)
    if method == "import":
        (post,) = standin.api_requests("POST", "/api/subject_set_imports")
        url = post.body["subject_set_imports"]["source_url"]
        assert post.body["subject_set_imports"]["links"] == {"subject_set": str(summary.subject_set_id)}
        assert url.startswith(service.public.url_prefix + "_manifests/galaxies/") and url.endswith(".csv")
        assert summary.manifests == [url]
    else:
        posts = standin.api_requests("POST", "/api/subjects")
        assert len(posts) == N_OBJECTS
        for post in posts:
            body = post.body["subjects"]
            # The create schema takes external_id (Panoptes pull request 2788).
            assert body["external_id"] in expected_rows(service)
            assert body["metadata"][EXTERNAL_ID_METADATA_KEY] == body["external_id"]
            assert body["links"] == {"project": "77", "subject_sets": [str(summary.subject_set_id)]}
    # Every request: the JSON-API media type and the bearer token.
    for request in standin.api_requests():
        assert request.headers["Accept"] == API_ACCEPT
        assert request.headers["Authorization"].startswith("Bearer tok-")

    before = len(standin.requests)
    again = publisher(service, standin).sync("galaxies", subject_set_name="Batch 1", method=method)
    assert (again.created, again.already_present, again.subject_set_created) == (0, N_OBJECTS, False)
    assert again.subject_set_id == summary.subject_set_id
    assert not [r for r in creates(standin) if standin.requests.index(r) >= before]
    assert len(standin.external_ids(summary.subject_set_id)) == N_OBJECTS
    actions = [r["action"] for r in service.audit_log(project="galaxies")]
    assert actions.count("subject_set_synced") == 2
    detail = json.loads([r for r in service.audit_log() if r["action"] == "subject_set_synced"][0]["detail"])
    assert detail["created"] == N_OBJECTS and detail["method"] == method


def test_other_method_and_crash_before_recording_add_nothing(service, standin):
    # Import first; then a run with the other method, and one whose state
    # database lost its records (a kill between creating and recording):
    # the set's subjects on the server are what counts.
    first = publisher(service, standin).sync("galaxies", subject_set_name="S", method="import")
    with service.engine.begin() as connection:
        connection.execute(ZOONIVERSE_SUBJECTS.delete())
    again = publisher(service, standin).sync("galaxies", subject_set_name="S", method="subjects")
    assert (again.created, again.already_present) == (0, N_OBJECTS)
    assert_set_complete(service, standin, first.subject_set_id)


def test_password_flow_from_environment(service, standin, monkeypatch):
    monkeypatch.setenv("PANOPTES_ENDPOINT", standin.url)
    monkeypatch.setenv("PANOPTES_USERNAME", "alice")
    monkeypatch.setenv("PANOPTES_PASSWORD", standin.password)
    sender = SubjectSetPublisher(service, retry_delay=0, poll_interval=0.01)  # credentials: environment
    summary = sender.sync("galaxies", subject_set_name="P", method="subjects")
    assert summary.created == N_OBJECTS
    paths = [(r.method, r.path) for r in standin.requests[:3]]
    assert paths == [("GET", "/users/sign_in"), ("POST", "/users/sign_in"), ("POST", "/oauth/token")]
    assert standin.requests[2].body["grant_type"] == "password"


def test_password_from_a_file_ignores_the_environments_client_id(service, standin, monkeypatch, tmp_path):
    # panoptes-client would take PANOPTES_CLIENT_ID for the password grant;
    # credentials from a file use the first-party client, as given.
    monkeypatch.setenv("PANOPTES_CLIENT_ID", "someone-elses-app")
    path = tmp_path / "zooniverse.yaml"
    path.write_text(
        yaml.safe_dump({"endpoint": standin.url, "username": "alice", "password": standin.password})
    )
    os.chmod(path, 0o600)
    sender = publisher(service, standin, credentials=ZooniverseCredentials.from_file(str(path)))
    assert sender.sync("galaxies", subject_set_name="F", method="subjects").created == N_OBJECTS
    (grant,) = [r for r in standin.requests if r.path == "/oauth/token"]
    assert grant.body["grant_type"] == "password" and grant.body["client_id"] != "someone-elses-app"


# --- failures ----------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, secret",
    [
        ({"client_secret": "wrong-client-secret-98765"}, "wrong-client-secret-98765"),
        (
            {
                "client_id": None,
                "client_secret": None,
                "username": "alice",
                "password": "wrong-password-13579",
            },
            "wrong-password-13579",
        ),
    ],
    ids=["client_credentials", "password"],
)
def test_auth_failure_names_endpoint_not_secret(service, standin, caplog, capsys, changes, secret):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SubjectSetAuthError) as info:
        publisher(service, standin, credentials_for(standin, **changes)).sync(
            "galaxies", subject_set_name="A", method="subjects"
        )
    message = str(info.value)
    assert standin.url in message and "refused" in message
    assert "invalid_client" in message or "Invalid login" in message
    captured = capsys.readouterr()
    audit = json.dumps(service.audit_log())
    for text in (message, caplog.text, captured.out, captured.err, audit, repr(info.value.summary)):
        assert secret not in text
    assert "subject_set_failed" in audit
    assert not standin.api_requests()


def test_bad_token_and_missing_accept_header(standin):
    url = standin.url + "/api/projects/77"
    for headers, status in (({}, 404), ({"Accept": API_ACCEPT}, 401)):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers))
        assert info.value.code == status


def test_rate_limited_then_success(service, standin):
    standin.rate_limit(3, retry_after="2")
    sender = publisher(service, standin)
    summary = sender.sync("galaxies", subject_set_name="R", method="subjects")
    assert summary.created == N_OBJECTS
    assert sender.waits == [2.0, 2.0, 2.0]
    assert_set_complete(service, standin, summary.subject_set_id)

    standin.rate_limit(100)
    with pytest.raises(SubjectSetError, match="still rate limiting.*run again later"):
        publisher(service, standin, rate_limit_retries=2).sync("galaxies", subject_set_name="R2")


@pytest.mark.parametrize("method", ["subjects", "import"])
def test_server_error_midway_then_resume(service, standin, method):
    if method == "import":
        standin.fail_imports_after = 1
        options = {"part_rows": 4}
    else:
        standin.fail_creates_after = 4
        options = {}
    with pytest.raises(SubjectSetError) as info:
        publisher(service, standin, **options).sync("galaxies", subject_set_name="E", method=method)
    assert f"stopped after {'importing' if method == 'import' else 'creating'} 4 of {N_OBJECTS}" in str(
        info.value
    )
    assert "run the same command again" in str(info.value)
    assert info.value.summary.created == 4
    set_id = info.value.summary.subject_set_id
    assert any(r["action"] == "subject_set_failed" for r in service.audit_log())

    standin.fail_creates_after = standin.fail_imports_after = None
    summary = publisher(service, standin, **options).sync("galaxies", subject_set_name="E", method=method)
    assert summary.subject_set_id == set_id and not summary.subject_set_created
    assert (summary.created, summary.already_present) == (N_OBJECTS - 4, 4)
    assert not summary.duplicates
    assert_set_complete(service, standin, set_id)
    assert len(standin.subject_sets) == 1


def test_lost_create_answers_are_found_not_sent_again(service, standin):
    # Every create after the fourth is made but its answer lost (HTTP
    # 504): the run finds each one in the set instead of creating it again.
    standin.fail_creates_after, standin.commit_before_failing = 4, True
    summary = publisher(service, standin).sync("galaxies", subject_set_name="L", method="subjects")
    assert (summary.created, summary.failed) == (N_OBJECTS, 0)
    assert len(standin.api_requests("POST", "/api/subjects")) == N_OBJECTS
    assert_set_complete(service, standin, summary.subject_set_id)


def test_failed_import_jobs_are_reported_then_resumed(service, standin):
    # A failed import job (the worker cannot read the manifest again, or
    # dies mid-way) is not retried by Zooniverse and never finishes: the
    # run says so instead of waiting for its timeout; a rerun leaves the
    # dead imports alone and sends what is missing, once.
    original = standin.imports_queue.downloader
    calls = []

    def flaky(url):
        calls.append(url)
        if len(calls) == 2:  # the worker's download (the first is the POST's count)
            raise OSError("404 - Failed to download URL")
        return original(url)

    standin.imports_queue.downloader = flaky
    # Polls really wait here: a stall is "no change for 1 s" of real time.
    real_time = {"sleep": time.sleep, "poll_interval": 0.02, "import_stall_seconds": 1.0}
    with pytest.raises(SubjectSetError, match="stopped: 0 of 9 imported and no change"):
        publisher(service, standin, **real_time).sync("galaxies", subject_set_name="F")
    standin.imports_queue.downloader = original
    standin.imports_queue.dies_after = 4
    # imported_count is saved every 5 rows: the job that died after 4 rows
    # still shows 0, the set holds 4.
    with pytest.raises(SubjectSetError, match="stopped: 0 of 9 imported.*after importing 4 of 9"):
        publisher(service, standin, **real_time).sync("galaxies", subject_set_name="F")
    standin.imports_queue.dies_after = None
    summary = publisher(service, standin).sync("galaxies", subject_set_name="F")
    assert (summary.created, summary.already_present) == (N_OBJECTS - 4, 4)
    assert_set_complete(service, standin, summary.subject_set_id)
    with service.engine.connect() as connection:
        outcomes = connection.execute(
            sa.select(ZOONIVERSE_IMPORTS.c.outcome).order_by(ZOONIVERSE_IMPORTS.c.id)
        ).scalars()
        assert [o.split(":")[0] for o in outcomes] == ["stalled", "stalled", "done"]
    assert len(standin.api_requests("POST", "/api/subject_set_imports")) == 3


def test_rerun_waits_for_a_running_import(service, standin):
    # The first run gives up waiting while Zooniverse still imports; the
    # rerun waits for that import instead of sending an overlapping one
    # (two imports of the same ids can race into duplicate subjects).
    standin.imports_queue.row_seconds = 0.05
    with pytest.raises(SubjectSetError, match="still running"):
        publisher(service, standin, import_timeout=0.02).sync("galaxies", subject_set_name="W")
    summary = publisher(service, standin, sleep=time.sleep, poll_interval=0.05).sync(
        "galaxies", subject_set_name="W"
    )
    assert (summary.created, summary.already_present) == (0, N_OBJECTS)
    assert len(standin.api_requests("POST", "/api/subject_set_imports")) == 1
    assert_set_complete(service, standin, summary.subject_set_id)


def test_import_in_parts(service, standin):
    summary = publisher(service, standin, part_rows=4).sync("galaxies", subject_set_name="P")
    assert (summary.created, summary.failed, len(summary.imports)) == (N_OBJECTS, 0, 3)
    assert_set_complete(service, standin, summary.subject_set_id)


def test_set_of_another_project_is_not_adopted(service, standin):
    publisher(service, standin).sync("galaxies", subject_set_name="Shared")
    service.register_project(
        "other", zooniverse_project_id=77, owner="bob", repo="r", collections="u/bob/zoo/*"
    )
    with pytest.raises(SubjectSetError, match="belongs to another EPO project"):
        publisher(service, standin).sync("other", subject_set_name="Shared")


def test_wrong_project_and_method_refused(service, standin):
    sender = publisher(service, standin)
    with pytest.raises(SubjectSetError, match="registered with Zooniverse project 77, not 78"):
        sender.sync("galaxies", subject_set_name="X", zooniverse_project=78)
    with pytest.raises(SubjectSetError, match="Unknown method"):
        sender.sync("galaxies", subject_set_name="X", method="upload")
    with service.engine.begin() as connection:
        connection.execute(PROJECTS.update().values(zooniverse_project_id=78))
    with pytest.raises(SubjectSetError, match="project 78 is not visible"):
        sender.sync("galaxies", subject_set_name="X")
    assert not standin.subject_sets


# --- dry run -----------------------------------------------------------------


def test_dry_run_makes_no_requests(service, standin, tmp_path):
    sender = SubjectSetPublisher(service)  # no credentials needed
    summary = sender.sync(
        "galaxies", subject_set_name="D", dry_run=True, output_directory=str(tmp_path / "out")
    )
    assert (summary.pending, summary.created, summary.subject_set_id) == (N_OBJECTS, 0, None)
    assert [os.path.basename(p) for p in summary.manifests] == ["manifest_part001.csv"]
    assert not standin.requests
    assert not glob.glob(os.path.join(service.public.root.ospath, "_manifests"))
    assert [r["action"] for r in service.audit_log()][-1] == "subject_set_dry_run"
    # After a real run, a dry run knows everything was sent.
    real = publisher(service, standin).sync("galaxies", subject_set_name="D", method="subjects")
    n_requests = len(standin.requests)
    again = SubjectSetPublisher(service, credentials_for(standin)).sync(
        "galaxies", subject_set_name="D", dry_run=True
    )
    assert (again.pending, again.already_present, again.subject_set_id) == (
        0,
        N_OBJECTS,
        real.subject_set_id,
    )
    assert len(standin.requests) == n_requests


# --- credentials -------------------------------------------------------------


def test_credentials_file_and_environment(tmp_path):
    path = tmp_path / "zooniverse.yaml"
    path.write_text(
        yaml.safe_dump(
            {"endpoint": "http://127.0.0.1:1/", "client_id": "app", "client_secret": "s3cr3t-value"}
        )
    )
    os.chmod(path, 0o644)
    with pytest.raises(CredentialsError, match="mode 0644.*chmod 600") as info:
        ZooniverseCredentials.from_file(str(path))
    assert "s3cr3t-value" not in str(info.value)
    os.chmod(path, 0o600)
    credentials = ZooniverseCredentials.load(str(path))
    assert (credentials.endpoint, credentials.kind, credentials.client_secret) == (
        "http://127.0.0.1:1",
        "client_credentials",
        "s3cr3t-value",
    )
    assert "s3cr3t-value" not in repr(credentials) + str(credentials)
    path.write_text("client_secret: s3cr3t-value\nclient_idd: x\n")
    with pytest.raises(CredentialsError, match="unknown keys client_idd") as info:
        ZooniverseCredentials.from_file(str(path))
    assert "s3cr3t-value" not in str(info.value)
    path.write_text("client_secret: [s3cr3t-value\n")
    with pytest.raises(CredentialsError, match="YAMLError|ScannerError|ParserError") as info:
        ZooniverseCredentials.from_file(str(path))
    assert "s3cr3t-value" not in str(info.value)
    with pytest.raises(CredentialsError, match="Cannot read"):
        ZooniverseCredentials.from_file(str(tmp_path / "missing.yaml"))

    environ = {"PANOPTES_USERNAME": "alice", "PANOPTES_PASSWORD": "pw-123456"}
    credentials = ZooniverseCredentials.from_environment(environ)
    assert (credentials.kind, credentials.endpoint) == ("password", "https://www.zooniverse.org")
    for bad, match in [
        ({}, "none found"),
        ({"PANOPTES_USERNAME": "alice"}, "needs its password"),
        ({**environ, "PANOPTES_CLIENT_ID": "a", "PANOPTES_CLIENT_SECRET": "b"}, "not both"),
        ({"PANOPTES_CLIENT_SECRET": "b"}, "needs its client id"),
        ({**environ, "PANOPTES_ENDPOINT": "ftp://x"}, "http"),
    ]:
        with pytest.raises(CredentialsError, match=match):
            ZooniverseCredentials.from_environment(bad)


def test_credentials_file_values_must_be_text(tmp_path):
    path = tmp_path / "zooniverse.yaml"
    path.write_text("client_id: 12345\nclient_secret: s3cr3t-value\n")
    os.chmod(path, 0o600)
    assert ZooniverseCredentials.from_file(str(path)).client_id == "12345"
    # YAML reads an unquoted yes as a boolean: named, never shown.
    path.write_text("username: alice\npassword: yes\n")
    with pytest.raises(CredentialsError, match=r"zooniverse.yaml: password is a value of type bool") as info:
        ZooniverseCredentials.from_file(str(path))
    assert "True" not in str(info.value)
    path.write_text("username: [alice]\npassword: pw-123456\n")
    with pytest.raises(CredentialsError, match=r"username is \['alice'\] of type list") as info:
        ZooniverseCredentials.from_file(str(path))
    assert "pw-123456" not in str(info.value)


def test_environment_secrets_are_read_by_the_secret_reader(monkeypatch):
    monkeypatch.setenv("PANOPTES_USERNAME", "alice")
    monkeypatch.setenv("PANOPTES_PASSWORD", " pw-from-env-42\n")
    credentials = ZooniverseCredentials.from_environment()
    assert credentials.password == "pw-from-env-42"
    assert "pw-from-env-42" not in default_redactor().redact("x pw-from-env-42 y")
    monkeypatch.setenv("PANOPTES_PASSWORD", "   ")
    with pytest.raises(CredentialsError, match="PANOPTES_PASSWORD is empty"):
        ZooniverseCredentials.from_environment()


# --- state database ----------------------------------------------------------


def test_migration_from_version_3(state_db_url):
    engine = open_state_database(state_db_url, target_version=3)
    with engine.begin() as connection:
        assert schema_version(connection) == 3
        assert not sa.inspect(connection).has_table("zooniverse_subjects")
        connection.execute(
            PROJECTS.insert().values(
                name="galaxies",
                zooniverse_project_id=77,
                owner="alice",
                repo="r",
                collections="u/alice/*",
                dataset_types="[]",
                metadata_policy="full",
                registered_at="t",
                registered_by="eve",
            )
        )
    engine.dispose()
    engine = open_state_database(state_db_url)
    with engine.begin() as connection:
        assert schema_version(connection) == SCHEMA_VERSION >= 4
        connection.execute(
            ZOONIVERSE_SUBJECT_SETS.insert().values(
                project_id=1,
                endpoint="e",
                zooniverse_project_id=77,
                subject_set_id=5,
                name="S",
                created_at="t",
            )
        )
        row = {"external_id": "galaxies:obj1", "subject_id": 9, "method": "import"}
        row.update(locations="[]", recorded_at="t")
        connection.execute(ZOONIVERSE_SUBJECTS.insert().values(subject_set=1, **row))
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as connection:
            connection.execute(ZOONIVERSE_SUBJECTS.insert().values(subject_set=1, **row))
    engine.dispose()


# --- command line ------------------------------------------------------------


def test_cli_end_to_end(service, standin, tmp_path):
    config = service.config
    options = [
        "--database", str(config.database_url.render_as_string(hide_password=False)),
        "--staging", str(config.staging), "--public-root", str(tmp_path / "public"),
        "--public-url", service.public.url_prefix, "--no-progress",
    ]  # fmt: skip
    credentials = tmp_path / "zooniverse.yaml"
    credentials.write_text(
        yaml.safe_dump(
            {"endpoint": standin.url, "client_id": standin.client_id, "client_secret": "nope-wrong-secret"}
        )
    )
    os.chmod(credentials, 0o600)
    runner = CliRunner()
    command = ["subject-set", "galaxies", "--name", "CLI", "--credentials", str(credentials)]
    result = runner.invoke(main, [*options, *command, "--method", "subjects"])
    assert result.exit_code == 1, result.output
    assert "refused" in result.output and standin.url in result.output
    assert "nope-wrong-secret" not in result.output

    n_requests = len(standin.requests)
    result = runner.invoke(main, [*options, *command[:-2], "--dry-run", "-o", str(tmp_path / "dry")])
    assert result.exit_code == 0, result.output
    assert f"would send {N_OBJECTS} of {N_OBJECTS}" in result.output
    assert len(standin.requests) == n_requests

    credentials.write_text(
        yaml.safe_dump(
            {"endpoint": standin.url, "client_id": standin.client_id, "client_secret": standin.client_secret}
        )
    )
    started = time.monotonic()
    result = runner.invoke(main, [*options, *command, "--json", "--poll-interval", "0.2"])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 8, "the import is polled every 0.2 s, not every 10 s"
    summary = json.loads(result.output)
    assert summary["created"] == N_OBJECTS and summary["method"] == "import"
    result = runner.invoke(main, [*options, *command])
    assert result.exit_code == 0 and f"0 subjects sent, {N_OBJECTS} already present" in result.output

    link = [
        "link-workflow",
        "galaxies",
        "--name",
        "CLI",
        "--workflow",
        "901",
        "--credentials",
        str(credentials),
    ]
    result = runner.invoke(main, [*options, *link])
    assert result.exit_code == 0 and "linked to workflow 901" in result.output, result.output
    result = runner.invoke(main, [*options, *link])
    assert result.exit_code == 0 and "already linked" in result.output, result.output
    assert [r["action"] for r in service.audit_log(project="galaxies")].count("subject_set_linked") == 1

    result = runner.invoke(main, [*options, "subjects", "galaxies", "--json"])
    rows = json.loads(result.output)
    assert sorted(r["external_id"] for r in rows) == sorted(expected_rows(service))
    assert all(r["subject_set_name"] == "CLI" and r["subject_id"] for r in rows)
    result = runner.invoke(main, [*options, "subjects", "galaxies"])
    assert result.exit_code == 0 and len(result.output.splitlines()) == N_OBJECTS


def test_relink_creates_only_deleted_subjects(service, standin):
    # Subjects made earlier were taken out of the set, one was deleted: the
    # rerun links the others back and makes a new subject only for that one
    # (a second copy of the others would be an orphan counted against the
    # uploader's subject limit for good).
    first = publisher(service, standin).sync("galaxies", subject_set_name="R", method="subjects")
    set_id = str(first.subject_set_id)
    members = [subject_id for k, subject_id in standin.members if k == set_id]
    standin.members = [(k, s) for k, s in standin.members if k != set_id]
    del standin.subjects[members[0]]
    again = publisher(service, standin, link_batch_size=4).sync(
        "galaxies", subject_set_name="R", method="subjects"
    )
    assert (again.linked, again.created, again.already_present) == (N_OBJECTS - 1, 1, 0)
    assert len(standin.subjects) == N_OBJECTS
    assert sorted(standin.external_ids(set_id)) == sorted(expected_rows(service))
