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

"""The Panoptes stand-in behaves as the real server's source says
(doc/panoptes_standin.md): each test names the behaviour it pins.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lsst.epo.zooniverse.demo.panoptes_imports import (
    MalformedCsvError,
    download,
    mime_type,
    parse_ruby_csv,
    progress_cadence,
    ruby_extname,
)
from lsst.epo.zooniverse.demo.panoptes_standin import API_ACCEPT, PanoptesStandIn

HEADER = "external_id,location:1,metadata:size\r\n"


def row(external_id, name="a.png", size="small"):
    return f"{external_id},https://pics.example.org/{name},{size}\r\n"


class Client:
    """Token and JSON calls against a stand-in whose manifests are kept in
    memory (``manifests[url] = text``)."""

    def __init__(self, standin):
        self.standin = standin
        self.manifests = {}
        standin.imports_queue.downloader = self._download
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": standin.client_id,
                "client_secret": standin.client_secret,
            }
        )
        request = urllib.request.Request(standin.url + "/oauth/token", data=form.encode(), method="POST")
        with urllib.request.urlopen(request) as answer:
            self.token = json.load(answer)["access_token"]

    def _download(self, url):
        if url not in self.manifests:
            raise OSError(f"404 - Failed to download URL: {url}")
        return self.manifests[url]

    def call(self, method, path, body=None):
        headers = {"Accept": API_ACCEPT, "Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        request = urllib.request.Request(
            self.standin.url + "/api" + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request) as answer:
                text = answer.read()
                return answer.status, json.loads(text) if text else None, dict(answer.headers)
        except urllib.error.HTTPError as err:
            text = err.read()
            return err.code, json.loads(text) if text else None, dict(err.headers)

    def new_set(self, name="S"):
        status, body, _ = self.call(
            "POST", "/subject_sets", {"subject_sets": {"display_name": name, "links": {"project": "77"}}}
        )
        assert status == 201, body
        return body["subject_sets"][0]["id"]

    def post_import(self, set_id, text, url=None):
        url = url or f"https://m.example.org/{len(self.manifests)}.csv"
        self.manifests[url] = text
        body = {"subject_set_imports": {"source_url": url, "links": {"subject_set": set_id}}}
        return self.call("POST", "/subject_set_imports", body)

    def import_state(self, import_id):
        return self.call("GET", f"/subject_set_imports/{import_id}")[1]["subject_set_imports"][0]


@pytest.fixture
def standin():
    with PanoptesStandIn(project_id=77, virtual_time=True) as server:
        yield server


@pytest.fixture
def client(standin):
    return Client(standin)


# --- how the import reads a manifest (csv_import.rb, Ruby CSV) ---------------


def test_ruby_csv_reading():
    assert parse_ruby_csv('a,b\r\n1,""\r\n\r\n2,\r\n') == [["a", "b"], ["1", ""], [], ["2", None]]
    assert parse_ruby_csv('a\n"x ""q"" y"\n') == [["a"], ['x "q" y']]
    for bad in ('a\nx"y\n', 'a\n"x"y\n', 'a\n"open\n'):
        with pytest.raises(MalformedCsvError):
            parse_ruby_csv(bad)


def test_mime_type_from_the_extension_only():
    assert ruby_extname("https://x.org/b.png?sig=1") == ".png?sig=1"
    assert mime_type("https://x.org/b.png") == "image/png"
    assert mime_type("https://x.org/b.png?sig=1") == ""  # the query stays in the extension
    assert mime_type("https://x.org/b.PNG") == ""
    assert mime_type("https://x.org/clip.mp4") == "video/mp4"
    assert mime_type("https://x.org/doc.pdf") == "application/pdf"
    assert mime_type("https://x.org/b.webp") == "image/webp"  # known to Rails, refused by Medium


def test_progress_cadence():
    assert [progress_cadence(n) for n in (0, 1, 10, 11, 100, 101, 1000, 1001, 10000, 10001)] == [
        0, 5, 5, 25, 25, 50, 50, 250, 250, 500,
    ]  # fmt: skip


# --- imports: counted at the POST, run later (subject_set_import*.rb) -------


def test_reimported_external_id_fails_and_is_counted(standin, client):
    set_id = client.new_set()
    status, body, _ = client.post_import(set_id, HEADER + row("e1") + row("e2"))
    assert status == 201 and body["subject_set_imports"][0]["manifest_count"] == 2
    standin.settle()
    (first,) = [s for s in standin.set_subjects(set_id) if s["external_id"] == "e1"]
    _, body, _ = client.post_import(set_id, HEADER + row("e1", "new.png", "big") + row("e3"))
    standin.settle()
    state = client.import_state(body["subject_set_imports"][0]["id"])
    # Not an upsert: the row fails, is counted as imported, changes nothing.
    assert (state["imported_count"], state["failed_count"], state["progress"]) == (2, 1, 1.0)
    assert "failed_uuids" not in state
    assert sorted(standin.external_ids(set_id)) == ["e1", "e2", "e3"]
    assert first["metadata"] == {"size": "small"}
    assert first["locations"] == [{"image/png": "https://pics.example.org/a.png"}]


def test_bad_content_type_fails_the_row_only(standin, client):
    set_id = client.new_set()
    client.post_import(set_id, HEADER + row("e1", "a.png?sig=2") + row("e2", "b.webp") + row("e3"))
    standin.settle()
    (state,) = standin.imports.values()
    assert (state["imported_count"], state["failed_count"]) == (3, 2)
    assert standin.external_ids(set_id) == ["e3"]


def test_blank_line_or_empty_location_kills_the_job(standin, client):
    set_id = client.new_set()
    _, body, _ = client.post_import(set_id, HEADER + row("e1") + "\r\n" + row("e2"))
    assert body["subject_set_imports"][0]["manifest_count"] == 3  # the blank line is a row
    _, body2, _ = client.post_import(set_id, HEADER + row("e3") + "e4,,x\r\n" + row("e5"))
    standin.settle()
    for answer in (body, body2):
        state = client.import_state(answer["subject_set_imports"][0]["id"])
        assert state["progress"] < 1.0  # the job died; Sidekiq does not retry it
    assert sorted(standin.external_ids(set_id)) == ["e1", "e3"]
    assert all(job.dead for job in standin.imports_queue.jobs)


def test_post_refusals(standin, client):
    set_id = client.new_set()
    status, body, _ = client.post_import(set_id, HEADER + 'e1,https://x.org/a"b.png,s\r\n')
    assert status == 500  # CSV::MalformedCSVError is not rescued
    status, body, _ = client.post_import(set_id, HEADER + row("e") * 10_001)
    assert status == 403 and "exceeds the limit (10000)" in body["errors"][0]["message"]
    status, body, _ = client.call(
        "POST",
        "/subject_set_imports",
        {
            "subject_set_imports": {
                "source_url": "https://m.example.org/missing.csv",
                "links": {"subject_set": set_id},
            }
        },
    )
    assert status == 422 and "Failed to download manifest" in body["errors"][0]["message"]
    assert not standin.imports


def test_progress_is_saved_every_cadence_rows_and_jobs_start_late(standin, client):
    standin.imports_queue.start_delay, standin.imports_queue.row_seconds = 100.0, 1.0
    set_id = client.new_set()
    _, body, _ = client.post_import(set_id, HEADER + "".join(row(f"e{i}") for i in range(30)))
    import_id = body["subject_set_imports"][0]["id"]
    standin.advance(99)
    assert client.import_state(import_id)["imported_count"] == 0 and not standin.set_subjects(set_id)
    standin.advance(20)  # 19 rows done, none saved yet
    assert client.import_state(import_id)["imported_count"] == 0
    assert len(standin.set_subjects(set_id)) == 19
    standin.advance(10)
    assert client.import_state(import_id)["imported_count"] == 25
    standin.advance(10)
    assert client.import_state(import_id)["progress"] == 1.0


def test_overlapping_imports_make_duplicates(standin, client):
    standin.imports_queue.row_seconds = 1.0
    set_id = client.new_set()
    text = HEADER + row("e1") + row("e2")
    client.post_import(set_id, text, "https://m.example.org/a.csv")
    client.post_import(set_id, text, "https://m.example.org/b.csv")
    standin.settle()
    assert sorted(standin.external_ids(set_id)) == ["e1", "e1", "e2", "e2"]
    # One after the other, the second import's rows fail instead.
    other = client.new_set("T")
    client.post_import(other, text, "https://m.example.org/c.csv")
    standin.settle()
    client.post_import(other, text, "https://m.example.org/d.csv")
    standin.settle()
    assert sorted(standin.external_ids(other)) == ["e1", "e2"]


def test_imports_are_listed_by_subject_set(standin, client):
    a, b = client.new_set("A"), client.new_set("B")
    client.post_import(a, HEADER + row("e1"))
    client.post_import(b, HEADER + row("e2"))
    status, body, _ = client.call("GET", f"/subject_set_imports?subject_set_id={a}")
    assert status == 200 and [s["links"]["subject_set"] for s in body["subject_set_imports"]] == [a]


def test_lost_answer_after_commit(standin, client):
    standin.lose_answers("/subject_set_imports")
    set_id = client.new_set()
    status, _, _ = client.post_import(set_id, HEADER + row("e1"))
    assert status == 504 and len(standin.imports) == 1
    assert standin.clock() == standin.gateway_timeout  # the gateway waited


def test_download_follows_301_and_302_only():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            codes = {"/301": 301, "/302": 302, "/307": 307, "/308": 308}
            if self.path in codes:
                self.send_response(codes[self.path])
                self.send_header("Location", "/m.csv")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = HEADER.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert download(base + "/301") == HEADER and download(base + "/302") == HEADER
        for code in ("307", "308"):
            with pytest.raises(OSError, match=f"{code} - Failed"):
                download(f"{base}/{code}")
    finally:
        server.shutdown()
        server.server_close()


# --- subjects, scopes, roles, limits (subjects_controller.rb, policies) -----


def test_subject_create_takes_external_id_and_counts_uploads(standin, client):
    set_id = client.new_set()
    body = {
        "subjects": {
            "external_id": "x1",
            "locations": [{"image/png": "https://pics.example.org/a.png"}],
            "links": {"project": "77", "subject_sets": [set_id]},
        }
    }
    status, answer, _ = client.call("POST", "/subjects", body)
    assert status == 201 and answer["subjects"][0]["external_id"] == "x1"
    client.post_import(set_id, HEADER + row("e1"))
    standin.settle()
    assert standin.uploaded == 2  # imported subjects count too
    standin.subject_limit = 2
    status, answer, _ = client.call("POST", "/subjects", body)
    assert status == 403 and answer["errors"][0]["message"] == "User has uploaded 2 subjects of 2 maximum"
    # The import does not check the limit.
    client.post_import(set_id, HEADER + row("e2"))
    standin.settle()
    assert standin.uploaded == 3


def test_missing_scope_is_refused_by_doorkeeper(standin, client):
    set_id = client.new_set()
    standin.revoke_scope("project")
    for method, path, body in (
        ("GET", f"/subject_set_imports?subject_set_id={set_id}", None),
        ("POST", "/subject_sets", {"subject_sets": {"display_name": "X", "links": {"project": "77"}}}),
    ):
        status, answer, headers = client.call(method, path, body)
        assert status == 403 and answer is None
        assert (
            'error="insufficient_scope"' in headers["WWW-Authenticate"]
            and '\\"project\\"' in headers["WWW-Authenticate"]
        )
    assert client.call("GET", f"/subjects?subject_set_id={set_id}")[0] == 200
    standin.revoke_scope("subject")
    status, _, headers = client.call(
        "POST", "/subjects", {"subjects": {"locations": [], "links": {"project": "77"}}}
    )
    assert status == 403 and '\\"subject\\"' in headers["WWW-Authenticate"]


def test_non_collaborator(standin, client):
    set_id = client.new_set()
    client.post_import(set_id, HEADER + row("e1"))
    standin.collaborator = False
    status, answer, _ = client.call(
        "POST", "/subjects", {"subjects": {"locations": [], "links": {"project": "77"}}}
    )
    assert status == 422 and answer["errors"][0]["message"] == "Couldn't find linked project for current user"
    status, answer, _ = client.post_import(set_id, HEADER + row("e2"))
    assert status == 422 and "subject_set for current user" in answer["errors"][0]["message"]
    assert client.call("GET", f"/subject_set_imports?subject_set_id={set_id}")[1]["subject_set_imports"] == []
    assert client.call("GET", f"/subjects?subject_set_id={set_id}")[0] == 200  # a public project


def test_server_errors_do_nothing(standin, client):
    standin.server_errors(2, status=503)
    assert (
        client.call(
            "POST", "/subject_sets", {"subject_sets": {"display_name": "X", "links": {"project": "77"}}}
        )[0]
        == 503
    )
    assert client.call("GET", "/projects/77")[0] == 503
    assert not standin.subject_sets and client.call("GET", "/projects/77")[0] == 200


def test_classification_export_route(standin, client):
    """``media_resources classifications_export`` on projects: 404 until
    an export is asked for, 201 "creating" with ``Location``, "ready" once
    the dump job ran; the file is a gzipped CSV with Panoptes' columns,
    served from ``src`` without API headers or token.
    """
    import csv
    import gzip
    import io

    from lsst.epo.zooniverse.zooniverse.classification_export import EXPORT_COLUMNS

    status, body, _ = client.call("GET", "/projects/77/classifications_export")
    assert (
        status == 404 and body["errors"][0]["message"] == "No classifications_export exists for project #77"
    )
    set_id = client.new_set()
    subject = {"subjects": {"metadata": {"#object_id": "42"}, "locations": [{"image/png": "x"}]}}
    subject["subjects"]["links"] = {"project": "77", "subject_sets": [set_id]}
    subject_id = client.call("POST", "/subjects", subject)[1]["subjects"][0]["id"]
    standin.retirement_count = 2
    annotations = [{"task": "T0", "task_label": "Galaxy?", "value": "Yes"}]
    standin.add_classification(901, [subject_id], annotations, user="vol", workflow_version="3.1")
    standin.add_classification(901, [subject_id], annotations, user=None, gold_standard=True, expert="owner")
    standin.export_seconds = 30.0
    status, body, headers = client.call(
        "POST", "/projects/77/classifications_export", {"media": {"content_type": "text/csv"}}
    )
    assert status == 201 and headers["Location"] == standin.url + "/api/projects/77/classifications_export"
    medium = body["media"][0]
    assert (
        medium["metadata"] == {"state": "creating"}
        and medium["media_type"] == "project_classifications_export"
    )
    assert medium["href"] == "/projects/77/classifications_export" and medium["content_type"] == "text/csv"
    assert medium["external_link"] is False and medium["created_at"] and medium["updated_at"]
    status, body, _ = client.call("GET", "/projects/77/classifications_export")
    assert status == 200 and body["media"][0]["metadata"]["state"] == "creating" and "meta" in body
    # Not yet stored: blob storage has nothing at src.
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(medium["src"])
    standin.advance(30.0)
    status, body, _ = client.call("GET", "/projects/77/classifications_export")
    assert body["media"][0]["metadata"] == {"state": "ready"} and body["media"][0]["src"] == medium["src"]
    # Blob storage: a plain GET, no Accept header, no token; gzip encoded.
    with urllib.request.urlopen(medium["src"]) as answer:
        assert answer.headers["Content-Encoding"] == "gzip" and answer.headers["Content-Type"] == "text/csv"
        text = gzip.decompress(answer.read()).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == EXPORT_COLUMNS and len(rows) == 3
    first, second = (dict(zip(EXPORT_COLUMNS, r)) for r in rows[1:])
    assert first["user_name"] == "vol" and first["workflow_version"] == "3.1" and first["gold_standard"] == ""
    assert second["user_name"].startswith("not-logged-in-") and second["user_id"] == ""
    assert second["gold_standard"] == "true" and second["expert"] == "owner"
    assert json.loads(first["annotations"]) == annotations and first["subject_ids"] == subject_id
    data = json.loads(first["subject_data"])[subject_id]
    assert data["#object_id"] == "42" and data["retired"]["retirement_reason"] == "classification_count"
    assert data["retired"]["classifications_count"] == 2 and data["retired"]["retired_at"]
    with pytest.raises(urllib.error.HTTPError, match="403"):
        urllib.request.urlopen(medium["src"].split("?")[0])
    # A new request reuses the medium (CreateOrUpdateMedium): same id and src.
    status, body, _ = client.call("POST", "/projects/77/classifications_export", {"media": {}})
    assert (
        status == 201 and body["media"][0]["id"] == medium["id"] and body["media"][0]["src"] == medium["src"]
    )
    assert client.call("POST", "/projects/78/classifications_export", {"media": {}})[0] == 404
    bad = {"media": {"content_type": "application/json"}}
    assert client.call("POST", "/projects/77/classifications_export", bad)[0] == 422
    standin.revoke_scope("project")
    assert client.call("POST", "/projects/77/classifications_export", {"media": {}})[0] == 403
    standin.collaborator = False
    assert client.call("GET", "/projects/77/classifications_export")[0] == 404
