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

"""Checks of an artifact's ``index.csv``.

`parse_index` reads the index of a `zooniverse_rgb` ZIP (see
`lsst.epo.zooniverse.formats.rgb_collection`) and `match_index` checks
that it names each PNG entry exactly once, as a picture or as a band
frame of one.  Problems are added to an
`~lsst.epo.zooniverse.export.validation_results.ArtifactFindings`: each
rejects the whole artifact.  `identifying_index_value` finds, for an
anonymised project, an object id or coordinate in the columns that reach
its manifest (`ANONYMISED_COLUMNS`).
"""

from __future__ import annotations

__all__ = ["ANONYMISED_COLUMNS", "identifying_index_value", "match_index", "parse_index"]

import csv
import io
import zipfile
from collections.abc import Iterable, Mapping

from ..formats.rgb_index import FRAME_BAND_PATTERN, FRAMES_COLUMN, INDEX_NAME
from .anonymisation import IdentifyingValues
from .content_sniffing import archive_kind
from .validation_results import ArtifactFindings, show_name

ANONYMISED_COLUMNS = ("bands", "stretch")
"""The ``index.csv`` columns whose values reach the manifest of an
anonymised project (`~lsst.epo.zooniverse.export.manifest.subject_row`).
"""


def identifying_index_value(
    row: Mapping[str, str], object_id: str, columns: Iterable[str] = ANONYMISED_COLUMNS
) -> tuple[str, str] | None:
    """Find the object id or a coordinate in the published columns of an
    ``index.csv`` row.

    Parameters
    ----------
    row : `~collections.abc.Mapping` [`str`, `str`]
        The row, every value as text; its ``ra`` and ``dec`` are the
        coordinates looked for.
    object_id : `str`
        The object id looked for.
    columns : `~collections.abc.Iterable` [`str`], optional
        The columns searched (those an anonymised manifest publishes).

    Returns
    -------
    found : `tuple` [`str`, `str`] or `None`
        The column and the identifying value found in it (as
        `~lsst.epo.zooniverse.export.anonymisation.IdentifyingValues`
        finds it), or `None`.
    """
    identifying = IdentifyingValues(object_id, [row.get("ra", ""), row.get("dec", "")])
    for column in columns:
        value = row.get(column)
        if value is None:
            continue
        found = identifying.find(value)
        if found is not None:
            return column, found
    return None


def parse_index(data: bytes, findings: ArtifactFindings) -> list[dict[str, str]] | None:
    """Parse an artifact's ``index.csv``.

    Parameters
    ----------
    data : `bytes`
        The entry's bytes.
    findings : `ArtifactFindings`
        Where problems are added.

    Returns
    -------
    rows : `list` [`dict` [`str`, `str`]] or `None`
        The rows, every column as text; `None` (with a finding) if the
        entry is not UTF-8 CSV with unique headers, ``file`` and
        ``object_id`` columns and a unique, non-empty object id per row.
    """
    kind = archive_kind(data)
    if kind is not None:
        findings.add("zip.nested_archive", INDEX_NAME, f"{INDEX_NAME} is {kind}, not a CSV table.")
        return None

    def malformed(message: str) -> None:
        findings.add("index.malformed", INDEX_NAME, f"{INDEX_NAME} {message}")

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        malformed(f"is not UTF-8 text ({err}).")
        return None
    try:
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:
        malformed(f"is not a valid CSV table ({err}).")
        return None
    if not lines:
        malformed("is empty.")
        return None
    header, body = lines[0], lines[1:]
    if len(set(header)) != len(header):
        malformed("has a header that repeats a column name.")
        return None
    for column in ("file", "object_id"):
        if column not in header:
            malformed(f"has no {column!r} column.")
            return None
    rows = []
    seen_ids: dict[str, int] = {}
    for line, values in enumerate(body, start=2):
        if len(values) != len(header):
            malformed(f"line {line} has {len(values)} fields, not {len(header)}.")
            return None
        row = dict(zip(header, values))
        object_id = row["object_id"]
        if not object_id.strip():
            malformed(f"line {line} has no object_id.")
            return None
        if object_id in seen_ids:
            malformed(
                f"lines {seen_ids[object_id]} and {line} have the same object_id '{show_name(object_id)}'."
            )
            return None
        seen_ids[object_id] = line
        rows.append(row)
    return rows


def match_index(
    rows: list[dict[str, str]], pngs: Mapping[str, zipfile.ZipInfo], findings: ArtifactFindings
) -> tuple[dict[str, dict[str, str]], dict[str, list[tuple[str, str]]]] | None:
    """Check that the index names each PNG entry exactly once, as a
    picture (``file``) or as a band frame of one (``frames``).

    Parameters
    ----------
    rows : `list` [`dict` [`str`, `str`]]
        The index rows (`parse_index`).
    pngs : `~collections.abc.Mapping` [`str`, `zipfile.ZipInfo`]
        The ZIP's PNG entries by name.
    findings : `ArtifactFindings`
        Where problems are added.

    Returns
    -------
    matched : `tuple` or `None`
        The rows by picture entry name, and the ``(band, entry)`` frames
        by picture entry name; `None` (with findings) if they do not
        match.
    """
    by_file: dict[str, dict[str, str]] = {}
    for row in rows:
        entry = row["file"]
        if entry in by_file:
            findings.add("index.mismatch", entry, f"{INDEX_NAME} lists '{show_name(entry)}' more than once.")
        by_file[entry] = row
    for entry in by_file:
        if entry not in pngs:
            findings.add(
                "index.mismatch",
                entry,
                f"{INDEX_NAME} lists '{show_name(entry)}', which is not a PNG entry of the ZIP.",
            )
    frames_by_file: dict[str, list[tuple[str, str]]] = {}
    frame_owner: dict[str, str] = {}
    for entry, row in by_file.items():
        text = row.get(FRAMES_COLUMN, "")
        if not text.strip():
            continue
        bands: set[str] = set()
        for token in text.split():
            band, _, frame = token.partition("=")
            problem = None
            if not FRAME_BAND_PATTERN.fullmatch(band) or not frame:
                problem = f"has '{show_name(token)}', not <band>=<entry>"
            elif band in bands:
                problem = f"names band '{show_name(band)}' twice"
            elif frame not in pngs:
                problem = f"names '{show_name(frame)}', which is not a PNG entry of the ZIP"
            elif frame in by_file:
                problem = f"names '{show_name(frame)}', which is a picture, as a frame"
            elif frame in frame_owner:
                problem = f"names '{show_name(frame)}', already a frame of '{show_name(frame_owner[frame])}'"
            if problem:
                findings.add(
                    "index.frames", entry, f"{INDEX_NAME}: the frames of '{show_name(entry)}' {problem}."
                )
                break
            bands.add(band)
            frame_owner[frame] = entry
            frames_by_file.setdefault(entry, []).append((band, frame))
    for entry in pngs:
        if entry not in by_file and entry not in frame_owner:
            findings.add(
                "index.mismatch", entry, f"PNG entry '{show_name(entry)}' is not listed in {INDEX_NAME}."
            )
    return None if findings.found else (by_file, frames_by_file)
