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

"""Volunteers' classifications back into the PI's Butler collection.

`aggregate_classifications` streams a Zooniverse classification export
(`~lsst.epo.zooniverse.zooniverse.classification_export`), counts the
answers (`~lsst.epo.zooniverse.zooniverse.classification_aggregate`),
finds each subject's catalog ``object_id`` and joins the catalog's columns.
`write_classifications` puts the table into a Butler run as the
dimensionless ``zooniverse_classifications`` dataset (`CLASSIFICATIONS`),
and `classifications_to_butler` does all of it.  doc/classifications.md
describes the table and why the dataset has no dimensions.

A subject's object id comes, in this order, from its metadata
(``#object_id``, as EPO writes it for projects with the ``full`` metadata
policy), from its ``external_id`` ``<project>:<object_id>``, or, for an
``anonymised`` project, from its ``external_id`` ``s-<hash>`` recomputed
from the catalog's object ids.  Zooniverse's export does not carry the
``external_id``: pass the subject id → external id map EPO recorded when it
sent the subjects (`lsst.epo.zooniverse.pi.project.EpoProject.sent_subjects`).
"""

from __future__ import annotations

__all__ = [
    "CLASSIFICATIONS",
    "OBJECT_ID_KEYS",
    "ClassificationSummary",
    "aggregate_classifications",
    "classifications_to_butler",
    "join_catalog",
    "read_catalog",
    "subject_object_ids",
    "write_classifications",
]

import collections
import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import IO, Any

import numpy as np
from astropy.table import MaskedColumn, Table, vstack

from ..butler.dataset_types import TARGETS, DatasetTypeSpec
from ..export.manifest import anonymous_subject_id
from .classification_aggregate import ClassificationAggregator
from .classification_export import ExportProblem, read_classifications

CLASSIFICATIONS = DatasetTypeSpec("zooniverse_classifications", (), "ArrowAstropy")
"""Volunteers' answers per subject, task and answer, with the catalog's
columns: one dataset per run (one run per export read)."""

OBJECT_ID_KEYS = ("#object_id", "object_id", "!object_id", "//object_id", "#objectId", "objectId")
"""Subject metadata keys that hold the catalog object id, in the order
tried (EPO writes ``#object_id``; Rubin's notebooks wrote ``#objectId``)."""

# How many ids of each kind the table's metadata keeps (the summary keeps
# them all).
META_ID_LIMIT = 10_000


@dataclasses.dataclass
class ClassificationSummary:
    """What reading and joining an export found.

    Every row of the export is either counted (``n_classifications``) or in
    ``problems``; every classified subject is either matched to a catalog
    row or listed in ``unknown_subjects``.
    """

    source: str
    project: str
    n_rows: int = 0
    n_classifications: int = 0
    n_multi_subject: int = 0
    n_gold_standard: int = 0
    n_expert: int = 0
    problems: list[ExportProblem] = dataclasses.field(default_factory=list)
    n_subjects: int = 0
    n_matched: int = 0
    matched_by: dict[str, int] = dataclasses.field(default_factory=dict)
    unknown_subjects: list[str] = dataclasses.field(default_factory=list)
    unknown_classifications: int = 0
    retired_subjects: list[str] = dataclasses.field(default_factory=list)
    workflows: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    type_conflicts: list[str] = dataclasses.field(default_factory=list)
    other_values: list[str] = dataclasses.field(default_factory=list)
    n_table_rows: int = 0
    catalog_rows: int | None = None
    run: str | None = None

    @property
    def problems_by_rule(self) -> dict[str, int]:
        """Number of problem rows per rule."""
        return dict(collections.Counter(p.rule for p in self.problems))

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        """Return the summary as JSON-friendly data.

        Parameters
        ----------
        limit : `int`, optional
            Keep at most this many entries of each list (the counts stay
            exact; ``truncated`` says which lists were cut).

        Returns
        -------
        summary : `dict`
            Every field, problems as dictionaries.
        """
        data = dataclasses.asdict(self)
        data["problems"] = [p.as_dict() for p in self.problems]
        data["problems_by_rule"] = self.problems_by_rule
        data["n_unknown_subjects"] = len(self.unknown_subjects)
        data["n_retired_subjects"] = len(self.retired_subjects)
        if limit is not None:
            truncated = []
            for key in ("problems", "unknown_subjects", "retired_subjects", "other_values"):
                if len(data[key]) > limit:
                    data[key] = data[key][:limit]
                    truncated.append(key)
            data["truncated"] = truncated
        return data

    def __str__(self) -> str:
        lines = [
            f"{self.source}: {self.n_rows} rows, {self.n_classifications} classifications counted, "
            f"{len(self.problems)} problem rows"
            + (
                f" ({', '.join(f'{k}: {n}' for k, n in sorted(self.problems_by_rule.items()))})"
                if self.problems
                else ""
            ),
            f"{self.n_subjects} subjects: {self.n_matched} matched to catalog objects, "
            f"{len(self.unknown_subjects)} unknown ({self.unknown_classifications} classifications), "
            f"{len(self.retired_subjects)} retired",
        ]
        for workflow, info in sorted(self.workflows.items()):
            versions = ", ".join(f"{v}: {n}" for v, n in info["versions"].items())
            lines.append(f"workflow {workflow} {info['name']!r}: {versions}")
        if self.run:
            lines.append(f"{self.n_table_rows} rows written to {CLASSIFICATIONS.name} in run {self.run}")
        return "\n".join(lines)


