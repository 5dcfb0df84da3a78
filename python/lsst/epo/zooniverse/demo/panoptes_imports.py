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

"""Subject-set imports of the Panoptes stand-in
(`lsst.epo.zooniverse.demo.panoptes_standin`), as the real server runs
them (doc/panoptes_standin.md names the Panoptes file behind each rule):

* the manifest is read as Ruby's ``CSV.new(io, headers: true)`` reads it
  (`parse_ruby_csv`): a stray quote is malformed, a blank line is a row
  whose every cell is ``nil``;
* the download follows 301 and 302 only (``UrlDownloader``);
* each import is a queued job (`ImportQueue`) that starts late, takes a
  time per row, saves ``imported_count`` only every 5 to 500 rows
  (``ProgressUpdateCadence``) but ``failed_count`` at once, counts failed
  rows as imported, and dies for good (Sidekiq ``retry: 0``) on anything
  but a validation failure;
* a row is found (by ``external_id`` in the set) when its processing
  starts and committed when it ends: two imports working on one external
  id at the same time both create a subject, and a row whose subject is
  already in the set fails (set membership is unique).

Time is the stand-in's clock: real time, or a virtual clock that only
moves when `ImportQueue.advance` is called (deterministic tests).
"""

from __future__ import annotations

__all__ = [
    "ALLOWED_CONTENT_TYPES",
    "ImportJob",
    "ImportQueue",
    "MalformedCsvError",
    "download",
    "mime_type",
    "parse_ruby_csv",
    "progress_cadence",
    "ruby_extname",
]

import dataclasses
import heapq
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

RAILS_EXTENSION_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "jpe": "image/jpeg",
    "pjpeg": "image/jpeg",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "svg": "image/svg+xml",
    "webp": "image/webp",
    "txt": "text/plain",
    "csv": "text/csv",
    "json": "application/json",
    "pdf": "application/pdf",
    "mp1": "audio/mpeg",
    "mp2": "audio/mpeg",
    "mp3": "audio/mpeg",
    "m4a": "audio/aac",
    "mpg4": "audio/aac",
    "aac": "audio/aac",
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "mpg": "video/mpeg",
    "mpeg": "video/mpeg",
    "mpe": "video/mpeg",
    "webm": "video/webm",
    "ogg": "audio/ogg",
}
"""Extensions Rails (actionpack ``mime_types.rb``) maps to a type."""

ALLOWED_CONTENT_TYPES = frozenset(
    """application/json application/pdf audio/aac audio/midi audio/x-midi audio/mp3 audio/mp4
    audio/x-m4a audio/mpeg audio/wav image/jpeg image/gif image/png image/tiff image/x-icon
    image/svg+xml text/csv text/plain video/mp4 video/mpeg""".split()
)
"""Panoptes ``Medium::ALLOWED_CONTENT_TYPES`` (app/models/medium.rb)."""

_UNQUOTED = re.compile(r"[^,\r\n]*")


class MalformedCsvError(ValueError):
    """Ruby's ``CSV::MalformedCSVError``."""


class JobDied(Exception):  # noqa: N818 (an event, not an error)
    """An exception the import job does not rescue: it dies there."""


def ruby_extname(url: str) -> str:
    """Return Ruby's ``File.extname`` of a URL string (query kept).

    Parameters
    ----------
    url : `str`
        The location.

    Returns
    -------
    extension : `str`
        ``".png?sig=1"`` for ``https://x/b.png?sig=1``; ``""`` if none.
    """
    name = url.rsplit("/", 1)[-1].lstrip(".")
    if "." not in name or name.endswith("."):
        return ""
    return "." + name.rsplit(".", 1)[1]


def mime_type(url: str | None) -> str:
    """Return the MIME type the import gives a location.

    Parameters
    ----------
    url : `str` or `None`
        The cell (`None`: an unquoted empty cell, Ruby's ``nil``).

    Returns
    -------
    mime : `str`
        ``Mime::Type.lookup_by_extension(ext).to_s``: ``""`` if unknown.

    Raises
    ------
    JobDied
        Raised for `None` (``File.extname(nil)`` is a ``TypeError``).
    """
    if url is None:
        raise JobDied("TypeError: no implicit conversion of nil into String (File.extname)")
    return RAILS_EXTENSION_TYPES.get(ruby_extname(url)[1:], "")


