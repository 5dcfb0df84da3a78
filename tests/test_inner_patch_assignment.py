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

"""shardCatalog's ``assign_to="inner_patch"`` rule: each catalog row in the
one patch whose inner box holds it (Rubin's detect_isPatchInner), its
stamp inside that patch's outer border, and the fallback to one neighbour
when that patch lacks a coadd band.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from lsst.epo.zooniverse.butler.config import get_butler, make_butler_repo
from lsst.epo.zooniverse.butler.dataset_types import DEEP_COADD
from lsst.epo.zooniverse.butler.skymap_geometry import SkyMapGeometry, TractGeometry, make_tan_wcs
from lsst.epo.zooniverse.formats.wcs_metadata import wcs_to_header_string
from lsst.epo.zooniverse.pipeline.shard_catalog import (
    ShardCatalogConfig,
    ShardCatalogConnections,
    ShardCatalogTask,
    select_patch_rows,
)
from lsst.epo.zooniverse.pipeline.sharding.patch_assignment import (
    ASSIGNMENT_RULES,
    PatchGrid,
    find_neighbour_coadds,
    patch_bands,
)

INNER, BORDER = 400, 50
PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "ZooniverseCutoutsFused.yaml"


def make_sky_map(nx: int = 3, ny: int = 2) -> SkyMapGeometry:
    """One tract of ``nx`` x ``ny`` patches with an outer tract border."""
    width, height = nx * INNER + 2 * BORDER, ny * INNER + 2 * BORDER
    wcs = make_tan_wcs(40.0, -20.0, 0.2, width, height)
    tract = TractGeometry(0, wcs_to_header_string(wcs), nx, ny, (INNER, INNER), BORDER)
    return SkyMapGeometry("inner_test", (tract,))


def random_rows(tract: TractGeometry, n: int, seed: int) -> tuple[Table, np.ndarray, np.ndarray]:
    """Rows spread over the whole tract box, its outer border included."""
    rng = np.random.default_rng(seed)
    box = tract.bbox
    x = rng.uniform(box.x0 - 0.5, box.x1 - 0.5, n)
    y = rng.uniform(box.y0 - 0.5, box.y1 - 0.5, n)
    # Rows exactly on inner boundaries, where half-open boxes matter.
    x[:6] = BORDER + INNER - 0.5
    y[6:12] = BORDER + INNER - 0.5
    ra, dec = tract.wcs.wcs_pix2world(x, y, 0)
    table = Table({"object_id": [str(k) for k in range(n)], "ra": ra, "dec": dec, "row_index": np.arange(n)})
    # The positions shardCatalog sees (within 1e-9 px of x, y).
    x, y = tract.wcs.wcs_world2pix(ra, dec, 0)
    return table, x, y


def select_all(sky_map, table, assign_to, **kwargs) -> dict[int, Table]:
    """Rows of every patch of tract 0, by patch id."""
    tract = sky_map.tract(0)
    return {
        patch: select_patch_rows(
            [table],
            sky_map=sky_map,
            tract=0,
            patch=patch,
            region=tract.sky_polygon(tract.patch_outer_bbox(patch)),
            assign_to=assign_to,
            **kwargs,
        )[0]
        for patch in tract.patch_ids()
    }


def test_inner_patch_gives_each_row_to_exactly_one_patch():
    sky_map = make_sky_map()
    tract = sky_map.tract(0)
    table, x, y = random_rows(tract, 3000, seed=11)
    every = select_all(sky_map, table, "every_overlapping_patch")
    inner = select_all(sky_map, table, "inner_patch")
    seen_every = np.zeros(len(table), dtype=int)
    seen_inner = np.zeros(len(table), dtype=int)
    best: dict[int, tuple[float, int]] = {}
    for patch in tract.patch_ids():
        seen_every[np.asarray(every[patch]["row_index"])] += 1
        seen_inner[np.asarray(inner[patch]["row_index"])] += 1
        for k, d in zip(every[patch]["row_index"], every[patch]["edge_distance"]):
            best[int(k)] = max(best.get(int(k), (-np.inf, -1)), (float(d), -patch))
        # The inner rule keeps a subset of the rows, with the same columns.
        assert set(inner[patch]["row_index"]) <= set(every[patch]["row_index"])
        assert inner[patch].colnames == every[patch].colnames
    # Every row of the tract is in one patch, not in several.
    assert (seen_every >= 1).all() and (seen_every > 1).sum() > 300
    assert (seen_inner == 1).all()
    # The patch chosen is the one where the row is deepest inside the inner
    # box (rows exactly on a boundary, at distance 0 from two inner boxes,
    # go to the box that holds its lower edge, as Box2.contains); a row in
    # the tract's outer border goes to the patch nearest to it along each
    # axis.
    lo, hi = BORDER - 0.5, BORDER + INNER * np.array([3, 2]) - 0.5 - 1e-6
    cx, cy = np.clip(x, lo, hi[0]), np.clip(y, lo, hi[1])
    depth = np.stack([tract.patch_inner_bbox(p).distance_inside(cx, cy) for p in tract.patch_ids()])
    for patch in tract.patch_ids():
        for k in inner[patch]["row_index"]:
            assert depth[patch, k] == depth[:, k].max()
            if (cx[k], cy[k]) == (x[k], y[k]) and depth[patch, k] > 0:
                assert -best[int(k)][1] == patch
    # Inside the tract's grid of inner boxes, the home patch is the one whose
    # inner box holds the row (positive or zero edge distance).
    grid = PatchGrid.from_geometry(tract)
    for patch in tract.patch_ids():
        rows = inner[patch]
        on_grid = tract.patch_inner_bbox(patch).contains(np.asarray(rows["x"]), np.asarray(rows["y"]))
        assert (np.asarray(rows["edge_distance"])[on_grid] >= 0).all()
        assert (grid.home_patch(np.asarray(rows["x"]), np.asarray(rows["y"])) == patch).all()


def test_the_home_patch_holds_the_whole_stamp():
    # A stamp of half-size h centred at floor(x + 0.5) lies inside the home
    # patch's outer box whenever h <= border, and no other patch that holds
    # the row has more room around it: a stamp too large for the border is
    # cut in every patch.
    sky_map = make_sky_map()
    tract = sky_map.tract(0)
    table, x, y = random_rows(tract, 3000, seed=12)
    inner = select_all(sky_map, table, "inner_patch")
    for patch, rows in inner.items():
        cx = np.floor(np.asarray(rows["x"]) + 0.5)
        cy = np.floor(np.asarray(rows["y"]) + 0.5)
        outer = tract.patch_outer_bbox(patch)
        room = np.minimum.reduce([cx - outer.x0, outer.x1 - 1 - cx, cy - outer.y0, outer.y1 - 1 - cy])
        # Rows in the tract's own outer border have less room (no patch
        # has more).
        in_grid = PatchGrid.from_geometry(tract).inner_bbox(patch).contains(cx, cy)
        assert (room[in_grid] >= BORDER).all()
        for other in tract.patch_ids():
            box = tract.patch_outer_bbox(other)
            held = box.contains(cx, cy)
            other_room = np.minimum.reduce([cx - box.x0, box.x1 - 1 - cx, cy - box.y0, box.y1 - 1 - cy])
            assert (other_room[held] <= room[held]).all()


def test_fallback_gives_rows_of_a_patch_without_a_band_to_one_neighbour():
    sky_map = make_sky_map()
    tract = sky_map.tract(0)
    table, x, y = random_rows(tract, 4000, seed=13)
    bands = {p: {"g", "r", "i"} for p in tract.patch_ids()}
    bands[1] = {"r", "i"}  # Patch 1 (middle of the bottom row) lacks g.
    inner = select_all(sky_map, table, "inner_patch")
    fallback = select_all(sky_map, table, "inner_patch", bands_by_patch=bands)
    grid = PatchGrid.from_geometry(tract)
    home = grid.home_patch(x, y)
    seen = np.zeros(len(table), dtype=int)
    for patch, rows in fallback.items():
        index = np.asarray(rows["row_index"])
        seen[index] += 1
        extra = sorted(set(index) - set(inner[patch]["row_index"]))
        # Only rows whose own patch lacks g move, and only to patches
        # that have it.
        assert (home[extra] == 1).all()
        assert not extra or patch != 1
    # Rows of complete patches stay in one patch; rows of patch 1 are in
    # patch 1 and in at most one neighbour, which pictures them.
    assert (seen[home != 1] == 1).all()
    assert set(seen[home == 1]) == {1, 2}
    moved = (home == 1) & (seen == 2)
    assert 50 < moved.sum() < (home == 1).sum() / 2
    # Those that moved are the rows in a neighbour's outer box.
    near = np.zeros(len(table), dtype=bool)
    for other in (0, 2, 3, 4, 5):
        near |= tract.patch_outer_bbox(other).contains(x, y)
    assert (moved == ((home == 1) & near)).all()
    # Listing the bands: a patch that has only r and i is complete for them.
    same = select_all(sky_map, table, "inner_patch", bands_by_patch=bands, fallback_bands=["r", "i"])
    for patch in tract.patch_ids():
        assert list(same[patch]["row_index"]) == list(inner[patch]["row_index"])


def test_fallback_when_the_inner_patch_has_no_coadd_at_all():
    sky_map = make_sky_map()
    tract = sky_map.tract(0)
    table, x, y = random_rows(tract, 3000, seed=14)
    bands = {p: {"g"} for p in tract.patch_ids() if p != 4}
    fallback = select_all(sky_map, table, "inner_patch", bands_by_patch=bands)
    counts = [len(fallback[p]) for p in tract.patch_ids()]
    inner = select_all(sky_map, table, "inner_patch")
    assert counts[4] == len(inner[4])
    assert sum(counts) > sum(len(t) for t in inner.values())


def test_task_counts_and_config():
    sky_map = make_sky_map()
    tract = sky_map.tract(0)
    table, x, y = random_rows(tract, 2000, seed=15)
    config = ShardCatalogConfig()
    assert config.assign_to == "every_overlapping_patch"
    assert set(ASSIGNMENT_RULES) == {"inner_patch", "every_overlapping_patch"}
    config.assign_to = "inner_patch"
    config.fallback_to_neighbour = True
    config.validate()
    task = ShardCatalogTask(config=config)
    bands = {p: {"g"} for p in tract.patch_ids() if p != 1}
    region = tract.sky_polygon(tract.patch_outer_bbox(0))
    rows = task.run(targets=[table], sky_map=sky_map, tract=0, patch=0, region=region, bands_by_patch=bands)
    meta = task.metadata
    assert meta["n_selected"] == len(rows.targets_patch)
    assert meta["n_fallback"] > 0 and meta["n_other_patch"] > 0
    assert meta["n_input"] == meta["n_outside"] + meta["n_other_patch"] + meta["n_selected"]
    with pytest.raises(Exception, match="assign_to"):
        ShardCatalogConfig().assign_to = "nearest_patch"
    with pytest.raises(ValueError, match="assign_to must be one of"):
        select_patch_rows([table], sky_map=sky_map, tract=0, patch=0, assign_to="nearest_patch")


def test_neighbour_coadds_connection_only_with_the_fallback():
    config = ShardCatalogConfig()
    assert "neighbour_coadds" not in ShardCatalogConnections(config=config).prerequisiteInputs
    config.assign_to = "inner_patch"
    assert "neighbour_coadds" not in ShardCatalogConnections(config=config).prerequisiteInputs
    config.fallback_to_neighbour = True
    connections = ShardCatalogConnections(config=config)
    assert "neighbour_coadds" in connections.prerequisiteInputs
    assert connections.neighbour_coadds.lookupFunction is find_neighbour_coadds


def insert_registry_coadds(butler, sky_map: SkyMapGeometry, bands: str, data_ids: list[dict]):
    """Register the sky map's records, the bands and registry-only coadds
    (no files) of ``data_ids`` in the run ``coadds``; return their dataset
    type.
    """
    sky_map.register(butler)
    registry = butler.registry
    registry.syncDimensionData(
        "instrument",
        {"name": "Inner", "visit_max": 1, "visit_system": 0, "exposure_max": 1, "detector_max": 1},
    )
    for band in bands:
        registry.syncDimensionData("physical_filter", {"instrument": "Inner", "name": band, "band": band})
    dataset_type = DEEP_COADD.make(butler.dimensions)
    registry.registerDatasetType(dataset_type)
    registry.registerRun("coadds")
    registry.insertDatasets(dataset_type, data_ids, run="coadds")
    return dataset_type


@pytest.fixture(scope="module")
def coadd_registry(tmp_path_factory):
    """A repository with the sky map's records and registry-only coadds:
    every band of every patch but g of patch 4 and anything of patch 2.
    """
    root = str(tmp_path_factory.mktemp("inner") / "repo")
    make_butler_repo(root)
    butler = get_butler(root, writeable=True)
    data_ids = [
        {"skymap": "inner_test", "tract": 0, "patch": p, "band": b}
        for p in range(9)
        for b in "gri"
        if p != 2 and (p, b) != (4, "g")
    ]
    return butler, insert_registry_coadds(butler, make_sky_map(3, 3), "gri", data_ids)


def test_neighbour_coadds_found_at_graph_build(coadd_registry):
    butler, dataset_type = coadd_registry
    registry = butler.registry
    for patch, neighbours in ((0, {0, 1, 3, 4}), (4, set(range(9))), (5, {1, 2, 4, 5, 7, 8})):
        data_id = registry.expandDataId(skymap="inner_test", tract=0, patch=patch)
        refs = find_neighbour_coadds(dataset_type, registry, data_id, ["coadds"])
        bands = patch_bands(ref.dataId for ref in refs)
        expected = {p: set("gri") for p in neighbours if p != 2}
        if 4 in expected:
            expected[4] = set("ri")
        assert bands == expected


def test_neighbour_coadds_are_the_overlapping_patches_of_wide_tracts(tmp_path):
    # Patches of 0.3 degrees: a tract spans several htm7 pixels, so the
    # registry's spatial index (which find_neighbour_coadds queries) prunes
    # patches before the exact overlap test; a second tract overlapping the
    # first on the sky must not leak in.  The answer is compared, for every
    # patch, with every record of the tract tested directly.
    root = str(tmp_path / "repo")
    make_butler_repo(root)
    butler = get_butler(root, writeable=True)
    inner, border, n = 5400, 200, 4
    size = n * inner + 2 * border
    headers = [wcs_to_header_string(make_tan_wcs(40.0 + 1.1 * t, -20.0, 0.2, size, size)) for t in range(2)]
    tracts = tuple(TractGeometry(t, headers[t], n, n, (inner, inner), border) for t in range(2))
    data_ids = [
        {"skymap": "wide_test", "tract": t, "patch": p, "band": b}
        for t in range(2)
        for p in range(n * n)
        for b in "gr"
    ]
    dataset_type = insert_registry_coadds(butler, SkyMapGeometry("wide_test", tracts), "gr", data_ids)
    registry = butler.registry
    records = {
        t: list(registry.queryDimensionRecords("patch", dataId={"skymap": "wide_test", "tract": t}))
        for t in range(2)
    }
    assert len(records[0]) == len(records[1]) == n * n
    sizes = set()
    for t in range(2):
        for patch in records[t]:
            data_id = registry.expandDataId(skymap="wide_test", tract=t, patch=patch.id)
            expected = {other.id for other in records[t] if not patch.region.isDisjointFrom(other.region)}
            refs = find_neighbour_coadds(dataset_type, registry, data_id, ["coadds"])
            assert {int(ref.dataId["tract"]) for ref in refs} == {t}
            assert patch_bands(ref.dataId for ref in refs) == {p: {"g", "r"} for p in expected}
            sizes.add(len(expected))
    assert sizes == {4, 6, 9}  # Corners, edges and the middle of a 4 x 4 tract.


def test_neighbour_coadds_of_two_sky_maps_of_one_name(tmp_path):
    # The tract records are read once a process (by sky map name, hash and
    # tract): two repositories whose sky maps share a name but not their
    # geometry must each get their own patches.
    answers = []
    for nx in (3, 2):
        root = str(tmp_path / f"repo{nx}")
        make_butler_repo(root)
        butler = get_butler(root, writeable=True)
        data_ids = [{"skymap": "inner_test", "tract": 0, "patch": p, "band": "g"} for p in range(nx * 2)]
        dataset_type = insert_registry_coadds(butler, make_sky_map(nx, 2), "g", data_ids)
        data_id = butler.registry.expandDataId(skymap="inner_test", tract=0, patch=1)
        refs = find_neighbour_coadds(dataset_type, butler.registry, data_id, ["coadds"])
        answers.append(sorted(patch_bands(ref.dataId for ref in refs)))
    # Patch 1 is the middle of the first row of 3 x 2, the right one of 2 x 2.
    assert answers == [[0, 1, 2, 3, 4, 5], [0, 1, 2, 3]]


def test_fallback_cannot_share_its_dataset_type_with_a_regular_input(coadd_registry):
    # pipe_base refuses a dataset type that is a prerequisite input of one
    # task and a regular input of another: the three-task pipeline's
    # extractStamps reads deep_coadd as a regular input (it makes its band
    # quanta), so the fallback needs the fused pipeline, whose makePictures
    # reads deep_coadd as a prerequisite too (its default).
    from lsst.pipe.base import Pipeline
    from lsst.pipe.base.pipeline_graph import ConnectionTypeConsistencyError

    butler, _ = coadd_registry
    three_tasks = Pipeline.from_uri(str(PIPELINE.with_name("ZooniverseCutouts.yaml")))
    three_tasks.addConfigOverride("shardCatalog", "assign_to", "inner_patch")
    three_tasks.addConfigOverride("shardCatalog", "fallback_to_neighbour", True)
    with pytest.raises(ConnectionTypeConsistencyError, match="deep_coadd"):
        three_tasks.to_graph(registry=butler.registry)
    fused = Pipeline.from_uri(str(PIPELINE))
    config = fused.to_graph().tasks["shardCatalog"].config
    assert config.assign_to == "inner_patch" and config.fallback_to_neighbour
    graph = fused.to_graph(registry=butler.registry)
    assert "deep_coadd" in graph.dataset_types and graph.dataset_types["deep_coadd"].is_prerequisite
