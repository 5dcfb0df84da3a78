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

"""The operators' API (``<prefix>/v1/operator/...``): batches across
projects filtered by project and state with paging, their stretch settings
and the objects already public; bulk approval and rejection across
batches; publication; the PIs' withdrawal requests.  Only operators.
"""

from __future__ import annotations

__all__ = ["decide_batches", "operator_router"]

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, status

from ..export.outcomes import ExportServiceError
from .auth import User, operator_user
from .context import WebContext, context_dependency
from .models import BulkDecision, PublishRequest, WithdrawalResolution
from .schemas import BatchPage, DecisionResults, PublishResult, Withdrawal, WithdrawalList
from .settings import LOGGER_NAME

operator_router = APIRouter(prefix="/v1/operator", tags=["operator"])
"""Routes of the operators' API."""

Context = Annotated[WebContext, Depends(context_dependency)]
Operator = Annotated[User, Depends(operator_user)]


def decide_batches(
    context: WebContext,
    operator: str,
    decision: str,
    batches: Sequence[str],
    reason: str | None,
    entries: Mapping[str, Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """Approve or reject batches, each on its own, then send the digests.

    Parameters
    ----------
    context : `~.context.WebContext`
        The application's context.
    operator : `str`
        Who decides (the audit actor).
    decision : `str`
        ``approve`` or ``reject``.
    batches : `~collections.abc.Sequence` [`str`]
        The batches.
    reason : `str` or `None`
        Why (needed to reject).
    entries : `~collections.abc.Mapping`, optional
        Per batch, only these images.

    Returns
    -------
    results : `list` [`dict`]
        Per batch: ``batch``, ``ok``, ``images`` (how many changed) and
        ``error`` (why not).
    """
    service = context.service
    log = structlog.get_logger(LOGGER_NAME).bind(user=operator)
    results = []
    try:
        for batch in dict.fromkeys(batches):
            chosen = list(entries[batch]) if entries and batch in entries else None
            try:
                if decision == "approve":
                    n = service.approve(batch, operator=operator, reason=reason, entries=chosen)
                else:
                    n = service.reject(batch, operator=operator, reason=reason or "", entries=chosen)
            except ExportServiceError as err:
                results.append({"batch": batch, "ok": False, "images": 0, "error": str(err)})
                continue
            log.info("Batch decided", decision=decision, batch=batch, images=n)
            results.append({"batch": batch, "ok": True, "images": n, "error": None})
    finally:
        context.digest.flush()
    return results


@operator_router.get(
    "/batches", response_model=BatchPage, summary="Batches across projects, filtered and paged"
)
def list_batches(
    context: Context,
    user: Operator,
    project: str | None = None,
    state: Annotated[str | None, Query(description="A batch state; 'all' for every state.")] = "quarantined",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    try:
        page = context.views.batches(
            project=project, state=None if state == "all" else state, offset=offset, limit=limit
        )
    except ValueError as err:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=str(err)) from None
    return page.to_dict()


@operator_router.get("/batches/{batch}", summary="A batch with its images and findings")
def get_batch(context: Context, user: Operator, batch: str) -> dict[str, Any]:
    try:
        (record,) = context.service.review(batch=batch)
    except ExportServiceError:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"No batch {batch!r}.") from None
    public = context.views.batch_already_public(batch)
    for image in record["images"]:
        image.pop("quarantine_path", None)
        image["already_public"] = image["object_id"] in public
    return record


@operator_router.post(
    "/decisions", response_model=DecisionResults, summary="Approve or reject several batches"
)
def decisions(context: Context, user: Operator, body: BulkDecision) -> dict[str, Any]:
    if body.decision == "reject" and not (body.reason or "").strip():
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="A rejection needs a reason.")
    results = decide_batches(context, user.name, body.decision, body.batches, body.reason, body.entries)
    return {"results": results}


@operator_router.post("/publish", response_model=PublishResult, summary="Publish approved images")
def publish(context: Context, user: Operator, body: PublishRequest) -> dict[str, Any]:
    try:
        summary = context.service.publish(body.project)
    finally:
        context.digest.flush()
    structlog.get_logger(LOGGER_NAME).info("Publication run", user=user.name, project=body.project)
    return dataclasses.asdict(summary)


@operator_router.get("/projects", summary="Every project with its counts by state")
def projects(context: Context, user: Operator) -> dict[str, Any]:
    return context.service.status()


@operator_router.get("/withdrawals", response_model=WithdrawalList, summary="The PIs' withdrawal requests")
def withdrawals(context: Context, user: Operator) -> dict[str, Any]:
    return {"withdrawals": context.withdrawals.list()}


@operator_router.post(
    "/withdrawals/{request_id}",
    response_model=Withdrawal,
    summary="Close a withdrawal request as done or refused",
)
def resolve_withdrawal(
    context: Context, user: Operator, request_id: int, body: WithdrawalResolution
) -> dict[str, Any]:
    try:
        request = context.withdrawals.resolve(request_id, body.state, user.name, body.note)
    except LookupError as err:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=str(err)) from None
    structlog.get_logger(LOGGER_NAME).info(
        "Withdrawal request closed", user=user.name, request=request_id, state=body.state
    )
    return request
