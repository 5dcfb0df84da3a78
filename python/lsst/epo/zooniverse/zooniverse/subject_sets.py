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

"""Send a project's published images to its Zooniverse project as a
subject set (issue 5 §3), exactly once (issue 16).

Two methods (doc/zooniverse_facts.md §1, §2, §8): ``import`` (the
default: manifest parts of at most 10,000 rows published under
content-addressed names and sent with ``POST /subject_set_imports``) and
``subjects`` (one ``POST /subjects`` per subject, with its
``external_id``, linked to the set in the same request).  Before sending,
a run waits for the set's unfinished imports, lists the set by external
id, keeps one subject per external id and sends only what is missing; a
picture is replaced only by a new subject
(`SubjectSetPublisher.replace_subject`).

`SubjectSetPublisher` is what the command line and the PI's notebook
use; it is made of the modules next to this one: `.credentials`,
`.api_client` (the Panoptes client and its `RetryPolicy`), `.records`
(the state database's subject-set tables), `.set_sync` (one run),
`.set_imports`, `.set_content`, `.replacement`, `.manifest_parts` and
`.summary`.  The names of `__all__` stay importable from here.  Secrets
never appear in messages, audit records, logs or reprs.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_ENDPOINT",
    "EXTERNAL_ID_METADATA_KEY",
    "METHODS",
    "CredentialsError",
    "SubjectReplacement",
    "SubjectSetAuthError",
    "SubjectSetError",
    "SubjectSetPermissionError",
    "SubjectSetPublisher",
    "SubjectSetSummary",
    "UploadLimitError",
    "ZooniverseCredentials",
]

import dataclasses
import getpass
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..export.manifest import MANIFEST_ROW_LIMIT, SubjectRow
from ..export.progress import NoProgress
from ..export.service import ExportServiceError
from .api_client import PanoptesApiClient, RetryPolicy
from .credentials import DEFAULT_ENDPOINT, ZooniverseCredentials
from .errors import (
    CredentialsError,
    SubjectSetAuthError,
    SubjectSetError,
    SubjectSetPermissionError,
    UploadLimitError,
)
from .manifest_parts import default_manifest_directory, write_manifest_parts
from .records import SubjectSetRecords
from .replacement import SubjectReplacement, link_set_to_workflow, replace_subject
from .set_sync import EXTERNAL_ID_METADATA_KEY, SubjectSetSync, SyncSettings
from .summary import SubjectSetSummary

if TYPE_CHECKING:
    from ..export.progress import Progress
    from ..export.redaction import Redactor
    from ..export.service import ExportService

_LOG = logging.getLogger(__name__)

METHODS = ("import", "subjects")
"""How subjects are sent: ``import`` (subject_set_imports of a public
manifest) or ``subjects`` (one create request per subject)."""


class SubjectSetPublisher:
    """Create and fill a project's subject set in its Zooniverse project.

    Parameters
    ----------
    service : `ExportService`
        The export service (state database, public location, redactor).
    credentials : `ZooniverseCredentials`, optional
        How to sign in (read from the environment when first needed if
        not given; a dry run needs none).
    server_retries : `int`, optional
        Retries of a read (GET) after a server error (5xx) or a lost
        connection; creates are never retried (see `.api_client`).
        panoptes-client's own value is 5.
    retry_delay : `float`, optional
        Seconds between those retries (panoptes-client: 5), and the wait
        after a 429 without ``Retry-After``.
    rate_limit_retries : `int`, optional
        Waits after HTTP 429 before giving up, per request.
    max_retry_after : `float`, optional
        Longest wait honoured from a ``Retry-After`` header.
    poll_interval : `float`, optional
        Seconds between polls of a subject set import.
    import_stall_seconds : `float`, optional
        Declare an import dead when its counts have not changed for this
        long (Zooniverse's import worker does not retry: a failed one never
        finishes); a rerun then sends what is missing.
    import_timeout : `float`, optional
        Give up waiting for an import after this many seconds (it goes on
        on the server; a rerun verifies and sends what is missing).
    part_rows : `int`, optional
        Most rows per import manifest (Zooniverse's limit is 10,000).
    link_batch_size : `int`, optional
        Subjects per link request when relinking (``subjects`` method).
    page_size : `int`, optional
        Subjects per page when listing a set.
    sleep : `~collections.abc.Callable` [[`float`], `None`], optional
        How to wait (`time.sleep`; tests pass a recorder).
    lost_answer_grace : `float`, optional
        After a lost answer to an import POST, look this long for the
        import the server made before stopping (a rerun looks again).
    """

    def __init__(
        self,
        service: ExportService,
        credentials: ZooniverseCredentials | None = None,
        *,
        server_retries: int = 5,
        retry_delay: float = 5.0,
        rate_limit_retries: int = 5,
        max_retry_after: float = 300.0,
        poll_interval: float = 10.0,
        import_stall_seconds: float = 900.0,
        import_timeout: float = 3600.0,
        part_rows: int = MANIFEST_ROW_LIMIT,
        link_batch_size: int = 100,
        page_size: int = 100,
        sleep: Callable[[float], None] = time.sleep,
        lost_answer_grace: float = 120.0,
    ) -> None:
        if not 1 <= part_rows <= MANIFEST_ROW_LIMIT:
            raise ValueError(f"part_rows must be between 1 and {MANIFEST_ROW_LIMIT}, not {part_rows}.")
        self.service = service
        self.credentials = credentials
        self.server_retries = server_retries
        self.retry_delay = retry_delay
        self.rate_limit_retries = rate_limit_retries
        self.max_retry_after = max_retry_after
        self.poll_interval = poll_interval
        self.import_stall_seconds = import_stall_seconds
        self.import_timeout = import_timeout
        self.part_rows = part_rows
        self.link_batch_size = link_batch_size
        self.page_size = page_size
        self.sleep = sleep
        self.lost_answer_grace = lost_answer_grace
        if credentials is not None:
            for secret in credentials.secrets():
                self.redactor.add(secret)

    @property
    def redactor(self) -> Redactor:
        """The service's redactor (secrets are added to it)."""
        return self.service.redactor

    @property
    def records(self) -> SubjectSetRecords:
        """The state database's subject-set tables."""
        return SubjectSetRecords(self.service.store, self.redactor)

    @property
    def retry_policy(self) -> RetryPolicy:
        """When the API client sends a request again (from this
        publisher's retry settings).
        """
        return RetryPolicy(
            server_retries=self.server_retries,
            retry_delay=self.retry_delay,
            rate_limit_retries=self.rate_limit_retries,
            max_retry_after=self.max_retry_after,
            sleep=self.sleep,
        )

    @property
    def sync_settings(self) -> SyncSettings:
        """How a run writes manifests, pages and waits (from this
        publisher's settings).
        """
        return SyncSettings(
            part_rows=self.part_rows,
            link_batch_size=self.link_batch_size,
            page_size=self.page_size,
            poll_interval=self.poll_interval,
            import_stall_seconds=self.import_stall_seconds,
            import_timeout=self.import_timeout,
            sleep=self.sleep,
            lost_answer_grace=self.lost_answer_grace,
        )

    def _api(self) -> PanoptesApiClient:
        """Sign in to Zooniverse with this publisher's credentials (the
        ``PANOPTES_*`` environment variables when it was given none).
        """
        if self.credentials is None:
            self.credentials = ZooniverseCredentials.from_environment()
        return PanoptesApiClient(self.credentials, self.redactor, self.retry_policy)

    # ------------------------------------------------------------------
    # Rows and state.

    def rows(self, project: str) -> list[SubjectRow]:
        """Return the subjects a project's set should hold: one per
        published catalog object, as `ExportService.write_manifests` makes
        them (same external ids, locations and metadata policy).

        Parameters
        ----------
        project : `str`
            Project name.

        Returns
        -------
        rows : `list` [`SubjectRow`]
            The rows.

        Raises
        ------
        SubjectSetError
            Raised if a row cannot be made.
        """
        try:
            return self.service.subject_rows(project)
        except ExportServiceError as err:
            raise SubjectSetError(str(err)) from None

    def recorded_subjects(self, project: str, subject_set_name: str | None = None) -> list[dict[str, Any]]:
        """Return what the state database knows was sent.

        Parameters
        ----------
        project : `str`
            Project name.
        subject_set_name : `str`, optional
            Only this set.

        Returns
        -------
        subjects : `list` [`dict`]
            ``endpoint, zooniverse_project_id, subject_set_id,
            subject_set_name, external_id, subject_id, method, locations,
            recorded_at``, by set and external id.
        """
        record = self.service.project(project)
        return self.records.recorded_subjects(record["id"], subject_set_name)

    def subject_sets(self, project: str) -> list[dict[str, Any]]:
        """List the subject sets of a project's Zooniverse project, as
        Zooniverse has them.

        Parameters
        ----------
        project : `str`
            EPO project name.

        Returns
        -------
        sets : `list` [`dict`]
            ``subject_set_id, display_name, set_member_subjects_count`` and
            ``recorded`` (`int`: subjects this service recorded as sent to
            the set), by id.

        Raises
        ------
        SubjectSetAuthError
            Raised if Zooniverse refuses the credentials.
        SubjectSetError
            Raised if Zooniverse cannot be reached or refuses the request.
        """
        record = self.service.project(project)
        zooniverse_project = int(record["zooniverse_project_id"])
        with self._api() as api:
            recorded: dict[int, int] = {}
            for row in self.recorded_subjects(project):
                if row["endpoint"] == api.endpoint:
                    recorded[row["subject_set_id"]] = recorded.get(row["subject_set_id"], 0) + 1
            listed = list(api.pages("subject_sets", {"project_id": zooniverse_project, "page_size": 100}))
        sets = [
            {
                "subject_set_id": int(item["id"]),
                "display_name": item.get("display_name", ""),
                "set_member_subjects_count": int(item.get("set_member_subjects_count") or 0),
                "recorded": recorded.get(int(item["id"]), 0),
            }
            for item in listed
        ]
        return sorted(sets, key=lambda s: s["subject_set_id"])

    def link_to_workflow(
        self, project: str, *, subject_set_name: str, workflow: int, operator: str | None = None
    ) -> bool:
        """Link a subject set this service filled to a workflow of the
        project's Zooniverse project, so that volunteers classify it.

        Parameters
        ----------
        project : `str`
            EPO project name.
        subject_set_name : `str`
            Display name of a subject set made by `sync`.
        workflow : `int`
            Zooniverse workflow id; it must belong to the registered
            Zooniverse project.
        operator : `str`, optional
            Who does it (audit log; default: the current user).

        Returns
        -------
        linked : `bool`
            `True` if linked now, `False` if it already was.

        Raises
        ------
        SubjectSetAuthError
            Raised if Zooniverse refuses the credentials.
        SubjectSetError
            Raised if no such set was made for the project, or the
            workflow does not exist or belongs to another project.
        """
        record = self.service.project(project)
        actor = operator or getpass.getuser()
        with self._api() as api:
            known = self.records.find_set(record["id"], api.endpoint, subject_set_name)
            if known is None:
                raise SubjectSetError(
                    f"No subject set {subject_set_name!r} was made for {project} at {api.endpoint}: "
                    "run subject-set first."
                )
            set_id = int(known["subject_set_id"])
            if not link_set_to_workflow(api, set_id, int(workflow), int(record["zooniverse_project_id"])):
                return False
        self.records.audit(
            actor,
            "subject_set_linked",
            project,
            {"subject_set_id": set_id, "subject_set_name": subject_set_name, "workflow": int(workflow)},
        )
        _LOG.info("Linked subject set %r (%d) to workflow %d.", subject_set_name, set_id, workflow)
        return True

    def replace_subject(
        self,
        project: str,
        external_id: str,
        *,
        subject_set_name: str,
        row: SubjectRow | None = None,
        operator: str | None = None,
    ) -> SubjectReplacement:
        """Make a set show a new picture for one of its subjects: a new
        subject (same external id, ``!replaces_subject`` metadata), then
        the old one unlinked from the set (see `.replacement`).

        Parameters
        ----------
        project : `str`
            EPO project name.
        external_id : `str`
            The picture's external id.
        subject_set_name : `str`
            Display name of a subject set made by `sync`.
        row : `SubjectRow`, optional
            The new picture's row (default: the project's current row of
            that external id, `rows`).
        operator : `str`, optional
            Who does it (audit log; default: the current user).

        Returns
        -------
        replacement : `SubjectReplacement`
            The new and old subject ids.

        Raises
        ------
        SubjectSetError
            Raised if there is no such set or row, or Zooniverse refuses
            (`UploadLimitError`, `SubjectSetPermissionError`); calling
            again after a failure is safe.
        """
        record = self.service.project(project)
        if row is None:
            row = next((r for r in self.rows(project) if r.external_id == external_id), None)
        if row is None or row.external_id != external_id:
            raise SubjectSetError(
                f"Project {project} has no published picture with external id {external_id!r}."
            )
        with self._api() as api:
            known = self.records.find_set(record["id"], api.endpoint, subject_set_name)
            if known is None:
                raise SubjectSetError(
                    f"No subject set {subject_set_name!r} was made for {project} at {api.endpoint}."
                )
            done = replace_subject(
                api,
                self.records,
                set_id=int(known["subject_set_id"]),
                set_row_id=int(known["id"]),
                zooniverse_project=int(record["zooniverse_project_id"]),
                row=row,
                page_size=self.page_size,
            )
        self.records.audit(
            operator or getpass.getuser(), "subject_replaced", project, dataclasses.asdict(done)
        )
        return done

    # ------------------------------------------------------------------
    # Sync.

    def sync(
        self,
        project: str,
        *,
        subject_set_name: str,
        zooniverse_project: int | None = None,
        method: str = "import",
        dry_run: bool = False,
        progress: Progress | None = None,
        output_directory: str | None = None,
        operator: str | None = None,
    ) -> SubjectSetSummary:
        # Long by its docstring; the work is in _dry_run and _sync.
        """Make the subject set hold one subject per published object,
        sending only what it does not hold yet.

        Parameters
        ----------
        project : `str`
            EPO project name.
        subject_set_name : `str`
            Display name of the set in the Zooniverse project; created if
            the project has no set of that name (recorded by this service
            or found on the server).
        zooniverse_project : `int`, optional
            Zooniverse project id; must be the registered one (the
            default).
        method : `str`, optional
            ``import`` or ``subjects`` (see the module docstring).
        dry_run : `bool`, optional
            Do everything except talking to Zooniverse: rows are made,
            written as manifests to ``output_directory`` and validated,
            and the counts reported (pending: not recorded as sent).
        progress : `Progress`, optional
            Receives progress per subject.
        output_directory : `str`, optional
            Where a dry run (and the ``subjects`` method) writes the
            manifest parts; default: under the staging directory.
        operator : `str`, optional
            Who runs it (audit log; default: the current user).

        Returns
        -------
        summary : `SubjectSetSummary`
            What was done.

        Raises
        ------
        SubjectSetAuthError
            Raised if Zooniverse refuses the credentials.
        SubjectSetError
            Raised if the set cannot be made complete: the message says
            how many subjects were created and that running again resumes;
            ``err.summary`` holds the counts.
        CredentialsError
            Raised if no usable credentials are configured.
        """
        if method not in METHODS:
            raise SubjectSetError(f"Unknown method {method!r}; use one of {', '.join(METHODS)}.")
        name = (subject_set_name or "").strip()
        if not name or len(name) > 255:
            raise SubjectSetError("The subject set name must be 1 to 255 characters.")
        record = self.service.project(project)
        registered = int(record["zooniverse_project_id"])
        if zooniverse_project is not None and int(zooniverse_project) != registered:
            raise SubjectSetError(
                f"Project {project} is registered with Zooniverse project {registered}, not "
                f"{zooniverse_project}; its images go only to the PI's own project."
            )
        progress = progress or NoProgress()
        actor = operator or getpass.getuser()
        summary = SubjectSetSummary(
            project=project,
            zooniverse_project=registered,
            subject_set_name=name,
            method=method,
            dry_run=dry_run,
        )
        rows = self.rows(project)
        summary.total = len(rows)
        try:
            if dry_run:
                self._dry_run(record, rows, summary, output_directory)
            else:
                self._sync(record, rows, summary, progress, output_directory)
        except SubjectSetError as err:
            err.summary = summary
            message = self.redactor.redact(err)
            self.records.audit(
                actor,
                "subject_set_failed",
                project,
                {**self._audit_detail(summary), "error": message},
            )
            _LOG.error("%s", message)
            raise
        self.records.audit(
            actor,
            "subject_set_dry_run" if dry_run else "subject_set_synced",
            project,
            self._audit_detail(summary),
        )
        return summary

    @staticmethod
    def _audit_detail(summary: SubjectSetSummary) -> dict[str, Any]:
        detail = summary.as_dict()
        detail.pop("failed_external_ids")
        detail["manifests"] = detail["manifests"][:20]
        detail["duplicates"] = detail["duplicates"][:20]
        return detail

    def _dry_run(
        self,
        record: Mapping[str, Any],
        rows: list[SubjectRow],
        summary: SubjectSetSummary,
        output_directory: str | None,
    ) -> None:
        endpoint = self.credentials.endpoint if self.credentials else None
        summary.endpoint = endpoint
        set_record = self.records.find_set(record["id"], endpoint, summary.subject_set_name)
        recorded = self.records.subject_ids(set_record["id"] if set_record else None)
        if set_record:
            summary.subject_set_id = int(set_record["subject_set_id"])
        pending = [row for row in rows if row.external_id not in recorded]
        summary.already_present = len(rows) - len(pending)
        summary.pending = len(pending)
        directory = output_directory or default_manifest_directory(
            self.service.config.staging, record["name"], summary.subject_set_name
        )
        if pending:
            summary.manifests = write_manifest_parts(
                pending,
                directory,
                part_rows=self.part_rows,
                url_prefix=self.service.public.url_prefix,
                metadata_policy=record["metadata_policy"],
            )
        _LOG.info(
            "Dry run: %d of %d subjects of %s would be sent to subject set %r (%s); manifests in %s.",
            summary.pending,
            summary.total,
            record["name"],
            summary.subject_set_name,
            summary.method,
            directory,
        )

    def _sync(
        self,
        record: Mapping[str, Any],
        rows: list[SubjectRow],
        summary: SubjectSetSummary,
        progress: Progress,
        output_directory: str | None,
    ) -> None:
        with self._api() as api:
            run = SubjectSetSync(
                api, self.records, self.sync_settings, self.service.public, self.service.config.staging
            )
            run.run(record, rows, summary, progress, output_directory)
