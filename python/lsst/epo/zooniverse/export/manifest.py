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


"""Zooniverse subject manifests for the ``subject_set_imports`` API.

`subject_row` turns one published image (its public URL and its
``index.csv`` row) into a `SubjectRow`, following the project's metadata
policy.  `write_manifests` writes rows as CSV manifests of at most
`MANIFEST_ROW_LIMIT` rows each, in the form the server-side import
(Panoptes ``SubjectSetImport::CsvImport``) reads::

    external_id,location:1,metadata:bands,metadata:!stretch
    s-3f9c...,https://epo.example.org/zooniverse/p/b/x.png,gri,asinh

`validate_manifest` checks any manifest offline before it is sent, and
`main` does so for files named on a command line (both in
`lsst.epo.zooniverse.export.manifest_validation`, importable from here).
The rules and their reasons are in ``doc/zooniverse_manifest.md``.

Metadata whose key starts with ``#`` is hidden only in the Zooniverse
web interface: the public API returns every metadata value.  Nothing that
must stay private may be put in a manifest.
"""

from __future__ import annotations

__all__ = [
    "LOCATION_EXTENSIONS",
    "MANIFEST_ROW_LIMIT",
    "METADATA_POLICIES",
    "RULES",
    "ManifestError",
    "ManifestFinding",
    "SubjectRow",
    "anonymous_subject_id",
    "format_finding",
    "main",
    "subject_row",
    "validate_manifest",
    "write_manifests",
]

import csv
import dataclasses
import hashlib
import os
import re
import sys
import tempfile
import types
from collections.abc import Iterable, Mapping, Sequence

from ..formats.rgb_index import METADATA_POLICIES, normalize_metadata_policy
from .anonymisation import contains_token, looks_like_coordinate
from .csv_cells import escape_csv_row
from .index_checks import ANONYMISED_COLUMNS, identifying_index_value
from .manifest_format import EXTERNAL_ID_HEADER, LOCATION_EXTENSIONS, MANIFEST_ROW_LIMIT, location_problems
from .manifest_validation import RULES, ManifestFinding, format_finding, main, validate_manifest

_STANDARD_COLUMNS = ("object_id", "ra", "dec", "skymap", "tract", "patch", "bands", "coverage", "stretch")
# Index columns that never become metadata: the file name is in the URL,
# the WCS is ~1.5 kB of header, row_index and edge_distance are the
# pipeline's bookkeeping (catalog order, the one-picture-per-object choice).
_NOT_METADATA = ("file", "wcs", "row_index", "edge_distance")
_FULL_KEYS = {
    "object_id": "#object_id",
    "ra": "#ra",
    "dec": "#dec",
    "skymap": "#skymap",
    "tract": "#tract",
    "patch": "#patch",
    "bands": "bands",
    "coverage": "!coverage",
    "stretch": "!stretch",
}
_ANONYMISED_KEYS = {column: _FULL_KEYS[column] for column in ANONYMISED_COLUMNS}
_OPAQUE_NAME = re.compile(r"(?<![A-Za-z0-9])[bs]-[0-9a-f]{12,}(?![0-9a-f])")


class ManifestError(ValueError):
    """Raised when rows cannot make a valid import manifest."""


