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
"""The Zooniverse subjects of a project's published images (one per
catalog object), and the import manifests that carry them.
"""

from __future__ import annotations

__all__ = ["ProjectSubjects"]

from collections.abc import Mapping, Sequence
from typing import Any

from .manifest import ManifestError, SubjectRow, subject_row, validate_manifest, write_manifests
from .outcomes import ExportServiceError
from .publication import PublicLocation
from .reports import Reports
from .repository import StateRepository


class ProjectSubjects:
    """Makes a project's subjects and manifests.

    Parameters
    ----------
    repository : `~.repository.StateRepository`
        The state database.
    public : `~.publication.PublicLocation`
        Where public images are (manifests are checked against its URL).
    reports : `~.reports.Reports`
        Lists the published images.
    """

    def __init__(self, repository: StateRepository, public: PublicLocation, reports: Reports) -> None:
        self.repository = repository
        self.public = public
        self.reports = reports

    def subject_rows(
        self, project: str, images: Sequence[Mapping[str, Any]] | None = None
    ) -> list[SubjectRow]:
        """Return the Zooniverse subjects of a project's published images:
        see `~.service.ExportService.subject_rows`.
        """
        record = self.repository.project(project)
        if images is None:
            images = self.reports.published_images(project)
        try:
            return [
                subject_row(
                    project=record.name,
                    batch=image["batch"],
                    entry=image["entry"],
                    object_id=image["object_id"],
                    url=image["url"],
                    index_row=image["index_row"],
                    metadata_policy=record.metadata_policy,
                    extra_frames=image.get("frames", ()),
                )
                for image in images
            ]
        except ManifestError as err:
            raise ExportServiceError(f"Cannot make the subjects of {project}: {err}") from None

    def write_manifests(self, project: str, directory: str) -> list[str]:
        """Write and validate the import manifests of a project's
        published images: see `~.service.ExportService.write_manifests`.
        """
        record = self.repository.project(project)
        # Single pictures first, then multi-frame subjects (a part holds
        # one frame count).
        rows = sorted(self.subject_rows(project), key=lambda row: len(row.locations))
        try:
            paths = write_manifests(rows, directory)
        except ManifestError as err:
            raise ExportServiceError(f"Cannot write the manifest of {project}: {err}") from None
        for path in paths:
            findings = validate_manifest(
                path, url_prefix=self.public.url_prefix, metadata_policy=record.metadata_policy
            )
            if findings:
                raise ExportServiceError(
                    f"{path} fails validation: " + "; ".join(f.message for f in findings[:5])
                )
        return paths
