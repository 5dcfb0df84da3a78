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

States (DESIGN §5)::

    dataset: discovered -> retrieved -> (validated) -> quarantined
             -> approved -> published, or rejected (with a reason)
    image:   quarantined -> approved -> publishing -> published,
             or rejected (with a reason)

Every transition is one database transaction that also appends to the
audit log, so the log and the states never disagree.  Work on a dataset
(retrieval, validation, publication) is done under a *claim*: a worker
marks the dataset with its identity and a lease, with a compare-and-set
update that only one worker can win; a claim whose lease ran out, or whose
worker on this host is dead (``kill -9``), is taken over.  Publication is
exactly once: an image is marked ``publishing`` before its bytes are
written and ``published`` after; a rerun finds a ``publishing`` image's
public copy, checks its digest, and either records it or writes it again.
"""

from __future__ import annotations

__all__ = [
    "ExportService",
    "ExportServiceError",
    "PollSummary",
    "Progress",
    "PublishSummary",
]

import dataclasses
import getpass
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from lsst.resources import ResourcePath

from ..timestamps import utc_now_iso
from .faults import fault_point
from .manifest import SubjectRow, anonymous_subject_id
from .notify import Notification, NotificationError, Notifier, notifier_from_config
from .policy import METADATA_POLICIES, DataRightsPolicy
from .progress import NoProgress, Progress
from .publication import PublicLocation
from .redaction import Redactor, default_redactor
from .service_config import ServiceConfig
from .state import (
    AUDIT_LOG,
    DATASETS,
    IMAGE_FRAMES,
    IMAGE_INDEX_ROWS,
    IMAGES,
    PROJECTS,
    insert_ignoring_duplicates,
)
from .store import StateStore
from .validation import validate_png_file, validate_rgb_zip

_LOG = logging.getLogger(__name__)

_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_OWNER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_RGB_STORAGE_CLASS = "ZooniverseRgb"
_CUTOUT_STORAGE_CLASS = "ZooniverseCutout"
_PUBLISH_CHUNK = 200


class ExportServiceError(RuntimeError):
    """A request the service refuses (bad input, wrong state, ownership)."""


class _ClaimLostError(RuntimeError):
    """Another worker took over this worker's claim (its lease ran out):
    stop working on the dataset and write nothing more about it.
    """


def _batch_state(image_states: set[str], current: str) -> str:
    """Return a batch's state from its images' states (after approval,
    rejection or publication).
    """
    if "quarantined" in image_states:
        return "quarantined"
    if image_states & {"approved", "publishing"}:
        return "approved"
    if image_states & {"published", "superseded"}:
        # Done: its objects are public (through this or another batch).
        return "published"
    return "rejected" if image_states else current


@dataclasses.dataclass
class PollSummary:
    """What one poll did."""

    discovered: int = 0
    """New datasets found."""
    quarantined: int = 0
    """Datasets validated and waiting for approval."""
    rejected: int = 0
    """Datasets rejected (validation, policy, vanished)."""
    images_quarantined: int = 0
    """Images waiting for approval."""
    images_rejected: int = 0
    """Images refused by validation."""
    refused: list[str] = dataclasses.field(default_factory=list)
    """Collections or datasets refused by the ownership rules."""
    skipped: int = 0
    """Datasets another worker is processing."""
    errors: list[str] = dataclasses.field(default_factory=list)
    """Unexpected failures (the dataset or project is retried next time)."""


@dataclasses.dataclass
class PublishSummary:
    """What one publication run did."""

    published: int = 0
    """Images newly published."""
    already_present: int = 0
    """Images whose public copy a crashed run had written (recorded now)."""
    rejected: int = 0
    """Images refused at publication (staging copy changed)."""
    batches: int = 0
    """Batches finished."""
    urls: list[str] = dataclasses.field(default_factory=list)
    """Public URLs of the images published by this run."""
    errors: list[str] = dataclasses.field(default_factory=list)
    """Unexpected failures (the batch is retried next time)."""
    superseded: int = 0
    """Approved images not published: a better picture of the same object
    is (or already was)."""


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _batch_name(
    dataset_type: str, data_id: Mapping[str, Any], dataset_uuid: str, *, anonymised: bool = False
) -> str:
    """Name of a batch: readable (type, data ID) for most projects, opaque
    for anonymised ones (a tract and patch say where on the sky); both end
    in the random part of the dataset UUID (UUIDv7 starts with a
    timestamp that datasets of one run share).
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


