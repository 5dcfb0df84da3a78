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

"""Zooniverse's classification export: fetch it and read it row by row.

The export is the CSV Panoptes writes (``Formatter::Csv::Classification``;
doc/classifications.md): one line per classification with the columns
`EXPORT_COLUMNS`, three of them JSON (``metadata``, ``annotations``,
``subject_data``).  `read_classifications` streams it: memory does not grow
with the file, and a row it cannot use is reported (`ExportProblem`, with
its line and classification id), never dropped silently.

`fetch_classification_export` downloads the project's latest export to a
file with panoptes-client (``Project.get_export("classifications")``), or
with any callable given instead (tests, a stand-in, a copy on disk).
"""

from __future__ import annotations

__all__ = [
    "EXPORT_COLUMNS",
    "REQUIRED_COLUMNS",
    "Classification",
    "ClassificationExportError",
    "ExportProblem",
    "ExportReader",
    "fetch_classification_export",
    "panoptes_export_fetcher",
    "read_classifications",
]

import contextlib
import csv
import dataclasses
import gzip
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

EXPORT_COLUMNS = (
    "classification_id",
    "user_name",
    "user_id",
    "user_ip",
    "workflow_id",
    "workflow_name",
    "workflow_version",
    "created_at",
    "gold_standard",
    "expert",
    "metadata",
    "annotations",
    "subject_data",
    "subject_ids",
)
"""Columns of a Panoptes classification export, in its order."""

REQUIRED_COLUMNS = (
    "classification_id",
    "workflow_id",
    "workflow_version",
    "annotations",
    "subject_data",
    "subject_ids",
)
"""Columns without which an export cannot be aggregated."""

# Annotations and subject data of one classification can be long (drawing
# tasks, subject groups); Python's csv default is 128 kB per field.
_FIELD_LIMIT = 64 * 1024 * 1024


# gold_standard is a boolean (Ruby writes "true", nil as empty); expert is
# the expert_classifier enum, "expert" or "owner" (Panoptes
# app/models/classification.rb), empty otherwise.
_TRUE = {"true", "t", "1"}
_NOT_EXPERT = {"", "false", "f", "0", "null"}


class ClassificationExportError(ValueError):
    """A classification export cannot be fetched or read at all."""


@dataclasses.dataclass(frozen=True)
class ExportProblem:
    """A row of the export that could not be used, or was used with a
    caveat.

    Parameters
    ----------
    line : `int`
        1-based physical line on which the CSV record starts.
    classification_id : `str`
        Its ``classification_id`` ("" if unknown).
    rule : `str`
        ``export.malformed_csv``, ``export.field_count``,
        ``export.malformed_json``, ``export.bad_workflow``,
        ``export.no_subject``.
    message : `str`
        One line naming the column and what is wrong.
    """

    line: int
    classification_id: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        """Return the problem as a JSON-friendly dictionary.

        Returns
        -------
        problem : `dict`
            ``line``, ``classification_id``, ``rule``, ``message``.
        """
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class Classification:
    """One usable row of the export (not frozen: made a million times,
    and a frozen dataclass is several times slower to build).

    Parameters
    ----------
    line : `int`
        Line on which the record starts.
    classification_id : `str`
        Zooniverse's id.
    user_name : `str`
        Login, or ``not-logged-in-<hash>``.
    workflow_id : `str`
        Workflow id.
    workflow_name : `str`
        Workflow display name.
    workflow_version : `str`
        ``<major>.<minor>``: the major number changes when the tasks do.
    created_at : `str`
        When it was made (UTC text, as exported).
    flags : `str`
        ``gold_standard`` and/or ``expert`` (space-separated) if the export
        marks the classification so (``expert``: an expert or owner
        classified), else "".
    annotations : `list`
        The decoded ``annotations`` JSON: ``{"task", "task_label", "value"}``
        per task answered.
    subjects : `dict` [`str`, `dict`]
        Subject id → its ``subject_data`` entry (``retired`` and the
        subject's metadata), for every id of ``subject_ids``.
    """

    line: int
    classification_id: str
    user_name: str
    workflow_id: str
    workflow_name: str
    workflow_version: str
    created_at: str
    flags: str
    annotations: list[Any]
    subjects: dict[str, dict[str, Any]]

    @property
    def workflow_major_version(self) -> str:
        """The major part of ``workflow_version`` (the task definitions)."""
        return self.workflow_version.split(".", 1)[0]


