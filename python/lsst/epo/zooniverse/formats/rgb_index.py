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

"""The ``index.csv`` of an RGB collection ZIP: its columns and their
types, the metadata policies, and the text of the index as written and
read.

The ZIP layout is described in `.rgb_collection`.
"""

from __future__ import annotations

__all__ = [
    "COLUMN_DTYPES",
    "FRAMES_COLUMN",
    "FRAME_BAND_PATTERN",
    "INDEX_NAME",
    "METADATA_POLICIES",
    "PNG_TEXT_COLUMNS",
    "STANDARD_COLUMNS",
    "PictureTextChunks",
    "RgbCollectionError",
    "coerce_column",
    "column_kind",
    "csv_fields",
    "format_column",
    "format_value",
    "index_csv",
    "normalize_metadata_policy",
    "parse_description",
    "parse_index",
    "stricter_policy",
]

import csv
import io
import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .png_chunks import check_text_value, text_chunk

if TYPE_CHECKING:
    from astropy.table import Table

INDEX_NAME = "index.csv"
"""Name of the index entry in the ZIP."""

METADATA_POLICIES = ("full", "anonymised")
"""What goes into each PNG's metadata chunks.

``full``
    object id, RA/Dec, skymap/tract/patch, bands, coverage, stretch, the FITS
    WCS as text and as AVM/XMP tags, software version.
``anonymised``
    bands, stretch and software version only: no identifier, coordinate or
    WCS (Rubin's "anonymized" data products; the PNG may become public).
The ``index.csv`` inside the ZIP always holds everything: the ZIP itself
stays in the Butler and is never published.
"""

STANDARD_COLUMNS: dict[str, tuple[str, Any]] = {
    "object_id": ("str", ""),
    "ra": ("float", math.nan),
    "dec": ("float", math.nan),
    "skymap": ("str", ""),
    "tract": ("int", -1),
    "patch": ("int", -1),
    "bands": ("str", ""),
    "coverage": ("float", math.nan),
    "stretch": ("str", ""),
}
"""Index columns every collection has: name -> (type, default)."""

PNG_TEXT_COLUMNS = {
    "full": ("object_id", "ra", "dec", "skymap", "tract", "patch", "bands", "coverage", "stretch"),
    "anonymised": ("bands", "stretch"),
}
"""Index columns copied into each PNG's text chunks, in order, under each
metadata policy."""

FRAME_BAND_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,16}")
"""What a band name of a frame may be (it becomes part of an entry name)."""

FRAMES_COLUMN = "frames"
"""The ``index.csv`` column listing a picture's band frames."""


class RgbCollectionError(ValueError):
    """Raised when a ZIP is not a valid RGB collection (unsafe or
    duplicate entry names, missing or inconsistent index, bad PNG).
    """


def normalize_metadata_policy(policy: str) -> str:
    """Return the canonical name of a metadata policy.

    Parameters
    ----------
    policy : `str`
        ``full``, ``anonymised`` or ``anonymized``.

    Returns
    -------
    policy : `str`
        ``full`` or ``anonymised``.

    Raises
    ------
    ValueError
        Raised for any other value.
    """
    canonical = {"anonymized": "anonymised"}.get(str(policy).lower(), str(policy).lower())
    if canonical not in METADATA_POLICIES:
        raise ValueError(f"Unknown metadata policy {policy!r}; expected one of {METADATA_POLICIES}.")
    return canonical


def stricter_policy(*policies: str | None) -> str:
    """Return the stricter of metadata policies.

    Parameters
    ----------
    *policies : `str` or `None`
        Policies (`None` ones are left out).

    Returns
    -------
    policy : `str`
        ``anonymised`` if any is, else ``full``.

    Raises
    ------
    ValueError
        Raised for an unknown policy.
    """
    chosen = [normalize_metadata_policy(p) for p in policies if p is not None]
    return "anonymised" if "anonymised" in chosen else "full"


COLUMN_DTYPES = {"str": str, "int": np.int64, "float": np.float64}
"""The types of index columns (as named in the archive comment) and their
numpy types.
"""


def column_kind(column: Any) -> str | None:
    """Return the type of an index column.

    Parameters
    ----------
    column : array-like
        The column.

    Returns
    -------
    kind : `str` or `None`
        ``str``, ``int`` or ``float`` (`COLUMN_DTYPES`); `None` for a
        column of another type.
    """
    kind = np.asarray(column).dtype.kind
    return {"U": "str", "S": "str", "O": "str", "i": "int", "u": "int", "b": "int", "f": "float"}.get(kind)


