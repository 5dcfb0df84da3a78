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

"""Write the legacy fixture of tests/test_compatibility.py.

This script was run ONCE, with the package as it was at commit 2a8fc6c
(before the subpackage layout), to write ``repo/`` (a Butler repository)
and ``epo_state.sqlite3`` (an EPO state database) next to it.  It uses the
module paths of that time on purpose: the files it wrote record them
(formatter and storage-class paths in the datastore records and the
repository configuration, task config classes in saved config datasets),
and the compatibility test reads them with the current code.  It is kept
to show how the fixture was made; it is not expected to run against later
layouts.
"""

import os
import sys

import numpy as np

from lsst.daf.butler import CollectionType, DatasetType
from lsst.epo.zooniverse.butler_config import get_butler, make_butler_repo
from lsst.epo.zooniverse.compose_rgb import ComposeRgbConfig
from lsst.epo.zooniverse.cutout import make_cutout_image
from lsst.epo.zooniverse.dataset_types import CUTOUT, register_dataset_types
from lsst.epo.zooniverse.demo.repo import make_demo_skymap
from lsst.epo.zooniverse.export.service import ExportService
from lsst.epo.zooniverse.export.service_config import ServiceConfig
from lsst.epo.zooniverse.extract_stamps import ExtractStampsConfig
from lsst.epo.zooniverse.rgb_collection import RgbCollection
from lsst.epo.zooniverse.shard_catalog import ShardCatalogConfig
from lsst.epo.zooniverse.stamps import Stamp, Stamps

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = "u/alice/zoo/run1"


def rgb(n, seed, first_id):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8) for _ in range(n)]
    index = {
        "object_id": [f"obj{first_id + k}" for k in range(n)],
        "ra": [10.0 + k / 100 for k in range(n)],
        "dec": [-5.0 - k / 100 for k in range(n)],
        "bands": ["g,r,i"] * n,
        "coverage": [1.0] * n,
        "stretch": ["lupton(Q=8)"] * n,
        "edge_distance": [50.0] * n,
    }
    return RgbCollection(images, index)


def main(work):
    repo = os.path.join(work, "repo")
    make_butler_repo(repo)
    butler = get_butler(repo, writeable=True)
    skymap = make_demo_skymap()
    skymap.register(butler)
    register_dataset_types(butler)
    butler.registry.registerDatasetType(CUTOUT.make(butler.dimensions))
    for label, config in (
        ("shardCatalog", ShardCatalogConfig()),
        ("extractStamps", ExtractStampsConfig()),
        ("composeRgb", ComposeRgbConfig()),
    ):
        butler.registry.registerDatasetType(
            DatasetType(f"{label}_config", (), "Config", universe=butler.dimensions)
        )
    for name, storage_class in (
        ("zooniverse_skymap_copy", "ZooniverseSkyMap"),
        ("stamps_g", "ZooniverseStamps"),
    ):
        butler.registry.registerDatasetType(DatasetType(name, (), storage_class, universe=butler.dimensions))
    butler.registry.registerCollection(RUN, CollectionType.RUN)
    butler.put(ShardCatalogConfig(), "shardCatalog_config", run=RUN)
    butler.put(ExtractStampsConfig(), "extractStamps_config", run=RUN)
    butler.put(ComposeRgbConfig(), "composeRgb_config", run=RUN)
    butler.put(skymap, "zooniverse_skymap_copy", run=RUN)
    rng = np.random.default_rng(7)
    stamps = Stamps(
        [
            Stamp(
                rng.normal(size=(5, 6)).astype(np.float32),
                rng.integers(0, 16, size=(5, 6)).astype(np.int32),
                rng.uniform(1, 2, size=(5, 6)).astype(np.float32),
                x0=10,
                y0=20,
                ra=10.0,
                dec=-5.0,
                object_id="obj0",
            )
        ],
        metadata={"BAND": "g"},
    )
    data_id = {"skymap": skymap.name, "tract": 0, "patch": 0}
    butler.put(stamps, "stamps_g", run=RUN)
    butler.put(rgb(3, 1, 0), "zooniverse_rgb", run=RUN, **data_id)
    butler.registry.registerCollection("u/alice/zoo/run2", CollectionType.RUN)
    butler.put(rgb(2, 2, 10), "zooniverse_rgb", run="u/alice/zoo/run2", **{**data_id, "patch": 1})
    cutout = make_cutout_image(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8), {"object_id": "c1"})
    butler.put(cutout, "zooniverse_cutout", run=RUN)

    config = ServiceConfig.load(
        None,
        database="sqlite:///" + os.path.join(work, "epo_state.sqlite3"),
        staging=os.path.join(work, "staging"),
        public_root=os.path.join(work, "public"),
        public_url="http://127.0.0.1:1/",
    )
    with ExportService(config) as service:
        service.register_project(
            "galaxies",
            zooniverse_project_id=4242,
            owner="alice",
            repo=repo,
            collections="u/alice/zoo/*",
            dataset_types=["zooniverse_rgb", "zooniverse_cutout"],
            contact="alice@example.org",
        )
        service.poll()
        batches = sorted({row["batch"] for row in service.review()})
        service.approve(batches[0], operator="eve", reason="fixture")
        service.reject(batches[1], operator="eve", reason="fixture: rejected")
        service.publish()
        print(service.status())


if __name__ == "__main__":
    work = sys.argv[1] if len(sys.argv) > 1 else HERE
    main(work)
