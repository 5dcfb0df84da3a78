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

"""The fast paths of composeRgb give exactly the numbers of the
straightforward ones: the batched pictures those made one by one, and the
sky measured without a full sort the sky measured on sorted values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import Table

from lsst.epo.zooniverse.butler.skymap_geometry import make_tan_wcs
from lsst.epo.zooniverse.formats.stamps import Stamp, Stamps
from lsst.epo.zooniverse.pipeline.compose_rgb import ChannelConfig, ComposeRgbConfig, ComposeRgbTask
from lsst.epo.zooniverse.pipeline.orientation import orient_picture, orient_to_north_up
from lsst.epo.zooniverse.pipeline.picture_batch import BATCH_SIZE, clean_planes, mix_channels, strided_samples
from lsst.epo.zooniverse.pipeline.stretch_sky import robust_sky, sample_stride, sky_black_levels


def _reference_sky(values):
    """robust_sky written plainly: np.median and boolean selection."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    kept = flat[np.isfinite(flat) & (flat != 0.0)]
    if kept.size < 16:
        return None
    for _ in range(5):
        median = float(np.median(kept))
        noise = 1.4826 * float(np.median(np.abs(kept - median)))
        if not noise > 0:
            return None
        clipped = kept[np.abs(kept - median) < 3.0 * noise]
        if clipped.size == kept.size or clipped.size < 16:
            break
        kept = clipped
    median = float(np.median(kept))
    mean = float(np.mean(kept))
    noise = 1.4826 * float(np.median(np.abs(kept - median)))
    if not noise > 0:
        return None
    return (median if abs(mean - median) > 0.3 * noise else 2.5 * median - 1.5 * mean), noise


