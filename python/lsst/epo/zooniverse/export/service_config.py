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
    policy: policy.yaml                   # doc/export_policy.md
    claim_seconds: 600                    # lease of a worker on a dataset
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
"""

from __future__ import annotations

__all__ = ["DEFAULT_SERVICE_DIRECTORY", "ReviewSettings", "ServiceConfig", "ServiceConfigError"]

import dataclasses
import hashlib
import hmac
import logging
import os
import re
import stat
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
import yaml

from .policy import DataRightsPolicy, PolicyError
from .redaction import default_redactor

_LOG = logging.getLogger(__name__)

DEFAULT_SERVICE_DIRECTORY = "epo_service"
"""Directory (relative to the working directory) of the embedded defaults."""

_KEYS = {
    "database",
    "database_password_env",
    "staging",
    "public_root",
    "public_url",
    "policy",
    "claim_seconds",
    "notify",
    "review",
}
_REVIEW_KEYS = {"operators", "session_seconds", "secure_cookie"}
_OPERATOR_KEYS = {"token_env", "token_file"}
_OPERATOR_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$")
_MIN_SECRET_LENGTH = 12


class ServiceConfigError(ValueError):
    """The service configuration is invalid."""


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
    def from_mapping(cls, values: Any, *, base: str) -> ReviewSettings:
        """Read the ``review`` section of a service configuration.

        Parameters
        ----------
        values : `~collections.abc.Mapping`
            The section.
        base : `str`
            Directory relative token files are relative to.

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
        if not isinstance(values, Mapping):
            raise ServiceConfigError("review must be a mapping (keys: operators, session_seconds, ...).")
        unknown = sorted(set(values) - _REVIEW_KEYS)
        if unknown:
            raise ServiceConfigError(f"review: unknown keys {unknown}; known: {sorted(_REVIEW_KEYS)}.")
        operators = values.get("operators")
        if not isinstance(operators, Mapping) or not operators:
            raise ServiceConfigError("review.operators must map at least one operator name to its secret.")
        digests: dict[str, bytes] = {}
        for name, entry in operators.items():
            if not isinstance(name, str) or not _OPERATOR_NAME.match(name):
                raise ServiceConfigError(
                    f"review.operators: {str(name)[:64]!r} is not a valid operator name "
                    "(1-64 characters from A-Za-z0-9_.@-)."
                )
            where = f"review.operators.{name}"
            if not isinstance(entry, Mapping):
                raise ServiceConfigError(f"{where} must be a mapping with token_env or token_file.")
            if "token" in entry or "password" in entry:
                raise ServiceConfigError(
                    f"{where}: secrets are not allowed in the configuration file; put the token in an "
                    "environment variable (token_env) or a private file (token_file)."
                )
            unknown = sorted(set(entry) - _OPERATOR_KEYS)
            if unknown:
                raise ServiceConfigError(f"{where}: unknown keys {unknown}; known: {sorted(_OPERATOR_KEYS)}.")
            if len(entry) != 1:
                raise ServiceConfigError(f"{where} needs exactly one of token_env and token_file.")
            if "token_env" in entry:
                variable = str(entry["token_env"])
                if variable not in os.environ:
                    raise ServiceConfigError(f"{where}.token_env names {variable}, which is not set.")
                secret = os.environ[variable].strip()
            else:
                path = str(entry["token_file"])
                path = path if os.path.isabs(path) else os.path.join(base, path)
                try:
                    with open(path, encoding="utf-8") as stream:
                        mode = os.fstat(stream.fileno()).st_mode
                        secret = stream.read(4096).strip()
                except (OSError, UnicodeDecodeError) as err:
                    raise ServiceConfigError(
                        f"{where}.token_file: cannot read {path} ({type(err).__name__})."
                    ) from None
                if mode & (stat.S_IRWXG | stat.S_IRWXO):
                    _LOG.warning("The token file of operator %s (%s) is readable by other users.", name, path)
            if len(secret) < _MIN_SECRET_LENGTH:
                raise ServiceConfigError(
                    f"{where}: the secret must have at least {_MIN_SECRET_LENGTH} characters."
                )
            default_redactor().add(secret)
            digests[name] = hashlib.sha256(secret.encode("utf-8")).digest()
        try:
            session_seconds = float(values.get("session_seconds", 3600.0))
        except (TypeError, ValueError):
            raise ServiceConfigError("review.session_seconds must be a number of seconds.") from None
        if not 60 <= session_seconds <= 7 * 86400:
            raise ServiceConfigError("review.session_seconds must be between 60 and 604800 (a week).")
        secure_cookie = values.get("secure_cookie", False)
        if not isinstance(secure_cookie, bool):
            raise ServiceConfigError("review.secure_cookie must be true or false.")
        return cls(operator_digests=digests, session_seconds=session_seconds, secure_cookie=secure_cookie)


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
            Raised for an unreadable file, unknown keys or bad values.
        """
        path = path or os.environ.get("ZOONIVERSE_EPO_CONFIG") or None
        values: dict[str, Any] = {}
        base = os.getcwd()
        if path:
            try:
                with open(path) as stream:
                    loaded = yaml.safe_load(stream)
            except (OSError, yaml.YAMLError) as err:
                raise ServiceConfigError(f"Cannot read service configuration {path}: {err}") from None
            if loaded is None:
                loaded = {}
            if not isinstance(loaded, dict):
                raise ServiceConfigError(f"Service configuration {path} must be a mapping.")
            unknown = sorted(set(loaded) - _KEYS)
            if unknown:
                raise ServiceConfigError(
                    f"Service configuration {path}: unknown keys {unknown}; known: {sorted(_KEYS)}."
                )
            values.update(loaded)
            base = os.path.dirname(os.path.abspath(path))
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = sorted(set(values) - _KEYS)
        if unknown:
            raise ServiceConfigError(f"Unknown service configuration keys {unknown}.")

        def local(value: str) -> str:
            return value if os.path.isabs(value) else os.path.join(base, value)

        default_dir = local(DEFAULT_SERVICE_DIRECTORY)
        database = values.get("database") or "sqlite:///" + os.path.join(default_dir, "state.sqlite3")
        try:
            url = sa.make_url(str(database))
        except sa.exc.ArgumentError:
            raise ServiceConfigError("The database setting is not a SQLAlchemy URL.") from None
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            url = url.set(database=local(url.database))
            os.makedirs(os.path.dirname(url.database), exist_ok=True)
        password_env = values.get("database_password_env")
        if password_env:
            if password_env not in os.environ:
                raise ServiceConfigError(f"database_password_env names {password_env}, which is not set.")
            url = url.set(password=os.environ[password_env])
        staging = local(str(values.get("staging") or os.path.join(default_dir, "staging")))
        public_root = str(values.get("public_root") or os.path.join(default_dir, "public"))
        if "://" not in public_root:
            public_root = local(public_root)
        if "://" not in public_root:
            inside = os.path.commonpath([os.path.abspath(staging), os.path.abspath(public_root)])
            if inside in (os.path.abspath(staging), os.path.abspath(public_root)):
                raise ServiceConfigError(
                    f"The staging area {staging} and the public location {public_root} must not contain "
                    "each other: quarantined files would be public."
                )
        public_url = str(values.get("public_url") or "http://127.0.0.1:8080/")
        policy_value = values.get("policy")
        try:
            if policy_value is None:
                policy = DataRightsPolicy()
            elif isinstance(policy_value, Mapping):
                policy = DataRightsPolicy.from_mapping(policy_value, source=path or "configuration")
            else:
                policy = DataRightsPolicy.from_yaml(local(str(policy_value)))
        except PolicyError as err:
            raise ServiceConfigError(str(err)) from None
        notify = values.get("notify") or ()
        if isinstance(notify, Mapping) or not isinstance(notify, list | tuple):
            raise ServiceConfigError("notify must be a list of notifier settings.")
        try:
            claim_seconds = float(values.get("claim_seconds", 600.0))
        except (TypeError, ValueError):
            raise ServiceConfigError("claim_seconds must be a number of seconds.") from None
        if not claim_seconds > 0:
            raise ServiceConfigError("claim_seconds must be positive.")
        review_value = values.get("review")
        review = None
        if review_value is not None:
            review = (
                review_value
                if isinstance(review_value, ReviewSettings)
                else ReviewSettings.from_mapping(review_value, base=base)
            )
        return cls(
            database_url=url,
            staging=staging,
            public_root=public_root,
            public_url=public_url,
            policy=policy,
            notify=tuple(notify),
            claim_seconds=claim_seconds,
            review=review,
        )
