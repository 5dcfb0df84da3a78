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
subjects exactly once: `SubjectSetSync`.

What the set holds on the server is the truth (it covers a run killed
between creating subjects and recording them, a create or an import
whose answer was lost, and imports that ran late).  A run:

1. lists the set's imports and waits for every unfinished one
   (`~.set_imports.SetImports.settle`), whoever started it;
2. lists the set's subjects by external id, unlinks all but one subject
   of an external id held more than once (`~.set_content.SetContent.reconcile`)
   and records what is there;
3. sends only what is missing, by one of two methods:

``import``
    Publish the manifest parts of the missing subjects under
    content-addressed names, ``POST /subject_set_imports`` each part's
    URL (after a lost answer, the import made of that URL is found in the
    set's list instead of posting again; a part already imported to the
    end is not posted again: its rows failed there), poll it until done
    and list the set again.
``subjects``
    Create one subject per row (``external_id`` attribute, remote
    locations, the row's metadata), linked to the set in the same
    request; after a failed create, list the set to see whether it was
    made all the same.

After any failure the set is listed again before the run stops, so the
summary and the state database say what arrived.  Neither method is an
upsert: a subject already in the set is never sent again, and a picture
is replaced only through `~.replacement.replace_subject`.
"""

from __future__ import annotations

__all__ = [
    "EXTERNAL_ID_METADATA_KEY",
    "ImportStalledError",
    "SubjectSetSync",
    "SyncSettings",
    "external_id_of",
]

import logging
import os
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..export.manifest import SubjectRow
from .api_client import ApiServerError
from .errors import SubjectSetAuthError, SubjectSetError, UploadLimitError
from .manifest_parts import (
    default_manifest_directory,
    import_chunks,
    public_manifest_key,
    write_manifest_parts,
)
from .set_content import EXTERNAL_ID_METADATA_KEY, SetContent, external_id_of, subject_body
from .set_imports import ImportStalledError, SetImports, import_signature, is_finished
from .settings import SyncSettings

if TYPE_CHECKING:
    from ..export.progress import Progress
    from ..export.publication import PublicLocation
    from .api_client import PanoptesApiClient
    from .records import SubjectSetRecords
    from .summary import SubjectSetSummary

_LOG = logging.getLogger(__name__)

_STOPS = (SubjectSetAuthError, UploadLimitError)


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
        self.imports = SetImports(api, records, settings)
        self.content = SetContent(api, records, settings.page_size)

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
            Raised if Zooniverse refuses the credentials
            (`~.errors.SubjectSetPermissionError`: a scope or role).
        UploadLimitError
            Raised if the account reached its upload limit.
        SubjectSetError
            Raised if the set cannot be made complete (the message says
            how far the run got).
        """
        # Long: the steps of one run in order, with its two failure paths.
        summary.endpoint = self.api.endpoint
        self._check_project(summary.zooniverse_project)
        set_id, set_row_id = self._find_or_create_set(record, summary)
        states = self.imports.settle(set_id, set_row_id)
        by_id = {row.external_id: row for row in rows}
        on_server = self.content.reconcile(set_id, set_row_id, by_id, summary)
        summary.already_present = sum(1 for e in on_server if e in by_id)
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
                self._import(record, set_id, set_row_id, pending, summary, progress, states)
            else:
                self._create(record, set_id, set_row_id, pending, summary, progress, output_directory)
        except _STOPS:
            self._reconcile_after_failure(set_id, set_row_id, pending, summary)
            raise
        except SubjectSetError as err:
            self._reconcile_after_failure(set_id, set_row_id, pending, summary)
            raise self._stopped(summary, err) from None
        finally:
            progress.finish()
        _LOG.info(
            "Subject set %r (%d) of Zooniverse project %d: %d created, %d already present, %d relinked, "
            "%d failed.",
            summary.subject_set_name,
            set_id,
            summary.zooniverse_project,
            summary.created,
            summary.already_present,
            summary.linked,
            summary.failed,
        )
        if summary.failed:
            raise SubjectSetError(
                f"{summary.failed} of {summary.pending} subjects did not arrive in subject set "
                f"{summary.subject_set_name!r} ({set_id}) "
                f"(e.g. {', '.join(summary.failed_external_ids[:5])}); "
                f"{summary.created} did. Zooniverse does not say why (failed ids are not in its API): check "
                "that their image URLs are public and end in .png; an import of the same rows is not "
                "posted again.",
                summary,
            )

    def _check_project(self, zooniverse_project: int) -> None:
        try:
            answer = self.api.request("GET", f"/projects/{zooniverse_project}", idempotent=True) or {}
        except (SubjectSetAuthError, ApiServerError):
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
        matches = self._sets_named(zooniverse_project, name)
        if not matches:
            try:
                self.api.request(
                    "POST",
                    "/subject_sets",
                    body={
                        "subject_sets": {"display_name": name, "links": {"project": str(zooniverse_project)}}
                    },
                    idempotent=False,
                )
            except ApiServerError as err:
                _LOG.warning("%s; looking for the subject set %r the server may have made.", err, name)
            matches = self._sets_named(zooniverse_project, name)
            if not matches:
                raise SubjectSetError(
                    f"Subject set {name!r} was not created in project {zooniverse_project}."
                )
            summary.subject_set_created = True
            _LOG.info(
                "Created subject set %r (%s) in Zooniverse project %d.",
                name,
                matches[0]["id"],
                zooniverse_project,
            )
        if len(matches) > 1:
            raise SubjectSetError(
                f"Zooniverse project {zooniverse_project} has {len(matches)} subject sets named {name!r} "
                f"(ids {', '.join(str(s['id']) for s in matches)}); rename all but one."
            )
        set_id = int(matches[0]["id"])
        owner = self.records.set_owner(self.api.endpoint, set_id)
        if owner is not None and owner != record["id"]:
            # Two EPO projects of one Zooniverse project: never mix their
            # subjects (nor a full and an anonymised project's).
            raise SubjectSetError(
                f"Subject set {name!r} ({set_id}) of Zooniverse project {zooniverse_project} belongs "
                f"to another EPO project; choose another subject set name for {record['name']}."
            )
        summary.subject_set_id = set_id
        return set_id, self.records.record_set(
            record["id"], self.api.endpoint, zooniverse_project, set_id, name
        )

    def _sets_named(self, zooniverse_project: int, name: str) -> list[dict[str, Any]]:
        listed = self.api.pages("subject_sets", {"project_id": zooniverse_project, "page_size": 100})
        return [s for s in listed if s.get("display_name") == name]

    def _reconcile_after_failure(
        self, set_id: int, set_row_id: int, pending: list[SubjectRow], summary: SubjectSetSummary
    ) -> None:
        """Count what arrived before a failure (best effort: the listing
        may fail too).
        """
        try:
            on_server = self.content.reconcile(
                set_id, set_row_id, {r.external_id: r for r in pending}, summary
            )
        except SubjectSetError as err:
            _LOG.warning("Cannot list subject set %d after the failure: %s", set_id, err)
            return
        arrived = sum(1 for r in pending if r.external_id in on_server)
        summary.created = max(summary.created, arrived - summary.linked)

    def _stopped(self, summary: SubjectSetSummary, err: SubjectSetError) -> SubjectSetError:
        what = "importing" if summary.method == "import" else "creating"
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
        summary: SubjectSetSummary,
        progress: Progress,
        output_directory: str | None,
    ) -> None:
        directory = output_directory or default_manifest_directory(
            self.staging, record["name"], summary.subject_set_name
        )
        summary.manifests = self._write_parts(pending, directory, record["metadata_policy"])
        # Created by an earlier run but not in the set (unlinked since):
        # link again rather than create a second subject.
        recorded = self.records.subject_ids(set_row_id)
        relink = [(row, recorded[row.external_id]) for row in pending if recorded.get(row.external_id)]
        create = [row for row in pending if not recorded.get(row.external_id)]
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
                _LOG.warning("Cannot link %d recorded subjects again (%s); checking them.", len(batch), err)
                linked, missing = self._relink_existing(set_id, batch)
                create.extend(missing)
                summary.linked += linked
                progress.advance(linked)
                continue
            summary.linked += len(batch)
            progress.advance(len(batch))
        for row in create:
            body = subject_body(row, summary.zooniverse_project, set_id)
            try:
                answer = self.api.request("POST", "/subjects", body=body, idempotent=False)
                subject_id = int(answer["subjects"][0]["id"])
            except ApiServerError as err:
                # The answer may be lost after the subject was made.
                made = self.content.list_set(set_id).get(row.external_id)
                if not made:
                    raise
                _LOG.warning(
                    "%s; subject %s of %s was made all the same.", err, made[0]["id"], row.external_id
                )
                subject_id = int(made[0]["id"])
            self.records.record_subjects(set_row_id, "subjects", [(row, subject_id)])
            summary.created += 1
            progress.advance()

    def _relink_existing(
        self, set_id: int, batch: list[tuple[SubjectRow, int]]
    ) -> tuple[int, list[SubjectRow]]:
        """After a refused link request: count the subjects that are in the
        set now, link those that still exist one request at a time, and
        return how many are linked and the rows whose subjects are gone.

        A subject that exists but cannot be linked stops the run: creating
        a second one would leave an orphan counted against the uploader's
        subject limit for good.
        """
        in_set = {int(s["id"]) for subjects in self.content.list_set(set_id).values() for s in subjects}
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
                idempotent=True,
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
        states: list[dict[str, Any]],
    ) -> None:
        # Long: publish, import and verify each part, as one sequence.
        # One manifest per chunk: one frame count, at most part_rows rows.
        chunks = import_chunks(pending, self.settings.part_rows)
        summary.manifests = self._publish_parts(record, set_id, chunks)
        finished = {s.get("source_url") for s in states if is_finished(s)}
        by_id = {row.external_id: row for row in pending}
        for url, part_rows in zip(summary.manifests, chunks, strict=True):
            if url in finished:
                # Imported to the end before, and its rows still missing:
                # they failed there, and would fail again.
                self._count_failed(part_rows, summary)
                progress.advance(len(part_rows))
                continue
            import_id = self.imports.post(set_id, set_row_id, url, len(part_rows))
            summary.imports.append(import_id)
            _LOG.info(
                "Import %d of %s (%d subjects) into subject set %d.", import_id, url, len(part_rows), set_id
            )
            try:
                result = self.imports.wait(import_id)
            except ImportStalledError as err:
                self.records.finish_import(set_row_id, import_id, import_signature(err.state))
                raise
            self.records.finish_import(set_row_id, import_id, "done")
            # Verify on the server rather than trusting the counts.
            on_server = self.content.reconcile(set_id, set_row_id, by_id, summary)
            summary.created = sum(1 for row in pending if row.external_id in on_server)
            missing = [row for row in part_rows if row.external_id not in on_server]
            self._count_failed(missing, summary)
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

    @staticmethod
    def _count_failed(rows: list[SubjectRow], summary: SubjectSetSummary) -> None:
        summary.failed += len(rows)
        room = max(0, 100 - len(summary.failed_external_ids))
        summary.failed_external_ids.extend(row.external_id for row in rows[:room])

    def _publish_parts(
        self, record: Mapping[str, Any], set_id: int, chunks: list[list[SubjectRow]]
    ) -> list[str]:
        """Write each chunk's manifest and publish it under a name made
        from its content (the import worker reads it again later, and a
        rerun recognises an import of the same rows by its URL).
        """
        with tempfile.TemporaryDirectory(prefix="subject-set-") as directory:
            urls = []
            for number, chunk in enumerate(chunks, start=1):
                (path,) = self._write_parts(
                    chunk, os.path.join(directory, str(number)), record["metadata_policy"]
                )
                with open(path, "rb") as stream:
                    data = stream.read()
                urls.append(self.public.write(public_manifest_key(record["name"], set_id, data), data))
        return urls
