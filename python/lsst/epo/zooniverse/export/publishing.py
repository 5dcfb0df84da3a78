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
"""Publishing: approved images become public, exactly once, one picture
per catalog object.

An image is marked ``publishing`` before its bytes (and its band frames')
are written to the public location and ``published`` after; a rerun finds
a ``publishing`` image's public copy, checks its digest, and either
records it or writes it again.  A staged copy that changed since
validation is refused (``publish.integrity``) and nothing of it stays
public.  Before publishing, `Publisher.choose_one_image_per_object` keeps
one picture of each object (patches overlap); a picture of a rerun
replaces the older public picture of its object (`.replacements`).
"""

from __future__ import annotations

__all__ = ["Publisher", "picture_rank"]

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from ..timestamps import utc_now_iso
from .claims import ClaimLostError, DatasetClaims
from .faults import fault_point
from .notices import ProjectNotices
from .outcomes import PublishSummary
from .progress import Progress
from .publication import PublicLocation
from .records import DatasetRecord, FrameRecord, ImageRecord, PictureCandidate, ProjectRecord, batch_state
from .replacements import record_replacements
from .repository import StateRepository
from .staging import read_staged_file
from .state import DATASETS, IMAGES, PROJECTS

_LOG = logging.getLogger(__name__)

_PUBLISH_CHUNK = 200


def picture_rank(candidate: PictureCandidate) -> tuple:
    """Return the sort key of candidate pictures of one object, best first.

    Parameters
    ----------
    candidate : `~.records.PictureCandidate`
        A candidate.

    Returns
    -------
    key : `tuple`
        Best coverage first, then the largest distance from the patch's
        edge, then the smallest (batch, entry).
    """
    index = candidate.index_values()

    def number(key: str) -> float:
        try:
            value = float(index.get(key, "nan"))
        except ValueError:
            return -math.inf
        return -math.inf if math.isnan(value) else value

    return (-number("coverage"), -number("edge_distance"), candidate.batch, candidate.entry)


