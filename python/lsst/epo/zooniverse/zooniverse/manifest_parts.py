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

"""Manifest parts of a subject set: what is written, where, and under
which public name.

A part holds subjects of one frame count only (single pictures first,
then multi-frame subjects) and at most the part size; every part is
validated (`lsst.epo.zooniverse.export.manifest.validate_manifest`)
before it is used.
"""

from __future__ import annotations

__all__ = [
    "MANIFEST_PREFIX",
    "default_manifest_directory",
    "import_chunks",
    "public_manifest_key",
    "write_manifest_parts",
]

import hashlib
import os
import re

from ..export.manifest import ManifestError, SubjectRow, validate_manifest, write_manifests
from .errors import SubjectSetError

MANIFEST_PREFIX = "_manifests"
"""Folder of the public location that holds the import manifests."""


def write_manifest_parts(
    rows: list[SubjectRow], directory: str, *, part_rows: int, url_prefix: str | None, metadata_policy: str
) -> list[str]:
    """Write and validate the manifest parts of some subjects.

    Parameters
    ----------
    rows : `list` [`~lsst.epo.zooniverse.export.manifest.SubjectRow`]
        The subjects.
    directory : `str`
        Where to write the parts.
    part_rows : `int`
        Most rows per part.
    url_prefix : `str` or `None`
        Public URL prefix every location must start with.
    metadata_policy : `str`
        The project's metadata policy (``full`` or ``anonymised``).

    Returns
    -------
    paths : `list` [`str`]
        The parts written.

    Raises
    ------
    SubjectSetError
        Raised if a part cannot be written or fails validation.
    """
    rows = sorted(rows, key=lambda row: len(row.locations))
    try:
        # Zooniverse keeps cells as they are: no spreadsheet escaping, so
        # the metadata is the same as POST /subjects sends.
        paths = write_manifests(rows, directory, limit=part_rows, escape_formulas=False)
    except ManifestError as err:
        raise SubjectSetError(f"Cannot write the manifest: {err}") from None
    for path in paths:
        findings = validate_manifest(
            path, limit=part_rows, url_prefix=url_prefix, metadata_policy=metadata_policy
        )
        if findings:
            raise SubjectSetError(f"{path} fails validation: " + "; ".join(f.message for f in findings[:5]))
    return paths


def default_manifest_directory(staging: str, project: str, subject_set_name: str) -> str:
    """Return where a subject set's manifest parts go by default.

    Parameters
    ----------
    staging : `str`
        The service's staging directory.
    project : `str`
        EPO project name.
    subject_set_name : `str`
        Display name of the set.

    Returns
    -------
    directory : `str`
        ``<staging>/subject_sets/<project>/<slug>-<hash>``: the slug is
        the name made safe for a path, the hash tells similar names apart.
    """
    digest = hashlib.sha256(subject_set_name.encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", subject_set_name).strip("._-")[:60] or "set"
    return os.path.join(staging, "subject_sets", project, f"{slug}-{digest}")


def import_chunks(rows: list[SubjectRow], part_rows: int) -> list[list[SubjectRow]]:
    """Split subjects into the chunks imported one manifest each.

    Parameters
    ----------
    rows : `list` [`~lsst.epo.zooniverse.export.manifest.SubjectRow`]
        The subjects.
    part_rows : `int`
        Most rows per chunk.

    Returns
    -------
    chunks : `list` [`list`]
        Chunks of one frame count and at most ``part_rows`` rows, fewest
        frames first.
    """
    chunks: list[list[SubjectRow]] = []
    for row in sorted(rows, key=lambda r: len(r.locations)):
        if not chunks or len(chunks[-1]) == part_rows or len(chunks[-1][0].locations) != len(row.locations):
            chunks.append([])
        chunks[-1].append(row)
    return chunks


def public_manifest_key(project: str, subject_set_id: int, data: bytes) -> str:
    """Return the public name of a manifest part.

    Parameters
    ----------
    project : `str`
        EPO project name.
    subject_set_id : `int`
        Zooniverse id of the set.
    data : `bytes`
        The part's content.

    Returns
    -------
    key : `str`
        Content-addressed: the import worker reads the manifest again
        later, so a part is never replaced in place.
    """
    return "/".join(
        (
            MANIFEST_PREFIX,
            project,
            f"set-{subject_set_id}",
            f"manifest-{hashlib.sha256(data).hexdigest()[:16]}.csv",
        )
    )