class ExportReader:
    """Read a classification export row by row, collecting problems.

    Parameters
    ----------
    stream : `typing.IO` [`str`]
        The CSV text, opened with ``newline=""``.
    name : `str`
        What to call it in messages (a file name).

    Raises
    ------
    ClassificationExportError
        Raised (when iterating) if the header lacks a required column.
    """

    def __init__(self, stream: IO[str], name: str) -> None:
        self.stream = stream
        self.name = name
        self.problems: list[ExportProblem] = []
        self.n_rows = 0
        self.n_used = 0

    def __iter__(self) -> Iterator[Classification]:
        reader = csv.reader(self.stream, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise ClassificationExportError(f"Classification export {self.name} is empty.") from None
        except csv.Error as err:
            raise ClassificationExportError(f"Classification export {self.name}: bad header: {err}") from None
        header = [h.lstrip("\ufeff").strip() for h in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ClassificationExportError(
                f"Classification export {self.name} lacks column(s) {', '.join(missing)} "
                f"(header: {','.join(header)[:200]})."
            )
        index = {name: header.index(name) for name in EXPORT_COLUMNS if name in header}
        width = len(header)
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                # A broken record (a stray quote): say where, read on from
                # the next line.
                self.n_rows += 1
                self.problems.append(
                    ExportProblem(start, "", "export.malformed_csv", f"unreadable CSV record: {err}")
                )
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            if not row:
                continue
            self.n_rows += 1
            item = self._decode(row, line, index, width)
            if item is not None:
                self.n_used += 1
                yield item

    def _problem(self, line: int, cid: str, rule: str, message: str) -> None:
        self.problems.append(ExportProblem(line, cid, rule, message))

    def _decode(self, row: list[str], line: int, index: dict[str, int], width: int) -> Classification | None:
        """Return the row's classification, or record why there is none."""
        cid = row[index["classification_id"]].strip() if len(row) > index["classification_id"] else ""
        if len(row) != width:
            self._problem(line, cid, "export.field_count", f"{len(row)} fields, the header has {width}")
            return None
        decoded = {}
        for column in ("annotations", "subject_data"):
            try:
                decoded[column] = json.loads(row[index[column]])
            except ValueError as err:
                self._problem(line, cid, "export.malformed_json", f"column {column}: {err}")
                return None
        if "metadata" in index:
            # The classification metadata (browser, timings) is not
            # aggregated, so it is not decoded (a third of the time): only
            # an obviously broken object is noted; the row is kept.
            meta = row[index["metadata"]].strip()
            if meta and not (meta.startswith("{") and meta.endswith("}")):
                self._problem(
                    line, cid, "export.malformed_json", "column metadata (row kept): not a JSON object"
                )
        annotations, subject_data = decoded["annotations"], decoded["subject_data"]
        if not isinstance(annotations, list) or not isinstance(subject_data, dict):
            self._problem(
                line,
                cid,
                "export.malformed_json",
                "annotations must be a JSON list and subject_data a JSON object",
            )
            return None
        workflow_id = row[index["workflow_id"]].strip()
        version = row[index["workflow_version"]].strip()
        if not workflow_id or not version:
            self._problem(line, cid, "export.bad_workflow", "empty workflow_id or workflow_version")
            return None
        ids = [s.strip() for s in row[index["subject_ids"]].split(";") if s.strip()]
        if not ids:
            ids = [str(k) for k in subject_data]
        if not ids:
            self._problem(line, cid, "export.no_subject", "no subject_ids and no subject_data")
            return None
        subjects = {}
        for sid in ids:
            entry = subject_data.get(sid)
            subjects[sid] = entry if isinstance(entry, dict) else {}

        def text(column: str) -> str:
            return row[index[column]] if column in index else ""

        return Classification(
            line=line,
            classification_id=cid,
            user_name=text("user_name"),
            workflow_id=workflow_id,
            workflow_name=text("workflow_name"),
            workflow_version=version,
            created_at=text("created_at"),
            flags=" ".join(
                name
                for name, flagged in (
                    ("gold_standard", text("gold_standard").strip().lower() in _TRUE),
                    ("expert", text("expert").strip().lower() not in _NOT_EXPERT),
                )
                if flagged
            ),
            annotations=annotations,
            subjects=subjects,
        )


@contextlib.contextmanager
def read_classifications(source: str | os.PathLike | IO[str]) -> Iterator[ExportReader]:
    """Open a classification export for streaming.

    Parameters
    ----------
    source : `str`, `os.PathLike` or `typing.IO` [`str`]
        The CSV file (UTF-8, a BOM is accepted; gzip-compressed or not),
        or a text stream opened with ``newline=""``.

    Yields
    ------
    reader : `ExportReader`
        Iterate over it for the usable rows; its ``problems`` list grows
        as it goes.

    Raises
    ------
    ClassificationExportError
        Raised if the file cannot be opened.
    """
    previous = csv.field_size_limit(_FIELD_LIMIT)
    try:
        if isinstance(source, str | os.PathLike):
            name = os.fspath(source)
            try:
                with open(name, "rb") as probe:
                    compressed = probe.read(2) == b"\x1f\x8b"
                # Zooniverse stores the export gzip-compressed and serves it
                # with Content-Encoding: gzip; a saved raw body is gzip.
                opener: Any = gzip.open if compressed else open
                stream = opener(name, "rt", encoding="utf-8-sig", newline="")
            except OSError as err:
                raise ClassificationExportError(
                    f"Cannot open classification export {name}: {err.strerror}"
                ) from None
            with stream:
                yield ExportReader(stream, name)
        else:
            yield ExportReader(source, getattr(source, "name", "<stream>"))
    finally:
        csv.field_size_limit(previous)


Fetcher = Callable[[int, str], None]
"""Download the classification export of a Zooniverse project (id) to a
file (path)."""


def panoptes_export_fetcher(
    credentials: Any, *, generate: bool = False, wait_timeout: float | None = None
) -> Fetcher:
    """Make a fetcher that downloads with panoptes-client.

    Parameters
    ----------
    credentials : `~.credentials.ZooniverseCredentials`
        How to sign in (an owner or collaborator of the project).
    generate : `bool`, optional
        Ask Zooniverse for a new export and wait for it
        (``POST /api/projects/<id>/classifications_export``); otherwise the
        latest one is downloaded.
    wait_timeout : `float`, optional
        Seconds to wait for an export being generated.

    Returns
    -------
    fetcher : `~collections.abc.Callable`
        ``fetcher(zooniverse_project, path)``.
    """

    def fetch(zooniverse_project: int, path: str) -> None:
        from panoptes_client import Project

        from ..export.redaction import default_redactor
        from .api_client import PanoptesApiClient

        api = PanoptesApiClient(credentials, default_redactor())
        with api, api.client:
            # GET /api/projects/<id>/classifications_export gives the media
            # record; its src is the file (Exportable.get_export).
            response = Project(zooniverse_project).get_export(
                "classifications", generate=generate, wait=generate, wait_timeout=wait_timeout
            )
            response.raise_for_status()
            with open(path, "wb") as out:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    out.write(chunk)

    return fetch


def fetch_classification_export(zooniverse_project: int, destination: str, fetcher: Fetcher) -> str:
    """Download a project's classification export to a file, atomically.

    Parameters
    ----------
    zooniverse_project : `int`
        Zooniverse project id.
    destination : `str`
        File to write (replaced only when the download is complete).
    fetcher : `~collections.abc.Callable`
        ``fetcher(zooniverse_project, path)`` writes the export to ``path``
        (`panoptes_export_fetcher`, or a stand-in).

    Returns
    -------
    path : `str`
        ``destination``.

    Raises
    ------
    ClassificationExportError
        Raised if the download fails.
    """
    directory = os.path.dirname(os.path.abspath(destination))
    os.makedirs(directory, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=".classifications-", suffix=".csv", dir=directory)
    os.close(fd)
    try:
        fetcher(zooniverse_project, partial)
        os.replace(partial, destination)
    except ClassificationExportError:
        raise
    except Exception as err:
        from ..export.redaction import default_redactor

        raise ClassificationExportError(
            f"Cannot fetch the classification export of Zooniverse project {zooniverse_project}: "
            f"{type(err).__name__}: {default_redactor().redact(err)}"
        ) from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return destination
