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

"""The Panoptes (Zooniverse API) client: `PanoptesApiClient`.

panoptes-client does the authentication (client credentials or
password), the JSON-API headers and the token refresh; the requests
themselves go through `panoptes_client.Panoptes.http_request` with the
client's own retries off, because ``Subject.save`` retries a create five
times on any API error (which can create duplicates after a lost answer)
and ``SubjectSet.add`` makes one request per subject.  Instead, following
a `RetryPolicy`:

* HTTP 429 is retried after the ``Retry-After`` it gives (bounded);
* a server error (5xx) or a lost connection is retried only for reads;
  a create that fails raises `ApiServerError`, so that the caller can say
  how much was done;
* HTTP 401 is an authentication error naming the endpoint; a 403 or
  422 that names a missing scope, a project role or the upload limit is
  a `~.errors.SubjectSetPermissionError` (naming the scope or role) or an
  `~.errors.UploadLimitError` (with its numbers).

The client secret, password and tokens are added to the redactor it is
given as soon as they are known, and never appear in its messages.
"""

from __future__ import annotations

__all__ = ["ApiNotFoundError", "ApiServerError", "PanoptesApiClient", "RetryPolicy"]

import dataclasses
import datetime
import email.utils
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .credentials import ZooniverseCredentials
from .errors import SubjectSetAuthError, SubjectSetError, SubjectSetPermissionError, UploadLimitError

if TYPE_CHECKING:
    from ..export.redaction import Redactor

_LOG = logging.getLogger(__name__)

_UPLOAD_LIMIT = re.compile(r"User has uploaded (\d+) subjects of (\d+) maximum")
_NOT_LINKABLE = re.compile(r"Couldn't find linked \w+ for current user")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """When and how long `PanoptesApiClient` waits before sending a
    request again.
    """

    server_retries: int = 5
    """Retries of a read (GET) after a server error (5xx) or a lost
    connection; creates are never retried.  panoptes-client's own value
    is 5."""
    retry_delay: float = 5.0
    """Seconds between those retries (panoptes-client: 5), and the wait
    after a 429 without ``Retry-After``."""
    rate_limit_retries: int = 5
    """Waits after HTTP 429 before giving up, per request."""
    max_retry_after: float = 300.0
    """Longest wait honoured from a ``Retry-After`` header."""
    sleep: Callable[[float], None] = time.sleep
    """How to wait (tests pass a recorder)."""


class ApiNotFoundError(SubjectSetError):
    """HTTP 404 from the API."""


class ApiServerError(SubjectSetError):
    """A 5xx answer or a lost connection (the request may or may not have
    been carried out).
    """


def _retry_after(value: str | None, default: float) -> float:
    """Return the seconds to wait from a ``Retry-After`` header (seconds
    or HTTP date).
    """
    if not value:
        return default
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


