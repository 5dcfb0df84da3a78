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

"""A wall-time model of ``bps submit`` of the shipped submit file, from
measured per-job start-up and per-picture costs.

The model (bench/RESULTS.md, "Scale model"):

- a catalog of ``N`` objects at ``rho`` objects per patch fills
  ``N / rho`` patches and gives ``N * overlap`` pictures (objects in patch
  overlaps are pictured once per patch);
- the submit file's job-size rule: jobs of at most ``k`` patches of one
  tract (``partitionMaxSize``, 10), dealt out evenly, so
  ``J = ceil(patches / k)`` jobs;
- a job costs ``s + pictures_per_job * c``: ``s`` the start-up of a
  ``pipetask run-qbb`` process (imports, graph read, Butler), ``c`` the
  cost of a picture with its share of its quanta (read coadds, cut, write
  and read Stamps, stretch, encode, write the ZIP);
- ``P`` workers (one per core) run the equal jobs in ``ceil(J / P)``
  waves;
- fixed costs outside the jobs: ``bps submit``'s graph building and
  preparation (``g0 + g1 * quanta``), the init job and parsl/Slurm start
  (``a``), and the final job (``f0 + f1 * datasets``), which registers
  the outputs serially.

Run ``python bench/scale_model.py`` for the table with the figures
measured here, or ``--measured FILE`` with bench/bench_slurm.py's JSON to
check the model against measured runs (``--fused`` for the fused
pipeline's shape, `FUSED_SHAPE`); ``--serial FILE`` takes ``g0``, ``g1``,
``f0`` and ``f1`` from bench/bench_serial_costs.py's JSON, lines fitted
over submissions of up to a thousand patches instead of the two sizes of a
Slurm run.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Costs:
    """Measured costs (seconds) and shapes of a run.

    Attributes
    ----------
    job_startup : `float`
        ``s``: a job's process start-up before its first quantum.
    per_picture : `float`
        ``c``: one picture's share of its quanta.
    objects_per_patch : `float`
        ``rho``.
    overlap : `float`
        Pictures per object (patch overlaps).
    patches_per_job : `int`
        ``k``, the submit file's ``partitionMaxSize``.
    graph_fixed, graph_per_quantum : `float`
        ``g0``, ``g1``: graph building and BPS preparation.
    start_fixed : `float`
        ``a``: init job, parsl start, block start.
    final_fixed, final_per_dataset : `float`
        ``f0``, ``f1``: the final job.
    quanta_per_patch : `int`
        Quanta of a patch (three-task pipeline: shardCatalog,
        extractStamps g, r, i, composeRgb).
    datasets_per_patch : `int`
        What the final job registers per patch (targets_patch, three
        Stamps, the ZIP and its report, each quantum's metadata and log).
    """

    # Defaults: bench/bench_slurm.py on this 2-core machine, 2026-12-04
    # (shared: load average ~10), with 1000 objects a patch and the
    # shipped 10 patches a job.
    job_startup: float = 9.25
    per_picture: float = 0.0199
    objects_per_patch: float = 1000.0
    overlap: float = 1.15
    patches_per_job: int = 10
    graph_fixed: float = 11.3
    graph_per_quantum: float = 0.0255
    start_fixed: float = 40.1
    final_fixed: float = 9.25
    final_per_dataset: float = 0.0175
    quanta_per_patch: int = 5
    datasets_per_patch: int = 16


FUSED_SHAPE = {"quanta_per_patch": 2, "datasets_per_patch": 10, "overlap": 1.0}
"""Shape of the fused pipeline (``config/bps/zooniverse_fused.yaml``):
shardCatalog and makePictures per patch; targets_patch, three Stamps, the
ZIP, its report and each quantum's metadata and log registered per patch;
each object pictured once (``assign_to=inner_patch``)."""

IDLE_MACHINE = {"job_startup": 3.5, "per_picture": 0.0025}
"""Per-job start-up and per-picture cost on an idle machine of this kind:
bench/RESULTS.md, session 7 (two ``pipetask run-qbb`` start-ups at once
3.5 s; jobs of 9 patches, ~8,400 pictures, in 21-22.5 s)."""


@dataclass(frozen=True)
class Prediction:
    """Predicted wall time of one ``bps submit`` (seconds)."""

    objects: int
    cores: int
    patches: int
    jobs: int
    waves: int
    job_seconds: float
    execution: float
    fixed: float
    total: float
    startup_fraction: float


def rule_patches_per_job(patches: int, cores: int, largest: int = 10) -> int:
    """The job-size rule: ``min(largest, ceil(patches / cores))``.

    Parameters
    ----------
    patches : `int`
        Patches of the run.
    cores : `int`
        Workers.
    largest : `int`, optional
        The submit file's ``partitionMaxSize`` (10).

    Returns
    -------
    k : `int`
        Patches per job: as many as start-up amortisation wants, but no
        fewer jobs than cores.
    """
    return max(1, min(largest, math.ceil(patches / cores)))


def predict(objects: int, cores: int, costs: Costs, patches_per_job: int | None = None) -> Prediction:
    """Predict the wall time of a run.

    Parameters
    ----------
    objects : `int`
        Catalog objects.
    cores : `int`
        Workers (one per core).
    costs : `Costs`
        Measured costs.
    patches_per_job : `int`, optional
        Patches per job instead of ``costs.patches_per_job``.

    Returns
    -------
    prediction : `Prediction`
        The run's shape and its predicted times.
    """
    patches = max(1, math.ceil(objects / costs.objects_per_patch))
    jobs = math.ceil(patches / (patches_per_job or costs.patches_per_job))
    pictures_per_job = objects * costs.overlap / jobs
    job_seconds = costs.job_startup + pictures_per_job * costs.per_picture
    waves = math.ceil(jobs / cores)
    execution = waves * job_seconds
    fixed = (
        costs.graph_fixed
        + costs.graph_per_quantum * patches * costs.quanta_per_patch
        + costs.start_fixed
        + costs.final_fixed
        + costs.final_per_dataset * patches * costs.datasets_per_patch
    )
    return Prediction(
        objects=objects,
        cores=cores,
        patches=patches,
        jobs=jobs,
        waves=waves,
        job_seconds=job_seconds,
        execution=execution,
        fixed=fixed,
        total=execution + fixed,
        startup_fraction=costs.job_startup / job_seconds,
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def table(costs: Costs, objects: tuple[int, ...], cores: tuple[int, ...]) -> str:
    """Markdown table of predictions.

    Parameters
    ----------
    costs : `Costs`
        Measured costs.
    objects : `tuple` [`int`, ...]
        Catalog sizes.
    cores : `tuple` [`int`, ...]
        Core counts.

    Returns
    -------
    text : `str`
        The table.
    """
    lines = [
        "| objects | cores | patches | patches/job | jobs | waves | job | execution "
        "| graph + start + final | total |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in objects:
        for p in cores:
            patches = max(1, math.ceil(n / costs.objects_per_patch))
            sizes = [costs.patches_per_job]
            if rule_patches_per_job(patches, p, costs.patches_per_job) != costs.patches_per_job:
                sizes.append(rule_patches_per_job(patches, p, costs.patches_per_job))
            for k in sizes:
                r = predict(n, p, costs, k)
                lines.append(
                    f"| {n:,} | {p:,} | {r.patches:,} | {k} | {r.jobs:,} | {r.waves:,} "
                    f"| {r.job_seconds:.1f} s | {_duration(r.execution)} | {_duration(r.fixed)} "
                    f"| **{_duration(r.total)}** |"
                )
    return "\n".join(lines)


def check(measured: list[dict], costs: Costs) -> str:
    """Compare measured runs (bench/bench_slurm.py's records) with the
    model's execution time for the same shape.

    Parameters
    ----------
    measured : `list` [`dict`]
        Records with ``nodes`` (workers), ``jobs``, ``pictures``,
        ``execution`` (seconds from the first job's start to the last
        job's end).
    costs : `Costs`
        Costs to predict with.

    Returns
    -------
    text : `str`
        Markdown table: measured against predicted.
    """
    lines = [
        "| run | workers | jobs | pictures | measured execution | model | model / measured |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in measured:
        jobs, workers = record["jobs"], record["workers"]
        job_seconds = costs.job_startup + record["pictures"] / jobs * costs.per_picture
        model = math.ceil(jobs / workers) * job_seconds
        lines.append(
            f"| {record['name']} | {workers} | {jobs} | {record['pictures']} | {record['execution']:.1f} s "
            f"| {model:.1f} s | {model / record['execution']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measured", help="bench/bench_slurm.py's JSON: its costs and runs")
    parser.add_argument("--objects", default="1000000,100000000")
    parser.add_argument("--cores", default="64,1024")
    parser.add_argument("--objects-per-patch", type=float, default=1000.0, help="catalog density")
    parser.add_argument("--idle", action="store_true", help="idle-machine job start-up and picture cost")
    parser.add_argument("--fused", action="store_true", help="the fused pipeline's shape (FUSED_SHAPE)")
    parser.add_argument(
        "--serial", help="bench/bench_serial_costs.py's JSON: graph and final-job lines (g0, g1, f0, f1)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=SECONDS",
        help="override one of Costs' fields (e.g. job_startup=2.09), after the files and the other "
        "options; repeatable",
    )
    args = parser.parse_args()
    costs = replace(Costs(), **FUSED_SHAPE) if args.fused else Costs()
    runs: list[dict] = []
    if args.measured:
        with open(args.measured) as stream:
            data = json.load(stream)
        costs = replace(costs, **data["costs"])
        runs = data["runs"]
    if args.idle:
        costs = replace(costs, **IDLE_MACHINE)
    if args.serial:
        with open(args.serial) as stream:
            costs = replace(costs, **json.load(stream)["costs"])
    overrides = {}
    for item in args.set:
        field, _, value = item.partition("=")
        if field not in asdict(costs):
            parser.error(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(asdict(costs))}")
        try:
            number = float(value)
        except ValueError:
            parser.error(f"--set {item!r}: {value!r} is not a number")
        kind = type(getattr(costs, field))
        if kind is int and not number.is_integer():
            parser.error(f"--set {item!r}: {field} is a whole number")
        overrides[field] = kind(number)
    runs_costs = replace(costs, **overrides)
    costs = replace(
        costs, **{"objects_per_patch": args.objects_per_patch, "patches_per_job": 10, **overrides}
    )
    print(f"Costs: {asdict(costs)}\n")
    objects = tuple(int(v) for v in args.objects.split(","))
    cores = tuple(int(v) for v in args.cores.split(","))
    print(table(costs, objects, cores))
    if runs:
        print()
        print(check(runs, runs_costs))


if __name__ == "__main__":
    main()
