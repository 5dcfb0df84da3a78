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

"""The pipeline on a repository shaped like Rubin's DRP repositories: sky
map records as lsst.skymap registers them, no ``zooniverse_skymap``,
``deep_coadd`` as ``ExposureF``; the tract frame derived from the records
(doc/rsp_dp1.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.table import Table

from lsst.epo.zooniverse.butler.config import get_butler, make_butler_repo
from lsst.epo.zooniverse.butler.skymap_geometry import box_sky_polygon, make_tan_wcs
from lsst.epo.zooniverse.butler.skymap_records import RubinTract, register_skymap_records
from lsst.epo.zooniverse.butler.tract_frame import TractFrame
from lsst.epo.zooniverse.demo.drp_repo import DRP_SKYMAP, drp_config_path, make_drp_repo
from lsst.epo.zooniverse.formats.wcs_metadata import wcs_to_header_string
from lsst.epo.zooniverse.pipeline.accounting import account_targets
from lsst.epo.zooniverse.pipeline.shard_catalog import select_patch_rows
from lsst.epo.zooniverse.pipeline.sharding import shard_target_catalog

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PIPELINE = ROOT / "pipelines" / "ZooniverseCutouts.yaml"


def _tract(ra, dec, *, clip, offset=(0.0, 0.0), counts=(3, 2), inner=400, border=40):
    width, height = counts[0] * inner, counts[1] * inner
    wcs = make_tan_wcs(ra, dec, 0.2, width, height)
    wcs.wcs.crpix = [wcs.wcs.crpix[0] + offset[0], wcs.wcs.crpix[1] + offset[1]]
    return RubinTract(0, wcs_to_header_string(wcs), counts, (inner, inner), border, clip_outer=clip)


def _records(tract, patch_id, nx_max=None, ny_max=None):
    i, j = tract.patch_index(patch_id)
    skymap = SimpleNamespace(
        patch_nx_max=nx_max or tract.patch_counts[0], patch_ny_max=ny_max or tract.patch_counts[1]
    )
    tract_record = SimpleNamespace(id=tract.tract_id, region=box_sky_polygon(tract.wcs, tract.bbox))
    patch = SimpleNamespace(
        id=patch_id, cell_x=i, cell_y=j, region=box_sky_polygon(tract.wcs, tract.patch_outer_bbox(patch_id))
    )
    return skymap, tract_record, patch


@pytest.mark.parametrize("clip", [False, True], ids=["cells", "legacy"])
@pytest.mark.parametrize(
    "centre,offset", [((0.0, 0.0), (0.0, 0.0)), ((150.0, -30.0), (1.3, -0.6)), ((10.0, 85.0), (-2.7, 1.9))]
)
def test_frame_matches_the_sky_map_geometry(clip, centre, offset):
    # lsst.skymap's tract WCS has its tangent point near, not on, the box
    # centre; the frame still finds every box exactly and every position to
    # far below a pixel.
    tract = _tract(*centre, clip=clip, offset=offset)
    rng = np.random.default_rng(3)
    x = rng.uniform(-0.5, tract.bbox.x1 - 0.5, 300)
    y = rng.uniform(-0.5, tract.bbox.y1 - 0.5, 300)
    ra, dec = tract.wcs.wcs_pix2world(x, y, 0)
    for patch_id in tract.patch_ids():
        frame = TractFrame.from_records(*_records(tract, patch_id), pixel_scale_arcsec=0.2)
        assert frame.patch_counts == (3, 2)
        assert frame.bbox == tract.bbox
        assert frame.patch_inner_bbox(patch_id) == tract.patch_inner_bbox(patch_id)
        assert frame.patch_outer_bbox(patch_id) == tract.patch_outer_bbox(patch_id)
        fx, fy = frame.wcs.wcs_world2pix(ra, dec, 0)
        assert np.abs(fx - x).max() < 1e-4 and np.abs(fy - y).max() < 1e-4
        with pytest.raises(LookupError):
            frame.patch_inner_bbox(patch_id + 1)


@pytest.mark.parametrize("dec", [-30.0, 60.0])
def test_frame_on_a_dp1_sized_tract(dec):
    # lsst_cells_v1-like (obs_lsst config/makeSkyMap.py: rings, TAN, 0.2
    # arcsec, cell-based patches of 3000 + 200 border): a rings tract's
    # tangent point can sit tens of pixels off the box centre.
    tract = _tract(53.0, dec, clip=False, offset=(5.0, 40.0), counts=(10, 10), inner=3000, border=200)
    rng = np.random.default_rng(7)
    x = rng.uniform(-0.5, tract.bbox.x1 - 0.5, 2000)
    y = rng.uniform(-0.5, tract.bbox.y1 - 0.5, 2000)
    ra, dec_ = tract.wcs.wcs_pix2world(x, y, 0)
    for patch_id in (0, 9, 45, 99):
        frame = TractFrame.from_records(*_records(tract, patch_id), pixel_scale_arcsec=0.2)
        assert frame.patch_inner_bbox(patch_id) == tract.patch_inner_bbox(patch_id)
        assert frame.patch_outer_bbox(patch_id) == tract.patch_outer_bbox(patch_id)
        fx, fy = frame.wcs.wcs_world2pix(ra, dec_, 0)
        assert np.abs(fx - x).max() < 0.05 and np.abs(fy - y).max() < 0.05


def test_frame_counts_patches_per_tract_not_the_maximum():
    # A tract with fewer patches than the sky map's maximum: unclipped
    # (cell-based) patches give their own count.
    tract = _tract(45.0, 20.0, clip=False, counts=(2, 3))
    for patch_id in tract.patch_ids():
        frame = TractFrame.from_records(*_records(tract, patch_id, 9, 9), pixel_scale_arcsec=0.2)
        assert frame.patch_counts == (2, 3)
        assert frame.patch_inner_bbox(patch_id) == tract.patch_inner_bbox(patch_id)


def test_frame_refuses_a_wrong_pixel_scale():
    tract = _tract(45.0, 20.0, clip=False)
    with pytest.raises(ValueError, match="pixel scale"):
        TractFrame.from_records(*_records(tract, 4), pixel_scale_arcsec=0.3)


def test_neighbouring_patches_agree_on_who_publishes():
    # Rows in the overlap of two patches: exactly one patch has them inside
    # its inner box (positive edge distance), the other negative, by the
    # same amount; positions agree with the tract WCS.
    tract = _tract(150.0, -30.0, clip=False, offset=(1.3, -0.6))
    rng = np.random.default_rng(5)
    x = rng.uniform(5, tract.bbox.x1 - 5, 2000)
    y = rng.uniform(5, tract.bbox.y1 - 5, 2000)
    ra, dec = tract.wcs.wcs_pix2world(x, y, 0)
    table = Table(
        {"object_id": [str(k) for k in range(len(x))], "ra": ra, "dec": dec, "row_index": np.arange(len(x))}
    )
    best = {}
    seen = np.zeros(len(x), dtype=int)
    for patch_id in tract.patch_ids():
        records = _records(tract, patch_id)
        frame = TractFrame.from_records(*records, pixel_scale_arcsec=0.2)
        rows, counts = select_patch_rows(
            [table], tract=0, patch=patch_id, region=records[2].region, tract_frame=frame, skymap_name="s"
        )
        assert rows.meta["skymap"] == "s" and counts["n_input"] == len(x)
        index = np.asarray(rows["row_index"])
        seen[index] += 1
        assert np.abs(np.asarray(rows["x"]) - x[index]).max() < 1e-4
        truth = tract.patch_inner_bbox(patch_id).distance_inside(x[index], y[index])
        assert np.allclose(np.asarray(rows["edge_distance"]), truth, atol=1e-4)
        for k, d in zip(index, np.asarray(rows["edge_distance"])):
            best.setdefault(int(k), []).append(d)
    assert (seen >= 1).all() and (seen > 1).any()
    assert all(sum(d > 0 for d in ds) == 1 for ds in best.values())


@pytest.mark.parametrize("clip", [False, True], ids=["cells", "legacy"])
def test_inner_patch_rule_with_the_records_frame(clip):
    # assign_to="inner_patch" with the frame derived from the records: each
    # row of the tract is in exactly one patch, the one whose inner box holds
    # it (the one where its edge distance is largest), with a cell-based
    # outer box reaching beyond the tract or a legacy one clipped to it.
    tract = _tract(150.0, -30.0, clip=clip, offset=(1.3, -0.6))
    rng = np.random.default_rng(6)
    x = rng.uniform(-0.5, tract.bbox.x1 - 0.5, 2000)
    y = rng.uniform(-0.5, tract.bbox.y1 - 0.5, 2000)
    ra, dec = tract.wcs.wcs_pix2world(x, y, 0)
    table = Table(
        {"object_id": [str(k) for k in range(len(x))], "ra": ra, "dec": dec, "row_index": np.arange(len(x))}
    )
    seen = np.zeros(len(x), dtype=int)
    depth = np.stack([tract.patch_inner_bbox(p).distance_inside(x, y) for p in tract.patch_ids()])
    for patch_id in tract.patch_ids():
        records = _records(tract, patch_id)
        frame = TractFrame.from_records(*records, pixel_scale_arcsec=0.2)
        rows, counts = select_patch_rows(
            [table],
            tract=0,
            patch=patch_id,
            region=records[2].region,
            tract_frame=frame,
            assign_to="inner_patch",
        )
        index = np.asarray(rows["row_index"])
        seen[index] += 1
        assert (depth[patch_id, index] == depth[:, index].max(axis=0)).all()
        assert counts["n_input"] == counts["n_outside"] + counts["n_other_patch"] + len(rows)
    assert (seen == 1).all()


def test_records_are_registered_as_lsst_skymap_registers_them(tmp_path):
    make_butler_repo(str(tmp_path / "repo"))
    butler = get_butler(str(tmp_path / "repo"), writeable=True)
    tracts = [
        _tract(10.0, 5.0, clip=False),
        RubinTract(1, _tract(12.0, 5.0, clip=False).wcs_header, (2, 2), (400, 400), 40),
    ]
    register_skymap_records(butler, "rubin_like", tracts)
    register_skymap_records(butler, "rubin_like", tracts)  # again: nothing changes
    (skymap,) = butler.registry.queryDimensionRecords("skymap")
    assert (skymap.name, skymap.tract_max, skymap.patch_nx_max, skymap.patch_ny_max) == (
        "rubin_like",
        2,
        3,
        2,
    )
    assert len(skymap.hash) == 20
    tract_records = {r.id: r for r in butler.registry.queryDimensionRecords("tract", skymap="rubin_like")}
    assert sorted(tract_records) == [0, 1]
    patches = list(butler.registry.queryDimensionRecords("patch", skymap="rubin_like"))
    assert len(patches) == 6 + 4
    for record in patches:
        tract = tracts[record.tract]
        assert record.id == record.cell_y * tract.patch_counts[0] + record.cell_x
        expected = box_sky_polygon(tract.wcs, tract.patch_outer_bbox(record.id))
        assert _same_polygon(record.region, expected)
    for tract_id, record in tract_records.items():
        assert _same_polygon(record.region, box_sky_polygon(tracts[tract_id].wcs, tracts[tract_id].bbox))
    assert butler.registry.getDatasetType("skyMap").storageClass_name == "SkyMap"
    assert "skymaps" in set(butler.registry.queryCollections())


def _same_polygon(a, b) -> bool:
    va = sorted(tuple(round(c, 12) for c in (v.x(), v.y(), v.z())) for v in a.getVertices())
    vb = sorted(tuple(round(c, 12) for c in (v.x(), v.y(), v.z())) for v in b.getVertices())
    return va == vb


def _run(*args: str, tmp_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, DAF_BUTLER_CONFIG_PATH=drp_config_path(), EPO_ZOONIVERSE_DIR=str(ROOT))
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if tmp_path is not None:
        env["PWD"] = str(tmp_path)
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


@pytest.fixture(scope="module")
def drp_repo(tmp_path_factory):
    """The DRP-shaped repository with its catalog sharded."""
    repo = make_drp_repo(tmp_path_factory.mktemp("drp") / "repo")
    butler = get_butler(repo.root, writeable=True)
    shard_target_catalog(butler, repo.catalog, run="u/pi/targets")
    return repo


def test_pipetask_on_a_drp_shaped_repository(drp_repo):
    butler = get_butler(drp_repo.root)
    # Nothing of this package in the inputs but the sharded catalog.
    assert butler.registry.getDatasetType("deep_coadd").storageClass_name == "ExposureF"
    assert "zooniverse_skymap" not in {d.name for d in butler.registry.queryDatasetTypes()}
    _run(
        str(BIN / "pipetask"), "run", "-j", "1", "-b", drp_repo.root,
        "-i", f"{drp_repo.collection},u/pi/targets", "-o", "u/pi/cutouts", "-p", str(PIPELINE),
        "--dataset-query-constraint", "zooniverse_targets", "--register-dataset-types",
    )  # fmt: skip
    butler = get_butler(drp_repo.root)
    tract = drp_repo.tracts[0]
    for patch_id in tract.patch_ids():
        rows = butler.get(
            "zooniverse_targets_patch", skymap=DRP_SKYMAP, tract=0, patch=patch_id, collections="u/pi/cutouts"
        )
        x, y = tract.wcs.wcs_world2pix(np.asarray(rows["ra"]), np.asarray(rows["dec"]), 0)
        assert np.abs(np.asarray(rows["x"]) - x).max() < 1e-3
        assert np.abs(np.asarray(rows["y"]) - y).max() < 1e-3
        truth = tract.patch_inner_bbox(patch_id).distance_inside(x, y)
        assert np.allclose(np.asarray(rows["edge_distance"]), truth, atol=1e-3)
        rgb = butler.get(
            "zooniverse_rgb", skymap=DRP_SKYMAP, tract=0, patch=patch_id, collections="u/pi/cutouts"
        )
        assert len(rgb) > 0
    accounting = account_targets(butler, ["u/pi/cutouts", "u/pi/targets"])
    n_rows = sum(1 for _ in open(drp_repo.catalog)) - 1
    assert len(accounting) == n_rows
    status = dict(zip(accounting["object_id"], accounting["status"]))
    assert status["99999"] == "outside_coadds"
    assert sum(s == "pictured" for s in status.values()) >= n_rows - 6


def test_bps_submit_on_a_drp_shaped_repository(drp_repo, tmp_path):
    _run(
        str(BIN / "bps"), "submit", str(ROOT / "config" / "bps" / "zooniverse.yaml"),
        "-b", drp_repo.root, "-i", f"{drp_repo.collection},u/pi/targets", "-o", "u/pi/bps",
        "-d", f"skymap = '{DRP_SKYMAP}' AND patch IN (0, 1)",
        tmp_path=tmp_path,
    )  # fmt: skip
    butler = get_butler(drp_repo.root)
    refs = butler.query_datasets("zooniverse_rgb", collections="u/pi/bps", explain=False)
    assert sorted(ref.dataId["patch"] for ref in refs) == [0, 1]


def test_shard_catalog_reruns_are_identical(drp_repo):
    # The records frame is deterministic: two runs write the same rows, bit
    # for bit (the Parquet files differ only by the Butler's provenance
    # metadata, the run and dataset ids).
    tables = []
    for output in ("u/pi/shard1", "u/pi/shard2"):
        _run(
            str(BIN / "pipetask"), "run", "-b", drp_repo.root, "-i", f"{drp_repo.collection},u/pi/targets",
            "-o", output, "-p", f"{PIPELINE}#shardCatalog",
            "--dataset-query-constraint", "zooniverse_targets", "--register-dataset-types",
        )  # fmt: skip
        butler = get_butler(drp_repo.root)
        refs = butler.query_datasets("zooniverse_targets_patch", collections=output, explain=False)
        tables.append({ref.dataId["patch"]: butler.get(ref) for ref in refs})
    assert sorted(tables[0]) == [0, 1, 2, 3]
    for patch_id, first in tables[0].items():
        second = tables[1][patch_id]
        assert first.colnames == second.colnames and dict(first.meta) == dict(second.meta)
        for name in first.colnames:
            a, b = np.asarray(first[name]), np.asarray(second[name])
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
