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
"""Intake: polling the PIs' Butler collections, discovering their datasets
and retrieving them into EPO's staging area.

A poll, per project: find the datasets of the registered dataset types in
the owner's collections (`Intake.discover`), then claim each new dataset,
copy its artifact (`Intake.retrieve`) and hand it to the dataset checks
(`.dataset_checks.DatasetChecks`), which quarantine or reject it.
"""

from __future__ import annotations

__all__ = [
    "CUTOUT_STORAGE_CLASS",
    "RGB_STORAGE_CLASS",
    "ButlerCache",
    "Intake",
    "IntakeContext",
    "batch_name",
]

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from lsst.resources import ResourcePath

from ..timestamps import utc_now_iso
from .claims import ClaimLostError, DatasetClaims
from .dataset_checks import DatasetChecks
from .faults import fault_point
from .notices import ProjectNotices
from .outcomes import ExportServiceError, PollSummary
from .policy import DataRightsPolicy
from .progress import Progress
from .records import DatasetRecord, ProjectRecord
from .repository import StateRepository
from .retrieval_checks import (
    RecordedFile,
    RetrievalRefusedError,
    RetrievalUnavailableError,
    check_datastore_file,
    check_retrieved_copy,
    is_remote_butler,
    recorded_file_info,
)
from .staging import StagingArea, sha256_file
from .state import DATASETS, insert_ignoring_duplicates

_LOG = logging.getLogger(__name__)

RGB_STORAGE_CLASS = "ZooniverseRgb"
CUTOUT_STORAGE_CLASS = "ZooniverseCutout"


def batch_name(
    dataset_type: str, data_id: Mapping[str, Any], dataset_uuid: str, *, anonymised: bool = False
) -> str:
    """Return the name of a batch.

    Parameters
    ----------
    dataset_type : `str`
        The dataset's type.
    data_id : `~collections.abc.Mapping`
        Its data ID.
    dataset_uuid : `str`
        Its UUID.
    anonymised : `bool`, optional
        Whether the project is anonymised.

    Returns
    -------
    name : `str`
        Readable (type, data ID) for most projects, opaque for anonymised
        ones (a tract and patch say where on the sky); both end in the
        random part of the dataset UUID (UUIDv7 starts with a timestamp
        that datasets of one run share).
    """
    random_part = dataset_uuid.replace("-", "")[-12:]
    if anonymised:
        return f"b-{random_part}"
    short = {"zooniverse_rgb": "rgb", "zooniverse_cutout": "cutout"}.get(dataset_type, dataset_type)
    parts = [short]
    for key, value in data_id.items():
        prefix = {"tract": "t", "patch": "p"}.get(key, "")
        parts.append(f"{prefix}{value}")
    parts.append(random_part)
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", "-".join(str(p) for p in parts))
    return name[-120:].lstrip("._-+") or dataset_uuid


def _never() -> bool:
    return False


class ButlerCache:
    """Read-only Butlers of the registered repositories, made once each.

    A repository whose configuration names a Butler server (the RSP's
    ``https://.../api/butler/repo/<name>/butler.yaml``, or a label that
    ``DAF_BUTLER_REPOSITORIES`` maps to it) gives a `RemoteButler`; it
    authenticates with the token in ``BUTLER_RUBIN_ACCESS_TOKEN``, EPO's
    service-account token (daf_butler reads it; the service masks it in
    logs, errors and the audit log like every ``*TOKEN*`` variable).
    """

    def __init__(self) -> None:
        self._butlers: dict[str, Any] = {}

    def add(self, repo: str, butler: Any) -> None:
        """Use a Butler made elsewhere for a repository (a `RemoteButler`
        made with `RemoteButlerFactory.create_butler_for_access_token`, a
        test server's client).

        Parameters
        ----------
        repo : `str`
            The repository as projects register it.
        butler : `lsst.daf.butler.Butler`
            Its Butler.
        """
        self._butlers[repo] = butler

    def get(self, repo: str) -> Any:
        """Return the Butler of a repository.

        Parameters
        ----------
        repo : `str`
            Repository path, URI or label.

        Returns
        -------
        butler : `lsst.daf.butler.Butler`
            A read-only Butler (direct or remote).  A direct Butler is
            checked to know this package's storage classes; a remote one
            needs no formatter (files are copied, not read).
        """
        if repo not in self._butlers:
            from lsst.daf.butler import Butler

            from ..butler.config import check_butler_config, enable_butler_config

            enable_butler_config()
            butler = Butler.from_config(repo, writeable=False)
            if not is_remote_butler(butler):
                check_butler_config(butler)
            self._butlers[repo] = butler
        return self._butlers[repo]


