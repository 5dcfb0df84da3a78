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

"""``bps submit`` on a throw-away Slurm cluster with one and with two
compute nodes (one core each): per-job start-up and per-picture costs for
bench/scale_model.py, and the runs to check its model against.

Usage::

    python bench/bench_slurm.py [--patches-per-side 4]
        [--objects-per-patch 400] [--patches-per-job 4] [--json costs.json]
        [--fused] [--keep-free-page-reporting]

``--fused`` submits ``config/bps/zooniverse_fused.yaml`` (shardCatalog +
makePictures, each object pictured once) instead of the three-task file,
and the model then counts the fused pipeline's quanta and datasets per
patch (`scale_model.FUSED_SHAPE`).

Needs Debian's Slurm and munge (``scripts/setup_env.sh --test-tools``) and
root or the ``munge`` account; the cluster (tests/slurm_cluster.py) is
stopped at the end.  As ``bench_pipeline.py --peer`` does, the kernel's
free page reporting is paused for the runs where this process may
(``vm_memory.py``).  Each job's stdout starts with the time it started
(the submit file's ``commandPrefix``); its log gives its quanta.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "tests"))

from bench_pipeline import BIN, environment  # noqa: E402
from bench_repo import INPUTS, SKYMAP, build_repo  # noqa: E402
from scale_model import FUSED_SHAPE, Costs, check, table  # noqa: E402
from slurm_cluster import ThrowawaySlurm  # noqa: E402
from vm_memory import add_free_page_reporting_option, free_page_reporting_paused  # noqa: E402

_STAMP = re.compile(r"^\w+ (\d{4}-\d\d-\d\dT[0-9:.]+\+00:00) ", re.M)
_TOOK = re.compile(r"Execution of task '(\w+)' on quantum .* took ([0-9.]+) seconds")
_PICTURES = re.compile(r"(\d+) pictures from bands")


def _times(text: str) -> list[float]:
    return [datetime.fromisoformat(t).timestamp() for t in _STAMP.findall(text)]


def job_records(submit_dir: Path) -> list[dict]:
    """Start, first quantum, end, node and pictures of every pipeline job."""
    records = []
    for stdout in sorted(submit_dir.rglob("logs/patches/**/*.stdout")):
        head = stdout.read_text().split()
        log = stdout.with_suffix(".stderr").read_text(errors="replace")
        stamps = _times(log)
        took = [float(t) for _, t in _TOOK.findall(log)]
        first_line = next(line for line in log.splitlines() if "Execution of task" in line)
        first_end = _times(first_line + "\n")[0] if _STAMP.search(first_line + "\n") else stamps[0]
        records.append(
            {
                "job": stdout.stem,
                "start": float(head[0]),
                "node": head[1] if len(head) > 1 else "",
                "first_quantum": first_end - took[0],
                "end": stamps[-1],
                "quanta": len(took),
                "pictures": sum(int(n) for n in _PICTURES.findall(log)),
            }
        )
    return records


def run_slurm(
    cluster: ThrowawaySlurm, repo: str, nodes: int, patches_per_job: int, work: Path, fused: bool = False
) -> dict:
    """One ``bps submit`` with ``nodes`` one-core nodes; its timings."""
    output = f"u/bench/slurm{nodes}"
    submit = work / f"submit_{nodes}.yaml"
    submit.write_text(
        "includeConfigs:\n"
        f"  - ${{EPO_ZOONIVERSE_DIR}}/config/bps/{'zooniverse_fused' if fused else 'zooniverse'}.yaml\n"
        "  - ${EPO_ZOONIVERSE_DIR}/config/bps/sites/slurm.yaml\n"
        f"cluster:\n  patches:\n    partitionMaxSize: {patches_per_job}\n"
        f"site:\n  slurm:\n    nodes: {nodes}\n    cores_per_node: 1\n    walltime: '01:00:00'\n"
        "    address: 127.0.0.1\n    commandPrefix: 'date +%s.%N; printenv SLURMD_NODENAME'\n"
    )
    run_dir = work / f"run{nodes}"
    run_dir.mkdir()
    env = cluster.env(environment())
    env["PWD"] = str(run_dir)
    start = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "bps"), "submit", str(submit), "-b", repo, "-i", ",".join(INPUTS), "-o", output,
         "-d", f"skymap='{SKYMAP}'"],
        cwd=run_dir, env=env, capture_output=True, text=True,
    )  # fmt: skip
    total = time.perf_counter() - start
    text = result.stdout + result.stderr
    if result.returncode != 0 or "'tasks_failed_count': 0" not in text:
        sys.exit(f"bps submit failed ({result.returncode}):\n{text[-6000:]}")
    found = re.findall(r"(\w+) stage completed: Took ([0-9.]+) seconds", text)
    stages = {name: float(value) for name, value in found}
    jobs = job_records(run_dir)
    final_log = next(run_dir.rglob("logs/finalJob/*.stderr")).read_text(errors="replace")
    executed_until = max(job["end"] for job in jobs)
    execution = executed_until - min(job["start"] for job in jobs)
    final = _times(final_log)[-1] - executed_until
    return {
        "name": f"Slurm, {nodes} node{'s' if nodes > 1 else ''}",
        "workers": nodes,
        "jobs": len(jobs),
        "nodes_used": sorted({job["node"] for job in jobs}),
        "pictures": sum(job["pictures"] for job in jobs),
        "quanta": sum(job["quanta"] for job in jobs),
        "total": total,
        "prepare": sum(v for k, v in stages.items() if k != "Submit"),
        "submit_stage": stages.get("Submit", math.nan),
        "execution": execution,
        "final": final,
        "start_and_init": stages.get("Submit", math.nan) - execution - final,
        "job_details": jobs,
    }


def graph_seconds(repo: str, where: str, work: Path, name: str, fused: bool = False) -> tuple[float, int]:
    """Wall time and quanta of ``pipetask qgraph`` for ``where``."""
    pipeline = ROOT / "pipelines" / ("ZooniverseCutoutsFused.yaml" if fused else "ZooniverseCutouts.yaml")
    graph = work / f"{name}.qg"
    start = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "pipetask"), "qgraph", "-b", repo, "-i", ",".join(INPUTS), "-o", f"u/bench/{name}",
         "-p", str(pipeline), "-d", where,
         "--dataset-query-constraint", "zooniverse_targets", "-q", str(graph)],
        env=environment(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    quanta = re.findall(r"QuantumGraph contains (\d+) quanta", result.stdout + result.stderr)
    return seconds, int(quanta[-1]) if quanta else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patches-per-side", type=int, default=4)
    parser.add_argument("--objects-per-patch", type=int, default=400)
    parser.add_argument("--patches-per-job", type=int, default=4)
    parser.add_argument("--json", help="write the costs and runs here (for scale_model.py --measured)")
    parser.add_argument("--fused", action="store_true", help="submit the fused pipeline's file")
    add_free_page_reporting_option(parser)
    args = parser.parse_args()
    shape = FUSED_SHAPE if args.fused else {}
    quanta_per_patch = shape.get("quanta_per_patch", Costs.quanta_per_patch)
    datasets_per_patch = shape.get("datasets_per_patch", Costs.datasets_per_patch)
    with (
        free_page_reporting_paused(not args.keep_free_page_reporting) as state,
        tempfile.TemporaryDirectory(prefix="bench_slurm_") as tmp,
    ):
        print(state, flush=True)
        work = Path(tmp)
        repo, n_objects = build_repo(work, args.objects_per_patch, patches_per_side=args.patches_per_side)
        where = f"skymap='{SKYMAP}'"
        # Alternated, medians of three: one graph of 2 patches and one of
        # all, whose difference per quantum is small against the noise.
        timings: dict[str, list[tuple[float, int]]] = {"small": [], "large": []}
        for k in range(3):
            for size, query in (("small", f"{where} AND patch IN (0, 1)"), ("large", where)):
                timings[size].append(graph_seconds(repo, query, work, f"graph_{size}_{k}", args.fused))
        small, large = (
            (statistics.median(t for t, _ in runs_of_size), runs_of_size[0][1])
            for runs_of_size in (timings["small"], timings["large"])
        )
        with ThrowawaySlurm(nodes=2, cpus_per_node=1) as cluster:
            runs = [
                run_slurm(cluster, repo, nodes, args.patches_per_job, work, args.fused) for nodes in (1, 2)
            ]
    jobs = [job for run in runs for job in run["job_details"]]
    startup = sum(job["first_quantum"] - job["start"] for job in jobs) / len(jobs)
    working = sum(job["end"] - job["first_quantum"] for job in jobs)
    per_picture = working / sum(job["pictures"] for job in jobs)
    # Never below zero: a graph does not get cheaper with more quanta.
    g1 = max(0.0, (large[0] - small[0]) / max(1, large[1] - small[1]))
    patches = args.patches_per_side**2
    final = sum(run["final"] for run in runs) / len(runs)
    costs = {
        "job_startup": startup,
        "per_picture": per_picture,
        "objects_per_patch": float(args.objects_per_patch),
        "overlap": runs[0]["pictures"] / n_objects,
        "graph_fixed": runs[0]["prepare"] - g1 * patches * quanta_per_patch,
        "graph_per_quantum": g1,
        "start_fixed": sum(run["start_and_init"] for run in runs) / len(runs),
        "final_fixed": min(final, startup),
        "final_per_dataset": max(0.0, final - startup) / (patches * datasets_per_patch),
        "quanta_per_patch": quanta_per_patch,
        "datasets_per_patch": datasets_per_patch,
    }
    print(f"objects {n_objects}, patches {patches}; pipetask qgraph {small} (2 patches), {large} (all)")
    for run in runs:
        brief = {k: round(v, 2) if isinstance(v, float) else v for k, v in run.items()}
        del brief["job_details"]
        print(brief)
        for job in run["job_details"]:
            print(
                f"  {job['job']} on {job['node']}: start-up {job['first_quantum'] - job['start']:.1f} s, "
                f"{job['pictures']} pictures in {job['end'] - job['first_quantum']:.1f} s"
            )
    print("costs:", {k: round(v, 5) for k, v in costs.items()})
    model = replace(Costs(), **{**costs, "patches_per_job": 10, "objects_per_patch": 1000.0})
    print()
    print(check(runs, replace(Costs(), **{**costs, "patches_per_job": args.patches_per_job})))
    print()
    print(table(model, (1_000_000, 100_000_000), (64, 1024)))
    if args.json:
        Path(args.json).write_text(json.dumps({"costs": costs, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
