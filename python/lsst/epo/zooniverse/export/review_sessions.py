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

"""Sessions of the operators logged in to the review page.

`ReviewSessions` keeps, in memory, the sessions of the operators logged
in to `~lsst.epo.zooniverse.export.review_page.ReviewPage` (by the hash
of their random cookie token, so a memory dump does not give the cookie
away), the one-off messages each session shows on its next page, and the
recent failed logins per client address that throttle password guessing.
Restarting the server logs everyone out.
"""

from __future__ import annotations

__all__ = ["ReviewSession", "ReviewSessions", "parse_cookies"]

import collections
import dataclasses
import hashlib
import secrets
import threading
import time
from collections.abc import Mapping

_MAX_SESSIONS = 1000
_FAILURE_WINDOW = 300.0
_MAX_FAILURES = 10


@dataclasses.dataclass
class ReviewSession:
    """One logged-in operator."""

    operator: str
    """Operator name, as the review settings know it (`str`)."""

    csrf: str
    """Token every POST of the session must carry (`str`)."""

    expires: float
    """When the session ends, in seconds since the epoch (`float`)."""

    flash: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    """Messages for the next page, as ``(kind, text)``
    (`list` [`tuple` [`str`, `str`]]).
    """


def parse_cookies(headers: Mapping[str, str]) -> dict[str, str]:
    """Read the cookies of a request.

    Parameters
    ----------
    headers : `~collections.abc.Mapping` [`str`, `str`]
        Request header fields (with ``get_all`` when several ``Cookie``
        fields may be present, as `email.message.Message` has).

    Returns
    -------
    cookies : `dict` [`str`, `str`]
        Value by name; the first of a repeated name wins.
    """
    result: dict[str, str] = {}
    for line in headers.get_all("Cookie", []) if hasattr(headers, "get_all") else [headers.get("Cookie")]:
        for item in (line or "").split(";"):
            name, sep, value = item.strip().partition("=")
            if sep and name not in result:
                result[name] = value.strip()
    return result


class ReviewSessions:
    """The review page's sessions and failed logins, shared by the
    server's threads (every access holds one lock).
    """

    def __init__(self) -> None:
        self._sessions: dict[bytes, ReviewSession] = {}
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def token_hash(token: str) -> bytes:
        """Return the key a session token is kept under.

        Parameters
        ----------
        token : `str`
            Session token, from the cookie.

        Returns
        -------
        key : `bytes`
            SHA-256 of the token.
        """
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def find(self, token: str) -> ReviewSession | None:
        """Return the live session of a token.

        Parameters
        ----------
        token : `str`
            Session token, from the cookie (may be empty).

        Returns
        -------
        session : `ReviewSession` or `None`
            The session; `None` if there is none or it expired (it is
            then forgotten).
        """
        if not token:
            return None
        key = self.token_hash(token)
        now = time.time()
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and session.expires <= now:
                del self._sessions[key]
                session = None
        return session

    def open(self, operator: str, client: str, seconds: float) -> str:
        """Start a session, forgetting the client's failed logins.

        Parameters
        ----------
        operator : `str`
            Authenticated operator name.
        client : `str`
            Client address.
        seconds : `float`
            Lifetime of the session.

        Returns
        -------
        token : `str`
            The new session's token, for the cookie.
        """
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            for key in [k for k, s in self._sessions.items() if s.expires <= now]:
                del self._sessions[key]
            while len(self._sessions) >= _MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].expires)
                del self._sessions[oldest]
            self._sessions[self.token_hash(token)] = ReviewSession(
                operator=operator, csrf=secrets.token_urlsafe(32), expires=now + seconds
            )
            self._failures.pop(client, None)
        return token

    def close(self, token: str) -> None:
        """End the session of a token, if there is one.

        Parameters
        ----------
        token : `str`
            Session token, from the cookie.
        """
        with self._lock:
            self._sessions.pop(self.token_hash(token), None)

    def active(self) -> list[ReviewSession]:
        """Return the sessions kept, expired or not.

        Returns
        -------
        sessions : `list` [`ReviewSession`]
            The sessions, the objects themselves.
        """
        with self._lock:
            return list(self._sessions.values())

    def throttled(self, client: str, failed: bool = False) -> bool:
        """Tell whether a client has failed to log in too often lately.

        Parameters
        ----------
        client : `str`
            Client address.
        failed : `bool`, optional
            Record a failed login first.

        Returns
        -------
        throttled : `bool`
            `True` if the client failed at least 10 times in the last 5
            minutes.
        """
        now = time.time()
        with self._lock:
            failures = self._failures.setdefault(client, collections.deque())
            while failures and failures[0] < now - _FAILURE_WINDOW:
                failures.popleft()
            if failed:
                failures.append(now)
            if not failures:
                del self._failures[client]
                return False
            return len(failures) >= _MAX_FAILURES

    def add_flash(self, session: ReviewSession, kind: str, text: str) -> None:
        """Keep a message for the session's next page.

        Parameters
        ----------
        session : `ReviewSession`
            The session.
        kind : `str`
            ``ok`` or ``error``.
        text : `str`
            The message (already redacted).
        """
        with self._lock:
            session.flash.append((kind, text))

    def take_flashes(self, session: ReviewSession) -> list[tuple[str, str]]:
        """Return and forget the session's messages.

        Parameters
        ----------
        session : `ReviewSession`
            The session.

        Returns
        -------
        flashes : `list` [`tuple` [`str`, `str`]]
            ``(kind, text)`` in the order added.
        """
        with self._lock:
            pending, session.flash = session.flash, []
        return pending
