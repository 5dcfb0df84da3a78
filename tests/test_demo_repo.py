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

"""Tests of the demo repository builder and its butler subcommand."""

import csv
import math
import os
import subprocess
import sys

import astropy.io.fits as fits
import astropy.wcs
import numpy as np
import pytest
from click.testing import CliRunner

from lsst.daf.butler.cli.butler import cli as butler_cli
from lsst.epo.zooniverse import get_butler
from lsst.epo.zooniverse.demo import (
    COADD_MASK_PLANES,
    DEMO_COLLECTION,
    DEMO_SKYMAP,
    MISSING_BAND,
    NO_DATA_X_MAX,
    TRACT_2MASS,
    TRACT_POLE,
    TRACT_WRAP,
    make_demo_repo,
)
from lsst.epo.zooniverse.demo.repo import TWOMASS_BANDS, TWOMASS_DIR
from lsst.sphgeom import LonLat, UnitVector3d


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_repo(tmp_path_factory.mktemp("demo") / "repo")


@pytest.fixture(scope="module")
def butler(demo):
    return get_butler(demo.root, collections=DEMO_COLLECTION)


def test_coadds_present(demo, butler):
    refs = set(butler.registry.queryDatasets("deep_coadd", collections=DEMO_COLLECTION))
    # 6 patches x 3 bands - 1 missing, 1 polar patch x 3 bands, 2MASS x 3.
    assert len(refs) == demo.n_coadds == 6 * 3 - 1 + 3 + 3
    keys = {(r.dataId["tract"], r.dataId["patch"], r.dataId["band"]) for r in refs}
    assert MISSING_BAND not in keys
    assert {(TRACT_2MASS, 0, b) for b in TWOMASS_BANDS} <= keys
    assert {(TRACT_POLE, 0, b) for b in "gri"} <= keys


def test_patch_regions_overlap_like_a_rubin_skymap(butler):
    records = {
        r.id: r for r in butler.registry.queryDimensionRecords("patch", skymap=DEMO_SKYMAP, tract=TRACT_WRAP)
    }
    assert sorted(records) == list(range(6))
    # Neighbours overlap; patches two apart do not.
    assert records[0].region.overlaps(records[1].region)
    assert records[0].region.overlaps(records[3].region)
    assert not records[0].region.overlaps(records[2].region)
    # The tract straddles RA 0/360: a point at RA 359.99 and one at 0.01 are
    # both inside the tract region.
    tract = next(iter(butler.registry.queryDimensionRecords("tract", skymap=DEMO_SKYMAP, tract=TRACT_WRAP)))
    for ra in (359.99, 0.01):
        assert tract.region.contains(UnitVector3d(LonLat.fromDegrees(ra, 0.0)))
    # htm7 shards join to patches through the regions.
    shards = set(butler.registry.queryDataIds(["htm7"], skymap=DEMO_SKYMAP, tract=TRACT_WRAP, patch=4))
    assert shards


def test_synthetic_coadd_content(demo, butler):
    data_id = {"skymap": DEMO_SKYMAP, "tract": TRACT_WRAP}
    edge = butler.get("deep_coadd", data_id, patch=0, band="r")
    assert edge.image.unit is not None and str(edge.image.unit) == "nJy"
    x0 = edge.bbox.x.start
    columns = NO_DATA_X_MAX - x0
    assert np.all(np.isnan(edge.image.array[:, :columns]))
    assert np.all(edge.mask.get("NO_DATA")[:, :columns])
    assert not np.any(edge.mask.get("NO_DATA")[:, columns:])
    assert np.all(np.isfinite(edge.image.array[:, columns:]))
    star = butler.get("deep_coadd", data_id, patch=4, band="r")
    assert star.mask.get("SATURATED").sum() > 5
    # Noise: the background is close to zero mean with the variance-plane
    # sigma.
    quiet = star.image.array[:40, :40]
    sigma = np.sqrt(np.median(star.variance.array[:40, :40]))
    assert abs(np.median(quiet)) < sigma
    assert 0.6 < np.std(quiet[np.abs(quiet) < 5 * sigma]) / sigma < 1.4