def subject_object_ids(
    subject_metadata: Mapping[str, Mapping[str, Any]],
    *,
    project: str,
    external_ids: Mapping[str, str] | None = None,
    catalog_ids: Iterable[str] | None = None,
) -> dict[str, tuple[str, str]]:
    """Find each subject's catalog object id.

    Parameters
    ----------
    subject_metadata : `~collections.abc.Mapping`
        Subject id → its metadata (from the export's ``subject_data``).
    project : `str`
        EPO project name (the ``external_id`` prefix).
    external_ids : `~collections.abc.Mapping`, optional
        Subject id → ``external_id`` (what EPO recorded when sending).
    catalog_ids : `~collections.abc.Iterable` [`str`], optional
        The catalog's object ids, to decode anonymised external ids.

    Returns
    -------
    object_ids : `dict` [`str`, `tuple` [`str`, `str`]]
        Subject id → (object id or "", how: ``metadata``, ``external_id``,
        ``anonymised_external_id`` or ``unknown``).
    """
    external_ids = external_ids or {}
    anonymous: dict[str, str] | None = None
    prefix = f"{project}:"
    result = {}
    for sid, metadata in subject_metadata.items():
        found = next((metadata[k] for k in OBJECT_ID_KEYS if metadata.get(k) not in (None, "")), None)
        if found is not None:
            result[sid] = (str(found), "metadata")
            continue
        external = external_ids.get(sid, "")
        if external.startswith(prefix) and len(external) > len(prefix):
            result[sid] = (external[len(prefix) :], "external_id")
            continue
        if external.startswith("s-") and catalog_ids is not None:
            if anonymous is None:
                anonymous = {anonymous_subject_id(project, oid): oid for oid in catalog_ids}
            if external in anonymous:
                result[sid] = (anonymous[external], "anonymised_external_id")
                continue
        result[sid] = ("", "unknown")
    return result


def join_catalog(table: Table, object_ids: Mapping[str, str], catalog: Table | None) -> Table:
    """Add ``object_id``, ``in_catalog`` and the catalog's columns.

    Parameters
    ----------
    table : `astropy.table.Table`
        Aggregated counts (with ``subject_id``).
    object_ids : `~collections.abc.Mapping` [`str`, `str`]
        Subject id → object id ("" if unknown).
    catalog : `astropy.table.Table`, optional
        The catalog (an ``object_id`` column, any others).

    Returns
    -------
    joined : `astropy.table.Table`
        ``object_id`` and ``in_catalog`` first, the counts, then every other
        catalog column (masked where the subject is not in the catalog;
        prefixed ``catalog_`` if the name is taken).
    """
    oids = np.array([object_ids.get(str(s), "") for s in table["subject_id"]], dtype=str)
    if len(oids) == 0:
        oids = np.array([], dtype="U1")
    out = Table()
    out["object_id"] = oids
    out["object_id"].description = "catalog object id of the subject (empty if unknown)"
    positions = np.full(len(table), -1, dtype=np.int64)
    if catalog is not None and len(table):
        where = {str(v): i for i, v in enumerate(catalog["object_id"])}
        positions = np.array([where.get(o, -1) if o else -1 for o in oids], dtype=np.int64)
    out["in_catalog"] = positions >= 0
    out["in_catalog"].description = "the subject's object is a row of the catalog"
    for name in table.colnames:
        out[name] = table[name]
    if catalog is not None:
        found = positions >= 0
        take = np.where(found, positions, 0)
        for name in catalog.colnames:
            if name == "object_id":
                continue
            column = catalog[name]
            values = column[take] if len(catalog) else np.zeros(len(table), dtype=column.dtype)
            target = name if name not in out.colnames else f"catalog_{name}"
            out[target] = MaskedColumn(
                np.asarray(values), mask=~found, unit=column.unit, description=column.description
            )
    return out


