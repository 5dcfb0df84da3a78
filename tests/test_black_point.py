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

"""The sky black point of `StretchConfig` (``black_point="sky"``, issue
14): the robust sky level and noise, the black level that follows them,
per picture and per patch, and the fractions of pure-black pixels it
gives on a sky-dominated field.
"""

import math

import numpy as np
import pytest
from astropy.table import Table

from lsst.epo.zooniverse.formats.stamps import Stamp, Stamps
from lsst.epo.zooniverse.pipeline.compose_rgb import ComposeRgbConfig, ComposeRgbTask
from lsst.epo.zooniverse.pipeline.picture_batch import strided_samples
from lsst.epo.zooniverse.pipeline.stretch import StretchConfig, asinh_rgb, linear_rgb, lupton_rgb
from lsst.epo.zooniverse.pipeline.stretch_parameters import global_stretch_parameters, stretch_parameters
from lsst.epo.zooniverse.pipeline.stretch_sky import (
    MAX_SKY_SAMPLES,
    robust_sky,
    sample_stride,
    sky_black_levels,
)

NOISE = (3.0, 2.0, 1.5)
SKY = (10.0, -4.0, 0.5)


def sky_field(shape=(96, 96), seed=7, noise=NOISE, sky=SKY, n_sources=25):
    """Three bands of Gaussian sky noise (different levels and sigmas)
    with a few positive sources on ~10 % of the pixels.
    """
    rng = np.random.default_rng(seed)
    bands = [rng.normal(level, sigma, shape) for level, sigma in zip(sky, noise)]
    y, x = np.mgrid[: shape[0], : shape[1]]
    for _ in range(n_sources):
        x0, y0 = rng.uniform(0, shape[1]), rng.uniform(0, shape[0])
        profile = rng.uniform(20, 2000) * np.exp(
            -((x - x0) ** 2 + (y - y0) ** 2) / (2 * rng.uniform(1, 3) ** 2)
        )
        for band, sigma in zip(bands, noise):
            band += sigma * profile
    return bands


def pure_black(rgb):
    return float((rgb.max(axis=-1) == 0).mean())


def test_robust_sky_finds_sky_level_and_noise_under_sources():
    for band, level, sigma in zip(sky_field(), SKY, NOISE):
        measured_level, measured_noise = robust_sky(band)
        # Source wings bias both a little.
        assert abs(measured_level - level) < 0.1 * sigma
        assert abs(measured_noise / sigma - 1) < 0.12


def test_robust_sky_leaves_out_blank_and_non_finite_pixels():
    band = sky_field()[0]
    reference = robust_sky(band)
    blanked = band.copy()
    blanked[:, :50] = 0.0  # more than half of the picture without data
    blanked[0, 60:] = np.nan
    level, noise = robust_sky(blanked)
    assert abs(level - reference[0]) < 0.2 * NOISE[0] and abs(noise / reference[1] - 1) < 0.1
    assert robust_sky(np.zeros((10, 10))) is None
    assert robust_sky(np.full((10, 10), 5.0)) is None  # no noise: cannot be measured
    assert robust_sky(np.arange(1.0, 10.0)) is None  # too few pixels


def test_black_level_is_sky_minus_k_sigma_of_the_noisiest_channel():
    config = StretchConfig()
    config.sky_sigma_below = 2.5
    bands = sky_field()
    black = sky_black_levels(config, bands)
    skies = [robust_sky(band) for band in bands]
    largest = max(noise for _, noise in skies)
    assert black == pytest.approx([level - 2.5 * largest for level, _ in skies], rel=0, abs=1e-12)
    # A channel that cannot be measured keeps its configured level.
    assert sky_black_levels(config, [bands[0], np.zeros((4, 4)), bands[2]])[1] is None
    parameters = global_stretch_parameters(config, [black[0], None, black[2]])
    assert parameters["minimum"] == [black[0], 0.0, black[2]]


def test_sky_black_point_keeps_the_sky_out_of_pure_black():
    bands = sky_field()
    config = StretchConfig()
    config.stretch = 50.0
    config.validate()
    sky = config.apply(*bands)
    config.black_point = "fixed"
    fixed = config.apply(*[band - level for band, level in zip(bands, SKY)])  # perfectly sky-subtracted
    assert pure_black(fixed) > 0.1
    assert pure_black(sky) < 0.03
    # No channel blackens more than about Phi(-2) = 2.3 % of the pixels.
    assert max(float((sky[..., c] == 0).mean()) for c in range(3)) < 0.035
    # The sky is a neutral grey: equal mean channel values off sources.
    quiet = np.all(
        [np.abs(band - level) < 2 * sigma for band, level, sigma in zip(bands, SKY, NOISE)], axis=0
    )
    means = [float(sky[..., c][quiet].mean()) for c in range(3)]
    assert max(means) - min(means) < 2.0, means
    # Sources do not saturate more than with the fixed black point.
    assert (sky == 255).any(axis=-1).mean() <= (fixed == 255).any(axis=-1).mean() + 0.002


@pytest.mark.parametrize("algorithm", ["lupton", "asinh", "linear"])
def test_global_sky_black_point_uses_given_levels(algorithm):
    bands = sky_field()
    config = StretchConfig()
    config.algorithm = algorithm
    config.maximum = [500.0]
    config.validate()
    black = sky_black_levels(config, bands)
    measured = config.apply(*bands)
    assert np.array_equal(measured, config.apply(*bands, black))
    function = {"lupton": lupton_rgb, "asinh": asinh_rgb, "linear": linear_rgb}[algorithm]
    kwargs = global_stretch_parameters(config)
    kwargs["minimum"] = black
    assert np.array_equal(measured, function(*bands, **kwargs))
    # Given levels: a picture does not depend on the rest of the image.
    other = [band.copy() for band in bands]
    for band in other:
        band[:, 48:] += 100.0
    assert np.array_equal(
        config.apply(*other, [-1.0, -2.0, -3.0])[:, :48], config.apply(*bands, [-1.0, -2.0, -3.0])[:, :48]
    )


