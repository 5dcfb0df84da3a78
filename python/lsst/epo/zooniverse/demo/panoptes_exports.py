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

"""The classification export of the Panoptes stand-in
(`lsst.epo.zooniverse.demo.panoptes_standin`).

Panoptes routes ``media_resources classifications_export`` on projects
(``config/routes.rb``): ``GET /api/projects/<id>/classifications_export``
is ``MediaController#index`` (the project must be one the account may
update; no export yet: 404 "No classifications_export exists for project
#<id>"), and ``POST`` is ``ProjectsController#create_classifications_export``
(``project`` scope): ``CreateOrUpdateMedium`` sets ``metadata.state`` to
``creating`` on the project's one export medium (made on the first
request, its ``src`` kept afterwards), answers 201 with ``Location``, and
``ClassificationsDumpWorker`` later writes the CSV
(``Formatter::Csv::Classification``), gzips it, stores it with
``Content-Encoding: gzip`` and sets the state to ``ready``
(``CsvDumps::DumpProcessor``).  The file is served here like blob storage:
a plain GET of ``src`` (a signed URL), no API headers, no token.

Classifications are added by tests and demos with `add_classification`
(or `add_fake_classifications`, whose answers come from
`lsst.epo.zooniverse.demo.fake_classifications`).
"""

from __future__ import annotations

__all__ = ["BLOB_PREFIX", "Blob", "ExportRoutes", "export_csv"]

import csv
import dataclasses
import datetime
import email.utils
import gzip
import io
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..zooniverse.classification_export import EXPORT_COLUMNS
from .fake_classifications import fake_classification_rows
from .panoptes_jsonapi import ApiAnswer, error_answer, page_answer

BLOB_PREFIX = "/blobs/private/"
"""Where the stand-in's "blob storage" serves export files (Panoptes
stores exports as private media, read through signed URLs)."""

MEDIA_TYPE = "project_classifications_export"
"""``Medium#type`` of a project's classification export."""

RETIREMENT_COUNT = 15
"""Panoptes' default retirement: ``classification_count``, 15."""


@dataclasses.dataclass
class Blob:
    """A file answer (not JSON) of the stand-in.

    Parameters
    ----------
    data : `bytes`
        The body, as stored.
    headers : `dict` [`str`, `str`]
        ``Content-Type``, ``Content-Encoding``, ...
    """

    data: bytes
    headers: dict[str, str]


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def export_csv(rows: Iterable[Sequence[Any]]) -> bytes:
    """Write export rows as Panoptes does, gzip-compressed.

    Parameters
    ----------
    rows : `~collections.abc.Iterable`
        Rows in `EXPORT_COLUMNS` order (`None` is written empty, as Ruby
        CSV writes ``nil``).

    Returns
    -------
    data : `bytes`
        The gzipped CSV, header first, newline line ends (Ruby CSV's
        default).
    """
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    writer.writerows(["" if cell is None else cell for cell in row] for row in rows)
    return gzip.compress(text.getvalue().encode("utf-8"))


