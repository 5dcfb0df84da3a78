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

Relative paths are relative to the configuration file (or to the current
directory without one).  Command-line options override the file.
"""

from __future__ import annotations

__all__ = ["DEFAULT_SERVICE_DIRECTORY", "ServiceConfig", "ServiceConfigError"]

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
import yaml

from .policy import DataRightsPolicy, PolicyError

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
}


class ServiceConfigError(ValueError):
    """The service configuration is invalid."""


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
        return cls(
            database_url=url,
            staging=staging,
            public_root=public_root,
            public_url=public_url,
            policy=policy,
            notify=tuple(notify),
            claim_seconds=claim_seconds,
        )