def test_levels_above_maximum_fall_back_to_minimum():
    config = StretchConfig()
    config.algorithm = "linear"
    config.minimum = [0.0]
    config.maximum = [10.0]
    assert global_stretch_parameters(config, [20.0, 5.0, None])["minimum"] == [0.0, 5.0, 0.0]
    config.algorithm = "lupton"
    assert global_stretch_parameters(config, [20.0, 5.0, None])["minimum"] == [20.0, 5.0, 0.0]


def test_per_image_sky_black_point():
    # Few sources: with many bright ones the per-image white level puts
    # the sky below 1 DN whatever the black level.
    bands = sky_field(n_sources=5)
    config = StretchConfig()
    config.scaling = "per_image"
    kwargs = stretch_parameters(config, tuple(bands))
    assert kwargs["minimum"] == pytest.approx(sky_black_levels(config, bands), rel=0, abs=1e-9)
    assert pure_black(config.apply(*bands)) < 0.01
    config.black_point = "fixed"
    assert pure_black(config.apply(*bands)) > 0.05
    fixed = stretch_parameters(config, tuple(bands))
    assert fixed["minimum"] == pytest.approx([float(np.percentile(b, 1.0)) for b in bands], rel=1e-6)


def test_perceptual_ignores_the_black_point():
    bands = sky_field()
    config = StretchConfig()
    config.algorithm = "perceptual"
    config.maximum = [500.0]
    sky = config.apply(*bands)
    config.black_point = "fixed"
    assert np.array_equal(sky, config.apply(*bands))


def test_sample_stride():
    assert sample_stride(100, 10) == 1
    stride = sample_stride(10_000_000, 64, limit=1_000_000)
    assert stride >= 10 and math.gcd(stride, 64) == 1


def test_sampled_sky_matches_every_pixel():
    """The sky of a patch of 800 stamps of 101 px measured on the sampled
    pixels (at most MAX_SKY_SAMPLES) is that of all its pixels to a small
    fraction of the noise, with a source in each stamp's centre and a
    gradient along the rows (which a stride sharing a factor with the row
    length would sample unevenly).
    """
    rng = np.random.default_rng(11)
    n_stamps, size, sigma = 800, 101, 16.0
    stamps = rng.normal(1.5, sigma, (n_stamps, size, size)).astype(np.float32)
    stamps += np.linspace(-0.5 * sigma, 0.5 * sigma, size, dtype=np.float32)
    yy, xx = np.mgrid[:size, :size] - size // 2
    stamps += (50 * sigma * np.exp(-(xx**2 + yy**2) / 8.0)).astype(np.float32)
    stride = sample_stride(stamps.size, size)
    assert stride > 1 and stamps.size // stride <= MAX_SKY_SAMPLES
    everything = robust_sky(stamps)
    sampled = robust_sky(strided_samples(list(stamps), stride))
    assert abs(sampled[0] - everything[0]) < 0.02 * everything[1]
    assert abs(sampled[1] - everything[1]) < 0.01 * everything[1]


def _noisy_stamps(band, ids, sigma, seed, size=21):
    rng = np.random.default_rng(seed)
    stamps = Stamps(metadata={"BAND": band})
    for k, object_id in enumerate(ids):
        image = rng.normal(0.0, sigma, (size, size)).astype(np.float32)
        image[size // 2 - 1 : size // 2 + 2, size // 2 - 1 : size // 2 + 2] += 40 * sigma * (k + 1)
        stamps.append(
            Stamp(
                image=image,
                mask=np.zeros((size, size), np.int32),
                object_id=object_id,
                ra=10.0,
                dec=0.0,
                coverage=1.0,
                wcs=None,
            )
        )
    return stamps


def _targets(ids):
    return Table(
        {
            "object_id": ids,
            "ra": [10.0] * len(ids),
            "dec": [0.0] * len(ids),
            "row_index": list(range(len(ids))),
            "edge_distance": [5.0] * len(ids),
        }
    )


def test_compose_rgb_measures_the_sky_per_patch_and_reruns_identically():
    ids = ["a", "b", "c", "d"]
    stamps = {
        band: _noisy_stamps(band, ids, sigma, seed)
        for band, sigma, seed in zip("gri", (2.0, 3.0, 5.0), (1, 2, 3))
    }
    config = ComposeRgbConfig()
    config.orientation = "pixel"
    config.band_frames = True
    task = ComposeRgbTask(config=config)
    result = task.run(stamps=stamps, targets_patch=_targets(ids), skymap="s", tract=0, patch=0)
    assert len(result.rgb) == 4
    assert set(result.rgb.index["stretch"]) == {"lupton(Q=8,stretch=400,black=sky-2sigma)"}
    # One black level per channel for the whole patch: i red, r green, g blue.
    pooled = [np.concatenate([s.image.ravel() for s in stamps[band]]) for band in "irg"]
    black = sky_black_levels(config.stretch, pooled)
    for k, object_id in enumerate(ids):
        channels = [next(s.image for s in stamps[band] if s.object_id == object_id) for band in "irg"]
        expected = config.stretch.apply(*channels, black)
        assert np.array_equal(result.rgb.images[k][::-1], expected)
    assert pure_black(np.concatenate(result.rgb.images)) < 0.03
    again = ComposeRgbTask(config=config).run(
        stamps=stamps, targets_patch=_targets(ids), skymap="s", tract=0, patch=0
    )
    assert result.rgb.equals(again.rgb)
