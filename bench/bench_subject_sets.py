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

"""Time from approved batches to a Zooniverse subject set of 10,000
subjects, through the local Panoptes stand-in.

Set-up (not timed): ``--datasets`` `zooniverse_rgb` ZIPs of ``--images``
pictures in all from the pipeline's formatter (as in
``bench_export.py``), polled and approved by the export service.  Then,
timed, in one process:

1. ``publish``: every approved image to the public directory (served on
   127.0.0.1 by `~lsst.epo.zooniverse.export.serve.PublicServer`);
2. ``subject-set``: the subject set filled with panoptes-client against
   `~lsst.epo.zooniverse.demo.panoptes_standin.PanoptesStandIn`, by
   ``--method import`` (manifests published, ``subject_set_imports``,
   polled until done, the set listed to check it) or ``subjects`` (one
   create request per subject, as Zooniverse has no bulk create);
3. the same call again, which must send nothing (idempotence).

The stand-in answers requests at memory speed, but its import jobs take
``--row-seconds`` per manifest row (default 0.02 s, the real worker's order
of magnitude: about eight database statements per row, see
doc/panoptes_standin.md "Per-row cost of a real import") and save their
progress every 250 rows as the real ones do.  The stand-in runs on a
virtual clock moved by the publisher's waits, so the run reports two
figures: the wall time of this software (HTTP on the loopback included)
and the simulated server time of the imports (rows × per-row cost, plus
the poll granularity).

Usage::

    python bench/bench_subject_sets.py [--images 10000] [--datasets 10]
        [--method import|subjects|both] [--row-seconds 0.02] [--workdir DIR]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))


def run(method: str, images: int, datasets: int, workdir: str, row_seconds: float) -> dict[str, float]:
    """Build, approve, then time publish + subject set for one method."""
    from bench_export import make_bench_repo

    from lsst.epo.zooniverse.demo.panoptes_standin import PanoptesStandIn
    from lsst.epo.zooniverse.export.serve import PublicServer
    from lsst.epo.zooniverse.export.service import ExportService
    from lsst.epo.zooniverse.export.service_config import ServiceConfig
    from lsst.epo.zooniverse.zooniverse.subject_sets import SubjectSetPublisher, ZooniverseCredentials

    start = time.perf_counter()
    repo, sizes = make_bench_repo(os.path.join(workdir, "repo"), images, datasets, 101)
    public = os.path.join(workdir, "epo", "public")
    os.makedirs(public, exist_ok=True)
    times: dict[str, float] = {}
    with (
        PublicServer(public, host="127.0.0.1", port=0) as web,
        PanoptesStandIn(project_id=1, record_bodies=False, virtual_time=True) as zooniverse,
    ):
        zooniverse.imports_queue.row_seconds = row_seconds
        config = ServiceConfig.load(
            None,
            database=f"sqlite:///{workdir}/epo/state.sqlite3",
            staging=os.path.join(workdir, "epo", "staging"),
            public_root=public,
            public_url=web.url,
        )
        with ExportService(config) as service:
            service.register_project(
                "bench", zooniverse_project_id=1, owner="alice", repo=repo.root, collections="u/alice/zoo/*"
            )
            service.poll()
            for batch in service.review():
                service.approve(batch["batch"], operator="bench")
            print(
                f"[{method}] set-up: {datasets} ZIPs, {sum(sizes) / 2**20:.0f} MiB, polled and approved "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
            t0 = time.perf_counter()
            published = service.publish().published
            times["publish"] = time.perf_counter() - t0
            credentials = ZooniverseCredentials(
                endpoint=zooniverse.url,
                client_id=zooniverse.client_id,
                client_secret=zooniverse.client_secret,
            )
            publisher = SubjectSetPublisher(
                service, credentials, poll_interval=10.0, retry_delay=0.5, sleep=zooniverse.advance
            )
            t0, clock0 = time.perf_counter(), zooniverse.clock()
            summary = publisher.sync("bench", subject_set_name="bench", method=method)
            times[f"subject set ({method})"] = time.perf_counter() - t0
            times["simulated server time of the imports"] = zooniverse.clock() - clock0
            t0 = time.perf_counter()
            again = publisher.sync("bench", subject_set_name="bench", method=method)
            times["rerun (sends nothing)"] = time.perf_counter() - t0
        held = zooniverse.external_ids(summary.subject_set_id)
    assert published == images and summary.created == images and summary.failed == 0, summary
    assert again.created == 0 and again.already_present == images, again
    assert len(held) == len(set(held)) == images, "the stand-in's set must hold each subject once"
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument("--method", default="both", choices=["import", "subjects", "both"])
    parser.add_argument("--row-seconds", type=float, default=0.02, help="import job time per manifest row")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    methods = ["import", "subjects"] if args.method == "both" else [args.method]
    for method in methods:
        workdir = args.workdir or tempfile.mkdtemp(prefix="bench_subject_sets_")
        try:
            times = run(method, args.images, args.datasets, os.path.join(workdir, method), args.row_seconds)
        finally:
            if not args.workdir:
                shutil.rmtree(workdir, ignore_errors=True)
        n = args.images
        end_to_end = times["publish"] + times[f"subject set ({method})"]
        end_to_end += times["simulated server time of the imports"]
        print(f"\n| step ({n:,} subjects, method {method}) | seconds | subjects/s |")
        print("|---|---|---|")
        for name, seconds in times.items():
            rate = f"{n / seconds:,.0f}" if seconds > 0 else "-"
            print(f"| {name} | {seconds:.1f} | {rate} |")
        print(
            f"| **approved batches → subject set (with the server's time)** | **{end_to_end:.1f}** | "
            f"**{n / end_to_end:,.0f}** |\n"
        )


if __name__ == "__main__":
    main()