class Publisher:
    """Publishes approved images.

    Parameters
    ----------
    repository : `~.repository.StateRepository`
        The state database.
    claims : `~.claims.DatasetClaims`
        This worker's claims (a batch is published under a claim).
    public : `~.publication.PublicLocation`
        Where public images go.
    notices : `~.notices.ProjectNotices`
        Tells the PI.
    """

    def __init__(
        self,
        repository: StateRepository,
        claims: DatasetClaims,
        public: PublicLocation,
        notices: ProjectNotices,
    ) -> None:
        self.repository = repository
        self.store = repository.store
        self.claims = claims
        self.public = public
        self.notices = notices
        self.actor = f"publish@{claims.worker}"

    def publish(
        self, project: str | None, progress: Progress, stop: Callable[[], bool] | None = None
    ) -> PublishSummary:
        """Publish every approved image not yet public, exactly once.

        Parameters
        ----------
        project : `str` or `None`
            Only this project (all if `None`).
        progress : `~.progress.Progress`
            Receives progress per image.
        stop : `~collections.abc.Callable`, optional
            Asked before each batch; `True` ends the run (a worker asked
            to stop).

        Returns
        -------
        summary : `~.outcomes.PublishSummary`
            What was done.

        Raises
        ------
        ExportServiceError
            Raised if there is no such project.
        """
        summary = PublishSummary()
        for record in self.repository.selected_projects(project):
            summary.superseded += self.choose_one_image_per_object(record)
        work = self._work(project)
        names = {record.id: record.name for record in self.repository.projects()}
        progress.start("publishing", sum(n for _, n in work))
        try:
            for dataset_id, _ in work:
                if stop is not None and stop():
                    break
                dataset = self.claims.claim(dataset_id, ("quarantined", "approved", "published"))
                if dataset is None:
                    continue
                fault_point("publish.claimed")
                try:
                    self.publish_dataset(dataset, summary, progress)
                except ClaimLostError as err:
                    _LOG.warning("%s", err)
                except Exception as err:
                    self.claims.give_up(dataset_id)
                    name = names.get(dataset.project_id, str(dataset.project_id))
                    summary.errors.append(self.store.record_failure(self.actor, name, dataset.batch, err))
        finally:
            progress.finish()
        return summary

    def _work(self, project: str | None) -> list[tuple[int, int]]:
        """Return the datasets with images to publish, and approved
        datasets whose last images were published by a run that stopped
        before closing them, with their numbers of images to publish.
        """
        pending = sa.func.sum(sa.case((IMAGES.c.state.in_(("approved", "publishing")), 1), else_=0))
        query = (
            sa.select(DATASETS.c.id, pending)
            .join(IMAGES, IMAGES.c.dataset_id == DATASETS.c.id)
            .join(PROJECTS, PROJECTS.c.id == DATASETS.c.project_id)
            .group_by(DATASETS.c.id, DATASETS.c.state)
            .having(sa.or_(pending > 0, DATASETS.c.state == "approved"))
            .order_by(DATASETS.c.id)
        )
        if project:
            self.repository.project(project)
            query = query.where(PROJECTS.c.name == project)
        with self.store.reading() as connection:
            return [(dataset_id, int(n or 0)) for dataset_id, n in connection.execute(query).all()]

    def choose_one_image_per_object(self, project: ProjectRecord) -> int:
        """Keep one picture per catalog object of a project (patches
        overlap, so an object can have several).

        Pictures of a patch that a later dataset of the same dataset type
        and data ID (a rerun) also pictures are outdated and never chosen.
        An object that already has a public (or ``publishing``) picture
        that is not outdated keeps it: public URLs are stable.  Otherwise
        the approved picture ranked first by `picture_rank` is kept; once
        it is published it replaces the outdated public picture
        (`.replacements.record_replacements`).  The others become
        ``superseded``, with the kept picture as the reason.  A superseded
        picture whose object lost every candidate (the operator rejected
        it) is approved again first, so the choice heals itself.

        Parameters
        ----------
        project : `~.records.ProjectRecord`
            The project.

        Returns
        -------
        superseded : `int`
            Pictures newly superseded.
        """
        with self.store.writing() as connection:
            # One chooser per project at a time.
            self.repository.lock_project(connection, project.id)
            by_object: dict[str, list[PictureCandidate]] = {}
            for candidate in self.repository.picture_candidates(connection, project.id):
                by_object.setdefault(candidate.object_id, []).append(candidate)
            revive, supersede = self._choose(by_object)
            records = self._record_choice(connection, project, revive, supersede)
        return len(records)

    @staticmethod
    def _choose(
        by_object: dict[str, list[PictureCandidate]],
    ) -> tuple[list[int], list[tuple[PictureCandidate, PictureCandidate]]]:
        """Return the pictures to approve again and the pictures to
        supersede (each with the chosen one).
        """
        revive: list[int] = []
        supersede: list[tuple[PictureCandidate, PictureCandidate]] = []
        for candidates in by_object.values():
            live = [c for c in candidates if c.state != "superseded"]
            if not live:
                # Its chosen picture was rejected: choose again.
                revive.extend(c.id for c in candidates)
                live = candidates
            # A rerun of a patch (a new stretch) outdates the patch's older
            # pictures, public ones included (.replacements).
            newest = [c for c in live if not any(c.is_outdated_by(other) for other in live)]
            public = [c for c in newest if c.state in ("publishing", "published")]
            chosen = public[0] if public else min(newest, key=picture_rank)
            for c in live:
                if c.id != chosen.id and c.state in ("approved", "superseded"):
                    supersede.append((c, chosen))
        return revive, supersede

    def _record_choice(
        self,
        connection: sa.Connection,
        project: ProjectRecord,
        revive: list[int],
        supersede: list[tuple[PictureCandidate, PictureCandidate]],
    ) -> list[dict[str, Any]]:
        """Write the choice and audit the newly superseded pictures;
        return the audit records.
        """
        now = utc_now_iso()
        records = []
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
                        "actor": self.actor,
                        "action": "superseded",
                        "project": project.name,
                        "batch": image.batch,
                        "entry": image.entry,
                        "from_state": "approved",
                        "to_state": "superseded",
                        "detail": reason,
                    }
                )
        self.store.audit_many(connection, records)
        return records

    def _publish_frames(self, frames: Sequence[FrameRecord]) -> str | None:
        """Write an image's band frames to the public location (those not
        already there); return why not if one cannot be (then none of them
        stays public).
        """
        for frame in frames:
            if self.public.has(frame.public_key, frame.sha256):
                continue
            data, problem = read_staged_file(frame)
            if data is None:
                for other in frames:
                    self.public.remove(other.public_key)
                return problem
            self.public.write(frame.public_key, data)
        return None

    def _mark_publishing(
        self, dataset: DatasetRecord
    ) -> tuple[list[ImageRecord], dict[int, list[FrameRecord]]]:
        """Mark the dataset's approved images ``publishing``; return them
        and their band frames.
        """
        with self.store.writing() as connection:
            self.repository.lock_dataset(connection, dataset.id)
            self.claims.extend(connection, dataset.id)
            # Only what is approved now becomes `publishing` (an operator may
            # have rejected images since the claim); operators cannot reject
            # `publishing` images, so this list is final.
            connection.execute(
                IMAGES.update()
                .where(IMAGES.c.dataset_id == dataset.id, IMAGES.c.state == "approved")
                .values(state="publishing", updated_at=utc_now_iso())
            )
            images = self.repository.images(connection, dataset.id, ("publishing",))
            frames = self.repository.frames(connection, dataset.id, "publishing")
        return images, frames

    def _write_images(
        self, images: Sequence[ImageRecord], frames: dict[int, list[FrameRecord]]
    ) -> tuple[list[tuple[ImageRecord, str, bool]], list[tuple[ImageRecord, str]]]:
        """Write images (and their frames) to the public location; return
        those public (with their URL and whether this run wrote them) and
        those refused (with why).
        """
        done, refused = [], []
        for image in images:
            key = image.public_key
            # Band frames first: a published image always has its frames
            # public, so a subject never shows a missing frame.
            problem = self._publish_frames(frames.get(image.id, ()))
            if problem is not None:
                self.public.remove(key)
                refused.append((image, problem))
                continue
            if self.public.has(key, image.sha256):
                # Written by a run that stopped before recording it.
                done.append((image, self.public.url(key), False))
                continue
            data, problem = read_staged_file(image)
            if data is None:
                # A stale public copy of other bytes must not stay.
                self.public.remove(key)
                for frame in frames.get(image.id, ()):
                    self.public.remove(frame.public_key)
                refused.append((image, problem))
                continue
            url = self.public.write(key, data)
            fault_point("publish.written")
            done.append((image, url, True))
        return done, refused

    def _record_images(
        self,
        project: ProjectRecord,
        dataset: DatasetRecord,
        done: list[tuple[ImageRecord, str, bool]],
        refused: list[tuple[ImageRecord, str]],
        summary: PublishSummary,
    ) -> list[str]:
        """Record the images written as ``published`` and those refused as
        ``rejected``; return the URLs of those this call recorded.
        """
        now = utc_now_iso()
        common = {"actor": self.actor, "project": project.name, "batch": dataset.batch}
        records, urls, recorded = [], [], []
        with self.store.writing() as connection:
            self.claims.extend(connection, dataset.id)
            for image, url, written in done:
                if not self._move_publishing(
                    connection, image, state="published", public_url=url, published_at=now, updated_at=now
                ):
                    continue
                recorded.append(image)
                records.append(
                    dict(
                        common,
                        action="published",
                        entry=image.entry,
                        from_state="publishing",
                        to_state="published",
                        detail=url,
                    )
                )
                urls.append(url)
                if written:
                    summary.published += 1
                else:
                    summary.already_present += 1
            for image, problem in refused:
                reason = f"publish.integrity: {problem}"
                if not self._move_publishing(
                    connection, image, state="rejected", reason=reason, updated_at=now
                ):
                    continue
                records.append(
                    dict(
                        common,
                        action="rejected",
                        entry=image.entry,
                        from_state="publishing",
                        to_state="rejected",
                        detail=reason,
                    )
                )
                summary.rejected += 1
            replaced = record_replacements(connection, project, recorded, self.actor)
            summary.replaced += len(replaced)
            self.store.audit_many(connection, records + replaced)
        return urls

    @staticmethod
    def _move_publishing(connection: sa.Connection, image: ImageRecord, **values: Any) -> bool:
        """Update a ``publishing`` image; tell whether it still was."""
        result = connection.execute(
            IMAGES.update().where(IMAGES.c.id == image.id, IMAGES.c.state == "publishing").values(**values)
        )
        return result.rowcount == 1

    def publish_dataset(self, dataset: DatasetRecord, summary: PublishSummary, progress: Progress) -> None:
        """Publish a claimed dataset's approved images and release it.

        Parameters
        ----------
        dataset : `~.records.DatasetRecord`
            The dataset, claimed by this worker.
        summary : `~.outcomes.PublishSummary`
            Counts what was done.
        progress : `~.progress.Progress`
            Receives progress per image.

        Raises
        ------
        ClaimLostError
            Raised if another worker took the dataset over.
        """
        project = self.repository.project_by_id(dataset.project_id)
        self.public.remove_partials(project.name, dataset.batch)
        images, frames = self._mark_publishing(dataset)
        fault_point("publish.marked")
        published_urls: list[str] = []
        for start in range(0, len(images), _PUBLISH_CHUNK):
            chunk = images[start : start + _PUBLISH_CHUNK]
            self.claims.renew(dataset.id)
            done, refused = self._write_images(chunk, frames)
            published_urls += self._record_images(project, dataset, done, refused, summary)
            fault_point("publish.recorded")
            progress.advance(len(chunk))
        self._close(project, dataset, published_urls, summary)

    def _close(
        self,
        project: ProjectRecord,
        dataset: DatasetRecord,
        published_urls: list[str],
        summary: PublishSummary,
    ) -> None:
        """Derive the batch's state from its images', release it, count
        and tell the PI.
        """
        with self.store.writing() as connection:
            current = self.repository.lock_dataset(connection, dataset.id).state
            final = batch_state(self.repository.image_states(connection, dataset.id), current)
            self.claims.release(connection, dataset.id, state=final)
            if final != current:
                self.store.audit(
                    connection,
                    self.actor,
                    final,
                    project=project.name,
                    batch=dataset.batch,
                    from_state=current,
                    to_state=final,
                    detail=f"{len(published_urls)} images published by this run",
                )
        summary.urls.extend(published_urls)
        if final == "published" and current != "published":
            summary.batches += 1
        if published_urls:
            self.notices.send(
                project,
                "published",
                dataset.batch,
                f"Batch {dataset.batch}: {len(published_urls)} images are public under "
                f"{self.public.url(project.name + '/' + dataset.batch + '/')}.",
                images=len(published_urls),
                urls=published_urls[:10],
            )
