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


"""The three tasks' ``run()`` methods on in-memory data, without a Butler,
and their config validation.
"""

from __future__ import annotations

import io
import math
import os

import astropy.wcs
import numpy as np
import pytest
from astropy.table import Table

from lsst.epo.zooniverse.butler.legacy_coadd import read_legacy_coadd, write_legacy_masked_image
from lsst.epo.zooniverse.butler.skymap_geometry import make_tan_wcs
from lsst.epo.zooniverse.demo.repo import make_demo_skymap
from lsst.epo.zooniverse.formats.rgb_collection import read_rgb_collection, write_rgb_collection
from lsst.epo.zooniverse.formats.stamps import Stamp, Stamps
from lsst.epo.zooniverse.pipeline.compose_rgb import (
    ChannelConfig,
    ComposeRgbConfig,
    ComposeRgbTask,
    orient_to_north_up,
)
from lsst.epo.zooniverse.pipeline.extract_stamps import ExtractStampsConfig, ExtractStampsTask
from lsst.epo.zooniverse.pipeline.shard_catalog import ShardCatalogTask
from lsst.pex.config import FieldValidationError
from lsst.pipe.base import NoWorkFound

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _targets(ra, dec, first=0):
    n = len(ra)
    return Table(
        {
            "object_id": [str(1000 + first + k) for k in range(n)],
            "ra": np.asarray(ra, float),
            "dec": np.asarray(dec, float),
            "row_index": np.arange(first, first + n, dtype=np.int64),
        }
    )


# ---------------------------------------------------------------------------
# shardCatalog


def test_shard_catalog_keeps_rows_in_patch_across_ra_wrap():
    skymap = make_demo_skymap()
    tract = skymap.tract(0)
    wcs = tract.wcs
    # Pixel positions: in patch 1's inner box; in the overlap of patches 0
    # and 1; far outside.  Tract 0 straddles RA 0/360.
    pixels = np.array([[480.0, 200.0], [340.0, 200.0], [5000.0, 200.0]])
    ra, dec = wcs.wcs_pix2world(pixels, 0).T
    ra = ra % 360.0
    assert ra[0] > 359 or ra[0] < 1
    shards = [_targets(ra[:2], dec[:2]), _targets(ra[2:], dec[2:], first=2)]
    task = ShardCatalogTask()
    patch0 = task.run(targets=shards, sky_map=skymap, tract=0, patch=0).targets_patch
    patch1 = task.run(targets=shards, sky_map=skymap, tract=0, patch=1).targets_patch
    assert list(patch0["row_index"]) == [1]
    assert list(patch1["row_index"]) == [0, 1]
    # Distance to the inner boundary: positive inside, negative in the overlap.
    assert patch1["edge_distance"][0] > 0
    assert patch0["edge_distance"][0] < 0 and patch1["edge_distance"][1] > 0
    assert patch1["x"][0] == pytest.approx(480.0, abs=1e-6)
    assert task.metadata["n_outside"] == 1


def test_shard_catalog_with_region_and_no_rows():
    skymap = make_demo_skymap()
    tract = skymap.tract(0)
    region = tract.sky_polygon(tract.patch_outer_bbox(4))
    ra, dec = tract.wcs.wcs_pix2world([[490.0, 480.0], [100.0, 100.0]], 0).T
    task = ShardCatalogTask()
    rows = task.run(
        targets=[_targets(ra % 360, dec)], sky_map=skymap, tract=0, patch=4, region=region
    ).targets_patch
    assert list(rows["object_id"]) == ["1000"]
    with pytest.raises(NoWorkFound):
        task.run(targets=[_targets(ra[1:] % 360, dec[1:])], sky_map=skymap, tract=0, patch=4, region=region)


# ---------------------------------------------------------------------------
# extractStamps


@pytest.fixture
def coadd(tmp_path):
    """A 200x150 coadd at parent offset (1000, 2000) with a star and a
    no-data strip, read back with lsst.images.
    """
    height, width, x0, y0 = 150, 200, 1000, 2000
    wcs = make_tan_wcs(150.0, 2.0, 0.2, 4000, 4000)
    yy, xx = np.mgrid[:height, :width]
    image = (1000 * np.exp(-0.5 * ((xx - 120.0) ** 2 + (yy - 70.0) ** 2) / 2.0**2)).astype(np.float32)
    mask = np.zeros(image.shape, np.int32)
    image[:, :20] = np.nan
    mask[:, :20] = 1 << 8  # NO_DATA
    variance = np.ones_like(image)
    path = tmp_path / "coadd.fits"
    write_legacy_masked_image(path, image=image, mask=mask, variance=variance, x0=x0, y0=y0, wcs=wcs)
    return read_legacy_coadd(path), wcs


