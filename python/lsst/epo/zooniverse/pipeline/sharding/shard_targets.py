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

"""Shard a PI's target catalog into the Butler by HTM level-7 trixel.

`shard_target_catalog` reads a catalog (CSV, Parquet, FITS binary table or
VOTable), validates every row, and writes one ``zooniverse_targets``
dataset per HTM level-7 trixel plus one ``zooniverse_targets_rejected``
dataset listing every refused row with the reason (DESIGN §3). Every input
row ends up in exactly one of the two, identified by its ``row_index``.

How the work is split:

1. Read and validate the whole file, chunk by chunk. Accepted rows are
   kept in memory as numpy/Arrow columns (about 70 bytes a row plus the
   extra columns); each row's object id is also reduced to a 64-bit hash
   for duplicate detection. Structural problems (missing or non-numeric
   column, unreadable file, parse error) raise `CatalogError` here, before
   anything is written.
2. Find duplicated ids (repeated hashes, confirmed on the real strings)
   and reject every row of a duplicated id.
3. Sort the accepted rows by trixel, write one Parquet file per trixel
   with the layout of daf_butler's ``ArrowAstropy`` formatter into a
   staging directory next to the datastore, and ingest them all with
   ``transfer="move"`` in one Butler transaction together with the
   rejection table. That is 10-20 times faster than one ``butler.put``
   per shard; the cost is about 1.2 ms a shard, so 10 million rows over
   the 20,000 deg^2 of the Rubin wide survey (65,600 shards) take about
   85 s and peak at about 1.5 GB (see ``bench/RESULTS.md``).
"""

from __future__ import annotations

__all__ = [
    "CATALOG_FORMATS",
    "HTM_LEVEL",
    "REJECTION_REASONS",
    "CatalogError",
    "ShardingSummary",
    "detect_catalog_format",
    "htm_indices",
    "shard_target_catalog",
]

import csv
import dataclasses
import io
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...butler.config import get_butler
from ...butler.dataset_types import TARGETS, TARGETS_REJECTED, register_dataset_types

_LOG = logging.getLogger("lsst.epo.zooniverse.sharding")

HTM_LEVEL = 7
"""HTM subdivision level of the ``zooniverse_targets`` shards."""

CATALOG_FORMATS = ("csv", "parquet", "fits", "votable")
"""Catalog formats `shard_target_catalog` reads."""

_EXTENSIONS = (
    (".csv.gz", "csv"),
    (".csv.bz2", "csv"),
    (".csv", "csv"),
    (".parquet", "parquet"),
    (".parq", "parquet"),
    (".pq", "parquet"),
    (".fits.gz", "fits"),
    (".fit.gz", "fits"),
    (".fits", "fits"),
    (".fit", "fits"),
    (".votable", "votable"),
    (".vot", "votable"),
    (".xml", "votable"),
)

REJECTION_REASONS = {
    "missing_id": "the object id is missing, empty or blank",
    "duplicate_id": "the object id appears on more than one row (every such row is rejected)",
    "nan_coordinates": "a coordinate is missing, NaN or infinite",
    "dec_out_of_range": "the latitude (Dec) is outside [-90, 90] degrees",
    "bad_size": "the cutout size is missing, NaN, infinite, zero or negative",
}
"""Reason codes of ``zooniverse_targets_rejected``, in priority order (a
row with several problems gets the first code; its detail lists all)."""

_REASON_CODES = list(REJECTION_REASONS)
_MISSING_ID, _DUPLICATE_ID, _NAN_COORDINATES, _DEC_OUT_OF_RANGE, _BAD_SIZE = range(len(_REASON_CODES))

_SIZE_COLUMNS = {"pixel": "cutout_size_pixels", "arcsec": "cutout_size_arcsec"}
_RESERVED_COLUMNS = ("object_id", "ra", "dec", "row_index", *_SIZE_COLUMNS.values())
_MAX_LISTED_ROWS = 10
_INGEST_BATCH = 10_000
_STAGING_PREFIX = ".zooniverse-staging-"


class CatalogError(ValueError):
    """Raised for a structural problem with a catalog or the request (a
    missing or non-numeric column, an unreadable file, an unknown frame or
    format, a run that already holds targets); nothing has been written to
    the repository when it is raised.
    """


@dataclasses.dataclass(frozen=True)
class ShardingSummary:
    """What `shard_target_catalog` did.

    Attributes
    ----------
    run : `str`
        The RUN collection written.
    n_rows : `int`
        Data rows read from the catalog.
    n_accepted : `int`
        Rows published in ``zooniverse_targets`` shards.
    n_rejected : `int`
        Rows in the ``zooniverse_targets_rejected`` table.
    rejected_by_reason : `dict` [`str`, `int`]
        Rejected rows per reason code (codes with no rows are left out).
    n_ra_normalised : `int`
        Accepted rows whose longitude was outside [0, 360) degrees and was
        wrapped into that range.
    n_shards : `int`
        ``zooniverse_targets`` datasets written (one per trixel).
    seconds : `float`
        Wall-clock time.
    catalog : `str`
        The catalog file.
    """

    run: str
    n_rows: int
    n_accepted: int
    n_rejected: int
    rejected_by_reason: dict[str, int]
    n_ra_normalised: int
    n_shards: int
    seconds: float
    catalog: str = ""


# ---------------------------------------------------------------------------
# HTM indexing


# Vertices of the eight HTM root triangles S0-S3, N0-N3 (indices 8-15).
_HTM_ROOTS = np.array(
    [
        [[1, 0, 0], [0, 0, -1], [0, 1, 0]],
        [[0, 1, 0], [0, 0, -1], [-1, 0, 0]],
        [[-1, 0, 0], [0, 0, -1], [0, -1, 0]],
        [[0, -1, 0], [0, 0, -1], [1, 0, 0]],
        [[1, 0, 0], [0, 0, 1], [0, -1, 0]],
        [[0, -1, 0], [0, 0, 1], [-1, 0, 0]],
        [[-1, 0, 0], [0, 0, 1], [0, 1, 0]],
        [[0, 1, 0], [0, 0, 1], [1, 0, 0]],
    ],
    dtype=np.float64,
)
# Per level, (M, 9) tables: for every trixel of the level, the normals of
# the three planes that choose its child (see `_htm_tables`).
_HTM_TABLES: list[np.ndarray] = []
# A point closer than this (|determinant|; about 1e-10 rad from an edge at
# level 7) to a trixel edge, or to a root-triangle plane, is indexed by
# lsst.sphgeom itself, whose predicates are exact.
_HTM_EPS = 1e-12
_HTM_BLOCK = 32768


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _htm_tables(level: int) -> list[np.ndarray]:
    """Return, per level below ``level``, the normals (m01 x m20,
    m12 x m01, m20 x m12) of every trixel's child-choosing planes: a point
    is in child 0 if it is on the non-negative side of the first, else in
    child 1 for the second, child 2 for the third, else child 3.
    """
    if len(_HTM_TABLES) < level:
        _HTM_TABLES.clear()
        vertices = _HTM_ROOTS
        for _ in range(level):
            v0, v1, v2 = vertices[:, 0], vertices[:, 1], vertices[:, 2]
            m12, m20, m01 = _unit(v1 + v2), _unit(v2 + v0), _unit(v0 + v1)
            normals = np.stack([np.cross(m01, m20), np.cross(m12, m01), np.cross(m20, m12)], axis=1)
            _HTM_TABLES.append(np.ascontiguousarray(normals.reshape(-1, 9)))
            vertices = np.stack(
                [
                    np.stack([v0, m01, m20], axis=1),
                    np.stack([v1, m12, m01], axis=1),
                    np.stack([v2, m20, m12], axis=1),
                    np.stack([m12, m20, m01], axis=1),
                ],
                axis=1,
            ).reshape(-1, 3, 3)
    return _HTM_TABLES[:level]


def _htm_descend(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, index: np.ndarray, tables: list[np.ndarray]
) -> np.ndarray:
    """Descend from root triangles (``index`` 0-7, updated in place) to the
    last level; return the mask of points too close to a plane to trust.
    """
    buffer = np.empty((len(x), 9))
    uncertain = (np.abs(x) < _HTM_EPS) | (np.abs(y) < _HTM_EPS) | (np.abs(z) < _HTM_EPS)
    for table in tables:
        np.take(table, index, axis=0, out=buffer)
        d0 = x * buffer[:, 0] + y * buffer[:, 1] + z * buffer[:, 2]
        d1 = x * buffer[:, 3] + y * buffer[:, 4] + z * buffer[:, 5]
        d2 = x * buffer[:, 6] + y * buffer[:, 7] + z * buffer[:, 8]
        child = np.where(d0 >= 0, 0, np.where(d1 >= 0, 1, np.where(d2 >= 0, 2, 3)))
        uncertain |= (np.abs(d0) < _HTM_EPS) | (np.abs(d1) < _HTM_EPS) | (np.abs(d2) < _HTM_EPS)
        index *= 4
        index += child
    return uncertain