def parse_ruby_csv(text: str) -> list[list[str | None]]:
    """Read CSV text as Ruby's CSV does (RFC 4180, strict quoting).

    Parameters
    ----------
    text : `str`
        The whole file.

    Returns
    -------
    rows : `list` [`list`]
        Every record, the header first; an unquoted empty cell is `None`,
        a quoted one ``""``; a blank line is ``[]``.

    Raises
    ------
    MalformedCsvError
        Raised for a quote inside an unquoted field, text after a closing
        quote, or an unclosed quote.
    """
    rows: list[list[str | None]] = []
    pos, end = 0, len(text)
    while pos < end:
        line = len(rows) + 1
        if text.startswith("\r\n", pos) or text[pos] == "\n":
            rows.append([])
            pos += 2 if text.startswith("\r\n", pos) else 1
            continue
        row: list[str | None] = []
        while True:
            value: str | None
            if pos < end and text[pos] == '"':
                parts, pos = [], pos + 1
                while True:
                    close = text.find('"', pos)
                    if close < 0:
                        raise MalformedCsvError(f"Unclosed quoted field in line {line}.")
                    parts.append(text[pos:close])
                    if text.startswith('"', close + 1):
                        parts.append('"')
                        pos = close + 2
                        continue
                    pos = close + 1
                    break
                value = "".join(parts)
            else:
                match = _UNQUOTED.match(text, pos)
                value, pos = match.group(), match.end()
                if '"' in value:
                    raise MalformedCsvError(f"Illegal quoting in line {line}.")
                value = value or None
            row.append(value)
            if pos >= end:
                break
            if text[pos] == ",":
                pos += 1
                continue
            if text.startswith("\r\n", pos) or text[pos] == "\n":
                pos += 2 if text.startswith("\r\n", pos) else 1
                break
            raise MalformedCsvError(f"Any value after quoted field isn't allowed in line {line}.")
        rows.append(row)
    return rows


def progress_cadence(manifest_count: int) -> int:
    """Return how often (rows) an import saves its ``imported_count``.

    Parameters
    ----------
    manifest_count : `int`
        Rows in the manifest.

    Returns
    -------
    rows : `int`
        5, 25, 50, 250 or 500 (``SubjectSetImport::ProgressUpdateCadence``).
    """
    if manifest_count <= 0:
        return 0
    magnitude = math.floor(math.log10(manifest_count - 1 if manifest_count > 1 else 1))
    return {0: 5, 1: 25, 2: 50, 3: 250}.get(magnitude, 500)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if code in (301, 302):
            return super().redirect_request(req, fp, code, msg, headers, newurl)
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def download(url: str) -> str:
    """Download a manifest as ``UrlDownloader.stream`` does.

    Parameters
    ----------
    url : `str`
        The manifest's URL.

    Returns
    -------
    text : `str`
        Its content.

    Raises
    ------
    OSError
        Raised for any status but 200 after 301/302 redirects.
    """
    try:
        with _OPENER.open(url, timeout=10) as response:
            if response.status != 200:
                raise OSError(f"{response.status} - Failed to download URL: {url}")
            return response.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        raise OSError(f"{err.code} - Failed to download URL: {url}") from None


class SubjectStore(Protocol):
    """What an import needs from the stand-in's subjects."""

    def find_in_set(self, set_id: str, external_id: str | None) -> str | None: ...

    def is_member(self, set_id: str, subject_id: str) -> bool: ...

    def link(self, set_id: str, subject_id: str) -> None: ...

    def new_subject(
        self, project: str, locations: list, metadata: dict, external_id: str | None = None
    ) -> dict[str, Any]: ...


@dataclasses.dataclass
class ImportJob:
    """One queued ``SubjectSetImportWorker`` job."""

    record: dict[str, Any]
    set_id: str
    project: str
    next_time: float
    rows: list[tuple[str | None, list, dict]] | None = None
    number: int = 0
    found: tuple[str | None] | None = None
    dead: str | None = None
    done: bool = False