def test_overlap_pixels_agree(butler):
    data_id = {"skymap": DEMO_SKYMAP, "tract": TRACT_WRAP, "band": "i"}
    left = butler.get("deep_coadd", data_id, patch=1)
    right = butler.get("deep_coadd", data_id, patch=2)
    common = left.bbox.intersection(right.bbox)
    assert common.x.size == 80
    np.testing.assert_array_equal(left[common].image.array, right[common].image.array)


def test_truth_sources_are_where_the_wcs_says(demo, butler):
    truth = [r for r in csv.DictReader(open(demo.truth_catalog)) if int(r["tract"]) == 0]
    coadd = butler.get("deep_coadd", skymap=DEMO_SKYMAP, tract=TRACT_WRAP, patch=4, band="i")
    image = np.nan_to_num(coadd.image.array)
    sky = astropy.coordinates.SkyCoord(
        [float(r["ra"]) for r in truth] * astropy.units.deg,
        [float(r["dec"]) for r in truth] * astropy.units.deg,
    )
    pixels = coadd.sky_projection.sky_to_pixel(sky)
    xs, ys = np.asarray(pixels.x), np.asarray(pixels.y)
    checked = 0
    for k, row in enumerate(truth):
        separation = np.hypot(xs - xs[k], ys - ys[k])
        isolated = np.sum(separation < 12) == 1
        ix, iy = int(round(xs[k])) - coadd.bbox.x.start, int(round(ys[k])) - coadd.bbox.y.start
        inside = 5 <= ix < image.shape[1] - 5 and 5 <= iy < image.shape[0] - 5
        if row["kind"] != "star" or not isolated or not inside or not 14 < float(row["mag_i"]) < 20:
            continue
        box = image[iy - 3 : iy + 4, ix - 3 : ix + 4]
        peak = np.unravel_index(np.argmax(box), box.shape)
        assert max(abs(peak[0] - 3), abs(peak[1] - 3)) <= 1, (row, peak)
        checked += 1
    assert checked >= 3


def test_twomass_tract_matches_the_original_files(butler):
    coadd = butler.get("deep_coadd", skymap=DEMO_SKYMAP, tract=TRACT_2MASS, patch=0, band="K")
    original = fits.getdata(TWOMASS_DIR / TWOMASS_BANDS["K"]).astype(np.float32)
    np.testing.assert_array_equal(coadd.image.array, original)
    wcs = astropy.wcs.WCS(fits.getheader(TWOMASS_DIR / TWOMASS_BANDS["K"]))
    for x, y in [(0.0, 0.0), (360.0, 360.0), (700.0, 15.0)]:
        ra, dec = wcs.wcs_pix2world([[x, y]], 0)[0]
        sky = coadd.sky_projection.pixel_to_sky(x=x, y=y)
        assert abs(sky.ra.deg - ra) * math.cos(math.radians(dec)) < 1e-6 and abs(sky.dec.deg - dec) < 1e-6
    assert COADD_MASK_PLANES["SAT"] == 1 and coadd.mask.get("SATURATED").any()


def test_sample_catalog_cases(demo):
    rows = list(csv.DictReader(open(demo.sample_catalog)))
    notes = {r["note"] for r in rows}
    for case in (
        "inside",
        "overlap",
        "edge",
        "outside",
        "nan",
        "duplicate",
        "missing_band",
        "no_data",
        "pole",
        "2mass_star",
        "bad_dec",
        "ra_negative",
        "ra_over_360",
        "empty_id",
    ):
        assert case in notes, case
    ids = [r["object_id"] for r in rows]
    assert len(ids) != len(set(ids))
    assert any(r["ra"] == "nan" or r["dec"] == "nan" for r in rows)


def test_existing_directory_is_refused(demo):
    with pytest.raises(FileExistsError, match="overwrite"):
        make_demo_repo(demo.root)


def test_butler_subcommand(tmp_path):
    runner = CliRunner()
    result = runner.invoke(butler_cli, ["make-zooniverse-demo-repo", str(tmp_path / "cli_repo")])
    assert result.exit_code == 0, result.output
    assert "deep_coadd:     23 datasets" in result.output
    again = runner.invoke(butler_cli, ["make-zooniverse-demo-repo", str(tmp_path / "cli_repo")])
    assert again.exit_code != 0 and "--overwrite" in again.output
    # The entry point makes the command visible to the real butler script.
    listing = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "butler"), "--help"], capture_output=True, text=True
    )
    assert "make-zooniverse-demo-repo" in listing.stdout