@dataclasses.dataclass(frozen=True)
class SubjectRow:
    """One subject of an import manifest.

    Parameters
    ----------
    external_id : `str`
        Identifier the import upserts on; unique within a subject set.
    locations : `tuple` [`str`, ...]
        Public image URLs in frame order (one for a single image).
    metadata : `~collections.abc.Mapping` [`str`, `str`]
        Metadata, keys with their visibility prefix (``#object_id``,
        ``!stretch``, ``bands``).

    Raises
    ------
    ManifestError
        Raised if the external id is empty, there is no location, a
        location would not import as an image, or a metadata key is empty
        or holds a colon, or a value is not a string.
    """

    external_id: str
    locations: tuple[str, ...]
    metadata: Mapping[str, str]

    def __post_init__(self) -> None:
        if not isinstance(self.external_id, str) or not self.external_id:
            raise ManifestError(f"Subject external_id must be a non-empty string, not {self.external_id!r}.")
        if isinstance(self.locations, str):
            raise ManifestError(f"Subject {self.external_id!r}: locations must be a sequence of URLs.")
        locations = tuple(self.locations)
        if not locations:
            raise ManifestError(f"Subject {self.external_id!r} has no location.")
        for url in locations:
            problems = location_problems(url)
            if problems:
                raise ManifestError(f"Subject {self.external_id!r}: {problems[0][1]}.")
        metadata = dict(self.metadata)
        for key, value in metadata.items():
            if not isinstance(key, str) or not key or ":" in key:
                raise ManifestError(
                    f"Subject {self.external_id!r}: metadata key {key!r} must be non-empty and hold no colon."
                )
            if not isinstance(value, str):
                raise ManifestError(
                    f"Subject {self.external_id!r}: metadata {key!r} must be text, "
                    f"not {type(value).__name__}."
                )
        object.__setattr__(self, "locations", locations)
        object.__setattr__(self, "metadata", types.MappingProxyType(metadata))


def anonymous_subject_id(project: str, object_id: str) -> str:
    """Return the opaque, stable name of an object of an anonymised project.

    It is the subject's ``external_id`` and the public file name of its
    image (``<id>.png``): neither may show the catalog id.  The mapping
    back to the object stays on EPO's side; whoever knows the catalog and
    the project name can still recompute it (a hash, not a secret).

    Parameters
    ----------
    project : `str`
        Project name.
    object_id : `str`
        The PI's object id.

    Returns
    -------
    subject_id : `str`
        ``s-`` and 24 hexadecimal digits of SHA-256(project NUL object_id).
    """
    digest = hashlib.sha256(f"{project}\0{object_id}".encode()).hexdigest()
    return "s-" + digest[:24]


