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

"""Helpers for the export-service tests: a Butler repository with PIs'
RGB collections and cutouts, and the public-location invariant.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator

import numpy as np
import sqlalchemy as sa

from lsst.daf.butler import CollectionType, DatasetRef, DatasetType, FileDataset
from lsst.epo.zooniverse.butler.config import get_butler, make_butler_repo
from lsst.epo.zooniverse.butler.dataset_types import CUTOUT, register_dataset_types
from lsst.epo.zooniverse.butler.formatters import RgbCollectionFormatter
from lsst.epo.zooniverse.demo.repo import make_demo_skymap
from lsst.epo.zooniverse.export.state import DATASETS, IMAGE_FRAMES, IMAGE_REPLACEMENTS, IMAGES
from lsst.epo.zooniverse.formats.rgb_collection import RgbCollection

SKYMAP = "demo_rings"


def make_collection(
    n: int,
    *,
    seed: int,
    first_id: int = 0,
    size: int = 24,
    coverage: float = 1.0,
    edge_distance: float = 50.0,
) -> RgbCollection:
    """A small RGB collection with ids ``obj<first_id>...``."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8) for _ in range(n)]
    index = {
        "object_id": [f"obj{first_id + k}" for k in range(n)],
        "ra": [10.0 + k / 100 for k in range(n)],
        "dec": [-5.0 - k / 100 for k in range(n)],
        "bands": ["g,r,i"] * n,
        "coverage": [coverage] * n,
        "stretch": ["lupton(Q=8)"] * n,
        "edge_distance": [edge_distance] * n,
    }
    return RgbCollection(images, index)


class ExportRepo:
    """A Butler repository holding PIs' outputs."""

    def __init__(self, root: str) -> None:
        self.root = root
        make_butler_repo(root)
        butler = get_butler(root, writeable=True)
        skymap = make_demo_skymap()
        self.skymap = skymap.name
        skymap.register(butler)
        register_dataset_types(butler)
        butler.registry.registerDatasetType(CUTOUT.make(butler.dimensions))
        butler.registry.registerDatasetType(
            DatasetType("pi_private_table", (), "ArrowAstropy", universe=butler.dimensions)
        )
        self.butler = butler

    def put_rgb(
        self, run: str, patch: int, n: int, *, seed: int, tract: int = 0, first_id: int = 0, **kwargs
    ):
        """Put a `zooniverse_rgb` collection of ``n`` images (``kwargs``
        go to `make_collection`)."""
        self.butler.registry.registerCollection(run, CollectionType.RUN)
        return self.butler.put(
            make_collection(n, seed=seed, first_id=first_id, **kwargs),
            "zooniverse_rgb",
            skymap=self.skymap,
            tract=tract,
            patch=patch,
            run=run,
        )

    def ingest_raw_rgb(self, run: str, path: str, patch: int, tract: int = 0):
        """Ingest any file as a `zooniverse_rgb` dataset (hostile input: the
        formatter never reads it)."""
        self.butler.registry.registerCollection(run, CollectionType.RUN)
        dataset_type = self.butler.get_dataset_type("zooniverse_rgb")
        data_id = self.butler.registry.expandDataId(skymap=self.skymap, tract=tract, patch=patch)
        ref = DatasetRef(dataset_type, data_id, run=run)
        self.butler.ingest(
            FileDataset(path=path, refs=[ref], formatter=RgbCollectionFormatter), transfer="copy"
        )
        return ref

    def put_cutout(self, run: str, image, metadata=None):
        """Put one `zooniverse_cutout` PNG."""
        from lsst.epo.zooniverse.formats.cutout import make_cutout_image

        self.butler.registry.registerCollection(run, CollectionType.RUN)
        return self.butler.put(make_cutout_image(image, metadata), "zooniverse_cutout", run=run)


def zip_png_entries(data: bytes) -> dict[str, bytes]:
    """The PNG entries of a ZIP."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {n: archive.read(n) for n in archive.namelist() if n.endswith(".png")}


def public_files(root: str) -> dict[str, str]:
    """Every file under the public root: key -> sha256."""
    result = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as stream:
                result[os.path.relpath(path, root)] = hashlib.sha256(stream.read()).hexdigest()
    return result


def assert_public_invariant(service) -> dict[str, str]:
    """Nothing is under the public prefix that is not approved.

    Every file must be the public copy of an image (or of a band frame of
    an image) that an operator approved (states publishing or
    published), or of a superseded image whose replacement on Zooniverse
    is still pending (``image_replacements`` without ``completed_at``);
    published images and their frames must be there with the validated
    bytes.  Returns the public files.
    """
    root = service.public.root.ospath
    files = public_files(root)
    with service.engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                IMAGES.c.public_key, IMAGES.c.state, IMAGES.c.sha256, DATASETS.c.state.label("batch_state")
            ).join(DATASETS, DATASETS.c.id == IMAGES.c.dataset_id)
        ).all()
        frames = connection.execute(
            sa.select(IMAGE_FRAMES.c.public_key, IMAGES.c.state, IMAGE_FRAMES.c.sha256).join(
                IMAGES, IMAGES.c.id == IMAGE_FRAMES.c.image_id
            )
        ).all()
        # A picture replaced by an approved rerun stays public (with its
        # frames) until its Zooniverse subject is replaced.
        pending = {
            key
            for (key,) in connection.execute(
                sa.select(IMAGES.c.public_key).join(
                    IMAGE_REPLACEMENTS,
                    (IMAGE_REPLACEMENTS.c.old_image_id == IMAGES.c.id)
                    & IMAGE_REPLACEMENTS.c.completed_at.is_(None),
                )
            )
        }
        pending_frames = {
            key
            for (key,) in connection.execute(
                sa.select(IMAGE_FRAMES.c.public_key).join(
                    IMAGE_REPLACEMENTS,
                    (IMAGE_REPLACEMENTS.c.old_image_id == IMAGE_FRAMES.c.image_id)
                    & IMAGE_REPLACEMENTS.c.completed_at.is_(None),
                )
            )
        }
    public_states = ("publishing", "published")
    allowed = {
        key: (state, sha)
        for key, state, sha, _ in rows
        if state in public_states or (state == "superseded" and key in pending)
    }
    # A band frame may be public only with its approved image.
    allowed.update(
        {
            key: (state, sha)
            for key, state, sha in frames
            if state in public_states or (state == "superseded" and key in pending_frames)
        }
    )
    for key, digest in files.items():
        assert not os.path.basename(key).startswith("."), f"leftover partial file {key} under the public root"
        assert key in allowed, f"{key} is public but not approved"
        assert digest == allowed[key][1], f"{key} differs from the validated bytes"
    for key, (state, _) in allowed.items():
        if state == "published":
            assert key in files, f"published image or frame {key} is missing"
    return files


@contextlib.contextmanager
def serving(config: str, port: int, ready_url: str, env=None) -> Iterator[tuple[subprocess.Popen, bytes]]:
    """Run ``zooniverse-epo --config CONFIG serve --port PORT`` in a
    subprocess until ``ready_url`` answers (60 s at most); yield the
    process and that first answer; stop it (SIGINT) afterwards.  The
    process's stderr is left for the caller to read (``communicate``).
    """
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lsst.epo.zooniverse.cli.epo",
            "--config",
            config,
            "serve",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(ready_url, timeout=5) as response:
                    first = response.read()
                break
            except urllib.error.HTTPError as err:
                first = err.read()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield server, first
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
