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

"""How to sign in to Zooniverse: `ZooniverseCredentials`, read from the
``PANOPTES_*`` environment variables panoptes-client knows or from a
YAML credentials file (parsed with the pydantic model
`CredentialsFileModel`).

Neither the repr nor any message shows a client secret or password.
"""

from __future__ import annotations

__all__ = [
    "CREDENTIAL_ENVIRONMENT_VARIABLES",
    "DEFAULT_ENDPOINT",
    "CredentialsFileModel",
    "ZooniverseCredentials",
]

import dataclasses
import os
import stat
import urllib.parse
from collections.abc import Mapping

import pydantic
import yaml

from ..export.secrets import SecretError, read_secret
from .errors import CredentialsError

DEFAULT_ENDPOINT = "https://www.zooniverse.org"
"""Zooniverse's production API (panoptes-client's default)."""

CREDENTIAL_ENVIRONMENT_VARIABLES = {
    "endpoint": "PANOPTES_ENDPOINT",
    "client_id": "PANOPTES_CLIENT_ID",
    "client_secret": "PANOPTES_CLIENT_SECRET",
    "username": "PANOPTES_USERNAME",
    "password": "PANOPTES_PASSWORD",
}
"""Environment variable of each credential (panoptes-client's names); the
keys are also the keys of a credentials file."""

_SECRET_KEYS = ("client_secret", "password")


class CredentialsFileModel(pydantic.BaseModel):
    """The content of a Zooniverse credentials file.

    Every key is optional here; `ZooniverseCredentials` checks that they
    make one complete set.  Numbers are read as text (a numeric client
    id); other keys than these are refused.
    """

    model_config = pydantic.ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    endpoint: str | None = None
    """API endpoint (default: `DEFAULT_ENDPOINT`)."""
    client_id: str | None = None
    """OAuth application id."""
    client_secret: str | None = None
    """OAuth application secret."""
    username: str | None = None
    """Zooniverse login."""
    password: str | None = None
    """Zooniverse password."""


def _read_environment_secret(key: str) -> str:
    """Read a secret credential from its environment variable with the
    project's one secret reader.
    """
    name = CREDENTIAL_ENVIRONMENT_VARIABLES[key]
    try:
        return read_secret(env=name, what=f"Zooniverse {key.replace('_', ' ')}")
    except SecretError as err:
        raise CredentialsError(str(err)) from None


def _file_problem(path: str, err: pydantic.ValidationError) -> str:
    """Describe what is wrong in a credentials file: the key, the bad
    value (never a secret's) and what is allowed.
    """
    problems = err.errors()
    unknown = sorted(str(p["loc"][0]) for p in problems if p["type"] == "extra_forbidden")
    if unknown:
        return (
            f"Zooniverse credentials file {path}: unknown keys {', '.join(unknown)}; allowed: "
            f"{', '.join(CREDENTIAL_ENVIRONMENT_VARIABLES)}."
        )
    texts = []
    for problem in problems:
        key = ".".join(str(part) for part in problem["loc"])
        value = problem.get("input")
        shown = "a value" if key in _SECRET_KEYS else repr(value)
        texts.append(
            f"{key} is {shown} of type {type(value).__name__}, but must be text "
            "(in quotes if YAML reads it otherwise)"
        )
    return f"Zooniverse credentials file {path}: " + "; ".join(texts) + "."


@dataclasses.dataclass(frozen=True, repr=False)
class ZooniverseCredentials:
    """How to sign in to Zooniverse: an OAuth application's client id and
    secret (recommended: a token with the ``project`` scope,
    doc/zooniverse_facts.md §6), or a user name and password.

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
            Environment, taken as it is.  If not given, the process's
            environment, whose client secret and password are read by
            `~lsst.epo.zooniverse.export.secrets.read_secret` (surrounding
            whitespace removed, value registered with the process's
            redactor).

        Returns
        -------
        credentials : `ZooniverseCredentials`
            From ``PANOPTES_ENDPOINT``, ``PANOPTES_CLIENT_ID``,
            ``PANOPTES_CLIENT_SECRET``, ``PANOPTES_USERNAME`` and
            ``PANOPTES_PASSWORD``.

        Raises
        ------
        CredentialsError
            Raised if they are missing or incomplete, or a secret is blank.
        """
        values = {
            key: (environ if environ is not None else os.environ).get(name) or None
            for key, name in CREDENTIAL_ENVIRONMENT_VARIABLES.items()
        }
        if environ is None:
            for key in _SECRET_KEYS:
                if values[key] is not None:
                    values[key] = _read_environment_secret(key)
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
        try:
            model = CredentialsFileModel.model_validate(content)
        except pydantic.ValidationError as err:
            raise CredentialsError(_file_problem(path, err)) from None
        values = model.model_dump()
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
