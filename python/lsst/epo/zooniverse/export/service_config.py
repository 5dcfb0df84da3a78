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

"""Configuration of the export service: where its state, staging area and
public location are, which policy and notifiers it uses.

A YAML file (``zooniverse-epo --config FILE``, or the environment variable
``ZOONIVERSE_EPO_CONFIG``) with these keys, all optional::

    database: sqlite:///epo_service/state.sqlite3  # SQLAlchemy URL
    database_password_env: EPO_DB_PASSWORD  # password not in the file
    staging: epo_service/staging          # private, local directory
    public_root: epo_service/public       # any lsst.resources URI
    public_url: http://127.0.0.1:8080/    # URL prefix that serves public_root
                                          # (https, or http to loopback only)
    policy: policy.yaml                   # doc/export_policy.md
    claim_seconds: 600                    # lease of a worker on a dataset
    retrieval_attempts: 3                 # polls that may fail to read a file
    notify:                               # notifiers (log by default)
      - type: log
    review:                               # operators' review page (serve)
      operators:                          # who may log in, by name
        eve:
          token_env: EPO_REVIEW_TOKEN_EVE # secret in an environment variable
        mallory:
          token_file: secrets/mallory.token  # or in a file (mode 0600)
      session_seconds: 3600               # a login lasts this long
      secure_cookie: false                # true behind an HTTPS proxy

``public_url`` must be an ``https://`` URL: Zooniverse's pages are https
and browsers block images loaded over http (mixed content).  Plain
``http://`` is accepted only when the host is loopback (``localhost``,
127.0.0.0/8 or ``::1``), for the demo and tests.

Relative paths are relative to the configuration file (or to the current
directory without one).  Command-line options override the file.

The ``review`` section turns on the review page of ``zooniverse-epo
serve`` (doc/review_page.md).  Each operator has a name, recorded in the
audit log as the actor of the approvals and rejections made on the page,
and a secret (a token or password of at least 12 characters), read from
the environment variable ``token_env`` names or from the file
``token_file`` names (surrounding whitespace removed).  Secrets are never
written in the configuration file itself: ``token`` or ``password`` keys
are an error.  A token file readable by other users is accepted with a
warning.  Only SHA-256 digests of the secrets are kept in the
configuration object; the secrets themselves are added to the process's
`~lsst.epo.zooniverse.export.redaction.Redactor`, so they never appear in
logs or error messages.  Operator names are 1-64 characters from
``A-Za-z0-9_.@-`` and start with a letter, digit or ``_``.

The file is validated by pydantic models
(`~lsst.epo.zooniverse.export.settings_files`): an error names the file,
the key, the bad value and what is allowed.  Secrets are read by
`~lsst.epo.zooniverse.export.secrets.read_secret`.
"""

from __future__ import annotations

__all__ = ["DEFAULT_SERVICE_DIRECTORY", "ReviewSettings", "ServiceConfig", "ServiceConfigError"]

import dataclasses
import hashlib
import hmac
import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Any

import pydantic
import sqlalchemy as sa

from .manifest_format import is_loopback_url
from .notify import notifier_from_config
from .policy import DataRightsPolicy, PolicyError
from .secrets import SecretError, read_secret
from .settings_files import (
    HIDDEN,
    MISSING,
    SettingsModel,
    SettingValueError,
    read_settings_file,
    setting_message,
    validate_settings,
)

DEFAULT_SERVICE_DIRECTORY = "epo_service"
"""Directory (relative to the working directory) of the embedded defaults."""

_OPERATOR_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$")
_MIN_SECRET_LENGTH = 12
_ONE_SOURCE = "exactly one of token_env and token_file"
_OPERATORS_ALLOWED = "a mapping of at least one operator name to its token_env or token_file"
_PUBLIC_URL_ALLOWED = "an https:// URL with a host (http:// only to loopback: localhost, 127.0.0.0/8, ::1)"


class ServiceConfigError(ValueError):
    """The service configuration is invalid."""


