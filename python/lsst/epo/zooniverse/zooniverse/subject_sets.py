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

"""Send a project's published images to its Zooniverse project as a
subject set (issue 5 §3).

Two methods (ZOONIVERSE.md §1.5, §2.2, §7):

``import`` (recommended)
    Write the manifest parts (at most 10,000 rows each) of the subjects
    not yet in the set to the public location, ``POST /subject_set_imports``
    with each part's public URL, poll the import until it is done, check
    its counts and list the set to verify every ``external_id`` arrived.
``subjects``
    Create one subject per row with remote locations (``{mime: url}``:
    Zooniverse stores the link, not the image) and the row's metadata.
    The subject create API has no ``external_id`` (its schema refuses other
    properties), so the external id is kept in the metadata under
    `EXTERNAL_ID_METADATA_KEY`; each subject is linked to the set in the
    same request that creates it (``links.subject_sets``, as the
    Zooniverse web uploader does), so a subject is never created outside
    the set.

Both are idempotent by external id: before sending anything the set's
subjects are listed on the server, and every subject known to be in the
set is recorded in the state database (``zooniverse_subjects``); a rerun
sends only what is missing, whether the previous run stopped on a server
error, was killed between creating and recording, or finished.

panoptes-client does the authentication (client credentials or
password), the JSON-API headers and the token refresh; the requests
themselves go through `panoptes_client.Panoptes.http_request` with the
client's own retries off, because ``Subject.save`` retries a create five
times on any API error (which can create duplicates after a lost answer)
and ``SubjectSet.add`` makes one request per subject.  Instead:

* HTTP 429 is retried after the ``Retry-After`` it gives (bounded);
* a server error (5xx) or a lost connection is retried only for reads;
  a create that fails stops the run with an error saying how much was
  done and that rerunning resumes;
* HTTP 401/403 is an authentication error naming the endpoint.

Secrets (client secret, password, bearer token) are added to the
service's redactor as soon as they are read and never appear in
messages, audit records, logs or reprs.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_ENDPOINT",
    "EXTERNAL_ID_METADATA_KEY",
    "METHODS",
    "CredentialsError",
    "SubjectSetAuthError",
    "SubjectSetError",
    "SubjectSetPublisher",
    "SubjectSetSummary",
    "ZooniverseCredentials",
]

import dataclasses
import datetime
import email.utils
import getpass
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import yaml

from ..export.manifest import (
    MANIFEST_ROW_LIMIT,
    ManifestError,
    SubjectRow,
    validate_manifest,
    write_manifests,
)
from ..export.progress import NoProgress
from ..export.service import ExportServiceError
from ..export.state import (
    ZOONIVERSE_IMPORTS,
    ZOONIVERSE_SUBJECT_SETS,
    ZOONIVERSE_SUBJECTS,
    insert_ignoring_duplicates,
)
from ..timestamps import utc_now_iso

if TYPE_CHECKING:
    from ..export.progress import Progress
    from ..export.redaction import Redactor
    from ..export.service import ExportService

_LOG = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://www.zooniverse.org"
"""Zooniverse's production API (panoptes-client's default)."""

METHODS = ("import", "subjects")
"""How subjects are sent: ``import`` (subject_set_imports of a public
manifest) or ``subjects`` (one create request per subject)."""

EXTERNAL_ID_METADATA_KEY = "#external_id"
"""Metadata key holding the external id of subjects created by the
``subjects`` method (the subject create API has no ``external_id``).
``#`` hides it in the web interface; the public API still returns it."""

_ENVIRONMENT = {
    "endpoint": "PANOPTES_ENDPOINT",
    "client_id": "PANOPTES_CLIENT_ID",
    "client_secret": "PANOPTES_CLIENT_SECRET",
    "username": "PANOPTES_USERNAME",
    "password": "PANOPTES_PASSWORD",
}
_MIME_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
_MANIFEST_PREFIX = "_manifests"


