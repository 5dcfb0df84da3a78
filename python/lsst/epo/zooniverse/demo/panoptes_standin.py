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

"""A local stand-in for the Panoptes (Zooniverse API) endpoints that
panoptes-client 1.7 calls when a subject set is created and filled.

It is not Zooniverse: it keeps everything in memory and serves one
project, for the demo (``scripts/demo.sh``), the tutorial notebook, the
tests and the benchmark, on a machine that cannot reach Zooniverse.  Run
it alone with::

    python -m lsst.epo.zooniverse.demo.panoptes_standin --port 8081

and point the tools at it with ``PANOPTES_ENDPOINT`` and the printed
client credentials.

It answers as the real API does (Panoptes ``app/controllers/api/v1``,
``app/schemas``, serializers; doc/zooniverse_facts.md §1, §2, §6):
JSON-API envelopes
``{"<type>": [...], "meta": {"<type>": {page, page_count, next_href,
...}}}``, ids as strings, 404 without the ``application/vnd.api+json;
version=1`` Accept header, 401 without a valid bearer token, 422 for a
body its schema refuses, doorkeeper's
``{"error": "invalid_client"}`` for wrong client credentials, and
``subject_set_imports`` that download the manifest at creation (counting
its rows) and import it afterwards in a worker (MIME type from the URL's
extension as Ruby's ``File.extname`` gives it).

Known differences from the real server (issue 16, doc/zooniverse_facts.md
§1.5, §2): this stand-in refuses ``external_id`` on ``POST /subjects``
(accepted by the real schema since 2018), and its import worker updates a
subject whose ``external_id`` is already in the set, where the real worker
fails on that row (a unique index refuses the second link) and the import
never finishes.

Every request is recorded (method, path, query, JSON or form body).
Faults: ``rate_limit(n, retry_after)`` answers 429 to the next ``n`` API
requests; ``import_dies_after`` stops import workers mid-way (as a failed
import job, never retried, leaves its import unfinished for good);
``fail_creates_after`` / ``fail_imports_after`` answer 500 to every
subject (import) create once that many were made, after creating it if
``commit_before_failing`` (a lost answer).

Sign-in and tokens are in `lsst.epo.zooniverse.demo.panoptes_auth`, the
JSON-API envelopes and error answers in
`lsst.epo.zooniverse.demo.panoptes_jsonapi`.
"""

from __future__ import annotations

__all__ = ["API_ACCEPT", "PanoptesStandIn", "Recorded", "main"]

import argparse
import csv
import dataclasses
import io
import json
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .panoptes_auth import PanoptesSignIn
from .panoptes_jsonapi import API_ACCEPT, ApiAnswer, error_answer, page_answer

IMPORT_ROW_LIMIT = 10_000
_MIME = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif"}