def _read_sources(
    source: str | os.PathLike | IO[str], aggregator: ClassificationAggregator, summary: ClassificationSummary
) -> None:
    with read_classifications(source) as reader:
        for classification in reader:
            aggregator.add(classification)
        summary.n_rows = reader.n_rows
        summary.problems = reader.problems


def _fill_summary(
    summary: ClassificationSummary,
    aggregator: ClassificationAggregator,
    matched_by: collections.Counter,
    unknown: list[str],
) -> None:
    """Copy the aggregator's counts and the join's findings into the
    summary.
    """
    unknown_set = set(unknown)
    summary.n_classifications = aggregator.n_classifications
    summary.n_multi_subject = aggregator.n_multi_subject
    summary.n_gold_standard = aggregator.flagged["gold_standard"]
    summary.n_expert = aggregator.flagged["expert"]
    summary.n_subjects = aggregator.n_subjects
    summary.n_matched = sum(matched_by.values())
    summary.matched_by = dict(matched_by)
    summary.unknown_subjects = sorted(unknown, key=lambda s: (len(s), s))
    summary.unknown_classifications = sum(
        n for (sid, _, _), n in aggregator.subject_counts.items() if sid in unknown_set
    )
    summary.retired_subjects = aggregator.retired_subjects()
    summary.workflows = {
        workflow: {
            "name": aggregator.workflow_names.get(workflow, ""),
            "versions": {
                v: n
                for (w, _), counter in sorted(aggregator.workflow_versions.items())
                if w == workflow
                for v, n in sorted(counter.items())
            },
        }
        for workflow in aggregator.workflow_names
    }
    summary.type_conflicts = [
        f"workflow {w} v{m} task {t}: {', '.join(sorted(types))}"
        for (w, m, t), types in sorted(aggregator.type_conflicts.items())
    ]
    summary.other_values = [f"{cid}:{task}" for cid, task in aggregator.other_values]


def aggregate_classifications(
    source: str | os.PathLike | IO[str],
    *,
    project: str,
    external_ids: Mapping[str, str] | None = None,
    catalog: Table | None = None,
) -> tuple[Table, ClassificationSummary]:
    """Count the volunteers' answers of an export and join the catalog.

    Parameters
    ----------
    source : `str`, `os.PathLike` or `typing.IO` [`str`]
        The classification export (CSV), streamed.
    project : `str`
        EPO project name.
    external_ids : `~collections.abc.Mapping` [`str`, `str`], optional
        Subject id → ``external_id``.
    catalog : `astropy.table.Table`, optional
        The catalog to join (``object_id`` and any other columns).

    Returns
    -------
    table : `astropy.table.Table`
        One row per subject, workflow version, task and answer
        (doc/classifications.md), its ``meta`` holding the summary.
    summary : `ClassificationSummary`
        Counts, problem rows, unknown and retired subjects.

    Raises
    ------
    lsst.epo.zooniverse.zooniverse.classification_export.ClassificationExportError
        Raised if the export cannot be read at all (missing, no header,
        required columns absent).
    """
    name = os.fspath(source) if isinstance(source, str | os.PathLike) else getattr(source, "name", "<stream>")
    summary = ClassificationSummary(source=str(name), project=project)
    aggregator = ClassificationAggregator()
    _read_sources(source, aggregator, summary)
    catalog_ids = [str(v) for v in catalog["object_id"]] if catalog is not None else None
    found = subject_object_ids(
        aggregator.subject_metadata, project=project, external_ids=external_ids, catalog_ids=catalog_ids
    )
    in_catalog = set(catalog_ids) if catalog_ids is not None else None
    object_ids = {}
    unknown = []
    matched_by: collections.Counter = collections.Counter()
    for sid, (oid, how) in found.items():
        known = bool(oid) and (in_catalog is None or oid in in_catalog)
        object_ids[sid] = oid
        if known:
            matched_by[how] += 1
        else:
            unknown.append(sid)
    table = join_catalog(aggregator.table(), object_ids, catalog)
    _fill_summary(summary, aggregator, matched_by, unknown)
    summary.n_table_rows = len(table)
    summary.catalog_rows = len(catalog) if catalog is not None else None
    table.meta["zooniverse_classifications"] = summary.as_dict(limit=META_ID_LIMIT)
    return table, summary


