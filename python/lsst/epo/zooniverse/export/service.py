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

"""The EPO export service: PI projects, polling, retrieval, validation,
quarantine, approval and publication, with an audit log.

States (doc/architecture.md)::

    dataset: discovered -> retrieved -> (validated) -> quarantined
             -> approved -> published, or rejected (with a reason)
    image:   quarantined -> approved -> publishing -> published,
             or rejected (with a reason)

Every transition is one database transaction that also appends to the
audit log, so the log and the states never disagree.  `ExportService` is
the façade that the command line, the web application and the PI tools
use; the work is done by its collaborators, one per concern, which read
the state database as typed records (`.records`) through
`.repository.StateRepository`:

- `.registration`: registering projects;
- `.intake`: discovering and retrieving datasets, under the claims and
  leases of `.claims`;
- `.dataset_checks`: validating a retrieved dataset into quarantine;
- `.decisions`: approval and rejection;
- `.publishing`: exactly-once publication, one picture per object;
- `.replacements`: pictures of a rerun replacing public ones;
- `.reports` and `.subjects`: status, reports, subjects and manifests;
- `.notices`: telling the PI.
"""

from __future__ import annotations

__all__ = [
    "ExportService",
    "ExportServiceError",
    "PollSummary",
    "Progress",
    "PublishSummary",
]

import getpass
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .claims import DatasetClaims
from .dataset_checks import DatasetChecks
from .decisions import Decisions
from .intake import ButlerCache, Intake, IntakeContext
from .manifest import SubjectRow
from .notices import ProjectNotices
from .notify import Notifier, notifier_from_config
from .outcomes import ExportServiceError, PollSummary, PublishSummary
from .policy import DataRightsPolicy
from .progress import NoProgress, Progress
from .publication import PublicLocation
from .publishing import Publisher
from .redaction import Redactor, default_redactor
from .registration import ProjectRegistration
from .replacements import Replacements
from .reports import Reports
from .repository import StateRepository
from .service_config import ServiceConfig
from .staging import StagingArea
from .store import StateStore
from .subjects import ProjectSubjects