def coerce_column(column: Any, kind: str, name: str) -> np.ndarray:
    """Convert a column to a type of `COLUMN_DTYPES`.

    Parameters
    ----------
    column : array-like
        The column.
    kind : `str`
        ``str``, ``int`` or ``float``.
    name : `str`
        Name of the column, for messages.

    Returns
    -------
    values : `numpy.ndarray`
        The converted values (bytes decoded as UTF-8 text).

    Raises
    ------
    TypeError
        Raised if the values cannot be converted.
    """
    values = np.asarray(column)
    try:
        if kind == "str":
            # Bytes (e.g. string columns of FITS tables) are text, not
            # "b'...'".
            return np.array(
                [
                    "" if v is None else v.decode("utf-8") if isinstance(v, bytes) else str(v)
                    for v in values.tolist()
                ],
                dtype=str,
            )
        return values.astype(COLUMN_DTYPES[kind])
    except (TypeError, ValueError) as err:  # UnicodeDecodeError is a ValueError.
        raise TypeError(f"Index column {name!r} cannot be converted to {kind}: {err}") from err


def format_value(value: Any) -> str:
    """Format an index value as written in ``index.csv`` and PNG text.

    Parameters
    ----------
    value : `object`
        The value.

    Returns
    -------
    text : `str`
        ``repr`` of a float, the integer of an integer or boolean, else
        `str`.
    """
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (np.integer, np.bool_)):
        return str(int(value))
    return str(value)


def format_column(column: Any) -> list[str]:
    """Format every value of an index column as `format_value` does.

    Parameters
    ----------
    column : `astropy.table.Column` or `numpy.ndarray`
        The column.

    Returns
    -------
    texts : `list` [`str`]
        ``format_value(column[k])`` for each row ``k``, made with one
        conversion of the whole column for 1-D unmasked numbers and
        strings.
    """
    values = np.asarray(column)
    masked = isinstance(column, np.ma.MaskedArray) and bool(np.ma.getmaskarray(column).any())
    if values.ndim != 1 or masked or values.dtype.kind not in "fiubU":
        return [format_value(column[k]) for k in range(len(column))]
    if values.dtype.kind == "f":
        return [repr(value) for value in values.tolist()]
    if values.dtype.kind == "b":
        return ["1" if value else "0" for value in values.tolist()]
    return [str(value) for value in values.tolist()]


_CSV_SPECIAL = ('"', ",", "\r", "\n")
"""Characters that make the `csv` module quote a field (default dialect)."""


def csv_fields(texts: Sequence[str]) -> Sequence[str]:
    """Return the fields of a column as the `csv` module writes them in a
    row of several fields (default dialect: minimal quoting, doubled
    quotes).

    Parameters
    ----------
    texts : `~collections.abc.Sequence` [`str`]
        The values.

    Returns
    -------
    fields : `~collections.abc.Sequence` [`str`]
        ``texts`` itself when no value needs quoting, else each value,
        quoted (inner quotes doubled) when it holds a quote, a comma, CR
        or LF.
    """
    joined = "".join(texts)
    if not any(special in joined for special in _CSV_SPECIAL):
        return texts
    quoted = []
    for text in texts:
        if any(special in text for special in _CSV_SPECIAL):
            text = '"' + text.replace('"', '""') + '"'
        quoted.append(text)
    return quoted


def index_csv(
    table: Table,
    frame_files: Sequence[Mapping[str, str] | None] | None,
    wcs_texts: Sequence[str | None],
    columns: Mapping[str, Sequence[str]] | None = None,
) -> bytes:
    """Return the ``index.csv`` of a collection.

    Parameters
    ----------
    table : `astropy.table.Table`
        The collection's index (``file`` first).
    frame_files : `~collections.abc.Sequence` [`dict` or `None`] or `None`
        Entry names of each image's band frames (`None`: no image has
        frames, and there is no ``frames`` column).
    wcs_texts : `~collections.abc.Sequence` [`str` or `None`]
        FITS WCS header text of each image.
    columns : `~collections.abc.Mapping` [`str`, `list` [`str`]], optional
        Columns of ``table`` already formatted with `format_column`
        (the others are formatted here).

    Returns
    -------
    csv : `bytes`
        The UTF-8 text, CRLF line ends, as `csv.writer` writes it.
    """
    columns = columns or {}
    cells = [
        csv_fields(columns[name] if name in columns else format_column(table[name]))
        for name in table.colnames
    ]
    # The frames column exists only when some image has frames, so that
    # collections without frames keep the layout they always had.
    header = table.colnames + ([] if frame_files is None else [FRAMES_COLUMN]) + ["wcs"]
    if frame_files is not None:
        frames_texts = [
            " ".join(f"{band}={entry}" for band, entry in (names or {}).items()) for names in frame_files
        ]
        cells.append(csv_fields(frames_texts))
    cells.append(csv_fields([text or "" for text in wcs_texts]))
    lines = [",".join(csv_fields(header)), *(",".join(row) for row in zip(*cells)), ""]
    return "\r\n".join(lines).encode("utf-8")


