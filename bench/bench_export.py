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

"""Time of the EPO export service on 10,000 images.

A Butler repository gets ``--datasets`` `zooniverse_rgb` datasets of
``--images`` / ``--datasets`` pictures each, written by the pipeline's
formatter (101x101 RGB PNGs of synthetic galaxies and stars with noise,
like the pipeline's output); then, on the local defaults (SQLite state
file, local staging and public directories), in one process:

1. ``poll``: discover, retrieve (``Butler.retrieveArtifacts``), validate
   every entry (ZIP rules, full PNG decode, index) into quarantine;
2. ``approve`` every batch;
3. ``publish`` every image (atomic writes, state and audit per image).

The target (issue 4) is poll + validate + publish of 10,000 images in
under 60 s.  ``--database URL`` runs the same on another state database
(PostgreSQL).

Usage::

    python bench/bench_export.py [--images 10000] [--datasets 10]
        [--metadata-policy full|anonymised] [--database URL | --postgres]
        [--workdir DIR]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def synthetic_pictures(n: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - size / 2
    pictures = []
    for _ in range(n):
        r = np.hypot(x * rng.uniform(0.5, 1.5), y)
        profile = np.exp(-r / rng.uniform(3, 12))
        colour = rng.uniform(0.4, 1.0, 3)
        image = profile[..., None] * colour * 200 + rng.normal(20, 6, (size, size, 3))
        pictures.append(np.clip(image, 0, 255).astype(np.uint8))
    return pictures


def make_bench_repo(root: str, images: int, datasets: int, size: int) -> tuple[object, list[int]]:
    """Make a Butler repository with ``datasets`` `zooniverse_rgb` ZIPs of
    ``images / datasets`` pictures each, written by the pipeline's
    formatter in runs ``u/alice/zoo/run<k>``.

    Returns the `ExportRepo` and the ZIPs' sizes in bytes.
    """
    from export_test_utils import ExportRepo

    from lsst.daf.butler import CollectionType
    from lsst.epo.zooniverse.formats.rgb_collection import RgbCollection

    repo = ExportRepo(root)
    per = images // datasets
    n_patches = 6  # the demo sky map's tract 0
    for k in range(datasets):
        pictures = synthetic_pictures(per, size, seed=k)
        index = {
            "object_id": [f"obj{k * per + j}" for j in range(per)],
            "ra": np.linspace(1, 2, per),
            "dec": np.linspace(-1, 0, per),
            "bands": ["g,r,i"] * per,
            "coverage": [1.0] * per,
            "stretch": ["lupton(Q=8)"] * per,
        }
        run = f"u/alice/zoo/run{k // n_patches}"
        repo.butler.registry.registerCollection(run, CollectionType.RUN)
        repo.butler.put(
            RgbCollection(pictures, index),
            "zooniverse_rgb",
            skymap=repo.skymap,
            tract=0,
            patch=k % n_patches,
            run=run,
        )
    sizes = [
        os.path.getsize(repo.butler.getURI(ref).ospath)
        for ref in repo.butler.query_datasets(
            "zooniverse_rgb", collections="u/alice/zoo/*", find_first=False, limit=None
        )
    ]
    return repo, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument("--size", type=int, default=101)
    parser.add_argument("--metadata-policy", default="full", choices=["full", "anonymised"])
    parser.add_argument("--database", default=None)
    parser.add_argument(
        "--postgres", action="store_true", help="start a throw-away PostgreSQL server for the state"
    )
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    from lsst.epo.zooniverse.export.service import ExportService
    from lsst.epo.zooniverse.export.service_config import ServiceConfig

    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_export_")
    try:
        start = time.perf_counter()
        per = args.images // args.datasets
        repo, sizes = make_bench_repo(os.path.join(workdir, "repo"), args.images, args.datasets, args.size)
        print(
            f"set-up: {args.datasets} ZIPs of {per} {args.size}x{args.size} PNGs, "
            f"{sum(sizes) / 2**20:.0f} MiB ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

        database = args.database
        if args.postgres:
            from postgres_server import ThrowawayPostgres

            server = ThrowawayPostgres()
            server.create_database("bench")
            database = server.url("bench")
        config = ServiceConfig.load(
            None,
            database=database or f"sqlite:///{workdir}/epo/state.sqlite3",
            staging=os.path.join(workdir, "epo", "staging"),
            public_root=os.path.join(workdir, "epo", "public"),
            public_url="http://127.0.0.1:8080/",
        )
        times = {}
        with ExportService(config) as service:
            service.register_project(
                "bench",
                zooniverse_project_id=1,
                owner="alice",
                repo=repo.root,
                collections="u/alice/zoo/*",
                metadata_policy=args.metadata_policy,
            )
            t0 = time.perf_counter()
            poll = service.poll()
            times["poll (discover + retrieve + validate)"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            for batch in service.review():
                service.approve(batch["batch"], operator="bench")
            times["approve"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            published = service.publish()
            times["publish"] = time.perf_counter() - t0
        n = published.published
        assert poll.images_quarantined == n == per * args.datasets, (poll, n)
        total = sum(times.values())
        database = config.database_url.get_backend_name()
        print(f"\n| step ({n:,} images, {args.metadata_policy} metadata, {database}) | seconds | images/s |")
        print("|---|---|---|")
        for name, seconds in times.items():
            print(f"| {name} | {seconds:.1f} | {n / seconds:,.0f} |")
        print(f"| **total** | **{total:.1f}** | **{n / total:,.0f}** |")
        print(f"\ntarget < 60 s: {'met' if total < 60 else 'NOT met'}")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