@dataclasses.dataclass(frozen=True)
class IntakeContext:
    """What intake works with."""

    repository: StateRepository
    claims: DatasetClaims
    staging: StagingArea
    notices: ProjectNotices
    butlers: ButlerCache
    policy: DataRightsPolicy
    checks: DatasetChecks
    retrieval_attempts: int = 3


class Intake:
    """Discovers and retrieves the datasets of registered projects.

    Parameters
    ----------
    context : `IntakeContext`
        The state database, claims, staging area, notices, Butlers,
        data-rights policy and dataset checks.
    """

    def __init__(self, context: IntakeContext) -> None:
        self.repository = context.repository
        self.store = context.repository.store
        self.claims = context.claims
        self.staging = context.staging
        self.notices = context.notices
        self.butlers = context.butlers
        self.policy = context.policy
        self.checks = context.checks
        self.retrieval_attempts = context.retrieval_attempts
        self.actor = f"poll@{context.claims.worker}"

    def poll(
        self, projects: list[ProjectRecord], progress: Progress, stop: Callable[[], bool] | None = None
    ) -> PollSummary:
        """Find new datasets, retrieve and validate them into quarantine.

        Parameters
        ----------
        projects : `list` [`~.records.ProjectRecord`]
            The projects to poll.
        progress : `~.progress.Progress`
            Receives progress of the retrieval and validation.
        stop : `~collections.abc.Callable`, optional
            Asked before each project and dataset; when it returns `True`
            the poll returns (a worker asked to stop).

        Returns
        -------
        summary : `~.outcomes.PollSummary`
            What was done.
        """
        summary = PollSummary()
        stop = stop or _never
        for project in projects:
            if stop():
                break
            try:
                self.discover(project, summary)
                fault_point("poll.discovered")
                self.process_pending(project, summary, progress, stop)
            except Exception as err:
                # One project's unreachable repository must not stop the
                # others; it is polled again next time.
                summary.errors.append(self.store.record_failure(self.actor, project.name, None, err))
        return summary

    def _allowed_collections(self, butler: Any, project: ProjectRecord, summary: PollSummary) -> list[str]:
        """Return the project's collections that the ownership rules allow
        (refusing the others).
        """
        try:
            found = list(butler.collections.query(project.collections))
        except Exception as err:  # MissingCollectionError and friends.
            _LOG.warning(
                "Project %s: collections %r cannot be queried: %s",
                project.name,
                project.collections,
                self.store.redactor.redact(err),
            )
            found = []
        collections = []
        for collection in found:
            if self.policy.allows_collection(collection, project.owner):
                collections.append(collection)
            else:
                summary.refused.append(collection)
                self.refuse(project, f"collection {collection} is not allowed for owner {project.owner}")
        return collections

    def _refused_ref(self, project: ProjectRecord, ref: Any, summary: PollSummary) -> bool:
        """Refuse a dataset outside the owner's runs or of a type the
        policy forbids; tell whether it was refused.
        """
        # A chained collection can reach runs of other users.
        if not self.policy.allows_collection(ref.run, project.owner):
            summary.refused.append(f"{ref.run} ({ref.id})")
            self.refuse(
                project, f"dataset {ref.id} is in run {ref.run}, not allowed for owner {project.owner}"
            )
            return True
        if not self.policy.allows_dataset_type(ref.datasetType.name):
            summary.refused.append(f"{ref.datasetType.name} ({ref.id})")
            self.refuse(
                project, f"dataset type {ref.datasetType.name} is not allowed by the data-rights policy"
            )
            return True
        return False

    def _new_dataset_row(self, project: ProjectRecord, ref: Any) -> dict[str, Any]:
        """Return the ``datasets`` row of a discovered dataset."""
        data_id = dict(ref.dataId.required.items())
        uuid = str(ref.id)
        now = utc_now_iso()
        return {
            "project_id": project.id,
            "dataset_uuid": uuid,
            "dataset_type": ref.datasetType.name,
            "run": ref.run,
            "data_id": json.dumps(data_id, sort_keys=True, default=str),
            "batch": batch_name(ref.datasetType.name, data_id, uuid, anonymised=not project.full_metadata),
            "state": "discovered",
            "discovered_at": now,
            "updated_at": now,
        }

    def discover(self, project: ProjectRecord, summary: PollSummary) -> None:
        """Record the project's datasets not seen before as ``discovered``.

        Parameters
        ----------
        project : `~.records.ProjectRecord`
            The project.
        summary : `~.outcomes.PollSummary`
            Counts discoveries and refusals.
        """
        butler = self.butlers.get(project.repo)
        collections = self._allowed_collections(butler, project, summary)
        if not collections:
            return
        registered_types = {t.name: t for t in butler.registry.queryDatasetTypes(list(project.dataset_types))}
        new_rows = []
        for type_name in project.dataset_types:
            if type_name not in registered_types:
                _LOG.info(
                    "Project %s: dataset type %s is not in %s yet.", project.name, type_name, project.repo
                )
                continue
            refs = butler.query_datasets(
                type_name, collections=collections, find_first=False, limit=None, explain=False
            )
            new_rows += [
                self._new_dataset_row(project, ref)
                for ref in refs
                if not self._refused_ref(project, ref, summary)
            ]
        if not new_rows:
            return
        seen = self.repository.dataset_uuids(project.id)
        for row in new_rows:
            if row["dataset_uuid"] in seen:
                continue
            with self.store.writing() as connection:
                if insert_ignoring_duplicates(connection, DATASETS, [row]) == 1:
                    self.store.audit(
                        connection,
                        self.actor,
                        "discovered",
                        project=project.name,
                        batch=row["batch"],
                        to_state="discovered",
                        detail=f"{row['dataset_type']} {row['data_id']} in {row['run']} "
                        f"({row['dataset_uuid']})",
                    )
                    summary.discovered += 1

    def refuse(self, project: ProjectRecord, detail: str) -> None:
        """Log and audit a refusal, once per project and reason (a poll
        every few minutes would otherwise repeat it for ever).

        Parameters
        ----------
        project : `~.records.ProjectRecord`
            The project.
        detail : `str`
            What was refused and why.
        """
        _LOG.warning("Project %s: refused %s", project.name, detail)
        detail = self.store.redactor.redact(detail)
        with self.store.writing() as connection:
            if not self.store.audited(connection, "refused", project.name, detail):
                self.store.audit(connection, self.actor, "refused", project=project.name, detail=detail)

    def process_pending(
        self,
        project: ProjectRecord,
        summary: PollSummary,
        progress: Progress,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        """Retrieve and check the project's discovered and retrieved
        datasets that no other worker holds.

        Parameters
        ----------
        project : `~.records.ProjectRecord`
            The project.
        summary : `~.outcomes.PollSummary`
            Counts what was done.
        progress : `~.progress.Progress`
            Receives progress per dataset.
        stop : `~collections.abc.Callable`, optional
            Asked before each dataset; `True` ends the loop.
        """
        stop = stop or _never
        pending = self.repository.dataset_ids(project.id, ("discovered", "retrieved"))
        if not pending:
            return
        progress.start(f"{project.name}: retrieving and validating", len(pending))
        try:
            for dataset_id in pending:
                if stop():
                    break
                self._process_one(project, dataset_id, summary)
                progress.advance()
        finally:
            progress.finish()

    def _process_one(self, project: ProjectRecord, dataset_id: int, summary: PollSummary) -> None:
        """Claim, retrieve and check one dataset."""
        dataset = self.claims.claim(dataset_id, ("discovered", "retrieved"))
        if dataset is None:
            summary.skipped += 1
            return
        fault_point("retrieve.claimed")
        try:
            if dataset.state == "discovered":
                dataset = self.retrieve(project, dataset)
            if dataset.state == "retrieved":
                self.checks.check(project, dataset, summary)
            elif dataset.state == "rejected":
                summary.rejected += 1
        except ClaimLostError as err:
            _LOG.warning("Project %s: %s", project.name, err)
            summary.skipped += 1
        except Exception as err:
            # Leave the dataset to a later poll, release the claim so that
            # it need not wait for the lease, go on with the next.
            self.claims.give_up(dataset_id)
            summary.errors.append(self.store.record_failure(self.actor, project.name, dataset.batch, err))

    def _reject_before_retrieval(
        self, project: ProjectRecord, dataset: DatasetRecord, reason: str, *, notify: bool
    ) -> DatasetRecord:
        """Reject a claimed, discovered dataset (release, audit, notify)."""
        with self.store.writing() as connection:
            self.claims.release(connection, dataset.id, state="rejected", reason=reason)
            self.store.audit(
                connection,
                self.actor,
                "rejected",
                project=project.name,
                batch=dataset.batch,
                from_state="discovered",
                to_state="rejected",
                detail=reason,
            )
        if notify:
            self.notices.send(
                project, "rejected", dataset.batch, f"Batch {dataset.batch} rejected: {reason}."
            )
        return dataclasses.replace(dataset, state="rejected", reason=reason)

    def _copy_checked(
        self, butler: Any, ref: Any, project: ProjectRecord, dataset: DatasetRecord, artifact: str
    ) -> None:
        """Check the dataset's file, copy it to ``artifact`` and check the
        copy; raise `~.retrieval_checks.RetrievalRefusedError` if a
        ``retrieval.*`` rule refuses it (``retrieval.unavailable`` once
        its file was unavailable ``retrieval_attempts`` times).
        """
        try:
            check_datastore_file(butler, ref)
            recorded = self._copy_artifact(butler, ref, os.path.dirname(artifact), artifact)
        except RetrievalUnavailableError as err:
            if self._count_unavailable(dataset) < self.retrieval_attempts:
                raise  # Recorded as an error; a later poll tries again.
            raise RetrievalRefusedError(
                "retrieval.unavailable", f"{err} ({self.retrieval_attempts} attempts)"
            ) from None
        check_retrieved_copy(ref, artifact, recorded)

    def _count_unavailable(self, dataset: DatasetRecord) -> int:
        """Count one more poll that found the dataset's file unavailable
        (``datasets.retrieval_failures``, under this worker's claim);
        return the count.
        """
        with self.store.writing() as connection:
            self.claims.extend(connection, dataset.id, retrieval_failures=DATASETS.c.retrieval_failures + 1)
            return connection.execute(
                sa.select(DATASETS.c.retrieval_failures).where(DATASETS.c.id == dataset.id)
            ).scalar_one()

    def _copy_artifact(self, butler: Any, ref: Any, directory: str, artifact: str) -> RecordedFile | None:
        """Copy a dataset's one file from the Butler to ``artifact`` (from
        a `RemoteButler`, through the URL the server signs); return what
        the datastore recorded about it, from the Butler's artifact index.
        """
        incoming = os.path.join(directory, ".incoming")
        # Resumable: whatever a crashed retrieval left is discarded.
        shutil.rmtree(incoming, ignore_errors=True)
        os.makedirs(incoming)
        try:
            paths = butler.retrieveArtifacts(
                [ref],
                ResourcePath(incoming, forceDirectory=True),
                transfer="copy",
                preserve_path=False,
                overwrite=True,
            )
        except FileNotFoundError:
            # A remote datastore's object is gone (the signed URL answers
            # 404): like a missing local file.
            raise RetrievalUnavailableError("the dataset's file is missing from the datastore") from None
        files = [p for p in paths if not p.basename().startswith("_")]
        if len(files) != 1:
            raise ExportServiceError(f"Dataset {ref.id} has {len(files)} artifacts; expected one file.")
        recorded = recorded_file_info(incoming, files[0].basename())
        os.replace(files[0].ospath, artifact)
        shutil.rmtree(incoming, ignore_errors=True)
        return recorded

    def retrieve(self, project: ProjectRecord, dataset: DatasetRecord) -> DatasetRecord:
        """Copy a claimed, discovered dataset into the staging area.

        Parameters
        ----------
        project : `~.records.ProjectRecord`
            Its project.
        dataset : `~.records.DatasetRecord`
            The dataset, claimed by this worker.

        Returns
        -------
        dataset : `~.records.DatasetRecord`
            The dataset, now ``retrieved`` (or ``rejected`` if it left the
            repository, has a storage class the service does not take, or
            its file fails a ``retrieval.*`` rule of
            `~.retrieval_checks.RULES`: a symbolic link, outside the
            datastore root, a size or checksum other than recorded).

        Raises
        ------
        ClaimLostError
            Raised if another worker took the dataset over.
        """
        butler = self.butlers.get(project.repo)
        ref = butler.get_dataset(dataset.dataset_uuid, datastore_records=True)
        directory = self.staging.batch_directory(project.name, dataset.batch)
        if ref is None:
            reason = "the dataset is no longer in the Butler repository"
            return self._reject_before_retrieval(project, dataset, reason, notify=True)
        storage_class = ref.datasetType.storageClass_name
        if storage_class not in (RGB_STORAGE_CLASS, CUTOUT_STORAGE_CLASS):
            reason = (
                f"policy.storage_class: dataset type {ref.datasetType.name} has storage class "
                f"{storage_class}, not {RGB_STORAGE_CLASS} or {CUTOUT_STORAGE_CLASS}"
            )
            return self._reject_before_retrieval(project, dataset, reason, notify=False)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        suffix = ".zip" if storage_class == RGB_STORAGE_CLASS else ".png"
        artifact = os.path.join(directory, "artifact" + suffix)
        try:
            self._copy_checked(butler, ref, project, dataset, artifact)
        except RetrievalRefusedError as refusal:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(artifact)
            return self._reject_before_retrieval(project, dataset, str(refusal), notify=True)
        fault_point("retrieve.copied")
        digest = sha256_file(artifact)
        with self.store.writing() as connection:
            self.claims.extend(
                connection, dataset.id, state="retrieved", artifact=artifact, artifact_sha256=digest
            )
            self.store.audit(
                connection,
                self.actor,
                "retrieved",
                project=project.name,
                batch=dataset.batch,
                from_state="discovered",
                to_state="retrieved",
                detail=f"{os.path.getsize(artifact)} bytes, sha256 {digest}",
            )
        fault_point("retrieve.recorded")
        self.notices.send(
            project,
            "retrieved",
            dataset.batch,
            f"Dataset {dataset.dataset_uuid} ({dataset.dataset_type} {dataset.data_id}) "
            "was copied to EPO's staging area; you may remove it from your collection.",
            dataset_uuid=dataset.dataset_uuid,
            run=dataset.run,
        )
        return dataclasses.replace(dataset, state="retrieved", artifact=artifact, artifact_sha256=digest)