@pytest.mark.parametrize("seed", range(6))
def test_robust_sky_matches_plain_computation(seed):
    """Large samples (searched in sorted windows, not sorted whole) with
    sources, ties, blanks and non-finite values give exactly the numbers
    of the plain computation.
    """
    rng = np.random.default_rng(seed)
    n = 250_000
    kind = seed % 3
    if kind == 0:  # Sky with sources.
        values = np.concatenate([rng.normal(3.0, 20.0, n), rng.exponential(400.0, n // 5)])
    elif kind == 1:  # Many ties.
        values = np.round(rng.normal(0.0, 4.0, n))
    else:  # Heavy tails both ways.
        values = rng.standard_cauchy(n) * 5.0
    values[rng.integers(0, len(values), 500)] = np.nan
    values[rng.integers(0, len(values), 500)] = 0.0
    values[rng.integers(0, len(values), 5)] = np.inf
    values = rng.permutation(values)
    for dtype in (np.float32, np.float64):
        typed = values.astype(dtype)
        assert robust_sky(typed) == _reference_sky(typed)


def _patch(rng, n_objects, size, wcs):
    """Stamps of three bands with NaN, infinities, bad and other mask bits,
    one stamp of another size and one object without data.
    """
    stamps = {}
    ids = [f"o{k}" for k in range(n_objects)]
    for band in "gri":
        stamps[band] = Stamps(metadata={"BAND": band}, mask_planes={"BAD": 0, "SAT": 1, "NO_DATA": 8})
        for k, object_id in enumerate(ids):
            side = size + 4 if k == 5 else size
            image = rng.normal(5.0, 30.0, (side, side)).astype(np.float32)
            image[side // 2, side // 2] += rng.exponential(3000.0)
            mask = np.zeros((side, side), np.int32)
            image[rng.integers(0, side, 3), rng.integers(0, side, 3)] = np.nan
            image[rng.integers(0, side, 2), rng.integers(0, side, 2)] = np.inf
            mask[rng.integers(0, side, 4), rng.integers(0, side, 4)] = 1 << 8
            mask[rng.integers(0, side, 4), rng.integers(0, side, 4)] = 1 << 1
            if k == 7:  # No data in any band at the same corner.
                image[:3, :3] = np.nan
            stamps[band].append(
                Stamp(image=image, mask=mask, object_id=object_id, ra=10.0, dec=0.0, coverage=1.0, wcs=wcs)
            )
    table = Table({"row_index": np.arange(n_objects), "object_id": ids})
    table["ra"] = 10.0
    table["dec"] = 0.0
    table["edge_distance"] = 5.0
    return stamps, table


def _reference_pictures(task, stamps, n_objects):
    """The pictures (and band frames) made one by one, as composeRgb made
    them before it worked on batches.
    """
    config = task.config
    used, weights, _ = task._mixing(list(stamps))
    bits = [task._bad_bits(stamps[b]) for b in used]
    backgrounds = [task._background(b) for b in used]
    objects = [[stamps[b][k] for b in used] for k in range(n_objects)]

    def planes_of(band_stamps):
        return clean_planes([s.image for s in band_stamps], [s.mask for s in band_stamps], backgrounds, bits)

    black = None
    if config.stretch.scaling == "global" and config.stretch.black_point == "sky":
        shape = objects[0][0].image.shape
        stride = sample_stride(n_objects * math.prod(shape), shape[-1])
        samples = [[], [], []]
        for band_stamps in objects:
            for k, channel in enumerate(mix_channels(planes_of(band_stamps)[0], weights)):
                samples[k].append(channel.ravel()[::stride])
        black = sky_black_levels(config.stretch, [np.concatenate(s) for s in samples])
    orientation = orient_to_north_up(objects[0][0].wcs) if config.orientation == "north_up" else (0, False)
    pictures, frames = [], []
    for band_stamps in objects:
        planes, bad = planes_of(band_stamps)
        channels = mix_channels(planes, weights)
        rgb = config.stretch.apply(*channels, black)
        rgb[np.logical_and.reduce(bad)] = 0
        pictures.append(orient_picture(rgb, band_stamps[0].wcs, *orientation, config.output_size)[0])
        if config.band_frames:
            from lsst.epo.zooniverse.pipeline.picture_batch import band_frames

            bad = [b if b.any() else None for b in bad]
            frames.append(band_frames(config, planes, bad, used, weights, channels, orientation, black))
    return pictures, frames


def _configs():
    default = ComposeRgbConfig()
    default.stretch.stretch = 400.0
    mixed = ComposeRgbConfig()
    mixed.channels["r"] = ChannelConfig(green=0.7, blue=0.5, background=2.0)
    mixed.channels["i"] = ChannelConfig(red=1.8)
    mixed.bad_mask_planes = ["NO_DATA", "SAT"]
    mixed.output_size = 16
    asinh = ComposeRgbConfig()
    asinh.stretch.algorithm = "asinh"
    asinh.stretch.minimum = [0.0, -5.0, 2.0]
    asinh.stretch.maximum = [3000.0, 1500.0, 1000.0]
    asinh.band_frames = True
    linear = ComposeRgbConfig()
    linear.stretch.algorithm = "linear"
    linear.stretch.scaling = "per_image"
    linear.orientation = "pixel"
    perceptual = ComposeRgbConfig()
    perceptual.stretch.algorithm = "perceptual"
    perceptual.stretch.maximum = [4000.0]
    perceptual.band_frames = True
    lupton_fixed = ComposeRgbConfig()
    lupton_fixed.stretch.black_point = "fixed"
    lupton_fixed.stretch.minimum = [-10.0]
    return [default, mixed, asinh, linear, perceptual, lupton_fixed]


@pytest.mark.parametrize("config_number", range(len(_configs())))
def test_batched_pictures_match_pictures_made_one_by_one(config_number):
    """More pictures than a batch holds, with a stamp of another size
    between them, give the pixels and band frames each gets alone, with
    every kind of stretch and a WCS that needs flipping and turning.
    """
    rng = np.random.default_rng(config_number)
    config = _configs()[config_number]
    size = 21
    # Flipped and turned: north up needs the orientation code.
    wcs = make_tan_wcs(10.0, 0.0, 0.2, size, size)
    wcs.wcs.cd = np.array([[0.0, 0.2 / 3600], [0.2 / 3600, 0.0]])
    wcs.wcs.set()
    n_objects = BATCH_SIZE + 20
    stamps, table = _patch(rng, n_objects, size, wcs)
    # The odd-sized stamp is a patch of its own for the reference (its
    # sky sampling stride differs); composeRgb sees the rest as one patch.
    odd = {b: Stamps([s for s in stamps[b] if s.object_id != "o5"], metadata={"BAND": b}) for b in stamps}
    for band in odd:
        odd[band].mask_planes = stamps[band].mask_planes
    table = table[table["object_id"] != "o5"]
    task = ComposeRgbTask(config=config)
    result = task.run(stamps=odd, targets_patch=table, skymap="s", tract=0, patch=0)
    pictures, frames = _reference_pictures(task, odd, n_objects - 1)
    assert len(result.rgb) == len(pictures)
    for made, expected in zip(result.rgb.images, pictures):
        np.testing.assert_array_equal(made, expected)
    if config.band_frames:
        for made, expected in zip(result.rgb.frames, frames):
            assert made.keys() == expected.keys()
            for band in made:
                np.testing.assert_array_equal(made[band], expected[band])


def test_stamps_of_another_size_are_pictured_between_batches():
    """A stamp of another size in the middle of a patch starts a new batch
    and is pictured like the others.
    """
    rng = np.random.default_rng(3)
    size = 15
    wcs = make_tan_wcs(10.0, 0.0, 0.2, size, size)
    stamps, table = _patch(rng, 12, size, wcs)
    config = ComposeRgbConfig()
    config.stretch.black_point = "fixed"
    result = ComposeRgbTask(config=config).run(
        stamps=stamps, targets_patch=table, skymap="s", tract=0, patch=0
    )
    shapes = [image.shape for image in result.rgb.images]
    assert len(shapes) == 12 and shapes[5] == (size + 4, size + 4, 3)
    alone = ComposeRgbTask(config=config).run(
        stamps={
            b: Stamps([stamps[b][5]], metadata={"BAND": b}, mask_planes=stamps[b].mask_planes) for b in stamps
        },
        targets_patch=table[5:6],
        skymap="s",
        tract=0,
        patch=0,
    )
    np.testing.assert_array_equal(result.rgb.images[5], alone.rgb.images[0])


@pytest.mark.parametrize("stride", [1, 3, 7, 101])
def test_strided_samples_match_each_plane_sampled(stride):
    """Sky samples gathered from planes of one shape are those of each
    plane sampled alone, in order: views of a parent, and planes of other
    shapes or types.
    """
    rng = np.random.default_rng(stride)
    parent = rng.normal(size=(200, 230)).astype(np.float32)
    views = [parent[y : y + 21, x : x + 21] for x, y in rng.integers(0, 170, size=(11, 2))]
    mixed = [*views[:4], np.zeros(21 * 21, np.int32).astype(np.float32), *views[4:]]
    typed = [*views[:3], views[3].astype(np.float64)]
    for planes in (views, mixed, typed, views[:1]):
        expected = np.concatenate([p.ravel()[::stride] for p in planes])
        got = strided_samples(planes, stride)
        assert got.dtype == expected.dtype
        assert np.array_equal(got, expected)
