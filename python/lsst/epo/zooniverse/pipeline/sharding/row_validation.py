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

"""Row validation: every row of a catalog, chunk by chunk, is accepted
(kept as compact columns) or rejected with a reason.

The rules (also in ``doc/catalog_rules.md``):

Object ids
    The id column's values, as text with surrounding whitespace removed. A
    missing, empty or blank id is ``missing_id``; an id on more than one
    row rejects every such row as ``duplicate_id``. A catalog without an
    id column can use each row's 0-based row number in the file (the same
    number as ``row_index``, as text) with ``id_column=None``
    (``--row-number-ids``); those ids are unique, so no row is a
    duplicate, and the tables' metadata says ``object_ids: row_number``.
    Without that option a missing id column is a structural error.
Units
    Coordinates are converted to degrees with the unit the file records
    for the column (FITS ``TUNITn``, VOTable ``unit``, Parquet/astropy
    metadata), else ``coordinate_unit``, else degrees. The RA (frame
    longitude) may also be in hours (``h``, ``hourangle``; 1 h = 15 deg);
    any other unit that is not an angle is a structural error. The size
    column's recorded unit is converted to ``size_unit`` (an angle for
    ``arcsec``, ``pix`` or none for ``pixel``; anything else is an error).
RA (frame longitude), after the unit conversion
    A finite RA in [0, 360) deg is used as it is. A finite RA in
    [-360, 0) or [360, 720) deg is normalised into [0, 360) (a negative RA,
    or one just past 360, is a common convention): the row is published
    and listed in ``zooniverse_targets_normalised`` with its RA as read and
    the normalised value. A finite RA outside [-360, 720) deg is a data
    error: ``ra_out_of_range``.
Dec (frame latitude)
    Outside [-90, 90] deg: ``dec_out_of_range``. A missing, NaN or infinite
    RA or Dec: ``nan_coordinates``.
Size
    With a size column, a missing, NaN, infinite, zero or negative size:
    ``bad_size``.
"""

from __future__ import annotations

__all__ = [
    "RA_NORMALISABLE",
    "REASON_CODES",
    "REJECTION_REASONS",
    "RowAccumulator",
    "finish_accepted",
    "finish_rejected",
    "is_text",
]

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .duplicates import hash_strings, in_sorted_set
from .htm_index import htm_indices
from .read_plan import ReadPlan

REJECTION_REASONS = {
    "missing_id": "the object id is missing, empty or blank",
    "duplicate_id": "the object id appears on more than one row (every such row is rejected)",
    "nan_coordinates": "a coordinate is missing, NaN or infinite",
    "ra_out_of_range": "the longitude (RA) is outside [-360, 720) degrees (too far out to be wrapped)",
    "dec_out_of_range": "the latitude (Dec) is outside [-90, 90] degrees",
    "bad_size": "the cutout size is missing, NaN, infinite, zero or negative",
}
"""Reason codes of ``zooniverse_targets_rejected``, in priority order (a
row with several problems gets the first code; its detail lists all)."""

REASON_CODES = list(REJECTION_REASONS)
"""The reason codes in priority order; a row's ``reason_code`` indexes it."""
_DUPLICATE_ID = REASON_CODES.index("duplicate_id")
RA_NORMALISABLE = (-360.0, 720.0)
"""Finite RAs (deg) in this half-open range are wrapped into [0, 360);
others are rejected as ``ra_out_of_range``."""


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


def is_text(arrow_type: pa.DataType) -> bool:
    """Return whether an Arrow type is a (32- or 64-bit offset) string.

    Parameters
    ----------
    arrow_type : `pyarrow.DataType`
        The type.

    Returns
    -------
    text : `bool`
        Whether it is ``string`` or ``large_string``.
    """
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _single(column: Any) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 1:
            return column.chunk(0)
        if column.num_chunks == 0:
            return pa.array([], type=column.type)
        return pa.concat_arrays(column.chunks)
    return column


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