def _picture_rank(row: Any) -> tuple:
    """Sort key of candidate pictures of one object: best first."""
    try:
        index = json.loads(row.index_row) if row.index_row else {}
    except ValueError:
        index = {}

    def number(key: str) -> float:
        try:
            value = float(index.get(key, "nan"))
        except ValueError:
            return -math.inf
        return -math.inf if math.isnan(value) else value

    return (-number("coverage"), -number("edge_distance"), row.batch, row.entry)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        # Private: quarantined images must not be readable by other users.
        os.makedirs(config.staging, mode=0o700, exist_ok=True)
        os.chmod(config.staging, 0o700)
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._butlers: dict[str, Any] = {}

    def _reading(self) -> sa.Connection:
        return self.store.reading()

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
    # Audit and notification helpers.

    def _audit(self, connection: sa.Connection, actor: str, action: str, **fields: Any) -> None:
        self.store.audit(connection, actor, action, **fields)

    def _audit_many(self, connection: sa.Connection, records: Sequence[Mapping[str, Any]]) -> None:
        self.store.audit_many(connection, records)

    def _notify(
        self, project: Mapping[str, Any], event: str, batch: str | None, summary: str, **details: Any
    ) -> None:
        recipients = tuple(a for a in (project.get("contact") or "").split(",") if a)
        notification = Notification(
            event=event,
            project=project["name"],
            owner=project["owner"],
            recipients=recipients,
            batch=batch,
            summary=summary,
            details=details,
        )
        try:
            self.notifier.notify(notification)
        except NotificationError as err:
            # A PI's mail server being down must not stop the service.
            _LOG.warning(
                "Notification of %s for %s failed: %s",
                event,
                batch or project["name"],
                self.redactor.redact(err),
            )

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
            namespace, a dataset type the policy forbids, or a duplicate.
        """
        actor = actor or getpass.getuser()
        if not _PROJECT_NAME.match(name or ""):
            raise ExportServiceError(f"Project name {name!r} must match {_PROJECT_NAME.pattern}.")
        if not _OWNER_NAME.match(owner or ""):
            raise ExportServiceError(f"Owner {owner!r} is not a valid user name.")
        if not isinstance(zooniverse_project_id, int) or zooniverse_project_id <= 0:
            raise ExportServiceError("The Zooniverse project id must be a positive integer.")
        problem = self._collection_pattern_problem(collections, owner)
        if problem:
            with self.engine.begin() as connection:
                self._audit(
                    connection,
                    actor,
                    "refused",
                    project=name,
                    detail=f"register {collections!r} for owner {owner}: {problem}",
                )
            _LOG.warning("Refused to register %r for %s: %s", collections, owner, problem)
            raise ExportServiceError(f"Cannot register {collections!r} for {owner}: {problem}")
        dataset_types = tuple(dataset_types)
        if not dataset_types:
            raise ExportServiceError("At least one dataset type is needed.")
        for dataset_type in dataset_types:
            if not self.policy.allows_dataset_type(dataset_type):
                raise ExportServiceError(
                    f"Dataset type {dataset_type!r} is not allowed by the data-rights policy "
                    f"(allowed: {', '.join(self.policy.dataset_types)})."
                )
        if metadata_policy not in METADATA_POLICIES:
            raise ExportServiceError(f"Metadata policy must be one of {METADATA_POLICIES}.")
        if contact:
            for address in contact.split(","):
                if not re.match(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$", address):
                    raise ExportServiceError(f"Contact {address!r} is not an e-mail address.")
        row = {
            "name": name,
            "zooniverse_project_id": zooniverse_project_id,
            "owner": owner,
            "contact": contact,
            "repo": repo,
            "collections": collections,
            "dataset_types": json.dumps(list(dataset_types)),
            "metadata_policy": metadata_policy,
            "registered_at": utc_now_iso(),
            "registered_by": actor,
        }
        try:
            with self.engine.begin() as connection:
                connection.execute(PROJECTS.insert().values(**row))
                self._audit(
                    connection,
                    actor,
                    "registered",
                    project=name,
                    detail=f"owner={owner} repo={repo} collections={collections} "
                    f"types={','.join(dataset_types)} zooniverse={zooniverse_project_id}",
                )
        except sa.exc.IntegrityError:
            raise ExportServiceError(f"A project named {name!r} is already registered.") from None
        return self.project(name)

    def _collection_pattern_problem(self, pattern: str, owner: str) -> str | None:
        prefix = f"u/{owner}/"
        if not pattern or not pattern.startswith(prefix) or len(pattern) == len(prefix):
            return f"collections must be under {prefix}"
        if any(c.isspace() for c in pattern) or "\\" in pattern:
            return "whitespace or backslash in the collection name"
        if any(part in ("", ".", "..") for part in pattern.split("/")):
            return "empty, '.' or '..' path component"
        # The literal part must stay in the namespace whatever the glob
        # matches: u/alice* would match u/alice2/...
        if any(c in pattern[: len(prefix)] for c in "*?["):
            return "a glob in the owner part"
        return None

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
        with self._reading() as connection:
            row = connection.execute(sa.select(PROJECTS).where(PROJECTS.c.name == name)).mappings().first()
        if row is None:
            raise ExportServiceError(f"No project named {name!r} is registered.")
        return self._project_dict(row)

    @staticmethod
    def _project_dict(row: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(row)
        result["dataset_types"] = json.loads(result["dataset_types"])
        return result

    def projects(self) -> list[dict[str, Any]]:
        """Return every registered project, by name.

        Returns
        -------
        projects : `list` [`dict`]
            Project records.
        """
        with self._reading() as connection:
            rows = connection.execute(sa.select(PROJECTS).order_by(PROJECTS.c.name)).mappings().all()
        return [self._project_dict(row) for row in rows]

    def _selected_projects(self, name: str | None) -> list[dict[str, Any]]:
        return [self.project(name)] if name else self.projects()

    # ------------------------------------------------------------------
    # Polling: discovery, retrieval, validation.

    def _butler(self, repo: str) -> Any:
        if repo not in self._butlers:
            from ..butler.config import get_butler

            self._butlers[repo] = get_butler(repo, writeable=False)
        return self._butlers[repo]

    def poll(self, project: str | None = None, *, progress: Progress | None = None) -> PollSummary:
        """Find new datasets, retrieve and validate them into quarantine.

        Parameters
        ----------
        project : `str`, optional
            Only this project (all if not given).
        progress : `Progress`, optional
            Receives progress of the retrieval and validation.

        Returns
        -------
        summary : `PollSummary`
            What was done.
        """
        progress = progress or NoProgress()
        summary = PollSummary()
        for record in self._selected_projects(project):
            try:
                self._discover(record, summary)
                fault_point("poll.discovered")
                self._process_pending(record, summary, progress)
            except Exception as err:
                # One project's unreachable repository must not stop the
                # others; it is polled again next time.
                self._record_error(summary.errors, f"poll@{self.worker}", record["name"], None, err)
        return summary

    def _record_error(
        self, errors: list[str], actor: str, project: str, batch: str | None, err: BaseException
    ) -> None:
        message = self.redactor.redact(f"{type(err).__name__}: {err}")
        errors.append(f"{project}{'/' + batch if batch else ''}: {message}")
        _LOG.error("%s%s: %s", project, f" batch {batch}" if batch else "", message)
        _LOG.debug("Traceback", exc_info=err)
        try:
            with self.engine.begin() as connection:
                self._audit(connection, actor, "error", project=project, batch=batch, detail=message)
        except Exception as audit_err:  # The database itself may be the problem.
            _LOG.error("Cannot record the error in the audit log: %s", self.redactor.redact(audit_err))

    def _discover(self, project: dict[str, Any], summary: PollSummary) -> None:
        actor = f"poll@{self.worker}"
        butler = self._butler(project["repo"])
        owner = project["owner"]
        try:
            found = list(butler.collections.query(project["collections"]))
        except Exception as err:  # MissingCollectionError and friends.
            _LOG.warning(
                "Project %s: collections %r cannot be queried: %s",
                project["name"],
                project["collections"],
                self.redactor.redact(err),
            )
            found = []
        collections = []
        for collection in found:
            if self.policy.allows_collection(collection, owner):
                collections.append(collection)
            else:
                summary.refused.append(collection)
                self._refuse(project, actor, f"collection {collection} is not allowed for owner {owner}")
        if not collections:
            return
        registered_types = {t.name: t for t in butler.registry.queryDatasetTypes(project["dataset_types"])}
        new_rows = []
        for type_name in project["dataset_types"]:
            if type_name not in registered_types:
                _LOG.info(
                    "Project %s: dataset type %s is not in %s yet.",
                    project["name"],
                    type_name,
                    project["repo"],
                )
                continue
            refs = butler.query_datasets(
                type_name, collections=collections, find_first=False, limit=None, explain=False
            )
            for ref in refs:
                # A chained collection can reach runs of other users.
                if not self.policy.allows_collection(ref.run, owner):
                    summary.refused.append(f"{ref.run} ({ref.id})")
                    self._refuse(
                        project, actor, f"dataset {ref.id} is in run {ref.run}, not allowed for owner {owner}"
                    )
                    continue
                if not self.policy.allows_dataset_type(ref.datasetType.name):
                    summary.refused.append(f"{ref.datasetType.name} ({ref.id})")
                    self._refuse(
                        project,
                        actor,
                        f"dataset type {ref.datasetType.name} is not allowed by the data-rights policy",
                    )
                    continue
                data_id = dict(ref.dataId.required.items())
                uuid = str(ref.id)
                now = utc_now_iso()
                new_rows.append(
                    {
                        "project_id": project["id"],
                        "dataset_uuid": uuid,
                        "dataset_type": ref.datasetType.name,
                        "run": ref.run,
                        "data_id": json.dumps(data_id, sort_keys=True, default=str),
                        "batch": _batch_name(
                            ref.datasetType.name,
                            data_id,
                            uuid,
                            anonymised=project["metadata_policy"] != "full",
                        ),
                        "state": "discovered",
                        "discovered_at": now,
                        "updated_at": now,
                    }
                )
        if not new_rows:
            return
        with self._reading() as connection:
            seen = set(
                connection.execute(
                    sa.select(DATASETS.c.dataset_uuid).where(DATASETS.c.project_id == project["id"])
                ).scalars()
            )
        for row in new_rows:
            if row["dataset_uuid"] in seen:
                continue
            with self.engine.begin() as connection:
                if insert_ignoring_duplicates(connection, DATASETS, [row]) == 1:
                    self._audit(
                        connection,
                        actor,
                        "discovered",
                        project=project["name"],
                        batch=row["batch"],
                        to_state="discovered",
                        detail=f"{row['dataset_type']} {row['data_id']} in {row['run']} "
                        f"({row['dataset_uuid']})",
                    )
                    summary.discovered += 1

    def _refuse(self, project: Mapping[str, Any], actor: str, detail: str) -> None:
        """Log and audit a refusal, once per project and reason (a poll
        every few minutes would otherwise repeat it for ever).
        """
        _LOG.warning("Project %s: refused %s", project["name"], detail)
        detail = self.redactor.redact(detail)
        with self.engine.begin() as connection:
            seen = connection.execute(
                sa.select(AUDIT_LOG.c.id)
                .where(
                    AUDIT_LOG.c.action == "refused",
                    AUDIT_LOG.c.project == project["name"],
                    AUDIT_LOG.c.detail == detail,
                )
                .limit(1)
            ).first()
            if seen is None:
                self._audit(connection, actor, "refused", project=project["name"], detail=detail)

    def _claim(self, dataset_id: int, states: Iterable[str]) -> dict[str, Any] | None:
        """Claim a dataset in one of ``states``; `None` if another live
        worker holds it or its state moved on.
        """
        now = time.time()
        with self.engine.begin() as connection:
            row = (
                connection.execute(sa.select(DATASETS).where(DATASETS.c.id == dataset_id)).mappings().first()
            )
            if row is None or row["state"] not in states:
                return None
            holder = row["claimed_by"]
            if holder is not None and holder != self.worker and (row["claim_expires"] or 0) > now:
                host, _, rest = holder.partition(":")
                pid = rest.partition(":")[0]
                if host != socket.gethostname() or not pid.isdigit() or _pid_alive(int(pid)):
                    return None
            condition = DATASETS.c.claimed_by.is_(None) if holder is None else DATASETS.c.claimed_by == holder
            result = connection.execute(
                DATASETS.update()
                .where(DATASETS.c.id == dataset_id, DATASETS.c.state == row["state"], condition)
                .values(claimed_by=self.worker, claim_expires=now + self.config.claim_seconds)
            )
            if result.rowcount != 1:
                return None
            if holder is not None and holder != self.worker:
                self._audit(
                    connection,
                    f"worker@{self.worker}",
                    "claim_taken_over",
                    batch=row["batch"],
                    detail=f"stale claim of {holder}",
                )
        claimed = dict(row)
        claimed["claimed_by"] = self.worker
        return claimed

    def _release(self, connection: sa.Connection, dataset_id: int, **values: Any) -> None:
        """Update a claimed dataset and give the claim up, in the caller's
        transaction; raise `_ClaimLostError` (rolling it back) if another
        worker holds the dataset now.
        """
        self._update_claimed(connection, dataset_id, claimed_by=None, claim_expires=None, **values)

    def _update_claimed(self, connection: sa.Connection, dataset_id: int, **values: Any) -> None:
        result = connection.execute(
            DATASETS.update()
            .where(DATASETS.c.id == dataset_id, DATASETS.c.claimed_by == self.worker)
            .values(updated_at=utc_now_iso(), **values)
        )
        if result.rowcount != 1:
            raise _ClaimLostError(f"Dataset {dataset_id}: another worker took over the claim.")

    def _renew(self, dataset_id: int) -> None:
        """Extend this worker's lease on a dataset (a heartbeat before each
        long step).
        """
        with self.engine.begin() as connection:
            self._update_claimed(
                connection, dataset_id, claim_expires=time.time() + self.config.claim_seconds
            )

    def _give_up(self, dataset_id: int) -> None:
        """Release a claim after a failure, if this worker still holds it."""
        try:
            with self.engine.begin() as connection:
                self._release(connection, dataset_id)
        except _ClaimLostError:
            pass

    def _process_pending(self, project: dict[str, Any], summary: PollSummary, progress: Progress) -> None:
        with self._reading() as connection:
            pending = (
                connection.execute(
                    sa.select(DATASETS.c.id)
                    .where(
                        DATASETS.c.project_id == project["id"],
                        DATASETS.c.state.in_(("discovered", "retrieved")),
                    )
                    .order_by(DATASETS.c.id)
                )
                .scalars()
                .all()
            )
        if not pending:
            return
        progress.start(f"{project['name']}: retrieving and validating", len(pending))
        try:
            for dataset_id in pending:
                dataset = self._claim(dataset_id, ("discovered", "retrieved"))
                if dataset is None:
                    summary.skipped += 1
                    progress.advance()
                    continue
                fault_point("retrieve.claimed")
                try:
                    if dataset["state"] == "discovered":
                        dataset = self._retrieve(project, dataset)
                    if dataset["state"] == "retrieved":
                        self._validate(project, dataset, summary)
                    elif dataset["state"] == "rejected":
                        summary.rejected += 1
                except _ClaimLostError as err:
                    _LOG.warning("Project %s: %s", project["name"], err)
                    summary.skipped += 1
                except Exception as err:
                    # Leave the dataset to a later poll, release the claim so
                    # that it need not wait for the lease, go on with the next.
                    self._give_up(dataset_id)
                    self._record_error(
                        summary.errors, f"poll@{self.worker}", project["name"], dataset["batch"], err
                    )
                progress.advance()
        finally:
            progress.finish()

    @staticmethod
    def _public_name(project: Mapping[str, Any], image: Any) -> str:
        """Public file name of an accepted image: its entry name
        (``<object_id>.png``), or for an anonymised project the opaque
        subject id, so that no URL shows the catalog id.
        """
        if project["metadata_policy"] == "full":
            return image.entry
        return anonymous_subject_id(project["name"], image.object_id) + ".png"

    @staticmethod
    def _public_frame_name(project: Mapping[str, Any], image: Any, frame: Any) -> str:
        """Public file name of a band frame: its entry name, or for an
        anonymised project the image's opaque name with ``+<band>``.
        """
        if project["metadata_policy"] == "full":
            return frame.entry
        return f"{anonymous_subject_id(project['name'], image.object_id)}+{frame.band}.png"

    def _batch_directory(self, project: Mapping[str, Any], batch: str) -> str:
        return os.path.join(self.config.staging, project["name"], batch)

    def _reject_before_retrieval(
        self, project: dict[str, Any], dataset: dict[str, Any], reason: str, *, notify: bool
    ) -> dict[str, Any]:
        """Reject a claimed, discovered dataset (release, audit, notify)."""
        with self.engine.begin() as connection:
            self._release(connection, dataset["id"], state="rejected", reason=reason)
            self._audit(
                connection,
                f"poll@{self.worker}",
                "rejected",
                project=project["name"],
                batch=dataset["batch"],
                from_state="discovered",
                to_state="rejected",
                detail=reason,
            )
        if notify:
            self._notify(
                project, "rejected", dataset["batch"], f"Batch {dataset['batch']} rejected: {reason}."
            )
        dataset.update(state="rejected", reason=reason)
        return dataset

    def _retrieve(self, project: dict[str, Any], dataset: dict[str, Any]) -> dict[str, Any]:
        actor = f"poll@{self.worker}"
        butler = self._butler(project["repo"])
        ref = butler.get_dataset(dataset["dataset_uuid"])
        directory = self._batch_directory(project, dataset["batch"])
        if ref is None:
            reason = "the dataset is no longer in the Butler repository"
            return self._reject_before_retrieval(project, dataset, reason, notify=True)
        storage_class = ref.datasetType.storageClass_name
        if storage_class not in (_RGB_STORAGE_CLASS, _CUTOUT_STORAGE_CLASS):
            reason = (
                f"policy.storage_class: dataset type {ref.datasetType.name} has storage class "
                f"{storage_class}, not {_RGB_STORAGE_CLASS} or {_CUTOUT_STORAGE_CLASS}"
            )
            return self._reject_before_retrieval(project, dataset, reason, notify=False)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        suffix = ".zip" if storage_class == _RGB_STORAGE_CLASS else ".png"
        artifact = os.path.join(directory, "artifact" + suffix)
        incoming = os.path.join(directory, ".incoming")
        # Resumable: whatever a crashed retrieval left is discarded.
        shutil.rmtree(incoming, ignore_errors=True)
        os.makedirs(incoming)
        paths = butler.retrieveArtifacts(
            [ref],
            ResourcePath(incoming, forceDirectory=True),
            transfer="copy",
            preserve_path=False,
            overwrite=True,
        )
        files = [p for p in paths if not p.basename().startswith("_")]
        if len(files) != 1:
            raise ExportServiceError(
                f"Dataset {dataset['dataset_uuid']} has {len(files)} artifacts; expected one file."
            )
        os.replace(files[0].ospath, artifact)
        shutil.rmtree(incoming, ignore_errors=True)
        fault_point("retrieve.copied")
        digest = _sha256_file(artifact)
        with self.engine.begin() as connection:
            self._update_claimed(
                connection,
                dataset["id"],
                state="retrieved",
                artifact=artifact,
                artifact_sha256=digest,
                claim_expires=time.time() + self.config.claim_seconds,
            )
            self._audit(
                connection,
                actor,
                "retrieved",
                project=project["name"],
                batch=dataset["batch"],
                from_state="discovered",
                to_state="retrieved",
                detail=f"{os.path.getsize(artifact)} bytes, sha256 {digest}",
            )
        fault_point("retrieve.recorded")
        self._notify(
            project,
            "retrieved",
            dataset["batch"],
            f"Dataset {dataset['dataset_uuid']} ({dataset['dataset_type']} {dataset['data_id']}) "
            "was copied to EPO's staging area; you may remove it from your collection.",
            dataset_uuid=dataset["dataset_uuid"],
            run=dataset["run"],
        )
        dataset.update(state="retrieved", artifact=artifact, artifact_sha256=digest)
        return dataset

    def _validate(self, project: dict[str, Any], dataset: dict[str, Any], summary: PollSummary) -> None:
        actor = f"poll@{self.worker}"
        directory = self._batch_directory(project, dataset["batch"])
        quarantine = os.path.join(directory, "quarantine")
        self._renew(dataset["id"])
        # Idempotent: a crashed validation's files are discarded.
        shutil.rmtree(quarantine, ignore_errors=True)
        os.makedirs(quarantine, mode=0o700)
        artifact = dataset["artifact"]
        findings_text: list[str] = []
        if (
            not artifact
            or not os.path.exists(artifact)
            or _sha256_file(artifact) != dataset["artifact_sha256"]
        ):
            result = None
            findings_text.append("staging.changed: the retrieved copy is missing or changed since retrieval")
        elif artifact.endswith(".zip"):
            result = validate_rgb_zip(
                artifact, self.policy, metadata_policy=project["metadata_policy"], output_dir=quarantine
            )
        else:
            data_id = json.loads(dataset["data_id"])
            object_id = _cutout_object_id(artifact, data_id, dataset["dataset_uuid"])
            result = validate_png_file(
                artifact,
                self.policy,
                metadata_policy=project["metadata_policy"],
                output_dir=quarantine,
                entry=f"{object_id}.png",
                object_id=object_id,
            )
        fault_point("validate.files_written")
        if result is not None:
            findings_text.extend(str(f) for f in result.artifact_findings)
        accepted = list(result.accepted) if result is not None and result.ok else []
        rejected = list(result.rejected) if result is not None else []
        now = utc_now_iso()
        image_rows = [
            {
                "dataset_id": dataset["id"],
                "entry": a.entry,
                "object_id": a.object_id,
                "state": "quarantined",
                "sha256": a.sha256,
                "size": a.size,
                "width": a.width,
                "height": a.height,
                "quarantine_path": a.path,
                "public_key": PublicLocation.key(
                    project["name"], dataset["batch"], self._public_name(project, a)
                ),
                "updated_at": now,
                "reason": ("stripped " + ",".join(a.stripped)) if a.stripped else None,
            }
            for a in accepted
        ]
        # Every row has every column: one executemany inserts them all.
        image_rows += [
            {
                "dataset_id": dataset["id"],
                "entry": r.entry,
                "object_id": r.object_id,
                "state": "rejected",
                "sha256": None,
                "size": None,
                "width": None,
                "height": None,
                "quarantine_path": None,
                "public_key": None,
                "updated_at": now,
                "reason": str(r.finding),
            }
            for r in rejected
        ]
        if findings_text or not accepted:
            state = "rejected"
            if findings_text:
                reason = "; ".join(findings_text)
            elif rejected:
                reason = "no image passed validation"
            else:
                reason = "empty: the dataset holds no images"
        else:
            state, reason = "quarantined", None
        audit = [
            {
                "actor": actor,
                "action": "validated",
                "project": project["name"],
                "batch": dataset["batch"],
                "from_state": "retrieved",
                "to_state": "validated",
                "detail": f"{len(accepted)} images accepted, {len(rejected)} rejected"
                + (f"; {reason}" if reason else ""),
            }
        ]
        audit += [
            {
                "actor": actor,
                "action": "rejected",
                "project": project["name"],
                "batch": dataset["batch"],
                "entry": r.entry,
                "to_state": "rejected",
                "detail": str(r.finding),
            }
            for r in rejected
        ]
        audit.append(
            {
                "actor": actor,
                "action": state,
                "project": project["name"],
                "batch": dataset["batch"],
                "from_state": "validated",
                "to_state": state,
                "detail": reason,
            }
        )
        with self.engine.begin() as connection:
            # The claim is checked first: a worker whose lease ran out and
            # was taken over writes nothing (the transaction rolls back).
            self._release(
                connection,
                dataset["id"],
                state=state,
                reason=reason,
                n_images=len(image_rows),
                n_rejected=len(rejected) if state == "quarantined" else len(image_rows),
            )
            # A crashed validation may have recorded nothing; never both.
            old_ids = sa.select(IMAGES.c.id).where(IMAGES.c.dataset_id == dataset["id"])
            connection.execute(IMAGE_INDEX_ROWS.delete().where(IMAGE_INDEX_ROWS.c.image_id.in_(old_ids)))
            connection.execute(IMAGE_FRAMES.delete().where(IMAGE_FRAMES.c.image_id.in_(old_ids)))
            connection.execute(IMAGES.delete().where(IMAGES.c.dataset_id == dataset["id"]))
            if image_rows and state == "quarantined":
                connection.execute(IMAGES.insert(), image_rows)
                ids = dict(
                    connection.execute(
                        sa.select(IMAGES.c.entry, IMAGES.c.id).where(IMAGES.c.dataset_id == dataset["id"])
                    ).all()
                )
                connection.execute(
                    IMAGE_INDEX_ROWS.insert(),
                    [
                        {"image_id": ids[a.entry], "index_row": json.dumps(dict(a.index_row), sort_keys=True)}
                        for a in accepted
                    ],
                )
                frame_rows = [
                    {
                        "image_id": ids[a.entry],
                        "position": position,
                        "band": frame.band,
                        "entry": frame.entry,
                        "sha256": frame.sha256,
                        "size": frame.size,
                        "quarantine_path": frame.path,
                        "public_key": PublicLocation.key(
                            project["name"], dataset["batch"], self._public_frame_name(project, a, frame)
                        ),
                    }
                    for a in accepted
                    for position, frame in enumerate(a.frames, start=1)
                ]
                if frame_rows:
                    connection.execute(IMAGE_FRAMES.insert(), frame_rows)
            elif image_rows:
                connection.execute(
                    IMAGES.insert(),
                    [
                        dict(
                            r,
                            state="rejected",
                            quarantine_path=None,
                            reason=r["reason"] if r["state"] == "rejected" else reason,
                        )
                        for r in image_rows
                    ],
                )
            self._audit_many(connection, audit)
        fault_point("validate.recorded")
        if state == "rejected":
            shutil.rmtree(quarantine, ignore_errors=True)
            summary.rejected += 1
            summary.images_rejected += len(image_rows)
            self._notify(
                project,
                "rejected",
                dataset["batch"],
                f"Batch {dataset['batch']} rejected: {reason}",
                findings=findings_text[:20],
            )
        else:
            summary.quarantined += 1
            summary.images_quarantined += len(accepted)
            summary.images_rejected += len(rejected)
            self._notify(
                project,
                "quarantined",
                dataset["batch"],
                f"Batch {dataset['batch']}: {len(accepted)} images wait for EPO's approval"
                + (f", {len(rejected)} refused by validation" if rejected else "")
                + ".",
                accepted=len(accepted),
                rejected=[str(r.finding) for r in rejected[:20]],
            )

    # ------------------------------------------------------------------
    # Review, approval, rejection.

    def _dataset_by_batch(self, connection: sa.Connection, batch: str) -> dict[str, Any]:
        row = (
            connection.execute(
                sa.select(DATASETS, PROJECTS.c.name.label("project"))
                .join(PROJECTS, PROJECTS.c.id == DATASETS.c.project_id)
                .where(DATASETS.c.batch == batch)
            )
            .mappings()
            .first()
        )
        if row is None:
            raise ExportServiceError(f"No batch named {batch!r}.")
        return dict(row)

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
            One dict per batch: its record plus ``images`` (each image's
            entry, object id, state, reason, size and dimensions).
        """
        query = sa.select(DATASETS, PROJECTS.c.name.label("project")).join(
            PROJECTS, PROJECTS.c.id == DATASETS.c.project_id
        )
        if batch:
            query = query.where(DATASETS.c.batch == batch)
        else:
            query = query.where(DATASETS.c.state == "quarantined")
        if project:
            query = query.where(PROJECTS.c.name == project)
        with self._reading() as connection:
            batches = [dict(r) for r in connection.execute(query.order_by(DATASETS.c.id)).mappings()]
            for record in batches:
                record["images"] = [
                    dict(r)
                    for r in connection.execute(
                        sa.select(
                            IMAGES.c.entry,
                            IMAGES.c.object_id,
                            IMAGES.c.state,
                            IMAGES.c.reason,
                            IMAGES.c.size,
                            IMAGES.c.width,
                            IMAGES.c.height,
                            IMAGES.c.quarantine_path,
                            IMAGES.c.public_url,
                        )
                        .where(IMAGES.c.dataset_id == record["id"])
                        .order_by(IMAGES.c.entry)
                    ).mappings()
                ]
        if batch and not batches:
            raise ExportServiceError(f"No batch named {batch!r}.")
        return batches

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
        return self._decide(batch, operator, reason, entries, approve=True)

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
            reason, or images already published.
        """
        if not reason or not reason.strip():
            raise ExportServiceError("A rejection needs a reason.")
        return self._decide(batch, operator, reason, entries, approve=False)

    def _decide(
        self, batch: str, operator: str, reason: str | None, entries: Sequence[str] | None, *, approve: bool
    ) -> int:
        if not operator or not operator.strip():
            raise ExportServiceError("The operator's name is required.")
        action = "approved" if approve else "rejected"
        with self.engine.begin() as connection:
            dataset = self._dataset_by_batch(connection, batch)
            # Serialise with a publication of the same batch (PostgreSQL).
            self._lock_dataset(connection, dataset["id"])
            allowed_states = ("quarantined",) if approve else ("quarantined", "approved")
            if dataset["state"] not in allowed_states:
                raise ExportServiceError(
                    f"Batch {batch} is {dataset['state']}; only {' or '.join(allowed_states)} batches can be "
                    f"{action}."
                )
            images = {
                r["entry"]: dict(r)
                for r in connection.execute(
                    sa.select(IMAGES).where(IMAGES.c.dataset_id == dataset["id"])
                ).mappings()
            }
            if entries:
                unknown = sorted(set(entries) - set(images))
                if unknown:
                    raise ExportServiceError(f"Batch {batch} has no images {unknown[:5]}.")
                chosen = [images[e] for e in dict.fromkeys(entries)]
            else:
                chosen = list(images.values())
            from_states = ("quarantined",) if approve else ("quarantined", "approved")
            if not approve:
                done = [i["entry"] for i in chosen if i["state"] in ("publishing", "published")]
                if done:
                    raise ExportServiceError(
                        f"Batch {batch}: {len(done)} images are already public ({done[:3]}); they cannot be "
                        "rejected."
                    )
            targets = [i for i in chosen if i["state"] in from_states]
            if entries and not targets:
                raise ExportServiceError(f"None of those images of {batch} can be {action}.")
            new_state = "approved" if approve else "rejected"
            now = utc_now_iso()
            if targets:
                ids = [i["id"] for i in targets]
                for start in range(0, len(ids), 500):
                    connection.execute(
                        IMAGES.update()
                        .where(IMAGES.c.id.in_(ids[start : start + 500]), IMAGES.c.state.in_(from_states))
                        .values(
                            state=new_state,
                            updated_at=now,
                            reason=None if approve else f"rejected by {operator}: {reason}",
                        )
                    )
            records = [
                {
                    "actor": operator,
                    "action": action,
                    "project": dataset["project"],
                    "batch": batch,
                    "entry": i["entry"],
                    "from_state": i["state"],
                    "to_state": new_state,
                    "detail": reason,
                }
                for i in targets
            ]
            target_ids = {i["id"] for i in targets}
            after = {new_state if i["id"] in target_ids else i["state"] for i in images.values()}
            batch_state = _batch_state(after, dataset["state"])
            if batch_state != dataset["state"]:
                connection.execute(
                    DATASETS.update()
                    .where(DATASETS.c.id == dataset["id"])
                    .values(
                        state=batch_state,
                        updated_at=now,
                        reason=None if approve else f"rejected by {operator}: {reason}",
                    )
                )
                records.append(
                    {
                        "actor": operator,
                        "action": action,
                        "project": dataset["project"],
                        "batch": batch,
                        "from_state": dataset["state"],
                        "to_state": batch_state,
                        "detail": reason,
                    }
                )
            self._audit_many(connection, records)
        project = self.project(dataset["project"])
        if batch_state == "rejected":
            shutil.rmtree(
                os.path.join(self._batch_directory(project, batch), "quarantine"), ignore_errors=True
            )
        self._notify(
            project,
            action,
            batch,
            f"Batch {batch}: {len(targets)} images {action} by EPO"
            + (f" ({reason})" if reason else "")
            + ".",
            images=len(targets),
            operator=operator,
        )
        return len(targets)

    # ------------------------------------------------------------------
    # Publication.

    def publish(self, project: str | None = None, *, progress: Progress | None = None) -> PublishSummary:
        """Publish every approved image not yet public, exactly once.

        Parameters
        ----------
        project : `str`, optional
            Only this project.
        progress : `Progress`, optional
            Receives progress per image.

        Returns
        -------
        summary : `PublishSummary`
            What was done.
        """
        progress = progress or NoProgress()
        summary = PublishSummary()
        for record in self._selected_projects(project):
            summary.superseded += self._choose_one_image_per_object(record)
        pending = sa.func.sum(sa.case((IMAGES.c.state.in_(("approved", "publishing")), 1), else_=0))
        # Datasets with images to publish, and approved datasets whose last
        # images were published by a run that stopped before closing them.
        query = (
            sa.select(DATASETS.c.id, pending)
            .join(IMAGES, IMAGES.c.dataset_id == DATASETS.c.id)
            .join(PROJECTS, PROJECTS.c.id == DATASETS.c.project_id)
            .group_by(DATASETS.c.id, DATASETS.c.state)
            .having(sa.or_(pending > 0, DATASETS.c.state == "approved"))
            .order_by(DATASETS.c.id)
        )
        if project:
            self.project(project)
            query = query.where(PROJECTS.c.name == project)
        with self._reading() as connection:
            work = [(dataset_id, int(n or 0)) for dataset_id, n in connection.execute(query).all()]
        names = {record["id"]: record["name"] for record in self.projects()}
        progress.start("publishing", sum(n for _, n in work))
        try:
            for dataset_id, _ in work:
                dataset = self._claim(dataset_id, ("quarantined", "approved", "published"))
                if dataset is None:
                    continue
                fault_point("publish.claimed")
                try:
                    self._publish_dataset(dataset, summary, progress)
                except _ClaimLostError as err:
                    _LOG.warning("%s", err)
                except Exception as err:
                    self._give_up(dataset_id)
                    self._record_error(
                        summary.errors,
                        f"publish@{self.worker}",
                        names.get(dataset["project_id"], str(dataset["project_id"])),
                        dataset["batch"],
                        err,
                    )
        finally:
            progress.finish()
        return summary

    def _choose_one_image_per_object(self, project: Mapping[str, Any]) -> int:
        """Keep one picture per catalog object of a project (patches
        overlap, so an object can have several).

        An object that already has a public (or ``publishing``) picture
        keeps it: public URLs are stable.  Otherwise the approved picture
        with the best coverage, then the largest distance from its patch's
        edge, then the smallest (batch, entry) is kept.  The others become
        ``superseded``, with the kept picture as the reason.  A superseded
        picture whose object lost every candidate (the operator rejected
        it) is approved again first, so the choice heals itself.

        Returns
        -------
        superseded : `int`
            Pictures newly superseded.
        """
        actor = f"publish@{self.worker}"
        rank_columns = (
            IMAGES.c.id,
            IMAGES.c.object_id,
            IMAGES.c.state,
            IMAGES.c.entry,
            DATASETS.c.batch,
            IMAGE_INDEX_ROWS.c.index_row,
        )
        with self.engine.begin() as connection:
            # One chooser per project at a time (PostgreSQL row lock; a
            # SQLite writer holds the whole database).
            connection.execute(
                sa.select(PROJECTS.c.id).where(PROJECTS.c.id == project["id"]).with_for_update()
            ).all()
            rows = connection.execute(
                sa.select(*rank_columns)
                .join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
                .outerjoin(IMAGE_INDEX_ROWS, IMAGE_INDEX_ROWS.c.image_id == IMAGES.c.id)
                .where(
                    DATASETS.c.project_id == project["id"],
                    IMAGES.c.state.in_(("approved", "publishing", "published", "superseded")),
                )
            ).all()
            by_object: dict[str, list[Any]] = {}
            for row in rows:
                by_object.setdefault(row.object_id, []).append(row)
            revive, supersede, records = [], [], []
            for object_id, candidates in by_object.items():
                live = [c for c in candidates if c.state != "superseded"]
                if not live:
                    # Its chosen picture was rejected: choose again.
                    revive.extend(c.id for c in candidates)
                    live = candidates
                public = [c for c in live if c.state in ("publishing", "published")]
                chosen = public[0] if public else min(live, key=_picture_rank)
                for c in live:
                    if c.id != chosen.id and c.state in ("approved", "superseded"):
                        supersede.append((c, chosen))
            now = utc_now_iso()
            if revive:
                connection.execute(
                    IMAGES.update().where(IMAGES.c.id.in_(revive)).values(state="approved", updated_at=now)
                )
            for image, chosen in supersede:
                reason = f"superseded: {chosen.batch}/{chosen.entry} is this object's picture"
                connection.execute(
                    IMAGES.update()
                    .where(IMAGES.c.id == image.id)
                    .values(state="superseded", reason=reason, updated_at=now)
                )
                if image.state != "superseded" or image.id in revive:
                    records.append(
                        {
                            "actor": actor,
                            "action": "superseded",
                            "project": project["name"],
                            "batch": image.batch,
                            "entry": image.entry,
                            "from_state": "approved",
                            "to_state": "superseded",
                            "detail": reason,
                        }
                    )
            self._audit_many(connection, records)
        return len(records)

    def _lock_dataset(self, connection: sa.Connection, dataset_id: int) -> dict[str, Any]:
        """Read a dataset row and lock it for this transaction (PostgreSQL
        ``FOR UPDATE``; a SQLite writer already holds the database), so
        that approval, rejection and publication of one batch serialise.
        """
        return dict(
            connection.execute(sa.select(DATASETS).where(DATASETS.c.id == dataset_id).with_for_update())
            .mappings()
            .one()
        )

    @staticmethod
    def _staged_bytes(record: Mapping[str, Any]) -> tuple[bytes | None, str]:
        """Read a quarantined file and check it against its validated
        digest; return its bytes, or `None` and why not.
        """
        try:
            with open(record["quarantine_path"], "rb") as stream:
                data = stream.read()
        except OSError as err:
            return None, f"staging copy of {record['entry']} unreadable ({err.strerror})"
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            return None, f"staging copy of {record['entry']} changed since validation"
        return data, ""

    def _publish_frames(self, frames: Sequence[Mapping[str, Any]]) -> str | None:
        """Write an image's band frames to the public location (those not
        already there); return why not if one cannot be (then none of them
        stays public).
        """
        for frame in frames:
            if self.public.has(frame["public_key"], frame["sha256"]):
                continue
            data, problem = self._staged_bytes(frame)
            if data is None:
                for other in frames:
                    self.public.remove(other["public_key"])
                return problem
            self.public.write(frame["public_key"], data)
        return None

    def _publish_dataset(self, dataset: dict[str, Any], summary: PublishSummary, progress: Progress) -> None:
        actor = f"publish@{self.worker}"
        with self._reading() as connection:
            project = self._project_dict(
                connection.execute(sa.select(PROJECTS).where(PROJECTS.c.id == dataset["project_id"]))
                .mappings()
                .one()
            )
        self.public.remove_partials(project["name"], dataset["batch"])
        with self.engine.begin() as connection:
            self._lock_dataset(connection, dataset["id"])
            self._update_claimed(
                connection, dataset["id"], claim_expires=time.time() + self.config.claim_seconds
            )
            # Only what is approved now becomes `publishing` (an operator may
            # have rejected images since the claim); operators cannot reject
            # `publishing` images, so this list is final.
            connection.execute(
                IMAGES.update()
                .where(IMAGES.c.dataset_id == dataset["id"], IMAGES.c.state == "approved")
                .values(state="publishing", updated_at=utc_now_iso())
            )
            images = [
                dict(r)
                for r in connection.execute(
                    sa.select(IMAGES)
                    .where(IMAGES.c.dataset_id == dataset["id"], IMAGES.c.state == "publishing")
                    .order_by(IMAGES.c.entry)
                ).mappings()
            ]
            frames: dict[int, list[dict[str, Any]]] = {}
            for frame in connection.execute(
                sa.select(IMAGE_FRAMES)
                .join(IMAGES, IMAGES.c.id == IMAGE_FRAMES.c.image_id)
                .where(IMAGES.c.dataset_id == dataset["id"], IMAGES.c.state == "publishing")
                .order_by(IMAGE_FRAMES.c.image_id, IMAGE_FRAMES.c.position)
            ).mappings():
                frames.setdefault(frame["image_id"], []).append(dict(frame))
        fault_point("publish.marked")
        published_urls: list[str] = []
        for start in range(0, len(images), _PUBLISH_CHUNK):
            chunk = images[start : start + _PUBLISH_CHUNK]
            self._renew(dataset["id"])
            done, refused, records = [], [], []
            for image in chunk:
                key = image["public_key"]
                # Band frames first: a published image always has its
                # frames public, so a subject never shows a missing frame.
                problem = self._publish_frames(frames.get(image["id"], ()))
                if problem is not None:
                    self.public.remove(key)
                    refused.append((image, problem))
                    continue
                if self.public.has(key, image["sha256"]):
                    # Written by a run that stopped before recording it.
                    done.append((image, self.public.url(key), False))
                    continue
                data, problem = self._staged_bytes(image)
                if data is None:
                    # A stale public copy of other bytes must not stay.
                    self.public.remove(key)
                    for frame in frames.get(image["id"], ()):
                        self.public.remove(frame["public_key"])
                    refused.append((image, problem))
                    continue
                url = self.public.write(key, data)
                fault_point("publish.written")
                done.append((image, url, True))
            now = utc_now_iso()
            with self.engine.begin() as connection:
                self._update_claimed(
                    connection, dataset["id"], claim_expires=time.time() + self.config.claim_seconds
                )
                for image, url, written in done:
                    result = connection.execute(
                        IMAGES.update()
                        .where(IMAGES.c.id == image["id"], IMAGES.c.state == "publishing")
                        .values(state="published", public_url=url, published_at=now, updated_at=now)
                    )
                    if result.rowcount != 1:
                        continue
                    records.append(
                        {
                            "actor": actor,
                            "action": "published",
                            "project": project["name"],
                            "batch": dataset["batch"],
                            "entry": image["entry"],
                            "from_state": "publishing",
                            "to_state": "published",
                            "detail": url,
                        }
                    )
                    published_urls.append(url)
                    if written:
                        summary.published += 1
                    else:
                        summary.already_present += 1
                for image, problem in refused:
                    result = connection.execute(
                        IMAGES.update()
                        .where(IMAGES.c.id == image["id"], IMAGES.c.state == "publishing")
                        .values(state="rejected", reason=f"publish.integrity: {problem}", updated_at=now)
                    )
                    if result.rowcount != 1:
                        continue
                    records.append(
                        {
                            "actor": actor,
                            "action": "rejected",
                            "project": project["name"],
                            "batch": dataset["batch"],
                            "entry": image["entry"],
                            "from_state": "publishing",
                            "to_state": "rejected",
                            "detail": f"publish.integrity: {problem}",
                        }
                    )
                    summary.rejected += 1
                self._audit_many(connection, records)
            fault_point("publish.recorded")
            progress.advance(len(chunk))
        with self.engine.begin() as connection:
            current = self._lock_dataset(connection, dataset["id"])["state"]
            states = set(
                connection.execute(
                    sa.select(IMAGES.c.state).where(IMAGES.c.dataset_id == dataset["id"])
                ).scalars()
            )
            final = _batch_state(states, current)
            self._release(connection, dataset["id"], state=final)
            if final != current:
                self._audit(
                    connection,
                    actor,
                    final,
                    project=project["name"],
                    batch=dataset["batch"],
                    from_state=current,
                    to_state=final,
                    detail=f"{len(published_urls)} images published by this run",
                )
        summary.urls.extend(published_urls)
        if final == "published" and current != "published":
            summary.batches += 1
        if published_urls:
            self._notify(
                project,
                "published",
                dataset["batch"],
                f"Batch {dataset['batch']}: {len(published_urls)} images are public under "
                f"{self.public.url(project['name'] + '/' + dataset['batch'] + '/')}.",
                images=len(published_urls),
                urls=published_urls[:10],
            )

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
        result: dict[str, Any] = {"public_url": self.public.url_prefix, "projects": {}}
        with self._reading() as connection:
            for record in self._selected_projects(project):
                datasets = dict(
                    connection.execute(
                        sa.select(DATASETS.c.state, sa.func.count())
                        .where(DATASETS.c.project_id == record["id"])
                        .group_by(DATASETS.c.state)
                    ).all()
                )
                images = dict(
                    connection.execute(
                        sa.select(IMAGES.c.state, sa.func.count())
                        .join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
                        .where(DATASETS.c.project_id == record["id"])
                        .group_by(IMAGES.c.state)
                    ).all()
                )
                result["projects"][record["name"]] = {
                    "owner": record["owner"],
                    "zooniverse_project_id": record["zooniverse_project_id"],
                    "collections": record["collections"],
                    "datasets": datasets,
                    "images": images,
                }
        return result

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
        record = self.project(project)
        rows = []
        with self._reading() as connection:
            datasets = (
                connection.execute(
                    sa.select(DATASETS).where(DATASETS.c.project_id == record["id"]).order_by(DATASETS.c.id)
                )
                .mappings()
                .all()
            )
            for dataset in datasets:
                images = (
                    connection.execute(
                        sa.select(IMAGES).where(IMAGES.c.dataset_id == dataset["id"]).order_by(IMAGES.c.entry)
                    )
                    .mappings()
                    .all()
                )
                base = {
                    "batch": dataset["batch"],
                    "dataset_type": dataset["dataset_type"],
                    "data_id": dataset["data_id"],
                }
                if not images:
                    rows.append(
                        dict(
                            base,
                            entry="",
                            object_id="",
                            state=dataset["state"],
                            reason=dataset["reason"] or "",
                            url="",
                        )
                    )
                for image in images:
                    rows.append(
                        dict(
                            base,
                            entry=image["entry"],
                            object_id=image["object_id"],
                            state=image["state"],
                            reason=image["reason"] or "",
                            url=image["public_url"] or "",
                        )
                    )
        return rows

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
        from ..pipeline.accounting import account_targets

        record = self.project(project)
        if not self.policy.allows_collection(collection, record["owner"]):
            raise ExportServiceError(f"Collection {collection!r} is not in {record['owner']}'s namespace.")
        try:
            accounting = account_targets(self._butler(record["repo"]), collection)
        except LookupError as err:
            raise ExportServiceError(str(err)) from None
        states: dict[str, dict[str, Any]] = {}
        query = (
            sa.select(IMAGES.c.object_id, IMAGES.c.state, IMAGES.c.reason, IMAGES.c.public_url)
            .join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
            .where(DATASETS.c.project_id == record["id"])
        )
        order = {
            "published": 0,
            "publishing": 1,
            "approved": 2,
            "quarantined": 3,
            "superseded": 4,
            "rejected": 5,
        }
        with self._reading() as connection:
            for object_id, state, reason, url in connection.execute(query):
                best = states.get(object_id)
                if best is None or order[state] < order[best["state"]]:
                    states[object_id] = {"state": state, "reason": reason, "url": url}
        epo_reasons = {
            "publishing": "being published",
            "approved": "approved, not yet published",
            "quarantined": "waiting for EPO's approval",
        }
        rows = []
        for line in accounting:
            object_id = str(line["object_id"])
            row = {"row_index": int(line["row_index"]), "object_id": object_id, "url": ""}
            if line["status"] == "rejected":
                row.update(
                    outcome="not_published", stage="sharding", reason=f"{line['reason']}: {line['detail']}"
                )
            elif line["status"] != "pictured":
                row.update(
                    outcome="not_published",
                    stage="pipeline",
                    reason=f"{line['status']}: {line['reason']} {line['detail']}".strip(),
                )
            elif object_id not in states:
                row.update(outcome="not_published", stage="epo", reason="not retrieved by EPO yet")
            else:
                state = states[object_id]
                if state["state"] == "published":
                    row.update(outcome="published", stage="epo", reason="", url=state["url"])
                else:
                    reason = epo_reasons.get(state["state"]) or state["reason"] or state["state"]
                    row.update(outcome="not_published", stage="epo", reason=reason)
            rows.append(row)
        if len(rows) != accounting.meta.get("n_rows", len(rows)):
            raise ExportServiceError(
                f"The accounting of {collection} has {len(rows)} lines for "
                f"{accounting.meta['n_rows']} catalog rows."
            )
        return rows

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
        from .manifest import ManifestError, subject_row

        record = self.project(project)
        if images is None:
            images = self.published_images(project)
        try:
            return [
                subject_row(
                    project=record["name"],
                    batch=image["batch"],
                    entry=image["entry"],
                    object_id=image["object_id"],
                    url=image["url"],
                    index_row=image["index_row"],
                    metadata_policy=record["metadata_policy"],
                    extra_frames=image.get("frames", ()),
                )
                for image in images
            ]
        except ManifestError as err:
            raise ExportServiceError(f"Cannot make the subjects of {project}: {err}") from None

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
        from .manifest import ManifestError, validate_manifest, write_manifests

        record = self.project(project)
        # Single pictures first, then multi-frame subjects (a part holds
        # one frame count).
        rows = sorted(self.subject_rows(project), key=lambda row: len(row.locations))
        try:
            paths = write_manifests(rows, directory)
        except ManifestError as err:
            raise ExportServiceError(f"Cannot write the manifest of {project}: {err}") from None
        for path in paths:
            findings = validate_manifest(
                path, url_prefix=self.public.url_prefix, metadata_policy=record["metadata_policy"]
            )
            if findings:
                raise ExportServiceError(
                    f"{path} fails validation: " + "; ".join(f.message for f in findings[:5])
                )
        return paths

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
        record = self.project(project)
        query = (
            sa.select(
                IMAGES.c.id,
                DATASETS.c.batch,
                IMAGES.c.entry,
                IMAGES.c.object_id,
                IMAGES.c.public_url,
                IMAGES.c.sha256,
                IMAGE_INDEX_ROWS.c.index_row,
            )
            .join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
            .outerjoin(IMAGE_INDEX_ROWS, IMAGE_INDEX_ROWS.c.image_id == IMAGES.c.id)
            .where(DATASETS.c.project_id == record["id"], IMAGES.c.state == "published")
            .order_by(DATASETS.c.batch, IMAGES.c.entry)
        )
        frames_query = (
            sa.select(IMAGE_FRAMES.c.image_id, IMAGE_FRAMES.c.public_key)
            .join(IMAGES, IMAGES.c.id == IMAGE_FRAMES.c.image_id)
            .join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
            .where(DATASETS.c.project_id == record["id"], IMAGES.c.state == "published")
            .order_by(IMAGE_FRAMES.c.image_id, IMAGE_FRAMES.c.position)
        )
        with self._reading() as connection:
            frames: dict[int, list[str]] = {}
            for image_id, key in connection.execute(frames_query):
                frames.setdefault(image_id, []).append(self.public.url(key))
            return [
                {
                    "batch": batch,
                    "entry": entry,
                    "object_id": object_id,
                    "url": url,
                    "sha256": sha256,
                    "index_row": json.loads(index_row) if index_row else {},
                    "frames": frames.get(image_id, []),
                }
                for image_id, batch, entry, object_id, url, sha256, index_row in connection.execute(query)
            ]

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
        query = sa.select(AUDIT_LOG).order_by(AUDIT_LOG.c.id)
        if batch:
            query = query.where(AUDIT_LOG.c.batch == batch)
        if project:
            query = query.where(AUDIT_LOG.c.project == project)
        with self._reading() as connection:
            return [dict(r) for r in connection.execute(query).mappings()]


def _cutout_object_id(path: str, data_id: Mapping[str, Any], dataset_uuid: str) -> str:
    """Name of a single cutout: its ``object_id`` text chunk, else its
    data ID values, else the dataset UUID.
    """
    from ..formats.png import PngError, read_png_text

    try:
        with open(path, "rb") as stream:
            text = read_png_text(stream.read(1 << 22), name=os.path.basename(path), max_text_bytes=1 << 20)
    except (PngError, OSError):
        text = {}
    candidate = text.get("object_id") or "-".join(str(v) for _, v in sorted(data_id.items())) or dataset_uuid
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", candidate).lstrip("._+-")[:100]
    return safe or dataset_uuid