@dataclasses.dataclass
class Recorded:
    """One request the stand-in received."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


class PanoptesStandIn:
    """The stand-in server on ``127.0.0.1`` (any free port).

    Parameters
    ----------
    project_id : `int`
        The one Zooniverse project, owned by the signed-in user.
    client_id, client_secret : `str`
        The OAuth application's credentials (client credentials flow).
    username, password : `str`
        The user's (password flow).
    port : `int`, optional
        Port on ``127.0.0.1`` (0: any free port).
    workflow_id : `int`, optional
        The project's one workflow.
    record_bodies : `bool`, optional
        Keep request bodies in `requests` (off for long runs).
    """

    def __init__(
        self,
        project_id: int = 77,
        *,
        client_id: str = "epo-app",
        client_secret: str = "standin-client-secret-0123",
        username: str = "alice",
        password: str = "standin-password-4567",
        port: int = 0,
        record_bodies: bool = True,
        workflow_id: int = 901,
    ) -> None:
        self.auth = PanoptesSignIn(client_id, client_secret, username, password)
        self.projects = {str(project_id): {"id": str(project_id), "display_name": "Galaxy shapes"}}
        self.workflows = {
            str(workflow_id): {
                "id": str(workflow_id),
                "display_name": "Classify",
                "links": {"project": str(project_id), "subject_sets": []},
            }
        }
        self.subject_sets: dict[str, dict[str, Any]] = {}
        self.subjects: dict[str, dict[str, Any]] = {}
        self.members: list[tuple[str, str]] = []  # (subject_set_id, subject_id), in link order
        self.imports: dict[str, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.rate_limited = 0
        self.retry_after = "1"
        self.fail_creates_after: int | None = None
        self.fail_imports_after: int | None = None
        self.commit_before_failing = False
        self.subjects_created = 0
        self.imports_created = 0
        self._ids = 1000
        self._lock = threading.RLock()
        self._workers: list[threading.Thread] = []
        handler = type("Handler", (_Handler,), {"standin": self})
        self.record_bodies = record_bodies
        self.import_dies_after: int | None = None
        """Make import workers die after this many rows (Sidekiq does not
        retry them: the import never finishes)."""
        self.import_row_seconds = 0.002
        """Time the import worker takes per manifest row (a real import is
        asynchronous: clients see its progress grow)."""
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def client_id(self) -> str:
        """The OAuth application's id (`str`)."""
        return self.auth.client_id

    @property
    def client_secret(self) -> str:
        """The OAuth application's secret (`str`)."""
        return self.auth.client_secret

    @property
    def username(self) -> str:
        """The user's login (`str`)."""
        return self.auth.username

    @property
    def password(self) -> str:
        """The user's password (`str`)."""
        return self.auth.password

    def close(self) -> None:
        """Stop the server (and wait for import workers)."""
        for worker in self._workers:
            worker.join(10)
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> PanoptesStandIn:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    # Faults and inspection.

    def rate_limit(self, n: int, retry_after: str = "1") -> None:
        """Answer HTTP 429 with ``Retry-After`` to the next ``n`` API
        requests.
        """
        self.rate_limited, self.retry_after = n, retry_after

    def api_requests(self, method: str | None = None, prefix: str = "/api/") -> list[Recorded]:
        """Return the recorded requests under ``prefix`` (of one method)."""
        return [r for r in self.requests if r.path.startswith(prefix) and method in (None, r.method)]

    def set_subjects(self, subject_set_id: str | int) -> list[dict[str, Any]]:
        """Return the subjects of a set, in link order."""
        return [self.subjects[s] for k, s in self.members if k == str(subject_set_id)]

    def external_ids(self, subject_set_id: str | int) -> list[str]:
        """External ids of a set's subjects (``external_id``, else the
        ``#external_id`` metadata), duplicates kept.
        """
        return [
            s.get("external_id") or s["metadata"].get("#external_id")
            for s in self.set_subjects(subject_set_id)
        ]

    # Request handling.

    def _next_id(self) -> str:
        self._ids += 1
        return str(self._ids)

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        split = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(split.query))
        raw = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        body: Any = None
        if raw:
            if "json" in (request.headers.get("Content-Type") or ""):
                body = json.loads(raw)
            else:
                body = dict(urllib.parse.parse_qsl(raw.decode()))
        with self._lock:
            self.requests.append(
                Recorded(
                    method,
                    split.path,
                    query,
                    body if self.record_bodies else None,
                    dict(request.headers.items()) if self.record_bodies else {},
                )
            )
        headers: dict[str, str] = {}
        try:
            with self._lock:
                status, answer = self._route(request, method, split.path, query, body, headers)
        except ApiAnswer as answer_error:
            status, answer = answer_error.status, answer_error.body
            headers.update(answer_error.headers)
        data = b"" if answer is None else json.dumps(answer).encode()
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _route(self, request, method, path, query, body, headers) -> tuple[int, Any]:
        if path == "/users/sign_in":
            return self.auth.sign_in(request, method, body, headers)
        if path == "/oauth/token" and method == "POST":
            return self.auth.token(request, body or {})
        if not path.startswith("/api/"):
            raise error_answer(404, "Not found")
        # Routes are constrained to the versioned JSON-API media type.
        if API_ACCEPT not in (request.headers.get("Accept") or ""):
            raise error_answer(404, "Not found")
        if not self.auth.is_valid_bearer(request):
            raise error_answer(401, "You must be logged in to access this resource.")
        if self.rate_limited > 0:
            self.rate_limited -= 1
            raise ApiAnswer(
                429, {"errors": [{"message": "Too many requests"}]}, {"Retry-After": self.retry_after}
            )
        parts = path[len("/api/") :].strip("/").split("/")
        handler = getattr(self, f"_{method.lower()}_{parts[0]}", None)
        if handler is None:
            raise error_answer(404, "Not found")
        return handler(parts[1:], query, body)

    # Resources.

    def _get_projects(self, parts, query, body) -> tuple[int, Any]:
        ids = parts[:1] or ([query["id"]] if "id" in query else list(self.projects))
        found = [self.projects[i] for i in ids if i in self.projects]
        if parts and not found:
            raise error_answer(404, f"Could not find project with id='{parts[0]}'")
        return page_answer("projects", found, query)

    def _workflow(self, parts) -> dict[str, Any]:
        if not parts or parts[0] not in self.workflows:
            raise error_answer(404, f"Could not find workflow with id='{parts[0] if parts else ''}'")
        return self.workflows[parts[0]]

    def _get_workflows(self, parts, query, body) -> tuple[int, Any]:
        return 200, {"workflows": [self._workflow(parts)]}

    def _post_workflows(self, parts, query, body) -> tuple[int, Any]:
        # /workflows/:id/links/subject_sets (what
        # workflow.links.subject_sets.add does)
        workflow = self._workflow(parts)
        if parts[1:] != ["links", "subject_sets"]:
            raise error_answer(404, "Not found")
        ids = [str(i) for i in (body or {}).get("subject_sets", [])]
        missing = [i for i in ids if i not in self.subject_sets]
        if missing:
            raise error_answer(404, f"Could not find subject_sets with ids='{','.join(missing)}'")
        if any(self.subject_sets[i]["links"]["project"] != workflow["links"]["project"] for i in ids):
            raise error_answer(422, "subject sets must belong to the workflow's project")
        for set_id in ids:
            if set_id not in workflow["links"]["subject_sets"]:
                workflow["links"]["subject_sets"].append(set_id)
        return 200, {"workflows": [workflow]}

    def _set_json(self, subject_set: dict[str, Any]) -> dict[str, Any]:
        count = sum(1 for k, _ in self.members if k == subject_set["id"])
        return {
            **subject_set,
            "set_member_subjects_count": count,
            "href": f"/subject_sets/{subject_set['id']}",
        }

    def _get_subject_sets(self, parts, query, body) -> tuple[int, Any]:
        if parts:
            if parts[0] not in self.subject_sets:
                raise error_answer(404, f"Could not find subject_set with id='{parts[0]}'")
            items = [self.subject_sets[parts[0]]]
        else:
            items = [
                s
                for s in self.subject_sets.values()
                if all(
                    str(query[k]) == str(v)
                    for k, v in (
                        ("id", s["id"]),
                        ("project_id", s["links"]["project"]),
                        ("display_name", s["display_name"]),
                    )
                    if k in query
                )
            ]
        return page_answer("subject_sets", [self._set_json(s) for s in items], query)

    def _post_subject_sets(self, parts, query, body) -> tuple[int, Any]:
        if parts:  # /subject_sets/:id/links/subjects
            if len(parts) != 3 or parts[1:] != ["links", "subjects"] or parts[0] not in self.subject_sets:
                raise error_answer(404, "Not found")
            ids = [str(i) for i in (body or {}).get("subjects", [])]
            missing = [i for i in ids if i not in self.subjects]
            if missing:
                raise error_answer(404, f"Could not find subjects with ids='{','.join(missing)}'")
            for subject_id in ids:
                self._link(parts[0], subject_id)
            return 200, {"subject_sets": [self._set_json(self.subject_sets[parts[0]])]}
        attributes = (body or {}).get("subject_sets")
        if not isinstance(attributes, dict) or set(attributes) - {"display_name", "metadata", "links"}:
            raise error_answer(
                422, "schema: subject_sets has properties other than display_name, metadata, links"
            )
        project = str((attributes.get("links") or {}).get("project", ""))
        if project not in self.projects:
            raise error_answer(422, "project must exist and be updatable")
        subject_set = {
            "id": self._next_id(),
            "display_name": attributes.get("display_name"),
            "metadata": attributes.get("metadata") or {},
            "links": {"project": project, "workflows": []},
        }
        self.subject_sets[subject_set["id"]] = subject_set
        return 201, {"subject_sets": [self._set_json(subject_set)]}

    def _link(self, subject_set_id: str, subject_id: str) -> None:
        if (subject_set_id, subject_id) not in self.members:
            self.members.append((subject_set_id, subject_id))
            self.subjects[subject_id]["links"]["subject_sets"].append(subject_set_id)

    def _subject_json(self, subject: dict[str, Any]) -> dict[str, Any]:
        return {**subject, "href": f"/subjects/{subject['id']}"}

    def _get_subjects(self, parts, query, body) -> tuple[int, Any]:
        if parts:
            if parts[0] not in self.subjects:
                raise error_answer(404, f"Could not find subject with id='{parts[0]}'")
            items = [self.subjects[parts[0]]]
        elif "subject_set_id" in query:
            items = self.set_subjects(query["subject_set_id"])
        elif "id" in query:
            items = [self.subjects[i] for i in query["id"].split(",") if i in self.subjects]
        else:
            items = list(self.subjects.values())
        return page_answer("subjects", [self._subject_json(s) for s in items], query)

    def _new_subject(self, project, locations, metadata, external_id=None) -> dict[str, Any]:
        subject = {
            "id": self._next_id(),
            "external_id": external_id,
            "locations": locations,
            "metadata": metadata,
            "links": {"project": project, "collections": [], "subject_sets": []},
        }
        self.subjects[subject["id"]] = subject
        return subject

    def _post_subjects(self, parts, query, body) -> tuple[int, Any]:
        # Stricter than the real SubjectCreateSchema, which also takes
        # external_id (issue 16): links and locations, and metadata.
        attributes = (body or {}).get("subjects")
        if not isinstance(attributes, dict) or set(attributes) - {"metadata", "locations", "links"}:
            raise error_answer(422, "schema: subjects has properties other than metadata, locations, links")
        links, locations = attributes.get("links"), attributes.get("locations")
        if (
            not isinstance(links, dict)
            or not isinstance(locations, list)
            or set(links) - {"project", "subject_sets", "owner"}
        ):
            raise error_answer(422, "schema: links (project) and locations are required")
        project = str(links.get("project", ""))
        if project not in self.projects:
            raise error_answer(422, "project must exist")
        set_ids = [str(i) for i in links.get("subject_sets", [])]
        if any(i not in self.subject_sets for i in set_ids):
            raise error_answer(422, "subject_sets must exist")
        for location in locations:
            if isinstance(location, dict) and (
                len(location) != 1 or next(iter(location)) not in _MIME.values()
            ):
                raise error_answer(422, f"Validation failed: Locations content type is invalid: {location}")
        failing = self.fail_creates_after is not None and self.subjects_created >= self.fail_creates_after
        if failing and not self.commit_before_failing:
            raise ApiAnswer(500, {"errors": [{"message": "Internal server error"}]})
        subject = self._new_subject(project, locations, attributes.get("metadata") or {})
        for set_id in set_ids:
            self._link(set_id, subject["id"])
        self.subjects_created += 1
        if failing:
            raise ApiAnswer(504, None)  # created, but the answer is lost
        return 201, {"subjects": [self._subject_json(subject)]}

    def _get_set_member_subjects(self, parts, query, body) -> tuple[int, Any]:
        items = [
            {"id": f"{k}-{s}", "state": "active", "priority": None, "links": {"subject_set": k, "subject": s}}
            for k, s in self.members
            if query.get("subject_set_id", k) == k and query.get("subject_id", s) == s
        ]
        return page_answer("set_member_subjects", items, query)

    # Subject set imports.

    def _download(self, url: str) -> list[dict[str, str]]:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise error_answer(422, f"Manifest URL {url!r} is not http(s)")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode("utf-8")
        except Exception as err:
            raise error_answer(422, f"Could not download the manifest: {err}") from None
        return list(csv.DictReader(io.StringIO(text)))

    def _post_subject_set_imports(self, parts, query, body) -> tuple[int, Any]:
        attributes = (body or {}).get("subject_set_imports")
        if not isinstance(attributes, dict) or set(attributes) - {"source_url", "links"}:
            raise error_answer(422, "schema: subject_set_imports takes source_url and links only")
        set_id = str((attributes.get("links") or {}).get("subject_set", ""))
        if set_id not in self.subject_sets:
            raise error_answer(422, "subject_set must exist and be updatable")
        if self.fail_imports_after is not None and self.imports_created >= self.fail_imports_after:
            raise ApiAnswer(500, {"errors": [{"message": "Internal server error"}]})
        rows = self._download(attributes.get("source_url", ""))  # CountManifestRows, synchronously
        if len(rows) > IMPORT_ROW_LIMIT:
            raise error_answer(
                422, f"Manifest row count ({len(rows)}) exceeds the limit ({IMPORT_ROW_LIMIT})"
            )
        record = {
            "id": self._next_id(),
            "source_url": attributes["source_url"],
            "imported_count": 0,
            "failed_count": 0,
            "manifest_count": len(rows),
            "progress": 0.0,
            "links": {"subject_set": set_id, "user": "1"},
        }
        self.imports[record["id"]] = record
        self.imports_created += 1
        worker = threading.Thread(target=self._import_worker, args=(record, set_id), daemon=True)
        self._workers.append(worker)
        worker.start()
        return 201, {"subject_set_imports": [{**record, "href": f"/subject_set_imports/{record['id']}"}]}

    def _import_worker(self, record: dict[str, Any], set_id: str) -> None:
        # SubjectSetImportWorker: stream the manifest again and import each
        # row (here an external_id already in the set updates its subject;
        # the real worker fails on it: issue 16).
        try:
            rows = self._download(record["source_url"])
        except Exception:
            # The job raises and Sidekiq does not retry it (retry: 0): the
            # import's counts and progress never change again.
            return
        project = self.subject_sets[set_id]["links"]["project"]
        with self._lock:
            by_external_id = {
                s["external_id"]: s for s in self.set_subjects(set_id) if s.get("external_id") is not None
            }
        for number, row in enumerate(rows, start=1):
            if self.import_dies_after is not None and number > self.import_dies_after:
                return  # the worker died mid-way (not retried)
            if self.import_row_seconds:
                time.sleep(self.import_row_seconds)
            with self._lock:
                locations, metadata = [], {}
                for header, value in row.items():
                    kind, _, rest = header.partition(":")
                    key = rest.split(":")[0]
                    if kind == "location":
                        # Ruby File.extname keeps a query string.
                        name = urllib.parse.urlsplit(value).path.rsplit("/", 1)[-1]
                        extension = name.rsplit(".", 1)[-1] if "." in name else ""
                        if "?" in value:
                            extension += value[value.index("?") :]
                        locations.append({_MIME.get(extension, ""): value})
                    elif kind == "metadata":
                        metadata[key] = value
                if any("" in location for location in locations) or not locations:
                    record["failed_count"] += 1
                else:
                    existing = by_external_id.get(row.get("external_id"))
                    if existing is not None:
                        existing.update(locations=locations, metadata=metadata)
                    else:
                        subject = self._new_subject(project, locations, metadata, row.get("external_id"))
                        self._link(set_id, subject["id"])
                        if subject.get("external_id") is not None:
                            by_external_id[subject["external_id"]] = subject
                    record["imported_count"] += 1
                record["progress"] = number / len(rows)
        with self._lock:
            record["progress"] = 1.0

    def _get_subject_set_imports(self, parts, query, body) -> tuple[int, Any]:
        if not parts or parts[0] not in self.imports:
            raise error_answer(404, "Could not find subject_set_import")
        record = self.imports[parts[0]]
        return 200, {"subject_set_imports": [{**record, "href": f"/subject_set_imports/{record['id']}"}]}


class _Handler(BaseHTTPRequestHandler):
    standin: PanoptesStandIn
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without TCP_NODELAY every answer
    # waits for the client's delayed ACK (40 ms on Linux).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.standin.handle(self, "GET")

    def do_POST(self) -> None:
        self.standin.handle(self, "POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    """Run the stand-in until interrupted (``python -m``)."""
    parser = argparse.ArgumentParser(description="A local stand-in for the Zooniverse API (not Zooniverse).")
    parser.add_argument("--port", type=int, default=8081, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--project-id", type=int, default=1, help="the one Zooniverse project's id")
    args = parser.parse_args(argv)
    with PanoptesStandIn(args.project_id, port=args.port, record_bodies=False) as server:
        print(
            f"Panoptes stand-in at {server.url} (project {args.project_id}, workflow "
            f"{next(iter(server.workflows))}); use\n"
            f"  PANOPTES_ENDPOINT={server.url} PANOPTES_CLIENT_ID={server.client_id} "
            f"PANOPTES_CLIENT_SECRET={server.client_secret}",
            flush=True,
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
