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

"""The PI API (``<prefix>/v1/...``): a PI registers projects under their
own ``u/<user>/`` namespace and sees and changes only their own projects.
Another user's project is 404, as if it did not exist.
"""

from __future__ import annotations

__all__ = ["pi_router"]

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, status

from ..export.outcomes import ExportServiceError
from ..export.state import IMAGE_STATES
from ..zooniverse.manifest_parts import MANIFEST_PREFIX
from .auth import User, pi_user
from .classifications_view import ClassificationsUnavailableError, project_classifications, table_as_json
from .context import WebContext, context_dependency
from .models import MarkRead, ProjectRegistration, WithdrawalRequest
from .schemas import (
    BatchPage,
    CatalogReport,
    ClassificationTable,
    ImagePage,
    ManifestList,
    Marked,
    NotificationList,
    Project,
    ProjectList,
    SubjectPage,
    SubjectSetList,
    Withdrawal,
    WithdrawalList,
)
from .settings import LOGGER_NAME

pi_router = APIRouter(prefix="/v1", tags=["pi"])
"""Routes of the PI API."""

Context = Annotated[WebContext, Depends(context_dependency)]
Pi = Annotated[User, Depends(pi_user)]
Offset = Annotated[int, Query(ge=0, description="First item of the page.")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]


def own_project(context: WebContext, user: User, name: str) -> dict[str, Any]:
    """Return a project of the caller's.

    Parameters
    ----------
    context : `~.context.WebContext`
        The application's context.
    user : `~.auth.User`
        The caller.
    name : `str`
        Project name.

    Returns
    -------
    project : `dict`
        The project's record.

    Raises
    ------
    fastapi.HTTPException
        404 if there is no such project or it is someone else's.
    """
    try:
        project = context.service.project(name)
    except ExportServiceError:
        project = None
    if project is None or project["owner"] != user.name:
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND, detail=f"You have no project named {name!r}."
        )
    return project


def _with_counts(context: WebContext, project: dict[str, Any]) -> dict[str, Any]:
    counts = context.service.status(project["name"])["projects"].get(project["name"], {})
    return dict(project, datasets=counts.get("datasets", {}), images=counts.get("images", {}))


@pi_router.get("/projects", response_model=ProjectList, summary="Your projects with their counts by state")
def list_projects(context: Context, user: Pi) -> dict[str, Any]:
    mine = [p for p in context.service.projects() if p["owner"] == user.name]
    return {"projects": [_with_counts(context, p) for p in mine]}


@pi_router.post(
    "/projects", response_model=Project, status_code=status.HTTP_201_CREATED, summary="Register a project"
)
def register_project(context: Context, user: Pi, body: ProjectRegistration) -> dict[str, Any]:
    prefix = f"u/{user.name}/"
    if not body.collections.startswith(prefix) or len(body.collections) == len(prefix):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"You may only register collections under {prefix}.",
        )
    try:
        project = context.service.register_project(
            body.name,
            zooniverse_project_id=body.zooniverse_project_id,
            owner=user.name,
            repo=body.repo,
            collections=body.collections,
            dataset_types=body.dataset_types,
            contact=body.contact,
            metadata_policy=body.metadata_policy,
            actor=user.name,
        )
    except ExportServiceError as err:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=str(err)) from None
    structlog.get_logger(LOGGER_NAME).info("Project registered", user=user.name, project=body.name)
    return project


@pi_router.get(
    "/projects/{name}", response_model=Project, summary="One of your projects with its counts by state"
)
def get_project(context: Context, user: Pi, name: str) -> dict[str, Any]:
    return _with_counts(context, own_project(context, user, name))


@pi_router.get(
    "/projects/{name}/batches",
    response_model=BatchPage,
    summary="The project's batches: state, image counts, stretch",
)
def project_batches(
    context: Context, user: Pi, name: str, offset: Offset = 0, limit: Limit = 100
) -> dict[str, Any]:
    own_project(context, user, name)
    return context.views.batches(project=name, state=None, offset=offset, limit=limit).to_dict()


