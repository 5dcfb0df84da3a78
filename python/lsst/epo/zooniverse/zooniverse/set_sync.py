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

"""One run that makes a subject set on Zooniverse hold a project's
subjects: `SubjectSetSync`.

The run lists the set on the server (the truth: it covers a run killed
between creating subjects and recording them), records what it finds and
sends only what is missing, by one of two methods:

``import``
    Write the manifest parts of the missing subjects to the public
    location, ``POST /subject_set_imports`` with each part's public URL,
    poll the import until it is done and list the set to verify every
    ``external_id`` arrived.
``subjects``
    Create one subject per row with remote locations and the row's
    metadata, the external id under `EXTERNAL_ID_METADATA_KEY`, linked to
    the set in the same request.

A create that fails stops the run with an error saying how much was done
and that running again resumes.
"""

from __future__ import annotations

__all__ = [
    "EXTERNAL_ID_METADATA_KEY",
    "ImportStalledError",
    "SubjectSetSync",
    "SyncSettings",
    "external_id_of",
]

import dataclasses
import logging
import os
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..export.manifest import SubjectRow
from .api_client import ApiNotFoundError, ApiServerError
from .errors import SubjectSetAuthError, SubjectSetError
from .manifest_parts import (
    default_manifest_directory,
    import_chunks,
    public_manifest_key,
    write_manifest_parts,
)

if TYPE_CHECKING:
    from ..export.progress import Progress
    from ..export.publication import PublicLocation
    from .api_client import PanoptesApiClient
    from .records import SubjectSetRecords
    from .summary import SubjectSetSummary

_LOG = logging.getLogger(__name__)

EXTERNAL_ID_METADATA_KEY = "#external_id"
"""Metadata key holding the external id of subjects created by the
``subjects`` method (the demo stand-in refuses an ``external_id``
attribute on ``POST /subjects``, which the real server accepts:
doc/zooniverse_facts.md §2, issue 16).
``#`` hides it in the web interface; the public API still returns it."""

_MIME_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}


@dataclasses.dataclass(frozen=True)
class SyncSettings:
    """How a `SubjectSetSync` writes manifests, pages and waits (see
    `~lsst.epo.zooniverse.zooniverse.subject_sets.SubjectSetPublisher`).
    """

    part_rows: int
    """Most rows per manifest part."""
    link_batch_size: int
    """Subjects per link request when relinking."""
    page_size: int
    """Subjects per page when listing a set."""
    poll_interval: float
    """Seconds between polls of an import."""
    import_stall_seconds: float
    """An import whose counts do not change for this long is dead."""
    import_timeout: float
    """Give up waiting for an import after this many seconds."""
    sleep: Callable[[float], None]
    """How to wait."""


class ImportStalledError(SubjectSetError):
    """A subject-set import whose counts stopped changing (its worker
    failed; Zooniverse does not retry it).
    """


def external_id_of(subject: Mapping[str, Any]) -> str | None:
    """Return the external id of a subject as the API gives it.

    Parameters
    ----------
    subject : `~collections.abc.Mapping`
        A subject resource.

    Returns
    -------
    external_id : `str` or `None`
        Its ``external_id`` (imported subjects) or the metadata's
        `EXTERNAL_ID_METADATA_KEY` (created subjects); `None` if neither.
    """
    value = subject.get("external_id") or (subject.get("metadata") or {}).get(EXTERNAL_ID_METADATA_KEY)
    return None if value in (None, "") else str(value)


def _mime_type(url: str) -> str:
    extension = os.path.splitext(urllib.parse.urlsplit(url).path)[1].lower()
    try:
        return _MIME_TYPES[extension]
    except KeyError:
        raise SubjectSetError(f"No image MIME type for location {url!r}.") from None


