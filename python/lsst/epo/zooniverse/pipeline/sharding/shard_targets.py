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

"""`shard_target_catalog`: read, validate, find duplicates, write and
ingest (the steps are described in the package docstring).
"""

from __future__ import annotations

__all__ = ["ShardingSummary", "shard_target_catalog"]

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...butler.config import get_butler
from ...butler.dataset_types import TARGETS_REJECTED
from .catalog_readers import CatalogReader, detect_catalog_format, open_reader, parse_unit, rechunk
from .duplicates import find_duplicates
from .errors import CatalogError
from .ingest import check_run, write_shards
from .read_plan import SIZE_COLUMNS, ReadPlan, make_plan, resolve_frame
from .reports import TARGETS_NORMALISED, make_normalised_table, make_rejected_table
from .row_validation import REASON_CODES, RowAccumulator, finish_accepted, finish_rejected

_LOG = logging.getLogger("lsst.epo.zooniverse.sharding")


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
        Published rows whose longitude was in [-360, 0) or [360, 720)
        degrees and was wrapped into [0, 360); each is a row of the
        ``zooniverse_targets_normalised`` table.
    n_shards : `int`
        ``zooniverse_targets`` datasets written (one per trixel).
    seconds : `float`
        Wall-clock time.
    catalog : `str`
        The catalog file.
    id_column : `str` or `None`
        The catalog's id column; `None` if the ids are the rows' 0-based
        row numbers.
    ra_unit : `str`
        Unit of the RA column as read.
    ra_normalised_first : `tuple` [`tuple` [`int`, `str`, `float`, `float`]]
        The first (up to 10) normalised rows: ``row_index``, object id, RA
        as read (``ra_unit``) and normalised RA (degrees).
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
    id_column: str | None = "object_id"
    ra_unit: str = "deg"
    ra_normalised_first: tuple[tuple[int, str, float, float], ...] = ()