class RowAccumulator:
    """Accepted rows, rejected rows and id hashes, as compact columns.

    Feed it the catalog chunk by chunk with `add`; then take the columns
    with `finish_accepted` and `finish_rejected`.

    Parameters
    ----------
    plan : `ReadPlan`
        What the chunks hold and how to interpret it.
    n_rows : `int` or `None`
        Rows in the catalog, if known (sizes the buffers).
    chunk_rows : `int`
        Rows in a chunk (the initial capacity when ``n_rows`` is unknown).
    """

    def __init__(self, plan: ReadPlan, n_rows: int | None, chunk_rows: int) -> None:
        self.plan = plan
        self.n_rows = 0
        capacity = n_rows if n_rows is not None else chunk_rows
        self.row_index = _Growable(np.int64, capacity)
        self.ra = _Growable(np.float64, capacity)
        self.dec = _Growable(np.float64, capacity)
        self.htm = _Growable(np.int32, capacity)
        self.ids: list[pa.Array] = []
        self.size = _Growable(np.float64, capacity if plan.size_column else 0)
        # Accepted rows whose RA was wrapped into [0, 360): global accepted
        # position, RA as read (file unit) and wrapped RA (deg, file frame).
        self.norm_positions: list[np.ndarray] = []
        self.norm_raw_lon: list[np.ndarray] = []
        self.norm_lon: list[np.ndarray] = []
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
        """Validate the next chunk of catalog rows.

        Parameters
        ----------
        chunk : `pyarrow.Table`
            The next rows, with the plan's columns.
        """
        plan = self.plan
        n = chunk.num_rows
        rows = np.arange(self.n_rows, self.n_rows + n, dtype=np.int64)
        self.n_rows += n
        ids_raw, ids, has_id, id_null = self._ids(chunk, rows)
        ra_column = _single(chunk.column(plan.ra_column))
        dec_column = _single(chunk.column(plan.dec_column))
        lon = _to_float(ra_column)
        lat = _to_float(dec_column)
        lon_deg = lon * plan.ra_factor if plan.ra_factor != 1.0 else lon
        lat_deg = lat * plan.dec_factor if plan.dec_factor != 1.0 else lat
        finite = np.isfinite(lon_deg) & np.isfinite(lat_deg)
        bad_ra = np.isfinite(lon_deg) & ((lon_deg < RA_NORMALISABLE[0]) | (lon_deg >= RA_NORMALISABLE[1]))
        bad_dec = np.isfinite(lat_deg) & (np.abs(lat_deg) > 90.0)
        valid = has_id & finite & ~bad_ra & ~bad_dec
        size = None
        bad_size = None
        if plan.size_column is not None:
            size = _to_float(_single(chunk.column(plan.size_column))) * plan.size_factor
            bad_size = ~(np.isfinite(size) & (size > 0))
            valid &= ~bad_size

        accepted = np.flatnonzero(valid)
        if len(accepted):
            self._accept(chunk, accepted, rows, ids, lon, lat, lon_deg, lat_deg, size)

        rejected = np.flatnonzero(~valid)
        if len(rejected):
            flags = {
                "missing_id": ~has_id,
                "nan_coordinates": ~finite,
                "ra_out_of_range": bad_ra,
                "dec_out_of_range": bad_dec,
            }
            if bad_size is not None:
                flags["bad_size"] = bad_size
            codes = np.full(len(rejected), -1, dtype=np.int8)
            for reason, mask in flags.items():
                codes[(codes < 0) & mask[rejected]] = REASON_CODES.index(reason)
            flags = {reason: mask[rejected] for reason, mask in flags.items()}
            flags["id_null"] = id_null[rejected]
            flags["ra_null"] = np.asarray(ra_column.is_null().to_numpy(zero_copy_only=False))[rejected]
            flags["dec_null"] = np.asarray(dec_column.is_null().to_numpy(zero_copy_only=False))[rejected]
            sizes = size[rejected] if size is not None else None
            details = self._details(flags, lon[rejected], lat[rejected], sizes)
            self.rej_row_index.append(rows[rejected])
            self.rej_ids.append(pc.fill_null(ids_raw.take(pa.array(rejected)), ""))
            self.rej_lon.append(lon[rejected])
            self.rej_lat.append(lat[rejected])
            self.rej_code.append(codes)
            self.rej_detail.append(pa.array(details, type=pa.large_string()))

    def _ids(self, chunk: pa.Table, rows: np.ndarray) -> tuple[pa.Array, pa.Array, np.ndarray, np.ndarray]:
        """Return a chunk's ids as read and stripped (text), whether each
        row has one and whether it is null; record their hashes.
        """
        if self.plan.id_column is None:
            # Row numbers: unique, never missing, never hashed.
            ids = pa.array(rows).cast(pa.large_string())
            return ids, ids, np.ones(len(rows), dtype=bool), np.zeros(len(rows), dtype=bool)
        raw_id_column = _single(chunk.column(self.plan.id_column))
        ids_raw = _to_text(raw_id_column)
        ids = pc.utf8_trim_whitespace(ids_raw)
        has_id = ~np.asarray(
            pc.fill_null(pc.equal(pc.utf8_length(ids), 0), True).to_numpy(zero_copy_only=False)
        )
        hashes = hash_strings(ids)
        hashes[~has_id] = 0
        self.hashes.append(hashes)
        self.has_id.append(has_id)
        id_null = np.asarray(raw_id_column.is_null().to_numpy(zero_copy_only=False))
        return ids_raw, ids, has_id, id_null

    def _accept(
        self,
        chunk: pa.Table,
        accepted: np.ndarray,
        rows: np.ndarray,
        ids: pa.Array,
        lon: np.ndarray,
        lat: np.ndarray,
        lon_deg: np.ndarray,
        lat_deg: np.ndarray,
        size: np.ndarray | None,
    ) -> None:
        """Keep the accepted rows of a chunk (positions ``accepted``), with
        ICRS coordinates, RA wrapped into [0, 360), and their trixels.
        """
        plan = self.plan
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
        wrapped = np.flatnonzero((a_lon < 0.0) | (a_lon >= 360.0))
        if len(wrapped):
            self.norm_positions.append(wrapped + self.n_accepted)
            self.norm_raw_lon.append(lon[accepted][wrapped])
            self.norm_lon.append(_wrap(a_lon[wrapped]))
        ra = _wrap(ra)
        self.row_index.append(rows[accepted])
        self.ra.append(ra)
        self.dec.append(dec)
        self.htm.append(htm_indices(ra, dec).astype(np.int32))
        # 32-bit offsets per chunk; widened at concatenation if needed.
        self.ids.append(ids.take(pa.array(accepted)).cast(pa.string()))
        if size is not None:
            self.size.append(size[accepted])
        for name in plan.extras:
            self.extras[name].append(_normalise_extra(_single(chunk.column(name))).take(pa.array(accepted)))
        raw_a_lon, raw_a_lat = lon[accepted], lat[accepted]
        changed = np.flatnonzero((raw_a_lon != ra) | (raw_a_lat != dec))
        if len(changed):
            self.raw_positions.append(changed + self.n_accepted)
            self.raw_lon.append(raw_a_lon[changed])
            self.raw_lat.append(raw_a_lat[changed])
        self.n_accepted += len(accepted)

    def _details(
        self, flags: dict[str, np.ndarray], lon: np.ndarray, lat: np.ndarray, size: np.ndarray | None
    ) -> list[str]:
        """Say what is wrong with each rejected row (``flags``: reason and
        null masks of the rejected rows; their raw values).
        """
        plan = self.plan

        def coordinate(name: str, value: float, null: bool) -> str | None:
            if null:
                return f"{name} is missing or NaN"
            if math.isnan(value):
                return f"{name} is NaN"
            if math.isinf(value):
                return f"{name} is infinite"
            return None

        def in_degrees(value: float, unit: str, factor: float) -> str:
            return "" if unit == "deg" else f" {unit} = {value * factor!r} deg"

        size_values = size.tolist() if size is not None else None
        bad_sizes = flags["bad_size"].tolist() if "bad_size" in flags else None
        details = []
        names = ("missing_id", "id_null", "ra_null", "dec_null", "ra_out_of_range", "dec_out_of_range")
        columns = [flags[name].tolist() for name in names]
        for k, (x, y, missing, null, xn, yn, out_ra, out_dec) in enumerate(
            zip(lon.tolist(), lat.tolist(), *columns)
        ):
            parts = []
            if missing:
                parts.append(f"{plan.id_column} is {'missing' if null else 'empty'}")
            for text in (coordinate(plan.ra_column, x, xn), coordinate(plan.dec_column, y, yn)):
                if text:
                    parts.append(text)
            if out_ra:
                parts.append(
                    f"{plan.ra_column} = {x!r}{in_degrees(x, plan.ra_unit, plan.ra_factor)} is outside "
                    "[-360, 720) deg"
                )
            if out_dec:
                parts.append(
                    f"{plan.dec_column} = {y!r}{in_degrees(y, plan.dec_unit, plan.dec_factor)} is outside "
                    "[-90, 90] deg"
                )
            if bad_sizes is not None and bad_sizes[k]:
                value = size_values[k]
                text = "missing or NaN" if math.isnan(value) else f"{value!r}, not a positive finite number"
                parts.append(f"{plan.size_column} is {text}")
            details.append("; ".join(parts))
        return details


