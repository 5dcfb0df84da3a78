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

"""Names that repositories, configs and databases have recorded keep
working after the package moved into subpackages (issue 13).

``tests/data/legacy_v1`` was written by the package as it was before the
move (``make_legacy_fixture.py`` there, run at commit 2a8fc6c): a Butler
repository whose configuration and datastore records name the old
formatter and storage-class paths and whose saved task configs import the
old task modules, and an EPO state database.  Removing one of the
compatibility aliases makes these tests fail.
"""

import os
import shutil

import numpy as np
import pytest

from lsst.daf.butler import Butler
from lsst.utils import doImportType
from lsst.utils.introspection import get_full_type_name

HERE = os.path.dirname(os.path.abspath(__file__))
LEGACY = os.path.join(HERE, "data", "legacy_v1")

RECORDED_NAMES = [
    # Butler configs and datastore records (storage classes, formatters).
    "lsst.epo.zooniverse.formatters.CutoutFormatter",
    "lsst.epo.zooniverse.formatters.StampsFormatter",
    "lsst.epo.zooniverse.formatters.RgbCollectionFormatter",
    "lsst.epo.zooniverse.formatters.SkyMapGeometryFormatter",
    "lsst.epo.zooniverse.formatters.LegacyCoaddFormatter",
    "lsst.epo.zooniverse.stamps.Stamps",
    "lsst.epo.zooniverse.rgb_collection.RgbCollection",
    "lsst.epo.zooniverse.skymap.SkyMapGeometry",
    "lsst.epo.zooniverse.cutout.cutout_image_from_array",
    # Pipeline YAML and saved config datasets.
    "lsst.epo.zooniverse.shard_catalog.ShardCatalogTask",
    "lsst.epo.zooniverse.shard_catalog.ShardCatalogConfig",
    "lsst.epo.zooniverse.extract_stamps.ExtractStampsTask",
    "lsst.epo.zooniverse.extract_stamps.ExtractStampsConfig",
    "lsst.epo.zooniverse.compose_rgb.ComposeRgbTask",
    "lsst.epo.zooniverse.compose_rgb.ComposeRgbConfig",
    "lsst.epo.zooniverse.compose_rgb.ChannelConfig",
    "lsst.epo.zooniverse.rgb_stretch.StretchConfig",
    # BPS submit files.
    "lsst.epo.zooniverse.bps_clustering.balanced_dimension_clustering",
    "lsst.epo.zooniverse.bps_site.QuickStartLocal",
    # The public API shown in the README and the tutorial.
    "lsst.epo.zooniverse.butler_config.CONFIG_DIR",
    "lsst.epo.zooniverse.butler_config.enable_butler_config",
    "lsst.epo.zooniverse.target_sharding.shard_target_catalog",
    "lsst.epo.zooniverse.accounting.account_targets",
    "lsst.epo.zooniverse.pi_tools.EpoProject",
    "lsst.epo.zooniverse.contact_sheet.contact_sheet_from_collections",
    "lsst.epo.zooniverse.png.strip_png_text_chunks",
    "lsst.epo.zooniverse.export.subject_sets.SubjectSetPublisher",
]


@pytest.mark.parametrize("name", RECORDED_NAMES)
def test_recorded_name_imports(name):
    module_name, _, attribute = name.rpartition(".")
    module = __import__(module_name, fromlist=[attribute])
    assert hasattr(module, attribute), name
    value = getattr(module, attribute)
    if isinstance(value, type):
        # The alias is the class itself, not a copy: type checks in saved
        # configs (``assert type(config) is ...``) keep passing.
        assert doImportType(name) is value
        assert doImportType(get_full_type_name(value)) is value


@pytest.fixture
def legacy_repo(tmp_path):
    root = str(tmp_path / "repo")
    shutil.copytree(os.path.join(LEGACY, "repo"), root)
    from lsst.epo.zooniverse.butler_config import get_butler

    return get_butler(root, collections=["u/alice/zoo/run1", "u/alice/zoo/run2"])


def test_legacy_repository_reads(legacy_repo):
    butler: Butler = legacy_repo
    run1 = "u/alice/zoo/run1"
    stamps = butler.get("stamps_g", collections=run1)
    assert len(stamps) == 1 and stamps.metadata["BAND"] == "g"
    rng = np.random.default_rng(7)
    np.testing.assert_array_equal(stamps[0].image, rng.normal(size=(5, 6)).astype(np.float32))
    np.testing.assert_array_equal(stamps[0].mask, rng.integers(0, 16, size=(5, 6)).astype(np.int32))
    assert stamps[0].object_id == "obj0"

    pictures = butler.get("zooniverse_rgb", skymap="zooniverse_demo", tract=0, patch=0, collections=run1)
    rng = np.random.default_rng(1)
    expected = [rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8) for _ in range(3)]
    assert list(pictures.index["object_id"]) == ["obj0", "obj1", "obj2"]
    for picture, pixels in zip(pictures.images, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(picture), pixels)

    cutout = butler.get("zooniverse_cutout", collections=run1)
    assert cutout.size == (8, 8)
    skymap = butler.get("zooniverse_skymap_copy", collections=run1)
    assert skymap.name == "zooniverse_demo"

    # Saved task configs import the old task and stretch modules.
    for label in ("shardCatalog", "extractStamps", "composeRgb"):
        config = butler.get(f"{label}_config", collections=run1)
        assert type(config).__name__.lower().startswith(label.lower())


def test_legacy_state_database_reads(tmp_path):
    from lsst.epo.zooniverse.export.service import ExportService
    from lsst.epo.zooniverse.export.service_config import ServiceConfig

    database = tmp_path / "epo_state.sqlite3"
    shutil.copy(os.path.join(LEGACY, "epo_state.sqlite3"), database)
    config = ServiceConfig.load(
        None,
        database=f"sqlite:///{database}",
        staging=str(tmp_path / "staging"),
        public_root=str(tmp_path / "public"),
        public_url="http://127.0.0.1:1/",
    )
    with ExportService(config) as service:
        status = service.status()
        galaxies = status["projects"]["galaxies"]
        assert galaxies["owner"] == "alice"
        assert galaxies["datasets"] == {"published": 1, "quarantined": 1, "rejected": 1}
        assert galaxies["images"] == {"published": 1, "quarantined": 2, "rejected": 3}
        published = service.published_images("galaxies")
        assert [row["object_id"] for row in published] == ["c1"]
        actions = [row["action"] for row in service.audit_log(project="galaxies")]
        assert {"registered", "quarantined", "approved", "rejected", "published"} <= set(actions)
        report = service.report("galaxies")
        assert len(report) >= 6
