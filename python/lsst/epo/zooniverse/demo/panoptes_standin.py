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
panoptes-client 1.7 and this package call when a subject set is created
and filled, as strict as the real server where "nothing is sent twice"
depends on it.

It is not Zooniverse: it keeps everything in memory and serves one
project, for the demo (``scripts/demo.sh``), the tutorial notebook, the
tests and the benchmark, on a machine that cannot reach Zooniverse.  Run
it alone with::

    python -m lsst.epo.zooniverse.demo.panoptes_standin --port 8081

and point the tools at it with ``PANOPTES_ENDPOINT`` and the printed
client credentials.

doc/panoptes_standin.md lists each behaviour with the Panoptes source
file it follows: JSON-API envelopes, 404 without the versioned Accept
header, 401 without a token, Doorkeeper's 403 for a token without the
scope an action needs (``project``; ``subject`` for ``POST /subjects``),
422 for links to a project or set the account cannot update (not a
collaborator), the per-user upload limit on ``POST /subjects`` (403
"User has uploaded N subjects of M maximum"; every subject made counts,
imported or deleted ones too), ``external_id`` accepted on
``POST /subjects``, and subject-set imports counted synchronously at the
POST and run later as queued jobs
(`lsst.epo.zooniverse.demo.panoptes_imports`), and the project's
classification export (`lsst.epo.zooniverse.demo.panoptes_exports`).