def _wrap(lon: np.ndarray) -> np.ndarray:
    """Return longitudes (deg) wrapped into [0, 360)."""
    wrapped = np.mod(lon, 360.0)
    wrapped[wrapped >= 360.0] = 0.0  # np.mod(-1e-20, 360) == 360.0
    return wrapped


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


def finish_accepted(acc: RowAccumulator) -> dict[str, Any]:
    """Concatenate the accepted chunks, one column at a time.

    Parameters
    ----------
    acc : `RowAccumulator`
        The accumulator, after the last chunk; its accepted columns are
        emptied.

    Returns
    -------
    accepted : `dict` [`str`, `typing.Any`]
        ``row_index``, ``ra``, ``dec``, ``htm``, ``size`` (numpy or
        `None`), ``ids`` (Arrow), ``raw_positions``, ``raw_lon``,
        ``raw_lat`` (file coordinates where they differ from the published
        ones), ``norm_positions``, ``norm_raw_lon``, ``norm_lon`` (rows
        whose RA was wrapped into [0, 360): RA as read and wrapped, in
        degrees of the catalog's frame) and ``extras`` (name -> Arrow
        array).
    """
    result: dict[str, Any] = {
        "row_index": acc.row_index.finish(),
        "ra": acc.ra.finish(),
        "dec": acc.dec.finish(),
        "htm": acc.htm.finish(),
        "norm_positions": _concat_numpy(acc.norm_positions, np.int64),
        "norm_raw_lon": _concat_numpy(acc.norm_raw_lon, np.float64),
        "norm_lon": _concat_numpy(acc.norm_lon, np.float64),
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


def finish_rejected(
    acc: RowAccumulator, accepted: dict[str, Any], duplicates: dict[int, str]
) -> tuple[dict[str, Any], np.ndarray]:
    """Merge the chunk rejections and the duplicated ids.

    Parameters
    ----------
    acc : `RowAccumulator`
        The accumulator, after the last chunk; its rejected columns are
        emptied.
    accepted : `dict` [`str`, `typing.Any`]
        What `finish_accepted` returned.
    duplicates : `dict` [`int`, `str`]
        Detail by ``row_index`` of every row of a duplicated id (see
        `find_duplicates`).

    Returns
    -------
    rejected : `dict` [`str`, `typing.Any`]
        Rejected columns sorted by row index: ``row_index``,
        ``object_id``, ``ra``, ``dec`` (as read), ``reason_code`` (index
        into `REASON_CODES`) and ``detail``.
    keep : `numpy.ndarray` [`bool`]
        Which accepted rows to publish.
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
            hit = in_sorted_set(row_index, dup_rows)
            if hit.any():
                positions = np.flatnonzero(hit)
                codes[positions] = _DUPLICATE_ID
                detail_list = details.to_pylist()
                for p in positions.tolist():
                    detail_list[p] = f"{duplicates[int(row_index[p])]}; {detail_list[p]}"
                details = pa.array(detail_list, type=pa.large_string())
        # Accepted rows of a duplicated id move to the rejected table.
        moved = np.flatnonzero(in_sorted_set(accepted_rows, dup_rows))
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
