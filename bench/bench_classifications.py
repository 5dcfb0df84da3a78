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

"""Time and peak memory of aggregating a large classification export.

Set-up (not timed): a FAKE export in Zooniverse's CSV format
(`lsst.epo.zooniverse.demo.fake_classifications`) of ``--rows``
classifications (default 1 million) over ``--subjects`` subjects, three
tasks each (a question, a multiple-answer question, a drawing task), plus
a catalog of one row per subject.

Timed, in a fresh child process so that its peak resident memory is the
aggregation's alone: `aggregate_classifications` streaming the file,
counting, and joining the catalog (wall and CPU time: on a shared machine
the CPU time is the steadier figure).  The child also reports the peak of a
process that only imports the same modules, to separate the fixed cost of
the imports from what the export adds.

Usage::

    python bench/bench_classifications.py [--rows 1000000] [--subjects 10000]
        [--workdir DIR]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def peak_mib() -> float:
    """Peak resident memory of this process (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(path: str, subjects: int, imports_only: bool) -> None:
    """Aggregate (or only import), print a JSON line of figures."""
    from astropy.table import Table

    from lsst.epo.zooniverse.zooniverse.classifications import aggregate_classifications

    if imports_only:
        print(json.dumps({"peak_mib": peak_mib()}))
        return
    catalog = Table({"object_id": [str(1_000_000 + k) for k in range(subjects)], "mag": [20.0] * subjects})
    start, cpu = time.perf_counter(), time.process_time()
    table, summary = aggregate_classifications(path, project="bench", catalog=catalog)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "peak_mib": peak_mib(),
                "classifications": summary.n_classifications,
                "problems": len(summary.problems),
                "subjects": summary.n_subjects,
                "matched": summary.n_matched,
                "table_rows": len(table),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--imports-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.subjects, args.imports_only)
        return
    from lsst.epo.zooniverse.demo.fake_classifications import write_fake_classification_export

    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_classifications_")
    path = os.path.join(workdir, "classifications.csv")
    subjects = {
        str(80_000_000 + k): {"#object_id": str(1_000_000 + k), "bands": "g,r,i"}
        for k in range(args.subjects)
    }
    start = time.perf_counter()
    write_fake_classification_export(path, subjects, n_rows=args.rows, retire_after=40)
    made = time.perf_counter() - start
    size = os.path.getsize(path) / 2**20
    print(f"export: {args.rows} rows, {args.subjects} subjects, {size:.0f} MiB, generated in {made:.1f} s")
    runs = {}
    for label, extra in (("imports only", ["--imports-only"]), ("aggregate", [])):
        out = subprocess.run(
            [sys.executable, __file__, "--child", path, "--subjects", str(args.subjects), *extra],
            check=True,
            capture_output=True,
            text=True,
        )
        runs[label] = json.loads(out.stdout.strip().splitlines()[-1])
    result = runs["aggregate"]
    rate = result["classifications"] / result["seconds"]
    print(
        f"aggregate: {result['seconds']:.1f} s wall, {result['cpu_seconds']:.1f} s CPU "
        f"({rate:,.0f} classifications/s, {size / result['seconds']:.1f} MiB/s); "
        f"peak RSS {result['peak_mib']:.0f} MiB "
        f"(imports alone {runs['imports only']['peak_mib']:.0f} MiB)"
    )
    print(
        f"counted {result['classifications']} classifications, {result['problems']} problems, "
        f"{result['subjects']} subjects ({result['matched']} matched), {result['table_rows']} table rows"
    )
    if not args.workdir:
        os.unlink(path)
        os.rmdir(workdir)


if __name__ == "__main__":
    main()
