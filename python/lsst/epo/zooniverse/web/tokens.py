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

"""Bearer tokens of the standalone web application (demo, tests, a site
without Gafaelfawr): ``zooniverse-epo-web token create --user U --scope pi``.

A token is ``epozoo_<key>.<secret>``: the key (64 random bits) finds the
row, the secret (256 random bits) is stored only as its SHA-256 digest and
compared in constant time.  A secret this long needs no slow hash.
Tokens expire (30 days by default) and can be revoked.
"""

from __future__ import annotations

__all__ = ["SCOPES", "TokenError", "TokenInfo", "TokenStore"]

import dataclasses
import hashlib
import hmac
import re
import secrets
import time

import sqlalchemy as sa

from ..timestamps import utc_now_iso
from .tables import TOKENS, create_web_tables, reading

SCOPES = ("pi", "operator")
"""What a token allows: ``pi`` (the PI API for the token's user) and
``operator`` (the operators' API and review page)."""

_TOKEN = re.compile(r"^epozoo_([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")
_USER = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_KEY = re.compile(r"^[0-9a-f]{16}$")


class TokenError(ValueError):
    """A token cannot be made or revoked (bad user, scope or lifetime)."""


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """What a valid token says.

    Parameters
    ----------
    key : `str`
        The token's public key (shown by ``token list``, used to revoke).
    username : `str`
        Whose token it is.
    scopes : `frozenset` [`str`]
        What it allows (`SCOPES`).
    expires_at : `float` or `None`
        POSIX time of expiry; `None` never expires.
    """

    key: str
    username: str
    scopes: frozenset[str]
    expires_at: float | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    """The tokens table.

    Parameters
    ----------
    engine : `sqlalchemy.Engine`
        The export service's database (the table is created if missing).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        create_web_tables(engine)

    def create(
        self,
        username: str,
        scopes: list[str] | tuple[str, ...],
        *,
        lifetime_seconds: float | None = 30 * 86400,
        comment: str | None = None,
    ) -> tuple[str, TokenInfo]:
        """Make a token.

        Parameters
        ----------
        username : `str`
            Whose token (1-64 of ``A-Za-z0-9_.@-``).
        scopes : `list` [`str`]
            Some of `SCOPES`, at least one.
        lifetime_seconds : `float` or `None`, optional
            How long it lasts; `None` for ever (discouraged).
        comment : `str`, optional
            A note kept with it.

        Returns
        -------
        token : `str`
            The token, shown once: only its digest is kept.
        info : `TokenInfo`
            What it says.

        Raises
        ------
        TokenError
            Raised for a bad user name, scope or lifetime.
        """
        if not _USER.match(username or ""):
            raise TokenError(f"User name {username!r} must be 1-64 characters from A-Za-z0-9_.@-.")
        unknown = sorted(set(scopes) - set(SCOPES))
        if not scopes or unknown:
            raise TokenError(f"Scopes {unknown or '(none)'} not allowed; known: {', '.join(SCOPES)}.")
        if lifetime_seconds is not None and lifetime_seconds <= 0:
            raise TokenError("A token's lifetime must be positive.")
        key = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        expires = None if lifetime_seconds is None else time.time() + lifetime_seconds
        with self.engine.begin() as connection:
            connection.execute(
                TOKENS.insert().values(
                    key=key,
                    username=username,
                    scopes=" ".join(sorted(set(scopes))),
                    secret_sha256=_digest(secret),
                    created_at=utc_now_iso(),
                    expires_at=expires,
                    comment=comment,
                )
            )
        return f"epozoo_{key}.{secret}", TokenInfo(key, username, frozenset(scopes), expires)

    def verify(self, token: str) -> TokenInfo | None:
        """Return what a token says if it is valid.

        Parameters
        ----------
        token : `str`
            The presented token.

        Returns
        -------
        info : `TokenInfo` or `None`
            `None` if the token is malformed, unknown, wrong, expired or
            revoked.
        """
        match = _TOKEN.match(token or "")
        if not match:
            return None
        key, secret = match.groups()
        with reading(self.engine) as connection:
            row = connection.execute(sa.select(TOKENS).where(TOKENS.c.key == key)).mappings().first()
        if row is None:
            return None
        if not hmac.compare_digest(row["secret_sha256"], _digest(secret)):
            return None
        if row["revoked_at"] is not None:
            return None
        if row["expires_at"] is not None and row["expires_at"] <= time.time():
            return None
        return TokenInfo(key, row["username"], frozenset(row["scopes"].split()), row["expires_at"])

    def revoke(self, key: str) -> bool:
        """Revoke a token.

        Parameters
        ----------
        key : `str`
            Its key, or the whole token.

        Returns
        -------
        revoked : `bool`
            Whether a live token was revoked.
        """
        match = _TOKEN.match(key)
        if match:
            key = match.group(1)
        if not _KEY.match(key):
            raise TokenError(f"{key!r} is not a token key (16 hexadecimal digits).")
        with self.engine.begin() as connection:
            result = connection.execute(
                TOKENS.update()
                .where(TOKENS.c.key == key, TOKENS.c.revoked_at.is_(None))
                .values(revoked_at=utc_now_iso())
            )
        return result.rowcount > 0

    def list(self, username: str | None = None) -> list[dict]:
        """List tokens (never their secrets or digests).

        Parameters
        ----------
        username : `str`, optional
            Only this user's.

        Returns
        -------
        tokens : `list` [`dict`]
            ``key, username, scopes, created_at, expires_at, revoked_at,
            comment``.
        """
        query = sa.select(
            TOKENS.c.key,
            TOKENS.c.username,
            TOKENS.c.scopes,
            TOKENS.c.created_at,
            TOKENS.c.expires_at,
            TOKENS.c.revoked_at,
            TOKENS.c.comment,
        ).order_by(TOKENS.c.created_at)
        if username:
            query = query.where(TOKENS.c.username == username)
        with reading(self.engine) as connection:
            return [dict(row) for row in connection.execute(query).mappings()]
