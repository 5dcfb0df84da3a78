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


"""The fused pipeline (``pipelines/ZooniverseCutoutsFused.yaml``: shardCatalog
+ makePictures) against the three-task pipeline on the demo repository:
the same datasets, byte for byte (the Stamps' Butler provenance cards
aside), and the same accounting of every catalog row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pipeline_test_utils import run_outputs, run_pipeline_file

from lsst.epo.zooniverse.butler.config import get_butler
from lsst.epo.zooniverse.demo import make_demo_repo
from lsst.epo.zooniverse.pipeline.accounting import account_targets
from lsst.epo.zooniverse.pipeline.make_pictures import MakeZooniversePicturesConfig, stamps_as_read
from lsst.epo.zooniverse.pipeline.sharding import shard_target_catalog

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "pipelines" / "ZooniverseCutouts.yaml"
FUSED = ROOT / "pipelines" / "ZooniverseCutoutsFused.yaml"
DEMO_CONFIG = ROOT / "config" / "composeRgb_demo.py"
TARGETS_RUN = "targets/sample"
SKYMAP = "zooniverse_demo"


def _run(repo: str, inputs: str, output: str, pipeline: Path, *extra: str) -> None:
    run_pipeline_file(repo, inputs, output, str(pipeline), f"skymap='{SKYMAP}'", *extra)


def _same_table(a, b) -> bool:
    if a.colnames != b.colnames or len(a) != len(b) or dict(a.meta) != dict(b.meta):
        return False
    for name in a.colnames:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.dtype != y.dtype:
            return False
        if not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
            return False
    return True


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory):
    """Demo repository, sample catalog sharded, both pipelines run with the
    demo's composeRgb overrides.
    """
    root = tmp_path_factory.mktemp("fused")
    demo = make_demo_repo(root / "repo")
    butler = get_butler(demo.root, writeable=True)
    shard_target_catalog(butler, demo.sample_catalog, run=TARGETS_RUN, extra_columns=["note"])
    inputs = f"{demo.collection},{TARGETS_RUN}"
    _run(demo.root, inputs, "out/three", PIPELINE, "-C", f"composeRgb:{DEMO_CONFIG}")
    # The same override file, loaded into the composeRgb subtask's config.
    fused_config = root / "makePictures_demo.py"
    fused_config.write_text(f"config.composeRgb.load({str(DEMO_CONFIG)!r})\n")
    # Every overlapping patch keeps its rows, as in the three-task pipeline.
    _run(
        demo.root,
        inputs,
        "out/fused",
        FUSED,
        "-C",
        f"makePictures:{fused_config}",
        "-c",
        "shardCatalog:assign_to=every_overlapping_patch",
        "-c",
        "shardCatalog:fallback_to_neighbour=False",
    )
    # The fused pipeline's own default: each object pictured once.
    _run(demo.root, inputs, "out/fused_once", FUSED, "-C", f"makePictures:{fused_config}")
    return demo


def test_fused_pipeline_file_builds_graph():
    from lsst.pipe.base import Pipeline

    graph = Pipeline.from_uri(str(FUSED)).to_graph()
    assert set(graph.tasks.keys()) == {"shardCatalog", "makePictures"}


def test_config_maps_to_three_task_labels():
    config = MakeZooniversePicturesConfig()
    config.extractStamps.stamp_size = 61
    config.composeRgb.stretch.Q = 2
    config.validate()
    assert set(config.composeRgb.channels) == {"g", "r", "i"}


def test_stamps_as_read_match_a_file_read_back(tmp_path):
    """Coverage values longer than a FITS card holds and the WCS come out
    of `stamps_as_read` as `read_stamps` gives them from the file.
    """
    from lsst.epo.zooniverse.butler.skymap_geometry import make_tan_wcs
    from lsst.epo.zooniverse.formats.stamps import Stamp, Stamps, read_stamps, write_stamps

    parent = make_tan_wcs(150.0, 2.0, 0.2, 4000, 4000)
    rng = np.random.default_rng(5)
    stamps = Stamps(use_variance=True)
    for k, coverage in enumerate([7 / 10201, 3 / 10201, 0.5, 1 / 3, 1.0]):
        image = rng.normal(size=(11, 11)).astype(np.float32)
        stamp = Stamp(
            image,
            np.zeros((11, 11), np.int32),
            image**2,
            x0=37 * k,
            y0=11 * k,
            object_id=str(k),
            coverage=coverage,
        )
        stamp.set_shifted_wcs(parent, 37 * k, 11 * k)
        stamps.append(stamp)
    path = tmp_path / "stamps.fits"
    write_stamps(stamps, path)
    back = read_stamps(path, use_variance=False)
    mine = stamps_as_read(stamps)
    assert len(mine) == len(back) and not mine.use_variance
    # Cards shorten the first two coverages: the stamps in memory differ.
    assert stamps[0].coverage != back[0].coverage
    for a, b in zip(mine, back):
        assert a.coverage == b.coverage and a.object_id == b.object_id and a.bbox == b.bbox
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.variance is None
        assert a.wcs.to_header_string(relax=True) == b.wcs.to_header_string(relax=True)
        assert np.array_equal(a.wcs.wcs.pc, b.wcs.wcs.pc) and np.array_equal(a.wcs.wcs.crval, b.wcs.wcs.crval)


def test_fused_outputs_byte_identical(both_runs):
    butler = get_butler(both_runs.root)
    three = run_outputs(butler, "out/three")
    fused = run_outputs(butler, "out/fused")
    assert sorted(three) == sorted(fused)
    assert sum(key[0] == "zooniverse_stamps" for key in three) > 10
    for key, value in three.items():
        if key[0] == "zooniverse_rgb_report":
            assert _same_table(value, fused[key]), key
        else:
            assert value == fused[key], key


def test_fused_accounting_identical(both_runs):
    butler = get_butler(both_runs.root)
    three = account_targets(butler, "out/three")
    fused = account_targets(butler, "out/fused")
    assert len(three) > 100
    assert _same_table(three, fused)


def test_pictures_only_run_writes_the_same_pictures_and_no_stamps(both_runs, tmp_path):
    """``makePictures.write_stamps=False`` writes the pictures and reports
    of the default run, byte for byte, and no Stamps dataset.
    """
    fused_config = tmp_path / "makePictures_demo.py"
    fused_config.write_text(f"config.composeRgb.load({str(DEMO_CONFIG)!r})\n")
    _run(
        both_runs.root,
        f"{both_runs.collection},{TARGETS_RUN}",
        "out/pictures_only",
        FUSED,
        "-C",
        f"makePictures:{fused_config}",
        "-c",
        "makePictures:write_stamps=False",
    )
    butler = get_butler(both_runs.root)
    full = run_outputs(butler, "out/fused_once")
    pictures_only = run_outputs(butler, "out/pictures_only")
    assert not any(key[0] == "zooniverse_stamps" for key in pictures_only)
    assert sum(key[0] == "zooniverse_rgb" for key in pictures_only) > 1
    for key, value in pictures_only.items():
        if key[0] == "zooniverse_rgb_report":
            assert _same_table(value, full[key]), key
        else:
            assert value == full[key], key
    assert _same_table(
        account_targets(butler, "out/fused_once"), account_targets(butler, "out/pictures_only")
    )


def test_fused_default_pictures_each_object_once(both_runs):
    """The fused pipeline's default (shardCatalog ``assign_to=inner_patch``
    with the fallback to a neighbour) pictures every object the
    overlapping patches picture, each once, and accounts for every row.
    """
    butler = get_butler(both_runs.root)
    every = account_targets(butler, "out/fused")
    once = account_targets(butler, "out/fused_once")
    assert len(once) == len(every) > 100
    assert list(once["row_index"]) == list(every["row_index"])
    pictured = once["status"] == "pictured"
    assert list(pictured) == list(every["status"] == "pictured")
    assert set(once["n_pictures"][pictured]) == {1}
    assert (every["n_pictures"][pictured] > 1).any()  # The demo has objects in patch overlaps.
    n_once = sum(
        len(butler.get(ref))
        for ref in butler.query_datasets("zooniverse_rgb", collections="out/fused_once", explain=False)
    )
    assert n_once == int(pictured.sum())