class ExportRoutes:
    """Classifications and ``/api/projects/<id>/classifications_export`` of
    the stand-in (a mixin of
    `~lsst.epo.zooniverse.demo.panoptes_standin.PanoptesStandIn`).

    Attributes
    ----------
    export_seconds : `float`
        How long the dump job takes after the POST (stand-in time).
    retirement_count : `int`
        Classifications of a subject in a workflow that retire it.
    """

    projects: dict[str, dict[str, Any]]
    workflows: dict[str, dict[str, Any]]
    subjects: dict[str, dict[str, Any]]
    collaborator: bool
    url: str
    clock: Callable[[], float]

    def __init__(self) -> None:
        self.classifications: list[dict[str, Any]] = []
        self.export_media: dict[str, dict[str, Any]] = {}
        """The export medium of each project (by project id)."""
        self.blobs: dict[str, tuple[str, bytes]] = {}
        """Stored files: path → (signature, gzipped data)."""
        self.statuses: dict[tuple[str, str], dict[str, Any]] = {}
        """Subject workflow statuses by (workflow, subject)."""
        self.export_seconds = 0.0
        self.retirement_count = RETIREMENT_COUNT
        self.dumps_pending: list[tuple[float, str]] = []
        self._export_ids = 30
        self._classification_ids = 500_000_000

    # Classifications.

    def add_classification(
        self,
        workflow_id: str | int,
        subject_ids: Sequence[str | int],
        annotations: list[dict[str, Any]],
        *,
        user: str | None = "volunteer",
        user_id: int | None = None,
        workflow_version: str = "1.1",
        metadata: dict[str, Any] | None = None,
        gold_standard: bool | None = None,
        expert: str | None = None,
        user_ip: str = "192.0.2.1",
    ) -> str:
        """Record a volunteer's classification (a test hook: Zooniverse's
        classifier would ``POST /classifications``).

        Parameters
        ----------
        workflow_id : `str` or `int`
            One of the stand-in's workflows.
        subject_ids : `~collections.abc.Sequence`
            Subjects classified (several for a subject group).
        annotations : `list` [`dict`]
            ``{"task", "task_label", "value"}`` per task, as exported.
        user : `str` or `None`, optional
            The volunteer's login (`None`: not logged in).
        user_id : `int`, optional
            Their id (default: derived from the login).
        workflow_version : `str`, optional
            ``<major>.<minor>``.
        metadata : `dict`, optional
            The classifier's metadata.
        gold_standard : `bool`, optional
            Gold-standard classification.
        expert : `str`, optional
            ``expert`` or ``owner`` (expert mode).
        user_ip : `str`, optional
            Address (exported hashed).

        Returns
        -------
        classification_id : `str`
            Its id.

        Raises
        ------
        KeyError
            Raised if the workflow or a subject is unknown.
        """
        workflow = self.workflows[str(workflow_id)]
        ids = [str(s) for s in subject_ids]
        missing = [s for s in ids if s not in self.subjects]
        if missing:
            raise KeyError(f"unknown subjects {missing}")
        self._classification_ids += 1
        now = datetime.datetime.now(datetime.UTC)
        self.classifications.append(
            {
                "id": str(self._classification_ids),
                "user_name": user,
                "user_id": None if user is None else (user_id or 9_000 + sum(map(ord, user))),
                "user_ip": user_ip,
                "workflow_id": workflow["id"],
                "workflow_version": workflow_version,
                "created_at": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
                "gold_standard": gold_standard,
                "expert": expert,
                "metadata": metadata or {"source": "api", "user_language": "en", "classifier_version": "2.0"},
                "annotations": annotations,
                "subject_ids": ids,
            }
        )
        for subject_id in ids:
            self._count(workflow["id"], subject_id, now)
        return str(self._classification_ids)

    def add_fake_classifications(
        self, workflow_id: str | int, n_rows: int, *, subject_ids: Sequence[str] | None = None, seed: int = 16
    ) -> list[str]:
        """Add FAKE volunteers' classifications (the answers of
        `~lsst.epo.zooniverse.demo.fake_classifications.fake_classification_rows`:
        a one-answer question, a several-answer question and a drawing).

        Parameters
        ----------
        workflow_id : `str` or `int`
            The workflow.
        n_rows : `int`
            Classifications, spread over the subjects in turn.
        subject_ids : `~collections.abc.Sequence`, optional
            Subjects (default: every subject of the stand-in).
        seed : `int`, optional
            Random seed.

        Returns
        -------
        classification_ids : `list` [`str`]
            The new classifications' ids.
        """
        chosen = {s: self.subjects[s]["metadata"] for s in (subject_ids or list(self.subjects))}
        made = []
        for row in fake_classification_rows(chosen, n_rows=n_rows, retire_after=None, seed=seed):
            named = dict(zip(EXPORT_COLUMNS, row))
            made.append(
                self.add_classification(
                    workflow_id,
                    named["subject_ids"].split(";"),
                    json.loads(named["annotations"]),
                    user=None if named["user_name"].startswith("not-logged-in-") else named["user_name"],
                    user_id=int(named["user_id"]) if named["user_id"] else None,
                    metadata=json.loads(named["metadata"]),
                )
            )
        return made

    def _count(self, workflow_id: str, subject_id: str, now: datetime.datetime) -> None:
        # SubjectWorkflowStatus: counted per classification; retired by
        # the classification_count criterion.
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        status = self.statuses.setdefault(
            (workflow_id, subject_id),
            {
                "id": 70_000 + len(self.statuses),
                "workflow_id": int(workflow_id),
                "classifications_count": 0,
                "created_at": stamp,
                "updated_at": stamp,
                "retired_at": None,
                "subject_id": int(subject_id),
                "retirement_reason": None,
            },
        )
        status["classifications_count"] += 1
        status["updated_at"] = stamp
        if status["retired_at"] is None and status["classifications_count"] >= self.retirement_count:
            status["retired_at"], status["retirement_reason"] = stamp, "classification_count"

    # The export routes.

    def _export_json(self, medium: dict[str, Any]) -> dict[str, Any]:
        shown = {k: v for k, v in medium.items() if k not in ("path", "sig")}
        return {**shown, "src": f"{self.url}{medium['path']}?sp=r&sig={medium['sig']}"}

    def _get_project_export(self, project_id: str, query: dict[str, str]) -> tuple[int, Any]:
        # MediaController#index: the project from the update scope, then
        # its medium of that type; either missing is NoMediaError (404).
        medium = self.export_media.get(project_id) if self.collaborator else None
        if medium is None:
            raise error_answer(404, f"No classifications_export exists for project #{project_id}")
        return page_answer("media", [self._export_json(medium)], query)

    def _post_projects(self, parts, query, body) -> tuple[int, Any]:
        # ProjectsController#create_classifications_export.
        if len(parts) != 2 or parts[1] != "classifications_export":
            raise error_answer(404, "Not found")
        project_id = parts[0]
        if project_id not in self.projects or not self.collaborator:
            raise error_answer(404, f"Could not find project with id='{project_id}'")
        attributes = (body or {}).get("media") or {}
        if not isinstance(attributes, dict) or attributes.get("content_type", "text/csv") != "text/csv":
            raise error_answer(
                422, "Validation failed: Content type Content-Type for exports must be one of text/csv"
            )
        now = _utc_now()
        medium = self.export_media.get(project_id)
        if medium is None:
            self._export_ids += 1
            path = f"{BLOB_PREFIX}{MEDIA_TYPE}/{secrets.token_hex(16)}.csv"
            medium = {
                "id": str(self._export_ids),
                "href": f"/projects/{project_id}/classifications_export",
                "path": path,
                "sig": secrets.token_urlsafe(24),
                "content_type": "text/csv",
                "media_type": MEDIA_TYPE,
                "external_link": False,
                "created_at": now,
            }
            self.export_media[project_id] = medium
        medium.update(metadata={"state": "creating"}, updated_at=now)
        self.dumps_pending.append((self.clock() + self.export_seconds, project_id))
        headers = {
            "Location": f"{self.url}/api{medium['href']}",
            "Last-Modified": email.utils.formatdate(usegmt=True),
        }
        raise ApiAnswer(201, page_answer("media", [self._export_json(medium)], {})[1], headers)

    def exports_due(self) -> float | None:
        """Return when the next export job is due (`None`: none pending)."""
        return min((due for due, _ in self.dumps_pending), default=None)

    def run_exports(self, now: float) -> None:
        """Run the export jobs due by ``now``: write each project's CSV
        (gzipped) and set its state to ``ready``.

        Parameters
        ----------
        now : `float`
            Stand-in time.
        """
        due = [p for t, p in self.dumps_pending if t <= now]
        self.dumps_pending = [(t, p) for t, p in self.dumps_pending if t > now]
        for project_id in dict.fromkeys(due):
            medium = self.export_media[project_id]
            self.blobs[medium["path"]] = (medium["sig"], export_csv(self.export_rows(project_id)))
            medium.update(metadata={"state": "ready"}, updated_at=_utc_now())

    def export_rows(self, project_id: str) -> Iterable[list[Any]]:
        """Make the export rows of a project's classifications
        (``Formatter::Csv::Classification``), in id order.

        Parameters
        ----------
        project_id : `str`
            The project.

        Yields
        ------
        row : `list`
            Cells in `EXPORT_COLUMNS` order.
        """
        secure_ips: dict[str, str] = {}  # ClassificationDumpCache: random per dump
        for item in self.classifications:
            workflow = self.workflows[item["workflow_id"]]
            if workflow["links"]["project"] != project_id:
                continue
            hashed = secure_ips.setdefault(item["user_ip"], secrets.token_hex(10))
            subject_data = {
                s: {"retired": self.statuses.get((workflow["id"], s)), **self.subjects[s]["metadata"]}
                for s in item["subject_ids"]
            }
            yield [
                item["id"],
                item["user_name"] or f"not-logged-in-{hashed}",
                item["user_id"],
                hashed,
                workflow["id"],
                workflow["display_name"],
                item["workflow_version"],
                item["created_at"],
                None if item["gold_standard"] is None else str(item["gold_standard"]).lower(),
                item["expert"],
                json.dumps(item["metadata"]),
                json.dumps(item["annotations"]),
                json.dumps(subject_data),
                ";".join(item["subject_ids"]),
            ]

    def blob_answer(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        """Serve a stored file like blob storage (no API headers or token;
        the signature in the URL is checked).

        Parameters
        ----------
        path : `str`
            The URL's path.
        query : `dict` [`str`, `str`]
            Its query (``sig``).

        Returns
        -------
        status : `int`
            200, 403 (bad signature) or 404.
        answer : `Blob`
            The gzipped CSV with ``Content-Encoding: gzip``, or an error.
        """
        if path not in self.blobs:
            return 404, Blob(b"BlobNotFound", {"Content-Type": "text/plain"})
        signature, data = self.blobs[path]
        if query.get("sig") != signature:
            return 403, Blob(b"AuthenticationFailed", {"Content-Type": "text/plain"})
        return 200, Blob(data, {"Content-Type": "text/csv", "Content-Encoding": "gzip"})