def subject_row(
    *,
    project: str,
    batch: str,
    entry: str,
    object_id: str,
    url: str,
    index_row: Mapping[str, str],
    metadata_policy: str,
    extra_frames: Sequence[str] = (),
) -> SubjectRow:
    """Build the manifest row of one published image.

    Parameters
    ----------
    project : `str`
        Project name.
    batch : `str`
        Batch name (used to name the image in errors).
    entry : `str`
        File name of the image in its batch (used to name it in errors).
    object_id : `str`
        Object id of the image.
    url : `str`
        Public URL of the image: the subject's first frame.
    index_row : `~collections.abc.Mapping` [`str`, `str`]
        The image's ``index.csv`` row, every value as text.
    metadata_policy : `str`
        ``full`` or ``anonymised`` (``anonymized`` is accepted).
    extra_frames : `~collections.abc.Sequence` [`str`], optional
        Public URLs of further frames, in order (a flipbook subject).

    Returns
    -------
    row : `SubjectRow`
        For ``full``: external id ``<project>:<object_id>``; metadata
        ``#object_id``, ``#ra``, ``#dec``, ``#skymap``, ``#tract``,
        ``#patch``, ``bands``, ``!coverage``, ``!stretch`` and ``#<name>``
        for each extra ``index.csv`` column (``file`` and ``wcs`` are never
        included).  ``#`` hides a value in the web interface only: the
        public API returns it.  For ``anonymised``: external id
        ``s-<24 hex digits>`` (start of the SHA-256 of ``<project>``, a
        NUL character and ``<object_id>``), metadata ``bands`` and
        ``!stretch`` only, which may not hold the object id or its
        coordinates.

    Raises
    ------
    ManifestError
        Raised if the project or object id is empty, ``index_row`` names
        another object, an extra column name is empty or holds a colon, a
        URL would not import as an image, or, for ``anonymised``, a URL
        holds the object id or a coordinate, or a published metadata value
        holds the object id or its coordinates.
    ValueError
        Raised for an unknown metadata policy.
    """
    # Long by its docstring; the body is the two policies side by side.
    policy = normalize_metadata_policy(metadata_policy)
    where = f"image {batch}/{entry} of project {project!r}"
    if not project or "\0" in project:
        raise ManifestError(f"{where}: the project name must be non-empty and hold no NUL.")
    if not object_id:
        raise ManifestError(f"{where}: empty object id.")
    row_object_id = index_row.get("object_id")
    if row_object_id is not None and row_object_id != object_id:
        raise ManifestError(f"{where}: index.csv row is for object {row_object_id!r}, not {object_id!r}.")
    locations = (url, *extra_frames)
    metadata: dict[str, str] = {}
    if policy == "full":
        external_id = f"{project}:{object_id}"
        metadata["#object_id"] = object_id
        for column, key in _FULL_KEYS.items():
            if column != "object_id" and column in index_row:
                metadata[key] = index_row[column]
        for column, value in index_row.items():
            if column in _STANDARD_COLUMNS or column in _NOT_METADATA:
                continue
            if not column or ":" in column:
                raise ManifestError(
                    f"{where}: index.csv column {column!r} cannot be a metadata key "
                    "(empty, or holds a colon the import would cut at)."
                )
            metadata["#" + column] = value
    else:
        external_id = anonymous_subject_id(project, object_id)
        for column, key in _ANONYMISED_KEYS.items():
            if column in index_row:
                metadata[key] = index_row[column]
        leak = identifying_index_value(index_row, object_id, _ANONYMISED_KEYS)
        if leak is not None:
            raise ManifestError(
                f"{where}: anonymised project, but index.csv column {leak[0]!r} holds the identifying "
                f"value {leak[1]!r} (object id or coordinate); it may not reach the manifest."
            )
        secrets = [object_id] + [index_row.get(c, "") for c in ("ra", "dec")]
        for location in locations:
            if not isinstance(location, str):
                continue
            # The service's own opaque names (batch b-<hex>, file s-<hex>)
            # are not the object's: an object named "b" is no leak there.
            checked = _OPAQUE_NAME.sub("", location)
            if any(contains_token(checked, s.strip()) for s in secrets) or looks_like_coordinate(checked):
                raise ManifestError(
                    f"{where}: anonymised project, but the public URL {location!r} holds the object id "
                    "or a coordinate; publish it under a name that does not."
                )
    try:
        return SubjectRow(external_id=external_id, locations=locations, metadata=metadata)
    except ManifestError as error:
        raise ManifestError(f"{where}: {error}") from None


# Writing


def _part_name(basename: str, number: int) -> str:
    return f"{basename}_part{number:03d}.csv"