@pi_router.get(
    "/projects/{name}/images",
    response_model=ImagePage,
    summary="Every image of the project with its state and URL",
)
def project_images(
    context: Context,
    user: Pi,
    name: str,
    state: Annotated[str | None, Query(description=f"One of {', '.join(IMAGE_STATES)}.")] = None,
    batch: str | None = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> dict[str, Any]:
    project = own_project(context, user, name)
    return context.pictures.images(project["id"], state=state, batch=batch, offset=offset, limit=limit)


@pi_router.get(
    "/projects/{name}/subjects",
    response_model=SubjectPage,
    summary="Published subjects with their public URLs",
)
def project_subjects(
    context: Context, user: Pi, name: str, offset: Offset = 0, limit: Limit = 100
) -> dict[str, Any]:
    project = own_project(context, user, name)
    return context.pictures.subjects(project["id"], offset=offset, limit=limit)


@pi_router.get(
    "/projects/{name}/subject-sets",
    response_model=SubjectSetList,
    summary="The Zooniverse subject sets EPO filled with your subjects",
)
def subject_sets(context: Context, user: Pi, name: str) -> dict[str, Any]:
    from ..zooniverse.subject_sets import SubjectSetPublisher

    own_project(context, user, name)
    sets: dict[Any, dict[str, Any]] = {}
    for row in SubjectSetPublisher(context.service).recorded_subjects(name):
        entry = sets.setdefault(
            row["subject_set_id"],
            {
                "subject_set_id": row["subject_set_id"],
                "name": row["subject_set_name"],
                "zooniverse_project_id": row["zooniverse_project_id"],
                "subjects": 0,
                "last_sent_at": None,
            },
        )
        entry["subjects"] += 1
        when = str(row["recorded_at"]) if row.get("recorded_at") is not None else None
        if when and (entry["last_sent_at"] is None or when > entry["last_sent_at"]):
            entry["last_sent_at"] = when
    return {"subject_sets": list(sets.values())}


@pi_router.get(
    "/projects/{name}/catalog-report",
    response_model=CatalogReport,
    summary="Every catalog row: its URL or why it has none",
)
def catalog_report(context: Context, user: Pi, name: str, collection: str) -> dict[str, Any]:
    own_project(context, user, name)
    try:
        rows = context.service.catalog_report(name, collection)
    except ExportServiceError as err:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=str(err)) from None
    return {"rows": rows}


@pi_router.get(
    "/projects/{name}/classifications",
    response_model=ClassificationTable,
    summary="Volunteers' answers per subject, task and answer, from Zooniverse's classification export",
)
def classifications(
    context: Context,
    user: Pi,
    name: str,
    collection: Annotated[
        str | None, Query(description="Your sharded catalog's collection, to join its columns.")
    ] = None,
) -> dict[str, Any]:
    project = own_project(context, user, name)
    prefix = f"u/{user.name}/"
    if collection is not None and (not collection.startswith(prefix) or len(collection) == len(prefix)):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN, detail=f"You may only read collections under {prefix}."
        )
    try:
        table = project_classifications(context.service, project, collection=collection)
    except ClassificationsUnavailableError as err:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=str(err)) from None
    structlog.get_logger(LOGGER_NAME).info(
        "Classifications read", user=user.name, project=name, rows=len(table)
    )
    return table_as_json(table)


@pi_router.get(
    "/projects/{name}/manifests",
    response_model=ManifestList,
    summary="Public URLs of the project's import manifests",
)
def manifests(context: Context, user: Pi, name: str) -> dict[str, Any]:
    own_project(context, user, name)
    public = context.service.public
    folder = public.root.join(f"{MANIFEST_PREFIX}/{name}/", forceDirectory=True)
    urls = []
    if folder.exists():
        for directory, _, files in folder.walk():
            for file in sorted(files):
                urls.append(public.url(directory.join(file).relative_to(public.root)))
    return {"manifests": sorted(urls)}


@pi_router.post(
    "/projects/{name}/withdrawals",
    response_model=Withdrawal,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Ask EPO to withdraw a picture, a batch or the project",
)
def request_withdrawal(context: Context, user: Pi, name: str, body: WithdrawalRequest) -> dict[str, Any]:
    own_project(context, user, name)
    if body.entry and not body.batch:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="A picture needs its batch.")
    if body.batch:
        try:
            (record,) = context.service.review(batch=body.batch)
        except ExportServiceError:
            record = None
        if record is None or record["project"] != name:
            raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"No batch {body.batch!r}.")
        if body.entry and not any(image["entry"] == body.entry for image in record["images"]):
            raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"No picture {body.entry!r}.")
    request = context.withdrawals.request(user.name, name, body.reason, batch=body.batch, entry=body.entry)
    structlog.get_logger(LOGGER_NAME).info(
        "Withdrawal requested", user=user.name, project=name, batch=body.batch, entry=body.entry
    )
    return request


@pi_router.get(
    "/projects/{name}/withdrawals",
    response_model=WithdrawalList,
    summary="Your withdrawal requests for the project",
)
def list_withdrawals(context: Context, user: Pi, name: str) -> dict[str, Any]:
    own_project(context, user, name)
    return {"withdrawals": context.withdrawals.list(username=user.name, project=name)}


@pi_router.get(
    "/notifications", response_model=NotificationList, summary="Your notification digests, newest first"
)
def notifications(
    context: Context, user: Pi, unread: bool = False, offset: Offset = 0, limit: Limit = 100
) -> dict[str, Any]:
    return {
        "notifications": context.inbox.messages(user.name, unread_only=unread, offset=offset, limit=limit)
    }


@pi_router.post(
    "/notifications/read", response_model=Marked, summary="Mark notifications as read (all without ids)"
)
def mark_read(context: Context, user: Pi, body: MarkRead) -> dict[str, Any]:
    return {"marked": context.inbox.mark_read(user.name, body.ids)}
