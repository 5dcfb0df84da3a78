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

"""The serial costs of one ``bps submit`` at several sizes: building and
preparing the workflow, and the final job that registers every output.

bench/scale_model.py charges each submission ``g0 + g1 * quanta`` for
``bps``'s graph and preparation and ``f0 + f1 * datasets`` for its final
job.  bench/bench_slurm.py can only estimate ``g1`` and ``f1`` from runs of
16 patches, where they are the difference of two figures of a few seconds,
and at 100 million objects they decide the prediction.  This bench measures
both lines over a range of sizes in one run:

- tracts of ``--patches-per-side`` squared small patches (10 x 10, about
  as many as a tract of Rubin's ``lsst_cells_v1`` sky map has: the cost
  of a quantum's graph lookups may grow with the tract), ``--inner-size``
  pixels and a few objects each (the serial costs depend on the number
  of quanta and datasets, not on the pixels), three bands, as many tracts
  as the largest size needs;
- for each size ``K`` (the first ``K`` patches, tract by tract):
  ``bps prepare`` of the fused submit file (graph with datastore
  records, clustering, the workflow: the stages ``bps submit`` runs
  before it submits, with their own timings); the jobs' work, untimed as
  a serial cost (``pipetask pre-exec-init-qbb``, then ``pipetask run-qbb
  -j 1``, as the ``pipetaskInit`` and patch jobs run it); and the final
  job's command as the submit file has ctrl_bps run it (``butler
  aggregate-graph GRAPH REPO -j 1 --register-dataset-types
  --update-output-chain``: ctrl_bps's ``finalJob.command1`` with the
  submit file's one CPU; until session 16 this bench ran ``butler
  transfer-from-graph`` instead), timed as a whole process;
- least-squares lines through the sizes, with each size's residual.

``--registry postgresql`` puts the registry on a throw-away PostgreSQL
server (tests/postgres_server.py; durability off: ``fsync``,
``synchronous_commit`` and ``full_page_writes`` are off, so its figures are
a lower bound for a production server), as the RSP and the USDF batch
repositories have; the default is SQLite.  ``--json FILE`` writes the
fitted costs for ``scale_model.py --serial FILE``.

Usage::

    python bench/bench_serial_costs.py [--sizes 25,100,400,1000]
        [--patches-per-side 10] [--inner-size 100] [--objects-per-patch 4]
        [--registry sqlite|postgresql] [--json serial.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "tests"))

from bench_pipeline import BIN, environment  # noqa: E402
from bench_repo import INPUTS, SKYMAP, build_repo, registry_database  # noqa: E402
from scale_model import FUSED_SHAPE  # noqa: E402
from vm_memory import add_free_page_reporting_option, free_page_reporting_paused  # noqa: E402

_STAGE = re.compile(r"(\w+) stage completed: Took ([0-9.]+) seconds")
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
"""GNU time (Debian's ``time`` package), for the peak memory of a command."""
_QUANTA = re.compile(r"QuantumGraph contains (\d+) quanta")
_INGESTED = re.compile(r"Ingested (\d+) dataset\(s\)")


def _run(command: list[str], cwd: Path) -> tuple[float, str, float]:
    """Run a command; return its wall time, its output and its peak
    resident memory (MiB; NaN without GNU time).

    The peak comes from GNU ``time`` (``%M``), which starts the command
    itself: the ``ru_maxrss`` that ``wait4`` gives this process for a
    child it forked counts the fork's copy of this process (Linux records
    the memory's high-water mark at ``exec``), several hundred MiB here.
    """
    # ctrl_bps puts its submit directory under ${PWD}.
    env = dict(environment(), PWD=str(cwd))
    with tempfile.NamedTemporaryFile("r") as peak:
        prefix = [GNU_TIME, "-f", "%M", "-o", peak.name] if GNU_TIME else []
        start = time.perf_counter()
        result = subprocess.run(prefix + command, cwd=cwd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        text = result.stdout + result.stderr
        if result.returncode != 0:
            sys.exit(f"{' '.join(command[:3])} failed ({result.returncode}):\n{text[-6000:]}")
        kib = peak.read().split()
    return seconds, text, int(kib[-1]) / 1024 if kib else math.nan


def first_patches(patches: int, per_tract: int) -> str:
    """Data query of the first ``patches`` patches, whole tracts first."""
    whole, rest = divmod(patches, per_tract)
    parts = [f"tract IN (0..{whole - 1})"] if whole else []
    if rest:
        parts.append(f"(tract = {whole} AND patch IN (0..{rest - 1}))")
    return f"skymap='{SKYMAP}' AND ({' OR '.join(parts)})"


def measure_size(repo: str, patches: int, per_tract: int, work: Path) -> dict:
    """Prepare, run and finish one submission of the first ``patches``
    patches; return its serial costs.
    """
    run_dir = work / f"size{patches}"
    run_dir.mkdir()
    submit = run_dir / "submit.yaml"
    submit.write_text("includeConfigs:\n  - ${EPO_ZOONIVERSE_DIR}/config/bps/zooniverse_fused.yaml\n")
    output = f"u/bench/serial{patches}"
    where = first_patches(patches, per_tract)
    prepare_wall, text, prepare_rss = _run(
        [str(BIN / "bps"), "prepare", str(submit), "-b", repo, "-i", ",".join(INPUTS), "-o", output,
         "-d", where],
        run_dir,
    )  # fmt: skip
    stages = {name: float(value) for name, value in _STAGE.findall(text)}
    quanta = [int(n) for n in _QUANTA.findall(text)]
    graphs = sorted(run_dir.rglob("*.qg"), key=lambda path: path.stat().st_size)
    if not graphs or not quanta:
        sys.exit(f"bps prepare made no graph for {patches} patches:\n{text[-3000:]}")
    graph = str(graphs[-1])
    init_wall, _, _ = _run([str(BIN / "pipetask"), "pre-exec-init-qbb", repo, graph], run_dir)
    work_wall, _, work_rss = _run([str(BIN / "pipetask"), "run-qbb", "-j", "1", repo, graph], run_dir)
    final_wall, text, final_rss = _run(
        [str(BIN / "butler"), "aggregate-graph", graph, repo, "-j", "1", "--register-dataset-types",
         "--update-output-chain"],
        run_dir,
    )  # fmt: skip
    ingested = _INGESTED.findall(text)
    if not ingested:
        sys.exit(f"butler aggregate-graph did not say how many datasets it registered:\n{text[-3000:]}")
    return {
        "patches": patches,
        "where": where,
        "quanta": quanta[-1],
        "prepare_stages": stages,
        "prepare": sum(stages.values()),
        "prepare_wall": prepare_wall,
        "init": init_wall,
        "jobs_work": work_wall,
        "final": final_wall,
        "datasets": int(ingested[-1]),
        "graph_bytes": Path(graph).stat().st_size,
        "peak_rss_mib": {"prepare": prepare_rss, "jobs_work": work_rss, "final": final_rss},
    }


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x``; return ``(a, b)``."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return mean_y - b * mean_x, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="25,100,400,1000", help="patches per submission")
    parser.add_argument("--patches-per-side", type=int, default=10, help="a tract has N x N patches")
    parser.add_argument("--objects-per-patch", type=int, default=4)
    parser.add_argument("--inner-size", type=int, default=100, help="patch inner size, pixels")
    parser.add_argument("--registry", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--json", help="write the fitted costs here (for scale_model.py --serial)")
    add_free_page_reporting_option(parser)
    args = parser.parse_args()
    sizes = sorted({int(v) for v in args.sizes.split(",")})
    if len(sizes) < 2 or sizes[0] < 1:
        parser.error("--sizes: at least two different sizes, each of one patch or more")
    side = args.patches_per_side
    n_tracts = math.ceil(sizes[-1] / side**2)
    with (
        contextlib.ExitStack() as stack,
        free_page_reporting_paused(not args.keep_free_page_reporting) as state,
        tempfile.TemporaryDirectory(prefix="bench_serial_") as tmp,
    ):
        print(state, flush=True)
        work = Path(tmp)
        registry_db = registry_database(stack, args.registry, "bench_registry")
        start = time.perf_counter()
        repo, n_objects = build_repo(
            work,
            args.objects_per_patch,
            patches_per_side=side,
            inner_size=args.inner_size,
            border=max(2, args.inner_size // 20),
            registry_db=registry_db,
            n_tracts=n_tracts,
        )
        print(
            f"set-up: {n_tracts} tracts of {side}x{side} patches of {args.inner_size} px, "
            f"{n_objects} objects, registry {args.registry} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
        records = []
        for patches in sizes:
            record = measure_size(repo, patches, side**2, work)
            records.append(record)
            print({k: round(v, 2) if isinstance(v, float) else v for k, v in record.items()}, flush=True)
    # The model charges the whole ``bps`` process (its start-up included);
    # the stages alone are printed beside it.
    g0, g1 = fit_line([r["quanta"] for r in records], [r["prepare_wall"] for r in records])
    s0, s1 = fit_line([r["quanta"] for r in records], [r["prepare"] for r in records])
    f0, f1 = fit_line([r["datasets"] for r in records], [r["final"] for r in records])
    print()
    print(f"bps prepare, whole process: {g0:.2f} s + {1000 * g1:.2f} ms a quantum")
    print(f"bps prepare, its stages: {s0:.2f} s + {1000 * s1:.2f} ms a quantum")
    print(f"final job: {f0:.2f} s + {1000 * f1:.2f} ms a dataset")
    print()
    print(
        "| patches | quanta | bps prepare | its stages | line | datasets | final job | line "
        "| init job | jobs' work |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        print(
            f"| {r['patches']:,} | {r['quanta']:,} | {r['prepare_wall']:.1f} s | {r['prepare']:.1f} s "
            f"| {g0 + g1 * r['quanta']:.1f} s | {r['datasets']:,} | {r['final']:.1f} s "
            f"| {f0 + f1 * r['datasets']:.1f} s | {r['init']:.1f} s | {r['jobs_work']:.1f} s |"
        )
    print()
    print("| patches | graph file | peak RSS: bps prepare | the jobs' process | final job |")
    print("|---|---|---|---|---|")
    for r in records:
        rss = r["peak_rss_mib"]
        print(
            f"| {r['patches']:,} | {r['graph_bytes'] / 2**10:,.0f} KiB | {rss['prepare']:.0f} MiB "
            f"| {rss['jobs_work']:.0f} MiB | {rss['final']:.0f} MiB |"
        )
    if args.json:
        datasets_per_patch = records[-1]["datasets"] / records[-1]["patches"]
        costs = {
            "graph_fixed": g0,
            "graph_per_quantum": g1,
            "final_fixed": f0,
            "final_per_dataset": f1,
        }
        Path(args.json).write_text(
            json.dumps(
                {
                    "registry": args.registry,
                    "costs": costs,
                    "datasets_per_patch": datasets_per_patch,
                    "fused_shape": FUSED_SHAPE,
                    "runs": records,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
