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

"""Request bodies of the JSON API (pydantic models; they make the OpenAPI
schema).
"""

from __future__ import annotations

__all__ = [
    "BulkDecision",
    "MarkRead",
    "ProjectRegistration",
    "PublishRequest",
    "WithdrawalRequest",
    "WithdrawalResolution",
]

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectRegistration(_Body):
    """Register a project; its owner is the caller."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Short project name.")
    zooniverse_project_id: int = Field(gt=0, description="The Zooniverse project's id.")
    repo: str = Field(min_length=1, max_length=1000, description="Butler repository (label or URI).")
    collections: str = Field(
        min_length=1, max_length=1000, description="Collection or glob under u/<your user name>/."
    )
    dataset_types: list[str] = Field(default=["zooniverse_rgb"], min_length=1, max_length=10)
    contact: str | None = Field(default=None, max_length=1000, description="E-mail address(es).")
    metadata_policy: Literal["full", "anonymised", "anonymized"] = "full"


class MarkRead(_Body):
    """Mark inbox messages as read (all of them without ``ids``)."""

    ids: list[int] | None = Field(default=None, max_length=1000)


class WithdrawalRequest(_Body):
    """Ask EPO to withdraw a picture, a batch, or the whole project."""

    batch: str | None = Field(default=None, max_length=128)
    entry: str | None = Field(default=None, max_length=160, description="A picture of the batch.")
    reason: str = Field(min_length=1, max_length=2000)


class BulkDecision(_Body):
    """Approve or reject several batches (or some of their images)."""

    decision: Literal["approve", "reject"]
    batches: list[str] = Field(min_length=1, max_length=500)
    reason: str | None = Field(default=None, max_length=2000, description="Needed to reject.")
    entries: dict[str, list[str]] | None = Field(
        default=None, description="Per batch, only these images (the whole batch if absent)."
    )


class PublishRequest(_Body):
    """Publish approved images (of every project without ``project``)."""

    project: str | None = Field(default=None, max_length=64)


class WithdrawalResolution(_Body):
    """Close a withdrawal request."""

    state: Literal["done", "refused"]
    note: str | None = Field(default=None, max_length=2000, description="What was done, or why not.")