class SubjectSetError(RuntimeError):
    """A subject set cannot be created or filled.

    Parameters
    ----------
    message : `str`
        What went wrong (no secrets).
    summary : `SubjectSetSummary`, optional
        What the run had done when it stopped.
    """

    def __init__(self, message: str, summary: SubjectSetSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


class SubjectSetAuthError(SubjectSetError):
    """Zooniverse refused the credentials (or they do not allow the
    operation).
    """


class CredentialsError(SubjectSetError):
    """Credentials are missing, incomplete, or stored unsafely."""


# ----------------------------------------------------------------------
# Credentials.


@dataclasses.dataclass(frozen=True, repr=False)
class ZooniverseCredentials:
    """How to sign in to Zooniverse: an OAuth application's client id and
    secret (recommended: a token with the ``project`` scope, ZOONIVERSE.md
    §2.1), or a user name and password.

    Parameters
    ----------
    endpoint : `str`, optional
        API endpoint without trailing slash (production:
        `DEFAULT_ENDPOINT`; staging:
        ``https://panoptes-staging.zooniverse.org``).
    client_id : `str`, optional
        OAuth application id (with ``client_secret``; optional with a
        password: panoptes-client then uses its built-in first-party id).
    client_secret : `str`, optional
        OAuth application secret.
    username : `str`, optional
        Zooniverse login (with ``password``).
    password : `str`, optional
        Zooniverse password.
    source : `str`, optional
        Where they were read from, for messages.

    Raises
    ------
    CredentialsError
        Raised if neither a client id and secret nor a user name and
        password are given, both are, one half of a pair is missing, or
        the endpoint is not an http(s) URL.

    Notes
    -----
    The repr and every message show the endpoint, the kind and the
    source, never the secret or password.
    """

    endpoint: str = DEFAULT_ENDPOINT
    client_id: str | None = None
    client_secret: str | None = None
    username: str | None = None
    password: str | None = None
    source: str = "arguments"

    def __post_init__(self) -> None:
        endpoint = (self.endpoint or DEFAULT_ENDPOINT).rstrip("/")
        parsed = urllib.parse.urlsplit(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment:
            raise CredentialsError(
                f"Zooniverse endpoint {endpoint!r} ({self.source}) must be an http(s) URL "
                "such as https://www.zooniverse.org."
            )
        object.__setattr__(self, "endpoint", endpoint)
        has_client = bool(self.client_id or self.client_secret)
        has_user = bool(self.username or self.password)
        where = f"Zooniverse credentials ({self.source})"
        if has_client and self.client_secret and not self.client_id:
            raise CredentialsError(f"{where}: a client secret needs its client id.")
        if self.client_secret and has_user:
            raise CredentialsError(
                f"{where}: give either a client id and secret or a user name and password, not both."
            )
        if has_user and not (self.username and self.password):
            raise CredentialsError(f"{where}: a user name needs its password and a password its user name.")
        if not self.client_secret and not has_user:
            raise CredentialsError(
                f"{where}: none found; give a client id and secret (PANOPTES_CLIENT_ID, "
                "PANOPTES_CLIENT_SECRET) or a user name and password (PANOPTES_USERNAME, "
                "PANOPTES_PASSWORD), in the environment or a credentials file."
            )

    @property
    def kind(self) -> str:
        """``client_credentials`` or ``password``."""
        return "client_credentials" if self.client_secret else "password"

    def describe(self) -> str:
        """Say which credentials these are, without any secret.

        Returns
        -------
        text : `str`
            E.g. ``client credentials from the environment``.
        """
        kind = "client credentials" if self.kind == "client_credentials" else "user name and password"
        return f"{kind} from {self.source}"

    def __repr__(self) -> str:
        return (
            f"ZooniverseCredentials(endpoint={self.endpoint!r}, kind={self.kind!r}, source={self.source!r})"
        )

    __str__ = __repr__

    def secrets(self) -> list[str]:
        """Return the secret values (for a redactor).

        Returns
        -------
        secrets : `list` [`str`]
            Client secret and password, those given.
        """
        return [s for s in (self.client_secret, self.password) if s]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ZooniverseCredentials:
        """Read the variables panoptes-client itself knows.

        Parameters
        ----------
        environ : `~collections.abc.Mapping` [`str`, `str`], optional
            Environment (`os.environ` if not given).

        Returns
        -------
        credentials : `ZooniverseCredentials`
            From ``PANOPTES_ENDPOINT``, ``PANOPTES_CLIENT_ID``,
            ``PANOPTES_CLIENT_SECRET``, ``PANOPTES_USERNAME`` and
            ``PANOPTES_PASSWORD``.

        Raises
        ------
        CredentialsError
            Raised if they are missing or incomplete.
        """
        environ = os.environ if environ is None else environ
        values = {key: environ.get(name) or None for key, name in _ENVIRONMENT.items()}
        values["endpoint"] = values["endpoint"] or DEFAULT_ENDPOINT
        return cls(**values, source="the environment")

    @classmethod
    def from_file(cls, path: str) -> ZooniverseCredentials:
        """Read a YAML credentials file.

        Parameters
        ----------
        path : `str`
            File with ``endpoint`` (optional) and either ``client_id`` and
            ``client_secret`` or ``username`` and ``password``.  It must be
            a regular file owned by the current user and neither readable
            nor writable by group or others (``chmod 600``), as ssh
            requires of private keys.

        Returns
        -------
        credentials : `ZooniverseCredentials`
            The credentials.

        Raises
        ------
        CredentialsError
            Raised if the file is missing, unsafe, not a YAML mapping, has
            unknown keys, or the credentials are incomplete.  The message
            never quotes the file's content.
        """
        try:
            info = os.stat(path)
        except OSError as err:
            raise CredentialsError(
                f"Cannot read Zooniverse credentials file {path}: {err.strerror}."
            ) from None
        if not stat.S_ISREG(info.st_mode):
            raise CredentialsError(f"Zooniverse credentials file {path} is not a regular file.")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise CredentialsError(
                f"Zooniverse credentials file {path} has mode {mode:04o}: group or others can read or "
                f"write it, so its secret may already be known to others. Refusing it (like ssh does "
                f"with private keys); run 'chmod 600 {path}' and consider replacing the secret."
            )
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise CredentialsError(
                f"Zooniverse credentials file {path} belongs to another user (uid {info.st_uid}); "
                "refusing it."
            )
        try:
            with open(path, encoding="utf-8") as stream:
                content = yaml.safe_load(stream)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            # The YAML error could quote a line holding the secret.
            raise CredentialsError(
                f"Cannot read Zooniverse credentials file {path}: {type(err).__name__}."
            ) from None
        if not isinstance(content, dict):
            raise CredentialsError(
                f"Zooniverse credentials file {path} must be a YAML mapping with endpoint, client_id and "
                "client_secret (or username and password)."
            )
        unknown = sorted(str(k) for k in content if k not in _ENVIRONMENT)
        if unknown:
            raise CredentialsError(
                f"Zooniverse credentials file {path}: unknown keys {', '.join(unknown)}; allowed: "
                f"{', '.join(_ENVIRONMENT)}."
            )
        values = {key: (None if content.get(key) is None else str(content[key])) for key in _ENVIRONMENT}
        values["endpoint"] = values["endpoint"] or DEFAULT_ENDPOINT
        return cls(**values, source=f"file {path}")

    @classmethod
    def load(cls, path: str | None = None, environ: Mapping[str, str] | None = None) -> ZooniverseCredentials:
        """Read credentials from a file if one is given, else from the
        environment.

        Parameters
        ----------
        path : `str`, optional
            Credentials file (see `from_file`).
        environ : `~collections.abc.Mapping` [`str`, `str`], optional
            Environment (see `from_environment`).

        Returns
        -------
        credentials : `ZooniverseCredentials`
            The credentials.
        """
        return cls.from_file(path) if path else cls.from_environment(environ)


# ----------------------------------------------------------------------
# Summary.


@dataclasses.dataclass
class SubjectSetSummary:
    """What one subject-set run did (or, with ``dry_run``, would do)."""

    project: str
    """EPO project name."""
    zooniverse_project: int
    """Zooniverse project id."""
    subject_set_name: str
    """Display name of the subject set."""
    method: str
    """``import`` or ``subjects``."""
    dry_run: bool = False
    """Nothing was sent."""
    endpoint: str | None = None
    """Zooniverse API endpoint (`None` in a dry run without credentials)."""
    subject_set_id: int | None = None
    """Zooniverse id of the set (`None` in a dry run for a new set)."""
    subject_set_created: bool = False
    """The set was created by this run."""
    total: int = 0
    """Subjects the set should hold (one per published catalog object)."""
    pending: int = 0
    """Subjects this run had to send (would send, in a dry run)."""
    created: int = 0
    """Subjects this run created (or imported)."""
    already_present: int = 0
    """Subjects already in the set (by external id)."""
    linked: int = 0
    """Subjects created earlier (recorded) but missing from the set, linked
    to it again (``subjects`` method)."""
    failed: int = 0
    """Subjects that did not arrive (e.g. counted in an import's
    ``failed_count``)."""
    failed_external_ids: list[str] = dataclasses.field(default_factory=list)
    """External ids of the subjects that did not arrive (first 100)."""
    duplicates: list[str] = dataclasses.field(default_factory=list)
    """External ids the set holds more than once (made outside this
    service, or by a client that retried a create)."""
    manifests: list[str] = dataclasses.field(default_factory=list)
    """Manifest parts written: public URLs (``import``) or local paths
    (dry run and ``subjects``)."""
    imports: list[int] = dataclasses.field(default_factory=list)
    """Ids of the subject_set_imports created."""

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready `dict`."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        where = f"subject set {self.subject_set_name!r}" + (
            f" ({self.subject_set_id})" if self.subject_set_id is not None else ""
        )
        if self.dry_run:
            return (
                f"Dry run ({self.method}): would send {self.pending} of {self.total} subjects to {where} "
                f"of Zooniverse project {self.zooniverse_project}."
            )
        text = (
            f"{where} of Zooniverse project {self.zooniverse_project} ({self.method}): "
            f"{self.total} subjects, {self.created} sent now, {self.already_present} already there"
        )
        if self.linked:
            text += f", {self.linked} linked again"
        if self.failed:
            text += f", {self.failed} failed"
        if self.duplicates:
            text += f", {len(self.duplicates)} held twice"
        return text[0].upper() + text[1:] + "."


# ----------------------------------------------------------------------
# The API, through panoptes-client.


class _ImportStalledError(SubjectSetError):
    """A subject-set import whose counts stopped changing (its worker
    failed; Zooniverse does not retry it).
    """


class _NotFoundError(SubjectSetError):
    """HTTP 404 from the API."""


class _ServerError(SubjectSetError):
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


class _Api:
    """Authenticated JSON-API calls with our retry rules (see the module
    docstring).
    """

    def __init__(self, publisher: SubjectSetPublisher, credentials: ZooniverseCredentials) -> None:
        self._publisher = publisher
        self.credentials = credentials
        self.endpoint = credentials.endpoint
        self._last_response: Any = None
        self.client = self._connect()

    def __enter__(self) -> _Api:
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
        redactor = self._publisher.redactor
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
        return self._publisher.redactor.redact(" ".join(parts) or type(err).__name__)[:300]

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool,
    ) -> Any:
        """Send one request; return its JSON answer (`None` if empty).

        Reads (``idempotent``) are retried on 5xx and lost connections;
        any request is retried on 429 after its ``Retry-After``.
        """
        import requests
        from panoptes_client.panoptes import PanoptesAPIException

        publisher = self._publisher
        redact = publisher.redactor.redact
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
                if idempotent and server_failures < publisher.server_retries:
                    server_failures += 1
                    _LOG.warning(
                        "%s failed (%s); retrying in %.1f s (%d/%d).",
                        what,
                        reason,
                        publisher.retry_delay,
                        server_failures,
                        publisher.server_retries,
                    )
                    publisher.sleep(publisher.retry_delay)
                    continue
                raise _ServerError(f"{what} failed: {reason}") from None
            except KeyError as err:
                # panoptes-client's token refresh without an access token.
                raise SubjectSetAuthError(
                    f"Zooniverse at {self.endpoint} refused the {self.credentials.describe()}: "
                    f"{self._refusal(err)}."
                ) from None
            status = response.status_code
            if status == 429:
                if rate_limited < publisher.rate_limit_retries:
                    rate_limited += 1
                    wait = min(
                        _retry_after(response.headers.get("Retry-After"), publisher.retry_delay),
                        publisher.max_retry_after,
                    )
                    _LOG.warning(
                        "Zooniverse rate limit (HTTP 429) on %s; waiting %.1f s (%d/%d).",
                        what,
                        wait,
                        rate_limited,
                        publisher.rate_limit_retries,
                    )
                    publisher.sleep(wait)
                    continue
                raise SubjectSetError(
                    f"Zooniverse at {self.endpoint} is still rate limiting (HTTP 429) after "
                    f"{publisher.rate_limit_retries} waits; run again later (nothing is sent twice)."
                )
            body_json = self._json(response)
            if status in (401, 403):
                raise SubjectSetAuthError(
                    f"Zooniverse at {self.endpoint} refused {method} {path} (HTTP {status}) for the "
                    f"{self.credentials.describe()}: {redact(self._messages(body_json))}. Check that "
                    "they belong to a collaborator of the project and (OAuth application) have the "
                    "project and subject scopes."
                )
            if status == 404:
                raise _NotFoundError(f"{what}: HTTP 404: {redact(self._messages(body_json))}")
            if status >= 400:
                raise SubjectSetError(f"{what}: HTTP {status}: {redact(self._messages(body_json))}")
            return body_json

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
        """Yield every resource of a paginated index (``meta.next_href``)."""
        answer = self.request("GET", f"/{slug}", params=params, idempotent=True) or {}
        while True:
            yield from answer.get(slug, [])
            next_href = (answer.get("meta", {}).get(slug) or {}).get("next_href")
            if not next_href:
                return
            if not next_href.startswith("/"):
                next_href = "/" + next_href
            answer = self.request("GET", next_href, idempotent=True) or {}