def shard_target_catalog(
    butler: Any,
    catalog: str | os.PathLike,
    *,
    run: str,
    id_column: str | None = "object_id",
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
    # Over 80 lines for its docstring (the user-facing reference); code: 73.
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
    id_column : `str` or `None`, optional
        Column of the object id. `None`: the catalog has no id column and
        each row's 0-based row number (``row_index``, as text) is its id.
    ra_column, dec_column : `str`, optional
        Columns of the coordinates (longitude and latitude in ``frame``).
        Names match exactly, else case-insensitively. For a non-ICRS frame
        the frame's own names (``l``/``b`` for ``galactic``) are used if
        the default ``ra``/``dec`` are absent.
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
        VOTable ``unit``, Parquet/astropy metadata) wins. The RA may be in
        hours (``h``, ``hourangle``).
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
    Every row is validated (the rules are in the docstring of
    ``row_validation`` and in ``doc/catalog_rules.md``): missing/blank id,
    duplicated id (every row of the id is refused), missing/NaN/infinite
    coordinate, longitude outside [-360, 720) deg, latitude outside
    [-90, 90] deg, and, with ``size_column``, a missing or non-positive
    size. Refused rows go to ``zooniverse_targets_rejected`` (``row_index``,
    ``object_id``, raw ``ra``/``dec`` in the file's units, ``reason`` from
    `REJECTION_REASONS`, ``detail``). Longitudes in [-360, 0) or
    [360, 720) deg are wrapped into [0, 360), not refused; every such
    published row is listed in ``zooniverse_targets_normalised``
    (``row_index``, ``object_id``, ``ra`` as read, ``ra_normalised``,
    ``reason``).

    The whole file is validated before the first write. CSV, Parquet and
    FITS are streamed; a VOTable is parsed whole (astropy cannot stream
    it); gzip-compressed FITS is decompressed in memory. For CSV, ``row_index``
    counts data rows (header excluded, blank lines skipped), and the types
    of extra columns are inferred from the first block (about
    ``chunk_rows`` rows). Object ids are compared and published with
    surrounding whitespace removed.

    The tables' metadata (``catalog``, ``frame``, ``id_column``, and
    ``object_ids: row_number`` for row-number ids; counts in the rejection
    table) is dropped by the Butler on read unless asked
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
    if size_unit not in SIZE_COLUMNS:
        raise CatalogError(f"size_unit must be one of {', '.join(SIZE_COLUMNS)}, not {size_unit!r}.")
    if not run:
        raise CatalogError("An output run name is required.")
    fmt = detect_catalog_format(path, file_format)
    frame_name, frame_class = resolve_frame(frame)
    fallback_unit = parse_unit(coordinate_unit, "coordinate_unit") if coordinate_unit else None

    reader = open_reader(path, fmt, chunk_rows)
    try:
        plan = make_plan(
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
        run_exists = check_run(butler, run)

        say(
            f"Reading {path.name} ({fmt}, {reader.n_rows if reader.n_rows is not None else 'unknown'} rows) "
            f"in chunks of {chunk_rows} rows"
        )
        read_start = time.perf_counter()
        acc = _validate_rows(reader, plan, chunk_rows, read_start)
    finally:
        reader.close()

    say(f"Validated {acc.n_rows} rows in {time.perf_counter() - read_start:.1f} s; checking ids")
    accepted = finish_accepted(acc)
    duplicates = find_duplicates(acc, accepted["ids"], accepted["row_index"])
    rejected, keep = finish_rejected(acc, accepted, duplicates)
    normalised_table = make_normalised_table(accepted, keep, plan)
    codes = np.asarray(rejected["reason_code"])
    rejected_by_reason = {
        code: int(count)
        for code, count in zip(REASON_CODES, np.bincount(codes, minlength=len(REASON_CODES)))
        if count
    }
    n_accepted = int(keep.sum())
    rejected_table = make_rejected_table(
        rejected, plan, acc.n_rows, n_accepted, len(normalised_table), rejected_by_reason
    )
    del rejected

    reports = [(TARGETS_REJECTED, rejected_table), (TARGETS_NORMALISED, normalised_table)]
    n_shards = write_shards(butler, run, run_exists, plan, accepted, keep, reports, say)
    summary = ShardingSummary(
        run=run,
        n_rows=acc.n_rows,
        n_accepted=n_accepted,
        n_rejected=len(rejected_table),
        rejected_by_reason=rejected_by_reason,
        n_ra_normalised=len(normalised_table),
        n_shards=n_shards,
        seconds=time.perf_counter() - started,
        catalog=str(path),
        id_column=plan.id_column,
        ra_unit=plan.ra_unit,
        ra_normalised_first=tuple(
            (int(r["row_index"]), str(r["object_id"]), float(r["ra"]), float(r["ra_normalised"]))
            for r in normalised_table[:10]
        ),
    )
    say(
        f"Sharded {summary.n_rows} rows of {path.name} into {run}: {summary.n_accepted} accepted in "
        f"{summary.n_shards} shards, {summary.n_rejected} rejected, in {summary.seconds:.1f} s"
    )
    return summary


def _validate_rows(
    reader: CatalogReader, plan: ReadPlan, chunk_rows: int, read_start: float
) -> RowAccumulator:
    """Read the plan's columns chunk by chunk and validate every row."""
    acc = RowAccumulator(plan, reader.n_rows, chunk_rows)
    columns = {plan.ra_column: "float", plan.dec_column: "float"}
    if plan.id_column is not None:
        columns = {plan.id_column: "id", **columns}
    if plan.size_column:
        columns[plan.size_column] = "float"
    for name in plan.extras:
        columns.setdefault(name, "extra")
    for chunk in rechunk(reader.batches(columns), chunk_rows):
        acc.add(chunk)
        elapsed = time.perf_counter() - read_start
        _LOG.info(
            "Read and validated %d rows of %s (%d accepted so far, %.0f rows/s)",
            acc.n_rows,
            plan.catalog.name,
            acc.n_accepted,
            acc.n_rows / elapsed if elapsed > 0 else 0.0,
        )
    return acc


def _reporter(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    def say(message: str) -> None:
        _LOG.info("%s", message)
        if progress is not None:
            progress(message)

    return say
