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

"""The two row reports of a sharding run: ``zooniverse_targets_rejected``
(every refused row, with the reason) and ``zooniverse_targets_normalised``
(every published row whose RA was wrapped into [0, 360)).
"""

from __future__ import annotations

__all__ = ["TARGETS_NORMALISED", "make_normalised_table", "make_rejected_table", "table_meta"]

from typing import Any

import numpy as np
import pyarrow as pa

from ...butler.dataset_types import DatasetTypeSpec
from .read_plan import ReadPlan
from .row_validation import REASON_CODES

TARGETS_NORMALISED = DatasetTypeSpec("zooniverse_targets_normalised", (), "ArrowAstropy")
"""Published catalog rows whose RA the sharding command wrapped into
[0, 360), with the RA as read and as published."""


def table_meta(plan: ReadPlan) -> dict[str, Any]:
    """Return the metadata every sharding table carries.

    Parameters
    ----------
    plan : `ReadPlan`
        What was read.

    Returns
    -------
    meta : `dict` [`str`, `typing.Any`]
        ``catalog``, ``frame`` and ``id_column`` (`None` for row-number
        ids, which also add ``object_ids: row_number``).
    """
    meta: dict[str, Any] = {"catalog": plan.catalog.name, "frame": plan.frame, "id_column": plan.id_column}
    if plan.id_column is None:
        meta["object_ids"] = "row_number"
    return meta


def _id_description(plan: ReadPlan) -> str:
    if plan.id_column is None:
        return "0-based data row of the catalog, as text (the catalog has no id column)"
    return f"object id ({plan.id_column}) as text, as read"


def _text(array: pa.Array) -> np.ndarray:
    values = array.to_numpy(zero_copy_only=False)
    return values.astype(str) if len(values) else np.zeros(0, dtype="U1")


def make_rejected_table(
    rejected: dict[str, Any],
    plan: ReadPlan,
    n_rows: int,
    n_accepted: int,
    n_ra_normalised: int,
    rejected_by_reason: dict[str, int],
) -> Any:
    """Build the ``zooniverse_targets_rejected`` table.

    Parameters
    ----------
    rejected : `dict` [`str`, `typing.Any`]
        Rejected columns (see ``finish_rejected``).
    plan : `ReadPlan`
        What was read.
    n_rows, n_accepted, n_ra_normalised : `int`
        Rows read, rows published and published rows whose RA was
        wrapped into [0, 360).
    rejected_by_reason : `dict` [`str`, `int`]
        Rejected rows per reason code.

    Returns
    -------
    table : `astropy.table.Table`
        ``row_index``, ``object_id``, ``ra``, ``dec``, ``reason`` and
        ``detail``, with the counts in its metadata.
    """
    from astropy.table import Column, Table

    reasons = (
        np.array(REASON_CODES)[rejected["reason_code"]] if len(rejected["reason_code"]) else np.zeros(0, "U1")
    )
    table = Table()
    table["row_index"] = Column(rejected["row_index"], description="0-based data row of the catalog")
    table["object_id"] = Column(_text(rejected["object_id"]), description=_id_description(plan))
    table["ra"] = Column(rejected["ra"], description=f"raw {plan.ra_column} ({plan.ra_unit}); NaN if missing")
    table["dec"] = Column(
        rejected["dec"], description=f"raw {plan.dec_column} ({plan.dec_unit}); NaN if missing"
    )
    table["reason"] = Column(reasons, description="reason code (see REJECTION_REASONS)")
    table["detail"] = Column(_text(rejected["detail"]), description="what is wrong with the row")
    table.meta.update(table_meta(plan))
    table.meta.update(
        {
            "n_rows": n_rows,
            "n_accepted": n_accepted,
            "n_rejected": len(table),
            "n_ra_normalised": n_ra_normalised,
            "rejected_by_reason": dict(rejected_by_reason),
        }
    )
    return table


def make_normalised_table(accepted: dict[str, Any], keep: np.ndarray, plan: ReadPlan) -> Any:
    """Build the ``zooniverse_targets_normalised`` table.

    Parameters
    ----------
    accepted : `dict` [`str`, `typing.Any`]
        Accepted columns (see ``finish_accepted``); read, not emptied.
    keep : `numpy.ndarray` [`bool`]
        Which accepted rows are published (rows of a duplicated id are
        in the rejection table instead).
    plan : `ReadPlan`
        What was read.

    Returns
    -------
    table : `astropy.table.Table`
        One row per published row whose RA was wrapped, by ``row_index``:
        ``row_index``, ``object_id``, ``ra`` (as read, in the file's
        unit), ``ra_normalised`` (degrees in [0, 360), in the catalog's
        frame) and ``reason`` (``ra_negative`` or ``ra_360_or_more``).
    """
    from astropy.table import Column, Table

    positions = accepted["norm_positions"]
    published = keep[positions] if len(positions) else np.zeros(0, dtype=bool)
    positions = positions[published]
    raw = accepted["norm_raw_lon"][published]
    reasons = np.where(raw * plan.ra_factor < 0.0, "ra_negative", "ra_360_or_more")
    table = Table()
    table["row_index"] = Column(
        accepted["row_index"][positions], description="0-based data row of the catalog"
    )
    table["object_id"] = Column(
        _text(accepted["ids"].take(pa.array(positions, type=pa.int64()))), description=_id_description(plan)
    )
    table["ra"] = Column(raw, description=f"{plan.ra_column} as read ({plan.ra_unit})")
    table["ra_normalised"] = Column(
        accepted["norm_lon"][published],
        unit="deg",
        description=f"{plan.ra_column} wrapped into [0, 360) deg ({plan.frame}; published as ICRS)",
    )
    table["reason"] = Column(
        reasons if len(reasons) else np.zeros(0, "U1"),
        description="ra_negative: RA in [-360, 0) deg; ra_360_or_more: RA in [360, 720) deg",
    )
    table.meta.update(table_meta(plan))
    table.meta["n_ra_normalised"] = len(table)
    return table