class PanoptesApiClient:
    """Authenticated JSON-API calls with our retry rules (see the module
    docstring); signs in when made.

    Parameters
    ----------
    credentials : `ZooniverseCredentials`
        How to sign in.
    redactor : `~lsst.epo.zooniverse.export.redaction.Redactor`
        Receives the secrets and tokens; masks them in messages.
    retry : `RetryPolicy`, optional
        When to send a request again.

    Raises
    ------
    SubjectSetAuthError
        Raised if Zooniverse refuses the credentials.
    SubjectSetError
        Raised if Zooniverse cannot be reached.
    """

    def __init__(
        self, credentials: ZooniverseCredentials, redactor: Redactor, retry: RetryPolicy | None = None
    ) -> None:
        self.redactor = redactor
        self.retry = retry if retry is not None else RetryPolicy()
        self.credentials = credentials
        self.endpoint = credentials.endpoint
        self._last_response: Any = None
        self.client = self._connect()

    def __enter__(self) -> PanoptesApiClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        session = getattr(self.client, "session", None)
        if session is not None:
            session.close()

    def _remember(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self._last_response = response
        return response

    def _connect(self) -> Any:
        import requests
        from panoptes_client import Panoptes

        credentials = self.credentials
        redactor = self.redactor
        for secret in credentials.secrets():
            redactor.add(secret)
        kwargs: dict[str, Any] = {"endpoint": credentials.endpoint}
        if credentials.kind == "client_credentials":
            # Empty (not None) user name and password: panoptes-client
            # would otherwise also sign in with PANOPTES_USERNAME/PASSWORD.
            kwargs.update(
                client_id=credentials.client_id,
                client_secret=credentials.client_secret,
                username="",
                password="",
            )
        else:
            kwargs.update(username=credentials.username, password=credentials.password)
            if credentials.client_id:
                kwargs["client_id"] = credentials.client_id
        where = f"Zooniverse at {self.endpoint}"
        try:
            # The password flow signs in here (GET and POST /users/sign_in).
            client = Panoptes(**kwargs)
            if credentials.kind == "password":
                # Not PANOPTES_CLIENT_SECRET from the environment, nor (for
                # credentials given otherwise) PANOPTES_CLIENT_ID or
                # PANOPTES_REDIRECT_URL: panoptes-client reads them itself.
                client.client_secret = None
                if not credentials.client_id and credentials.source != "the environment":
                    ids = getattr(client, "_endpoint_client_ids", {})
                    client.client_id = ids.get(client.endpoint, ids.get("default", client.client_id))
                    client.redirect_url = None
            client.session.hooks["response"].append(self._remember)
            token = client.get_bearer_token()  # POST /oauth/token
        except requests.RequestException as err:
            raise SubjectSetError(
                f"Cannot reach {where}: {type(err).__name__}: {redactor.redact(err)}"
            ) from None
        except Exception as err:
            raise SubjectSetAuthError(
                f"{where} refused the {credentials.describe()}: {self._refusal(err)}. "
                "Check them (and that the OAuth application has the project scope)."
            ) from None
        if not token:
            raise SubjectSetAuthError(f"{where} gave no access token for the {credentials.describe()}.")
        redactor.add(token)
        refresh = getattr(client, "refresh_token", None)
        if refresh:
            redactor.add(refresh)
        return client

    def _refusal(self, err: BaseException) -> str:
        """Return the server's reason for refusing a sign-in, without
        secrets.
        """
        parts = []
        response = self._last_response
        if response is not None:
            parts.append(f"HTTP {response.status_code}")
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and (body.get("error") or body.get("errors")):
                parts.append(str(body.get("error") or body.get("errors")))
        # A KeyError only names the missing field ('access_token').
        if not isinstance(err, KeyError) and str(err) and str(err) not in parts:
            parts.append(str(err))
        return self.redactor.redact(" ".join(parts) or type(err).__name__)[:300]

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool,
    ) -> Any:
        # Long: one retry loop whose branches are the retry rules, in order.
        """Send one request; return its JSON answer.

        Reads (``idempotent``) are retried on 5xx and lost connections;
        any request is retried on 429 after its ``Retry-After``.

        Parameters
        ----------
        method : `str`
            HTTP method.
        path : `str`
            Path under ``<endpoint>/api``, starting with ``/``.
        params : `~collections.abc.Mapping`, optional
            Query parameters.
        body : `object`, optional
            JSON body.
        idempotent : `bool`
            Whether the request may be sent again after a server error or
            a lost connection (reads and links, not creates).

        Returns
        -------
        answer : `object`
            The JSON answer (`None` if empty).

        Raises
        ------
        SubjectSetAuthError
            Raised on HTTP 401 or 403, or a refused token refresh.
        ApiNotFoundError
            Raised on HTTP 404.
        ApiServerError
            Raised on a server error or lost connection not retried.
        SubjectSetError
            Raised on any other error answer, or a rate limit that lasts.
        """
        import requests
        from panoptes_client.panoptes import PanoptesAPIException

        retry = self.retry
        redact = self.redactor.redact
        server_failures = rate_limited = 0
        what = f"{method} {self.endpoint}/api{path}"
        while True:
            self._last_response = None
            try:
                response = self.client.http_request(
                    method, path, params=dict(params or {}), json=body, retry=False
                )
            except (PanoptesAPIException, requests.RequestException) as err:
                last = self._last_response
                status = getattr(last, "status_code", None)
                if isinstance(err, PanoptesAPIException) and (status is None or status < 500):
                    # A refused token refresh (the only API error below 500).
                    raise SubjectSetAuthError(
                        f"Zooniverse at {self.endpoint} refused the {self.credentials.describe()}: "
                        f"{self._refusal(err)}."
                    ) from None
                reason = f"HTTP {status}" if status else f"{type(err).__name__}: {redact(err)}"
                if idempotent and server_failures < retry.server_retries:
                    server_failures += 1
                    _LOG.warning(
                        "%s failed (%s); retrying in %.1f s (%d/%d).",
                        what,
                        reason,
                        retry.retry_delay,
                        server_failures,
                        retry.server_retries,
                    )
                    retry.sleep(retry.retry_delay)
                    continue
                raise ApiServerError(f"{what} failed: {reason}") from None
            except KeyError as err:
                # panoptes-client's token refresh without an access token.
                raise SubjectSetAuthError(
                    f"Zooniverse at {self.endpoint} refused the {self.credentials.describe()}: "
                    f"{self._refusal(err)}."
                ) from None
            status = response.status_code
            if status == 429:
                if rate_limited < retry.rate_limit_retries:
                    rate_limited += 1
                    wait = min(
                        _retry_after(response.headers.get("Retry-After"), retry.retry_delay),
                        retry.max_retry_after,
                    )
                    _LOG.warning(
                        "Zooniverse rate limit (HTTP 429) on %s; waiting %.1f s (%d/%d).",
                        what,
                        wait,
                        rate_limited,
                        retry.rate_limit_retries,
                    )
                    retry.sleep(wait)
                    continue
                raise SubjectSetError(
                    f"Zooniverse at {self.endpoint} is still rate limiting (HTTP 429) after "
                    f"{retry.rate_limit_retries} waits; run again later (nothing is sent twice)."
                )
            body_json = self._json(response)
            self._refused(method, path, status, body_json, response.headers)
            if status in (401, 403):
                raise SubjectSetAuthError(
                    f"Zooniverse at {self.endpoint} refused {method} {path} (HTTP {status}) for the "
                    f"{self.credentials.describe()}: {redact(self._messages(body_json))}. Check that "
                    "they belong to a collaborator of the project and (OAuth application) have the "
                    "project and subject scopes."
                )
            if status == 404:
                raise ApiNotFoundError(f"{what}: HTTP 404: {redact(self._messages(body_json))}")
            if status >= 400:
                raise SubjectSetError(f"{what}: HTTP {status}: {redact(self._messages(body_json))}")
            return body_json

    def _refused(self, method: str, path: str, status: int, body: Any, headers: Any) -> None:
        """Raise the error a refusal for a scope, a role or the upload
        limit deserves (Panoptes' answers: doc/panoptes_standin.md).
        """
        message = self.redactor.redact(self._messages(body))
        where = f"Zooniverse at {self.endpoint} refused {method} {path}"
        if status == 403:
            limit = _UPLOAD_LIMIT.search(message)
            if limit:
                uploaded, maximum = int(limit.group(1)), int(limit.group(2))
                raise UploadLimitError(
                    f"{where}: the account of the {self.credentials.describe()} reached its upload limit, "
                    f"{uploaded} subjects of {maximum} (every subject it made counts, deleted ones too); "
                    "ask Zooniverse to raise it.",
                    uploaded=uploaded,
                    limit=maximum,
                )
            challenge = str((headers or {}).get("WWW-Authenticate") or "")
            if "insufficient_scope" in challenge:
                named = re.search(r'scope \\?"(\w+)', challenge)
                scope = named.group(1) if named else ("subject" if path == "/subjects" else "project")
                raise SubjectSetPermissionError(
                    f"{where}: the token of the {self.credentials.describe()} lacks the {scope!r} scope; "
                    f"give the OAuth application (or sign-in) the {scope!r} scope.",
                    scope=scope,
                )
        if status == 422 and _NOT_LINKABLE.search(message):
            raise SubjectSetPermissionError(
                f"{where}: {message}: the account of the {self.credentials.describe()} is not a "
                "collaborator (owner or collaborator role) of the Zooniverse project; ask its owner to "
                "add it.",
                role="collaborator",
            )

    @staticmethod
    def _json(response: Any) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    @staticmethod
    def _messages(body: Any) -> str:
        if isinstance(body, dict):
            errors = body.get("errors")
            if isinstance(errors, list):
                return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
            if body.get("error"):
                return str(body["error"])
        return "no details"

    def pages(self, slug: str, params: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
        """Yield every resource of a paginated index (``meta.next_href``).

        Parameters
        ----------
        slug : `str`
            Resource type (``subjects``, ``subject_sets``).
        params : `~collections.abc.Mapping`
            Query parameters of the first page.

        Yields
        ------
        resource : `dict`
            One resource, in the server's order.
        """
        answer = self.request("GET", f"/{slug}", params=params, idempotent=True) or {}
        while True:
            yield from answer.get(slug, [])
            next_href = (answer.get("meta", {}).get(slug) or {}).get("next_href")
            if not next_href:
                return
            if not next_href.startswith("/"):
                next_href = "/" + next_href
            answer = self.request("GET", next_href, idempotent=True) or {}