class SubjectSetSync:
    """Send what a subject set misses, through a signed-in client.

    Parameters
    ----------
    api : `~lsst.epo.zooniverse.zooniverse.api_client.PanoptesApiClient`
        The signed-in client.
    records : `~lsst.epo.zooniverse.zooniverse.records.SubjectSetRecords`
        The state database's subject-set tables.
    settings : `SyncSettings`
        Part size, page sizes and waits.
    public : `~lsst.epo.zooniverse.export.publication.PublicLocation`
        Where import manifests are published.
    staging : `str`
        The service's staging directory (default manifest directory of
        the ``subjects`` method).
    """

    def __init__(
        self,
        api: PanoptesApiClient,
        records: SubjectSetRecords,
        settings: SyncSettings,
        public: PublicLocation,
        staging: str,
    ) -> None:
        self.api = api
        self.records = records
        self.settings = settings
        self.public = public
        self.staging = staging

    def _write_parts(self, rows: list[SubjectRow], directory: str, policy: str) -> list[str]:
        return write_manifest_parts(
            rows,
            directory,
            part_rows=self.settings.part_rows,
            url_prefix=self.public.url_prefix,
            metadata_policy=policy,
        )

    def run(
        self,
        record: Mapping[str, Any],
        rows: list[SubjectRow],
        summary: SubjectSetSummary,
        progress: Progress,
        output_directory: str | None,
    ) -> None:
        """Make a subject set hold one subject per row, sending only what
        it does not hold yet.

        Parameters
        ----------
        record : `~collections.abc.Mapping`
            The EPO project's row.
        rows : `list` [`~lsst.epo.zooniverse.export.manifest.SubjectRow`]
            The subjects the set should hold.
        summary : `~lsst.epo.zooniverse.zooniverse.summary.SubjectSetSummary`
            Names the set, project and method; receives the counts.
        progress : `~lsst.epo.zooniverse.export.progress.Progress`
            Receives progress per subject.
        output_directory : `str` or `None`
            Where the ``subjects`` method writes its manifest parts
            (default: under the staging directory).

        Raises
        ------
        SubjectSetAuthError
            Raised if Zooniverse refuses the credentials.
        SubjectSetError
            Raised if the set cannot be made complete (the message says
            how far the run got).
        """
        summary.endpoint = self.api.endpoint
        zooniverse_project = summary.zooniverse_project
        self._check_project(zooniverse_project)
        set_id, set_row_id = self._find_or_create_set(record, summary)
        self._wait_for_unfinished_imports(set_row_id)
        # What the set holds on the server is the truth: it covers a run
        # killed between creating subjects and recording them.
        on_server = self._list_set(set_id, summary)
        recorded = self.records.subject_ids(set_row_id)
        by_id = {row.external_id: row for row in rows}
        present = [(by_id[e], s) for e, s in on_server.items() if e in by_id]
        self.records.record_subjects(
            set_row_id, "found", [(r, s) for r, s in present if r.external_id not in recorded]
        )
        summary.already_present = len(present)
        pending = [row for row in rows if row.external_id not in on_server]
        summary.pending = len(pending)
        if not pending:
            _LOG.info(
                "Subject set %r (%d) already holds all %d subjects.",
                summary.subject_set_name,
                set_id,
                len(rows),
            )
            return
        progress.start(f"subject set {summary.subject_set_name}", len(pending))
        try:
            if summary.method == "import":
                self._import(record, set_id, set_row_id, pending, summary, progress)
            else:
                self._create(
                    record, set_id, set_row_id, pending, recorded, summary, progress, output_directory
                )
        finally:
            progress.finish()
        _LOG.info(
            "Subject set %r (%d) of Zooniverse project %d: %d created, %d already present, %d relinked, "
            "%d failed.",
            summary.subject_set_name,
            set_id,
            zooniverse_project,
            summary.created,
            summary.already_present,
            summary.linked,
            summary.failed,
        )

    def _check_project(self, zooniverse_project: int) -> None:
        try:
            answer = self.api.request("GET", f"/projects/{zooniverse_project}", idempotent=True) or {}
        except SubjectSetAuthError:
            raise
        except ApiServerError:
            raise
        except SubjectSetError as err:
            raise SubjectSetError(
                f"Zooniverse project {zooniverse_project} is not visible at {self.api.endpoint} with the "
                f"{self.api.credentials.describe()}: {err}"
            ) from None
        if not answer.get("projects"):
            raise SubjectSetError(
                f"Zooniverse project {zooniverse_project} not found at {self.api.endpoint}."
            )

    def _find_or_create_set(self, record: Mapping[str, Any], summary: SubjectSetSummary) -> tuple[int, int]:
        name = summary.subject_set_name
        zooniverse_project = summary.zooniverse_project
        known = self.records.find_set(record["id"], self.api.endpoint, name)
        if known is not None:
            set_id = int(known["subject_set_id"])
            answer = self.api.request("GET", "/subject_sets", params={"id": set_id}, idempotent=True) or {}
            if answer.get("subject_sets"):
                summary.subject_set_id = set_id
                return set_id, int(known["id"])
            _LOG.warning(
                "Subject set %d (%r) recorded for %s is gone from %s; looking for or creating another.",
                set_id,
                name,
                record["name"],
                self.api.endpoint,
            )
        matches = [
            s
            for s in self.api.pages("subject_sets", {"project_id": zooniverse_project, "page_size": 100})
            if s.get("display_name") == name
        ]
        if len(matches) > 1:
            raise SubjectSetError(
                f"Zooniverse project {zooniverse_project} has {len(matches)} subject sets named {name!r} "
                f"(ids {', '.join(str(s['id']) for s in matches)}); rename all but one."
            )
        if matches:
            set_id = int(matches[0]["id"])
            owner = self.records.set_owner(self.api.endpoint, set_id)
            if owner is not None and owner != record["id"]:
                # Two EPO projects of one Zooniverse project: never mix
                # their subjects (nor a full and an anonymised project's).
                raise SubjectSetError(
                    f"Subject set {name!r} ({set_id}) of Zooniverse project {zooniverse_project} belongs "
                    f"to another EPO project; choose another subject set name for {record['name']}."
                )
            _LOG.info("Using the existing subject set %r (%d).", name, set_id)
        else:
            answer = self.api.request(
                "POST",
                "/subject_sets",
                body={"subject_sets": {"display_name": name, "links": {"project": str(zooniverse_project)}}},
                idempotent=False,
            )
            set_id = int(answer["subject_sets"][0]["id"])
            summary.subject_set_created = True
            _LOG.info(
                "Created subject set %r (%d) in Zooniverse project %d.", name, set_id, zooniverse_project
            )
        summary.subject_set_id = set_id
        return set_id, self.records.record_set(
            record["id"], self.api.endpoint, zooniverse_project, set_id, name
        )

    def _list_set(self, set_id: int, summary: SubjectSetSummary) -> dict[str, int]:
        """External id -> subject id of the subjects in a set."""
        found: dict[str, int] = {}
        seen: dict[str, int] = {}
        for subject in self.api.pages(
            "subjects", {"subject_set_id": set_id, "page_size": self.settings.page_size}
        ):
            external_id = external_id_of(subject)
            if external_id is None:
                continue
            seen[external_id] = seen.get(external_id, 0) + 1
            found.setdefault(external_id, int(subject["id"]))
        summary.duplicates = sorted(e for e, n in seen.items() if n > 1)
        if summary.duplicates:
            _LOG.warning(
                "Subject set %d holds %d external ids more than once (e.g. %s); they are not sent again.",
                set_id,
                len(summary.duplicates),
                summary.duplicates[0],
            )
        return found

    def _stopped(self, summary: SubjectSetSummary, err: SubjectSetError, what: str) -> SubjectSetError:
        return SubjectSetError(
            f"{err} — stopped after {what} {summary.created} of {summary.pending} subjects for subject set "
            f"{summary.subject_set_name!r} ({summary.subject_set_id}); run the same command again to "
            "send the rest (nothing is sent twice).",
            summary,
        )

    def _create(
        self,
        record: Mapping[str, Any],
        set_id: int,
        set_row_id: int,
        pending: list[SubjectRow],
        recorded: Mapping[str, int | None],
        summary: SubjectSetSummary,
        progress: Progress,
        output_directory: str | None,
    ) -> None:
        from panoptes_client import Subject

        directory = output_directory or default_manifest_directory(
            self.staging, record["name"], summary.subject_set_name
        )
        summary.manifests = self._write_parts(pending, directory, record["metadata_policy"])
        # Created by an earlier run but not in the set (unlinked since):
        # link again rather than create a second subject.
        relink = [(row, recorded[row.external_id]) for row in pending if recorded.get(row.external_id)]
        create = [row for row in pending if not recorded.get(row.external_id)]
        try:
            for start in range(0, len(relink), self.settings.link_batch_size):
                batch = relink[start : start + self.settings.link_batch_size]
                try:
                    self.api.request(
                        "POST",
                        f"/subject_sets/{set_id}/links/subjects",
                        body={"subjects": [str(subject_id) for _, subject_id in batch]},
                        idempotent=True,
                    )
                except (SubjectSetAuthError, ApiServerError):
                    raise
                except SubjectSetError as err:
                    # Some may be linked already (a retried request) or
                    # deleted: create only those that no longer exist.
                    _LOG.warning(
                        "Cannot link %d recorded subjects again (%s); checking them.", len(batch), err
                    )
                    linked, missing = self._relink_existing(set_id, summary, batch)
                    create.extend(missing)
                    summary.linked += linked
                    progress.advance(linked)
                    continue
                summary.linked += len(batch)
                progress.advance(len(batch))
            for row in create:
                subject = Subject()
                for url in row.locations:
                    subject.add_location({_mime_type(url): url})
                subject.metadata.update(row.metadata)
                subject.metadata[EXTERNAL_ID_METADATA_KEY] = row.external_id
                body = {
                    "subjects": {
                        "locations": subject.locations,
                        "metadata": subject.metadata,
                        "links": {"project": str(summary.zooniverse_project), "subject_sets": [str(set_id)]},
                    }
                }
                answer = self.api.request("POST", "/subjects", body=body, idempotent=False)
                subject.set_raw(answer["subjects"][0])
                self.records.record_subjects(set_row_id, "subjects", [(row, int(subject.id))])
                summary.created += 1
                progress.advance()
        except SubjectSetAuthError:
            raise
        except SubjectSetError as err:
            raise self._stopped(summary, err, "creating") from None

    def _relink_existing(
        self, set_id: int, summary: SubjectSetSummary, batch: list[tuple[SubjectRow, int]]
    ) -> tuple[int, list[SubjectRow]]:
        """After a refused link request: count the subjects that are in the
        set now, link those that still exist one request at a time, and
        return how many are linked and the rows whose subjects are gone.

        A subject that exists but cannot be linked stops the run: creating
        a second one would leave an orphan counted against the uploader's
        subject limit for good.
        """
        in_set = set(self._list_set(set_id, summary).values())
        waiting = [(row, subject_id) for row, subject_id in batch if subject_id not in in_set]
        linked = len(batch) - len(waiting)
        if not waiting:
            return linked, []
        ids = ",".join(str(subject_id) for _, subject_id in waiting)
        answer = self.api.request(
            "GET", "/subjects", params={"id": ids, "page_size": len(waiting)}, idempotent=True
        )
        existing = {int(s["id"]) for s in (answer or {}).get("subjects", [])}
        missing = []
        for row, subject_id in waiting:
            if subject_id not in existing:
                missing.append(row)
                continue
            self.api.request(
                "POST",
                f"/subject_sets/{set_id}/links/subjects",
                body={"subjects": [str(subject_id)]},
                idempotent=False,
            )
            linked += 1
        return linked, missing

    def _import(
        self,
        record: Mapping[str, Any],
        set_id: int,
        set_row_id: int,
        pending: list[SubjectRow],
        summary: SubjectSetSummary,
        progress: Progress,
    ) -> None:
        # Long: write, publish, import and verify each part, as one sequence.
        # One manifest per chunk: one frame count, at most part_rows rows.
        chunks = import_chunks(pending, self.settings.part_rows)
        with tempfile.TemporaryDirectory(prefix="subject-set-") as directory:
            paths = []
            for number, chunk in enumerate(chunks, start=1):
                written = self._write_parts(
                    chunk, os.path.join(directory, str(number)), record["metadata_policy"]
                )
                assert len(written) == 1, "a chunk is one manifest part"
                paths += written
            parts = []
            for path in paths:
                with open(path, "rb") as stream:
                    data = stream.read()
                parts.append(self.public.write(public_manifest_key(record["name"], set_id, data), data))
        summary.manifests = parts
        try:
            for url, part_rows in zip(parts, chunks, strict=True):
                answer = self.api.request(
                    "POST",
                    "/subject_set_imports",
                    body={"subject_set_imports": {"source_url": url, "links": {"subject_set": str(set_id)}}},
                    idempotent=False,
                )
                import_id = int(answer["subject_set_imports"][0]["id"])
                summary.imports.append(import_id)
                _LOG.info(
                    "Import %d of %s (%d subjects) into subject set %d.",
                    import_id,
                    url,
                    len(part_rows),
                    set_id,
                )
                self.records.record_import(set_row_id, import_id, url, len(part_rows))
                try:
                    result = self._wait_for_import(import_id)
                except ImportStalledError:
                    self.records.finish_import(set_row_id, import_id, "stalled")
                    # Record what did arrive before saying so.
                    on_server = self._list_set(set_id, summary)
                    arrived = [(r, on_server[r.external_id]) for r in part_rows if r.external_id in on_server]
                    self.records.record_subjects(set_row_id, "import", arrived)
                    summary.created += len(arrived)
                    raise
                self.records.finish_import(set_row_id, import_id, "done")
                # Verify on the server rather than trusting the counts.
                on_server = self._list_set(set_id, summary)
                arrived = [
                    (row, on_server[row.external_id]) for row in part_rows if row.external_id in on_server
                ]
                missing = [row.external_id for row in part_rows if row.external_id not in on_server]
                self.records.record_subjects(set_row_id, "import", arrived)
                summary.created += len(arrived)
                summary.failed += len(missing)
                summary.failed_external_ids.extend(missing[: max(0, 100 - len(summary.failed_external_ids))])
                progress.advance(len(part_rows))
                if missing or int(result.get("failed_count") or 0):
                    _LOG.warning(
                        "Import %d: %s imported, %s failed of %s; %d subjects missing from the set.",
                        import_id,
                        result.get("imported_count"),
                        result.get("failed_count"),
                        result.get("manifest_count"),
                        len(missing),
                    )
        except SubjectSetAuthError:
            raise
        except SubjectSetError as err:
            raise self._stopped(summary, err, "importing") from None
        if summary.failed:
            raise SubjectSetError(
                f"{summary.failed} of {summary.pending} subjects did not arrive in subject set "
                f"{summary.subject_set_name!r} ({set_id}) "
                f"(e.g. {', '.join(summary.failed_external_ids[:5])}); "
                f"{summary.created} did. Zooniverse does not say why (failed ids are not in its API): check "
                "that their image URLs are public and end in .png, then run again to retry only those.",
                summary,
            )

    def _wait_for_import(self, import_id: int) -> dict[str, Any]:
        """Poll an import until it is done; time is counted in polls (so an
        injected ``sleep`` gives the same decisions).

        Raises `ImportStalledError` if its counts stop changing for
        ``import_stall_seconds``, `SubjectSetError` after
        ``import_timeout``.
        """
        waited = unchanged = 0.0
        last: tuple[Any, ...] | None = None
        while True:
            answer = self.api.request("GET", f"/subject_set_imports/{import_id}", idempotent=True) or {}
            found = answer.get("subject_set_imports") or [{}]
            state = found[0]
            try:
                done = float(state.get("progress") or 0) >= 1.0
            except (TypeError, ValueError):
                done = False
            if done:
                return state
            counts = (state.get("imported_count"), state.get("failed_count"), state.get("progress"))
            unchanged = unchanged + self.settings.poll_interval if counts == last else 0.0
            last = counts
            if unchanged >= self.settings.import_stall_seconds:
                raise ImportStalledError(
                    f"Import {import_id} stopped: {state.get('imported_count')} of "
                    f"{state.get('manifest_count')} imported and no change for {unchanged:.3g} s "
                    "(Zooniverse's import worker does not retry)"
                )
            if waited >= self.settings.import_timeout:
                raise SubjectSetError(
                    f"Import {import_id} is still running after {self.settings.import_timeout:.0f} s "
                    f"({state.get('imported_count')} of {state.get('manifest_count')} imported); "
                    "a rerun waits for it before sending anything"
                )
            self.settings.sleep(self.settings.poll_interval)
            waited += self.settings.poll_interval

    def _wait_for_unfinished_imports(self, set_row_id: int) -> None:
        """Wait for the imports an earlier run started and did not see
        finish: sending while one runs could make Zooniverse create a
        subject twice.
        """
        unfinished = self.records.unfinished_imports(set_row_id)
        for import_id in unfinished:
            _LOG.info("Waiting for import %d, started by an earlier run, to finish.", import_id)
            try:
                self._wait_for_import(import_id)
            except ImportStalledError as err:
                _LOG.warning("%s; sending what is missing.", err)
                self.records.finish_import(set_row_id, import_id, "stalled")
                continue
            except ApiNotFoundError:
                self.records.finish_import(set_row_id, import_id, "gone")
                continue
            self.records.finish_import(set_row_id, import_id, "done")