class ImportQueue:
    """The import jobs of a stand-in and the clock that runs them.

    Parameters
    ----------
    store : `SubjectStore`
        The stand-in's subjects and set members.
    clock : `~collections.abc.Callable` [[], `float`]
        The current time (seconds).
    """

    def __init__(self, store: SubjectStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self.jobs: list[ImportJob] = []
        self.start_delay = 0.0
        """Seconds a job waits in the queue before it starts."""
        self.row_seconds = 0.002
        """Seconds per manifest row (find, then commit)."""
        self.dies_after: int | None = None
        """Jobs die after this many rows (never retried)."""
        self.downloader: Callable[[str], str] = download
        """Reads a manifest (tests replace it)."""

    def add(self, record: dict[str, Any], set_id: str, project: str) -> ImportJob:
        """Queue a job for a created import record.

        Parameters
        ----------
        record : `dict`
            The import resource (its counts change as the job runs).
        set_id, project : `str`
            The subject set and its project.

        Returns
        -------
        job : `ImportJob`
            The queued job.
        """
        job = ImportJob(record, set_id, project, self.clock() + self.start_delay)
        self.jobs.append(job)
        return job

    def running(self) -> list[ImportJob]:
        """Return the jobs neither finished nor dead."""
        return [j for j in self.jobs if not j.done and j.dead is None]

    def run_until(self, now: float) -> None:
        """Carry out, in time order, every job step due by ``now``.

        Parameters
        ----------
        now : `float`
            The clock's time.
        """
        heap = [(j.next_time, i) for i, j in enumerate(self.jobs) if not j.done and j.dead is None]
        heapq.heapify(heap)
        while heap and heap[0][0] <= now:
            _, index = heapq.heappop(heap)
            job = self.jobs[index]
            try:
                self._step(job)
            except JobDied as err:
                job.dead = str(err)
            if not job.done and job.dead is None:
                heapq.heappush(heap, (job.next_time, index))

    def _step(self, job: ImportJob) -> None:
        """Start a job, or commit its current row and find the next one."""
        record = job.record
        if job.rows is None:
            try:
                table = parse_ruby_csv(self.downloader(record["source_url"]))
            except (OSError, MalformedCsvError) as err:
                raise JobDied(f"{type(err).__name__}: {err}") from None
            job.rows = [_row_attributes(table[0], fields) for fields in table[1:]] if table else []
        else:
            self._commit(job)
            job.number += 1
            cadence = progress_cadence(record["manifest_count"]) or 1
            if job.number % cadence == 0:
                self._save(record, job.number)
        if job.number >= len(job.rows):
            self._save(record, job.number)
            job.done = True
            return
        if self.dies_after is not None and job.number >= self.dies_after:
            raise JobDied("the worker process died")
        external_id, locations, metadata = job.rows[job.number]
        if isinstance(locations, JobDied):
            raise locations
        job.found = (self.store.find_in_set(job.set_id, external_id),)
        job.next_time += self.row_seconds

    def _save(self, record: dict[str, Any], count: int) -> None:
        record["imported_count"] = count
        record["updated_at"] = self.clock()

    def _commit(self, job: ImportJob) -> None:
        """``Processor#import`` of the current row; a validation failure
        counts the row as failed (at once, without touching updated_at).
        """
        external_id, locations, metadata = job.rows[job.number]
        (found,) = job.found or (None,)
        valid = True
        if found is not None:
            # subject.subject_sets << subject_set: SetMemberSubject's
            # uniqueness validation refuses a second link (RecordInvalid).
            valid = not self.store.is_member(job.set_id, found)
            if valid:
                self.store.link(job.set_id, found)
        elif not locations or all(next(iter(loc)) in ALLOWED_CONTENT_TYPES for loc in locations):
            subject = self.store.new_subject(job.project, locations, metadata, external_id)
            self.store.link(job.set_id, subject["id"])
        else:
            valid = False  # Medium content type validation
        if not valid:
            job.record["failed_count"] += 1
            job.record.setdefault("failed_uuids", []).append(external_id)


def _row_attributes(headers: list[str | None], fields: list[str | None]) -> tuple[Any, Any, dict]:
    """``CsvImport#each`` for one record: external id, locations, metadata
    (a `JobDied` in place of the locations when the row kills the job).
    """
    pairs = list(zip(headers, fields + [None] * (len(headers) - len(fields)), strict=False))
    pairs += [(None, value) for value in fields[len(headers) :]]
    external_id = next((v for h, v in pairs if h == "external_id"), None)
    locations, metadata = [], {}
    try:
        for header, value in pairs:
            if header is None:
                raise JobDied("NoMethodError: undefined method 'split' for nil")
            kind, _, rest = header.partition(":")
            key = rest.split(":")[0] if rest else None
            if kind == "location":
                locations.append({mime_type(value): value})
            elif kind == "metadata":
                metadata[key] = value
    except JobDied as err:
        return external_id, err, metadata
    return external_id, locations, metadata
