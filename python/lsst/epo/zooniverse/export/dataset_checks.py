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
"""Dataset checks: what becomes of a retrieved dataset once
`.validation` has examined its artifact.

A retrieved dataset's artifact (an RGB collection ZIP or a single cutout
PNG) is validated into the batch's quarantine directory; its accepted
images are recorded as ``quarantined`` (with their index rows, band
frames and future public keys), its refused images as ``rejected``, and
the dataset becomes ``quarantined`` (waiting for EPO's approval) or, when
the artifact as a whole failed or no image passed, ``rejected``.  Every
step is idempotent: a crashed check is redone from the retrieved copy.
"""

from __future__ import annotations

__all__ = ["CheckOutcome", "DatasetChecks", "cutout_object_id", "public_frame_name", "public_image_name"]

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from ..timestamps import utc_now_iso
from .claims import DatasetClaims
from .faults import fault_point
from .manifest import anonymous_subject_id
from .notices import ProjectNotices
from .outcomes import PollSummary
from .policy import DataRightsPolicy
from .publication import PublicLocation
from .records import DatasetRecord, ProjectRecord
from .staging import StagingArea, sha256_file
from .state import IMAGE_FRAMES, IMAGE_INDEX_ROWS, IMAGES
from .store import StateStore
from .validation import (
    AcceptedFrame,
    AcceptedImage,
    RejectedImage,
    ValidationResult,
    validate_png_file,
    validate_rgb_zip,
)


def public_image_name(project: ProjectRecord, image: AcceptedImage) -> str:
    """Return the public file name of an accepted image.

    Parameters
    ----------
    project : `~.records.ProjectRecord`
        Its project.
    image : `~.validation.AcceptedImage`
        The image.

    Returns
    -------
    name : `str`
        Its entry name (``<object_id>.png``), or for an anonymised project
        the opaque subject id, so that no URL shows the catalog id.
    """
    if project.full_metadata:
        return image.entry
    return anonymous_subject_id(project.name, image.object_id) + ".png"


def public_frame_name(project: ProjectRecord, image: AcceptedImage, frame: AcceptedFrame) -> str:
    """Return the public file name of a band frame.

    Parameters
    ----------
    project : `~.records.ProjectRecord`
        Its project.
    image : `~.validation.AcceptedImage`
        The image the frame belongs to.
    frame : `~.validation.AcceptedFrame`
        The frame.

    Returns
    -------
    name : `str`
        Its entry name, or for an anonymised project the image's opaque
        name with ``+<band>``.
    """
    if project.full_metadata:
        return frame.entry
    return f"{anonymous_subject_id(project.name, image.object_id)}+{frame.band}.png"


def cutout_object_id(path: str, data_id: Mapping[str, Any], dataset_uuid: str) -> str:
    """Return the name of a single cutout.

    Parameters
    ----------
    path : `str`
        The cutout PNG.
    data_id : `~collections.abc.Mapping`
        Its dataset's data ID.
    dataset_uuid : `str`
        Its dataset's UUID.

    Returns
    -------
    object_id : `str`
        Its ``object_id`` text chunk, else its data ID values, else the
        dataset UUID, made safe as a file name.
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


@dataclasses.dataclass(frozen=True)
class CheckOutcome:
    """What the checks decided about one dataset."""

    accepted: list[AcceptedImage]
    """Images to quarantine (empty if the dataset is rejected as a whole)."""
    rejected: list[RejectedImage]
    """Images refused on their own."""
    findings: list[str]
    """Problems of the artifact as a whole."""
    state: str
    """The dataset's new state: ``quarantined`` or ``rejected``."""
    reason: str | None
    """Why it was rejected."""

    @classmethod
    def from_validation(cls, result: ValidationResult | None, findings: list[str]) -> CheckOutcome:
        """Decide from a validation result.

        Parameters
        ----------
        result : `~.validation.ValidationResult` or `None`
            The result; `None` if the artifact could not be validated.
        findings : `list` [`str`]
            Problems found before validation (the staged copy changed).

        Returns
        -------
        outcome : `CheckOutcome`
            The decision.
        """
        findings = list(findings)
        if result is not None:
            findings.extend(str(f) for f in result.artifact_findings)
        accepted = list(result.accepted) if result is not None and result.ok else []
        rejected = list(result.rejected) if result is not None else []
        if findings or not accepted:
            if findings:
                reason = "; ".join(findings)
            elif rejected:
                reason = "no image passed validation"
            else:
                reason = "empty: the dataset holds no images"
            return cls(accepted, rejected, findings, "rejected", reason)
        return cls(accepted, rejected, findings, "quarantined", None)


