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


"""Throughput and peak memory of `shard_target_catalog`.

Synthetic catalogs (``object_id``, ``ra``, ``dec``, ``mag``; 0.1% NaN
coordinates, 0.05% duplicated ids) are written as CSV and Parquet into a
temporary directory, then each is sharded into a fresh repository by a child
process whose peak RSS is read from ``os.wait4``. Footprints:

``wfd``
    RA 0-360, Dec -65..+5 deg, uniform on the sphere: about 20,500 deg^2,
    the Rubin wide-fast-deep area; about 65,600 htm7 shards (a level-7
    trixel covers 0.31 deg^2 on average).
``deep``
    RA 50-70, Dec -45..-25 deg: about 360 deg^2, a PI-sized region, about
    1,200 shards.
``allsky``
    The whole sky: all 131,072 htm7 trixels.

A second measurement compares the two ways of writing shards: one
``butler.put`` per shard against this package's path (Parquet files in
the ArrowAstropy layout + one ``butler.ingest(transfer="move")``).

Usage::

    python bench/bench_sharding.py [--sizes 1000000,10000000]
        [--formats csv,parquet] [--footprints wfd] [--allsky]
        [--strategies] [--workdir DIR]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

FOOTPRINTS = {
    "wfd": (0.0, 360.0, -65.0, 5.0),
    "deep": (50.0, 70.0, -45.0, -25.0),
    "allsky": (0.0, 360.0, -90.0, 90.0),
}


def make_catalog(n: int, footprint: str, seed: int = 1) -> pa.Table:
    ra_min, ra_max, dec_min, dec_max = FOOTPRINTS[footprint]
    rng = np.random.default_rng(seed)
    ra = rng.uniform(ra_min, ra_max, n)
    sin_dec = rng.uniform(np.sin(np.radians(dec_min)), np.sin(np.radians(dec_max)), n)
    dec = np.degrees(np.arcsin(sin_dec))
    ra[rng.choice(n, n // 1000, replace=False)] = np.nan
    ids = np.arange(n, dtype=np.int64) + 10_000_000_000
    duplicated = rng.choice(n, n // 2000, replace=False)
    ids[duplicated] = ids[(duplicated + 1) % n]
    object_id = pa.array(ids).cast(pa.string())
    mag = rng.uniform(16.0, 25.0, n).round(3)
    return pa.table({"object_id": object_id, "ra": ra, "dec": dec, "mag": mag})


CHILD = textwrap.dedent(
    """
    import json, sys, time
    start = time.perf_counter()
    from lsst.epo.zooniverse.pipeline.sharding import shard_target_catalog
    repo, catalog, mode = sys.argv[1:4]
    if mode == "baseline":
        from lsst.epo.zooniverse import get_butler
        get_butler(repo, writeable=True)
        print(json.dumps({"seconds": time.perf_counter() - start}))
        sys.exit(0)
    steps = []
    def progress(message):
        steps.append((time.perf_counter(), message))
    summary = shard_target_catalog(
        repo, catalog, run="bench/targets", extra_columns=["mag"], progress=progress
    )
    # Phases: read+validate, sort, write files, ingest (from the messages).
    times = {}
    previous = steps[0][0]
    for when, message in steps[1:]:
        for key, prefix in (("validate", "Validated"), ("sort", "Sorted"), ("write", "Wrote"),
                            ("ingest", "Ingested")):
            if message.startswith(prefix):
                times[key] = when - previous
        previous = when
    print(json.dumps({
        "n_rows": summary.n_rows, "n_accepted": summary.n_accepted, "n_rejected": summary.n_rejected,
        "n_shards": summary.n_shards, "seconds": summary.seconds,
        "rejected_by_reason": summary.rejected_by_reason, "phases": times,
    }))
    """
)


def run_child(repo: str, catalog: str, mode: str = "shard") -> tuple[dict, float, float]:
    """Run the sharding in a fresh process; return its JSON output, wall
    time and peak RSS in MiB.
    """
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, repo, catalog, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    out, err = process.stdout.read(), process.stderr.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"child failed ({process.returncode}):\n{err.decode()[-3000:]}")
    return json.loads(out.decode().strip().splitlines()[-1]), wall, usage.ru_maxrss / 1024.0


def make_repo(root: str) -> str:
    from lsst.epo.zooniverse.butler.config import make_butler_repo

    make_butler_repo(root)
    return root


def measure_strategies(
    workdir: str, n_shards: int = 1000, rows_per_shard: int = 40
) -> list[tuple[str, float]]:
    """Datasets written per second: one put per shard against the
    file-and-ingest path of shard_target_catalog, same shards.
    """
    from lsst.epo.zooniverse import get_butler
    from lsst.epo.zooniverse.butler.dataset_types import TARGETS, register_dataset_types
    from lsst.epo.zooniverse.pipeline.sharding import htm_indices, shard_target_catalog

    rng = np.random.default_rng(3)
    # Points in n_shards distinct trixels.
    ra = rng.uniform(0.0, 360.0, 20 * n_shards)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, 20 * n_shards)))
    _, first = np.unique(htm_indices(ra, dec), return_index=True)
    centres = first[:n_shards]
    ra = np.repeat(ra[centres], rows_per_shard)
    dec = np.repeat(dec[centres], rows_per_shard)
    n = len(ra)
    table = pa.table({"object_id": pa.array(np.arange(n)).cast(pa.string()), "ra": ra, "dec": dec})
    catalog = os.path.join(workdir, "strategies.parquet")
    pq.write_table(table, catalog)
    results = []

    repo = make_repo(os.path.join(workdir, "repo_ingest"))
    start = time.perf_counter()
    summary = shard_target_catalog(repo, catalog, run="ingest")
    results.append(
        (
            "Parquet files + one butler.ingest(transfer='move') (this package)",
            summary.n_shards / (time.perf_counter() - start),
        )
    )
    butler = get_butler(repo, writeable=True)
    shards = {
        ref.dataId["htm7"]: butler.get(ref)
        for ref in butler.query_datasets(TARGETS.name, collections="ingest", explain=False, limit=None)
    }

    repo = make_repo(os.path.join(workdir, "repo_put"))
    butler = get_butler(repo, writeable=True)
    register_dataset_types(butler, [TARGETS])
    butler.collections.register("put")
    start = time.perf_counter()
    for htm7, shard in shards.items():
        butler.put(shard, TARGETS.name, htm7=htm7, run="put")
    results.append(("one butler.put per shard", len(shards) / (time.perf_counter() - start)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--footprints", default="wfd")
    parser.add_argument("--allsky", action="store_true", help="Also 10M rows over the whole sky (Parquet).")
    parser.add_argument("--strategies", action="store_true", help="Also compare put against ingest.")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    formats = [f for f in args.formats.split(",") if f]
    cases = [
        (n, footprint, fmt) for footprint in args.footprints.split(",") for n in sizes for fmt in formats
    ]
    if args.allsky:
        cases.append((max(sizes), "allsky", "parquet"))
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench_sharding_") as workdir:
        baseline_repo = make_repo(os.path.join(workdir, "repo_baseline"))
        _, _, baseline_rss = run_child(baseline_repo, "-", "baseline")
        print(f"child baseline (imports + Butler): {baseline_rss:.0f} MiB", flush=True)
        rows = []
        catalogs: dict[tuple[int, str], pa.Table] = {}
        for n, footprint, fmt in cases:
            key = (n, footprint)
            if key not in catalogs:
                catalogs.clear()
                t0 = time.perf_counter()
                catalogs[key] = make_catalog(n, footprint)
                print(f"generated {n} rows ({footprint}) in {time.perf_counter() - t0:.1f} s", flush=True)
            path = os.path.join(workdir, f"cat_{n}_{footprint}.{fmt}")
            if not os.path.exists(path):
                if fmt == "csv":
                    pcsv.write_csv(catalogs[key], path)
                else:
                    pq.write_table(catalogs[key], path)
            size_mb = os.path.getsize(path) / 2**20
            repo = make_repo(os.path.join(workdir, f"repo_{n}_{footprint}_{fmt}"))
            result, wall, rss = run_child(repo, path)
            rows.append((n, footprint, fmt, size_mb, result, wall, rss))
            print(
                f"{n:>10} {footprint:>7} {fmt:>8}: {result['seconds']:.1f} s, "
                f"{result['n_rows'] / result['seconds']:,.0f} rows/s, {result['n_shards']} shards, "
                f"peak RSS {rss:.0f} MiB",
                flush=True,
            )
        strategies = measure_strategies(workdir) if args.strategies else []

    print()
    print(
        "| rows | footprint | format | file MB | shards | rejected | seconds | rows/s "
        "| read+validate s | write files s | ingest s | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, footprint, fmt, size_mb, result, wall, rss in rows:
        phases = result.get("phases", {})
        print(
            f"| {n:,} | {footprint} | {fmt} | {size_mb:.0f} | {result['n_shards']:,} "
            f"| {result['n_rejected']:,} | {result['seconds']:.1f} "
            f"| {result['n_rows'] / result['seconds']:,.0f} | {phases.get('validate', float('nan')):.1f} "
            f"| {phases.get('write', float('nan')):.1f} | {phases.get('ingest', float('nan')):.1f} "
            f"| {rss:.0f} |"
        )
    print(f"\nChild baseline (imports + Butler, no catalog): {baseline_rss:.0f} MiB.")
    if strategies:
        print("\n| write strategy (1000 shards of 40 rows) | datasets/s |")
        print("|---|---|")
        for name, rate in strategies:
            print(f"| {name} | {rate:.0f} |")


if __name__ == "__main__":
    main()
