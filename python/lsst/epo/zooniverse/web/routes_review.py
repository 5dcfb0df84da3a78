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

"""The operators' review page (``<prefix>/review/``): server-side HTML
from Jinja2 templates with autoescape, no scripts.  Batches across
projects, filtered by project and state and paged, with their stretch
settings and a warning where an object is already public; a batch's
pictures; bulk approval and rejection; publication.

The page is authenticated like the API (`.auth`: Gafaelfawr's headers or
a bearer token) and only for operators.  Behind Gafaelfawr the browser's
credential is a cookie, so every form carries a token bound to the user
(HMAC of the user name) and a post from another origin is refused.
"""

from __future__ import annotations

__all__ = ["review_router"]

import hashlib
import hmac
import os
import time
import urllib.parse
from importlib import resources
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ..export.outcomes import ExportServiceError
from ..export.state import DATASET_STATES
from .auth import REVIEW_COOKIE, User, operator_user, refused_attempt
from .context import WebContext, context_dependency
from .routes_operator import decide_batches

review_router = APIRouter(prefix="/review", include_in_schema=False)
"""Routes of the review page."""

Context = Annotated[WebContext, Depends(context_dependency)]
Operator = Annotated[User, Depends(operator_user)]

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("lsst.epo.zooniverse.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_PAGE = 50
_IMAGES_PER_PAGE = 100
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
}


def _csrf(context: WebContext, user: User) -> str:
    return hmac.new(context.csrf_key, f"review:{user.name}".encode(), hashlib.sha256).hexdigest()


def _page(name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    html = _TEMPLATES.get_template(name).render(**values)
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)


def _link(request: Request, **params: Any) -> str:
    query = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{request.url.path}?{urllib.parse.urlencode(query)}"


@review_router.get("/style.css")
def style() -> Response:
    css = resources.files("lsst.epo.zooniverse.web").joinpath("templates/style.css").read_text()
    return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@review_router.get("/login")
def login_page(
    context: Context, message: Annotated[str | None, Query(max_length=300)] = None
) -> HTMLResponse:
    if context.settings.auth != "tokens":
        raise HTTPException(status_code=404, detail="Log in through the Science Platform.")
    return _login(context, message)


def _login(context: WebContext, message: str | None, status_code: int = 200) -> HTMLResponse:
    prefix = context.settings.path_prefix
    values = {"prefix": prefix, "user": None, "logout": False, "csrf": "", "message": message}
    return _page("login.html", status_code=status_code, title="Log in", **values)