def test_extract_stamps_centres_pads_and_sizes(coadd):
    masked_image, wcs = coadd
    star = wcs.wcs_pix2world([[1120.0, 2070.0]], 0)[0]
    edge = wcs.wcs_pix2world([[1005.0, 2070.0]], 0)[0]
    targets = _targets([star[0], edge[0]], [star[1], edge[1]])
    targets["edge_distance"] = [10.0, -3.0]
    targets["cutout_size_pixels"] = [np.nan, 11.0]
    config = ExtractStampsConfig()
    config.stamp_size = 21
    task = ExtractStampsTask(config=config)
    stamps = task.run(
        targets_patch=targets, coadd=masked_image, skymap="s", tract=1, patch=2, band="r"
    ).stamps
    assert len(stamps) == 2 and stamps.metadata["BAND"] == "r"
    star_stamp, edge_stamp = stamps
    assert star_stamp.image.shape == (21, 21) and edge_stamp.image.shape == (11, 11)
    assert np.unravel_index(np.nanargmax(star_stamp.image), (21, 21)) == (10, 10)
    assert (star_stamp.x0, star_stamp.y0) == (1110, 2060)
    assert star_stamp.coverage == 1.0 and star_stamp.edge_distance == 10.0
    # x 1000..1010 exist but 1000..1019 have no data; 995..999 are
    # outside: 15 of 11 columns lack data.
    assert edge_stamp.coverage == 0.0
    assert np.isnan(edge_stamp.image).all() and (edge_stamp.mask & (1 << stamps.mask_planes["NO_DATA"])).all()
    # The stamp's own WCS maps the star onto the stamp's centre pixel.
    x, y = star_stamp.wcs.wcs_world2pix([star], 0)[0]
    assert (x, y) == pytest.approx((10.0, 10.0), abs=1e-6)
    # Size in arcsec overrides the pixel size: 3" at 0.2"/px -> 15 px.
    config.stamp_size_arcsec = 3.0
    config.do_use_size_column = False
    stamps = (
        ExtractStampsTask(config=config)
        .run(targets_patch=targets, coadd=masked_image, skymap="s", tract=1, patch=2, band="r")
        .stamps
    )
    assert stamps[0].image.shape == (15, 15)


@pytest.mark.parametrize(
    "field, value",
    [("stamp_size", 0), ("stamp_size", 5000), ("max_stamp_size", 0), ("stamp_size_arcsec", -1.0)],
)
def test_extract_stamps_config_validation(field, value):
    config = ExtractStampsConfig()
    setattr(config, field, value)
    with pytest.raises(FieldValidationError):
        config.validate()


# ---------------------------------------------------------------------------
# composeRgb


