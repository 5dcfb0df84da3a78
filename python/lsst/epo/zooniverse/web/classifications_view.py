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

"""Volunteers' classifications of a PI's project for the PI API: EPO reads
Zooniverse's classification export with its own Zooniverse credentials
(the PI holds none of EPO's), counts the answers per subject, task and
answer (`lsst.epo.zooniverse.zooniverse.classifications`), maps each
Zooniverse subject to its catalog object with the subject ids EPO recorded
when it sent them, and joins the PI's catalog when asked.

Where the export comes from:

* a directory named by ``ZOONIVERSE_EPO_CLASSIFICATION_EXPORTS`` holding
  ``<project>.csv`` (or ``.csv.gz``): an export saved there (by an
  operator, a scheduled download, or a test) is read as it is;
* otherwise the latest export of the project's Zooniverse project, fetched
  with panoptes-client and the ``PANOPTES_*`` credentials of the web
  application's environment
  (`~lsst.epo.zooniverse.zooniverse.classification_export.panoptes_export_fetcher`).
"""

from __future__ import annotations

__all__ = ["EXPORTS_ENV", "ClassificationsUnavailableError", "project_classifications", "table_as_json"]

import math
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from astropy.table import Table

EXPORTS_ENV = "ZOONIVERSE_EPO_CLASSIFICATION_EXPORTS"
"""Environment variable naming a directory of saved exports,
``<project>.csv``."""


class ClassificationsUnavailableError(RuntimeError):
    """The export cannot be fetched or read, or the catalog not found."""


def saved_export(project: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Return the saved export of a project, if there is one.

    Parameters
    ----------
    project : `str`
        EPO project name.
    environ : `~collections.abc.Mapping` [`str`, `str`], optional
        The environment (`os.environ` by default).

    Returns
    -------
    path : `str` or `None`
        ``$ZOONIVERSE_EPO_CLASSIFICATION_EXPORTS/<project>.csv`` (or
        ``.csv.gz``) if it exists.
    """
    directory = (os.environ if environ is None else environ).get(EXPORTS_ENV, "")
    if not directory:
        return None
    for suffix in (".csv", ".csv.gz"):
        path = os.path.join(directory, project + suffix)
        if os.path.isfile(path):
            return path
    return None


def project_classifications(
    service: Any,
    project: Mapping[str, Any],
    *,
    collection: str | None = None,
    fetcher: Callable[[int, str], None] | None = None,
) -> Table:
    """Aggregate a project's classification export.

    Parameters
    ----------
    service : `~lsst.epo.zooniverse.export.service.ExportService`
        EPO's export service (its state database has the subject ids sent).
    project : `~collections.abc.Mapping`
        The project's record.
    collection : `str`, optional
        A collection of the project's repository holding the PI's sharded
        catalog (``zooniverse_targets``), to join its columns.
    fetcher : `~collections.abc.Callable`, optional
        ``fetcher(zooniverse_project, path)`` downloads the export when no
        saved one exists (default: panoptes-client with the ``PANOPTES_*``
        environment).

    Returns
    -------
    table : `astropy.table.Table`
        One row per subject, workflow version, task and answer
        (doc/classifications.md); the summary in
        ``meta["zooniverse_classifications"]``.

    Raises
    ------
    ClassificationsUnavailableError
        Raised if the export cannot be fetched or read, or the collection
        holds no catalog.
    """
    from ..zooniverse.classification_export import (
        ClassificationExportError,
        fetch_classification_export,
        panoptes_export_fetcher,
    )
    from ..zooniverse.classifications import aggregate_classifications, read_catalog
    from ..zooniverse.credentials import ZooniverseCredentials
    from ..zooniverse.errors import SubjectSetError
    from ..zooniverse.subject_sets import SubjectSetPublisher

    name = project["name"]
    rows = SubjectSetPublisher(service).recorded_subjects(name)
    external_ids = {str(r["subject_id"]): r["external_id"] for r in rows if r.get("subject_id")}
    catalog = None
    if collection:
        try:
            catalog = read_catalog(service.butlers.get(project["repo"]), collection)
        except Exception as err:
            raise ClassificationsUnavailableError(f"No catalog in {collection}: {err}") from None
    with tempfile.TemporaryDirectory(prefix="epo-classifications-") as scratch:
        source = saved_export(name)
        try:
            if source is None:
                if fetcher is None:
                    fetcher = panoptes_export_fetcher(ZooniverseCredentials.load())
                source = fetch_classification_export(
                    int(project["zooniverse_project_id"]), os.path.join(scratch, "export.csv"), fetcher
                )
            table, _ = aggregate_classifications(
                source, project=name, external_ids=external_ids, catalog=catalog
            )
        except SubjectSetError as err:
            # No or bad Zooniverse credentials in EPO's environment.
            raise ClassificationsUnavailableError(
                f"EPO cannot fetch the classification export of Zooniverse project "
                f"{project['zooniverse_project_id']}: {err}"
            ) from None
        except (ClassificationExportError, ValueError) as err:
            raise ClassificationsUnavailableError(str(err)) from None
    return table


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def table_as_json(table: Table) -> dict[str, Any]:
    """Turn the aggregated table into JSON-friendly columns and rows.

    Parameters
    ----------
    table : `astropy.table.Table`
        What `project_classifications` returned.

    Returns
    -------
    answer : `dict`
        ``columns`` (``name, dtype, unit, description``), ``rows`` (one
        object per row; masked and non-finite values are ``null``) and
        ``summary``.
    """
    columns = []
    values = {}
    for name in table.colnames:
        column = table[name]
        data = np.asarray(column).tolist()
        mask = np.ma.getmaskarray(column).tolist() if hasattr(column, "mask") else [False] * len(column)
        values[name] = [None if m else _json_value(v) for v, m in zip(data, mask, strict=True)]
        columns.append(
            {
                "name": name,
                "dtype": column.dtype.str,
                "unit": str(column.unit) if column.unit is not None else None,
                "description": column.description,
            }
        )
    rows = [dict(zip(values, row, strict=True)) for row in zip(*values.values(), strict=True)]
    return {
        "columns": columns,
        "rows": rows,
        "summary": table.meta.get("zooniverse_classifications", {}),
    }
