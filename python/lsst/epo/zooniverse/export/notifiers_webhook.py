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

"""`WebhookNotifier`: tell PIs' tools by POSTing JSON to a URL.

Import it from `lsst.epo.zooniverse.export.notify`.
"""

from __future__ import annotations

__all__ = ["WebhookNotifier"]

import base64
import http.client
import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from .notification import NOTIFY_LOGGER, Notification, NotificationError, Notifier, one_line
from .redaction import Redactor
from .secrets import SecretError, read_secret

_LOG = logging.getLogger(NOTIFY_LOGGER)

_USER_AGENT = "lsst-epo-zooniverse-export"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _secret(variable: str, what: str) -> str:
    """Read a secret from the environment, as a `NotificationError` if it
    cannot be.
    """
    try:
        return read_secret(env=variable, what=what)
    except SecretError as err:
        raise NotificationError(str(err)) from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: they would carry the webhook's headers to
    another URL.
    """

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


class WebhookNotifier(Notifier):
    """POST each notification as JSON to a URL.

    Parameters
    ----------
    url : `str`, optional
        ``http`` or ``https`` URL.  Credentials in the URL
        (``https://user:secret@host/``) are sent as HTTP Basic
        authentication.  Required unless ``url_env`` is given.
    headers : `~collections.abc.Mapping` [`str`, `str`], optional
        Extra request headers, inline (not for secrets).
    header_env : `~collections.abc.Mapping` [`str`, `str`], optional
        Extra request headers whose values are read from environment
        variables when sending, for example
        ``{"Authorization": "EPO_WEBHOOK_TOKEN"}`` with the variable set to
        ``Bearer <token>``.
    timeout : `float`, optional
        Timeout in seconds for connecting and for each read.
    url_env : `str`, optional
        Environment variable holding the URL, for services whose URL is
        itself the secret.

    Raises
    ------
    ValueError
        Raised for a malformed URL or header name, or a header given both
        inline and from the environment.

    Notes
    -----
    The body is `Notification.to_dict` as UTF-8 JSON.  Any answer outside
    2xx (redirects included: they are not followed, so that headers do not
    leak to another host) or a connection failure raises
    `NotificationError`.  Error messages name the webhook by scheme, host
    and port only.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        header_env: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        url_env: str | None = None,
    ) -> None:
        if (url is None) == (url_env is None):
            raise ValueError("Give exactly one of url and url_env for a webhook.")
        description = f"${url_env}"
        if url is not None:
            description = self._parse_url(url, ValueError)[1]
        headers = dict(headers or {})
        header_env = dict(header_env or {})
        for name, value in headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise ValueError(f"Invalid webhook header name {name!r}.")
            if not isinstance(value, str) or re.search(r"[\r\n\0]", value):
                raise ValueError(f"Invalid value for webhook header {name}.")
        for name, variable in header_env.items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise ValueError(f"Invalid webhook header name {name!r}.")
            if not isinstance(variable, str) or not variable:
                raise ValueError(f"header_env of {name} must name an environment variable.")
        both = sorted({n.lower() for n in headers} & {n.lower() for n in header_env})
        if both:
            raise ValueError(f"Webhook headers {both} given both in headers and header_env.")
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout > 0:
            raise ValueError("Webhook timeout must be a positive number of seconds.")
        self._url = url
        self.url_env = url_env
        self._headers = headers
        self.header_env = header_env
        self.timeout = float(timeout)
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._description = description

    def __repr__(self) -> str:
        return f"WebhookNotifier({self._description})"

    @staticmethod
    def _parse_url(url: str, error: type[Exception]) -> tuple[str, str, str | None]:
        """Split credentials off a URL.

        Parameters
        ----------
        url : `str`
            Webhook URL.
        error : `type`
            Exception to raise for a malformed URL.

        Returns
        -------
        url : `str`
            URL without credentials.
        description : `str`
            ``scheme://host[:port]``, safe to show.
        authorization : `str` or `None`
            Basic ``Authorization`` header from the URL's credentials.
        """
        message = "The webhook URL is not a valid http(s) URL."
        if not isinstance(url, str) or re.search(r"[\s\0]", url):
            raise error(message)
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            raise error(message) from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise error(message)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = host if port is None else f"{host}:{port}"
        authorization = None
        if parts.username is not None or parts.password is not None:
            user = urllib.parse.unquote(parts.username or "")
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            authorization = f"Basic {token}"
        clean = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        return clean, f"{parts.scheme.lower()}://{netloc}", authorization

    def _request_parts(self) -> tuple[str, str, dict[str, str], list[str]]:
        secrets: list[str] = []
        if self._url is not None:
            raw = self._url
        else:
            assert self.url_env is not None
            raw = _secret(self.url_env, "webhook URL")
        secrets.append(raw)
        url, description, authorization = self._parse_url(raw, NotificationError)
        parts = urllib.parse.urlsplit(raw)
        secrets += [p for p in (parts.username, parts.password, parts.query, parts.path) if p and p != "/"]
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": _USER_AGENT}
        if authorization is not None:
            headers["Authorization"] = authorization
            secrets.append(authorization)
        for name, value in self._headers.items():
            headers[name] = value
            secrets.append(value)
        for name, variable in self.header_env.items():
            value = _secret(variable, f"webhook header {name}")
            if re.search(r"[\r\n\0]", value):
                raise NotificationError(f"The environment variable {variable} holds an invalid header value.")
            headers[name] = value
            secrets.append(value)
        return url, description, headers, secrets

    def notify(self, notification: Notification) -> None:
        # Docstring inherited.
        url, description, headers, secrets = self._request_parts()
        data = json.dumps(notification.to_dict(), sort_keys=True).encode("utf-8")
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        what = f"The {notification.event} notification of project {notification.project}"
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
                response.read(1 << 16)
        except urllib.error.HTTPError as err:
            err.close()
            reason = Redactor(secrets, environ={}).redact(one_line(str(err.reason or "")))
            raise NotificationError(
                f"{what} to webhook {description} failed: HTTP {err.code} {reason}".rstrip()
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
            cause = err.reason if isinstance(err, urllib.error.URLError) else err
            if isinstance(cause, OSError) and cause.strerror:
                reason = f"{type(cause).__name__}: {cause.strerror}"
            else:
                reason = f"{type(cause).__name__}: {one_line(str(cause))}"
            reason = Redactor(secrets, environ={}).redact(reason)
            raise NotificationError(f"{what} to webhook {description} failed: {reason}") from None
        if not 200 <= status < 300:
            raise NotificationError(f"{what} to webhook {description} failed: HTTP {status}")
        _LOG.debug(
            "Posted the %s notification of project %s to webhook %s.",
            notification.event,
            notification.project,
            description,
        )
