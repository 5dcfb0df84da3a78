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

"""Readers of the four catalog formats (CSV, Parquet, FITS binary table,
VOTable), streaming Arrow tables of the columns asked for.
"""

from __future__ import annotations

__all__ = [
    "CATALOG_FORMATS",
    "CatalogReader",
    "detect_catalog_format",
    "open_reader",
    "parse_unit",
    "rechunk",
]

import csv
import io
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import CatalogError

_LOG = logging.getLogger("lsst.epo.zooniverse.sharding")

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


def parse_unit(text: Any, where: str) -> Any:
    """Return the astropy unit a catalog records.

    Parameters
    ----------
    text : `str`, `astropy.units.UnitBase` or `None`
        The unit as recorded (generic, FITS or VOUnit spelling). Spellings
        astropy does not know as given are retried in lower case, without
        quotes and without a plural ``s`` (``DEG``, ``Degrees``, ``'h'``,
        ``hours``), as are units a VOTable parser kept as unknown.
    where : `str`
        What the unit belongs to, for the error message.

    Returns
    -------
    unit : `astropy.units.UnitBase` or `None`
        The unit, or `None` if none is recorded.

    Raises
    ------
    CatalogError
        Raised if astropy does not know the unit.
    """
    import astropy.units as u

    if text is None or text == "":
        return None
    if isinstance(text, u.UnitBase):
        # A unit the VOTable parser did not know is kept as a new unit.
        text = text.to_string()
    spelled = str(text).strip()
    bare = spelled.strip("'\"")
    for candidate in dict.fromkeys([spelled, bare, bare.lower(), bare.lower().rstrip("s")]):
        for fmt in (None, "fits"):
            try:
                return u.Unit(candidate, format=fmt)
            except ValueError:
                pass
    raise CatalogError(f"Unit {text!r} of {where} is not a unit astropy knows.")


def rechunk(batches: Iterable[pa.Table], chunk_rows: int) -> Iterator[pa.Table]:
    """Regroup tables of any size into tables of exactly ``chunk_rows`` rows
    (the last one shorter).

    Parameters
    ----------
    batches : `~collections.abc.Iterable` [`pyarrow.Table`]
        Tables of one schema, in order.
    chunk_rows : `int`
        Rows of every table yielded but the last.

    Yields
    ------
    chunk : `pyarrow.Table`
        The rows, in order, each chunk in one contiguous Arrow chunk.
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


class CatalogReader:
    """Base class of the catalog readers (use `open_reader`).

    Parameters
    ----------
    path : `pathlib.Path`
        The catalog file.

    Attributes
    ----------
    columns : `list` [`str`]
        Column names, in file order.
    units : `dict` [`str`, `typing.Any`]
        Units the file records, by column.
    n_rows : `int` or `None`
        Data rows, if known before reading.
    """

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
        """Describe a column's type, for error messages."""
        return "?"

    def batches(self, columns: dict[str, str]) -> Iterator[pa.Table]:
        """Yield tables of the given columns (name -> role ``id``,
        ``float`` or ``extra``), in file order.
        """
        raise NotImplementedError()

    def close(self) -> None:
        """Release the file."""
        pass


class _CsvReader(CatalogReader):
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


class _ParquetReader(CatalogReader):
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


class _FitsReader(CatalogReader):
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


class _VoTableReader(CatalogReader):
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


def open_reader(path: Path, fmt: str, chunk_rows: int) -> CatalogReader:
    """Open a catalog with the reader of its format.

    Parameters
    ----------
    path : `pathlib.Path`
        The catalog file.
    fmt : `str`
        One of `CATALOG_FORMATS` (see `detect_catalog_format`).
    chunk_rows : `int`
        About how many rows the reader hands out at a time.

    Returns
    -------
    reader : `CatalogReader`
        The open reader; call its ``close`` when done.

    Raises
    ------
    CatalogError
        Raised if the file cannot be opened or read as ``fmt``.
    """
    if fmt == "csv":
        return _CsvReader(path, chunk_rows)
    if fmt == "parquet":
        return _ParquetReader(path, chunk_rows)
    if fmt == "fits":
        return _FitsReader(path, chunk_rows)
    return _VoTableReader(path, chunk_rows)