class PictureTextChunks:
    """The framed PNG text chunks of each picture of a collection under
    one metadata policy.

    Parameters
    ----------
    policy : `str`
        Metadata policy (`METADATA_POLICIES`).
    columns : `~collections.abc.Mapping` [`str`, `list` [`str`]]
        The index columns formatted with `format_column` (at least those
        of `PNG_TEXT_COLUMNS` for ``policy``).
    software : `str`
        Value of the ``Software`` chunk.
    wcs_texts : `~collections.abc.Sequence` [`str` or `None`]
        FITS WCS text of each picture (`None`: no WCS chunk).
    wcs_key : `str`
        Keyword of the WCS chunk.

    Notes
    -----
    A picture's chunks are, in order: one per column of
    `PNG_TEXT_COLUMNS` (with ``band`` after ``bands`` for a band frame),
    ``Software`` and, under the ``full`` policy, the WCS text.  Values are
    checked with `~.png_chunks.check_text_value` as `~.png.encode_png`
    checks them, in that order; a chunk is made once per distinct value
    of a column.
    """

    def __init__(
        self,
        policy: str,
        columns: Mapping[str, Sequence[str]],
        software: str,
        wcs_texts: Sequence[str | None],
        wcs_key: str,
    ) -> None:
        self._columns = [(name, columns[name], {}) for name in PNG_TEXT_COLUMNS[policy]]
        self._software = software
        self._wcs_texts = wcs_texts if policy == "full" else [None] * len(wcs_texts)
        self._wcs_key = wcs_key
        self._software_chunk: bytes | None = None

    def chunks(self, k: int, band: str | None = None) -> list[bytes]:
        """Return the text chunks of picture ``k`` or of its ``band``
        frame.

        Parameters
        ----------
        k : `int`
            Picture number.
        band : `str`, optional
            Band of a frame of the picture.

        Returns
        -------
        chunks : `list` [`bytes`]
            The framed chunks, in the order written.

        Raises
        ------
        TypeError, ValueError
            Raised for a value that cannot be PNG text.
        """
        chunks = []
        for name, texts, made in self._columns:
            value = texts[k]
            framed = made.get(value)
            if framed is None:
                check_text_value(name, value)
                framed = made[value] = text_chunk(name, value)
            chunks.append(framed)
            if band is not None and name == "bands":
                check_text_value("band", band)
                chunks.append(text_chunk("band", band))
        if self._software_chunk is None:
            check_text_value("Software", self._software)
            self._software_chunk = text_chunk("Software", self._software)
        chunks.append(self._software_chunk)
        wcs_text = self._wcs_texts[k]
        if wcs_text is not None:
            check_text_value(self._wcs_key, wcs_text)
            chunks.append(text_chunk(self._wcs_key, wcs_text))
        return chunks


