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

"""BPS quantum clustering that cuts partitions into jobs of equal size."""

from __future__ import annotations

__all__ = ("balanced_dimension_clustering", "balanced_partition_count")

import logging
import math

import epo_zooniverse_zipfile_fix

from lsst.ctrl.bps import BpsConfig, ClusteredQuantumGraph
from lsst.ctrl.bps.quantum_clustering_funcs import dimension_clustering
from lsst.pipe.base.quantum_graph import PredictedQuantumGraph

_LOG = logging.getLogger(__name__)


def balanced_partition_count(n_values: int, max_size: int) -> int:
    """Return the number of jobs ``n_values`` partition values need when
    no job may hold more than ``max_size`` of them.

    Parameters
    ----------
    n_values : `int`
        Number of partition values (e.g. patches) to spread over jobs.
    max_size : `int`
        Largest number of values one job may hold.

    Returns
    -------
    n_jobs : `int`
        ``ceil(n_values / max_size)``: with the values dealt out as evenly
        as possible, jobs hold ``n_values // n_jobs`` or one more, never
        more than ``max_size``.

    Raises
    ------
    ValueError
        Raised if ``max_size`` is not a positive integer or ``n_values`` is
        negative.
    """
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise ValueError(f"partitionMaxSize must be a positive integer, not {max_size!r}.")
    if n_values < 0:
        raise ValueError(f"Number of partition values must not be negative, not {n_values}.")
    return math.ceil(n_values / max_size)


def _split_names(value: str) -> list[str]:
    return [name.strip() for name in str(value).split(",") if name.strip()]


# Long for its docstring (the rule and a submit-file example); the code is
# about 40 lines.
def balanced_dimension_clustering(
    config: BpsConfig, qgraph: PredictedQuantumGraph, name: str
) -> ClusteredQuantumGraph:
    """Cluster quanta as ctrl_bps's ``dimension_clustering`` does, but cut
    each ``partitionMaxSize`` partition into jobs of equal size.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        BPS configuration (its ``cluster`` section is read, not changed).
    qgraph : `lsst.pipe.base.quantum_graph.PredictedQuantumGraph`
        Quantum graph to break into clusters.
    name : `str`
        Name to give to the clustered quantum graph.

    Returns
    -------
    cqgraph : `lsst.ctrl.bps.ClusteredQuantumGraph`
        The clustered quantum graph.

    Raises
    ------
    epo_zooniverse_zipfile_fix.ZipfileBugError
        Raised if this Python has CPython's zipfile seek bug and the
        environment does not patch it at interpreter start-up: the jobs
        would misread their quantum graph (checked here, before the
        submission is prepared).

    Notes
    -----
    ``dimension_clustering`` fills partitions of ``partitionMaxSize``
    values one after the other, so 36 patches with ``partitionMaxSize: 10``
    become jobs of 10, 10, 10 and 6 patches; on two workers one of them
    then idles for four patches' work at the end of the run.  Here every
    cluster section with ``partitionDimensions`` and ``partitionMaxSize``
    is given to ``dimension_clustering`` as the equivalent
    ``partitionMaxClusters``: as many jobs per cluster-dimension value as
    ``partitionMaxSize`` requires, ``ceil(n / partitionMaxSize)`` for ``n``
    partition values, which ctrl_bps fills evenly (9, 9, 9, 9 patches).  No
    job is larger than ``partitionMaxSize`` and there are no more jobs than
    with ``dimension_clustering``.  Sections without partitioning, or with
    ``partitionMaxClusters`` already, are passed on unchanged, as are
    sections whose dimensions are not all in the quanta's data IDs
    (``equalDimensions``): ``dimension_clustering`` reports those.

    Use it in a submit file::

        clusterAlgorithm: >-
          lsst.epo.zooniverse.pipeline.bps_clustering.balanced_dimension_clustering
        cluster:
          patches:
            pipetasks: shardCatalog,extractStamps,composeRgb
            dimensions: skymap,tract
            partitionDimensions: patch
            partitionMaxSize: 10
    """
    epo_zooniverse_zipfile_fix.require_active("bps clustering with balanced_dimension_clustering")
    balanced = BpsConfig(config)
    if "cluster" in config:
        cluster_section = config["cluster"]
        for label in cluster_section:
            section = cluster_section[label]
            # Without partitionMaxSize, dimension_clustering says what is
            # missing; partitionMaxClusters is already balanced.
            if (
                "partitionDimensions" not in section
                or "partitionMaxClusters" in section
                or "partitionMaxSize" not in section
            ):
                continue
            max_size = section["partitionMaxSize"]
            cluster_dims = _split_names(section.get("dimensions", ""))
            partition_dims = _split_names(section["partitionDimensions"])
            counts = _count_values(qgraph, _split_names(section["pipetasks"]), cluster_dims, partition_dims)
            if counts is None:
                continue
            n_clusters, n_values = counts
            n_jobs = balanced_partition_count(n_values, max_size)
            if n_jobs == 0:
                continue  # No quanta of these tasks (then n_clusters is 0 too).
            del balanced[f".cluster.{label}.partitionMaxSize"]
            balanced[f".cluster.{label}.partitionMaxClusters"] = n_jobs * n_clusters
            _LOG.info(
                "Cluster %s: %d %s values in jobs of at most %d: "
                "%d job(s) per %s value, %d to %d values each.",
                label,
                n_values,
                "+".join(partition_dims),
                max_size,
                n_jobs,
                "+".join(cluster_dims) or "cluster",
                n_values // n_jobs,
                -(-n_values // n_jobs),
            )
    return dimension_clustering(balanced, qgraph, name)


def _count_values(
    qgraph: PredictedQuantumGraph,
    task_labels: list[str],
    cluster_dims: list[str],
    partition_dims: list[str],
) -> tuple[int, int] | None:
    """Count the distinct cluster-dimension and partition-dimension values
    of the quanta of ``task_labels``; `None` if a dimension is missing from
    a quantum's data ID.
    """
    cluster_values: set[tuple] = set()
    partition_values: set[tuple] = set()
    quanta_by_task = qgraph.quanta_by_task
    for task_label in task_labels:
        for data_id in quanta_by_task.get(task_label, {}):
            values = data_id.mapping
            try:
                cluster_values.add(tuple(values[dim] for dim in cluster_dims))
                partition_values.add(tuple(values[dim] for dim in partition_dims))
            except KeyError:
                return None
    return len(cluster_values), len(partition_values)