def htm_indices(ra: np.ndarray, dec: np.ndarray, level: int = HTM_LEVEL) -> np.ndarray:
    """Return HTM trixel indices of points, vectorised.

    Parameters
    ----------
    ra, dec : `numpy.ndarray`
        ICRS coordinates in degrees (finite, ``dec`` in [-90, 90]).
    level : `int`, optional
        HTM subdivision level.

    Returns
    -------
    indices : `numpy.ndarray` [`int64`]
        What ``lsst.sphgeom.HtmPixelization(level).index`` returns for
        ``UnitVector3d(LonLat.fromDegrees(ra, dec))``.

    Notes
    -----
    The trixel is found by descending the HTM tree in numpy with
    floating-point plane tests, in blocks that stay in the CPU cache;
    points within about 1e-10 rad of a plane (trixel edges, the equator,
    the RA 0/90/180/270 meridians) are handed to lsst.sphgeom, so the
    result is always sphgeom's. About 0.5 microsecond a point.
    """
    ra = np.ascontiguousarray(ra, dtype=np.float64)
    dec = np.ascontiguousarray(dec, dtype=np.float64)
    tables = _htm_tables(level)
    result = np.empty(len(ra), dtype=np.int64)
    uncertain = np.zeros(len(ra), dtype=bool)
    north = np.array([7, 6, 5, 4])  # South roots 0-3 map to north 7-4.
    for start in range(0, len(ra), _HTM_BLOCK):
        block = slice(start, start + _HTM_BLOCK)
        lon, lat = np.radians(ra[block]), np.radians(dec[block])
        cos_lat = np.cos(lat)
        x, y, z = cos_lat * np.cos(lon), cos_lat * np.sin(lon), np.sin(lat)
        # Root triangle from the signs of x, y, z (as sphgeom chooses it).
        root = np.where(
            y > 0, np.where(x > 0, 0, 1), np.where(y == 0, np.where(x >= 0, 0, 2), np.where(x < 0, 2, 3))
        )
        index = np.where(z < 0, root, north[root]).astype(np.int64)
        uncertain[block] = _htm_descend(x, y, z, index, tables)
        result[block] = index
    result += 8 * 4**level
    if uncertain.any():
        from lsst.sphgeom import HtmPixelization, LonLat, UnitVector3d

        pixelization = HtmPixelization(level)
        positions = np.flatnonzero(uncertain)
        result[positions] = [
            pixelization.index(UnitVector3d(LonLat.fromDegrees(r, d)))
            for r, d in zip(ra[positions].tolist(), dec[positions].tolist())
        ]
    return result


# ---------------------------------------------------------------------------
# Hashing ids


_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _hash_strings(array: pa.Array) -> np.ndarray:
    """Return the 64-bit FNV-1a hash of every string of an Arrow array
    (nulls hash like empty strings), vectorised over the rows.
    """
    array = array.cast(pa.large_string())
    n = len(array)
    hashes = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    if n == 0:
        return hashes
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64, count=n + 1, offset=array.offset * 8)
    if buffers[2] is None or buffers[2].size == 0:
        return hashes
    data = np.frombuffer(buffers[2], dtype=np.uint8)
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    order = np.argsort(-lengths, kind="stable")
    sorted_lengths = lengths[order]
    sorted_starts = starts[order]
    sorted_hashes = hashes[order]
    negative = -sorted_lengths
    for k in range(int(sorted_lengths[0])):
        # Strings longer than k come first.
        m = int(np.searchsorted(negative, -k, side="left"))
        sorted_hashes[:m] ^= data[sorted_starts[:m] + k]
        sorted_hashes[:m] *= _FNV_PRIME
    hashes[order] = sorted_hashes
    return hashes


# ---------------------------------------------------------------------------
# Readers


def detect_catalog_format(path: str | os.PathLike, file_format: str | None = None) -> str:
    """Return the format of a catalog file.

    Parameters
    ----------
    path : `str` or `os.PathLike`
        The catalog.
    file_format : `str`, optional
        Explicit format (one of `CATALOG_FORMATS`); overrides the
        extension.

    Returns
    -------
    file_format : `str`
        One of `CATALOG_FORMATS`.

    Raises
    ------
    CatalogError
        Raised if the format is unknown.
    """
    if file_format is not None:
        fmt = file_format.lower()
        if fmt not in CATALOG_FORMATS:
            raise CatalogError(
                f"Unknown catalog format {file_format!r}; use one of {', '.join(CATALOG_FORMATS)}."
            )
        return fmt
    name = os.fspath(path).lower()
    for extension, fmt in _EXTENSIONS:
        if name.endswith(extension):
            return fmt
    known = ", ".join(e for e, _ in _EXTENSIONS)
    raise CatalogError(
        f"Cannot tell the format of {os.fspath(path)!r} from its extension (known: {known}); "
        f"pass the format explicitly ({', '.join(CATALOG_FORMATS)})."
    )


def _parse_unit(text: Any, where: str) -> Any:
    import astropy.units as u

    if text is None or text == "":
        return None
    if isinstance(text, u.UnitBase):
        return text
    try:
        return u.Unit(str(text))
    except ValueError:
        try:
            return u.Unit(str(text), format="fits")
        except ValueError:
            raise CatalogError(f"Unit {text!r} of {where} is not a unit astropy knows.") from None


def _rechunk(batches: Iterable[pa.Table], chunk_rows: int) -> Iterator[pa.Table]:
    """Regroup tables of any size into tables of exactly ``chunk_rows`` rows
    (the last one shorter).
    """
    pending: list[pa.Table] = []
    n_pending = 0
    for batch in batches:
        offset = 0
        while offset < batch.num_rows:
            take = min(chunk_rows - n_pending, batch.num_rows - offset)
            pending.append(batch.slice(offset, take))
            n_pending += take
            offset += take
            if n_pending == chunk_rows:
                yield pa.concat_tables(pending).combine_chunks()
                pending, n_pending = [], 0
    if n_pending:
        yield pa.concat_tables(pending).combine_chunks()