def parse_description(comment: bytes, name: str) -> tuple[dict[str, str], str]:
    """Parse the archive comment of a collection ZIP.

    Parameters
    ----------
    comment : `bytes`
        The comment (JSON; anything else counts as empty).
    name : `str`
        Name of the ZIP, for messages.

    Returns
    -------
    types : `dict` [`str`, `str`]
        Column name to type (`COLUMN_DTYPES`).
    policy : `str`
        The metadata policy (``full`` by default).

    Raises
    ------
    RgbCollectionError
        Raised for invalid column types or an unknown policy.
    """
    try:
        description = json.loads(comment.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        description = {}
    if not isinstance(description, dict):
        description = {}
    types = description.get("columns", {})
    if not isinstance(types, dict) or any(kind not in COLUMN_DTYPES for kind in types.values()):
        raise RgbCollectionError(f"{name}: the archive comment has invalid column types {types!r}.")
    policy = description.get("metadata_policy", "full")
    try:
        policy = normalize_metadata_policy(policy)
    except ValueError as err:
        raise RgbCollectionError(f"{name}: {err}") from err
    return types, policy


# Long for its docstring: the checks are one pass over the rows.
def parse_index(
    data: bytes, types: Mapping[str, str], entries: Collection[str], name: str
) -> tuple[Table, list[str], list[list[tuple[str, str]] | None], list[str] | None]:
    """Parse the ``index.csv`` of a collection ZIP.

    Parameters
    ----------
    data : `bytes`
        The entry's content.
    types : `~collections.abc.Mapping` [`str`, `str`]
        Column types from the archive comment (`parse_description`).
    entries : `~collections.abc.Collection` [`str`]
        Names of the ZIP's entries.
    name : `str`
        Name of the ZIP, for messages.

    Returns
    -------
    table : `astropy.table.Table`
        The index, without the ``frames`` and ``wcs`` columns.
    wcs_text : `list` [`str`]
        The ``wcs`` column.
    frames : `list` [`list` [`tuple` [`str`, `str`]] or `None`]
        (band, entry) of each image's frames.
    frames_text : `list` [`str`] or `None`
        The ``frames`` column, `None` without one.

    Raises
    ------
    RgbCollectionError
        Raised for an index that is not valid or disagrees with the entries.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RgbCollectionError(f"{name}: {INDEX_NAME} is not UTF-8 text ({err}).") from err
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or rows[0][:1] != ["file"] or "object_id" not in rows[0] or rows[0][-1] != "wcs":
        raise RgbCollectionError(f"{name}: {INDEX_NAME} does not start with the expected header.")
    header, body = rows[0], rows[1:]
    if len(set(header)) != len(header):
        raise RgbCollectionError(f"{name}: {INDEX_NAME} header repeats a column name.")
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise RgbCollectionError(
                f"{name}: {INDEX_NAME} line {line} has {len(row)} fields, not {len(header)}."
            )
    columns = {}
    for j, column in enumerate(header[:-1]):
        if column == FRAMES_COLUMN:
            continue
        kind = STANDARD_COLUMNS.get(column, (types.get(column, "str"),))[0]
        values = [row[j] for row in body]
        try:
            columns[column] = np.array(
                [COLUMN_DTYPES[kind](v) if kind != "str" else v for v in values], dtype=COLUMN_DTYPES[kind]
            )
        except ValueError as err:
            raise RgbCollectionError(f"{name}: {INDEX_NAME} column {column!r} is not {kind}: {err}") from err
    # astropy.table is imported here, not with the module: the export
    # service's commands that never read an index start without it.
    from astropy.table import Table

    table = Table(columns, names=[c for c in header[:-1] if c != FRAMES_COLUMN])
    wcs_text = [row[-1] for row in body]
    files = [str(f) for f in table["file"]]
    if len(set(files)) != len(files):
        raise RgbCollectionError(f"{name}: {INDEX_NAME} names the same file twice.")
    frames_text = None
    frames: list[list[tuple[str, str]] | None] = [None] * len(body)
    listed = set(files)
    if FRAMES_COLUMN in header:
        j = header.index(FRAMES_COLUMN)
        frames_text = [row[j] for row in body]
        for k, text in enumerate(frames_text):
            frames[k] = _parse_frames(text, files[k], listed, name) if text else None
    pngs = {entry for entry in entries if entry != INDEX_NAME}
    if pngs != listed:
        missing = sorted(listed - pngs)
        extra = sorted(pngs - listed)
        raise RgbCollectionError(
            f"{name}: {INDEX_NAME} and the PNG entries disagree "
            f"(missing: {missing[:5]}, unlisted: {extra[:5]})."
        )
    return table, wcs_text, frames, frames_text


def _parse_frames(text: str, file: str, listed: set[str], name: str) -> list[tuple[str, str]]:
    """Parse one cell of the ``frames`` column (``<band>=<entry> ...``),
    adding its entries to ``listed`` (the entries named so far).
    """
    frames: list[tuple[str, str]] = []
    bands: set[str] = set()
    for token in text.split(" "):
        band, equals, entry = token.partition("=")
        problem = None
        if not equals or not FRAME_BAND_PATTERN.fullmatch(band) or not entry.endswith(".png") or "=" in entry:
            problem = f"has {token!r}, not <band>=<entry>.png"
        elif band in bands:
            problem = f"names band {band!r} twice"
        elif entry in listed:
            problem = f"names {entry!r}, which is a picture or another frame"
        if problem:
            raise RgbCollectionError(f"{name}: {INDEX_NAME}: the frames of {file!r} {problem}.")
        bands.add(band)
        listed.add(entry)
        frames.append((band, entry))
    return frames