class ExportService:
    """The EPO export service on one state database.

    Parameters
    ----------
    config : `ServiceConfig`
        Where things are and which rules apply.
    notifier : `Notifier`, optional
        Overrides the configured notifiers.
    redactor : `Redactor`, optional
        Masks secrets in audit records and errors (the process's default
        redactor if not given; the database password is added to it).
    """

    def __init__(
        self, config: ServiceConfig, *, notifier: Notifier | None = None, redactor: Redactor | None = None
    ) -> None:
        self.config = config
        self.redactor = redactor or default_redactor()
        if config.database_url.password:
            self.redactor.add(str(config.database_url.password))
        self.store = StateStore(config.database_url, self.redactor)
        self.engine = self.store.engine
        self.public = PublicLocation(config.public_root, config.public_url)
        self.notifier = notifier or notifier_from_config(list(config.notify))
        self.staging = StagingArea(config.staging)
        self.repository = StateRepository(self.store)
        self.claims = DatasetClaims(self.store, self.repository, config.claim_seconds)
        self.worker = self.claims.worker
        self.notices = ProjectNotices(self.notifier, self.redactor)
        self.butlers = ButlerCache()
        self.registration = ProjectRegistration(self.repository, config.policy)
        self.checks = DatasetChecks(self.store, self.claims, self.staging, self.notices, config.policy)
        self.intake = Intake(
            IntakeContext(
                repository=self.repository,
                claims=self.claims,
                staging=self.staging,
                notices=self.notices,
                butlers=self.butlers,
                policy=config.policy,
                checks=self.checks,
                retrieval_attempts=config.retrieval_attempts,
            )
        )
        self.decisions = Decisions(self.repository, self.staging, self.notices)
        self.publisher = Publisher(self.repository, self.claims, self.public, self.notices)
        self.reports = Reports(self.repository, self.public, config.policy, self.butlers)
        self.subjects = ProjectSubjects(self.repository, self.public, self.reports)
        self.replacements = Replacements(self.repository, self.public)

    @property
    def policy(self) -> DataRightsPolicy:
        """The data-rights policy."""
        return self.config.policy

    def close(self) -> None:
        """Release the database connections."""
        self.store.dispose()

    def __enter__(self) -> ExportService:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    # ------------------------------------------------------------------
    # Projects.

    def register_project(
        self,
        name: str,
        *,
        zooniverse_project_id: int,
        owner: str,
        repo: str,
        collections: str,
        dataset_types: Sequence[str] = ("zooniverse_rgb",),
        contact: str | None = None,
        metadata_policy: str = "full",
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Register a PI project.

        Parameters
        ----------
        name : `str`
            Short name (``[a-z0-9][a-z0-9_-]*``); the first part of every
            public name.
        zooniverse_project_id : `int`
            The Zooniverse project's id.
        owner : `str`
            The PI's RSP user name: only collections under ``u/<owner>/``
            may be registered.
        repo : `str`
            Butler repository (path, URI or label).
        collections : `str`
            Collection name or glob (``u/<owner>/zooniverse/*``).
        dataset_types : `~collections.abc.Sequence` [`str`], optional
            Dataset types to retrieve; each must be allowed by the policy.
        contact : `str`, optional
            E-mail address(es), comma-separated, for notifications.
        metadata_policy : `str`, optional
            ``full`` or ``anonymised`` (text chunks stripped at validation).
        actor : `str`, optional
            Who registers (the current user if not given).

        Returns
        -------
        project : `dict`
            The project's record.

        Raises
        ------
        ExportServiceError
            Raised for a bad name, a collection outside the owner's
            namespace (audited as a refusal), a dataset type the policy
            forbids, or a duplicate.
        """
        record = self.registration.register(
            name,
            zooniverse_project_id=zooniverse_project_id,
            owner=owner,
            repo=repo,
            collections=collections,
            dataset_types=dataset_types,
            contact=contact,
            metadata_policy=metadata_policy,
            actor=actor or getpass.getuser(),
        )
        return record.as_dict()

    def project(self, name: str) -> dict[str, Any]:
        """Return a registered project.

        Parameters
        ----------
        name : `str`
            Project name.

        Returns
        -------
        project : `dict`
            Its record (``dataset_types`` as a list).

        Raises
        ------
        ExportServiceError
            Raised if there is no such project.
        """
        return self.repository.project(name).as_dict()

    def projects(self) -> list[dict[str, Any]]:
        """Return every registered project, by name.

        Returns
        -------
        projects : `list` [`dict`]
            Project records.
        """
        return [record.as_dict() for record in self.repository.projects()]

    # ------------------------------------------------------------------
    # Polling, review, decisions, publication.

    def poll(
        self,
        project: str | None = None,
        *,
        progress: Progress | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> PollSummary:
        """Find new datasets, retrieve and validate them into quarantine.

        Parameters
        ----------
        project : `str`, optional
            Only this project (all if not given).
        progress : `Progress`, optional
            Receives progress of the retrieval and validation.
        stop : `~collections.abc.Callable`, optional
            Asked before each project and dataset; when it returns `True`
            the poll ends early (the worker's graceful stop).

        Returns
        -------
        summary : `PollSummary`
            What was done.
        """
        return self.intake.poll(self.repository.selected_projects(project), progress or NoProgress(), stop)

    def review(self, project: str | None = None, batch: str | None = None) -> list[dict[str, Any]]:
        """List quarantined batches with their images and findings.

        Parameters
        ----------
        project : `str`, optional
            Only this project.
        batch : `str`, optional
            Only this batch (in any state).

        Returns
        -------
        batches : `list` [`dict`]
            One dict per batch: its record, ``project`` (its name) and
            ``images`` (each image's entry, object id, state, reason,
            size, dimensions, quarantine path and public URL).

        Raises
        ------
        ExportServiceError
            Raised if ``batch`` is given and there is no such batch.
        """
        return self.reports.review(project, batch)

    def approve(
        self, batch: str, *, operator: str, reason: str | None = None, entries: Sequence[str] | None = None
    ) -> int:
        """Approve a quarantined batch, or some of its images.

        Parameters
        ----------
        batch : `str`
            Batch name.
        operator : `str`
            Who approves (recorded).
        reason : `str`, optional
            Why (recorded).
        entries : `~collections.abc.Sequence` [`str`], optional
            Approve only these images; the batch stays quarantined for the
            others.

        Returns
        -------
        approved : `int`
            Number of images approved.

        Raises
        ------
        ExportServiceError
            Raised for an unknown batch or image, an operator missing, or a
            batch not in quarantine.
        """
        return self.decisions.decide(batch, operator, reason, entries, approve=True)

    def reject(self, batch: str, *, operator: str, reason: str, entries: Sequence[str] | None = None) -> int:
        """Reject a quarantined or approved batch, or some of its images.

        Parameters
        ----------
        batch : `str`
            Batch name.
        operator : `str`
            Who rejects (recorded).
        reason : `str`
            Why (recorded, sent to the PI).
        entries : `~collections.abc.Sequence` [`str`], optional
            Reject only these images.

        Returns
        -------
        rejected : `int`
            Number of images rejected.

        Raises
        ------
        ExportServiceError
            Raised for an unknown batch or image, a missing operator or
            reason, images already published, or a batch whose images were
            all superseded (it counts as published).
        """
        if not reason or not reason.strip():
            raise ExportServiceError("A rejection needs a reason.")
        return self.decisions.decide(batch, operator, reason, entries, approve=False)

    def publish(
        self,
        project: str | None = None,
        *,
        progress: Progress | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> PublishSummary:
        """Publish every approved image not yet public, exactly once.

        Parameters
        ----------
        project : `str`, optional
            Only this project.
        progress : `Progress`, optional
            Receives progress per image.
        stop : `~collections.abc.Callable`, optional
            Asked before each batch; `True` ends the run early.

        Returns
        -------
        summary : `PublishSummary`
            What was done.
        """
        return self.publisher.publish(project, progress or NoProgress(), stop)

    # ------------------------------------------------------------------
    # Status and reports.

    def status(self, project: str | None = None) -> dict[str, Any]:
        """Count datasets and images by state, per project.

        Parameters
        ----------
        project : `str`, optional
            Only this project.

        Returns
        -------
        status : `dict`
            ``{"projects": {name: {"datasets": {state: n}, "images":
            {state: n}}}, "public_url": ...}`` (JSON-serialisable, no
            secrets).
        """
        return self.reports.status(project)

    def report(self, project: str) -> list[dict[str, Any]]:
        """Return one row per image and per rejected dataset of a project.

        Parameters
        ----------
        project : `str`
            Project name.

        Returns
        -------
        rows : `list` [`dict`]
            ``batch, dataset_type, data_id, entry, object_id, state,
            reason, url``.
        """
        return self.reports.report(project)

    def catalog_report(self, project: str, collection: str) -> list[dict[str, Any]]:
        """Say, for every row of the PI's original catalog, its public URL
        or why it has none.

        Parameters
        ----------
        project : `str`
            Project name.
        collection : `str`
            The PI's pipeline output collection (a chain that includes the
            sharding run), under the owner's namespace.

        Returns
        -------
        rows : `list` [`dict`]
            One per catalog row, in catalog order: ``row_index``,
            ``object_id``, ``outcome`` (``published`` or
            ``not_published``), ``stage`` (``sharding``, ``pipeline`` or
            ``epo``), ``reason`` and ``url``.  There are exactly as many
            rows as the catalog had.

        Raises
        ------
        ExportServiceError
            Raised if the collection is not the owner's, or holds no
            sharding output.
        """
        return self.reports.catalog_report(project, collection)

    def subject_rows(
        self, project: str, images: Sequence[Mapping[str, Any]] | None = None
    ) -> list[SubjectRow]:
        """Return the Zooniverse subjects of a project's published images:
        one per catalog object, as manifests and subject sets carry them.

        Parameters
        ----------
        project : `str`
            Project name.
        images : `~collections.abc.Sequence` [`dict`], optional
            Published images as `published_images` returns them (read if
            not given).

        Returns
        -------
        rows : `list` [`~lsst.epo.zooniverse.export.manifest.SubjectRow`]
            One per image, in the same order: external id, public URL and
            metadata following the project's metadata policy.

        Raises
        ------
        ExportServiceError
            Raised if a row cannot be made (e.g. identifying text in an
            anonymised project's URLs).
        """
        return self.subjects.subject_rows(project, images)

    def write_manifests(self, project: str, directory: str) -> list[str]:
        """Write the Zooniverse import manifests of a project's published
        images (one subject per catalog object) and validate them.

        Parameters
        ----------
        project : `str`
            Project name.
        directory : `str`
            Where to write ``manifest_partNNN.csv`` (at most 10,000 rows
            each).

        Returns
        -------
        paths : `list` [`str`]
            The manifest parts, in order.

        Raises
        ------
        ExportServiceError
            Raised if a row cannot be made (e.g. identifying text in an
            anonymised project's URLs) or a written part fails validation.
        """
        return self.subjects.write_manifests(project, directory)

    def published_images(self, project: str) -> list[dict[str, Any]]:
        """Return the published images of a project with their index rows.

        Parameters
        ----------
        project : `str`
            Project name.

        Returns
        -------
        images : `list` [`dict`]
            ``batch, entry, object_id, url, sha256, index_row`` (the
            image's ``index.csv`` row as a `dict`; empty for images
            validated before schema version 3 and for cutouts) and
            ``frames`` (public URLs of its band frames in subject order;
            empty for a single-picture subject).
        """
        return self.reports.published_images(project)

    def audit_log(self, *, batch: str | None = None, project: str | None = None) -> list[dict[str, Any]]:
        """Return audit records, oldest first.

        Parameters
        ----------
        batch : `str`, optional
            Only this batch.
        project : `str`, optional
            Only this project.

        Returns
        -------
        records : `list` [`dict`]
            The records.
        """
        return self.reports.audit_log(batch=batch, project=project)

    # ------------------------------------------------------------------
    # Picture replacement (a PI's rerun with a new stretch).

    def pending_replacements(self, project: str | None = None) -> list[dict[str, Any]]:
        """Return the public pictures replaced by a newer approved picture
        of the same object whose Zooniverse subject is still to be
        replaced, oldest first.

        Parameters
        ----------
        project : `str`, optional
            Only this project.

        Returns
        -------
        replacements : `list` [`dict`]
            ``id`` (for `complete_replacement`), ``project``,
            ``object_id``, ``external_id`` (the subject's, the same for
            both pictures), ``old`` and ``new`` (each ``image_id``,
            ``batch``, ``entry``, ``sha256``, ``url``, ``locations``: the
            picture's URL then its band frames', as the subject's
            locations; ``keys``: their public keys), ``recorded_at``,
            ``completed_at`` and ``completed_by`` (`None` while pending).
            The old picture's files stay public until the replacement is
            completed.

        Raises
        ------
        ExportServiceError
            Raised if there is no such project.
        """
        return self.replacements.find(project)

    def complete_replacement(self, replacement_id: int, *, actor: str | None = None) -> dict[str, Any]:
        """Record that the Zooniverse side replaced the subject of a
        replaced picture, and remove the old picture's public files.

        Parameters
        ----------
        replacement_id : `int`
            The ``id`` of a `pending_replacements` entry.
        actor : `str`, optional
            Who completes it (the current user if not given; audited).

        Returns
        -------
        replacement : `dict`
            The replacement, as `pending_replacements` gives it, now with
            ``completed_at``.  Completing it again changes nothing.

        Raises
        ------
        ExportServiceError
            Raised if there is no such replacement.
        """
        return self.replacements.complete(replacement_id, actor or getpass.getuser())
