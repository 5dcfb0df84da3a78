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


"""Account for every catalog row after a pipeline run.

The contract (README, "Data products and formats"): each catalog row
ends up in a picture or in a report line that says why not.
`account_targets` joins the sharding command's rejection table, the
sharded catalog and every ``zooniverse_rgb_report`` of a collection into
one table with a line per input row.
"""

from __future__ import annotations

__all__ = ["ACCOUNT_STATUSES", "account_targets", "summarize_accounting"]

from collections import Counter
from typing import Any

import numpy as np
from astropy.table import Table, vstack

from ..butler.dataset_types import RGB_REPORT, TARGETS, TARGETS_PATCH, TARGETS_REJECTED

ACCOUNT_STATUSES = {
    "pictured": "in at least one picture; ``tract``/``patch``/``file`` name the best one",
    "rejected": "refused by the sharding command (bad coordinates, id, ...)",
    "no_picture": "in at least one patch, but no picture was made (``reason`` says why)",
    "outside_coadds": "in no patch of the sky map that has targets processed",
    "not_processed": "in a patch whose composeRgb output is missing (the quantum failed or was not run)",
}
"""Status of a row in the table `account_targets` returns."""


def _read_all(
    butler: Any, dataset_type: str, collections: Any, columns: list[str] | None = None
) -> list[Table]:
    refs = sorted(
        butler.query_datasets(dataset_type, collections=collections, find_first=True, explain=False),
        key=lambda ref: tuple(str(v) for v in ref.dataId.required.values()),
    )
    parameters = {"columns": columns} if columns else None
    return [butler.get(ref, parameters=parameters) for ref in refs]


def account_targets(butler: Any, collections: Any) -> Table:
    """Say what happened to every row of the sharded catalog.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        The repository.
    collections : `str` or `list` [`str`]
        Collections holding the pipeline's outputs and its inputs (the
        sharding run with ``zooniverse_targets_rejected``).

    Returns
    -------
    accounting : `astropy.table.Table`
        One row per input catalog row, sorted by ``row_index``: ``row_index``,
        ``object_id``, ``status`` (a key of `ACCOUNT_STATUSES`),
        ``reason`` (machine code), ``detail``, ``tract``, ``patch``,
        ``file`` (best picture; -1/"" if none), ``coverage``,
        ``n_pictures`` and ``patches`` (every ``tract:patch`` that holds
        the object).  Table meta ``n_rows`` is the input catalog's row
        count.

    Raises
    ------
    LookupError
        Raised if the collections hold no ``zooniverse_targets_rejected``
        (the sharding command's run is not among them).
    """
    rejected_tables = _read_all(butler, TARGETS_REJECTED.name, collections)
    if not rejected_tables:
        raise LookupError(
            f"No {TARGETS_REJECTED.name} dataset in {collections}: include the sharding command's output run."
        )
    rejected = rejected_tables[0]
    targets = _read_all(butler, TARGETS.name, collections, columns=["row_index", "object_id"])
    accepted = (
        vstack(targets)
        if targets
        else Table({"row_index": np.array([], int), "object_id": np.array([], str)})
    )
    reports = _read_all(butler, RGB_REPORT.name, collections)
    report = vstack(reports) if reports else None
    patch_tables = _read_all(butler, TARGETS_PATCH.name, collections, columns=["row_index", "tract", "patch"])
    in_patch: dict[int, list[str]] = {}
    for table in patch_tables:
        for row_index, tract, patch in zip(table["row_index"], table["tract"], table["patch"]):
            in_patch.setdefault(int(row_index), []).append(f"{tract}:{patch}")

    by_row: dict[int, list[Any]] = {}
    if report is not None:
        for row in report:
            by_row.setdefault(int(row["row_index"]), []).append(row)

    rows = [
        _line(
            int(row["row_index"]), str(row["object_id"]), "rejected", str(row["reason"]), str(row["detail"])
        )
        for row in rejected
    ]
    for row_index, object_id in zip(accepted["row_index"], accepted["object_id"]):
        row_index = int(row_index)
        patches = ",".join(sorted(in_patch.get(row_index, [])))
        rows.append(_account_accepted(row_index, str(object_id), by_row.get(row_index, []), patches))

    table = Table(rows=rows, names=_COLUMNS, dtype=_DTYPES) if rows else Table(names=_COLUMNS, dtype=_DTYPES)
    table.sort("row_index")
    # Every input row is either rejected or in a shard (the table metadata
    # that would say so does not survive the Parquet round trip).
    n_rows = len(rejected) + len(accepted)
    table.meta = {"n_rows": n_rows, "catalog": rejected.meta.get("catalog", "")}
    return table


_COLUMNS = [
    "row_index",
    "object_id",
    "status",
    "reason",
    "detail",
    "tract",
    "patch",
    "file",
    "coverage",
    "n_pictures",
    "patches",
]
_DTYPES = [np.int64, str, str, str, str, np.int64, np.int64, str, np.float64, np.int64, str]


def _line(
    row_index: int,
    object_id: str,
    status: str,
    reason: str,
    detail: str,
    patches: str = "",
    tract: int = -1,
    patch: int = -1,
    file: str = "",
    coverage: float = np.nan,
    n_pictures: int = 0,
) -> tuple:
    """Return one accounting row, in the order of ``_COLUMNS``."""
    return (row_index, object_id, status, reason, detail, tract, patch, file, coverage, n_pictures, patches)


def _account_accepted(row_index: int, object_id: str, lines: list[Any], patches: str) -> tuple:
    """Return the accounting row of an accepted catalog row from its
    ``zooniverse_rgb_report`` lines and the patches that hold it.
    """
    pictured = [line for line in lines if line["status"] == "ok"]
    if pictured:
        best = min(
            pictured,
            key=lambda line: (
                -float(line["coverage"]),
                -float(np.nan_to_num(line["edge_distance"], nan=-1e9)),
                int(line["tract"]),
                int(line["patch"]),
            ),
        )
        return _line(
            row_index,
            object_id,
            "pictured",
            "ok",
            "",
            patches,
            tract=int(best["tract"]),
            patch=int(best["patch"]),
            file=str(best["file"]),
            coverage=float(best["coverage"]),
            n_pictures=len(pictured),
        )
    if lines:
        reasons = sorted({str(line["status"]) for line in lines})
        details = "; ".join(f"{line['tract']}:{line['patch']}: {line['detail']}" for line in lines)
        return _line(row_index, object_id, "no_picture", ",".join(reasons), details, patches)
    if patches:
        detail = f"in patch(es) {patches} but no zooniverse_rgb_report"
        return _line(row_index, object_id, "not_processed", "no_report", detail, patches)
    return _line(row_index, object_id, "outside_coadds", "outside", "no patch of the sky map contains it")


def summarize_accounting(table: Table) -> str:
    """Summarize the table in a few lines: counts per status and reason.

    Parameters
    ----------
    table : `astropy.table.Table`
        Output of `account_targets`.

    Returns
    -------
    text : `str`
        The summary.
    """
    n_rows = table.meta.get("n_rows", -1)
    lines = [f"{len(table)} catalog rows accounted for" + (f" (of {n_rows} read)" if n_rows >= 0 else "")]
    for status, count in sorted(Counter(table["status"]).items()):
        reasons = Counter(table["reason"][table["status"] == status])
        detail = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
        lines.append(f"  {status:15s} {count:8d}  ({detail})")
    return "\n".join(lines)
