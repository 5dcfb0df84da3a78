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

"""The FastAPI application: `create_app`.

Built as Rubin's Safir applications are: settings from the environment
(`.settings`), structlog logging configured by ``safir.logging``, the
package metadata from ``safir.metadata`` at ``/`` (for the cluster's
health checks) and at ``<prefix>/``, every external route under
``<prefix>`` (``/epo-zooniverse`` by default), versioned JSON APIs
(``<prefix>/v1/...``) with their OpenAPI schema at
``<prefix>/openapi.json``, and the user from Gafaelfawr's headers or a
bearer token (`.auth`).  ``uvicorn --factory
lsst.epo.zooniverse.web.app:create_app`` runs it.
"""

from __future__ import annotations

__all__ = ["create_app"]

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import sqlalchemy as sa
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from safir.metadata import Metadata, get_metadata
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..export.outcomes import ExportServiceError
from ..export.service_config import ServiceConfig
from .context import WebContext, context_dependency
from .logs import configure_web_logging
from .proxy import TrustedProxyMiddleware
from .routes_operator import operator_router
from .routes_pi import pi_router
from .routes_review import review_router
from .settings import LOGGER_NAME, WebSettings, load_web_settings

PACKAGE = "lsst-epo-zooniverse"
"""The distribution whose metadata the application reports."""


async def _digests(context: WebContext) -> None:
    log = structlog.get_logger(LOGGER_NAME)
    while True:
        await asyncio.sleep(context.settings.digest_seconds)
        try:
            sent = await run_in_threadpool(context.digest.flush)
        except Exception:
            log.exception("Digest cycle failed")
        else:
            if sent:
                log.info("Digests sent", users=len(sent), events=sum(sent.values()))


def create_app(settings: WebSettings | None = None, context: WebContext | None = None) -> FastAPI:
    """Build the web application.

    Parameters
    ----------
    settings : `~.settings.WebSettings`, optional
        The settings (read from the environment if not given).
    context : `~.context.WebContext`, optional
        The service and tables (opened from the settings when the
        application starts if not given).

    Returns
    -------
    app : `fastapi.FastAPI`
        The application.
    """
    if settings is None:
        settings = context.settings if context is not None else load_web_settings()
    configure_web_logging(settings)
    prefix = settings.path_prefix

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = context is None
        app.state.context = WebContext.build(settings) if own else context
        task = asyncio.create_task(_digests(app.state.context))
        log = structlog.get_logger(LOGGER_NAME)
        if settings.auth == "gafaelfawr" and not settings.trusted_proxies:
            log.warning("Gafaelfawr headers are believed from any peer: set EPO_WEB_TRUSTED_PROXIES")
        log.info("Started", prefix=prefix, auth=settings.auth)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if own:
                await run_in_threadpool(app.state.context.close)
            else:
                await run_in_threadpool(app.state.context.digest.flush)

    app = FastAPI(
        title="Rubin EPO Zooniverse export",
        description="Register PI collections, follow their export to Zooniverse, review and publish.",
        version=get_metadata(package_name=PACKAGE, application_name=settings.name).version,
        openapi_url=f"{prefix}/openapi.json",
        docs_url=f"{prefix}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.include_router(pi_router, prefix=prefix)
    app.include_router(operator_router, prefix=prefix)
    app.include_router(review_router, prefix=prefix)
    _meta_routes(app, settings)
    if settings.public_path:
        _mount_public(app, settings, context)
    app.add_middleware(TrustedProxyMiddleware, proxies=settings.trusted_proxies)

    @app.exception_handler(StarletteHTTPException)
    async def _login_first(request: Request, err: StarletteHTTPException) -> Response:
        # A browser without credentials on the review page goes to its
        # login form (tokens mode); programs still get 401.
        review = f"{prefix}/review/"
        if (
            err.status_code == 401
            and settings.auth == "tokens"
            and request.method == "GET"
            and request.url.path.startswith(review)
            and "authorization" not in request.headers
        ):
            return RedirectResponse(f"{review}login", status_code=303)
        return await http_exception_handler(request, err)

    @app.exception_handler(ExportServiceError)
    async def _refused(request: Request, err: ExportServiceError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(err)})

    return app


def _meta_routes(app: FastAPI, settings: WebSettings) -> None:
    prefix = settings.path_prefix

    @app.get("/", include_in_schema=False, response_model_exclude_none=True)
    def internal_metadata() -> Metadata:
        return get_metadata(package_name=PACKAGE, application_name=settings.name)

    @app.get(f"{prefix}/", tags=["meta"], summary="Application metadata and links")
    def external_metadata(request: Request) -> dict[str, Any]:
        meta = get_metadata(package_name=PACKAGE, application_name=settings.name)
        base = str(request.base_url).rstrip("/") + prefix
        return {
            "metadata": meta.model_dump(exclude_none=True),
            "api": {"v1": f"{base}/v1/", "openapi": f"{base}/openapi.json", "docs": f"{base}/docs"},
            "review": f"{base}/review/",
        }

    @app.get(f"{prefix}/healthz", tags=["meta"], summary="Health: the state database answers")
    def health(context: Annotated[WebContext, Depends(context_dependency)]) -> JSONResponse:
        try:
            with context.service.store.reading() as connection:
                connection.execute(sa.text("SELECT 1"))
        except Exception as err:
            structlog.get_logger(LOGGER_NAME).error("Health check failed", error=type(err).__name__)
            return JSONResponse(status_code=503, content={"status": "unavailable", "database": "unreachable"})
        return JSONResponse(
            content={"status": "ok", "database": "ok", "pending_notifications": context.digest.pending}
        )


def _mount_public(app: FastAPI, settings: WebSettings, context: WebContext | None) -> None:
    config = context.service.config if context is not None else ServiceConfig.load(settings.config)
    if "://" in config.public_root and not config.public_root.startswith("file://"):
        structlog.get_logger(LOGGER_NAME).warning("Public files not served: the public root is not local")
        return
    root = config.public_root.removeprefix("file://")
    app.mount(settings.public_path or "/public", StaticFiles(directory=root, check_dir=False), name="public")