def _stamps(band, ids, *, wcs=None, value=100.0, coverage=1.0, size=15):
    stamps = Stamps(metadata={"BAND": band})
    for k, object_id in enumerate(ids):
        image = np.full((size, size), value, np.float32)
        image[size // 2, size // 2] = value * 20
        mask = np.zeros((size, size), np.int32)
        stamps.append(
            Stamp(
                image=image,
                mask=mask,
                object_id=object_id,
                ra=10.0 + k,
                dec=0.0,
                coverage=coverage,
                edge_distance=5.0,
                wcs=wcs,
            )
        )
    return stamps


def _patch_targets(ids):
    table = _targets(np.arange(len(ids)) + 10.0, np.zeros(len(ids)))
    table["object_id"] = ids
    table["edge_distance"] = 5.0
    return table


def test_compose_rgb_missing_band_skip_and_fill():
    ids = ["a", "b"]
    stamps = {"r": _stamps("r", ids), "i": _stamps("i", ids)}  # no g: the blue channel is empty
    task = ComposeRgbTask()
    result = task.run(stamps=stamps, targets_patch=_patch_targets(ids), skymap="s", tract=0, patch=5)
    assert len(result.rgb) == 0
    assert list(result.rgb_report["status"]) == ["missing_band", "missing_band"]
    assert "blue" in result.rgb_report["detail"][0]
    config = ComposeRgbConfig()
    config.missing_band_policy = "fill"
    result = ComposeRgbTask(config=config).run(
        stamps=stamps, targets_patch=_patch_targets(ids), skymap="s", tract=0, patch=5
    )
    assert len(result.rgb) == 2 and list(result.rgb_report["status"]) == ["ok", "ok"]
    assert result.rgb.index["bands"][0] == "i,r"
    assert list(result.rgb_report["file"]) == ["a.png", "b.png"]


def test_compose_rgb_no_coverage_and_no_coadd():
    ids = ["a"]
    stamps = {b: _stamps(b, ids, coverage=0.0) for b in "gri"}
    result = ComposeRgbTask().run(
        stamps=stamps, targets_patch=_patch_targets(ids), skymap="s", tract=0, patch=0
    )
    assert list(result.rgb_report["status"]) == ["no_data"]
    stamps = {b: _stamps(b, ids, coverage=0.3) for b in "gri"}
    result = ComposeRgbTask().run(
        stamps=stamps, targets_patch=_patch_targets(ids), skymap="s", tract=0, patch=0
    )
    assert list(result.rgb_report["status"]) == ["low_coverage"]
    result = ComposeRgbTask().run(stamps={}, targets_patch=_patch_targets(ids), skymap="s", tract=0, patch=0)
    assert list(result.rgb_report["status"]) == ["no_coadd"] and len(result.rgb) == 0


def test_compose_rgb_same_stretch_same_colours_across_patches():
    ids = ["a"]
    stamps = {b: _stamps(b, ids, value=50.0 * (k + 1)) for k, b in enumerate("gri")}
    one = ComposeRgbTask().run(stamps=stamps, targets_patch=_patch_targets(ids), skymap="s", tract=0, patch=0)
    two = ComposeRgbTask().run(stamps=stamps, targets_patch=_patch_targets(ids), skymap="s", tract=3, patch=7)
    assert np.array_equal(one.rgb.images[0], two.rgb.images[0])
    # i is brightest and maps to red by default.
    pixel = one.rgb.images[0][0, 0]
    assert pixel[0] > pixel[1] > pixel[2]


def test_compose_rgb_mixes_bands_as_documented():
    """Each channel is the mean of weight times band over the bands that
    feed it, after the background is subtracted, with ``bad_mask_planes``
    and non-finite pixels set to zero; checked pixel for pixel through the
    linear stretch.  A weight is a gain also when one band feeds a channel
    (issue 14: it used to have no effect there).
    """
    rng = np.random.default_rng(11)
    size = 9
    wcs = make_tan_wcs(10.0, 0.0, 0.2, size, size)  # north up, east left
    ids = ["a", "b"]
    stamps = {}
    for band in "gri":
        stamps[band] = Stamps(metadata={"BAND": band}, mask_planes={"BAD": 0, "SAT": 1, "NO_DATA": 8})
        for k, object_id in enumerate(ids):
            image = rng.uniform(0.0, 10.0, (size, size)).astype(np.float32)
            mask = np.zeros((size, size), np.int32)
            image[1, 2] = np.nan
            image[2, 3] = np.inf
            mask[3, 4] = 1 << 8  # NO_DATA: bad by default
            mask[4, 5] = 1 << 1  # SAT: not a bad plane by default
            stamps[band].append(
                Stamp(image=image, mask=mask, object_id=object_id, ra=10.0, dec=0.0, coverage=1.0, wcs=wcs)
            )
    config = ComposeRgbConfig()
    config.channels = {
        "i": ChannelConfig(red=1.0, background=1.0),
        "r": ChannelConfig(red=3.0, green=1.0, background=0.5),
        "g": ChannelConfig(blue=2.0),
    }
    config.stretch.algorithm = "linear"
    config.stretch.black_point = "fixed"  # black at 0, as the expected pixels below
    config.stretch.minimum = [0.0]
    config.stretch.maximum = [12.0]
    result = ComposeRgbTask(config=config).run(
        stamps=stamps, targets_patch=_patch_targets(ids), skymap="s", tract=0, patch=0
    )
    assert len(result.rgb) == 2

    def plane(band, k):
        stamp = stamps[band][k]
        values = stamp.image.astype(np.float64) - config.channels[band].background
        values[~np.isfinite(values) | ((stamp.mask & (1 << 8)) != 0)] = 0.0
        return values

    for k in range(2):
        red = (1.0 * plane("i", k) + 3.0 * plane("r", k)) / 2
        channels = [red, plane("r", k), 2.0 * plane("g", k)]
        expected = np.stack(
            [np.floor(255 * np.clip(c / 12.0, 0.0, 1.0) + 1e-9) for c in channels], axis=-1
        ).astype(np.uint8)
        picture = result.rgb.images[k][::-1]  # row 0 is the top: the picture is north up
        assert np.abs(picture.astype(int) - expected.astype(int)).max() <= 1
        assert (picture[1, 2] == expected[1, 2]).all() and picture[3, 4, 2] == 0 and picture[2, 3, 1] == 0
        assert picture[4, 5, 2] == expected[4, 5, 2] > 0  # SAT is kept


def _linear_config(channels, maximum=12.0):
    config = ComposeRgbConfig()
    config.channels = channels
    config.stretch.algorithm = "linear"
    config.stretch.black_point = "fixed"
    config.stretch.minimum = [0.0]
    config.stretch.maximum = [maximum]
    return config


def test_compose_rgb_weight_of_a_band_alone_in_its_channel_is_a_gain():
    # The 2MASS override's weights (1.3) scale DN: with equal input
    # planes, a channel of weight 1.3 is 1.3 times as bright.
    ids = ["a"]
    stamps = {band: _stamps(band, ids, value=4.0) for band in "JHK"}
    config = _linear_config(
        {
            "K": ChannelConfig(red=1.3),
            "H": ChannelConfig(green=1.0),
            "J": ChannelConfig(blue=0.5),
        }
    )
    picture = (
        ComposeRgbTask(config=config)
        .run(stamps=stamps, targets_patch=_patch_targets(ids), skymap="s", tract=0, patch=0)
        .rgb.images[0]
    )
    expected = [math.floor(255 * v / 12.0 + 1e-9) for v in (4.0 * 1.3, 4.0, 2.0)]
    assert np.abs(picture[1, 1].astype(int) - expected).max() <= 1, (picture[1, 1], expected)


@pytest.mark.parametrize("mapped", [None, ChannelConfig(green=2.0, background=1.0)])
def test_compose_rgb_single_band_gives_grey_pictures(mapped):
    ids = ["a", "b"]
    stamps = {"F200W": _stamps("F200W", ids, value=5.0)}
    channels = {"i": ChannelConfig(red=1.0), "r": ChannelConfig(green=1.0), "g": ChannelConfig(blue=1.0)}
    if mapped is not None:
        channels["F200W"] = mapped
    config = _linear_config(channels)
    result = ComposeRgbTask(config=config).run(
        stamps=stamps, targets_patch=_patch_targets(ids), skymap="s", tract=0, patch=0
    )
    assert len(result.rgb) == 2 and list(result.rgb_report["status"]) == ["ok", "ok"]
    value = 5.0 if mapped is None else (5.0 - 1.0) * 2.0
    pixel = result.rgb.images[0][1, 1]
    assert pixel[0] == pixel[1] == pixel[2] == math.floor(255 * value / 12.0 + 1e-9)
    assert list(result.rgb.index["bands"]) == ["F200W", "F200W"]

    config.single_band_policy = "channels"
    result = ComposeRgbTask(config=config).run(
        stamps=stamps, targets_patch=_patch_targets(ids), skymap="s", tract=0, patch=0
    )
    expected = "no_coadd" if mapped is None else "missing_band"
    assert len(result.rgb) == 0 and set(result.rgb_report["status"]) == {expected}


def test_compose_rgb_single_band_mapped_to_every_channel_keeps_its_colours():
    ids = ["a"]
    stamps = {"r": _stamps("r", ids, value=6.0)}
    config = _linear_config({"r": ChannelConfig(red=1.0, green=0.5, blue=0.25)})
    picture = (
        ComposeRgbTask(config=config)
        .run(stamps=stamps, targets_patch=_patch_targets(ids), skymap="s", tract=0, patch=0)
        .rgb.images[0]
    )
    assert list(picture[1, 1]) == [math.floor(255 * v / 12.0 + 1e-9) for v in (6.0, 3.0, 1.5)]


@pytest.mark.parametrize("angle", [0, 90, 180, 270, 30])
def test_compose_rgb_turns_pictures_north_up(angle):
    """A stamp grid rotated on the sky: the picture comes out north up and
    east left (to the nearest quarter turn), and its WCS follows it.
    """
    size = 21
    wcs = astropy.wcs.WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [30.0, -10.0]
    wcs.wcs.crpix = [11.0, 11.0]
    scale = 0.2 / 3600
    theta = math.radians(angle)
    wcs.wcs.cd = scale * np.array([[-math.cos(theta), math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    # A bright pixel 6 px north of the centre, in the stamp's own grid.
    north_x, north_y = wcs.wcs_world2pix([[30.0, -10.0 + 6 * scale]], 0)[0]
    stamps = {}
    for band in "gri":
        stamp_set = _stamps(band, ["a"], wcs=wcs, value=0.0, size=size)
        stamp_set[0].image[int(round(north_y)), int(round(north_x))] = 5000.0
        stamps[band] = stamp_set
    config = ComposeRgbConfig()
    config.output_size = 0
    result = ComposeRgbTask(config=config).run(
        stamps=stamps, targets_patch=_patch_targets(["a"]), skymap="s", tract=0, patch=0
    )
    picture = result.rgb.images[0].sum(axis=2)
    row, column = np.unravel_index(np.argmax(picture), picture.shape)
    centre = (size - 1) / 2
    # North is up (smaller row), within the residual rotation.
    assert row < centre - 4 and abs(column - centre) <= 4, (row, column)
    picture_wcs = result.rgb.wcs[0]
    x, y = picture_wcs.wcs_world2pix([[30.0, -10.0 + 6 * scale]], 0)[0]
    assert abs(x - column) <= 0.5 and abs((size - 1 - y) - row) <= 0.5
    turns, flip = orient_to_north_up(wcs)
    assert not flip


def test_compose_rgb_output_size_keeps_wcs():
    size = 15
    wcs = make_tan_wcs(30.0, -10.0, 0.2, size, size)
    stamps = {b: _stamps(b, ["a"], wcs=wcs, size=size) for b in "gri"}
    config = ComposeRgbConfig()
    config.output_size = 60
    result = ComposeRgbTask(config=config).run(
        stamps=stamps, targets_patch=_patch_targets(["a"]), skymap="s", tract=0, patch=0
    )
    assert result.rgb.images[0].shape == (60, 60, 3)
    x, y = result.rgb.wcs[0].wcs_world2pix([[30.0, -10.0]], 0)[0]
    assert (x, y) == pytest.approx((29.5, 29.5), abs=1e-6)


def test_compose_rgb_config_validation():
    config = ComposeRgbConfig()
    config.channels = {"r": ChannelConfig(green=1.0)}
    with pytest.raises(FieldValidationError, match="red"):
        config.validate()
    config = ComposeRgbConfig()
    config.channels["g"] = ChannelConfig(red=0.0, green=0.0, blue=0.0)
    with pytest.raises(FieldValidationError):
        config.validate()
    for field, value in (("min_coverage", 1.5), ("output_size", 4)):
        config = ComposeRgbConfig()
        setattr(config, field, value)
        with pytest.raises(FieldValidationError):
            config.validate()
    config = ComposeRgbConfig()
    config.stretch.Q = -1.0
    with pytest.raises(FieldValidationError):
        config.validate()


def _rotated_wcs(angle, size):
    wcs = astropy.wcs.WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [30.0, -10.0]
    wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    scale = 0.2 / 3600
    theta = math.radians(angle)
    wcs.wcs.cd = scale * np.array([[-math.cos(theta), math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    wcs.wcs.set()
    return wcs


def _star_stamps(wcs, size, ids=("a", "b")):
    """g, r, i stamps: a star A bright in every band, a star B bright only
    in i and a star C bright only in g, at different stamp pixels.
    """
    stars = {"A": (4, 13), "B": (15, 5), "C": (7, 3)}  # (x, y) in the stamp grid
    stamps = {}
    for band in "gri":
        stamp_set = _stamps(band, list(ids), wcs=wcs, value=0.0, size=size)
        for stamp in stamp_set:
            image = stamp.image
            image[:] = 1.0
            image[stars["A"][1], stars["A"][0]] = 3000.0
            if band == "i":
                image[stars["B"][1], stars["B"][0]] = 800.0
            if band == "g":
                image[stars["C"][1], stars["C"][0]] = 800.0
        stamps[band] = stamp_set
    return stamps, stars


@pytest.mark.parametrize("angle, output_size", [(0, 0), (90, 0), (180, 40), (270, 0), (30, 33)])
def test_compose_rgb_band_frames(angle, output_size, tmp_path):
    from zooniverse_test_utils import check_png_bytes

    size = 21
    wcs = _rotated_wcs(angle, size)
    stamps, stars = _star_stamps(wcs, size)
    # "c" lacks an i stamp and "d" has low coverage: no picture, no frames.
    ids = ["a", "b", "c", "d"]
    stamps["g"].append(_stamps("g", ["c"], wcs=wcs, size=size)[0])
    stamps["r"].append(_stamps("r", ["c"], wcs=wcs, size=size)[0])
    for band in "gri":
        stamps[band].append(_stamps(band, ["d"], wcs=wcs, size=size, coverage=0.1)[0])
    config = ComposeRgbConfig()
    config.output_size = output_size
    config.stretch.stretch = 20000.0  # Nothing saturates: one brightest pixel.
    targets = _patch_targets(ids)
    plain = ComposeRgbTask(config=config).run(
        stamps=stamps, targets_patch=targets, skymap="s", tract=0, patch=0
    )
    assert plain.rgb.frames is None
    config.band_frames = True
    config.validate()
    result = ComposeRgbTask(config=config).run(
        stamps=stamps, targets_patch=targets, skymap="s", tract=0, patch=0
    )
    # Pictures, index and report are those made without frames.
    assert list(result.rgb_report["status"]) == ["ok", "ok", "missing_band", "low_coverage"]
    assert result.rgb_report.pformat(max_lines=-1, max_width=-1) == plain.rgb_report.pformat(
        max_lines=-1, max_width=-1
    )
    assert result.rgb.index.pformat(max_lines=-1, max_width=-1) == plain.rgb.index.pformat(
        max_lines=-1, max_width=-1
    )
    assert all(np.array_equal(x, y) for x, y in zip(result.rgb.images, plain.rgb.images))
    assert len(result.rgb.frames) == len(result.rgb) == 2
    for k, (picture, frames, picture_wcs) in enumerate(
        zip(result.rgb.images, result.rgb.frames, result.rgb.wcs)
    ):
        assert list(frames) == ["g", "i", "r"]  # The bands used, in order.
        for frame in frames.values():
            assert frame.dtype == np.uint8 and frame.shape == picture.shape[:2]
        # Star A: the brightest pixel of the picture and of every frame.
        peak = np.unravel_index(np.argmax(picture.astype(int).sum(axis=2)), picture.shape[:2])
        for band, frame in frames.items():
            assert np.unravel_index(np.argmax(frame), frame.shape) == peak, band
        # Where each star is in the picture, from its WCS.
        height = picture.shape[0]
        where = {}
        for name, (x, y) in stars.items():
            sky = wcs.wcs_pix2world([[x, y]], 0)
            u, v = picture_wcs.wcs_world2pix(sky, 0)[0]
            where[name] = (int(round(height - 1 - v)), int(round(u)))
        assert where["A"] == peak
        # B is bright in i only, C in g only; r sees neither.
        assert frames["i"][where["B"]] > frames["g"][where["B"]]
        assert frames["i"][where["B"]] > frames["r"][where["B"]]
        assert frames["g"][where["C"]] > frames["i"][where["C"]]
        assert frames["g"][where["C"]] > frames["r"][where["C"]]
        # The red channel (i) is brighter at B than blue (g), and vice versa
        # at C.
        assert picture[where["B"]][0] > picture[where["B"]][2]
        assert picture[where["C"]][2] > picture[where["C"]][0]
    # Through the ZIP: grey PNGs that pngcheck accepts, read back equal.
    buffer = io.BytesIO()
    write_rgb_collection(result.rgb, buffer)
    read = read_rgb_collection(io.BytesIO(buffer.getvalue()))
    assert read.equals(result.rgb)
    assert read.frame_files[0] == {"g": "a+g.png", "i": "a+i.png", "r": "a+r.png"}
    import zipfile

    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        for band in "gri":
            data = archive.read(f"b+{band}.png")
            assert data[24:26] == bytes([8, 0])  # 8-bit grey (IHDR bit depth, colour type)
            check_png_bytes(data, tmp_path, name=f"b{band}.png")


@pytest.mark.parametrize("gain", [1.0, 1.7])
@pytest.mark.parametrize("algorithm", ["asinh", "linear"])
@pytest.mark.parametrize("scaling", ["global", "per_image"])
def test_compose_rgb_band_frames_match_single_band_channels(algorithm, scaling, gain):
    """With per-band stretches and one band per channel, a band's frame is
    exactly its channel of the RGB picture: same levels, same pixels (with
    the band's weight applied to both).
    """
    size = 21
    wcs = _rotated_wcs(90, size)
    stamps, _ = _star_stamps(wcs, size)
    config = ComposeRgbConfig()
    config.channels["r"] = ChannelConfig(green=gain)
    config.band_frames = True
    config.output_size = 30
    config.stretch.algorithm = algorithm
    config.stretch.scaling = scaling
    config.stretch.minimum = [0.0, -5.0, 2.0]
    config.stretch.maximum = [3000.0, 1500.0, 1000.0]
    result = ComposeRgbTask(config=config).run(
        stamps=stamps, targets_patch=_patch_targets(["a", "b"]), skymap="s", tract=0, patch=0
    )
    for picture, frames in zip(result.rgb.images, result.rgb.frames):
        for band, channel in (("i", 0), ("r", 1), ("g", 2)):  # the default channels
            np.testing.assert_array_equal(frames[band], picture[:, :, channel])


@pytest.mark.parametrize("algorithm", ["lupton", "perceptual"])
@pytest.mark.parametrize("scaling", ["global", "per_image"])
def test_compose_rgb_band_frames_other_stretches(algorithm, scaling):
    size = 21
    stamps, stars = _star_stamps(None, size, ids=("a",))
    config = ComposeRgbConfig()
    config.band_frames = True
    config.stretch.algorithm = algorithm
    config.stretch.scaling = scaling
    config.stretch.stretch = 20000.0
    config.stretch.maximum = [4000.0]
    # Per-image levels between the star peaks (the stamps are flat elsewhere).
    config.stretch.per_image_percentiles = [0.0, 99.9]
    result = ComposeRgbTask(config=config).run(
        stamps=stamps, targets_patch=_patch_targets(["a"]), skymap="s", tract=0, patch=0
    )
    frames = result.rgb.frames[0]
    # No WCS: the picture is the stamp with row 0 at the top.
    b = (size - 1 - stars["B"][1], stars["B"][0])
    c = (size - 1 - stars["C"][1], stars["C"][0])
    assert frames["i"][b] > frames["g"][b] and frames["g"][c] > frames["i"][c]
    if scaling == "global":
        # The same global stretch whatever the other bands hold.
        assert np.array_equal(frames["r"], _frame_of_identical_band(config, stamps, "r"))
    else:
        _frame_of_identical_band(config, stamps, "r")


def _frame_of_identical_band(config, stamps, band):
    """The frame of ``band`` when every band holds its image."""
    same = dict.fromkeys("gri", stamps[band])
    result = ComposeRgbTask(config=config).run(
        stamps=same, targets_patch=_patch_targets(["a"]), skymap="s", tract=0, patch=0
    )
    frames = result.rgb.frames[0]
    assert np.array_equal(frames["g"], frames["i"]) and np.array_equal(frames["g"], frames["r"])
    # A grey picture's frames are that picture (to rounding, for perceptual).
    assert np.abs(frames["g"].astype(int) - result.rgb.images[0].astype(int).mean(axis=2)).max() <= 1
    return frames[band]


def test_compose_rgb_band_frames_config():
    config = ComposeRgbConfig()
    assert config.band_frames is False
    config.channels["g/x"] = ChannelConfig(blue=1.0)
    config.validate()  # Band names only matter for frames.
    config.band_frames = True
    with pytest.raises(FieldValidationError, match="g/x"):
        config.validate()
    config = ComposeRgbConfig()
    with pytest.raises(FieldValidationError):
        config.band_frames = "sometimes"
    # The shipped override file turns frames on and validates.
    config = ComposeRgbConfig()
    config.load(os.path.join(ROOT, "config", "composeRgb_flipbook.py"))
    assert config.band_frames is True
    config.validate()


def test_compose_rgb_no_data_is_black_with_the_sky_black_point():
    # The sky black point puts zero (a bad pixel's value) above black: a
    # pixel bad in every band must still be shown black, and a band's bad
    # pixels black in its band frame.
    ids = ["a"]
    rng = np.random.default_rng(3)
    stamps = {}
    for band in "gri":
        stamps[band] = _stamps(band, ids, value=0.0, size=31)
        stamps[band].mask_planes["NO_DATA"] = 8
        stamp = stamps[band][0]
        stamp.image[...] = rng.normal(0.0, 5.0, stamp.image.shape).astype(np.float32)
        stamp.mask[:4, :] = 1 << 8  # padding at a coadd edge, in every band
    stamps["g"][0].mask[10, 10] = 1 << 8  # bad in g only
    config = ComposeRgbConfig()
    config.band_frames = True
    assert config.stretch.black_point == "sky"
    result = ComposeRgbTask(config=config).run(
        stamps=stamps, targets_patch=_patch_targets(ids), skymap="s", tract=0, patch=0
    )
    picture = result.rgb.images[0][::-1]  # row 0 at the bottom, as the stamps
    assert (picture[:4] == 0).all()
    assert (picture[4:].max(axis=2) > 0).mean() > 0.9  # the sky is not black
    frame = result.rgb.frames[0]["g"][::-1]
    assert frame[10, 10] == 0 and (frame[:4] == 0).all()


@pytest.mark.parametrize("quarter_turns", [0, 1, 2, 3])
@pytest.mark.parametrize("flip_x", [False, True])
@pytest.mark.parametrize("output_size", [0, 37])
def test_picture_wcs_keeps_sip_terms_through_turns(quarter_turns, flip_x, output_size):
    # A TAN-SIP stamp WCS: after the north-up turn (and a resize) the
    # picture's WCS, as written in its text chunk and read back, puts every
    # picture pixel where the stamp's WCS puts the stamp pixel it came from.
    from lsst.epo.zooniverse.formats.wcs_metadata import wcs_from_header_string, wcs_to_header_string
    from lsst.epo.zooniverse.pipeline.orientation import orient_picture

    height, width = 21, 25
    wcs = astropy.wcs.WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [9.0, 12.0]
    wcs.wcs.cd = np.array([[-5e-5, 1e-6], [2e-6, 5e-5]])
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    a[2, 0], a[1, 1], a[0, 2], a[3, 0] = 3e-4, -2e-4, 1e-4, 2e-5
    b[2, 0], b[1, 1], b[0, 2], b[0, 3] = -1e-4, 2e-4, 3e-4, -3e-5
    wcs.sip = astropy.wcs.Sip(a, b, None, None, wcs.wcs.crpix)
    wcs.wcs.set()
    # Each stamp pixel's value is its own index, so the picture says where
    # each of its pixels came from (without resizing).
    stamp = np.zeros((height, width, 3), np.uint8)
    picture, picture_wcs = orient_picture(stamp, wcs, quarter_turns, flip_x, output_size)
    assert picture_wcs.sip is not None
    read = wcs_from_header_string(wcs_to_header_string(picture_wcs))
    size = picture.shape[0]
    # The four picture corners and centre (0-based, y up) map to stamp
    # pixels through the affine map of the orientation; compare on the sky.
    points = np.array(
        [[0, 0], [picture.shape[1] - 1, 0], [0, size - 1], [picture.shape[1] - 1, size - 1]], float
    )
    ra, dec = read.all_pix2world(points[:, 0], points[:, 1], 0)
    x, y = wcs.all_world2pix(ra, dec, 0)
    # Where those sky positions fall on the stamp must be a stamp pixel grid
    # position consistent with the orientation: corners go to corners.
    corners = {(round(float(u), 6), round(float(v), 6)) for u, v in zip(x, y)}
    if output_size == 0:
        expected = {(0.0, 0.0), (width - 1.0, 0.0), (0.0, height - 1.0), (width - 1.0, height - 1.0)}
    else:
        scale_x, scale_y = (width, height) if quarter_turns % 2 == 0 else (height, width)
        half = 0.5 * np.array([scale_x, scale_y]) / output_size - 0.5
        low_x, low_y = half
        high_x, high_y = (output_size - 1 + 0.5) * np.array([scale_x, scale_y]) / output_size - 0.5
        if quarter_turns % 2:
            low_x, low_y, high_x, high_y = low_y, low_x, high_y, high_x
        expected = {(round(u, 6), round(v, 6)) for u in (low_x, high_x) for v in (low_y, high_y)}
    assert corners == expected, (corners, expected)
