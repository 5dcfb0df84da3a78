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

"""Sign-in and OAuth tokens of the Panoptes stand-in
(`lsst.epo.zooniverse.demo.panoptes_standin`), as panoptes-client 1.7
meets them: Devise's ``/users/sign_in`` with a CSRF token and a session
cookie (password flow), and Doorkeeper's ``/oauth/token`` for the
``client_credentials``, ``password`` and ``refresh_token`` grants.
"""

from __future__ import annotations

__all__ = ["FIRST_PARTY_CLIENT_ID", "PanoptesSignIn"]

import secrets
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from .panoptes_jsonapi import ApiAnswer

FIRST_PARTY_CLIENT_ID = "ce310d45f951de68c4cc8ef46ca38cc0a008f607a2026680295757bfef99f43c"
"""panoptes-client's built-in client id (password flow)."""


class PanoptesSignIn:
    """Who may sign in, and the sessions and tokens handed out.

    Parameters
    ----------
    client_id, client_secret : `str`
        The OAuth application's credentials (client credentials flow).
    username, password : `str`
        The user's (password flow).
    """

    def __init__(self, client_id: str, client_secret: str, username: str, password: str) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.username, self.password = username, password
        self.tokens: dict[str, set[str]] = {}
        """Scopes of every access token handed out."""
        self.scopes = {"public", "project", "subject"}
        """Scopes the application and user grant new tokens."""
        self.refresh_tokens: set[str] = set()
        self.sessions: dict[str, dict[str, Any]] = {}

    def is_valid_bearer(self, request: BaseHTTPRequestHandler) -> bool:
        """Say whether a request carries a token handed out here.

        Parameters
        ----------
        request : `http.server.BaseHTTPRequestHandler`
            The request.

        Returns
        -------
        valid : `bool`
            Its ``Authorization: Bearer`` token is known.
        """
        return self.token_scopes(request) is not None

    def token_scopes(self, request: BaseHTTPRequestHandler) -> set[str] | None:
        """Return the scopes of a request's bearer token.

        Parameters
        ----------
        request : `http.server.BaseHTTPRequestHandler`
            The request.

        Returns
        -------
        scopes : `set` [`str`] or `None`
            `None` if it carries no token handed out here.
        """
        auth = request.headers.get("Authorization") or ""
        return self.tokens.get(auth[len("Bearer ") :]) if auth.startswith("Bearer ") else None

    def revoke_scope(self, scope: str) -> None:
        """Take a scope away from every token, and from new ones.

        Parameters
        ----------
        scope : `str`
            ``project``, ``subject``, ...
        """
        self.scopes.discard(scope)
        for scopes in self.tokens.values():
            scopes.discard(scope)

    def _session(self, request, headers) -> dict[str, Any]:
        cookies = dict(
            c.strip().split("=", 1) for c in (request.headers.get("Cookie") or "").split(";") if "=" in c
        )
        sid = cookies.get("_panoptes_session")
        if sid not in self.sessions:
            sid = secrets.token_hex(8)
            self.sessions[sid] = {"csrf": secrets.token_hex(16), "user": None}
            headers["Set-Cookie"] = f"_panoptes_session={sid}; path=/; HttpOnly"
        return self.sessions[sid]

    def sign_in(
        self, request: BaseHTTPRequestHandler, method: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, Any]:
        """Answer ``/users/sign_in``.

        Parameters
        ----------
        request : `http.server.BaseHTTPRequestHandler`
            The request.
        method : `str`
            ``GET`` (gives the CSRF token) or ``POST`` (signs in).
        body : `object`
            The JSON body.
        headers : `dict` [`str`, `str`]
            Receives the answer's headers.

        Returns
        -------
        status : `int`
            HTTP status.
        answer : `object`
            JSON body.
        """
        session = self._session(request, headers)
        if method == "GET":
            headers["x-csrf-token"] = session["csrf"]
            return 200, {}
        body = body or {}
        if body.get("authenticity_token") != session["csrf"]:
            raise ApiAnswer(422, {"error": "Can't verify CSRF token authenticity."})
        user = body.get("user") or {}
        if user.get("login") != self.username or user.get("password") != self.password:
            raise ApiAnswer(401, {"error": "Invalid login or password."})
        session["user"] = self.username
        return 200, {"users": [{"id": "1", "login": self.username}]}

    def _issue(self, refresh: bool) -> dict[str, Any]:
        token = "tok-" + secrets.token_hex(16)
        self.tokens[token] = set(self.scopes)
        answer = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 7200,
            "scope": " ".join(sorted(self.scopes)),
        }
        if refresh:
            answer["refresh_token"] = "ref-" + secrets.token_hex(16)
            self.refresh_tokens.add(answer["refresh_token"])
        answer["created_at"] = int(time.time())
        return answer

    def token(self, request: BaseHTTPRequestHandler, form: dict[str, str]) -> tuple[int, Any]:
        """Answer ``POST /oauth/token``.

        Parameters
        ----------
        request : `http.server.BaseHTTPRequestHandler`
            The request (its session cookie, for the password grant).
        form : `dict` [`str`, `str`]
            The form body.

        Returns
        -------
        status : `int`
            HTTP status.
        answer : `object`
            The token, as Doorkeeper gives it.
        """
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if form.get("client_id") == self.client_id and form.get("client_secret") == self.client_secret:
                return 200, self._issue(refresh=False)
            raise ApiAnswer(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "Client authentication failed due to unknown client, no client "
                    "authentication included, or unsupported authentication method.",
                },
            )
        if grant == "password":
            session = self._session(request, {})
            if session["user"] and form.get("client_id") == FIRST_PARTY_CLIENT_ID:
                return 200, self._issue(refresh=True)
        if grant == "refresh_token" and form.get("refresh_token") in self.refresh_tokens:
            return 200, self._issue(refresh=True)
        raise ApiAnswer(
            400,
            {"error": "invalid_grant", "error_description": "The provided authorization grant is invalid."},
        )