@review_router.post("/login")
async def login(request: Request, context: Context) -> Response:
    if context.settings.auth != "tokens":
        raise HTTPException(status_code=404, detail="Log in through the Science Platform.")
    _same_origin(request)
    form = urllib.parse.parse_qs((await request.body())[:10_000].decode("utf-8", "replace"))
    token = form.get("token", [""])[0].strip()
    info = await run_in_threadpool(context.tokens.verify, token)
    if info is None or "operator" not in info.scopes:
        error = refused_attempt(context, request, "Not an operator token.")
        if error.status_code == 429:
            raise error
        return _login(context, "Unknown, expired or revoked operator token.", status_code=401)
    lifetime = 12 * 3600 if info.expires_at is None else min(12 * 3600, int(info.expires_at - time.time()))
    response = RedirectResponse(f"{context.settings.path_prefix}/review/", status_code=303)
    response.set_cookie(
        REVIEW_COOKIE,
        token,
        max_age=max(1, lifetime),
        path=f"{context.settings.path_prefix}/review/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@review_router.post("/logout")
async def logout(request: Request, context: Context, user: Operator) -> Response:
    await _form(request, context, user)
    response = RedirectResponse(f"{context.settings.path_prefix}/review/login", status_code=303)
    response.delete_cookie(REVIEW_COOKIE, path=f"{context.settings.path_prefix}/review/")
    return response


@review_router.get("/")
def batches_page(
    request: Request,
    context: Context,
    user: Operator,
    project: str | None = None,
    state: str = "quarantined",
    offset: Annotated[int, Query(ge=0)] = 0,
    message: Annotated[str | None, Query(max_length=300)] = None,
) -> HTMLResponse:
    if state != "all" and state not in DATASET_STATES:
        raise HTTPException(status_code=400, detail="Unknown state.")
    page = context.views.batches(
        project=project or None, state=None if state == "all" else state, offset=offset, limit=_PAGE
    )
    params = {"project": project, "state": state}
    prev_url = _link(request, **params, offset=max(0, offset - _PAGE)) if offset else None
    more = offset + _PAGE < page.total
    next_url = _link(request, **params, offset=offset + _PAGE) if more else None
    return _page(
        "batches.html",
        title="Batches",
        prefix=context.settings.path_prefix,
        user=user,
        message=message,
        csrf=_csrf(context, user),
        logout=context.settings.auth == "tokens",
        page=page,
        project=project or "",
        state=state,
        states=[*DATASET_STATES, "all"],
        projects=[p["name"] for p in context.service.projects()],
        prev_url=prev_url,
        next_url=next_url,
        withdrawals=[w for w in context.withdrawals.list() if w["state"] == "open"],
    )


@review_router.get("/batches/{batch}")
def batch_page(
    request: Request,
    context: Context,
    user: Operator,
    batch: str,
    offset: Annotated[int, Query(ge=0)] = 0,
    message: Annotated[str | None, Query(max_length=300)] = None,
) -> HTMLResponse:
    record = _batch(context, batch)
    public = context.views.batch_already_public(batch)
    prefix = context.settings.path_prefix
    quoted = urllib.parse.quote(batch, safe="")
    images = []
    for image in record["images"][offset : offset + _IMAGES_PER_PAGE]:
        entry = urllib.parse.quote(image["entry"], safe="")
        images.append(
            dict(
                image,
                already_public=image["object_id"] in public,
                viewable=_staged_file(context, image) is not None,
                src=f"{prefix}/review/batches/{quoted}/images/{entry}",
            )
        )
    total = len(record["images"])
    prev_url = _link(request, offset=max(0, offset - _IMAGES_PER_PAGE)) if offset else None
    more = offset + _IMAGES_PER_PAGE < total
    next_url = _link(request, offset=offset + _IMAGES_PER_PAGE) if more else None
    return _page(
        "batch.html",
        title=f"Batch {batch}",
        prefix=prefix,
        user=user,
        message=message,
        csrf=_csrf(context, user),
        logout=context.settings.auth == "tokens",
        record=record,
        images=images,
        stretch=context.views.batch_stretch(batch),
        prev_url=prev_url,
        next_url=next_url,
    )


@review_router.get("/batches/{batch}/images/{entry}")
def image(context: Context, user: Operator, batch: str, entry: str) -> FileResponse:
    record = _batch(context, batch)
    found = next((i for i in record["images"] if i["entry"] == entry), None)
    path = _staged_file(context, found) if found else None
    if path is None:
        raise HTTPException(status_code=404, detail="No such picture.")
    return FileResponse(path, media_type="image/png", headers=_HEADERS)


@review_router.post("/decide")
async def decide(request: Request, context: Context, user: Operator) -> Response:
    form = await _form(request, context, user)
    decision = form.get("decision", [""])[0]
    batches = form.get("batch", [])
    reason = form.get("reason", [""])[0].strip() or None
    if decision not in ("approve", "reject") or not batches:
        return _back(context, "Tick at least one batch and choose approve or reject.")
    if decision == "reject" and not reason:
        return _back(context, "A rejection needs a reason.")
    entries = form.get("entry") or None
    chosen = {batches[0]: entries} if entries and len(batches) == 1 else None
    results = await run_in_threadpool(decide_batches, context, user.name, decision, batches, reason, chosen)
    done = sum(r["images"] for r in results if r["ok"])
    failed = [f"{r['batch']}: {r['error']}" for r in results if not r["ok"]]
    verb = "approved" if decision == "approve" else "rejected"
    message = f"{done} image{'s' if done != 1 else ''} {verb}." + (
        f" Refused: {'; '.join(failed)}" if failed else ""
    )
    return _back(context, message[:300])


@review_router.post("/publish")
async def publish(request: Request, context: Context, user: Operator) -> Response:
    await _form(request, context, user)
    try:
        summary = await run_in_threadpool(context.service.publish)
    finally:
        await run_in_threadpool(context.digest.flush)
    return _back(context, f"{summary.published} images published.")


def _back(context: WebContext, message: str) -> RedirectResponse:
    url = f"{context.settings.path_prefix}/review/?{urllib.parse.urlencode({'message': message})}"
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


def _same_origin(request: Request) -> None:
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise HTTPException(status_code=403, detail="Cross-site form posts are refused.")
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(status_code=403, detail="Form posts from another origin are refused.")


async def _form(request: Request, context: WebContext, user: User) -> dict[str, list[str]]:
    _same_origin(request)
    body = await request.body()
    if len(body) > 1_000_000:
        raise HTTPException(status_code=413, detail="Form too large.")
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    token = form.get("csrf", [""])[0]
    if not hmac.compare_digest(token, _csrf(context, user)):
        raise HTTPException(status_code=403, detail="Missing or wrong form token; reload the page.")
    return form


def _batch(context: WebContext, batch: str) -> dict[str, Any]:
    try:
        (record,) = context.service.review(batch=batch)
    except ExportServiceError:
        raise HTTPException(status_code=404, detail=f"No batch {batch!r}.") from None
    return record


def _staged_file(context: WebContext, image: dict[str, Any]) -> str | None:
    if not image.get("quarantine_path") or image["state"] == "rejected":
        return None
    staging = os.path.realpath(context.service.staging.root)
    real = os.path.realpath(image["quarantine_path"])
    if os.path.commonpath([real, staging]) != staging or not os.path.isfile(real):
        return None
    return real