Faults to inject: `rate_limit`, `server_errors` (5xx without effect),
`lose_answers` (the POST is carried out, the answer lost after the
gateway's timeout), ``fail_creates_after`` / ``fail_imports_after``,
``imports.start_delay`` / ``imports.row_seconds`` / ``imports.dies_after``
(late, slow and dying import jobs), `revoke_scope`, ``collaborator =
False`` and `reach_upload_limit`.  With ``virtual_time=True`` nothing
happens between requests until `advance` moves the clock (deterministic
tests); otherwise import jobs run in real time.

Every request is recorded (method, path, query, JSON or form body).
"""

from __future__ import annotations

__all__ = ["API_ACCEPT", "PanoptesStandIn", "Recorded", "main"]

import argparse
import dataclasses
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .panoptes_auth import PanoptesSignIn
from .panoptes_exports import BLOB_PREFIX, Blob, ExportRoutes
from .panoptes_import_routes import ImportRoutes, required_scope
from .panoptes_imports import ALLOWED_CONTENT_TYPES, ImportQueue
from .panoptes_jsonapi import API_ACCEPT, ApiAnswer, error_answer, page_answer, scope_answer
from .panoptes_members import SetMembers

SUBJECT_LIMIT = 10_000
"""Uploads per user (Zooniverse's lab policy; ``USER_SUBJECT_LIMIT``)."""
_NOT_LINKABLE = "Couldn't find linked {} for current user"
_SUBJECT_FIELDS = {"metadata", "locations", "links", "external_id"}


@dataclasses.dataclass
class Recorded:
    """One request the stand-in received."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


class PanoptesStandIn(ImportRoutes, SetMembers, ExportRoutes):
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
    record_bodies : `bool`, optional
        Keep request bodies in `requests` (off for long runs).
    workflow_id : `int`, optional
        The project's one workflow.
    virtual_time : `bool`, optional
        Run import jobs only when `advance` moves the clock.
    first_id : `int`, optional
        Resource ids count up from here (tests that make many stand-ins
        keep them apart).
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
        virtual_time: bool = False,
        first_id: int = 1000,
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
        SetMembers.__init__(self)
        ExportRoutes.__init__(self)
        self.imports: dict[str, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.record_bodies = record_bodies
        self.rate_limited, self.retry_after = 0, "1"
        self.failing: list[int] = []
        self.lost: dict[str, int] = {}
        self.gateway_timeout = 60.0
        """Seconds a lost answer takes (virtual time only)."""
        self.fail_creates_after: int | None = None
        self.fail_imports_after: int | None = None
        self.commit_before_failing = False
        self.collaborator = True
        """The account is owner or collaborator of the project."""
        self.subject_limit = SUBJECT_LIMIT
        self.subjects_created = self.imports_created = 0
        self._ids = first_id
        self._lock = threading.RLock()
        self.virtual_time = virtual_time
        self._now = 0.0
        self._t0 = time.monotonic()
        self.imports_queue = ImportQueue(self, self.clock)
        self._stop = threading.Event()
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._threads = [threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)]
        if not virtual_time:
            self._threads.append(threading.Thread(target=self._tick, daemon=True))
        for thread in self._threads:
            thread.start()

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
        """Stop the server (and the import clock)."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> PanoptesStandIn:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    # Time.

    def clock(self) -> float:
        """Return the stand-in's time in seconds."""
        return self._now if self.virtual_time else time.monotonic() - self._t0

    def advance(self, seconds: float) -> None:
        """Move the virtual clock on and run the import jobs due.

        Parameters
        ----------
        seconds : `float`
            How far (real time: only run what is due).
        """
        with self._lock:
            if self.virtual_time:
                self._now += max(0.0, seconds)
            self.imports_queue.run_until(self.clock())
            self.run_exports(self.clock())

    def settle(self, limit: float = 1e7) -> None:
        """Advance until no import or export job is left (virtual time).

        Parameters
        ----------
        limit : `float`, optional
            Most seconds to advance.
        """
        with self._lock:
            while self.imports_queue.running() and limit > 0:
                step = max(1.0, min(j.next_time for j in self.imports_queue.running()) - self._now)
                self.advance(step)
                limit -= step
            if self.exports_due() is not None:
                self.advance(max(0.0, self.exports_due() - self.clock()))

    def _tick(self) -> None:
        while not self._stop.wait(0.005):
            self.advance(0.0)

    # Faults and inspection.

    def rate_limit(self, n: int, retry_after: str = "1") -> None:
        """Answer HTTP 429 with ``Retry-After`` to the next ``n`` API
        requests.
        """
        self.rate_limited, self.retry_after = n, retry_after

    def server_errors(self, n: int, status: int = 502) -> None:
        """Answer ``status`` to the next ``n`` API requests, doing nothing
        (a gateway or server failure before the application).
        """
        self.failing += [status] * n

    def lose_answers(self, path: str, n: int = 1) -> None:
        """Carry out the next ``n`` POSTs to ``path`` (``/subjects``,
        ``/subject_set_imports``, ...) but answer 504 after
        `gateway_timeout`, as a gateway does when the server is slower
        than its timeout.
        """
        self.lost[path] = self.lost.get(path, 0) + n

    def revoke_scope(self, scope: str) -> None:
        """Take ``scope`` away from every token (and new ones)."""
        self.auth.revoke_scope(scope)

    def reach_upload_limit(self) -> None:
        """Lower the account's subject limit to what it has uploaded."""
        self.subject_limit = self.uploaded

    def api_requests(self, method: str | None = None, prefix: str = "/api/") -> list[Recorded]:
        """Return the recorded requests under ``prefix`` (of one method)."""
        return [r for r in self.requests if r.path.startswith(prefix) and method in (None, r.method)]

    # Request handling.

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
        headers: dict[str, str] = {}
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
            try:
                status, answer = self._route(request, method, split.path, query, body, headers)
            except ApiAnswer as answer_error:
                status, answer = answer_error.status, answer_error.body
                headers.update(answer_error.headers)
            if method == "POST" and status < 300 and self.lost.get(split.path[len("/api") :], 0) > 0:
                self.lost[split.path[len("/api") :]] -= 1
                if self.virtual_time:
                    self.advance(self.gateway_timeout)
                status, answer = 504, None
        if isinstance(answer, Blob):  # a stored file, not JSON
            data = answer.data
            headers = {**answer.headers, **headers}
        else:
            data = b"" if answer is None else json.dumps(answer).encode()
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _route(self, request, method, path, query, body, headers) -> tuple[int, Any]:
        if path == "/users/sign_in":
            return self.auth.sign_in(request, method, body, headers)
        if path == "/oauth/token" and method == "POST":
            return self.auth.token(request, body or {})
        if path.startswith(BLOB_PREFIX) and method == "GET":
            return self.blob_answer(path, query)  # blob storage: no API headers
        if not path.startswith("/api/"):
            raise error_answer(404, "Not found")
        # Routes are constrained to the versioned JSON-API media type.
        if API_ACCEPT not in (request.headers.get("Accept") or ""):
            raise error_answer(404, "Not found")
        scopes = self.auth.token_scopes(request)
        if scopes is None:
            raise error_answer(401, "You must be logged in to access this resource.")
        if self.rate_limited > 0:
            self.rate_limited -= 1
            raise ApiAnswer(
                429, {"errors": [{"message": "Too many requests"}]}, {"Retry-After": self.retry_after}
            )
        if self.failing:
            raise ApiAnswer(self.failing.pop(0), None)
        parts = path[len("/api/") :].strip("/").split("/")
        needed = required_scope(method, parts)
        if needed and needed not in scopes:
            raise scope_answer(needed)
        handler = getattr(self, f"_{method.lower()}_{parts[0]}", None)
        if handler is None:
            raise error_answer(404, "Not found")
        return handler(parts[1:], query, body)

    def _updatable(self, kind: str, resource_id: str, table: dict[str, Any]) -> dict[str, Any]:
        """Return a resource the account may update (404 otherwise)."""
        if resource_id not in table or not self.collaborator:
            raise error_answer(404, f"Could not find {kind} with id='{resource_id}'")
        return table[resource_id]

    # Projects and workflows.

    def _get_projects(self, parts, query, body) -> tuple[int, Any]:
        if parts[1:] == ["classifications_export"]:
            return self._get_project_export(parts[0], query)
        ids = parts[:1] or ([query["id"]] if "id" in query else list(self.projects))
        found = [self.projects[i] for i in ids if i in self.projects]
        if parts and not found:
            raise error_answer(404, f"Could not find project with id='{parts[0]}'")
        return page_answer("projects", found, query)

    def _get_workflows(self, parts, query, body) -> tuple[int, Any]:
        if not parts or parts[0] not in self.workflows:
            raise error_answer(404, f"Could not find workflow with id='{parts[0] if parts else ''}'")
        return 200, {"workflows": [self.workflows[parts[0]]]}

    def _post_workflows(self, parts, query, body) -> tuple[int, Any]:
        # /workflows/:id/links/subject_sets (update_links: no scope needed)
        workflow = self._updatable("workflow", parts[0] if parts else "", self.workflows)
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

    # Subject sets.

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
            filters = (("id", "id"), ("project_id", "project"), ("display_name", "display_name"))
            items = [
                s
                for s in self.subject_sets.values()
                if all(
                    str(query[k]) == str(s["links"]["project"] if f == "project" else s[f])
                    for k, f in filters
                    if k in query
                )
            ]
        return page_answer("subject_sets", [self._set_json(s) for s in items], query)

    def _post_subject_sets(self, parts, query, body) -> tuple[int, Any]:
        if parts:  # /subject_sets/:id/links/subjects (update_links)
            subject_set = self._updatable("subject_set", parts[0], self.subject_sets)
            if parts[1:] != ["links", "subjects"]:
                raise error_answer(404, "Not found")
            ids = [str(i) for i in (body or {}).get("subjects", [])]
            missing = [i for i in ids if i not in self.subjects]
            if missing:
                raise error_answer(404, f"Could not find subjects with ids='{','.join(missing)}'")
            for subject_id in ids:
                self.link(parts[0], subject_id)
            return 200, {"subject_sets": [self._set_json(subject_set)]}
        attributes = (body or {}).get("subject_sets")
        if not isinstance(attributes, dict) or set(attributes) - {"display_name", "metadata", "links"}:
            raise error_answer(
                422, "schema: subject_sets has properties other than display_name, metadata, links"
            )
        project = str((attributes.get("links") or {}).get("project", ""))
        if project not in self.projects or not self.collaborator:
            raise error_answer(422, _NOT_LINKABLE.format("project"))
        self._ids += 1
        subject_set = {
            "id": str(self._ids),
            "display_name": attributes.get("display_name"),
            "metadata": attributes.get("metadata") or {},
            "links": {"project": project, "workflows": []},
        }
        self.subject_sets[subject_set["id"]] = subject_set
        return 201, {"subject_sets": [self._set_json(subject_set)]}

    def _delete_subject_sets(self, parts, query, body) -> tuple[int, Any]:
        # /subject_sets/:id/links/subjects/:ids (destroy_links)
        self._updatable("subject_set", parts[0] if parts else "", self.subject_sets)
        if len(parts) != 4 or parts[1:3] != ["links", "subjects"]:
            raise error_answer(404, "Not found")
        for subject_id in parts[3].split(","):
            self.unlink(parts[0], subject_id)
        return 204, None

    # Subjects.

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
        return page_answer("subjects", items, query, lambda s: {**s, "href": f"/subjects/{s['id']}"})

    def _post_subjects(self, parts, query, body) -> tuple[int, Any]:
        # SubjectCreateSchema: links and locations required; external_id
        # and metadata optional; nothing else.
        attributes = (body or {}).get("subjects")
        if not isinstance(attributes, dict) or set(attributes) - _SUBJECT_FIELDS:
            raise error_answer(
                422, "schema: subjects has properties other than external_id, metadata, locations, links"
            )
        links, locations = attributes.get("links"), attributes.get("locations")
        if (
            not isinstance(links, dict)
            or not isinstance(locations, list)
            or set(links) - {"project", "subject_sets", "owner"}
            or not isinstance(attributes.get("external_id", ""), str)
        ):
            raise error_answer(422, "schema: links (project) and locations are required")
        if self.uploaded >= self.subject_limit:
            limits = f"{self.uploaded} subjects of {self.subject_limit} maximum"
            raise error_answer(403, f"User has uploaded {limits}")
        project = str(links.get("project", ""))
        if project not in self.projects or not self.collaborator:
            raise error_answer(422, _NOT_LINKABLE.format("project"))
        set_ids = [str(i) for i in links.get("subject_sets", [])]
        if any(i not in self.subject_sets for i in set_ids):
            raise error_answer(422, _NOT_LINKABLE.format("subject_sets"))
        for location in locations:
            if isinstance(location, dict) and (
                len(location) != 1 or next(iter(location)) not in ALLOWED_CONTENT_TYPES
            ):
                raise error_answer(400, f"Validation failed: Locations content type is invalid: {location}")
        failing = self.fail_creates_after is not None and self.subjects_created >= self.fail_creates_after
        if failing and not self.commit_before_failing:
            raise ApiAnswer(500, {"errors": [{"message": "Internal server error"}]})
        subject = self.new_subject(
            project, locations, attributes.get("metadata") or {}, attributes.get("external_id")
        )
        for set_id in set_ids:
            self.link(set_id, subject["id"])
        self.subjects_created += 1
        if failing:
            raise ApiAnswer(504, None)  # created, but the answer is lost
        return 201, {"subjects": [{**subject, "href": f"/subjects/{subject['id']}"}]}

    def _get_set_member_subjects(self, parts, query, body) -> tuple[int, Any]:
        items = [
            {"id": f"{k}-{s}", "state": "active", "priority": None, "links": {"subject_set": k, "subject": s}}
            for k, s in self.members
            if query.get("subject_set_id", k) == k and query.get("subject_id", s) == s
        ]
        return page_answer("set_member_subjects", items, query)


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

    def do_DELETE(self) -> None:
        self.standin.handle(self, "DELETE")

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