class _Reader:
    """Base class of the catalog readers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.columns: list[str] = []
        self.units: dict[str, Any] = {}
        self.n_rows: int | None = None

    def is_numeric(self, column: str) -> bool | None:
        """Whether a column holds numbers (`None`: checked while
        reading).
        """
        raise NotImplementedError()

    def describe_type(self, column: str) -> str:
        return "?"

    def batches(self, columns: dict[str, str]) -> Iterator[pa.Table]:
        """Yield tables of the given columns (name -> role ``id``,
        ``float`` or ``extra``), in file order.
        """
        raise NotImplementedError()

    def close(self) -> None:
        pass


class _CsvReader(_Reader):
    """Stream a CSV file (optionally compressed) with pyarrow.csv."""

    def __init__(self, path: Path, chunk_rows: int) -> None:
        super().__init__(path)
        import pyarrow.csv as pcsv

        self._pcsv = pcsv
        # Blocks of about chunk_rows rows (at ~100 bytes a row), capped.
        self._block_size = int(min(max(chunk_rows * 128, 1 << 16), 1 << 26))
        try:
            probe = self._open({}, None)
            schema = probe.schema
            probe.close()
        except FileNotFoundError as err:
            raise CatalogError(f"Cannot read catalog {path}: {err.strerror or err}.") from None
        except (OSError, pa.ArrowException) as err:
            raise CatalogError(f"Cannot read catalog {path} as CSV: {err}") from None
        self.columns = list(schema.names)
        self._inferred = {field.name: field.type for field in schema}

    def _open(self, column_types: dict[str, Any], include: list[str] | None) -> Any:
        pcsv = self._pcsv
        stream = pa.input_stream(str(self.path))
        return pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(block_size=self._block_size),
            convert_options=pcsv.ConvertOptions(
                column_types=column_types, include_columns=include, strings_can_be_null=False
            ),
        )

    def is_numeric(self, column: str) -> bool | None:
        return None

    def batches(self, columns: dict[str, str]) -> Iterator[pa.Table]:
        types = {}
        for name, role in columns.items():
            if role == "id":
                types[name] = pa.string()
            elif role == "float":
                types[name] = pa.float64()
            elif pa.types.is_null(self._inferred.get(name, pa.null())):
                # Empty in the first block: read as text.
                types[name] = pa.string()
        rows_done = 0
        try:
            reader = self._open(types, list(columns))
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                rows_done += batch.num_rows
                yield pa.Table.from_batches([batch])
        except pa.ArrowInvalid as err:
            raise self._explain(err, rows_done, columns) from None
        except OSError as err:
            raise CatalogError(f"Cannot read catalog {self.path} after {rows_done} rows: {err}") from None

    def _explain(self, err: Exception, rows_done: int, columns: dict[str, str]) -> CatalogError:
        message = str(err)
        conversion = re.search(
            r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", message
        )
        if conversion:
            k = int(conversion.group(1))
            column = self.columns[k] if k < len(self.columns) else f"#{k}"
            value = conversion.group(3)
            line = self._locate(rows_done, lambda fields: len(fields) > k and fields[k] == value)
            where = f"line {line}" if line else f"a line after data row {rows_done}"
            role = columns.get(column)
            if role == "float":
                what = "is not numeric"
            else:
                what = (
                    f"does not match the type {conversion.group(2)} inferred from the first rows "
                    "(give the column consistent values, or use Parquet/FITS)"
                )
            return CatalogError(
                f"Catalog {self.name}: column {column!r} {what}: {value!r} at {where} cannot be read as "
                f"{conversion.group(2)}."
            )
        columns_error = re.search(r"Expected (\d+) columns, got (\d+)", message)
        if columns_error:
            expected = int(columns_error.group(1))
            line = self._locate(rows_done, lambda fields: len(fields) != expected)
            where = f"line {line}" if line else f"a line after data row {rows_done}"
            return CatalogError(
                f"Catalog {self.name}: parse error at {where}: expected {expected} columns, "
                f"got {columns_error.group(2)}."
            )
        return CatalogError(
            f"Catalog {self.name}: cannot be parsed as CSV after data row {rows_done}: {message}"
        )

    def _locate(self, rows_done: int, bad: Callable[[list[str]], bool]) -> int | None:
        """Return the 1-based line number of the first data row at or after
        ``rows_done`` for which ``bad`` is true (or `None`).
        """
        try:
            with pa.input_stream(str(self.path)) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
                reader = csv.reader(text)
                next(reader, None)  # Header.
                row = 0
                for fields in reader:
                    if not fields:
                        continue  # Blank lines are skipped, as pyarrow does.
                    if row >= rows_done and bad(fields):
                        return reader.line_num
                    row += 1
        except (OSError, csv.Error, pa.ArrowException):
            return None
        return None


class _ParquetReader(_Reader):
    """Stream a Parquet file by record batches."""

    def __init__(self, path: Path, chunk_rows: int) -> None:
        super().__init__(path)
        import pyarrow.parquet as pq

        try:
            self._file = pq.ParquetFile(str(path))
        except FileNotFoundError as err:
            raise CatalogError(f"Cannot read catalog {path}: {err.strerror or err}.") from None
        except (OSError, pa.ArrowException) as err:
            raise CatalogError(f"Cannot read catalog {path} as Parquet: {err}") from None
        self._chunk_rows = chunk_rows
        schema = self._file.schema_arrow
        self._schema = schema
        self.columns = list(schema.names)
        self.n_rows = self._file.metadata.num_rows
        self.units = self._read_units(schema)

    @staticmethod
    def _read_units(schema: pa.Schema) -> dict[str, Any]:
        units: dict[str, Any] = {}
        for field in schema:
            if field.metadata and field.metadata.get(b"unit"):
                units[field.name] = field.metadata[b"unit"].decode()
        metadata = schema.metadata or {}
        if b"table_meta_yaml" in metadata:
            # Written by astropy (or by the Butler's ArrowAstropy formatter).
            from astropy.table import meta

            try:
                header = meta.get_header_from_yaml(metadata[b"table_meta_yaml"].decode().split("\n"))
                for column in header.get("datatype", []):
                    if column.get("unit") and column["name"] not in units:
                        units[column["name"]] = column["unit"]
            except Exception:  # metadata we cannot read is ignored.
                _LOG.warning("Could not read the astropy metadata of the Parquet file; units ignored.")
        return units

    def is_numeric(self, column: str) -> bool:
        t = self._schema.field(column).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)

    def describe_type(self, column: str) -> str:
        return str(self._schema.field(column).type)

    def batches(self, columns: dict[str, str]) -> Iterator[pa.Table]:
        try:
            for batch in self._file.iter_batches(batch_size=self._chunk_rows, columns=list(columns)):
                yield pa.Table.from_batches([batch])
        except (OSError, pa.ArrowException) as err:
            raise CatalogError(f"Cannot read catalog {self.path}: {err}") from None

    def close(self) -> None:
        self._file.close()


def _numpy_to_arrow(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """Convert a numpy column (any byte order; masked allowed) to Arrow."""
    if isinstance(values, np.ma.MaskedArray):
        column_mask = np.ma.getmaskarray(values)
        mask = column_mask if mask is None else (mask | column_mask)
        values = values.data
    values = np.asarray(values)
    if values.ndim != 1:
        raise TypeError("not a scalar column")
    if values.dtype.byteorder not in ("=", "|") and values.dtype.byteorder != (
        "<" if np.little_endian else ">"
    ):
        values = values.astype(values.dtype.newbyteorder("="))
    if values.dtype.kind == "S":
        values = np.char.decode(values, "utf-8", errors="replace")
    if mask is not None and not mask.any():
        mask = None
    return pa.array(values, mask=mask)


class _FitsReader(_Reader):
    """Read the first table HDU of a FITS file in row slices of a memory
    map (gzip-compressed files are decompressed in memory by astropy).
    """

    def __init__(self, path: Path, chunk_rows: int) -> None:
        super().__init__(path)
        import astropy.io.fits as fits

        self._chunk_rows = chunk_rows
        try:
            self._hdul = fits.open(str(path), memmap=True)
            hdu = next((h for h in self._hdul if isinstance(h, fits.BinTableHDU | fits.TableHDU)), None)
        except FileNotFoundError as err:
            raise CatalogError(f"Cannot read catalog {path}: {err.strerror or err}.") from None
        except Exception as err:  # astropy raises many kinds.
            raise CatalogError(f"Cannot read catalog {path} as FITS: {err}") from None
        if hdu is None:
            self._hdul.close()
            raise CatalogError(f"Catalog {path} has no FITS table extension.")
        self._hdu = hdu
        self._definitions = {c.name: c for c in hdu.columns}
        self.columns = list(hdu.columns.names)
        self.n_rows = int(hdu.header.get("NAXIS2", 0))
        self.units = {c.name: c.unit for c in hdu.columns if c.unit}

    def is_numeric(self, column: str) -> bool:
        dtype = self._hdu.columns[column].dtype
        return dtype.kind in "iuf" and dtype.shape == ()

    def describe_type(self, column: str) -> str:
        return f"FITS format {self._hdu.columns[column].format}"

    def batches(self, columns: dict[str, str]) -> Iterator[pa.Table]:
        try:
            data = self._hdu.data
        except Exception as err:
            raise CatalogError(f"Cannot read the table of catalog {self.path}: {err}") from None
        n = self.n_rows or 0
        for start in range(0, n, self._chunk_rows):
            rows = data[start : start + self._chunk_rows]
            arrays = {}
            for name in columns:
                try:
                    values = rows.field(name)
                    mask = None
                    null = self._definitions[name].null
                    if null is not None and np.asarray(values).dtype.kind in "iu":
                        mask = np.asarray(values) == null
                    arrays[name] = _numpy_to_arrow(values, mask)
                except TypeError:
                    raise CatalogError(
                        f"Column {name!r} of catalog {self.name} is not a scalar column "
                        f"({self.describe_type(name)}); only scalar columns can be carried."
                    ) from None
                except Exception as err:
                    raise CatalogError(
                        f"Cannot read column {name!r} of catalog {self.name} at rows {start}-"
                        f"{start + len(rows) - 1}: {err}"
                    ) from None
            yield pa.table(arrays)

    def close(self) -> None:
        self._hdul.close()


class _VoTableReader(_Reader):
    """Read a VOTable; the whole table is parsed into memory first (the
    astropy VOTable parser does not stream), then handed out in chunks.
    """

    def __init__(self, path: Path, chunk_rows: int) -> None:
        super().__init__(path)
        from astropy.io.votable import parse_single_table

        self._chunk_rows = chunk_rows
        if not path.exists():
            raise CatalogError(f"Cannot read catalog {path}: No such file or directory.")
        try:
            self._table = parse_single_table(str(path)).to_table(use_names_over_ids=True)
        except Exception as err:  # the parser raises many kinds.
            raise CatalogError(f"Cannot read catalog {path} as a VOTable: {err}") from None
        self.columns = list(self._table.colnames)
        self.n_rows = len(self._table)
        self.units = {name: col.unit for name, col in self._table.columns.items() if col.unit is not None}

    def is_numeric(self, column: str) -> bool:
        col = self._table[column]
        return col.dtype.kind in "iuf" and col.ndim == 1

    def describe_type(self, column: str) -> str:
        return f"VOTable dtype {self._table[column].dtype}"

    def batches(self, columns: dict[str, str]) -> Iterator[pa.Table]:
        for start in range(0, len(self._table), self._chunk_rows):
            arrays = {}
            for name in columns:
                col = self._table[name][start : start + self._chunk_rows]
                values = col.data if hasattr(col, "mask") else np.asarray(col)
                if isinstance(values, np.ndarray) and values.dtype.kind == "O":
                    mask = np.ma.getmaskarray(col) if hasattr(col, "mask") else None
                    arrays[name] = pa.array(
                        [None if v is None or v is np.ma.masked else str(v) for v in np.asarray(col.data)],
                        mask=mask,
                        type=pa.string(),
                    )
                    continue
                try:
                    arrays[name] = _numpy_to_arrow(values)
                except TypeError:
                    raise CatalogError(
                        f"Column {name!r} of catalog {self.name} is not a scalar column; only scalar "
                        "columns can be carried."
                    ) from None
            yield pa.table(arrays)


def _open_reader(path: Path, fmt: str, chunk_rows: int) -> _Reader:
    if fmt == "csv":
        return _CsvReader(path, chunk_rows)
    if fmt == "parquet":
        return _ParquetReader(path, chunk_rows)
    if fmt == "fits":
        return _FitsReader(path, chunk_rows)
    return _VoTableReader(path, chunk_rows)


# ---------------------------------------------------------------------------
# Validation


def _resolve_column(name: str, available: Sequence[str]) -> str | None:
    if name in available:
        return name
    folded = [c for c in available if c.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


def _resolve_frame(frame: str) -> tuple[str, Any]:
    import astropy.units as u
    from astropy.coordinates import SkyCoord, frame_transform_graph

    name = frame.strip().lower()
    frame_class = frame_transform_graph.lookup_name(name)
    if frame_class is None:
        known = ", ".join(sorted(n for n in frame_transform_graph.get_names() if n.isalnum())[:40])
        raise CatalogError(f"Unknown coordinate frame {frame!r}; astropy knows: {known}, ...")
    try:
        SkyCoord(0.0 * u.deg, 0.0 * u.deg, frame=name).icrs
    except Exception as err:
        raise CatalogError(
            f"Coordinates in frame {frame!r} cannot be transformed to ICRS without more information: {err}"
        ) from None
    return name, frame_class


def _frame_component_names(frame_class: Any) -> tuple[str, str]:
    names = {v: k for k, v in frame_class().representation_component_names.items()}
    return names.get("lon", "ra"), names.get("lat", "dec")


def _to_float(column: pa.Array) -> np.ndarray:
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if not pa.types.is_floating(column.type) or column.type != pa.float64():
        column = column.cast(pa.float64())
    return np.asarray(pc.fill_null(column, math.nan).to_numpy(zero_copy_only=False), dtype=np.float64)


def _to_text(column: pa.Array) -> pa.Array:
    """Object ids as text (nulls stay null; NaN floats become null)."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_floating(column.type):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        column = column.cast(pa.large_string(), safe=False)
    if not pa.types.is_large_string(column.type):
        column = column.cast(pa.large_string())
    return column


