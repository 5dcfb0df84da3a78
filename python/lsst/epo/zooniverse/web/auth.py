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

"""Who is calling: FastAPI dependencies in the way of Safir's Gafaelfawr
dependency (``safir.dependencies.gafaelfawr.auth_dependency``).

Two modes (``EPO_WEB_AUTH``):

``gafaelfawr``
    Behind the Rubin Science Platform's ingress, Gafaelfawr has already
    authenticated the user and checked the ingress's scopes; it passes the
    user name in ``X-Auth-Request-User`` and the token's scopes,
    space-separated, in ``X-Auth-Request-Token-Scopes``.  The headers are
    believed only from a trusted proxy (``EPO_WEB_TRUSTED_PROXIES``) when
    one is configured.  Every user is a PI; operators hold
    ``EPO_WEB_OPERATOR_SCOPE`` or are named in ``EPO_WEB_OPERATORS``.
``tokens``
    Standalone (demo, tests): ``Authorization: Bearer <token>`` with a
    token of `.tokens.TokenStore`, whose scopes are ``pi`` and
    ``operator``.

A missing, unknown, expired or revoked credential is 401; a valid one
without the needed scope is 403, and so is a change (any method but GET,
HEAD and OPTIONS) that a browser says comes from another site.  Each
user's requests are rate limited (429 with ``Retry-After``), and so are
failed attempts per client address.
"""

from __future__ import annotations

__all__ = ["REVIEW_COOKIE", "User", "authenticated_user", "operator_user", "pi_user", "refused_attempt"]

import dataclasses
from typing import Annotated

import structlog
from fastapi import Depends, HTTPException, Request, status

from .context import WebContext, context_dependency
from .settings import LOGGER_NAME

USER_HEADER = "X-Auth-Request-User"
"""Gafaelfawr's header with the authenticated user name."""

SCOPES_HEADER = "X-Auth-Request-Token-Scopes"
"""Gafaelfawr's header with the token's scopes (space-separated)."""

REVIEW_COOKIE = "epo_review_token"
"""Cookie of the review page's login form (``tokens`` mode only): the
operator's token, ``HttpOnly``, ``SameSite=Strict``, for the page's path."""


@dataclasses.dataclass(frozen=True)
class User:
    """An authenticated caller.

    Parameters
    ----------
    name : `str`
        RSP user name (the owner of the PI's projects, the actor of the
        operator's decisions).
    scopes : `frozenset` [`str`]
        ``pi`` and/or ``operator``.
    """

    name: str
    scopes: frozenset[str]

    @property
    def is_operator(self) -> bool:
        """Whether the user may approve, reject and publish."""
        return "operator" in self.scopes


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _same_origin(request: Request) -> None:
    # Behind Gafaelfawr a browser's credential is a cookie: a change must
    # not come from another site (browsers send Origin or Sec-Fetch-Site;
    # programs send neither and are not affected).
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site == "cross-site" or (origin and origin != f"{request.url.scheme}://{request.url.netloc}"):
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Cross-site requests are refused.")


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def _peer(request: Request) -> str | None:
    peer = getattr(request.state, "proxy_peer", None)
    return peer or (request.client.host if request.client else None)


def refused_attempt(context: WebContext, request: Request, detail: str) -> HTTPException:
    """Count a failed authentication of the client and return the error to
    raise.

    Parameters
    ----------
    context : `~.context.WebContext`
        The application's context.
    request : `fastapi.Request`
        The request.
    detail : `str`
        Why.

    Returns
    -------
    error : `fastapi.HTTPException`
        401, or 429 once the client address has failed too often.
    """
    return _refuse(context, request, detail)


def _refuse(context: WebContext, request: Request, detail: str) -> HTTPException:
    wait = context.limiter.take(f"fail:{_client(request)}")
    if wait:
        return _too_many(wait)
    structlog.get_logger(LOGGER_NAME).info(
        "Authentication refused", reason=detail, client=_client(request), path=request.url.path
    )
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": 'Bearer realm="epo-zooniverse"'},
    )


def _too_many(wait: float) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        detail="Too many requests; slow down.",
        headers={"Retry-After": str(max(1, int(wait + 0.999)))},
    )


def _from_headers(context: WebContext, request: Request) -> User:
    settings = context.settings
    if settings.trusted_proxies and not settings.is_trusted_proxy(_peer(request)):
        raise _refuse(context, request, "Requests must come through the authenticating ingress.")
    name = request.headers.get(USER_HEADER, "").strip()
    if not name:
        raise _refuse(context, request, "Not authenticated.")
    token_scopes = set(request.headers.get(SCOPES_HEADER, "").split())
    scopes = {"pi"}
    if settings.operator_scope in token_scopes or name in settings.operators:
        scopes.add("operator")
    return User(name, frozenset(scopes))


def _from_token(context: WebContext, request: Request) -> User:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    review = request.url.path.startswith(f"{context.settings.path_prefix}/review/")
    if not header and review and request.cookies.get(REVIEW_COOKIE):
        # The review page's login form keeps the operator's token in a
        # cookie valid for the page only (browsers cannot send a header).
        scheme, token = "bearer", request.cookies[REVIEW_COOKIE]
    if scheme.lower() != "bearer" or not token.strip():
        raise _refuse(context, request, "Not authenticated: send Authorization: Bearer <token>.")
    info = context.tokens.verify(token.strip())
    if info is None:
        raise _refuse(context, request, "Unknown, expired or revoked token.")
    return User(info.username, info.scopes)


def authenticated_user(request: Request, context: Annotated[WebContext, Depends(context_dependency)]) -> User:
    """Return the authenticated caller (a FastAPI dependency).

    Parameters
    ----------
    request : `fastapi.Request`
        The request.
    context : `~.context.WebContext`
        The application's context.

    Returns
    -------
    user : `User`
        The caller.

    Raises
    ------
    fastapi.HTTPException
        401 without valid credentials, 429 over the rate limit.
    """
    if request.method not in _SAFE_METHODS:
        _same_origin(request)
    if context.settings.auth == "gafaelfawr":
        user = _from_headers(context, request)
    else:
        user = _from_token(context, request)
    wait = context.limiter.take(f"user:{user.name}")
    if wait:
        raise _too_many(wait)
    request.state.user = user.name
    return user


def pi_user(user: Annotated[User, Depends(authenticated_user)]) -> User:
    """Return the caller if they may use the PI API (a FastAPI
    dependency).

    Parameters
    ----------
    user : `User`
        The caller.

    Returns
    -------
    user : `User`
        The caller.

    Raises
    ------
    fastapi.HTTPException
        403 without the ``pi`` scope.
    """
    if "pi" not in user.scopes:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="This needs the pi scope.")
    return user


def operator_user(user: Annotated[User, Depends(authenticated_user)]) -> User:
    """Return the caller if they are an operator (a FastAPI dependency).

    Parameters
    ----------
    user : `User`
        The caller.

    Returns
    -------
    user : `User`
        The caller.

    Raises
    ------
    fastapi.HTTPException
        403 unless the caller is an operator.
    """
    if not user.is_operator:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Only EPO operators may do this.")
    return user