def _write_part(
    directory: str, basename: str, number: int, rows: Sequence[SubjectRow], escape_formulas: bool
) -> str:
    """Write one part to a temporary file in ``directory``; return its
    path.
    """
    escape = escape_csv_row if escape_formulas else list
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row.metadata))
    frames = len(rows[0].locations)
    header = [EXTERNAL_ID_HEADER]
    header += [f"location:{k}" for k in range(1, frames + 1)]
    header += [f"metadata:{key}" for key in keys]
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{_part_name(basename, number)}.", suffix=".tmp")
    try:
        # mkstemp makes the file private; a manifest is served publicly.
        os.fchmod(fd, 0o644)
        with open(fd, "w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream, lineterminator="\r\n")
            writer.writerow(escape(header))
            for row in rows:
                writer.writerow(
                    escape([row.external_id, *row.locations, *(row.metadata.get(key, "") for key in keys)])
                )
            stream.flush()
            os.fsync(stream.fileno())
    except UnicodeEncodeError as error:
        os.unlink(temp)
        raise ManifestError(f"Manifest part {number}: text cannot be written as UTF-8 ({error}).") from None
    except BaseException:
        os.unlink(temp)
        raise
    return temp


def write_manifests(
    rows: Iterable[SubjectRow],
    directory: str,
    *,
    basename: str = "manifest",
    limit: int = MANIFEST_ROW_LIMIT,
    escape_formulas: bool = True,
) -> list[str]:
    """Write subject rows as one or more import manifests.

    Parameters
    ----------
    rows : `~collections.abc.Iterable` [`SubjectRow`]
        Rows, read once, in order; at most one part's rows are held in
        memory.
    directory : `str`
        Directory to write to (created if missing).
    basename : `str`, optional
        File name stem: parts are ``<basename>_part001.csv``,
        ``<basename>_part002.csv`` ... (``_part001`` even for a single
        part).
    limit : `int`, optional
        Most rows per part.
    escape_formulas : `bool`, optional
        Escape cells a spreadsheet would read as a formula
        (`~.csv_cells.escape_csv_row`): for manifests people open.  The
        parts the subject-set sync sends to Zooniverse are written with
        `False`: Zooniverse stores the cells as they are, and the values
        must be the same as those sent with ``POST /subjects``.

    Returns
    -------
    paths : `list` [`str`]
        Paths of the parts, in order (empty if there are no rows).

    Raises
    ------
    ManifestError
        Raised if external ids repeat (all repeated ids are named), or
        text cannot be encoded.  Nothing is written then.
    ValueError
        Raised if ``limit`` is not positive or ``basename`` is not a plain
        file name.

    Notes
    -----
    A part holds subjects of one frame count only (an empty
    ``location`` cell would import as a broken medium): a row whose frame
    count differs from the previous row's starts a new part, so sort the
    rows by frame count first to keep the parts few.

    Each part is RFC 4180 CSV in UTF-8 without byte order mark, with
    CRLF line ends.  Its header is ``external_id``,
    ``location:1`` ... ``location:N`` (``N`` the part's frame count),
    then ``metadata:<key>`` for every key of the part's rows in first-seen
    order; a row without a key gets an empty cell, which the import reads
    as a null value.  Parts are written to temporary files and moved into
    place (`os.replace`) only when every part is written; parts
    ``<basename>_partNNN.csv`` left by an earlier, longer run are then
    removed, so the directory holds exactly the returned set.
    """
    # Long by its docstring; the body is one streaming loop.
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, not {limit!r}.")
    if not basename or os.sep in basename or "/" in basename or basename in (".", ".."):
        raise ValueError(f"basename must be a plain file name, not {basename!r}.")
    os.makedirs(directory, exist_ok=True)
    seen: set[str] = set()
    duplicates: dict[str, int] = {}
    temps: list[str] = []
    part: list[SubjectRow] = []
    try:
        for row in rows:
            if not isinstance(row, SubjectRow):
                raise ManifestError(f"Expected a SubjectRow, not {type(row).__name__}.")
            if row.external_id in seen:
                duplicates[row.external_id] = duplicates.get(row.external_id, 1) + 1
                continue
            seen.add(row.external_id)
            if duplicates:
                # Nothing will be written; keep reading only to name every
                # repeated id.
                continue
            if part and len(row.locations) != len(part[0].locations):
                # One part cannot mix frame counts (an empty location cell
                # becomes a broken medium): this row starts the next part.
                temps.append(_write_part(directory, basename, len(temps) + 1, part, escape_formulas))
                part = []
            part.append(row)
            if len(part) == limit:
                temps.append(_write_part(directory, basename, len(temps) + 1, part, escape_formulas))
                part = []
        if duplicates:
            shown = ", ".join(f"{key!r} ({count}x)" for key, count in list(duplicates.items())[:20])
            more = f" and {len(duplicates) - 20} more" if len(duplicates) > 20 else ""
            raise ManifestError(f"Duplicate external_id: {shown}{more}.")
        if part:
            temps.append(_write_part(directory, basename, len(temps) + 1, part, escape_formulas))
            part = []
    except BaseException:
        for temp in temps:
            os.unlink(temp)
        raise
    paths = []
    for number, temp in enumerate(temps, start=1):
        path = os.path.join(directory, _part_name(basename, number))
        os.replace(temp, path)
        paths.append(path)
    number = len(paths) + 1
    while os.path.exists(stale := os.path.join(directory, _part_name(basename, number))):
        os.unlink(stale)
        number += 1
    return paths


if __name__ == "__main__":
    sys.exit(main())