# ----------------------------------------------------------------------
# The publisher.


def _external_id(subject: Mapping[str, Any]) -> str | None:
    value = subject.get("external_id") or (subject.get("metadata") or {}).get(EXTERNAL_ID_METADATA_KEY)
    return None if value in (None, "") else str(value)


def _mime_type(url: str) -> str:
    extension = os.path.splitext(urllib.parse.urlsplit(url).path)[1].lower()
    try:
        return _MIME_TYPES[extension]
    except KeyError:
        raise SubjectSetError(f"No image MIME type for location {url!r}.") from None


class SubjectSetPublisher:
    """Create and fill a project's subject set in its Zooniverse project.

    Parameters
    ----------
    service : `ExportService`
        The export service (state database, public location, redactor).
    credentials : `ZooniverseCredentials`, optional
        How to sign in (read from the environment when first needed if
        not given; a dry run needs none).
    server_retries : `int`, optional
        Retries of a read (GET) after a server error (5xx) or a lost
        connection; creates are never retried (see the module docstring).
        panoptes-client's own value is 5.
    retry_delay : `float`, optional
        Seconds between those retries (panoptes-client: 5), and the wait
        after a 429 without ``Retry-After``.
    rate_limit_retries : `int`, optional
        Waits after HTTP 429 before giving up, per request.
    max_retry_after : `float`, optional
        Longest wait honoured from a ``Retry-After`` header.
    poll_interval : `float`, optional
        Seconds between polls of a subject set import.
    import_stall_seconds : `float`, optional
        Declare an import dead when its counts have not changed for this
        long (Zooniverse's import worker does not retry: a failed one never
        finishes); a rerun then sends what is missing.
    import_timeout : `float`, optional
        Give up waiting for an import after this many seconds (it goes on
        on the server; a rerun verifies and sends what is missing).
    part_rows : `int`, optional
        Most rows per import manifest (Zooniverse's limit is 10,000).
    link_batch_size : `int`, optional
        Subjects per link request when relinking (``subjects`` method).
    page_size : `int`, optional
        Subjects per page when listing a set.
    sleep : `~collections.abc.Callable` [[`float`], `None`], optional
        How to wait (`time.sleep`; tests pass a recorder).
    """

    def __init__(
        self,
        service: ExportService,
        credentials: ZooniverseCredentials | None = None,
        *,
        server_retries: int = 5,
        retry_delay: float = 5.0,
        rate_limit_retries: int = 5,
        max_retry_after: float = 300.0,
        poll_interval: float = 10.0,
        import_stall_seconds: float = 900.0,
        import_timeout: float = 3600.0,
        part_rows: int = MANIFEST_ROW_LIMIT,
        link_batch_size: int = 100,
        page_size: int = 100,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= part_rows <= MANIFEST_ROW_LIMIT:
            raise ValueError(f"part_rows must be between 1 and {MANIFEST_ROW_LIMIT}, not {part_rows}.")
        self.service = service
        self.credentials = credentials
        self.server_retries = server_retries
        self.retry_delay = retry_delay
        self.rate_limit_retries = rate_limit_retries
        self.max_retry_after = max_retry_after
        self.poll_interval = poll_interval
        self.import_stall_seconds = import_stall_seconds
        self.import_timeout = import_timeout
        self.part_rows = part_rows
        self.link_batch_size = link_batch_size
        self.page_size = page_size
        self.sleep = sleep
        if credentials is not None:
            for secret in credentials.secrets():
                self.redactor.add(secret)

    @property
    def redactor(self) -> Redactor:
        """The service's redactor (secrets are added to it)."""
        return self.service.redactor

    def _api(self) -> _Api:
        """Sign in to Zooniverse with this publisher's credentials (the
        ``PANOPTES_*`` environment variables when it was given none).
        """
        if self.credentials is None:
            self.credentials = ZooniverseCredentials.from_environment()
        return _Api(self, self.credentials)

    # ------------------------------------------------------------------
    # Rows and state.

    def rows(self, project: str) -> list[SubjectRow]:
        """Return the subjects a project's set should hold: one per
        published catalog object, as `ExportService.write_manifests` makes
        them (same external ids, locations and metadata policy).

        Parameters
        ----------
        project : `str`
            Project name.

        Returns
        -------
        rows : `list` [`SubjectRow`]
            The rows.

        Raises
        ------
        SubjectSetError
            Raised if a row cannot be made.
        """
        try:
            return self.service.subject_rows(project)
        except ExportServiceError as err:
            raise SubjectSetError(str(err)) from None

    def _set_record(
        self, project_row_id: int, endpoint: str | None, name: str, subject_set_id: int | None = None
    ) -> dict[str, Any] | None:
        query = sa.select(ZOONIVERSE_SUBJECT_SETS).where(
            ZOONIVERSE_SUBJECT_SETS.c.project_id == project_row_id
        )
        if endpoint is not None:
            query = query.where(ZOONIVERSE_SUBJECT_SETS.c.endpoint == endpoint)
        if subject_set_id is not None:
            query = query.where(ZOONIVERSE_SUBJECT_SETS.c.subject_set_id == subject_set_id)
        else:
            query = query.where(ZOONIVERSE_SUBJECT_SETS.c.name == name)
        with self.service.store.reading() as connection:
            rows = connection.execute(query.order_by(ZOONIVERSE_SUBJECT_SETS.c.id)).mappings().all()
        return dict(rows[-1]) if rows else None

    def _record_set(
        self, record: Mapping[str, Any], endpoint: str, zooniverse_project: int, set_id: int, name: str
    ) -> int:
        with self.service.store.writing() as connection:
            insert_ignoring_duplicates(
                connection,
                ZOONIVERSE_SUBJECT_SETS,
                [
                    {
                        "project_id": record["id"],
                        "endpoint": endpoint,
                        "zooniverse_project_id": zooniverse_project,
                        "subject_set_id": set_id,
                        "name": name,
                        "created_at": utc_now_iso(),
                    }
                ],
            )
            return connection.execute(
                sa.select(ZOONIVERSE_SUBJECT_SETS.c.id).where(
                    ZOONIVERSE_SUBJECT_SETS.c.endpoint == endpoint,
                    ZOONIVERSE_SUBJECT_SETS.c.subject_set_id == set_id,
                )
            ).scalar_one()

    def _recorded(self, set_row_id: int | None) -> dict[str, int | None]:
        if set_row_id is None:
            return {}
        query = sa.select(ZOONIVERSE_SUBJECTS.c.external_id, ZOONIVERSE_SUBJECTS.c.subject_id).where(
            ZOONIVERSE_SUBJECTS.c.subject_set == set_row_id
        )
        with self.service.store.reading() as connection:
            return {str(e): s for e, s in connection.execute(query)}

    def _record_subjects(
        self, set_row_id: int, method: str, subjects: Iterable[tuple[SubjectRow, int | None]]
    ) -> int:
        rows = [
            {
                "subject_set": set_row_id,
                "external_id": row.external_id,
                "subject_id": subject_id,
                "method": method,
                "locations": json.dumps(list(row.locations)),
                "recorded_at": utc_now_iso(),
            }
            for row, subject_id in subjects
        ]
        with self.service.store.writing() as connection:
            return insert_ignoring_duplicates(connection, ZOONIVERSE_SUBJECTS, rows)

    def recorded_subjects(self, project: str, subject_set_name: str | None = None) -> list[dict[str, Any]]:
        """Return what the state database knows was sent.

        Parameters
        ----------
        project : `str`
            Project name.
        subject_set_name : `str`, optional
            Only this set.

        Returns
        -------
        subjects : `list` [`dict`]
            ``endpoint, zooniverse_project_id, subject_set_id,
            subject_set_name, external_id, subject_id, method, locations,
            recorded_at``, by set and external id.
        """
        record = self.service.project(project)
        sets, subjects = ZOONIVERSE_SUBJECT_SETS, ZOONIVERSE_SUBJECTS
        query = (
            sa.select(
                sets.c.endpoint,
                sets.c.zooniverse_project_id,
                sets.c.subject_set_id,
                sets.c.name.label("subject_set_name"),
                subjects.c.external_id,
                subjects.c.subject_id,
                subjects.c.method,
                subjects.c.locations,
                subjects.c.recorded_at,
            )
            .join(sets, sets.c.id == subjects.c.subject_set)
            .where(sets.c.project_id == record["id"])
            .order_by(sets.c.id, subjects.c.external_id)
        )
        if subject_set_name is not None:
            query = query.where(sets.c.name == subject_set_name)
        with self.service.store.reading() as connection:
            result = [dict(r) for r in connection.execute(query).mappings()]
        for row in result:
            row["locations"] = json.loads(row["locations"])
        return result

    def subject_sets(self, project: str) -> list[dict[str, Any]]:
        """List the subject sets of a project's Zooniverse project, as
        Zooniverse has them.

        Parameters
        ----------
        project : `str`
            EPO project name.

        Returns
        -------
        sets : `list` [`dict`]
            ``subject_set_id, display_name, set_member_subjects_count`` and
            ``recorded`` (`int`: subjects this service recorded as sent to
            the set), by id.

        Raises
        ------
        SubjectSetAuthError
            Raised if Zooniverse refuses the credentials.
        SubjectSetError
            Raised if Zooniverse cannot be reached or refuses the request.
        """
        record = self.service.project(project)
        zooniverse_project = int(record["zooniverse_project_id"])
        with self._api() as api:
            recorded: dict[int, int] = {}
            for row in self.recorded_subjects(project):
                if row["endpoint"] == api.endpoint:
                    recorded[row["subject_set_id"]] = recorded.get(row["subject_set_id"], 0) + 1
            listed = list(api.pages("subject_sets", {"project_id": zooniverse_project, "page_size": 100}))
        sets = [
            {
                "subject_set_id": int(item["id"]),
                "display_name": item.get("display_name", ""),
                "set_member_subjects_count": int(item.get("set_member_subjects_count") or 0),
                "recorded": recorded.get(int(item["id"]), 0),
            }
            for item in listed
        ]
        return sorted(sets, key=lambda s: s["subject_set_id"])

    def link_to_workflow(
        self, project: str, *, subject_set_name: str, workflow: int, operator: str | None = None
    ) -> bool:
        """Link a subject set this service filled to a workflow of the
        project's Zooniverse project, so that volunteers classify it.

        Parameters
        ----------
        project : `str`
            EPO project name.
        subject_set_name : `str`
            Display name of a subject set made by `sync`.
        workflow : `int`
            Zooniverse workflow id; it must belong to the registered
            Zooniverse project.
        operator : `str`, optional
            Who does it (audit log; default: the current user).

        Returns
        -------
        linked : `bool`
            `True` if linked now, `False` if it already was.

        Raises
        ------
        SubjectSetAuthError
            Raised if Zooniverse refuses the credentials.
        SubjectSetError
            Raised if no such set was made for the project, or the
            workflow does not exist or belongs to another project.
        """
        record = self.service.project(project)
        actor = operator or getpass.getuser()
        with self._api() as api:
            known = self._set_record(record["id"], api.endpoint, subject_set_name)
            if known is None:
                raise SubjectSetError(
                    f"No subject set {subject_set_name!r} was made for {project} at {api.endpoint}: "
                    "run subject-set first."
                )
            set_id = int(known["subject_set_id"])
            try:
                answer = api.request("GET", f"/workflows/{int(workflow)}", idempotent=True) or {}
            except _NotFoundError:
                raise SubjectSetError(f"Zooniverse has no workflow {workflow}.") from None
            (found,) = answer.get("workflows") or [{}]
            links = found.get("links") or {}
            if str(links.get("project")) != str(record["zooniverse_project_id"]):
                raise SubjectSetError(
                    f"Workflow {workflow} belongs to Zooniverse project {links.get('project')}, not to "
                    f"{project}'s project {record['zooniverse_project_id']}."
                )
            if str(set_id) in {str(i) for i in links.get("subject_sets") or ()}:
                return False
            api.request(
                "POST",
                f"/workflows/{int(workflow)}/links/subject_sets",
                body={"subject_sets": [str(set_id)]},
                idempotent=True,
            )
        self._audit(
            actor,
            "subject_set_linked",
            project,
            {"subject_set_id": set_id, "subject_set_name": subject_set_name, "workflow": int(workflow)},
        )
        _LOG.info("Linked subject set %r (%d) to workflow %d.", subject_set_name, set_id, workflow)
        return True

    def _audit(self, actor: str, action: str, project: str, detail: Mapping[str, Any]) -> None:
        try:
            with self.service.store.writing() as connection:
                self.service.store.audit(
                    connection,
                    actor,
                    action,
                    project=project,
                    detail=json.dumps(detail, sort_keys=True, default=str),
                )
        except Exception as err:  # The database itself may be the problem.
            _LOG.error("Cannot write the audit record %s: %s", action, self.redactor.redact(err))

    # ------------------------------------------------------------------
    # Manifests.

    def _write_parts(self, rows: list[SubjectRow], directory: str, policy: str) -> list[str]:
        # A part holds one frame count: single pictures first, then
        # multi-frame subjects.
        rows = sorted(rows, key=lambda row: len(row.locations))
        try:
            paths = write_manifests(rows, directory, limit=self.part_rows)
        except ManifestError as err:
            raise SubjectSetError(f"Cannot write the manifest: {err}") from None
        for path in paths:
            findings = validate_manifest(
                path, limit=self.part_rows, url_prefix=self.service.public.url_prefix, metadata_policy=policy
            )
            if findings:
                raise SubjectSetError(
                    f"{path} fails validation: " + "; ".join(f.message for f in findings[:5])
                )
        return paths

    def _default_directory(self, project: str, name: str) -> str:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:60] or "set"
        return os.path.join(self.service.config.staging, "subject_sets", project, f"{slug}-{digest}")

    # ------------------------------------------------------------------
    # Sync.

    def sync(
        self,
        project: str,
        *,
        subject_set_name: str,
        zooniverse_project: int | None = None,
        method: str = "import",
        dry_run: bool = False,
        progress: Progress | None = None,
        output_directory: str | None = None,
        operator: str | None = None,
    ) -> SubjectSetSummary:
        """Make the subject set hold one subject per published object,
        sending only what it does not hold yet.

        Parameters
        ----------
        project : `str`
            EPO project name.
        subject_set_name : `str`
            Display name of the set in the Zooniverse project; created if
            the project has no set of that name (recorded by this service
            or found on the server).
        zooniverse_project : `int`, optional
            Zooniverse project id; must be the registered one (the
            default).
        method : `str`, optional
            ``import`` or ``subjects`` (see the module docstring).
        dry_run : `bool`, optional
            Do everything except talking to Zooniverse: rows are made,
            written as manifests to ``output_directory`` and validated,
            and the counts reported (pending: not recorded as sent).
        progress : `Progress`, optional
            Receives progress per subject.
        output_directory : `str`, optional
            Where a dry run (and the ``subjects`` method) writes the
            manifest parts; default: under the staging directory.
        operator : `str`, optional
            Who runs it (audit log; default: the current user).

        Returns
        -------
        summary : `SubjectSetSummary`
            What was done.

        Raises
        ------
        SubjectSetAuthError
            Raised if Zooniverse refuses the credentials.
        SubjectSetError
            Raised if the set cannot be made complete: the message says
            how many subjects were created and that running again resumes;
            ``err.summary`` holds the counts.
        CredentialsError
            Raised if no usable credentials are configured.
        """
        if method not in METHODS:
            raise SubjectSetError(f"Unknown method {method!r}; use one of {', '.join(METHODS)}.")
        name = (subject_set_name or "").strip()
        if not name or len(name) > 255:
            raise SubjectSetError("The subject set name must be 1 to 255 characters.")
        record = self.service.project(project)
        registered = int(record["zooniverse_project_id"])
        if zooniverse_project is not None and int(zooniverse_project) != registered:
            raise SubjectSetError(
                f"Project {project} is registered with Zooniverse project {registered}, not "
                f"{zooniverse_project}; its images go only to the PI's own project."
            )
        progress = progress or NoProgress()
        actor = operator or getpass.getuser()
        summary = SubjectSetSummary(
            project=project,
            zooniverse_project=registered,
            subject_set_name=name,
            method=method,
            dry_run=dry_run,
        )
        rows = self.rows(project)
        summary.total = len(rows)
        try:
            if dry_run:
                self._dry_run(record, rows, summary, output_directory)
            else:
                self._sync(record, rows, summary, progress, output_directory)
        except SubjectSetError as err:
            err.summary = summary
            message = self.redactor.redact(err)
            self._audit(
                actor,
                "subject_set_failed",
                project,
                {**self._audit_detail(summary), "error": message},
            )
            _LOG.error("%s", message)
            raise
        self._audit(
            actor,
            "subject_set_dry_run" if dry_run else "subject_set_synced",
            project,
            self._audit_detail(summary),
        )
        return summary

    @staticmethod
    def _audit_detail(summary: SubjectSetSummary) -> dict[str, Any]:
        detail = summary.as_dict()
        detail.pop("failed_external_ids")
        detail["manifests"] = detail["manifests"][:20]
        detail["duplicates"] = detail["duplicates"][:20]
        return detail

    def _dry_run(
        self,
        record: Mapping[str, Any],
        rows: list[SubjectRow],
        summary: SubjectSetSummary,
        output_directory: str | None,
    ) -> None:
        endpoint = self.credentials.endpoint if self.credentials else None
        summary.endpoint = endpoint
        set_record = self._set_record(record["id"], endpoint, summary.subject_set_name)
        recorded = self._recorded(set_record["id"] if set_record else None)
        if set_record:
            summary.subject_set_id = int(set_record["subject_set_id"])
        pending = [row for row in rows if row.external_id not in recorded]
        summary.already_present = len(rows) - len(pending)
        summary.pending = len(pending)
        directory = output_directory or self._default_directory(record["name"], summary.subject_set_name)
        if pending:
            summary.manifests = self._write_parts(pending, directory, record["metadata_policy"])
        _LOG.info(
            "Dry run: %d of %d subjects of %s would be sent to subject set %r (%s); manifests in %s.",
            summary.pending,
            summary.total,
            record["name"],
            summary.subject_set_name,
            summary.method,
            directory,
        )

    def _sync(
        self,
        record: Mapping[str, Any],
        rows: list[SubjectRow],
        summary: SubjectSetSummary,
        progress: Progress,
        output_directory: str | None,
    ) -> None:
        with self._api() as api:
            self._sync_through(api, record, rows, summary, progress, output_directory)

    def _sync_through(
        self,
        api: _Api,
        record: Mapping[str, Any],
        rows: list[SubjectRow],
        summary: SubjectSetSummary,
        progress: Progress,
        output_directory: str | None,
    ) -> None:
        summary.endpoint = api.endpoint
        zooniverse_project = summary.zooniverse_project
        self._check_project(api, zooniverse_project)
        set_id, set_row_id = self._find_or_create_set(api, record, summary)
        self._wait_for_unfinished_imports(api, set_row_id)
        # What the set holds on the server is the truth: it covers a run
        # killed between creating subjects and recording them.
        on_server = self._list_set(api, set_id, summary)
        recorded = self._recorded(set_row_id)
        by_id = {row.external_id: row for row in rows}
        present = [(by_id[e], s) for e, s in on_server.items() if e in by_id]
        self._record_subjects(
            set_row_id, "found", [(r, s) for r, s in present if r.external_id not in recorded]
        )
        summary.already_present = len(present)
        pending = [row for row in rows if row.external_id not in on_server]
        summary.pending = len(pending)
        if not pending:
            _LOG.info(
                "Subject set %r (%d) already holds all %d subjects.",
                summary.subject_set_name,
                set_id,
                len(rows),
            )
            return
        progress.start(f"subject set {summary.subject_set_name}", len(pending))
        try:
            if summary.method == "import":
                self._import(api, record, set_id, set_row_id, pending, summary, progress)
            else:
                self._create(
                    api, record, set_id, set_row_id, pending, recorded, summary, progress, output_directory
                )
        finally:
            progress.finish()
        _LOG.info(
            "Subject set %r (%d) of Zooniverse project %d: %d created, %d already present, %d relinked, "
            "%d failed.",
            summary.subject_set_name,
            set_id,
            zooniverse_project,
            summary.created,
            summary.already_present,
            summary.linked,
            summary.failed,
        )

    def _check_project(self, api: _Api, zooniverse_project: int) -> None:
        try:
            answer = api.request("GET", f"/projects/{zooniverse_project}", idempotent=True) or {}
        except SubjectSetAuthError:
            raise
        except _ServerError:
            raise
        except SubjectSetError as err:
            raise SubjectSetError(
                f"Zooniverse project {zooniverse_project} is not visible at {api.endpoint} with the "
                f"{api.credentials.describe()}: {err}"
            ) from None
        if not answer.get("projects"):
            raise SubjectSetError(f"Zooniverse project {zooniverse_project} not found at {api.endpoint}.")

    def _find_or_create_set(
        self, api: _Api, record: Mapping[str, Any], summary: SubjectSetSummary
    ) -> tuple[int, int]:
        name = summary.subject_set_name
        zooniverse_project = summary.zooniverse_project
        known = self._set_record(record["id"], api.endpoint, name)
        if known is not None:
            set_id = int(known["subject_set_id"])
            answer = api.request("GET", "/subject_sets", params={"id": set_id}, idempotent=True) or {}
            if answer.get("subject_sets"):
                summary.subject_set_id = set_id
                return set_id, int(known["id"])
            _LOG.warning(
                "Subject set %d (%r) recorded for %s is gone from %s; looking for or creating another.",
                set_id,
                name,
                record["name"],
                api.endpoint,
            )
        matches = [
            s
            for s in api.pages("subject_sets", {"project_id": zooniverse_project, "page_size": 100})
            if s.get("display_name") == name
        ]
        if len(matches) > 1:
            raise SubjectSetError(
                f"Zooniverse project {zooniverse_project} has {len(matches)} subject sets named {name!r} "
                f"(ids {', '.join(str(s['id']) for s in matches)}); rename all but one."
            )
        if matches:
            set_id = int(matches[0]["id"])
            with self.service.store.reading() as connection:
                owner = connection.execute(
                    sa.select(ZOONIVERSE_SUBJECT_SETS.c.project_id).where(
                        ZOONIVERSE_SUBJECT_SETS.c.endpoint == api.endpoint,
                        ZOONIVERSE_SUBJECT_SETS.c.subject_set_id == set_id,
                    )
                ).scalar()
            if owner is not None and owner != record["id"]:
                # Two EPO projects of one Zooniverse project: never mix
                # their subjects (nor a full and an anonymised project's).
                raise SubjectSetError(
                    f"Subject set {name!r} ({set_id}) of Zooniverse project {zooniverse_project} belongs "
                    f"to another EPO project; choose another subject set name for {record['name']}."
                )
            _LOG.info("Using the existing subject set %r (%d).", name, set_id)
        else:
            answer = api.request(
                "POST",
                "/subject_sets",
                body={"subject_sets": {"display_name": name, "links": {"project": str(zooniverse_project)}}},
                idempotent=False,
            )
            set_id = int(answer["subject_sets"][0]["id"])
            summary.subject_set_created = True
            _LOG.info(
                "Created subject set %r (%d) in Zooniverse project %d.", name, set_id, zooniverse_project
            )
        summary.subject_set_id = set_id
        return set_id, self._record_set(record, api.endpoint, zooniverse_project, set_id, name)

    def _list_set(self, api: _Api, set_id: int, summary: SubjectSetSummary) -> dict[str, int]:
        """External id -> subject id of the subjects in a set."""
        found: dict[str, int] = {}
        seen: dict[str, int] = {}
        for subject in api.pages("subjects", {"subject_set_id": set_id, "page_size": self.page_size}):
            external_id = _external_id(subject)
            if external_id is None:
                continue
            seen[external_id] = seen.get(external_id, 0) + 1
            found.setdefault(external_id, int(subject["id"]))
        summary.duplicates = sorted(e for e, n in seen.items() if n > 1)
        if summary.duplicates:
            _LOG.warning(
                "Subject set %d holds %d external ids more than once (e.g. %s); they are not sent again.",
                set_id,
                len(summary.duplicates),
                summary.duplicates[0],
            )
        return found

    def _stopped(self, summary: SubjectSetSummary, err: SubjectSetError, what: str) -> SubjectSetError:
        return SubjectSetError(
            f"{err} — stopped after {what} {summary.created} of {summary.pending} subjects for subject set "
            f"{summary.subject_set_name!r} ({summary.subject_set_id}); run the same command again to "
            "send the rest (nothing is sent twice).",
            summary,
        )

    def _create(
        self,
        api: _Api,
        record: Mapping[str, Any],
        set_id: int,
        set_row_id: int,
        pending: list[SubjectRow],
        recorded: Mapping[str, int | None],
        summary: SubjectSetSummary,
        progress: Progress,
        output_directory: str | None,
    ) -> None:
        from panoptes_client import Subject

        directory = output_directory or self._default_directory(record["name"], summary.subject_set_name)
        summary.manifests = self._write_parts(pending, directory, record["metadata_policy"])
        # Created by an earlier run but not in the set (unlinked since):
        # link again rather than create a second subject.
        relink = [(row, recorded[row.external_id]) for row in pending if recorded.get(row.external_id)]
        create = [row for row in pending if not recorded.get(row.external_id)]
        try:
            for start in range(0, len(relink), self.link_batch_size):
                batch = relink[start : start + self.link_batch_size]
                try:
                    api.request(
                        "POST",
                        f"/subject_sets/{set_id}/links/subjects",
                        body={"subjects": [str(subject_id) for _, subject_id in batch]},
                        idempotent=True,
                    )
                except (SubjectSetAuthError, _ServerError):
                    raise
                except SubjectSetError as err:
                    # Some may be linked already (a retried request) or
                    # deleted: create only those that no longer exist.
                    _LOG.warning(
                        "Cannot link %d recorded subjects again (%s); checking them.", len(batch), err
                    )
                    linked, missing = self._relink_existing(api, set_id, summary, batch)
                    create.extend(missing)
                    summary.linked += linked
                    progress.advance(linked)
                    continue
                summary.linked += len(batch)
                progress.advance(len(batch))
            for row in create:
                subject = Subject()
                for url in row.locations:
                    subject.add_location({_mime_type(url): url})
                subject.metadata.update(row.metadata)
                subject.metadata[EXTERNAL_ID_METADATA_KEY] = row.external_id
                body = {
                    "subjects": {
                        "locations": subject.locations,
                        "metadata": subject.metadata,
                        "links": {"project": str(summary.zooniverse_project), "subject_sets": [str(set_id)]},
                    }
                }
                answer = api.request("POST", "/subjects", body=body, idempotent=False)
                subject.set_raw(answer["subjects"][0])
                self._record_subjects(set_row_id, "subjects", [(row, int(subject.id))])
                summary.created += 1
                progress.advance()
        except SubjectSetAuthError:
            raise
        except SubjectSetError as err:
            raise self._stopped(summary, err, "creating") from None

    def _relink_existing(
        self, api: _Api, set_id: int, summary: SubjectSetSummary, batch: list[tuple[SubjectRow, int]]
    ) -> tuple[int, list[SubjectRow]]:
        """After a refused link request: count the subjects that are in the
        set now, link those that still exist one request at a time, and
        return how many are linked and the rows whose subjects are gone.

        A subject that exists but cannot be linked stops the run: creating
        a second one would leave an orphan counted against the uploader's
        subject limit for good.
        """
        in_set = set(self._list_set(api, set_id, summary).values())
        waiting = [(row, subject_id) for row, subject_id in batch if subject_id not in in_set]
        linked = len(batch) - len(waiting)
        if not waiting:
            return linked, []
        ids = ",".join(str(subject_id) for _, subject_id in waiting)
        answer = api.request(
            "GET", "/subjects", params={"id": ids, "page_size": len(waiting)}, idempotent=True
        )
        existing = {int(s["id"]) for s in (answer or {}).get("subjects", [])}
        missing = []
        for row, subject_id in waiting:
            if subject_id not in existing:
                missing.append(row)
                continue
            api.request(
                "POST",
                f"/subject_sets/{set_id}/links/subjects",
                body={"subjects": [str(subject_id)]},
                idempotent=False,
            )
            linked += 1
        return linked, missing

    def _import(
        self,
        api: _Api,
        record: Mapping[str, Any],
        set_id: int,
        set_row_id: int,
        pending: list[SubjectRow],
        summary: SubjectSetSummary,
        progress: Progress,
    ) -> None:
        public = self.service.public
        # One manifest per chunk: one frame count, at most part_rows rows.
        chunks: list[list[SubjectRow]] = []
        for row in sorted(pending, key=lambda r: len(r.locations)):
            if (
                not chunks
                or len(chunks[-1]) == self.part_rows
                or len(chunks[-1][0].locations) != len(row.locations)
            ):
                chunks.append([])
            chunks[-1].append(row)
        with tempfile.TemporaryDirectory(prefix="subject-set-") as directory:
            paths = []
            for number, chunk in enumerate(chunks, start=1):
                written = self._write_parts(
                    chunk, os.path.join(directory, str(number)), record["metadata_policy"]
                )
                assert len(written) == 1, "a chunk is one manifest part"
                paths += written
            parts = []
            for path in paths:
                with open(path, "rb") as stream:
                    data = stream.read()
                # Content-addressed: the import worker reads the manifest
                # again later, so a part is never replaced in place.
                key = "/".join(
                    (
                        _MANIFEST_PREFIX,
                        record["name"],
                        f"set-{set_id}",
                        f"manifest-{hashlib.sha256(data).hexdigest()[:16]}.csv",
                    )
                )
                parts.append(public.write(key, data))
        summary.manifests = parts
        try:
            for url, part_rows in zip(parts, chunks, strict=True):
                answer = api.request(
                    "POST",
                    "/subject_set_imports",
                    body={"subject_set_imports": {"source_url": url, "links": {"subject_set": str(set_id)}}},
                    idempotent=False,
                )
                import_id = int(answer["subject_set_imports"][0]["id"])
                summary.imports.append(import_id)
                _LOG.info(
                    "Import %d of %s (%d subjects) into subject set %d.",
                    import_id,
                    url,
                    len(part_rows),
                    set_id,
                )
                self._record_import(set_row_id, import_id, url, len(part_rows))
                try:
                    result = self._wait_for_import(api, import_id)
                except _ImportStalledError:
                    self._finish_import(set_row_id, import_id, "stalled")
                    # Record what did arrive before saying so.
                    on_server = self._list_set(api, set_id, summary)
                    arrived = [(r, on_server[r.external_id]) for r in part_rows if r.external_id in on_server]
                    self._record_subjects(set_row_id, "import", arrived)
                    summary.created += len(arrived)
                    raise
                self._finish_import(set_row_id, import_id, "done")
                # Verify on the server rather than trusting the counts.
                on_server = self._list_set(api, set_id, summary)
                arrived = [
                    (row, on_server[row.external_id]) for row in part_rows if row.external_id in on_server
                ]
                missing = [row.external_id for row in part_rows if row.external_id not in on_server]
                self._record_subjects(set_row_id, "import", arrived)
                summary.created += len(arrived)
                summary.failed += len(missing)
                summary.failed_external_ids.extend(missing[: max(0, 100 - len(summary.failed_external_ids))])
                progress.advance(len(part_rows))
                if missing or int(result.get("failed_count") or 0):
                    _LOG.warning(
                        "Import %d: %s imported, %s failed of %s; %d subjects missing from the set.",
                        import_id,
                        result.get("imported_count"),
                        result.get("failed_count"),
                        result.get("manifest_count"),
                        len(missing),
                    )
        except SubjectSetAuthError:
            raise
        except SubjectSetError as err:
            raise self._stopped(summary, err, "importing") from None
        if summary.failed:
            raise SubjectSetError(
                f"{summary.failed} of {summary.pending} subjects did not arrive in subject set "
                f"{summary.subject_set_name!r} ({set_id}) "
                f"(e.g. {', '.join(summary.failed_external_ids[:5])}); "
                f"{summary.created} did. Zooniverse does not say why (failed ids are not in its API): check "
                "that their image URLs are public and end in .png, then run again to retry only those.",
                summary,
            )

    def _wait_for_import(self, api: _Api, import_id: int) -> dict[str, Any]:
        """Poll an import until it is done; time is counted in polls (so an
        injected ``sleep`` gives the same decisions).

        Raises `_ImportStalledError` if its counts stop changing for
        ``import_stall_seconds``, `SubjectSetError` after
        ``import_timeout``.
        """
        waited = unchanged = 0.0
        last: tuple[Any, ...] | None = None
        while True:
            answer = api.request("GET", f"/subject_set_imports/{import_id}", idempotent=True) or {}
            found = answer.get("subject_set_imports") or [{}]
            state = found[0]
            try:
                done = float(state.get("progress") or 0) >= 1.0
            except (TypeError, ValueError):
                done = False
            if done:
                return state
            counts = (state.get("imported_count"), state.get("failed_count"), state.get("progress"))
            unchanged = unchanged + self.poll_interval if counts == last else 0.0
            last = counts
            if unchanged >= self.import_stall_seconds:
                raise _ImportStalledError(
                    f"Import {import_id} stopped: {state.get('imported_count')} of "
                    f"{state.get('manifest_count')} imported and no change for {unchanged:.3g} s "
                    "(Zooniverse's import worker does not retry)"
                )
            if waited >= self.import_timeout:
                raise SubjectSetError(
                    f"Import {import_id} is still running after {self.import_timeout:.0f} s "
                    f"({state.get('imported_count')} of {state.get('manifest_count')} imported); "
                    "a rerun waits for it before sending anything"
                )
            self.sleep(self.poll_interval)
            waited += self.poll_interval

    def _record_import(self, set_row_id: int, import_id: int, url: str, rows: int) -> None:
        with self.service.store.writing() as connection:
            insert_ignoring_duplicates(
                connection,
                ZOONIVERSE_IMPORTS,
                [
                    {
                        "subject_set": set_row_id,
                        "import_id": import_id,
                        "source_url": url,
                        "rows": rows,
                        "started_at": utc_now_iso(),
                    }
                ],
            )

    def _finish_import(self, set_row_id: int, import_id: int, outcome: str) -> None:
        with self.service.store.writing() as connection:
            connection.execute(
                ZOONIVERSE_IMPORTS.update()
                .where(
                    ZOONIVERSE_IMPORTS.c.subject_set == set_row_id,
                    ZOONIVERSE_IMPORTS.c.import_id == import_id,
                )
                .values(finished_at=utc_now_iso(), outcome=outcome)
            )

    def _wait_for_unfinished_imports(self, api: _Api, set_row_id: int) -> None:
        """Wait for the imports an earlier run started and did not see
        finish: sending while one runs could make Zooniverse create a
        subject twice.
        """
        with self.service.store.reading() as connection:
            unfinished = (
                connection.execute(
                    sa.select(ZOONIVERSE_IMPORTS.c.import_id)
                    .where(
                        ZOONIVERSE_IMPORTS.c.subject_set == set_row_id,
                        ZOONIVERSE_IMPORTS.c.finished_at.is_(None),
                    )
                    .order_by(ZOONIVERSE_IMPORTS.c.id)
                )
                .scalars()
                .all()
            )
        for import_id in unfinished:
            _LOG.info("Waiting for import %d, started by an earlier run, to finish.", import_id)
            try:
                self._wait_for_import(api, import_id)
            except _ImportStalledError as err:
                _LOG.warning("%s; sending what is missing.", err)
                self._finish_import(set_row_id, import_id, "stalled")
                continue
            except _NotFoundError:
                self._finish_import(set_row_id, import_id, "gone")
                continue
            self._finish_import(set_row_id, import_id, "done")