class DatasetChecks:
    """Validates retrieved datasets into quarantine or rejection.

    Parameters
    ----------
    store : `~.store.StateStore`
        The state database.
    claims : `~.claims.DatasetClaims`
        This worker's claims (the checked dataset is held by it).
    staging : `~.staging.StagingArea`
        Where the retrieved copies and quarantine directories are.
    notices : `~.notices.ProjectNotices`
        Tells the PI the outcome.
    policy : `~.policy.DataRightsPolicy`
        The rules images must follow.
    """

    def __init__(
        self,
        store: StateStore,
        claims: DatasetClaims,
        staging: StagingArea,
        notices: ProjectNotices,
        policy: DataRightsPolicy,
    ) -> None:
        self.store = store
        self.claims = claims
        self.staging = staging
        self.notices = notices
        self.policy = policy
        self.actor = f"poll@{claims.worker}"

    def check(self, project: ProjectRecord, dataset: DatasetRecord, summary: PollSummary) -> None:
        """Validate a claimed, retrieved dataset and record the outcome
        (releasing the claim).

        Parameters
        ----------
        project : `~.records.ProjectRecord`
            Its project.
        dataset : `~.records.DatasetRecord`
            The dataset, ``retrieved`` and claimed by this worker.
        summary : `~.outcomes.PollSummary`
            Counts the outcome.

        Raises
        ------
        ClaimLostError
            Raised (nothing recorded) if another worker took it over.
        """
        quarantine = self.staging.quarantine_directory(project.name, dataset.batch)
        self.claims.renew(dataset.id)
        # Idempotent: a crashed validation's files are discarded.
        shutil.rmtree(quarantine, ignore_errors=True)
        os.makedirs(quarantine, mode=0o700)
        outcome = self._validate(project, dataset, quarantine)
        fault_point("validate.files_written")
        image_rows = self._image_rows(project, dataset, outcome)
        with self.store.writing() as connection:
            # The claim is checked first: a worker whose lease ran out and
            # was taken over writes nothing (the transaction rolls back).
            self.claims.release(
                connection,
                dataset.id,
                state=outcome.state,
                reason=outcome.reason,
                n_images=len(image_rows),
                n_rejected=len(outcome.rejected) if outcome.state == "quarantined" else len(image_rows),
            )
            self._record_images(connection, project, dataset, outcome, image_rows)
            self.store.audit_many(connection, self._audit_records(project, dataset, outcome))
        fault_point("validate.recorded")
        self._report(project, dataset, outcome, len(image_rows), summary)

    def _validate(self, project: ProjectRecord, dataset: DatasetRecord, quarantine: str) -> CheckOutcome:
        """Validate the retrieved copy into the quarantine directory."""
        artifact = dataset.artifact
        if not artifact or not os.path.exists(artifact) or sha256_file(artifact) != dataset.artifact_sha256:
            findings = ["staging.changed: the retrieved copy is missing or changed since retrieval"]
            return CheckOutcome.from_validation(None, findings)
        if artifact.endswith(".zip"):
            result = validate_rgb_zip(
                artifact, self.policy, metadata_policy=project.metadata_policy, output_dir=quarantine
            )
        else:
            object_id = cutout_object_id(artifact, dataset.data_id_values(), dataset.dataset_uuid)
            result = validate_png_file(
                artifact,
                self.policy,
                metadata_policy=project.metadata_policy,
                output_dir=quarantine,
                entry=f"{object_id}.png",
                object_id=object_id,
            )
        return CheckOutcome.from_validation(result, [])

    @staticmethod
    def _image_rows(
        project: ProjectRecord, dataset: DatasetRecord, outcome: CheckOutcome
    ) -> list[dict[str, Any]]:
        """Return the ``images`` rows of the checked images (every row has
        every column: one executemany inserts them all).
        """
        now = utc_now_iso()
        rows = [
            {
                "dataset_id": dataset.id,
                "entry": a.entry,
                "object_id": a.object_id,
                "state": "quarantined",
                "sha256": a.sha256,
                "size": a.size,
                "width": a.width,
                "height": a.height,
                "quarantine_path": a.path,
                "public_key": PublicLocation.key(project.name, dataset.batch, public_image_name(project, a)),
                "updated_at": now,
                "reason": ("stripped " + ",".join(a.stripped)) if a.stripped else None,
            }
            for a in outcome.accepted
        ]
        rows += [
            {
                "dataset_id": dataset.id,
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
            for r in outcome.rejected
        ]
        return rows

    def _audit_records(
        self, project: ProjectRecord, dataset: DatasetRecord, outcome: CheckOutcome
    ) -> list[dict[str, Any]]:
        """Return the audit records of the check: validated, each refused
        image, and the dataset's new state.
        """
        common = {"actor": self.actor, "project": project.name, "batch": dataset.batch}
        detail = f"{len(outcome.accepted)} images accepted, {len(outcome.rejected)} rejected"
        records: list[dict[str, Any]] = [
            dict(
                common,
                action="validated",
                from_state="retrieved",
                to_state="validated",
                detail=detail + (f"; {outcome.reason}" if outcome.reason else ""),
            )
        ]
        records += [
            dict(common, action="rejected", entry=r.entry, to_state="rejected", detail=str(r.finding))
            for r in outcome.rejected
        ]
        records.append(
            dict(
                common,
                action=outcome.state,
                from_state="validated",
                to_state=outcome.state,
                detail=outcome.reason,
            )
        )
        return records

    @staticmethod
    def _record_images(
        connection: sa.Connection,
        project: ProjectRecord,
        dataset: DatasetRecord,
        outcome: CheckOutcome,
        image_rows: list[dict[str, Any]],
    ) -> None:
        """Replace the dataset's images, index rows and frames."""
        # A crashed validation may have recorded nothing; never both.
        old_ids = sa.select(IMAGES.c.id).where(IMAGES.c.dataset_id == dataset.id)
        connection.execute(IMAGE_INDEX_ROWS.delete().where(IMAGE_INDEX_ROWS.c.image_id.in_(old_ids)))
        connection.execute(IMAGE_FRAMES.delete().where(IMAGE_FRAMES.c.image_id.in_(old_ids)))
        connection.execute(IMAGES.delete().where(IMAGES.c.dataset_id == dataset.id))
        if not image_rows:
            return
        if outcome.state != "quarantined":
            connection.execute(
                IMAGES.insert(),
                [
                    dict(
                        r,
                        state="rejected",
                        quarantine_path=None,
                        reason=r["reason"] if r["state"] == "rejected" else outcome.reason,
                    )
                    for r in image_rows
                ],
            )
            return
        connection.execute(IMAGES.insert(), image_rows)
        ids = dict(
            connection.execute(
                sa.select(IMAGES.c.entry, IMAGES.c.id).where(IMAGES.c.dataset_id == dataset.id)
            ).all()
        )
        connection.execute(
            IMAGE_INDEX_ROWS.insert(),
            [
                {"image_id": ids[a.entry], "index_row": json.dumps(dict(a.index_row), sort_keys=True)}
                for a in outcome.accepted
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
                    project.name, dataset.batch, public_frame_name(project, a, frame)
                ),
            }
            for a in outcome.accepted
            for position, frame in enumerate(a.frames, start=1)
        ]
        if frame_rows:
            connection.execute(IMAGE_FRAMES.insert(), frame_rows)

    def _report(
        self,
        project: ProjectRecord,
        dataset: DatasetRecord,
        outcome: CheckOutcome,
        n_images: int,
        summary: PollSummary,
    ) -> None:
        """Count the outcome, tell the PI, drop a rejected quarantine."""
        if outcome.state == "rejected":
            shutil.rmtree(self.staging.quarantine_directory(project.name, dataset.batch), ignore_errors=True)
            summary.rejected += 1
            summary.images_rejected += n_images
            self.notices.send(
                project,
                "rejected",
                dataset.batch,
                f"Batch {dataset.batch} rejected: {outcome.reason}",
                findings=outcome.findings[:20],
            )
            return
        accepted, rejected = outcome.accepted, outcome.rejected
        summary.quarantined += 1
        summary.images_quarantined += len(accepted)
        summary.images_rejected += len(rejected)
        self.notices.send(
            project,
            "quarantined",
            dataset.batch,
            f"Batch {dataset.batch}: {len(accepted)} images wait for EPO's approval"
            + (f", {len(rejected)} refused by validation" if rejected else "")
            + ".",
            accepted=len(accepted),
            rejected=[str(r.finding) for r in rejected[:20]],
        )