def _normalise_extra(column: pa.Array) -> pa.Array:
    """Extra columns keep integer, float, bool and string types; anything
    else is carried as text (astropy tables round-trip those).
    """
    t = column.type
    if pa.types.is_dictionary(t):
        column = column.dictionary_decode()
        t = column.type
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or t in (pa.float32(), pa.float64()):
        return column
    if pa.types.is_float16(t):
        return column.cast(pa.float32())
    if pa.types.is_string(t):
        return column
    return column.cast(pa.string())


def _is_text(arrow_type: pa.DataType) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _single(column: Any) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 1:
            return column.chunk(0)
        if column.num_chunks == 0:
            return pa.array([], type=column.type)
        return pa.concat_arrays(column.chunks)
    return column


@dataclasses.dataclass
class _Plan:
    """What to read and how to interpret it."""

    catalog: Path
    fmt: str
    id_column: str
    ra_column: str
    dec_column: str
    size_column: str | None
    size_output: str | None
    size_factor: float
    extras: list[str]
    frame: str
    ra_factor: float
    dec_factor: float
    ra_unit: str
    dec_unit: str


class _Growable:
    """A numpy column appended to in place.

    The capacity grows by half each time; the large buffers are memory
    maps, so a replaced buffer goes back to the operating system (a list of
    chunk arrays concatenated at the end leaves several hundred MB of
    fragmented heap behind for 10 million rows). Pages beyond the rows
    written are never touched, so an upper-bound capacity costs nothing.
    """

    def __init__(self, dtype: Any, capacity: int) -> None:
        self.data = np.empty(max(capacity, 1), dtype=dtype)
        self.n = 0

    def append(self, values: np.ndarray) -> None:
        need = self.n + len(values)
        if need > len(self.data):
            grown = np.empty(max(need, len(self.data) * 3 // 2), dtype=self.data.dtype)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n : need] = values
        self.n = need

    def finish(self) -> np.ndarray:
        """Return the rows written (a view) and drop the reference."""
        result = self.data[: self.n]
        self.data = np.empty(0, dtype=self.data.dtype)
        return result


class _Accumulator:
    """Accepted rows, rejected rows and id hashes, as compact columns."""

    def __init__(self, plan: _Plan, n_rows: int | None, chunk_rows: int) -> None:
        self.plan = plan
        self.n_rows = 0
        capacity = n_rows if n_rows is not None else chunk_rows
        self.row_index = _Growable(np.int64, capacity)
        self.ra = _Growable(np.float64, capacity)
        self.dec = _Growable(np.float64, capacity)
        self.htm = _Growable(np.int32, capacity)
        self.ids: list[pa.Array] = []
        self.size = _Growable(np.float64, capacity if plan.size_column else 0)
        self.wrapped = _Growable(bool, capacity)
        self.extras: dict[str, list[pa.Array]] = {name: [] for name in plan.extras}
        # Raw (file) coordinates of accepted rows where they differ from the
        # published ones: global accepted position -> value.
        self.raw_positions: list[np.ndarray] = []
        self.raw_lon: list[np.ndarray] = []
        self.raw_lat: list[np.ndarray] = []
        self.n_accepted = 0
        # Rejected rows.
        self.rej_row_index: list[np.ndarray] = []
        self.rej_ids: list[pa.Array] = []
        self.rej_lon: list[np.ndarray] = []
        self.rej_lat: list[np.ndarray] = []
        self.rej_code: list[np.ndarray] = []
        self.rej_detail: list[pa.Array] = []
        # Per-row id hashes (0 where the id is missing) and id presence.
        self.hashes = _Growable(np.uint64, capacity)
        self.has_id = _Growable(bool, capacity)

    def add(self, chunk: pa.Table) -> None:
        plan = self.plan
        n = chunk.num_rows
        rows = np.arange(self.n_rows, self.n_rows + n, dtype=np.int64)
        self.n_rows += n
        raw_id_column = _single(chunk.column(plan.id_column))
        ids_raw = _to_text(raw_id_column)
        ids = pc.utf8_trim_whitespace(ids_raw)
        has_id = ~np.asarray(
            pc.fill_null(pc.equal(pc.utf8_length(ids), 0), True).to_numpy(zero_copy_only=False)
        )
        ra_column = _single(chunk.column(plan.ra_column))
        dec_column = _single(chunk.column(plan.dec_column))
        lon = _to_float(ra_column)
        lat = _to_float(dec_column)
        lon_deg = lon * plan.ra_factor if plan.ra_factor != 1.0 else lon
        lat_deg = lat * plan.dec_factor if plan.dec_factor != 1.0 else lat
        finite = np.isfinite(lon_deg) & np.isfinite(lat_deg)
        bad_dec = np.isfinite(lat_deg) & (np.abs(lat_deg) > 90.0)
        valid = has_id & finite & ~bad_dec
        size = None
        bad_size = None
        if plan.size_column is not None:
            size = _to_float(_single(chunk.column(plan.size_column))) * plan.size_factor
            bad_size = ~(np.isfinite(size) & (size > 0))
            valid &= ~bad_size
        hashes = _hash_strings(ids)
        hashes[~has_id] = 0
        self.hashes.append(hashes)
        self.has_id.append(has_id)

        accepted = np.flatnonzero(valid)
        if len(accepted):
            a_lon, a_lat = lon_deg[accepted], lat_deg[accepted]
            if plan.frame == "icrs":
                ra, dec = a_lon.copy(), a_lat.copy()
            else:
                import astropy.units as u
                from astropy.coordinates import SkyCoord

                icrs = SkyCoord(a_lon * u.deg, a_lat * u.deg, frame=plan.frame).icrs
                ra, dec = (
                    np.asarray(icrs.ra.deg, dtype=np.float64),
                    np.asarray(icrs.dec.deg, dtype=np.float64),
                )
            wrapped = (a_lon < 0.0) | (a_lon >= 360.0)
            ra = np.mod(ra, 360.0)
            ra[ra >= 360.0] = 0.0  # np.mod(-1e-20, 360) == 360.0
            self.row_index.append(rows[accepted])
            self.ra.append(ra)
            self.dec.append(dec)
            self.htm.append(htm_indices(ra, dec).astype(np.int32))
            self.wrapped.append(wrapped)
            # 32-bit offsets per chunk; widened at concatenation if needed.
            self.ids.append(ids.take(pa.array(accepted)).cast(pa.string()))
            if size is not None:
                self.size.append(size[accepted])
            for name in plan.extras:
                self.extras[name].append(
                    _normalise_extra(_single(chunk.column(name))).take(pa.array(accepted))
                )
            raw_a_lon, raw_a_lat = lon[accepted], lat[accepted]
            changed = np.flatnonzero((raw_a_lon != ra) | (raw_a_lat != dec))
            if len(changed):
                self.raw_positions.append(changed + self.n_accepted)
                self.raw_lon.append(raw_a_lon[changed])
                self.raw_lat.append(raw_a_lat[changed])
            self.n_accepted += len(accepted)

        rejected = np.flatnonzero(~valid)
        if len(rejected):
            checks = [
                (_MISSING_ID, ~has_id),
                (_NAN_COORDINATES, ~finite),
                (_DEC_OUT_OF_RANGE, bad_dec),
            ]
            if bad_size is not None:
                checks.append((_BAD_SIZE, bad_size))
            codes = np.full(len(rejected), -1, dtype=np.int8)
            for code, mask in checks:
                codes[(codes < 0) & mask[rejected]] = code
            ra_null = np.asarray(ra_column.is_null().to_numpy(zero_copy_only=False))[rejected]
            dec_null = np.asarray(dec_column.is_null().to_numpy(zero_copy_only=False))[rejected]
            id_null = np.asarray(raw_id_column.is_null().to_numpy(zero_copy_only=False))[rejected]
            details = self._details(
                rejected, ~has_id, id_null, lon, lat, ra_null, dec_null, bad_dec, size, bad_size
            )
            self.rej_row_index.append(rows[rejected])
            self.rej_ids.append(pc.fill_null(ids_raw.take(pa.array(rejected)), ""))
            self.rej_lon.append(lon[rejected])
            self.rej_lat.append(lat[rejected])
            self.rej_code.append(codes)
            self.rej_detail.append(pa.array(details, type=pa.large_string()))

    def _details(
        self,
        rejected: np.ndarray,
        missing_id: np.ndarray,
        id_null: np.ndarray,
        lon: np.ndarray,
        lat: np.ndarray,
        ra_null: np.ndarray,
        dec_null: np.ndarray,
        bad_dec: np.ndarray,
        size: np.ndarray | None,
        bad_size: np.ndarray | None,
    ) -> list[str]:
        plan = self.plan

        def coordinate(name: str, value: float, null: bool) -> str | None:
            if null:
                return f"{name} is missing or NaN"
            if math.isnan(value):
                return f"{name} is NaN"
            if math.isinf(value):
                return f"{name} is infinite"
            return None

        size_values = size[rejected].tolist() if size is not None else None
        bad_sizes = bad_size[rejected].tolist() if bad_size is not None else None
        details = []
        for k, (missing, null, x, y, xn, yn, out) in enumerate(
            zip(
                missing_id[rejected].tolist(),
                id_null.tolist(),
                lon[rejected].tolist(),
                lat[rejected].tolist(),
                ra_null.tolist(),
                dec_null.tolist(),
                bad_dec[rejected].tolist(),
            )
        ):
            parts = []
            if missing:
                parts.append(f"{plan.id_column} is {'missing' if null else 'empty'}")
            for text in (coordinate(plan.ra_column, x, xn), coordinate(plan.dec_column, y, yn)):
                if text:
                    parts.append(text)
            if out:
                unit = "" if plan.dec_unit == "deg" else f" {plan.dec_unit} = {y * plan.dec_factor!r} deg"
                parts.append(f"{plan.dec_column} = {y!r}{unit} is outside [-90, 90] deg")
            if bad_sizes is not None and bad_sizes[k]:
                value = size_values[k]
                text = "missing or NaN" if math.isnan(value) else f"{value!r}, not a positive finite number"
                parts.append(f"{plan.size_column} is {text}")
            details.append("; ".join(parts))
        return details


def _member(values: np.ndarray, sorted_set: np.ndarray, block: int = 1 << 20) -> np.ndarray:
    """Return whether each value is in ``sorted_set`` (sorted, unique), in
    blocks to bound the temporary memory (``np.isin`` sorts a copy of
    everything).
    """
    result = np.zeros(len(values), dtype=bool)
    if not len(sorted_set):
        return result
    for start in range(0, len(values), block):
        chunk = values[start : start + block]
        positions = np.searchsorted(sorted_set, chunk)
        np.minimum(positions, len(sorted_set) - 1, out=positions)
        result[start : start + block] = sorted_set[positions] == chunk
    return result


def _find_duplicates(acc: _Accumulator, accepted_ids: pa.Array, accepted_rows: np.ndarray) -> dict[int, str]:
    """Return ``{row_index: detail}`` for every row whose (stripped) id is
    also on another row.
    """
    # Repeated hashes: sort the hashes of rows with an id (one 8-byte copy,
    # sorted in place), then find the rows holding them.
    hashes, has_id = acc.hashes.finish(), acc.has_id.finish()
    present = hashes[has_id]
    if len(present) < 2:
        return {}
    present.sort()
    repeated = np.unique(present[1:][present[1:] == present[:-1]])
    del present
    if not len(repeated):
        return {}
    candidates = np.flatnonzero(has_id & _member(hashes, repeated))
    del hashes, has_id
    # The real (stripped) strings of the candidates.
    texts: dict[int, str] = {}
    positions = np.searchsorted(accepted_rows, candidates)
    positions = np.minimum(positions, max(len(accepted_rows) - 1, 0))
    in_accepted = (
        (accepted_rows[positions] == candidates) if len(accepted_rows) else np.zeros(len(candidates), bool)
    )
    if in_accepted.any():
        values = accepted_ids.take(pa.array(positions[in_accepted])).to_pylist()
        texts.update(zip(candidates[in_accepted].tolist(), values))
    if (~in_accepted).any():
        rej_rows = np.concatenate(acc.rej_row_index)
        rej_ids = pa.concat_arrays(acc.rej_ids) if len(acc.rej_ids) > 1 else acc.rej_ids[0]
        wanted = candidates[~in_accepted]
        where = np.searchsorted(rej_rows, wanted)
        values = pc.utf8_trim_whitespace(rej_ids.take(pa.array(where))).to_pylist()
        texts.update(zip(wanted.tolist(), values))
    groups: dict[str, list[int]] = {}
    for row in candidates.tolist():
        groups.setdefault(texts[row], []).append(row)
    duplicates: dict[int, str] = {}
    id_column = acc.plan.id_column
    for text, group in groups.items():
        if len(group) < 2:
            continue  # A hash collision between different ids.
        for row in group:
            others = [r for r in group if r != row]
            listed = ", ".join(str(r) for r in others[:_MAX_LISTED_ROWS])
            more = f" and {len(others) - _MAX_LISTED_ROWS} more" if len(others) > _MAX_LISTED_ROWS else ""
            duplicates[row] = (
                f"{id_column} {text!r} is on {len(group)} rows; also on row_index {listed}{more}"
            )
    return duplicates


# ---------------------------------------------------------------------------
# Writing


def _template_schema(
    columns: list[tuple[str, pa.DataType, str | None, str]], meta: dict[str, Any]
) -> tuple[pa.Schema, dict[bytes, bytes]]:
    """Arrow schema and metadata the ArrowAstropy formatter writes for an
    astropy table with these columns (name, type, unit, description).
    """
    from astropy.table import Column, Table

    from lsst.daf.butler.formatters.parquet import astropy_to_arrow

    table = Table()
    for name, arrow_type, unit, description in columns:
        if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
            dtype = np.dtype("U1")
        else:
            dtype = arrow_type.to_pandas_dtype()
        table[name] = Column(np.zeros(0, dtype=dtype), unit=unit, description=description or None)
    table.meta.update(meta)
    arrow = astropy_to_arrow(table)
    return arrow.schema, dict(arrow.schema.metadata)


class _ShardWriter:
    """Write shard tables as Parquet files in the ArrowAstropy layout.

    The schema and metadata come from daf_butler's own ``astropy_to_arrow``
    on an empty table of the same columns; per shard only the row count
    and the string widths (``lsst::arrow::len::<column>``, the astropy
    ``U`` width) change. A test pins the result against
    ``astropy_to_arrow`` of the table read back.
    """

    def __init__(self, schema: pa.Schema, metadata: dict[bytes, bytes]) -> None:
        import pyarrow.parquet as pq

        from lsst.daf.butler.formatters.parquet import compute_row_group_size

        self._pq = pq
        self.schema = schema
        self.metadata = metadata
        # Shards are far smaller than a row group; one value serves all.
        self.row_group_size = compute_row_group_size(schema.with_metadata(metadata))

    def write(self, arrays: list[pa.Array], string_lengths: dict[str, int], path: str) -> None:
        metadata = dict(self.metadata)
        metadata[b"lsst::arrow::rowcount"] = str(len(arrays[0])).encode()
        for name, length in string_lengths.items():
            metadata[f"lsst::arrow::len::{name}".encode()] = str(length).encode()
            metadata[f"table::len::{name}".encode()] = str(length).encode()
        arrays = [a if a.type == f.type else a.cast(f.type) for a, f in zip(arrays, self.schema)]
        table = pa.Table.from_arrays(arrays, schema=self.schema.with_metadata(metadata))
        self._pq.write_table(table, path, row_group_size=self.row_group_size)


def _staging_directory(butler: Any) -> str:
    """Make a staging directory on the datastore's file system if it is
    local (so that ``transfer="move"`` is a rename), else a temporary one.
    """
    try:
        roots = [r for r in butler.get_datastore_roots().values() if r is not None]
    except Exception:  # e.g. a remote Butler.
        roots = []
    for root in roots:
        if root.isLocal and os.path.isdir(root.ospath) and os.access(root.ospath, os.W_OK):
            return tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=root.ospath)
    return tempfile.mkdtemp(prefix=_STAGING_PREFIX)


def _count_in_run(butler: Any, dataset_type: str, run: str) -> int:
    from lsst.daf.butler import MissingCollectionError, MissingDatasetTypeError

    try:
        with butler.query() as query:
            return int(query.datasets(dataset_type, collections=[run]).count(exact=True))
    except (MissingDatasetTypeError, MissingCollectionError):
        return 0


def _check_run(butler: Any, run: str) -> bool:
    """Refuse a run that already holds targets; return whether it
    exists.
    """
    from lsst.daf.butler import CollectionType, MissingCollectionError

    try:
        info = butler.collections.get_info(run)
    except MissingCollectionError:
        return False
    if info.type != CollectionType.RUN:
        raise CatalogError(f"Collection {run!r} exists and is a {info.type.name} collection, not a RUN.")
    n_targets = _count_in_run(butler, TARGETS.name, run)
    n_rejected = _count_in_run(butler, TARGETS_REJECTED.name, run)
    if n_targets or n_rejected:
        raise CatalogError(
            f"Run {run!r} already holds {n_targets} target shards ({TARGETS.name}) and "
            f"{n_rejected} {TARGETS_REJECTED.name} dataset(s); shard into a new run instead (another "
            f"--output-run, e.g. {run + '_v2'!r}), or remove this one first."
        )
    return True


# ---------------------------------------------------------------------------
# The entry point


def shard_target_catalog(
    butler: Any,
    catalog: str | os.PathLike,
    *,
    run: str,
    id_column: str = "object_id",
    ra_column: str = "ra",
    dec_column: str = "dec",
    size_column: str | None = None,
    size_unit: str = "pixel",
    extra_columns: Sequence[str] | str = (),
    frame: str = "icrs",
    coordinate_unit: str | None = None,
    file_format: str | None = None,
    chunk_rows: int = 500_000,
    progress: Callable[[str], None] | None = None,
) -> ShardingSummary:
    """Validate a PI's catalog and write it into a RUN as
    ``zooniverse_targets`` shards, one per HTM level-7 trixel, plus the
    ``zooniverse_targets_rejected`` table.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler` or `str`
        A writeable Butler, or a repository path/URI (opened with
        `get_butler`).
    catalog : `str` or `os.PathLike`
        Catalog file: CSV (``.csv``, ``.csv.gz``), Parquet (``.parquet``,
        ``.pq``), FITS binary table (``.fits``, ``.fit``, ``.fits.gz``;
        the first table HDU) or VOTable (``.vot``, ``.xml``,
        ``.votable``).
    run : `str`
        RUN collection to write; it must not hold targets already.
    id_column, ra_column, dec_column : `str`, optional
        Columns of the object id and the coordinates (longitude and
        latitude in ``frame``). Names match exactly, else
        case-insensitively. For a non-ICRS frame the frame's own names
        (``l``/``b`` for ``galactic``) are used if the default ``ra``/
        ``dec`` are absent.
    size_column : `str`, optional
        Per-object cutout size; published as ``cutout_size_pixels`` or
        ``cutout_size_arcsec``.
    size_unit : `str`, optional
        ``"pixel"`` or ``"arcsec"``.
    extra_columns : `~collections.abc.Sequence` [`str`] or `str`, optional
        Columns carried unchanged (a comma-separated string is split).
    frame : `str`, optional
        Astropy frame name of the coordinates (``icrs``, ``fk5``,
        ``galactic``, ...); others are transformed to ICRS.
    coordinate_unit : `str`, optional
        Unit of the coordinate columns when the file records none
        (default degrees). A unit recorded in the file (FITS ``TUNITn``,
        VOTable ``unit``, Parquet/astropy metadata) wins.
    file_format : `str`, optional
        One of `CATALOG_FORMATS`; default from the extension.
    chunk_rows : `int`, optional
        Rows read and validated at a time.
    progress : callable, optional
        Called with a short message at each step (messages are also
        logged under ``lsst.epo.zooniverse.sharding``).

    Returns
    -------
    summary : `ShardingSummary`
        Counts, shards written and time taken.

    Raises
    ------
    CatalogError
        Raised for structural problems (missing or non-numeric column,
        unreadable file, parse error, unknown frame/format/unit, a run that
        already holds targets); the repository is left unchanged.

    Notes
    -----
    Every row is validated: missing/blank id, duplicated id (every row of
    the id is refused), missing/NaN/infinite coordinate, latitude outside
    [-90, 90] deg, and, with ``size_column``, a missing or non-positive
    size. Refused rows go to ``zooniverse_targets_rejected`` (``row_index``,
    ``object_id``, raw ``ra``/``dec`` in the file's units, ``reason`` from
    `REJECTION_REASONS`, ``detail``). Longitudes outside [0, 360) are
    wrapped, not refused.

    The whole file is validated before the first write. CSV, Parquet and
    FITS are streamed; a VOTable is parsed whole (astropy cannot stream
    it); gzip-compressed FITS is decompressed in memory. For CSV, ``row_index``
    counts data rows (header excluded, blank lines skipped), and the types
    of extra columns are inferred from the first block (about
    ``chunk_rows`` rows). Object ids are compared and published with
    surrounding whitespace removed.

    The tables' metadata (``catalog``, ``frame``, ``id_column``; counts in
    the rejection table) is dropped by the Butler on read unless asked
    for: ``butler.get(..., parameters={"strip_astropy_meta_yaml": False})``.
    """
    started = time.perf_counter()
    say = _reporter(progress)
    path = Path(catalog)
    if isinstance(extra_columns, str):
        extra_columns = [c for c in (p.strip() for p in extra_columns.split(",")) if c]
    extra_columns = list(extra_columns)
    if not isinstance(chunk_rows, int) or chunk_rows <= 0:
        raise CatalogError(f"chunk_rows must be a positive integer, not {chunk_rows!r}.")
    if size_unit not in _SIZE_COLUMNS:
        raise CatalogError(f"size_unit must be one of {', '.join(_SIZE_COLUMNS)}, not {size_unit!r}.")
    if not run:
        raise CatalogError("An output run name is required.")
    fmt = detect_catalog_format(path, file_format)
    frame_name, frame_class = _resolve_frame(frame)
    fallback_unit = _parse_unit(coordinate_unit, "coordinate_unit") if coordinate_unit else None

    reader = _open_reader(path, fmt, chunk_rows)
    try:
        plan = _make_plan(
            reader,
            path=path,
            fmt=fmt,
            id_column=id_column,
            ra_column=ra_column,
            dec_column=dec_column,
            size_column=size_column,
            size_unit=size_unit,
            extra_columns=extra_columns,
            frame_name=frame_name,
            frame_class=frame_class,
            fallback_unit=fallback_unit,
        )
        if isinstance(butler, str | os.PathLike):
            butler = get_butler(os.fspath(butler), writeable=True)
        run_exists = _check_run(butler, run)

        say(
            f"Reading {path.name} ({fmt}, {reader.n_rows if reader.n_rows is not None else 'unknown'} rows) "
            f"in chunks of {chunk_rows} rows"
        )
        acc = _Accumulator(plan, reader.n_rows, chunk_rows)
        columns = {plan.id_column: "id", plan.ra_column: "float", plan.dec_column: "float"}
        if plan.size_column:
            columns[plan.size_column] = "float"
        for name in plan.extras:
            columns.setdefault(name, "extra")
        read_start = time.perf_counter()
        for chunk in _rechunk(reader.batches(columns), chunk_rows):
            acc.add(chunk)
            elapsed = time.perf_counter() - read_start
            _LOG.info(
                "Read and validated %d rows of %s (%d accepted so far, %.0f rows/s)",
                acc.n_rows,
                path.name,
                acc.n_accepted,
                acc.n_rows / elapsed if elapsed > 0 else 0.0,
            )
    finally:
        reader.close()

    say(f"Validated {acc.n_rows} rows in {time.perf_counter() - read_start:.1f} s; checking ids")
    accepted = _finish_accepted(acc)
    duplicates = _find_duplicates(acc, accepted["ids"], accepted["row_index"])
    rejected, keep = _finish_rejected(acc, accepted, duplicates)
    n_ra_normalised = int(accepted["wrapped"][keep].sum()) if len(keep) else 0
    codes = np.asarray(rejected["reason_code"])
    rejected_by_reason = {
        code: int(count)
        for code, count in zip(_REASON_CODES, np.bincount(codes, minlength=len(_REASON_CODES)))
        if count
    }
    n_accepted = int(keep.sum())
    rejected_table = _rejected_table(
        rejected, plan, acc.n_rows, n_accepted, n_ra_normalised, rejected_by_reason
    )
    del rejected

    n_shards = _write(butler, run, run_exists, plan, accepted, keep, rejected_table, say)
    summary = ShardingSummary(
        run=run,
        n_rows=acc.n_rows,
        n_accepted=n_accepted,
        n_rejected=len(rejected_table),
        rejected_by_reason=rejected_by_reason,
        n_ra_normalised=n_ra_normalised,
        n_shards=n_shards,
        seconds=time.perf_counter() - started,
        catalog=str(path),
    )
    say(
        f"Sharded {summary.n_rows} rows of {path.name} into {run}: {summary.n_accepted} accepted in "
        f"{summary.n_shards} shards, {summary.n_rejected} rejected, in {summary.seconds:.1f} s"
    )
    return summary


def _reporter(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    def say(message: str) -> None:
        _LOG.info("%s", message)
        if progress is not None:
            progress(message)

    return say


def _make_plan(
    reader: _Reader,
    *,
    path: Path,
    fmt: str,
    id_column: str,
    ra_column: str,
    dec_column: str,
    size_column: str | None,
    size_unit: str,
    extra_columns: list[str],
    frame_name: str,
    frame_class: Any,
    fallback_unit: Any,
) -> _Plan:
    import astropy.units as u

    available = reader.columns
    listing = ", ".join(available) if available else "(none)"

    def resolve(name: str, what: str, alternatives: Sequence[str] = ()) -> str:
        found = _resolve_column(name, available)
        for alternative in alternatives:
            if found is None:
                found = _resolve_column(alternative, available)
        if found is None:
            raise CatalogError(
                f"Column {name!r} ({what}) is not in catalog {path.name}; its columns are: {listing}."
            )
        return found

    lon_name, lat_name = _frame_component_names(frame_class)
    ra_alternatives = [lon_name] if ra_column == "ra" and lon_name != "ra" else []
    dec_alternatives = [lat_name] if dec_column == "dec" and lat_name != "dec" else []
    id_found = resolve(id_column, "object id")
    ra_found = resolve(ra_column, "longitude/RA", ra_alternatives)
    dec_found = resolve(dec_column, "latitude/Dec", dec_alternatives)
    size_found = resolve(size_column, "cutout size") if size_column else None
    extras = []
    for name in extra_columns:
        found = resolve(name, "extra column")
        if found in _RESERVED_COLUMNS:
            raise CatalogError(
                f"Extra column {found!r} clashes with a column the shards define "
                f"({', '.join(_RESERVED_COLUMNS)}); rename it in the catalog."
            )
        if found in extras:
            raise CatalogError(f"Extra column {found!r} is listed twice.")
        extras.append(found)
    for name, what in ((ra_found, "longitude/RA"), (dec_found, "latitude/Dec"), (size_found, "cutout size")):
        if name is not None and reader.is_numeric(name) is False:
            raise CatalogError(
                f"Column {name!r} ({what}) of catalog {path.name} is not numeric "
                f"({reader.describe_type(name)})."
            )

    def angle_factor(column: str) -> tuple[float, str]:
        unit = _parse_unit(reader.units.get(column), f"column {column!r}") or fallback_unit or u.deg
        if unit.physical_type != "angle":
            raise CatalogError(
                f"Column {column!r} of catalog {path.name} has unit {unit.to_string()!r}, which is not an "
                "angle; coordinates must be in an angular unit (deg, rad, arcsec, ...)."
            )
        return float(unit.to(u.deg)), unit.to_string()

    ra_factor, ra_unit = angle_factor(ra_found)
    dec_factor, dec_unit = angle_factor(dec_found)
    size_factor = 1.0
    if size_found is not None:
        size_file_unit = _parse_unit(reader.units.get(size_found), f"column {size_found!r}")
        if size_file_unit is not None:
            is_angle = size_file_unit.physical_type == "angle"
            is_pixel = size_file_unit in (u.pix, u.dimensionless_unscaled) or size_file_unit.to_string() in (
                "pix",
                "pixel",
            )
            if size_unit == "arcsec" and is_angle:
                size_factor = float(size_file_unit.to(u.arcsec))
            elif not (size_unit == "pixel" and is_pixel):
                raise CatalogError(
                    f"Column {size_found!r} of catalog {path.name} has unit {size_file_unit.to_string()!r}, "
                    f"which does not match size_unit={size_unit!r}."
                )
    if ra_factor != 1.0 or dec_factor != 1.0:
        _LOG.info("Coordinates of %s are in %s/%s; converting to degrees", path.name, ra_unit, dec_unit)
    return _Plan(
        catalog=path,
        fmt=fmt,
        id_column=id_found,
        ra_column=ra_found,
        dec_column=dec_found,
        size_column=size_found,
        size_output=_SIZE_COLUMNS[size_unit] if size_found else None,
        size_factor=size_factor,
        extras=extras,
        frame=frame_name,
        ra_factor=ra_factor,
        dec_factor=dec_factor,
        ra_unit=ra_unit,
        dec_unit=dec_unit,
    )


def _concat_numpy(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=dtype)
    result = np.concatenate(parts)
    parts.clear()
    return result


def _concat_arrow(parts: list[pa.Array], arrow_type: pa.DataType) -> pa.Array:
    if not parts:
        return pa.array([], type=arrow_type)
    types = {p.type for p in parts}
    if len(types) > 1 or (types == {pa.string()} and sum(p.nbytes for p in parts) > 2**31 - 2**24):
        # Mixed types, or text beyond what 32-bit offsets address.
        parts[:] = [p.cast(pa.large_string()) for p in parts]
    result = pa.concat_arrays(parts) if len(parts) > 1 else parts[0]
    parts.clear()
    return result


def _finish_accepted(acc: _Accumulator) -> dict[str, Any]:
    """Concatenate the accepted chunks, one column at a time."""
    result: dict[str, Any] = {
        "row_index": acc.row_index.finish(),
        "ra": acc.ra.finish(),
        "dec": acc.dec.finish(),
        "htm": acc.htm.finish(),
        "wrapped": acc.wrapped.finish(),
        "ids": _concat_arrow(acc.ids, pa.string()),
        "size": acc.size.finish() if acc.plan.size_column else None,
        "raw_positions": _concat_numpy(acc.raw_positions, np.int64),
        "raw_lon": _concat_numpy(acc.raw_lon, np.float64),
        "raw_lat": _concat_numpy(acc.raw_lat, np.float64),
        "extras": {},
    }
    for name in acc.plan.extras:
        result["extras"][name] = _concat_arrow(acc.extras[name], pa.string())
    return result


def _finish_rejected(
    acc: _Accumulator, accepted: dict[str, Any], duplicates: dict[int, str]
) -> tuple[dict[str, Any], np.ndarray]:
    """Merge the chunk rejections and the duplicated ids; return the
    rejected columns (sorted by row index) and the mask of accepted rows
    to publish.
    """
    row_index = _concat_numpy(acc.rej_row_index, np.int64)
    ids = _concat_arrow(acc.rej_ids, pa.large_string())
    lon = _concat_numpy(acc.rej_lon, np.float64)
    lat = _concat_numpy(acc.rej_lat, np.float64)
    codes = _concat_numpy(acc.rej_code, np.int8)
    details = _concat_arrow(acc.rej_detail, pa.large_string())
    accepted_rows = accepted["row_index"]
    keep = np.ones(len(accepted_rows), dtype=bool)
    if duplicates:
        dup_rows = np.array(sorted(duplicates), dtype=np.int64)
        # Rows already rejected for another reason: duplicate_id wins.
        if len(row_index):
            hit = _member(row_index, dup_rows)
            if hit.any():
                positions = np.flatnonzero(hit)
                codes[positions] = _DUPLICATE_ID
                detail_list = details.to_pylist()
                for p in positions.tolist():
                    detail_list[p] = f"{duplicates[int(row_index[p])]}; {detail_list[p]}"
                details = pa.array(detail_list, type=pa.large_string())
        # Accepted rows of a duplicated id move to the rejected table.
        moved = np.flatnonzero(_member(accepted_rows, dup_rows))
        if len(moved):
            keep[moved] = False
            raw_lon = accepted["ra"][moved].copy()
            raw_lat = accepted["dec"][moved].copy()
            raw_positions = accepted["raw_positions"]
            if len(raw_positions):
                where = np.searchsorted(raw_positions, moved)
                where_clipped = np.minimum(where, len(raw_positions) - 1)
                found = raw_positions[where_clipped] == moved
                raw_lon[found] = accepted["raw_lon"][where_clipped[found]]
                raw_lat[found] = accepted["raw_lat"][where_clipped[found]]
            moved_rows = accepted_rows[moved]
            row_index = np.concatenate([row_index, moved_rows])
            ids = pa.concat_arrays([ids, accepted["ids"].take(pa.array(moved)).cast(pa.large_string())])
            lon = np.concatenate([lon, raw_lon])
            lat = np.concatenate([lat, raw_lat])
            codes = np.concatenate([codes, np.full(len(moved), _DUPLICATE_ID, dtype=np.int8)])
            details = pa.concat_arrays(
                [details, pa.array([duplicates[r] for r in moved_rows.tolist()], type=pa.large_string())]
            )
    order = np.argsort(row_index, kind="stable")
    rejected = {
        "row_index": row_index[order],
        "object_id": ids.take(pa.array(order)),
        "ra": lon[order],
        "dec": lat[order],
        "reason_code": codes[order],
        "detail": details.take(pa.array(order)),
    }
    return rejected, keep


def _rejected_table(
    rejected: dict[str, Any],
    plan: _Plan,
    n_rows: int,
    n_accepted: int,
    n_ra_normalised: int,
    rejected_by_reason: dict[str, int],
) -> Any:
    from astropy.table import Column, Table

    def text(array: pa.Array) -> np.ndarray:
        values = array.to_numpy(zero_copy_only=False)
        return values.astype(str) if len(values) else np.zeros(0, dtype="U1")

    reasons = (
        np.array(_REASON_CODES)[rejected["reason_code"]]
        if len(rejected["reason_code"])
        else np.zeros(0, "U1")
    )
    table = Table()
    table["row_index"] = Column(rejected["row_index"], description="0-based data row of the catalog")
    table["object_id"] = Column(text(rejected["object_id"]), description="object id as text, as read")
    table["ra"] = Column(rejected["ra"], description=f"raw {plan.ra_column} ({plan.ra_unit}); NaN if missing")
    table["dec"] = Column(
        rejected["dec"], description=f"raw {plan.dec_column} ({plan.dec_unit}); NaN if missing"
    )
    table["reason"] = Column(reasons, description="reason code (see REJECTION_REASONS)")
    table["detail"] = Column(text(rejected["detail"]), description="what is wrong with the row")
    table.meta.update(
        {
            "catalog": plan.catalog.name,
            "frame": plan.frame,
            "id_column": plan.id_column,
            "n_rows": n_rows,
            "n_accepted": n_accepted,
            "n_rejected": len(table),
            "n_ra_normalised": n_ra_normalised,
            "rejected_by_reason": dict(rejected_by_reason),
        }
    )
    return table


def _write(
    butler: Any,
    run: str,
    run_exists: bool,
    plan: _Plan,
    accepted: dict[str, Any],
    keep: np.ndarray,
    rejected_table: Any,
    say: Callable[[str], None],
) -> int:
    """Sort the accepted rows by trixel, write the shards and the
    rejection table into ``run`` in one transaction; return the number of
    shards.
    """
    t0 = time.perf_counter()
    if keep.all():
        order = np.argsort(accepted["htm"], kind="stable")
    else:
        positions = np.flatnonzero(keep)
        order = positions[np.argsort(accepted["htm"][positions], kind="stable")]
        del positions
    sorted_htm = accepted.pop("htm")[order]
    n = len(order)
    if n:
        starts = np.flatnonzero(np.concatenate([[True], sorted_htm[1:] != sorted_htm[:-1]]))
    else:
        starts = np.zeros(0, dtype=np.int64)
    ends = np.concatenate([starts[1:], [n]]).astype(np.int64)
    shard_ids = sorted_htm[starts].astype(np.int64)
    del sorted_htm
    take = pa.array(order)
    # Columns in shard order, as Arrow arrays (sliced per shard, no copy).
    columns: list[tuple[str, pa.Array]] = [
        ("object_id", accepted.pop("ids").take(take)),
        ("ra", pa.array(accepted.pop("ra")[order])),
        ("dec", pa.array(accepted.pop("dec")[order])),
        ("row_index", pa.array(accepted.pop("row_index")[order])),
    ]
    if plan.size_output:
        columns.append((plan.size_output, pa.array(accepted.pop("size")[order])))
    extras = accepted.pop("extras")
    for name in plan.extras:
        columns.append((name, extras.pop(name).take(take)))
    del order, take
    string_lengths = {}
    for name, values in columns:
        if _is_text(values.type):
            lengths = np.asarray(pc.fill_null(pc.utf8_length(values), 0).to_numpy(zero_copy_only=False))
            per_shard = np.maximum.reduceat(lengths, starts) if len(starts) else np.zeros(0, np.int64)
            string_lengths[name] = np.maximum(per_shard, 1).tolist()
    descriptions = {
        "object_id": ("object id from the catalog", None),
        "ra": ("ICRS right ascension", "deg"),
        "dec": ("ICRS declination", "deg"),
        "row_index": ("0-based data row of the catalog", None),
        "cutout_size_pixels": ("cutout size requested for the object", "pix"),
        "cutout_size_arcsec": ("cutout size requested for the object", "arcsec"),
    }
    spec = []
    for name, values in columns:
        description, unit = descriptions.get(name, ("", None))
        spec.append((name, values.type, unit, description))
    schema, metadata = _template_schema(
        spec, {"catalog": plan.catalog.name, "frame": plan.frame, "id_column": plan.id_column}
    )
    # Cast to the exact Arrow types astropy_to_arrow writes (text stays as
    # it is: more than 2 GiB of it needs 64-bit offsets, cast per shard).
    columns = [
        (name, values if values.type == field.type or _is_text(values.type) else values.cast(field.type))
        for (name, values), field in zip(columns, schema)
    ]
    writer = _ShardWriter(schema, metadata)
    say(f"Sorted {n} accepted rows into {len(shard_ids)} htm7 shards in {time.perf_counter() - t0:.1f} s")

    register_dataset_types(butler, [TARGETS, TARGETS_REJECTED])
    staging = _staging_directory(butler)
    created_run = False
    try:
        # Files first (outside the transaction, so that the registry is
        # locked only while ingesting).
        t1 = time.perf_counter()
        arrays = [values for _, values in columns]
        del columns
        paths = []
        report_every = max(5000, len(shard_ids) // 10)
        for k, (shard, start, end) in enumerate(zip(shard_ids.tolist(), starts.tolist(), ends.tolist())):
            path = os.path.join(staging, f"{TARGETS.name}_htm7_{shard}.parq")
            writer.write(
                [values.slice(start, end - start) for values in arrays],
                {name: values[k] for name, values in string_lengths.items()},
                path,
            )
            paths.append(path)
            if (k + 1) % report_every == 0:
                _LOG.info(
                    "Wrote %d of %d shard files (%.0f files/s)",
                    k + 1,
                    len(shard_ids),
                    (k + 1) / max(time.perf_counter() - t1, 1e-9),
                )
        del arrays
        say(f"Wrote {len(paths)} shard files in {time.perf_counter() - t1:.1f} s; ingesting them into {run}")
        t2 = time.perf_counter()
        if not run_exists:
            butler.collections.register(run)
            created_run = True
        _ingest(butler, run, shard_ids.tolist(), paths, rejected_table, t2)
        say(f"Ingested {len(paths)} shards and the rejection table in {time.perf_counter() - t2:.1f} s")
    except BaseException:
        if created_run:
            try:
                butler.collections.x_remove(run)
            except Exception:  # best effort; the run is empty.
                _LOG.warning("Could not remove the empty run %s after a failure.", run)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(shard_ids)


def _ingest(
    butler: Any, run: str, shard_ids: list[int], paths: list[str], rejected_table: Any, t0: float
) -> None:
    """Ingest the shard files (moved into the datastore) and put the
    rejection table, all in one transaction.
    """
    from lsst.daf.butler import DataCoordinate, DatasetRef, FileDataset
    from lsst.daf.butler.formatters.parquet import ParquetFormatter

    targets_type = TARGETS.make(butler.dimensions)
    group = butler.dimensions.conform(["htm7"])
    with butler.transaction():
        for first in range(0, len(paths), _INGEST_BATCH):
            stop = min(first + _INGEST_BATCH, len(paths))
            datasets = [
                FileDataset(
                    path=paths[k],
                    refs=[
                        DatasetRef(
                            targets_type, DataCoordinate.from_required_values(group, (shard_ids[k],)), run=run
                        )
                    ],
                    formatter=ParquetFormatter,
                )
                for k in range(first, stop)
            ]
            butler.ingest(*datasets, transfer="move")
            _LOG.info(
                "Ingested %d of %d shards (%.0f datasets/s)",
                stop,
                len(paths),
                stop / max(time.perf_counter() - t0, 1e-9),
            )
        butler.put(rejected_table, TARGETS_REJECTED.make(butler.dimensions), run=run)
