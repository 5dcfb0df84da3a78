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
"""Decisions: EPO operators approve or reject quarantined batches, or some
of their images.

A decision is one transaction (serialised with a publication of the same
batch by a row lock) that moves the chosen images, derives the batch's
state from its images' (`.records.batch_state`), and appends every
transition to the audit log; the PI is told afterwards.
"""

from __future__ import annotations

__all__ = ["Decisions"]

import shutil
from collections.abc import Sequence

import sqlalchemy as sa

from ..timestamps import utc_now_iso
from .notices import ProjectNotices
from .outcomes import ExportServiceError
from .records import DatasetRecord, ImageRecord, ProjectRecord, batch_state
from .repository import StateRepository
from .staging import StagingArea
from .state import DATASETS, IMAGES

_UPDATE_CHUNK = 500


class Decisions:
    """Approves and rejects quarantined batches and images.

    Parameters
    ----------
    repository : `~.repository.StateRepository`
        The state database.
    staging : `~.staging.StagingArea`
        Where a rejected batch's quarantine directory is removed.
    notices : `~.notices.ProjectNotices`
        Tells the PI.
    """

    def __init__(self, repository: StateRepository, staging: StagingArea, notices: ProjectNotices) -> None:
        self.repository = repository
        self.store = repository.store
        self.staging = staging
        self.notices = notices

    def decide(
        self, batch: str, operator: str, reason: str | None, entries: Sequence[str] | None, *, approve: bool
    ) -> int:
        """Approve (``approve=True``) or reject a batch, or some of its images
        (all if ``entries`` is `None`), and return how many: see
        `~.service.ExportService.approve` and
        `~.service.ExportService.reject` (which requires the reason).
        """
        if not operator or not operator.strip():
            raise ExportServiceError("The operator's name is required.")
        action = "approved" if approve else "rejected"
        from_states = ("quarantined",) if approve else ("quarantined", "approved")
        new_state = "approved" if approve else "rejected"
        with self.store.writing() as connection:
            dataset = self.repository.dataset_by_batch(connection, batch)
            # Serialise with a publication of the same batch (PostgreSQL).
            self.repository.lock_dataset(connection, dataset.id)
            if dataset.state not in from_states:
                raise ExportServiceError(
                    f"Batch {batch} is {dataset.state}; only {' or '.join(from_states)} batches can be "
                    f"{action}."
                )
            images = {i.entry: i for i in self.repository.images(connection, dataset.id, by_entry=False)}
            targets = self._targets(batch, images, entries, from_states, action, approve=approve)
            project = self.repository.project_by_id(dataset.project_id, connection)
            now = utc_now_iso()
            records = self._move_images(
                connection, targets, new_state, now, operator, reason, approve=approve
            )
            target_ids = {i.id for i in targets}
            after = {new_state if i.id in target_ids else i.state for i in images.values()}
            new_batch_state = batch_state(after, dataset.state)
            if new_batch_state != dataset.state:
                reason_text = None if approve else f"rejected by {operator}: {reason}"
                connection.execute(
                    DATASETS.update()
                    .where(DATASETS.c.id == dataset.id)
                    .values(state=new_batch_state, updated_at=now, reason=reason_text)
                )
                records.append(
                    {
                        "from_state": dataset.state,
                        "to_state": new_batch_state,
                        "entry": None,
                        "detail": reason,
                    }
                )
            self.store.audit_many(
                connection,
                [
                    dict(record, actor=operator, action=action, project=project.name, batch=batch)
                    for record in records
                ],
            )
        self._tell(project, dataset, new_batch_state, len(targets), operator, reason, action)
        return len(targets)

    @staticmethod
    def _targets(
        batch: str,
        images: dict[str, ImageRecord],
        entries: Sequence[str] | None,
        from_states: tuple[str, ...],
        action: str,
        *,
        approve: bool,
    ) -> list[ImageRecord]:
        """Return the images the decision moves."""
        if entries:
            unknown = sorted(set(entries) - set(images))
            if unknown:
                raise ExportServiceError(f"Batch {batch} has no images {unknown[:5]}.")
            chosen = [images[e] for e in dict.fromkeys(entries)]
        else:
            chosen = list(images.values())
        if not approve:
            done = [i.entry for i in chosen if i.state in ("publishing", "published")]
            if done:
                raise ExportServiceError(
                    f"Batch {batch}: {len(done)} images are already public ({done[:3]}); they cannot be "
                    "rejected."
                )
        targets = [i for i in chosen if i.state in from_states]
        if entries and not targets:
            raise ExportServiceError(f"None of those images of {batch} can be {action}.")
        if not approve and not targets and chosen:
            # Its images are all superseded (or rejected): rejecting it
            # would only record it as published.
            states = sorted({i.state for i in chosen})
            raise ExportServiceError(
                f"Batch {batch} has no image left to reject (its images are {', '.join(states)}: their "
                "objects are public through other batches); it counts as published and cannot be rejected."
            )
        return targets

    @staticmethod
    def _move_images(
        connection: sa.Connection,
        targets: list[ImageRecord],
        new_state: str,
        now: str,
        operator: str,
        reason: str | None,
        *,
        approve: bool,
    ) -> list[dict[str, str | None]]:
        """Move the target images to their new state; return the
        transitions (for the audit log).
        """
        from_states = ("quarantined",) if approve else ("quarantined", "approved")
        ids = [i.id for i in targets]
        for start in range(0, len(ids), _UPDATE_CHUNK):
            connection.execute(
                IMAGES.update()
                .where(IMAGES.c.id.in_(ids[start : start + _UPDATE_CHUNK]), IMAGES.c.state.in_(from_states))
                .values(
                    state=new_state,
                    updated_at=now,
                    reason=None if approve else f"rejected by {operator}: {reason}",
                )
            )
        return [
            {"entry": i.entry, "from_state": i.state, "to_state": new_state, "detail": reason}
            for i in targets
        ]

    def _tell(
        self,
        project: ProjectRecord,
        dataset: DatasetRecord,
        new_batch_state: str,
        n_images: int,
        operator: str,
        reason: str | None,
        action: str,
    ) -> None:
        """Drop a rejected batch's quarantine and tell the PI."""
        batch = dataset.batch
        if new_batch_state == "rejected":
            shutil.rmtree(self.staging.quarantine_directory(project.name, batch), ignore_errors=True)
        self.notices.send(
            project,
            action,
            batch,
            f"Batch {batch}: {n_images} images {action} by EPO" + (f" ({reason})" if reason else "") + ".",
            images=n_images,
            operator=operator,
        )
