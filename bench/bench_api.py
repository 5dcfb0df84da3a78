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

"""Latency of EPO's web application under 500 concurrent API requests.

A Butler repository with Alice's and Bob's pictures (tests/web_test_utils),
a state database (SQLite by default, ``--database URL`` for PostgreSQL)
polled into quarantine with digests, and the application in one uvicorn
process (``zooniverse-epo-web serve-api``, bearer tokens).  Then
``--requests`` requests, at most ``--concurrency`` at a time (httpx's
async client), spread over the PI API (Alice's and Bob's projects, batches,
images, notifications), the operators' batch listing and the health
check.  Any answer other than 2xx, or a transport error, is an error; the
script exits 1 if there is any.

Usage::

    python bench/bench_api.py [--requests 500] [--concurrency 50]
        [--database URL | --postgres] [--synthetic-images N] [--workdir DIR]
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from web_test_utils import WebSite, Worker, free_port, make_repo, write_config


def setup(workdir: Path, database: str | None, synthetic: int = 0) -> tuple[WebSite, Worker, dict[str, str]]:
    repo = make_repo(workdir / "repo")
    port = free_port()
    config = write_config(workdir / "epo", database=database, port=port)
    worker = Worker(config)
    tokens = {"alice": worker.token("alice", "pi"), "bob": worker.token("bob", "pi")}
    tokens["eve"] = worker.token("eve", "operator")
    # The rate limit is the application's default (600 a minute per user)
    # times 100: the bench measures latency, not the limiter.
    site = WebSite(config, str(workdir / "server.log"), port=port, rate_limit=60000, log_level="WARNING")
    for user, name in (("alice", "galaxies"), ("bob", "bobs")):
        body = {"name": name, "zooniverse_project_id": 1, "repo": repo.root, "collections": f"u/{user}/zoo/*"}
        with site.client(tokens[user]) as client:
            client.post("/v1/projects", json=body).raise_for_status()
    worker.cycle()
    if synthetic:
        add_synthetic(worker, synthetic)
    return site, worker, tokens


def add_synthetic(worker: Worker, images: int, per_batch: int = 1000) -> None:
    """Add ``images`` published pictures to Alice's project as rows of the
    state tables (no files), and one waiting batch whose objects are all
    among them: the operators' listing must find them already public.
    """
    import uuid

    import sqlalchemy as sa

    from lsst.epo.zooniverse.export.state import DATASETS, IMAGES, PROJECTS
    from lsst.epo.zooniverse.timestamps import utc_now_iso

    now = utc_now_iso()
    with worker.service.store.writing() as connection:
        project_id = connection.execute(
            sa.select(PROJECTS.c.id).where(PROJECTS.c.name == "galaxies")
        ).scalar()
        for first in range(0, images + per_batch, per_batch):
            waiting = first >= images
            dataset_id = connection.execute(
                DATASETS.insert().values(
                    project_id=project_id,
                    dataset_uuid=str(uuid.uuid4()),
                    dataset_type="zooniverse_rgb",
                    run="u/alice/zoo/synthetic",
                    data_id=json.dumps({"patch": first // per_batch}),
                    batch=f"synthetic-{first // per_batch}",
                    state="quarantined" if waiting else "published",
                    discovered_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
            objects = range(per_batch) if waiting else range(first, min(first + per_batch, images))
            connection.execute(
                IMAGES.insert(),
                [
                    {
                        "dataset_id": dataset_id,
                        "entry": f"synthetic{i}.png",
                        "object_id": f"synthetic{i}",
                        "state": "quarantined" if waiting else "published",
                        "sha256": "0" * 64,
                        "size": 20000,
                        "public_url": None if waiting else f"http://127.0.0.1/galaxies/synthetic{i}.png",
                        "published_at": None if waiting else now,
                        "updated_at": now,
                    }
                    for i in objects
                ],
            )


def plan(n: int, tokens: dict[str, str]) -> list[tuple[str, str]]:
    mix = [
        ("alice", "/v1/projects"),
        ("alice", "/v1/projects/galaxies"),
        ("alice", "/v1/projects/galaxies/batches"),
        ("alice", "/v1/projects/galaxies/images"),
        ("alice", "/v1/notifications"),
        ("bob", "/v1/projects/bobs"),
        ("bob", "/v1/projects/bobs/images"),
        ("eve", "/v1/operator/batches"),
        (None, "/healthz"),
    ]
    return [mix[i % len(mix)] for i in range(n)]


async def run(site: WebSite, tokens: dict[str, str], requests: int, concurrency: int) -> tuple[list, list]:
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=site.api, limits=limits, timeout=120) as client:

        async def one(user: str | None, path: str) -> None:
            headers = {"Authorization": f"Bearer {tokens[user]}"} if user else {}
            async with semaphore:
                start = time.perf_counter()
                try:
                    response = await client.get(path, headers=headers)
                except httpx.HTTPError as err:
                    errors.append(f"{path}: {type(err).__name__}")
                    return
                latencies.append(time.perf_counter() - start)
                if not 200 <= response.status_code < 300:
                    errors.append(f"{path}: {response.status_code}")

        await asyncio.gather(*(one(user, path) for user, path in plan(requests, tokens)))
    return latencies, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--database", default=None, help="State database URL (SQLite in the workdir if not given)."
    )
    parser.add_argument(
        "--postgres", action="store_true", help="Start a throw-away PostgreSQL server for the state database."
    )
    parser.add_argument(
        "--synthetic-images",
        type=int,
        default=0,
        help="Add this many published pictures (state rows only) and a waiting batch of 1000 of them.",
    )
    parser.add_argument("--workdir", default=None, help="Kept if given; a temporary directory otherwise.")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_api_"))
    workdir.mkdir(parents=True, exist_ok=True)
    site = worker = server = None
    try:
        database = args.database
        if args.postgres:
            from postgres_server import ThrowawayPostgres

            server = ThrowawayPostgres()
            server.create_database("bench_api")
            database = server.url("bench_api")
        site, worker, tokens = setup(workdir, database, args.synthetic_images)
        # Warm-up: one request of each kind (imports, first connections).
        asyncio.run(run(site, tokens, 9, 9))
        start = time.perf_counter()
        latencies, errors = asyncio.run(run(site, tokens, args.requests, args.concurrency))
        wall = time.perf_counter() - start
    finally:
        if site is not None:
            site.close()
        if worker is not None:
            worker.close()
        if server is not None:
            server.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    latencies.sort()
    ms = [1000 * x for x in latencies]

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))]

    postgres = args.postgres or (args.database or "").startswith("postgresql")
    database = "PostgreSQL" if postgres else "SQLite"
    extra = f", {args.synthetic_images} more published pictures" if args.synthetic_images else ""
    print(f"{args.requests} requests, {args.concurrency} at a time, one uvicorn process, {database}{extra}")
    print(f"errors: {len(errors)}")
    print(f"wall: {wall:.2f} s ({args.requests / wall:.0f} requests/s)")
    print(
        f"latency ms: p50 {pct(50):.1f}  p90 {pct(90):.1f}  p99 {pct(99):.1f}  "
        f"max {ms[-1]:.1f}  mean {statistics.fmean(ms):.1f}"
    )
    for error in errors[:10]:
        print(f"  {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
