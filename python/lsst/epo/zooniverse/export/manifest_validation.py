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


"""Offline check of Zooniverse import manifests.

`validate_manifest` checks a manifest against what the
``subject_set_imports`` API needs (Panoptes
``SubjectSetImport::CsvImport``) before it is sent, and `main` does so
for files named on a command line.  Every rule is listed in `RULES`; the
reasons are in ``doc/zooniverse_manifest.md``.
"""

from __future__ import annotations

__all__ = ["RULES", "ManifestFinding", "format_finding", "main", "validate_manifest"]

import argparse
import csv
import dataclasses
import re
from collections.abc import Iterator, Sequence
from typing import IO

from ..formats.rgb_index import normalize_metadata_policy
from .anonymisation import looks_like_coordinate
from .manifest_format import EXTERNAL_ID_HEADER, MANIFEST_ROW_LIMIT, is_loopback_url, location_problems

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
    "manifest.location_not_https": "a location is http:// to a host other than loopback (mixed content)",
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
    "manifest.identifying_metadata_value": (
        "anonymised: a metadata value holds a coordinate-like number or a catalog-id-like run of digits"
    ),
}
"""Every rule `validate_manifest` applies: stable id -> short description."""

_IDENTIFYING_KEYS = frozenset(
    ("object_id", "objectid", "id", "ra", "dec", "coord_ra", "coord_dec")
    + ("l", "b", "tract", "patch", "skymap", "wcs", "x", "y")
)
_BOM_MESSAGE = "UTF-8 byte order mark: the import would read the first header as '\\ufeff...'"
_HIDDEN_PREFIXES = ("//", "#", "!", "%")
_ID_LIKE = re.compile(r"\d{10,}")
"""Ten digits or more in a row: a catalog object id (LSST ids are 64-bit
integers), never a band list or a stretch.
"""


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


class _ManifestChecker:
    """State of one `validate_manifest` run."""

    def __init__(self, limit: int, url_prefix: str | None, policy: str | None, allow_http: bool) -> None:
        self.limit = limit
        self.url_prefix = url_prefix
        self.allow_http = allow_http
        self.anonymised = policy == "anonymised"
        self.findings: list[ManifestFinding] = []
        self.header: list[str] = []
        self.external_id_index: int | None = None
        self.location_indices: list[int] = []
        self.metadata_indices: list[int] = []
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
            elif name == EXTERNAL_ID_HEADER:
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
                self.metadata_indices.append(index)
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
                self.add(line, EXTERNAL_ID_HEADER, "manifest.empty_external_id", "empty external_id")
            elif external_id in self.external_ids:
                self.add(
                    line,
                    EXTERNAL_ID_HEADER,
                    "manifest.duplicate_external_id",
                    f"external_id {external_id!r} already used on line {self.external_ids[external_id]}",
                )
            else:
                self.external_ids[external_id] = line
            if self.anonymised and looks_like_coordinate(external_id):
                self.add(
                    line,
                    EXTERNAL_ID_HEADER,
                    "manifest.identifying_external_id",
                    f"external_id {external_id!r} holds a coordinate-like number",
                )
        for index in self.location_indices:
            column = self.header[index]
            url = row[index]
            problems = location_problems(url, self.url_prefix)
            for rule, message in problems:
                self.add(line, column, rule, message)
            if not problems or problems[0][0] != "manifest.location_not_url":
                self.check_https(line, column, url)
            if self.anonymised and looks_like_coordinate(url):
                self.add(
                    line, column, "manifest.identifying_location", f"{url!r} holds a coordinate-like number"
                )
        for index in self.metadata_indices if self.anonymised else ():
            value = row[index]
            if looks_like_coordinate(value) or _ID_LIKE.search(value):
                self.add(
                    line,
                    self.header[index],
                    "manifest.identifying_metadata_value",
                    f"{value!r} holds a coordinate-like number or a catalog-id-like run of digits",
                )

    def check_https(self, line: int, column: str, url: str) -> None:
        if self.allow_http or not url.lower().startswith("http://") or is_loopback_url(url):
            return
        shown = url if len(url) <= 200 else url[:200] + "..."
        self.add(
            line,
            column,
            "manifest.location_not_https",
            f"{shown!r} is not https: Zooniverse's pages are https and browsers block mixed content",
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
    allow_http: bool = False,
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
        ``anonymised`` adds the checks for identifying metadata keys and
        values, external ids and locations (any coordinate-like number;
        in metadata values also any run of 10+ digits); ``full`` or
        `None` add nothing.
    allow_http : `bool`, optional
        Accept ``http://`` locations to any host (by default only loopback
        ones: ``localhost``, 127.0.0.0/8, ``::1``).

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
    policy = None if metadata_policy is None else normalize_metadata_policy(metadata_policy)
    validator = _ManifestChecker(limit, url_prefix, policy, allow_http)
    counter = [0]
    try:
        stream = open(path, "rb")
    except OSError as error:
        validator.add(None, None, "manifest.unreadable", f"cannot open: {error.strerror or error}")
        return validator.findings
    with stream:
        if stream.read(3) == b"\xef\xbb\xbf":
            validator.add(1, None, "manifest.bom", _BOM_MESSAGE)
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
        ``--limit N``, ``--url-prefix URL``, ``--metadata-policy POLICY``,
        ``--allow-http``.

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
    parser.add_argument("--allow-http", action="store_true", help="accept http:// locations to any host")
    args = parser.parse_args(argv)
    status = 0
    for path in args.paths:
        findings = validate_manifest(
            path,
            limit=args.limit,
            url_prefix=args.url_prefix,
            metadata_policy=args.metadata_policy,
            allow_http=args.allow_http,
        )
        for finding in findings:
            print(format_finding(path, finding))
        if findings:
            status = 1
        else:
            print(f"{path}: OK")
    return status