def _path_text(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _sequence(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _public_url(value: Any) -> Any:
    """Accept an https URL with a host, or an http URL to loopback."""
    if value is None:
        return value
    if not isinstance(value, str) or not value.isprintable() or " " in value:
        raise SettingValueError(_PUBLIC_URL_ALLOWED)
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        raise SettingValueError(_PUBLIC_URL_ALLOWED) from None
    if parts.scheme.lower() == "https" and parts.hostname:
        return value
    if parts.scheme.lower() == "http" and is_loopback_url(value):
        return value
    raise SettingValueError(_PUBLIC_URL_ALLOWED)


def _policy_value(value: Any) -> Any:
    value = _path_text(value)
    if not isinstance(value, str | Mapping):
        raise SettingValueError("a policy file name or a mapping of policy keys to values")
    return value


_Path = Annotated[str, pydantic.BeforeValidator(_path_text)]
_Seconds = Annotated[float, pydantic.Field(strict=False)]


class _Operator(SettingsModel):
    """Where the secret of one review-page operator is."""

    token_env: str | None = None
    token_file: _Path | None = None

    @pydantic.model_validator(mode="before")
    @classmethod
    def _no_inline_secret(cls, values: Any) -> Any:
        for key in ("token", "password"):
            if isinstance(values, Mapping) and key in values:
                raise SettingValueError(
                    "token_env or token_file (secrets are not allowed in the configuration file; put the "
                    "token in an environment variable or a private file)",
                    key=key,
                    value=HIDDEN,
                )
        return values

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> _Operator:
        if self.token_env is None and self.token_file is None:
            raise SettingValueError(_ONE_SOURCE, problem="neither token_env nor token_file given")
        if self.token_env is not None and self.token_file is not None:
            raise SettingValueError(_ONE_SOURCE, problem="both token_env and token_file given")
        return self


class _Review(SettingsModel):
    """The ``review`` section."""

    operators: dict[str, _Operator] | None = None
    session_seconds: _Seconds = 3600.0
    secure_cookie: bool = False

    @pydantic.field_validator("operators", mode="before")
    @classmethod
    def _operator_names(cls, operators: Any) -> Any:
        if not isinstance(operators, Mapping) or not operators:
            raise SettingValueError(_OPERATORS_ALLOWED)
        for name in operators:
            if not isinstance(name, str) or not _OPERATOR_NAME.match(name):
                raise SettingValueError(
                    "valid operator names (1-64 characters from A-Za-z0-9_.@-, the first not . @ or -)",
                    value=str(name)[:64],
                    problem=f"{str(name)[:64]!r} is not a valid operator name",
                )
        return operators

    @pydantic.field_validator("session_seconds")
    @classmethod
    def _session_length(cls, seconds: float) -> float:
        if not 60 <= seconds <= 7 * 86400:
            raise SettingValueError("a number of seconds between 60 and 604800 (a week)")
        return seconds

    @pydantic.model_validator(mode="after")
    def _has_operators(self) -> _Review:
        if self.operators is None:
            raise SettingValueError(_OPERATORS_ALLOWED, key="operators", value=MISSING)
        return self


class _ServiceFile(SettingsModel):
    """The keys of a service configuration file."""

    database: str | None = None
    database_password_env: str | None = None
    staging: _Path | None = None
    public_root: _Path | None = None
    public_url: Annotated[str | None, pydantic.AfterValidator(_public_url)] = None
    policy: Annotated[Any, pydantic.BeforeValidator(_policy_value)] = None
    claim_seconds: _Seconds = 600.0
    retrieval_attempts: int = 3
    notify: Annotated[list[Any], pydantic.BeforeValidator(_sequence)] | None = None
    review: _Review | None = None

    @pydantic.field_validator("claim_seconds")
    @classmethod
    def _positive(cls, seconds: float) -> float:
        if not seconds > 0:
            raise SettingValueError("a positive number of seconds")
        return seconds

    @pydantic.field_validator("retrieval_attempts")
    @classmethod
    def _attempts(cls, attempts: int) -> int:
        if attempts < 1:
            raise SettingValueError("a positive whole number of attempts")
        return attempts


@dataclasses.dataclass(frozen=True)
class ReviewSettings:
    """Who may use the review page of ``zooniverse-epo serve``, and how
    long a login lasts.
    """

    operator_digests: Mapping[str, bytes] = dataclasses.field(repr=False)
    """SHA-256 digest of each operator's secret, by operator name."""
    session_seconds: float = 3600.0
    """Lifetime of a login session."""
    secure_cookie: bool = False
    """Mark the session cookie ``Secure`` (only sent over HTTPS)."""

    @property
    def operators(self) -> list[str]:
        """Names of the operators (`list` [`str`])."""
        return sorted(self.operator_digests)

    def authenticate(self, name: str, secret: str) -> str | None:
        """Check an operator's name and secret.

        Parameters
        ----------
        name : `str`
            Operator name as typed.
        secret : `str`
            Token or password as typed.

        Returns
        -------
        operator : `str` or `None`
            The operator's name, or `None` if the pair is not valid.

        Notes
        -----
        Every operator is compared, each with `hmac.compare_digest` on
        fixed-length digests, so the time taken says neither which names
        exist nor how much of a secret was right.
        """
        given_name = hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()
        given_secret = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()
        found = None
        for operator, digest in self.operator_digests.items():
            name_ok = hmac.compare_digest(hashlib.sha256(operator.encode("utf-8")).digest(), given_name)
            secret_ok = hmac.compare_digest(digest, given_secret)
            if name_ok & secret_ok:
                found = operator
        return found

    @classmethod
    def from_mapping(cls, values: Any, *, base: str, source: str | None = None) -> ReviewSettings:
        """Read the ``review`` section of a service configuration.

        Parameters
        ----------
        values : `~collections.abc.Mapping`
            The section.
        base : `str`
            Directory relative token files are relative to.
        source : `str`, optional
            The configuration file, for error messages.

        Returns
        -------
        settings : `ReviewSettings`
            The settings; the secrets are added to the default redactor.

        Raises
        ------
        ServiceConfigError
            Raised for unknown keys, inline secrets, missing or short
            secrets, bad operator names or bad values.  Messages never
            include a secret.
        """
        section = validate_settings(_Review, values, source=source, error=ServiceConfigError, prefix="review")
        return cls._from_section(section, base=base, source=source)

    @classmethod
    def _from_section(cls, section: _Review, *, base: str, source: str | None) -> ReviewSettings:
        """Read the operators' secrets of a validated ``review`` section."""
        head = f"{source}: " if source else ""
        digests: dict[str, bytes] = {}
        for name, entry in (section.operators or {}).items():
            key = f"review.operators.{name}." + ("token_env" if entry.token_env is not None else "token_file")
            try:
                if entry.token_env is not None:
                    secret = read_secret(env=entry.token_env, what=key)
                else:
                    secret = read_secret(file=os.path.join(base, entry.token_file or ""), what=key)
            except SecretError as err:
                raise ServiceConfigError(f"{head}{err}") from None
            if len(secret) < _MIN_SECRET_LENGTH:
                raise ServiceConfigError(
                    setting_message(
                        source,
                        key,
                        allowed=f"a secret of at least {_MIN_SECRET_LENGTH} characters",
                        problem="the secret is too short",
                    )
                )
            digests[name] = hashlib.sha256(secret.encode("utf-8")).digest()
        return cls(
            operator_digests=digests,
            session_seconds=section.session_seconds,
            secure_cookie=section.secure_cookie,
        )


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """Where the export service keeps things and what rules it applies."""

    database_url: sa.URL
    """State database (password included if one was given)."""
    staging: str
    """Private local directory for retrieved and quarantined files."""
    public_root: str
    """URI of the public location."""
    public_url: str
    """URL prefix under which ``public_root`` is served."""
    policy: DataRightsPolicy
    """Data-rights policy."""
    notify: tuple[Mapping[str, Any], ...] = ()
    """Notifier settings (see
    `~lsst.epo.zooniverse.export.notify.notifier_from_config`)."""
    claim_seconds: float = 600.0
    """How long a worker's claim on a dataset lasts without renewal."""
    retrieval_attempts: int = 3
    """How many polls may find a dataset's file missing, a directory or
    otherwise not a regular file before the dataset is rejected."""
    review: ReviewSettings | None = None
    """Operators of the review page; `None` if it is not configured."""

    @classmethod
    def load(cls, path: str | None = None, **overrides: Any) -> ServiceConfig:
        """Read a configuration file and apply overrides.

        Parameters
        ----------
        path : `str`, optional
            YAML file; ``ZOONIVERSE_EPO_CONFIG`` if not given; defaults only
            if neither.
        **overrides
            Values that replace the file's (`None` values are ignored);
            keys as in the file.

        Returns
        -------
        config : `ServiceConfig`
            The configuration.

        Raises
        ------
        ServiceConfigError
            Raised for an unreadable file, unknown keys or bad values; the
            message names the file, the key, the bad value and what is
            allowed.
        """
        path = path or os.environ.get("ZOONIVERSE_EPO_CONFIG") or None
        values: dict[str, Any] = {}
        base = os.getcwd()
        source = "service configuration"
        if path:
            values = read_settings_file(
                path, what="service configuration", error=ServiceConfigError, empty_ok=True
            )
            validate_settings(_ServiceFile, values, source=path, error=ServiceConfigError)
            base = os.path.dirname(os.path.abspath(path))
            source = path
        given = {k: v for k, v in overrides.items() if v is not None}
        if given:
            source = f"{source} with overrides {sorted(given)}"
        values.update(given)
        review = values.pop("review") if isinstance(values.get("review"), ReviewSettings) else None
        settings = validate_settings(_ServiceFile, values, source=source, error=ServiceConfigError)
        if settings.review is not None:
            review = ReviewSettings._from_section(settings.review, base=base, source=source)
        notify = tuple(settings.notify or ())
        try:
            notifier_from_config(list(notify), source=source)
        except ValueError as err:
            raise ServiceConfigError(str(err)) from None
        return cls(
            database_url=_database_url(settings, base, source),
            policy=_policy(settings.policy, base, source),
            notify=notify,
            claim_seconds=settings.claim_seconds,
            retrieval_attempts=settings.retrieval_attempts,
            review=review,
            **_locations(settings, base),
        )


def _local(value: str, base: str) -> str:
    return value if os.path.isabs(value) else os.path.join(base, value)


def _database_url(settings: _ServiceFile, base: str, source: str) -> sa.URL:
    """Make the state database's URL: SQLite files relative to ``base``
    (their directory created), the password read from its variable.
    """
    default_dir = _local(DEFAULT_SERVICE_DIRECTORY, base)
    database = settings.database or "sqlite:///" + os.path.join(default_dir, "state.sqlite3")
    try:
        url = sa.make_url(database)
    except sa.exc.ArgumentError:
        raise ServiceConfigError(setting_message(source, "database", allowed="a SQLAlchemy URL")) from None
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        url = url.set(database=_local(url.database, base))
        os.makedirs(os.path.dirname(url.database), exist_ok=True)
    if settings.database_password_env:
        try:
            password = read_secret(env=settings.database_password_env, what="database_password_env")
        except SecretError as err:
            raise ServiceConfigError(f"{source}: {err}") from None
        url = url.set(password=password)
    return url


def _locations(settings: _ServiceFile, base: str) -> dict[str, str]:
    """Resolve the staging area and public location, which must not
    contain each other.
    """
    default_dir = _local(DEFAULT_SERVICE_DIRECTORY, base)
    staging = _local(settings.staging or os.path.join(default_dir, "staging"), base)
    public_root = settings.public_root or os.path.join(default_dir, "public")
    if "://" not in public_root:
        public_root = _local(public_root, base)
        inside = os.path.commonpath([os.path.abspath(staging), os.path.abspath(public_root)])
        if inside in (os.path.abspath(staging), os.path.abspath(public_root)):
            raise ServiceConfigError(
                f"The staging area {staging} and the public location {public_root} must not contain "
                "each other: quarantined files would be public."
            )
    public_url = settings.public_url or "http://127.0.0.1:8080/"
    return {"staging": staging, "public_root": public_root, "public_url": public_url}


def _policy(value: str | Mapping[str, Any] | None, base: str, source: str) -> DataRightsPolicy:
    """Make the data-rights policy: defaults, inline, or a file relative to
    ``base``.
    """
    try:
        if value is None:
            return DataRightsPolicy()
        if isinstance(value, Mapping):
            return DataRightsPolicy.from_mapping(value, source=source, prefix="policy")
        return DataRightsPolicy.from_yaml(_local(value, base))
    except PolicyError as err:
        raise ServiceConfigError(str(err)) from None
