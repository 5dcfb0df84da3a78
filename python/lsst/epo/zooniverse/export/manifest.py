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
`main` does so for files named on a command line.  The rules and their
reasons are in ``doc/zooniverse_manifest.md``.

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

import argparse
import csv
import dataclasses
import hashlib
import os
import re
import sys
import tempfile
import types
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO

MANIFEST_ROW_LIMIT = 10_000
"""Most data rows in one import manifest (Panoptes
``SUBJECT_SET_IMPORT_MANIFEST_ROW_LIMIT``, default 10,000; a larger
manifest is refused when the import is created).
"""

METADATA_POLICIES = ("full", "anonymised")
"""Metadata policies a project may have."""

LOCATION_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif")
"""Lowercase URL path extensions the import maps to an image MIME type
that Panoptes accepts (we publish ``.png``).
"""

RULES: dict[str, str] = {
    "manifest.unreadable": "the file cannot be opened, is not UTF-8 or is not well-formed CSV",
    "manifest.bom": "the file starts with a UTF-8 byte order mark (it becomes part of the first header)",
    "manifest.empty": "the file has no header row",
    "manifest.no_rows": "the manifest has a header but no subject rows",
    "manifest.empty_header": "a header cell is empty",
    "manifest.duplicate_column": "a header other than location:/metadata: appears more than once",
    "manifest.missing_external_id": "there is no external_id column",
    "manifest.empty_external_id": "a row's external_id is empty",
    "manifest.duplicate_external_id": "an external_id appears in more than one row",
    "manifest.no_location_column": "there is no location:<k> column",
    "manifest.duplicate_location_column": "two location columns have the same <k>",
    "manifest.empty_location": "a location cell is empty",
    "manifest.location_not_url": "a location is not an absolute http(s) URL with a host",
    "manifest.location_query": "a location has a query string",
    "manifest.location_fragment": "a location has a fragment",
    "manifest.location_extension": "a location's path does not end in .png, .jpg, .jpeg or .gif",
    "manifest.location_prefix": "a location does not start with the public URL prefix",
    "manifest.empty_metadata_key": "a metadata: column has an empty key",
    "manifest.metadata_key_colon": "a metadata: key holds a colon (the import drops the rest)",
    "manifest.duplicate_metadata_key": "two metadata: columns give the same key after truncation",
    "manifest.ignored_column": "a column that subject_set_imports ignores",
    "manifest.field_count": "a row has a different number of fields than the header",
    "manifest.row_limit": "more rows than one import accepts",
    "manifest.identifying_metadata_key": "anonymised: a metadata key names an identifier or coordinate",
    "manifest.identifying_external_id": "anonymised: an external_id holds a coordinate-like number",
    "manifest.identifying_location": "anonymised: a location URL holds a coordinate-like number",
}
"""Every rule `validate_manifest` applies: stable id -> short description."""

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
_ANONYMISED_KEYS = {"bands": "bands", "stretch": "!stretch"}
_IDENTIFYING_KEYS = frozenset(
    ("object_id", "objectid", "id", "ra", "dec", "coord_ra", "coord_dec")
    + ("l", "b", "tract", "patch", "skymap", "wcs", "x", "y")
)
_HIDDEN_PREFIXES = ("//", "#", "!", "%")
_COORDINATE_LIKE = re.compile(r"\d\.\d{3,}")
_OPAQUE_NAME = re.compile(r"(?<![A-Za-z0-9])[bs]-[0-9a-f]{12,}(?![0-9a-f])")
_EXTERNAL_ID_HEADER = "external_id"


class ManifestError(ValueError):
    """Raised when rows cannot make a valid import manifest."""


def _normalize_policy(policy: str) -> str:
    canonical = {"anonymized": "anonymised"}.get(str(policy).lower(), str(policy).lower())
    if canonical not in METADATA_POLICIES:
        raise ValueError(f"Unknown metadata policy {policy!r}; expected one of {METADATA_POLICIES}.")
    return canonical


