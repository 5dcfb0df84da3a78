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

"""Writing the shards: Parquet files in the ArrowAstropy layout, staged
next to the datastore and ingested with the row reports (rejected and
normalised rows) in one transaction.
"""

from __future__ import annotations

__all__ = ["check_run", "write_shards"]

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...butler.dataset_types import TARGETS, TARGETS_REJECTED, DatasetTypeSpec, register_dataset_types
from .errors import CatalogError
from .read_plan import ReadPlan
from .reports import TARGETS_NORMALISED, table_meta
from .row_validation import is_text

_LOG = logging.getLogger("lsst.epo.zooniverse.sharding")

_INGEST_BATCH = 10_000
_STAGING_PREFIX = ".zooniverse-staging-"


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


def check_run(butler: Any, run: str) -> bool:
    """Refuse a run that already holds targets.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        The Butler.
    run : `str`
        RUN collection to write.

    Returns
    -------
    exists : `bool`
        Whether the (empty) run exists already.

    Raises
    ------
    CatalogError
        Raised if the collection is not a RUN, or holds targets or a
        row report.
    """
    from lsst.daf.butler import CollectionType, MissingCollectionError

    try:
        info = butler.collections.get_info(run)
    except MissingCollectionError:
        return False
    if info.type != CollectionType.RUN:
        raise CatalogError(f"Collection {run!r} exists and is a {info.type.name} collection, not a RUN.")
    n_targets = _count_in_run(butler, TARGETS.name, run)
    n_reports = sum(_count_in_run(butler, spec.name, run) for spec in (TARGETS_REJECTED, TARGETS_NORMALISED))
    if n_targets or n_reports:
        raise CatalogError(
            f"Run {run!r} already holds {n_targets} target shards ({TARGETS.name}) and "
            f"{n_reports} {TARGETS_REJECTED.name}/{TARGETS_NORMALISED.name} dataset(s); shard into a new run "
            "instead (another "
            f"--output-run, e.g. {run + '_v2'!r}), or remove this one first."
        )
    return True


def write_shards(
    butler: Any,
    run: str,
    run_exists: bool,
    plan: ReadPlan,
    accepted: dict[str, Any],
    keep: np.ndarray,
    reports: Sequence[tuple[DatasetTypeSpec, Any]],
    say: Callable[[str], None],
) -> int:
    """Sort the accepted rows by trixel, write the shards and the row
    reports into ``run`` in one transaction.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Writeable Butler.
    run : `str`
        RUN collection to write (see `check_run`).
    run_exists : `bool`
        Whether it exists already; if not, it is created, and removed
        again if anything fails.
    plan : `ReadPlan`
        What was read.
    accepted : `dict` [`str`, `typing.Any`]
        Accepted columns (see ``finish_accepted``); emptied.
    keep : `numpy.ndarray` [`bool`]
        Which accepted rows to publish.
    reports : `~collections.abc.Sequence` [`tuple`]
        Dimensionless tables to put with the shards: (dataset type,
        `astropy.table.Table`) pairs (the rejected and normalised rows,
        see ``make_rejected_table`` and ``make_normalised_table``).
    say : callable
        Called with a progress message at each step.

    Returns
    -------
    n_shards : `int`
        ``zooniverse_targets`` datasets written.
    """
    t0 = time.perf_counter()
    shard_ids, starts, ends, columns, n = _sort_into_shards(plan, accepted, keep)
    columns, string_lengths, schema, metadata = _shard_schema(plan, columns, starts)
    writer = _ShardWriter(schema, metadata)
    say(f"Sorted {n} accepted rows into {len(shard_ids)} htm7 shards in {time.perf_counter() - t0:.1f} s")

    register_dataset_types(butler, [TARGETS, *(spec for spec, _ in reports)])
    staging = _staging_directory(butler)
    created_run = False
    try:
        # Files first (outside the transaction, so that the registry is
        # locked only while ingesting).
        t1 = time.perf_counter()
        arrays = [values for _, values in columns]
        del columns
        paths = _write_files(writer, staging, arrays, shard_ids, starts, ends, string_lengths)
        del arrays
        say(f"Wrote {len(paths)} shard files in {time.perf_counter() - t1:.1f} s; ingesting them into {run}")
        t2 = time.perf_counter()
        if not run_exists:
            butler.collections.register(run)
            created_run = True
        _ingest(butler, run, shard_ids.tolist(), paths, reports, t2)
        say(f"Ingested {len(paths)} shards and the row reports in {time.perf_counter() - t2:.1f} s")
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


def _sort_into_shards(
    plan: ReadPlan, accepted: dict[str, Any], keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, pa.Array]], int]:
    """Return the trixel of every shard, the first and end row of each, the
    columns of the kept rows in shard order (as Arrow arrays, sliced per
    shard without a copy) and the number of rows; ``accepted`` is emptied.
    """
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
    return shard_ids, starts, ends, columns, n


def _shard_schema(
    plan: ReadPlan, columns: list[tuple[str, pa.Array]], starts: np.ndarray
) -> tuple[list[tuple[str, pa.Array]], dict[str, list[int]], pa.Schema, dict[bytes, bytes]]:
    """Return the columns cast to the types ``astropy_to_arrow`` writes, the
    per-shard string widths of the text columns, and the shards' Arrow
    schema and metadata.
    """
    string_lengths = {}
    for name, values in columns:
        if is_text(values.type):
            lengths = np.asarray(pc.fill_null(pc.utf8_length(values), 0).to_numpy(zero_copy_only=False))
            per_shard = np.maximum.reduceat(lengths, starts) if len(starts) else np.zeros(0, np.int64)
            string_lengths[name] = np.maximum(per_shard, 1).tolist()
    descriptions = {
        "object_id": (
            "object id from the catalog"
            if plan.id_column is not None
            else "0-based data row of the catalog, as text (the catalog has no id column)",
            None,
        ),
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
    schema, metadata = _template_schema(spec, table_meta(plan))
    # Cast to the exact Arrow types astropy_to_arrow writes (text stays as
    # it is: more than 2 GiB of it needs 64-bit offsets, cast per shard).
    columns = [
        (name, values if values.type == field.type or is_text(values.type) else values.cast(field.type))
        for (name, values), field in zip(columns, schema)
    ]
    return columns, string_lengths, schema, metadata


def _write_files(
    writer: _ShardWriter,
    staging: str,
    arrays: list[pa.Array],
    shard_ids: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    string_lengths: dict[str, list[int]],
) -> list[str]:
    """Write one Parquet file per shard into ``staging``; return their
    paths.
    """
    t1 = time.perf_counter()
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
    return paths


def _ingest(
    butler: Any,
    run: str,
    shard_ids: list[int],
    paths: list[str],
    reports: Sequence[tuple[DatasetTypeSpec, Any]],
    t0: float,
) -> None:
    """Ingest the shard files (moved into the datastore) and put the row
    reports, all in one transaction.
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
        for spec, table in reports:
            butler.put(table, spec.make(butler.dimensions), run=run)
