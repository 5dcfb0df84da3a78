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
"""Registration of PI projects: the rules a project's name, owner,
collections, dataset types, metadata policy and contact must follow.
"""

from __future__ import annotations

__all__ = ["OWNER_NAME", "PROJECT_NAME", "ProjectRegistration", "collection_pattern_problem"]

import json
import logging
import re
from collections.abc import Sequence

import sqlalchemy as sa

from ..timestamps import utc_now_iso
from .outcomes import ExportServiceError
from .policy import METADATA_POLICIES, DataRightsPolicy
from .records import ProjectRecord
from .repository import StateRepository

_LOG = logging.getLogger(__name__)

PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
"""What a project name must match: it is the first part of public names."""

OWNER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
"""What an owner (an RSP user name) must match."""

_EMAIL_ADDRESS = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")


def collection_pattern_problem(pattern: str, owner: str) -> str | None:
    """Tell why a collection name or glob may not be registered for an
    owner.

    Parameters
    ----------
    pattern : `str`
        Collection name or glob.
    owner : `str`
        The PI's user name.

    Returns
    -------
    problem : `str` or `None`
        Why not; `None` if it is under ``u/<owner>/`` whatever the glob
        matches.
    """
    prefix = f"u/{owner}/"
    if not pattern or not pattern.startswith(prefix) or len(pattern) == len(prefix):
        return f"collections must be under {prefix}"
    if any(c.isspace() for c in pattern) or "\\" in pattern:
        return "whitespace or backslash in the collection name"
    if any(part in ("", ".", "..") for part in pattern.split("/")):
        return "empty, '.' or '..' path component"
    # The literal part must stay in the namespace whatever the glob
    # matches: u/alice* would match u/alice2/...
    if any(c in pattern[: len(prefix)] for c in "*?["):
        return "a glob in the owner part"
    return None


class ProjectRegistration:
    """Registers PI projects.

    Parameters
    ----------
    repository : `~.repository.StateRepository`
        The state database.
    policy : `~.policy.DataRightsPolicy`
        Which dataset types may be registered.
    """

    def __init__(self, repository: StateRepository, policy: DataRightsPolicy) -> None:
        self.repository = repository
        self.store = repository.store
        self.policy = policy

    @staticmethod
    def _check_identity(name: str, zooniverse_project_id: int, owner: str) -> None:
        """Refuse a bad project name, owner or Zooniverse project id."""
        if not PROJECT_NAME.match(name or ""):
            raise ExportServiceError(f"Project name {name!r} must match {PROJECT_NAME.pattern}.")
        if not OWNER_NAME.match(owner or ""):
            raise ExportServiceError(f"Owner {owner!r} is not a valid user name.")
        if not isinstance(zooniverse_project_id, int) or zooniverse_project_id <= 0:
            raise ExportServiceError("The Zooniverse project id must be a positive integer.")

    def _check_collections(self, name: str, collections: str, owner: str, actor: str) -> None:
        """Refuse, and audit the refusal of, collections outside the
        owner's namespace.
        """
        problem = collection_pattern_problem(collections, owner)
        if not problem:
            return
        with self.store.writing() as connection:
            self.store.audit(
                connection,
                actor,
                "refused",
                project=name,
                detail=f"register {collections!r} for owner {owner}: {problem}",
            )
        _LOG.warning("Refused to register %r for %s: %s", collections, owner, problem)
        raise ExportServiceError(f"Cannot register {collections!r} for {owner}: {problem}")

    def _check_content(
        self, dataset_types: tuple[str, ...], contact: str | None, metadata_policy: str
    ) -> None:
        """Refuse a dataset type, metadata policy or contact."""
        if not dataset_types:
            raise ExportServiceError("At least one dataset type is needed.")
        for dataset_type in dataset_types:
            if not self.policy.allows_dataset_type(dataset_type):
                raise ExportServiceError(
                    f"Dataset type {dataset_type!r} is not allowed by the data-rights policy "
                    f"(allowed: {', '.join(self.policy.dataset_types)})."
                )
        if metadata_policy not in METADATA_POLICIES:
            raise ExportServiceError(f"Metadata policy must be one of {METADATA_POLICIES}.")
        if contact:
            for address in contact.split(","):
                if not _EMAIL_ADDRESS.match(address):
                    raise ExportServiceError(f"Contact {address!r} is not an e-mail address.")

    def register(
        self,
        name: str,
        *,
        zooniverse_project_id: int,
        owner: str,
        repo: str,
        collections: str,
        dataset_types: Sequence[str],
        contact: str | None,
        metadata_policy: str,
        actor: str,
    ) -> ProjectRecord:
        """Register a PI project and return its `~.records.ProjectRecord`: see
        `~.service.ExportService.register_project` (here every argument is
        given, ``actor`` too).
        """
        self._check_identity(name, zooniverse_project_id, owner)
        self._check_collections(name, collections, owner, actor)
        dataset_types = tuple(dataset_types)
        self._check_content(dataset_types, contact, metadata_policy)
        values = {
            "name": name,
            "zooniverse_project_id": zooniverse_project_id,
            "owner": owner,
            "contact": contact,
            "repo": repo,
            "collections": collections,
            "dataset_types": json.dumps(list(dataset_types)),
            "metadata_policy": metadata_policy,
            "registered_at": utc_now_iso(),
            "registered_by": actor,
        }
        try:
            with self.store.writing() as connection:
                self.repository.add_project(connection, values)
                self.store.audit(
                    connection,
                    actor,
                    "registered",
                    project=name,
                    detail=f"owner={owner} repo={repo} collections={collections} "
                    f"types={','.join(dataset_types)} zooniverse={zooniverse_project_id}",
                )
        except sa.exc.IntegrityError:
            raise ExportServiceError(f"A project named {name!r} is already registered.") from None
        return self.repository.project(name)