def _location_problems(url: object, url_prefix: str | None = None) -> list[tuple[str, str]]:
    """Return ``(rule, message)`` for each way ``url`` is not a location
    the import turns into a valid medium.
    """
    if not isinstance(url, str) or not url:
        return [("manifest.empty_location", "empty location")]
    shown = url if len(url) <= 200 else url[:200] + "..."
    problems = []
    parts = urllib.parse.urlsplit(url) if url.isprintable() and " " not in url else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(("manifest.location_not_url", f"{shown!r} is not an absolute http(s) URL"))
        return problems
    if "?" in url:
        problems.append(("manifest.location_query", f"{shown!r} has a query string (MIME type lost)"))
    if "#" in url:
        problems.append(("manifest.location_fragment", f"{shown!r} has a fragment (MIME type lost)"))
    last = parts.path.rsplit("/", 1)[-1]
    if "." not in last or "." + last.rsplit(".", 1)[1] not in LOCATION_EXTENSIONS:
        problems.append(
            (
                "manifest.location_extension",
                f"{shown!r} does not end in a lowercase {', '.join(LOCATION_EXTENSIONS)}",
            )
        )
    if url_prefix is not None and not url.startswith(url_prefix):
        problems.append(("manifest.location_prefix", f"{shown!r} does not start with {url_prefix!r}"))
    return problems


def _ruby_header_parts(header: str) -> tuple[str | None, str | None]:
    """``type, key = header.split(':')`` as Ruby does it (trailing empty
    parts dropped, only the first two kept).
    """
    parts = header.split(":")
    while parts and parts[-1] == "":
        parts.pop()
    return (parts[0] if parts else None, parts[1] if len(parts) > 1 else None)