def read_catalog(butler: Any, collections: Any) -> Table:
    """Read the PI's sharded catalog (every ``zooniverse_targets`` shard).

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        The repository.
    collections : `str` or `list` [`str`]
        Collections holding the sharding run.

    Returns
    -------
    catalog : `astropy.table.Table`
        All shards, by ``row_index`` (``object_id``, ``ra``, ``dec``,
        ``row_index`` and the PI's extra columns).

    Raises
    ------
    LookupError
        Raised if the collections hold no ``zooniverse_targets``.
    """
    refs = butler.query_datasets(TARGETS.name, collections=collections, find_first=True, explain=False)
    if not refs:
        raise LookupError(f"No {TARGETS.name} datasets in collection(s) {collections}.")
    catalog = vstack([butler.get(ref) for ref in refs], metadata_conflicts="silent")
    catalog["object_id"] = np.asarray(catalog["object_id"]).astype(str)
    if "row_index" in catalog.colnames:
        catalog.sort("row_index")
    return catalog


def write_classifications(butler: Any, table: Table, run: str) -> Any:
    """Put the table into a run as ``zooniverse_classifications``.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        A writeable Butler.
    table : `astropy.table.Table`
        What `aggregate_classifications` returned.
    run : `str`
        The RUN collection (created if needed; it must not hold a
        ``zooniverse_classifications`` already: one export per run).

    Returns
    -------
    ref : `lsst.daf.butler.DatasetRef`
        The dataset written.

    Raises
    ------
    FileExistsError
        Raised if the run already holds one.
    """
    dataset_type = CLASSIFICATIONS.make(butler.dimensions)
    butler.registry.registerDatasetType(dataset_type)
    butler.collections.register(run)
    if butler.query_datasets(dataset_type, collections=run, explain=False):
        raise FileExistsError(
            f"Run {run} already holds {CLASSIFICATIONS.name}: write each export to a new run."
        )
    return butler.put(table, dataset_type, run=run)


def classifications_to_butler(
    source: str | os.PathLike | IO[str],
    butler: Any,
    *,
    project: str,
    run: str,
    collections: Any = None,
    external_ids: Mapping[str, str] | None = None,
) -> ClassificationSummary:
    """Aggregate an export, join the PI's catalog and write the dataset.

    Parameters
    ----------
    source : `str`, `os.PathLike` or `typing.IO` [`str`]
        The classification export.
    butler : `lsst.daf.butler.Butler`
        A writeable Butler.
    project : `str`
        EPO project name.
    run : `str`
        Output RUN collection.
    collections : `str` or `list` [`str`], optional
        Where the sharded catalog is (no catalog join if `None`).
    external_ids : `~collections.abc.Mapping` [`str`, `str`], optional
        Subject id → ``external_id``.

    Returns
    -------
    summary : `ClassificationSummary`
        With ``run`` set.
    """
    catalog = read_catalog(butler, collections) if collections else None
    table, summary = aggregate_classifications(
        source, project=project, external_ids=external_ids, catalog=catalog
    )
    summary.run = run
    table.meta["zooniverse_classifications"]["run"] = run
    write_classifications(butler, table, run)
    return summary
