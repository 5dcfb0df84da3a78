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

"""Settings of the web application, from environment variables (as Safir
applications read theirs, with pydantic-settings).

Every setting is an environment variable EPO_WEB_<KEY>; a bad value
raises  naming the variable.  doc/deployment.md lists
them all.
"""

from __future__ import annotations

__all__ = ["AUTH_MODES", "LOGGER_NAME", "WebSettings", "WebSettingsError", "load_web_settings"]

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pydantic
import pydantic_settings

AUTH_MODES = ("tokens", "gafaelfawr")
"""How users are authenticated: bearer tokens made by
``zooniverse-epo-web token create`` (standalone, demo, tests), or the
headers of Gafaelfawr's ingress."""

ENV_PREFIX = "EPO_WEB_"

LOGGER_NAME = "lsst.epo.zooniverse.web"
"""The structlog logger of the web application (under ``lsst.``)."""

_PREFIX = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
_SCOPE = re.compile(r"^[A-Za-z0-9:._-]+$")
_USER = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebSettingsError(ValueError):
    """A setting of the web application is missing or wrong; the message
    names the environment variable.
    """


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class WebSettings(pydantic_settings.BaseSettings):
    """The web application's settings (environment variables
    ``EPO_WEB_<KEY>``, keys in upper case).
    """

    model_config = pydantic_settings.SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, case_sensitive=False
    )

    config: str | None = None
    """The export service's configuration file (``zooniverse-epo --config``):
    database, staging, public location and policy.  The defaults of
    ``ServiceConfig.load`` if not given."""

    name: str = "epo-zooniverse"
    """Application name (logs and metadata)."""

    path_prefix: str = "/epo-zooniverse"
    """URL path under which the application is served (the ingress path)."""

    auth: Literal["tokens", "gafaelfawr"] = "tokens"
    """``tokens`` or ``gafaelfawr`` (see `AUTH_MODES`)."""

    trusted_proxies: Annotated[list[Network], pydantic_settings.NoDecode] = []
    """Networks of the reverse proxies (comma-separated CIDR).  Only a peer
    in them may set ``X-Forwarded-For``/``-Proto``, and in ``gafaelfawr``
    mode only requests from them are believed."""

    operator_scope: str = "exec:admin"
    """Gafaelfawr scope that makes a user an operator."""

    operators: Annotated[list[str], pydantic_settings.NoDecode] = []
    """User names that are operators in ``gafaelfawr`` mode, whatever their
    scopes (comma-separated)."""

    rate_limit: int = 600
    """Requests per minute per user (or per client address before
    authentication)."""

    digest_seconds: float = 60.0
    """How often the PIs' notification digests are sent."""

    public_path: str | None = None
    """Serve the public location's files under this path (``/public``);
    not served if unset (leave them to any static server)."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level."""

    log_profile: Literal["development", "production"] = "production"
    """Safir's log profile: JSON lines (production) or readable text."""

    csrf_secret: pydantic.SecretStr | None = None
    """Key of the review page's form tokens (random per process if unset;
    set it when several replicas serve the page)."""

    @pydantic.field_validator("trusted_proxies", "operators", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split(value)

    @pydantic.field_validator("path_prefix", "public_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not _PREFIX.match(value):
            raise ValueError("must be a path like /epo-zooniverse (no trailing slash)")
        return value

    @pydantic.field_validator("operator_scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        if not _SCOPE.match(value):
            raise ValueError("must be a scope name like exec:admin")
        return value

    @pydantic.field_validator("operators")
    @classmethod
    def _users(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _USER.match(name):
                raise ValueError(f"{name!r} is not a user name (1-64 of A-Za-z0-9_.@-)")
        return value

    @pydantic.field_validator("rate_limit")
    @classmethod
    def _positive_int(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @pydantic.field_validator("digest_seconds")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not 1 <= value <= 86400:
            raise ValueError("must be between 1 and 86400 seconds")
        return value

    def is_trusted_proxy(self, address: str | None) -> bool:
        """Tell whether an address is one of the trusted proxies.

        Parameters
        ----------
        address : `str` or `None`
            The peer's IP address.

        Returns
        -------
        trusted : `bool`
            `False` for no address or one that does not parse.
        """
        return is_in_networks(address, self.trusted_proxies)


def is_in_networks(address: str | None, networks: list[Network]) -> bool:
    """Tell whether an IP address is in one of some networks.

    Parameters
    ----------
    address : `str` or `None`
        IP address.
    networks : `list`
        Networks.

    Returns
    -------
    inside : `bool`
        `False` for no address or one that does not parse.
    """
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def load_web_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> WebSettings:
    """Read the settings from the environment.

    Parameters
    ----------
    environ : `~collections.abc.Mapping` [`str`, `str`], optional
        The variables (``os.environ`` if not given); only
        ``EPO_WEB_*`` are read.
    **overrides
        Values that take precedence (keys in lower case).

    Returns
    -------
    settings : `WebSettings`
        The settings.

    Raises
    ------
    WebSettingsError
        Raised for an unknown ``EPO_WEB_*`` variable or a bad value, naming
        the variable.
    """
    try:
        if environ is None:
            return WebSettings(**overrides)
        values: dict[str, Any] = {}
        for key, value in environ.items():
            if key.upper().startswith(ENV_PREFIX):
                values[key[len(ENV_PREFIX) :].lower()] = value
        values.update(overrides)
        return WebSettings.model_validate(values)
    except pydantic.ValidationError as err:
        problems = []
        for error in err.errors():
            key = ".".join(str(part) for part in error["loc"]) or "?"
            variable = ENV_PREFIX + key.split(".")[0].upper()
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{variable}: {message}")
        raise WebSettingsError("Bad web settings: " + "; ".join(problems)) from None