def _strip_hidden_prefix(key: str) -> str:
    for prefix in _HIDDEN_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _contains_token(text: str, token: str) -> bool:
    """Whether ``token`` occurs in ``text`` not as part of a longer
    alphanumeric word.
    """
    return bool(token) and re.search(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", text) is not None


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
            problems = _location_problems(url)
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
        ``!stretch`` only.

    Raises
    ------
    ManifestError
        Raised if the project or object id is empty, ``index_row`` names
        another object, an extra column name is empty or holds a colon, a
        URL would not import as an image, or, for ``anonymised``, a URL
        holds the object id or a coordinate.
    ValueError
        Raised for an unknown metadata policy.
    """
    policy = _normalize_policy(metadata_policy)
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
        secrets = [object_id] + [index_row.get(c, "") for c in ("ra", "dec")]
        for location in locations:
            if not isinstance(location, str):
                continue
            # The service's own opaque names (batch b-<hex>, file s-<hex>)
            # are not the object's: an object named "b" is no leak there.
            checked = _OPAQUE_NAME.sub("", location)
            if any(_contains_token(checked, s.strip()) for s in secrets) or _COORDINATE_LIKE.search(checked):
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


def _write_part(directory: str, basename: str, number: int, rows: Sequence[SubjectRow]) -> str:
    """Write one part to a temporary file in ``directory``; return its
    path.
    """
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row.metadata))
    frames = len(rows[0].locations)
    header = [_EXTERNAL_ID_HEADER]
    header += [f"location:{k}" for k in range(1, frames + 1)]
    header += [f"metadata:{key}" for key in keys]
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{_part_name(basename, number)}.", suffix=".tmp")
    try:
        # mkstemp makes the file private; a manifest is served publicly.
        os.fchmod(fd, 0o644)
        with open(fd, "w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream, lineterminator="\r\n")
            writer.writerow(header)
            for row in rows:
                writer.writerow(
                    [row.external_id, *row.locations, *(row.metadata.get(key, "") for key in keys)]
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
                temps.append(_write_part(directory, basename, len(temps) + 1, part))
                part = []
            part.append(row)
            if len(part) == limit:
                temps.append(_write_part(directory, basename, len(temps) + 1, part))
                part = []
        if duplicates:
            shown = ", ".join(f"{key!r} ({count}x)" for key, count in list(duplicates.items())[:20])
            more = f" and {len(duplicates) - 20} more" if len(duplicates) > 20 else ""
            raise ManifestError(f"Duplicate external_id: {shown}{more}.")
        if part:
            temps.append(_write_part(directory, basename, len(temps) + 1, part))
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


# Validation


@dataclasses.dataclass(frozen=True)
class ManifestFinding:
    """One problem found in a manifest.

    Parameters
    ----------
    line : `int` or `None`
        1-based physical line where the CSV record starts (the header is
        line 1), `None` for the whole file.
    column : `str` or `None`
        Header of the column concerned, if any.
    rule : `str`
        Stable rule id (a key of `RULES`).
    message : `str`
        What is wrong.
    """

    line: int | None
    column: str | None
    rule: str
    message: str


def _decoded_lines(stream: IO[bytes], counter: list[int]) -> Iterator[str]:
    """Yield the physical lines of ``stream`` decoded as UTF-8, counting
    them in ``counter[0]`` (so a decoding error has an exact line).
    """
    for raw in stream:
        counter[0] += 1
        yield raw.decode("utf-8")


class _Validator:
    """State of one `validate_manifest` run."""

    def __init__(self, limit: int, url_prefix: str | None, policy: str | None) -> None:
        self.limit = limit
        self.url_prefix = url_prefix
        self.anonymised = policy == "anonymised"
        self.findings: list[ManifestFinding] = []
        self.header: list[str] = []
        self.external_id_index: int | None = None
        self.location_indices: list[int] = []
        self.external_ids: dict[str, int] = {}
        self.rows = 0

    def add(self, line: int | None, column: str | None, rule: str, message: str) -> None:
        self.findings.append(ManifestFinding(line, column, rule, message))

    def check_header(self, header: list[str]) -> None:
        self.header = header
        locations: dict[str, str] = {}
        metadata: dict[str, str] = {}
        plain: set[str] = set()
        for index, name in enumerate(header):
            kind, key = _ruby_header_parts(name)
            if not name:
                self.add(1, name, "manifest.empty_header", f"column {index + 1} has an empty header")
            elif name == _EXTERNAL_ID_HEADER:
                if self.external_id_index is None:
                    self.external_id_index = index
            elif kind == "location":
                after = name.partition(":")[2]
                if after in locations:
                    self.add(
                        1, name, "manifest.duplicate_location_column", f"location column {name!r} is repeated"
                    )
                locations[after] = name
                self.location_indices.append(index)
                continue
            elif kind == "metadata":
                self.check_metadata_header(name, key, metadata)
                continue
            else:
                self.add(
                    1, name, "manifest.ignored_column", f"column {name!r} is ignored by subject_set_imports"
                )
            if name in plain and name:
                self.add(1, name, "manifest.duplicate_column", f"column {name!r} is repeated")
            plain.add(name)
        if self.external_id_index is None:
            self.add(
                1,
                None,
                "manifest.missing_external_id",
                "no external_id column: every row would merge into one subject",
            )
        if not locations:
            self.add(1, None, "manifest.no_location_column", "no location:<k> column: subjects have no media")

    def check_metadata_header(self, name: str, key: str | None, seen: dict[str, str]) -> None:
        after = name.partition(":")[2]
        if not key:
            self.add(1, name, "manifest.empty_metadata_key", f"column {name!r} gives an empty metadata key")
            return
        if ":" in after:
            self.add(
                1,
                name,
                "manifest.metadata_key_colon",
                f"column {name!r}: the import keeps only the key {key!r}",
            )
        if key in seen:
            self.add(
                1,
                name,
                "manifest.duplicate_metadata_key",
                f"columns {seen[key]!r} and {name!r} both give the metadata key {key!r}",
            )
        seen.setdefault(key, name)
        if self.anonymised and _strip_hidden_prefix(key).strip().lower() in _IDENTIFYING_KEYS:
            self.add(
                1,
                name,
                "manifest.identifying_metadata_key",
                f"metadata key {key!r} names an identifier or coordinate; anonymised projects may not "
                "publish it (# hides it only in the web interface)",
            )

    def check_row(self, line: int, row: list[str]) -> None:
        self.rows += 1
        if len(row) != len(self.header):
            self.add(
                line,
                None,
                "manifest.field_count",
                f"{len(row)} field(s), the header has {len(self.header)}",
            )
            return
        if self.external_id_index is not None:
            external_id = row[self.external_id_index]
            if not external_id:
                self.add(line, _EXTERNAL_ID_HEADER, "manifest.empty_external_id", "empty external_id")
            elif external_id in self.external_ids:
                self.add(
                    line,
                    _EXTERNAL_ID_HEADER,
                    "manifest.duplicate_external_id",
                    f"external_id {external_id!r} already used on line {self.external_ids[external_id]}",
                )
            else:
                self.external_ids[external_id] = line
            if self.anonymised and _COORDINATE_LIKE.search(external_id):
                self.add(
                    line,
                    _EXTERNAL_ID_HEADER,
                    "manifest.identifying_external_id",
                    f"external_id {external_id!r} holds a coordinate-like number",
                )
        for index in self.location_indices:
            column = self.header[index]
            url = row[index]
            for rule, message in _location_problems(url, self.url_prefix):
                self.add(line, column, rule, message)
            if self.anonymised and _COORDINATE_LIKE.search(url):
                self.add(
                    line, column, "manifest.identifying_location", f"{url!r} holds a coordinate-like number"
                )

    def finish(self) -> None:
        if self.rows == 0:
            self.add(None, None, "manifest.no_rows", "no subject rows")
        if self.rows > self.limit:
            self.add(
                None,
                None,
                "manifest.row_limit",
                f"{self.rows} rows; one import accepts at most {self.limit}",
            )


def validate_manifest(
    path: str,
    *,
    limit: int = MANIFEST_ROW_LIMIT,
    url_prefix: str | None = None,
    metadata_policy: str | None = None,
) -> list[ManifestFinding]:
    """Check a manifest against what ``subject_set_imports`` needs.

    Parameters
    ----------
    path : `str`
        Manifest file.
    limit : `int`, optional
        Most subject rows.
    url_prefix : `str`, optional
        If given, every location must start with it.
    metadata_policy : `str`, optional
        ``anonymised`` adds the checks for identifying metadata keys,
        external ids and locations; ``full`` or `None` add nothing.

    Returns
    -------
    findings : `list` [`ManifestFinding`]
        Problems, in file order (whole-file findings last); empty for a
        good manifest.

    Raises
    ------
    ValueError
        Raised for an unknown metadata policy.

    Notes
    -----
    The file is streamed: memory grows only with the number of distinct
    external ids.  Rule ids and reasons: `RULES` and
    ``doc/zooniverse_manifest.md``.
    """
    policy = None if metadata_policy is None else _normalize_policy(metadata_policy)
    validator = _Validator(limit, url_prefix, policy)
    counter = [0]
    try:
        stream = open(path, "rb")
    except OSError as error:
        validator.add(None, None, "manifest.unreadable", f"cannot open: {error.strerror or error}")
        return validator.findings
    with stream:
        if stream.read(3) == b"\xef\xbb\xbf":
            validator.add(
                1,
                None,
                "manifest.bom",
                "UTF-8 byte order mark: the import would read the first header as '\\ufeff...'",
            )
        else:
            stream.seek(0)
        reader = csv.reader(_decoded_lines(stream, counter), strict=True)
        line = 1
        header_seen = False
        try:
            for record in reader:
                if not header_seen:
                    validator.check_header(record)
                    header_seen = True
                else:
                    validator.check_row(line, record)
                line = counter[0] + 1
        except UnicodeDecodeError as error:
            validator.add(counter[0], None, "manifest.unreadable", f"not UTF-8: {error.reason}")
            return validator.findings
        except csv.Error as error:
            validator.add(line, None, "manifest.unreadable", f"malformed CSV: {error}")
            return validator.findings
        if not header_seen:
            validator.add(None, None, "manifest.empty", "no header row")
            return validator.findings
    validator.finish()
    return validator.findings


def format_finding(path: str, finding: ManifestFinding) -> str:
    """Format a finding as one line of text.

    Parameters
    ----------
    path : `str`
        Manifest file the finding is about.
    finding : `ManifestFinding`
        The finding.

    Returns
    -------
    text : `str`
        ``<path>:<line>: [<column>] <rule>: <message>``.
    """
    where = f"{path}:{finding.line}" if finding.line is not None else path
    column = f" [{finding.column}]" if finding.column is not None else ""
    return f"{where}:{column} {finding.rule}: {finding.message}"


def main(argv: Sequence[str] | None = None) -> int:
    """Validate manifest files and print every finding.

    Parameters
    ----------
    argv : `~collections.abc.Sequence` [`str`], optional
        Arguments (``sys.argv[1:]`` if not given): manifest paths, and
        ``--limit N``, ``--url-prefix URL``, ``--metadata-policy POLICY``.

    Returns
    -------
    status : `int`
        0 if no file has a finding, 1 otherwise.
    """
    parser = argparse.ArgumentParser(
        prog="validate-manifest", description="Check Zooniverse subject_set_imports manifests offline."
    )
    parser.add_argument("paths", nargs="+", metavar="MANIFEST")
    parser.add_argument("--limit", type=int, default=MANIFEST_ROW_LIMIT)
    parser.add_argument("--url-prefix", default=None)
    parser.add_argument("--metadata-policy", default=None)
    args = parser.parse_args(argv)
    status = 0
    for path in args.paths:
        findings = validate_manifest(
            path, limit=args.limit, url_prefix=args.url_prefix, metadata_policy=args.metadata_policy
        )
        for finding in findings:
            print(format_finding(path, finding))
        if findings:
            status = 1
        else:
            print(f"{path}: OK")
    return status


if __name__ == "__main__":
    sys.exit(main())
