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

"""Tests of `lsst.epo.zooniverse.pipeline.stretch`: agreement with astropy's
Lupton and per-band stretches, non-finite pixels, global and per-image
scaling, the perceptual mode, and `StretchConfig` validation and
descriptions.
"""

import math
import warnings

import numpy as np
import pytest
from astropy.visualization import (
    AsinhStretch,
    LinearStretch,
    ManualInterval,
    make_lupton_rgb,
    make_rgb,
)

from lsst.epo.zooniverse.pipeline.perceptual_stretch import linear_rgb_from_oklab, oklab_from_linear_rgb
from lsst.epo.zooniverse.pipeline.stretch import (
    StretchConfig,
    asinh_rgb,
    finite_or_zero,
    linear_rgb,
    lupton_rgb,
    perceptual_rgb,
)
from lsst.epo.zooniverse.pipeline.stretch_parameters import percentiles
from lsst.epo.zooniverse.pipeline.stretch_sky import sky_black_levels
from lsst.pex.config import FieldValidationError

ALGORITHMS = ("lupton", "asinh", "linear", "perceptual")


def _gaussian(shape, x0, y0, sigma_x, sigma_y=None, angle=0.0):
    """Unit-peak elliptical Gaussian."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    y, x = np.mgrid[: shape[0], : shape[1]]
    c, s = math.cos(angle), math.sin(angle)
    u = (x - x0) * c + (y - y0) * s
    v = -(x - x0) * s + (y - y0) * c
    return np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))


def make_sky(shape=(128, 160), seed=42, saturate=True):
    """Three float64 bands: sky noise (sigma 1) plus stars and galaxies of
    different colours, and a very bright star whose core is clipped at a
    detector-like saturation level.
    """
    rng = np.random.default_rng(seed)
    bands = [rng.normal(0.0, 1.0, shape) for _ in range(3)]
    objects = [
        # x, y, sigma_x, sigma_y, angle, peak, colour (R, G, B)
        (30, 40, 1.8, None, 0.0, 300.0, (1.0, 0.6, 0.3)),  # red star
        (120, 30, 2.2, None, 0.0, 80.0, (0.3, 0.6, 1.0)),  # blue star
        (70, 90, 9.0, 4.0, 0.6, 25.0, (0.9, 0.8, 0.6)),  # yellowish galaxy
        (130, 100, 6.0, 2.5, -0.3, 8.0, (0.4, 0.5, 0.9)),  # faint blue galaxy
        (20, 110, 1.5, None, 0.0, 6.0, (0.2, 1.0, 0.2)),  # faint green knot
        (100, 60, 2.0, None, 0.0, 2.0e5, (1.0, 0.75, 0.5)),  # bright star
    ]
    for x0, y0, sx, sy, angle, peak, colour in objects:
        profile = peak * _gaussian(shape, x0, y0, sx, sy, angle)
        for band, weight in zip(bands, colour):
            band += weight * profile
    if saturate:
        for band in bands:
            np.minimum(band, 6.0e4, out=band)
    return bands


def _dn_difference(a, b):
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def _check_rgb(rgb, shape):
    assert rgb.dtype == np.uint8
    assert rgb.shape == (*shape, 3)
    assert rgb.flags.c_contiguous


# Lupton against astropy.


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "minimum, stretch, Q",
    [
        (0.0, 5.0, 8.0),
        ([-1.0, 0.5, 0.0], 20.0, 3.0),
        (-2.0, 100.0, 10.0),
        ([0.0, 0.0, 0.0], 1000.0, 0.5),
        (0.0, 0.5, 20.0),
    ],
)
def test_lupton_matches_astropy_on_realistic_data(dtype, minimum, stretch, Q):
    bands = [band.astype(dtype) for band in make_sky()]
    expected = make_lupton_rgb(*bands, minimum=minimum, stretch=stretch, Q=Q)
    result = lupton_rgb(*bands, minimum=minimum, stretch=stretch, Q=Q)
    _check_rgb(result, bands[0].shape)
    diff = _dn_difference(result, expected)
    fraction = np.count_nonzero(diff) / diff.size
    print(
        f"lupton {np.dtype(dtype).name} {minimum} {stretch} {Q}: max {diff.max()} DN, {fraction:.2e} differ"
    )
    assert diff.max() <= 1
    assert fraction < 1e-3
    # The image is neither black nor white, and has saturated pixels.
    assert 0 < np.count_nonzero(result == 255) < result.size / 2
    assert np.count_nonzero(result) > 1000


def test_lupton_matches_astropy_interval_form():
    bands = [band.astype(np.float32) for band in make_sky(seed=7)]
    minima = [-0.5, 0.0, 0.5]
    expected = make_lupton_rgb(*bands, interval=[ManualInterval(vmin=m) for m in minima], stretch=30, Q=5)
    result = lupton_rgb(*bands, minimum=minima, stretch=30, Q=5)
    assert _dn_difference(result, expected).max() <= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "case",
    ["zeros", "negative", "huge_core", "huge_everywhere", "cancelling", "tiny", "constant"],
)
def test_lupton_matches_astropy_on_edge_cases(dtype, case):
    shape = (32, 48)
    rng = np.random.default_rng(3)
    if case == "zeros":
        bands = [np.zeros(shape) for _ in range(3)]
    elif case == "negative":
        bands = [-rng.uniform(0.1, 1e4, shape) for _ in range(3)]
    elif case == "huge_core":
        profile = 1e30 * _gaussian(shape, 20, 15, 3.0)
        bands = [w * profile + rng.normal(0, 1, shape) for w in (1.0, 0.5, 0.25)]
    elif case == "huge_everywhere":
        bands = [rng.uniform(1e20, 1e25, shape) for _ in range(3)]
    elif case == "cancelling":
        # Large positive and negative bands: small intensity, big channels.
        red = rng.uniform(1e3, 1e4, shape)
        bands = [red, -0.5 * red + rng.normal(0, 1, shape), -0.5 * red + rng.normal(0, 1, shape)]
    elif case == "tiny":
        bands = [rng.uniform(0, 1e-30, shape) for _ in range(3)]
    else:
        bands = [np.full(shape, 3.0), np.full(shape, 2.0), np.full(shape, 1.0)]
    bands = [band.astype(dtype) for band in bands]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's own float warnings.
        expected = make_lupton_rgb(*bands, minimum=0, stretch=5, Q=8)
    result = lupton_rgb(*bands, minimum=0, stretch=5, Q=8)
    _check_rgb(result, shape)
    assert _dn_difference(result, expected).max() <= 1
    if case in ("zeros", "negative", "tiny"):
        assert not result.any()


def test_lupton_hue_is_kept_in_saturated_core():
    shape = (41, 41)
    colour = np.array([1.0, 0.6, 0.3])
    profile = 5e4 * _gaussian(shape, 20, 20, 2.5)
    bands = [w * profile for w in colour]
    result = lupton_rgb(*bands, minimum=0, stretch=5, Q=8)
    core = profile > 100.0  # far above the saturation of stretch=5
    assert np.count_nonzero(core) > 20
    pixels = result[core].astype(float)
    # The brightest channel is at full scale and the others keep the input
    # ratio instead of also going to 255 (white).
    assert np.all(pixels[:, 0] == 255)
    assert np.abs(pixels[:, 1] - 255 * colour[1]).max() <= 2
    assert np.abs(pixels[:, 2] - 255 * colour[2]).max() <= 2


def test_lupton_values_near_float32_limit_keep_hue():
    # 3e38 overflows float32 when the three bands are summed; astropy then
    # produces NaN, our fallback still gives the saturated colour.
    shape = (8, 8)
    colour = (1.0, 0.5, 0.25)
    bands = [np.full(shape, 3e38 * w, dtype=np.float32) for w in colour]
    bands[0][0, 0] = 1.0  # an ordinary pixel next to the huge ones
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        result = lupton_rgb(*bands, minimum=0, stretch=5, Q=8)
    assert result[1:, 1:].reshape(-1, 3).tolist() == [[255, 127, 63]] * 49
    expected_small = lupton_rgb(
        np.array([[1.0]]), np.array([[3e38 * 0.5]]), np.array([[3e38 * 0.25]]), minimum=0, stretch=5, Q=8
    )
    assert result[0, 0].tolist() == expected_small[0, 0].tolist()


# Per-band stretches against astropy.


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("softening", [0.1, 0.02, 1.0])
def test_asinh_matches_astropy_make_rgb(dtype, softening):
    bands = [band.astype(dtype) for band in make_sky(seed=11)]
    minima, maxima = [-1.0, -0.5, 0.0], [50.0, 80.0, 120.0]
    intervals = [ManualInterval(lo, hi) for lo, hi in zip(minima, maxima)]
    expected = make_rgb(*bands, interval=intervals, stretch=AsinhStretch(a=softening))
    result = asinh_rgb(*bands, minimum=minima, maximum=maxima, softening=softening)
    _check_rgb(result, bands[0].shape)
    diff = _dn_difference(result, expected)
    print(f"asinh a={softening}: max {diff.max()} DN, {np.count_nonzero(diff) / diff.size:.2e} differ")
    assert diff.max() <= 1
    # Pixels at or above maximum are exactly full scale.
    for channel, (band, top) in enumerate(zip(bands, maxima)):
        assert np.all(result[..., channel][band >= top] == 255)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_linear_matches_astropy_make_rgb(dtype):
    bands = [(band * 10).astype(dtype) for band in make_sky(seed=12)]
    minima, maxima = [-10.0, 0.0, 5.0], [300.0, 400.0, 2000.0]
    intervals = [ManualInterval(lo, hi) for lo, hi in zip(minima, maxima)]
    expected = make_rgb(*bands, interval=intervals, stretch=LinearStretch())
    result = linear_rgb(*bands, minimum=minima, maximum=maxima)
    _check_rgb(result, bands[0].shape)
    diff = _dn_difference(result, expected)
    print(
        f"linear {np.dtype(dtype).name}: max {diff.max()} DN, {np.count_nonzero(diff) / diff.size:.2e} differ"
    )
    assert diff.max() <= 1
    # Scalar levels apply to every band.
    scalar = linear_rgb(*bands, minimum=0.0, maximum=400.0)
    assert np.array_equal(scalar, linear_rgb(*bands, minimum=[0.0] * 3, maximum=[400.0] * 3))


# Non-finite pixels.


def _with_non_finite(bands):
    """Copies of float32 bands with NaN/+inf/-inf in all bands at three
    pixels and NaN in the red band only at a fourth.
    """
    bands = [band.astype(np.float32) for band in bands]
    for band in bands:
        band[5, 5] = np.nan
        band[6, 7] = np.inf
        band[7, 9] = -np.inf
    bands[0][10, 10] = np.nan
    return bands


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("scaling", ["global", "per_image"])
def test_non_finite_pixels_are_black_without_warnings(algorithm, scaling):
    config = StretchConfig()
    config.black_point = "fixed"  # the configured minimum stands for a NaN
    config.algorithm = algorithm
    config.scaling = scaling
    config.minimum = [0.0, 0.5, -0.5]
    config.maximum = [200.0]
    config.stretch = 20.0
    config.floor = 1e-3  # so that a zero pixel is black in perceptual mode
    config.validate()
    bands = _with_non_finite(make_sky(seed=5))
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        result = config.apply(*bands)
    _check_rgb(result, bands[0].shape)
    for y, x in [(5, 5), (6, 7), (7, 9)]:
        assert result[y, x].tolist() == [0, 0, 0]
    # A band that is non-finite alone counts as its black level in global
    # mode: the pixel is rendered as if it held `minimum`.
    if scaling == "global":
        replaced = [band.copy() for band in bands]
        black = 0.0 if algorithm == "perceptual" else config.minimum[0]
        replaced[0][10, 10] = black
        for band in replaced:
            band[~np.isfinite(band)] = 0.0
        assert np.array_equal(result[10, 10], config.apply(*replaced)[10, 10])


def test_non_finite_pixels_in_perceptual_mode_look_like_empty_pixels():
    # With floor=0 an empty pixel is the dark grey Oklab L = 0.2, and a
    # NaN pixel is exactly that too.
    bands = _with_non_finite(make_sky(seed=6))
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        result = perceptual_rgb(*bands, maximum=500.0)
    empty = perceptual_rgb(*[np.zeros((1, 1))] * 3, maximum=500.0)[0, 0]
    assert empty[0] == empty[1] == empty[2] > 0
    for y, x in [(5, 5), (6, 7), (7, 9)]:
        assert result[y, x].tolist() == empty.tolist()


def test_finite_or_zero():
    values = np.array([1.5, np.nan, np.inf, -np.inf, -2.0], dtype=np.float32)
    result = finite_or_zero(values)
    assert result.dtype == np.float32
    assert result.tolist() == [1.5, 0.0, 0.0, 0.0, -2.0]
    assert np.isnan(values[1])  # the input is not modified
    assert finite_or_zero(np.arange(3)).dtype == np.float32


@pytest.mark.parametrize("scaling", ["global", "per_image"])
def test_image_without_finite_pixels_is_black(scaling):
    bands = [np.full((6, 5), np.nan), np.full((6, 5), np.inf), np.full((6, 5), -np.inf)]
    for algorithm in ("lupton", "asinh", "linear"):
        config = StretchConfig()
        config.algorithm = algorithm
        config.scaling = scaling
        with np.errstate(all="raise"), warnings.catch_warnings():
            warnings.simplefilter("error")
            result = config.apply(*bands)
        _check_rgb(result, (6, 5))
        assert not result.any()


# Global and per-image scaling.


def _two_images_sharing_left_half():
    first = make_sky(seed=21)
    second = make_sky(seed=22)
    half = first[0].shape[1] // 2
    for a, b in zip(first, second):
        b[:, :half] = a[:, :half]
        b[:, half:] *= 5.0  # different content and brightness on the right
    return first, second, half


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_global_scaling_does_not_depend_on_the_rest_of_the_image(algorithm):
    first, second, half = _two_images_sharing_left_half()
    config = StretchConfig()
    config.black_point = "fixed"  # "sky" measures its black level on the image
    config.algorithm = algorithm
    config.maximum = [300.0]
    config.minimum = [-1.0]
    config.validate()
    a = config.apply(*first)
    b = config.apply(*second)
    assert np.array_equal(a[:, :half], b[:, :half])
    assert not np.array_equal(a[:, half:], b[:, half:])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_per_image_scaling_depends_on_the_rest_of_the_image(algorithm):
    first, second, half = _two_images_sharing_left_half()
    config = StretchConfig()
    config.algorithm = algorithm
    config.scaling = "per_image"
    config.validate()
    a = config.apply(*first)
    b = config.apply(*second)
    assert not np.array_equal(a[:, :half], b[:, :half])


def test_per_image_levels_are_the_documented_percentiles():
    bands = _with_non_finite(make_sky(seed=31))
    low, high = 2.0, 99.0
    finite = [band[np.isfinite(band)] for band in bands]
    minima = [float(np.percentile(values, low)) for values in finite]
    maxima = [float(np.percentile(values, high)) for values in finite]

    config = StretchConfig()
    config.black_point = "fixed"  # the low percentile is the black level
    config.scaling = "per_image"
    config.per_image_percentiles = [low, high]

    config.algorithm = "linear"
    expected = linear_rgb(*bands, minimum=minima, maximum=maxima)
    assert _dn_difference(config.apply(*bands), expected).max() <= 1

    config.algorithm = "asinh"
    config.softening = 0.05
    expected = asinh_rgb(*bands, minimum=minima, maximum=maxima, softening=0.05)
    assert _dn_difference(config.apply(*bands), expected).max() <= 1

    config.algorithm = "perceptual"
    expected = perceptual_rgb(*bands, maximum=maxima)
    assert _dn_difference(config.apply(*bands), expected).max() <= 1

    config.algorithm = "lupton"
    all_finite = np.isfinite(bands[0]) & np.isfinite(bands[1]) & np.isfinite(bands[2])
    intensity = sum(band[all_finite].astype(np.float64) - m for band, m in zip(bands, minima)) / 3
    stretch = float(np.percentile(intensity, high))
    expected = lupton_rgb(*bands, minimum=minima, stretch=stretch, Q=config.Q)
    assert _dn_difference(config.apply(*bands), expected).max() <= 1


def test_percentiles_helper_matches_numpy():
    rng = np.random.default_rng(8)
    for size in (1, 2, 7, 1000, 4097):
        values = rng.normal(size=size).astype(np.float32)
        percents = (0.0, 1.0, 37.3, 99.5, 100.0)
        expected = np.percentile(values.astype(np.float64), percents)
        result = percentiles(values.copy(), percents)
        np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-6)


# Perceptual mode.


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"midtone": 0.25, "floor": 1e-4},
        {"saturation": 1.0, "max_chroma": 0.6, "max_luminance": 1.0},
        {"luminance_stretch": 20.0, "midtone": 0.8},
    ],
)
def test_perceptual_grey_stays_grey_and_is_monotone(kwargs):
    levels = np.concatenate([[0.0], np.logspace(-9, 0.5, 3000)]) * 250.0
    grey = levels.reshape(1, -1)
    result = perceptual_rgb(grey, grey, grey, maximum=250.0, **kwargs)[0].astype(int)
    assert (result.max(axis=1) - result.min(axis=1)).max() <= 1
    assert np.all(np.diff(result, axis=0) >= 0)
    assert result[-1].min() > result[0].max()  # it is not flat
    # Random grey pixels in a 2-D image (not only a ramp) stay grey too.
    rng = np.random.default_rng(2)
    image = rng.lognormal(0.0, 3.0, (64, 64))
    rgb = perceptual_rgb(image, image, image, maximum=100.0, **kwargs).astype(int)
    assert (rgb.max(axis=2) - rgb.min(axis=2)).max() <= 1


def _srgb_decode(dn):
    value = dn / 255.0
    return np.where(value <= 0.04045, value / 12.92, ((value + 0.055) / 1.055) ** 2.4)


@pytest.mark.parametrize("colour", [(1.0, 0.5, 0.2), (0.2, 0.4, 1.0), (0.1, 1.0, 0.3), (1.0, 0.0, 0.0)])
def test_perceptual_brighter_input_is_never_darker(colour):
    # Within [0, maximum] every channel is non-decreasing.
    scale = np.logspace(-8, 0, 2000).reshape(1, -1)
    bands = [scale * w for w in colour]
    result = perceptual_rgb(*bands, maximum=1.0)[0].astype(int)
    assert np.all(np.diff(result, axis=0) >= 0)
    # Above maximum the channels clip and the hue drifts; lightness may
    # then only wobble by the 8-bit quantization.
    scale = np.logspace(-8, 1.5, 3000).reshape(1, -1)
    bands = [scale * w for w in colour]
    result = perceptual_rgb(*bands, maximum=1.0)[0]
    lightness = oklab_from_linear_rgb(_srgb_decode(result).T)[0]
    assert np.diff(lightness).min() > -0.005
    assert lightness[-1] > lightness[0] + 0.3


def test_perceptual_keeps_colour_and_respects_limits():
    shape = (1, 3)
    red = np.array([[1.0, 0.0, 0.0]]) * 0.5
    green = np.array([[0.0, 1.0, 0.0]]) * 0.5
    blue = np.array([[0.0, 0.0, 1.0]]) * 0.5
    result = perceptual_rgb(red, green, blue, maximum=1.0, floor=1e-4)
    _check_rgb(result, shape)
    # A red, a green and a blue pixel keep their dominant channel.
    assert result[0, 0].argmax() == 0 and result[0, 1].argmax() == 1 and result[0, 2].argmax() == 2
    # saturation=0 gives grey.
    grey = perceptual_rgb(red, green, blue, maximum=1.0, saturation=0.0).astype(int)
    assert (grey.max(axis=2) - grey.min(axis=2)).max() <= 1
    # The lightness ceiling holds for white input.
    white = perceptual_rgb(*[np.ones((1, 1))] * 3, maximum=1.0, max_luminance=0.5)
    lightness = oklab_from_linear_rgb(_srgb_decode(white[0]).T)[0, 0]
    assert abs(lightness - 0.5) < 0.01
    # Per-band maxima normalize each band.
    assert np.array_equal(
        perceptual_rgb(red * 2, green * 4, blue * 8, maximum=[2.0, 4.0, 8.0]),
        perceptual_rgb(red, green, blue, maximum=1.0),
    )


def _perceptual_reference(bands, maximum, stretch=400.0, max_l=0.85, m=0.5, sat=0.6, max_c=0.4, floor=0.0):
    """float64 transcription of the documented perceptual steps."""
    x = np.stack(
        [np.clip(np.nan_to_num(b / top, posinf=0.0, neginf=0.0), 0, 1) for b, top in zip(bands, maximum)]
    )
    lab = oklab_from_linear_rgb(x.reshape(3, -1))
    lightness, a, b = lab
    floor_l = oklab_from_linear_rgb(np.full((3, 1), floor))[0, 0]
    top = np.arcsinh(stretch)
    bottom = (np.arcsinh(floor_l * stretch) - 0.2 * top) / 0.8
    new = np.clip((np.arcsinh(lightness * stretch) - bottom) / (top - bottom), 0, 1)
    new = ((m - 1) * new) / ((2 * m - 1) * new - m)
    new = np.clip(new, 0, max_l)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(lightness > 0, sat * new / lightness, 0.0)
    chroma = np.hypot(a, b) * gain
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(chroma > max_c, gain * max_c / chroma, gain)
    rgb = linear_rgb_from_oklab(np.stack([new, a * gain, b * gain]))
    rgb = np.clip(rgb, 0, 1)
    encoded = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * rgb ** (1 / 2.4) - 0.055)
    # 1.055 - 0.055 is not exactly 1 in float64; 1e-9 keeps 255 at 1.0.
    return np.floor(255 * encoded + 1e-9).astype(np.uint8).reshape(x.shape).transpose(1, 2, 0)


@pytest.mark.parametrize(
    "kwargs, floor",
    [
        ({}, 0.0),
        ({"midtone": 0.3}, 2e-3),
        ({"saturation": 1.0, "max_chroma": 0.1, "max_luminance": 1.0}, 1e-4),
        ({"luminance_stretch": 30.0, "midtone": 0.7}, 0.0),
    ],
)
def test_perceptual_follows_the_documented_formulas(kwargs, floor):
    bands = make_sky(seed=9)
    maximum = [400.0, 500.0, 600.0]
    result = perceptual_rgb(*bands, maximum=maximum, floor=floor, **kwargs)
    names = {
        "luminance_stretch": "stretch",
        "max_luminance": "max_l",
        "midtone": "m",
        "saturation": "sat",
        "max_chroma": "max_c",
    }
    reference_kwargs = {names[k]: v for k, v in kwargs.items()}
    expected = _perceptual_reference(bands, maximum, floor=floor, **reference_kwargs)
    diff = _dn_difference(result, expected)
    fraction = np.count_nonzero(diff) / diff.size
    print(f"perceptual {kwargs} floor={floor}: max {diff.max()} DN, {fraction:.2e} differ")
    assert diff.max() <= 1
    assert fraction < 0.01


def test_perceptual_chroma_is_capped():
    colours = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.8, 0.0]]).T * 0.3
    bands = [c.reshape(1, -1) for c in colours]
    for max_chroma in (0.03, 0.08):
        result = perceptual_rgb(*bands, maximum=1.0, saturation=1.0, max_chroma=max_chroma)[0]
        lab = oklab_from_linear_rgb(_srgb_decode(result).T)
        chroma = np.hypot(lab[1], lab[2])
        assert np.all(chroma < max_chroma + 0.01)
        assert np.all(chroma > max_chroma - 0.02)


def test_oklab_matrices():
    # Published Oklab coordinates of sRGB white and the primaries.
    rgb = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]])
    lab = oklab_from_linear_rgb(rgb)
    expected = np.array(
        [
            [1.0, 0.62796, 0.86644, 0.45201],
            [0.0, 0.22486, -0.23389, -0.03246],
            [0.0, 0.12585, 0.17950, -0.31153],
        ]
    )
    np.testing.assert_allclose(lab, expected, atol=2e-4)
    np.testing.assert_allclose(linear_rgb_from_oklab(lab), rgb, atol=1e-6)
    # The float32 path agrees with the float64 one.
    lab32 = oklab_from_linear_rgb(rgb.astype(np.float32))
    np.testing.assert_allclose(lab32, lab, atol=1e-5)


# Argument checks of the functions.


def test_functions_reject_bad_arguments():
    good = np.zeros((4, 5))
    with pytest.raises(ValueError, match="one shape"):
        lupton_rgb(good, good, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="2-D"):
        linear_rgb(good, good, np.zeros((4, 5, 3)), minimum=0, maximum=1)
    with pytest.raises(TypeError, match="dtype"):
        lupton_rgb(good, good, good.astype(complex))
    with pytest.raises(ValueError, match="minimum"):
        lupton_rgb(good, good, good, minimum=[0.0, 1.0])
    with pytest.raises(ValueError, match="stretch"):
        lupton_rgb(good, good, good, stretch=0.0)
    with pytest.raises(ValueError, match="Q"):
        lupton_rgb(good, good, good, Q=-1.0)
    with pytest.raises(ValueError, match="exceed"):
        asinh_rgb(good, good, good, minimum=[0, 0, 2], maximum=1)
    with pytest.raises(ValueError, match="softening"):
        asinh_rgb(good, good, good, minimum=0, maximum=1, softening=0.0)
    with pytest.raises(ValueError, match="maximum"):
        perceptual_rgb(good, good, good, maximum=0.0)
    with pytest.raises(ValueError, match="midtone"):
        perceptual_rgb(good, good, good, maximum=1.0, midtone=1.0)
    with pytest.raises(ValueError, match="floor"):
        perceptual_rgb(good, good, good, maximum=1.0, floor=1.0)


# StretchConfig.


def test_default_config_is_valid_lupton():
    config = StretchConfig()
    config.validate()
    assert config.algorithm == "lupton"
    assert config.scaling == "global"
    assert config.black_point == "sky" and config.sky_sigma_below == 2.0
    assert config.describe() == "lupton(Q=8,stretch=5,black=sky-2sigma)"
    bands = make_sky(seed=3)
    black = sky_black_levels(config, bands)
    assert all(b is not None for b in black)
    assert np.array_equal(config.apply(*bands), lupton_rgb(*bands, minimum=black, stretch=5.0, Q=8.0))
    # The behaviour before black_point existed, exactly.
    config.black_point = "fixed"
    assert config.describe() == "lupton(Q=8,stretch=5,minimum=0)"
    assert np.array_equal(config.apply(*bands), lupton_rgb(*bands, minimum=0.0, stretch=5.0, Q=8.0))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_apply_dispatches_to_the_function(algorithm):
    bands = make_sky(seed=4)
    config = StretchConfig()
    config.black_point = "fixed"
    config.algorithm = algorithm
    config.minimum = [-1.0, 0.0, 1.0]
    config.maximum = [100.0, 200.0, 300.0]
    config.stretch = 30.0
    config.Q = 5.0
    config.softening = 0.05
    config.midtone = 0.4
    config.validate()
    if algorithm == "lupton":
        expected = lupton_rgb(*bands, minimum=[-1.0, 0.0, 1.0], stretch=30.0, Q=5.0)
    elif algorithm == "asinh":
        expected = asinh_rgb(*bands, minimum=[-1.0, 0.0, 1.0], maximum=[100.0, 200.0, 300.0], softening=0.05)
    elif algorithm == "linear":
        expected = linear_rgb(*bands, minimum=[-1.0, 0.0, 1.0], maximum=[100.0, 200.0, 300.0])
    else:
        expected = perceptual_rgb(*bands, maximum=[100.0, 200.0, 300.0], midtone=0.4)
    assert np.array_equal(config.apply(*bands), expected)


def test_levels_are_only_checked_where_used():
    config = StretchConfig()
    config.minimum = [5.0]  # above the unused default maximum of 1
    config.validate()
    config.algorithm = "asinh"
    config.scaling = "per_image"  # levels are measured, not configured
    config.validate()


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"Q": 0.0}, "Q"),
        ({"Q": -8.0}, "Q"),
        ({"Q": math.nan}, "Q"),
        ({"stretch": -5.0}, "stretch"),
        ({"stretch": 0.0}, "stretch"),
        ({"stretch": math.inf}, "stretch"),
        ({"softening": 0.0}, "softening"),
        ({"minimum": [0.0, 1.0]}, "minimum"),
        ({"minimum": [0.0, 0.0, 0.0, 0.0]}, "minimum"),
        ({"minimum": [math.nan]}, "minimum"),
        ({"maximum": [1.0, 2.0]}, "maximum"),
        ({"algorithm": "asinh", "minimum": [1.0], "maximum": [1.0]}, "maximum"),
        ({"algorithm": "linear", "minimum": [0.0, 0.0, 0.0], "maximum": [1.0, -1.0, 1.0]}, "maximum"),
        ({"algorithm": "perceptual", "maximum": [0.0]}, "maximum"),
        ({"per_image_percentiles": [99.5, 1.0]}, "per_image_percentiles"),
        ({"per_image_percentiles": [50.0, 50.0]}, "per_image_percentiles"),
        ({"per_image_percentiles": [-1.0, 99.0]}, "per_image_percentiles"),
        ({"per_image_percentiles": [1.0, 100.5]}, "per_image_percentiles"),
        ({"per_image_percentiles": [1.0]}, "per_image_percentiles"),
        ({"midtone": 1.0}, "midtone"),
        ({"midtone": 0.0}, "midtone"),
        ({"max_luminance": 0.0}, "max_luminance"),
        ({"max_luminance": 1.5}, "max_luminance"),
        ({"saturation": -0.1}, "saturation"),
        ({"max_chroma": 0.0}, "max_chroma"),
        ({"floor": -0.01}, "floor"),
        ({"floor": 1.0}, "floor"),
        ({"luminance_stretch": 0.0}, "luminance_stretch"),
        ({"algorithm": "zscale"}, "algorithm"),
        ({"scaling": "per_patch"}, "scaling"),
        ({"black_point": "zero"}, "black_point"),
        ({"sky_sigma_below": -1.0}, "sky_sigma_below"),
        ({"sky_sigma_below": math.inf}, "sky_sigma_below"),
    ],
)
def test_config_validation_errors(overrides, field):
    config = StretchConfig()
    # ChoiceField rejects a bad value on assignment, the rest in validate().
    with pytest.raises(FieldValidationError) as excinfo:
        for name, value in overrides.items():
            setattr(config, name, value)
        config.validate()
    assert excinfo.value.fieldName == field


def _described(**overrides):
    config = StretchConfig()
    for name, value in overrides.items():
        setattr(config, name, value)
    config.validate()
    return config.describe()


def test_describe_is_deterministic_and_tracks_parameters():
    assert _described() == _described()
    assert _described(algorithm="asinh", maximum=[10.0] * 3, black_point="fixed") == (
        "asinh(minimum=0,maximum=[10,10,10],softening=0.1)"
    )
    assert _described(algorithm="asinh", maximum=[10.0] * 3) == (
        "asinh(black=sky-2sigma,maximum=[10,10,10],softening=0.1)"
    )
    assert _described(scaling="per_image") == "lupton(Q=8,black=sky-2sigma);per_image(1,99.5)"
    assert _described(scaling="per_image", black_point="fixed") == "lupton(Q=8);per_image(1,99.5)"
    assert _described(algorithm="perceptual") == _described(algorithm="perceptual", black_point="fixed")
    assert (
        _described(algorithm="asinh", scaling="per_image", black_point="fixed")
        == "asinh(softening=0.1);per_image(1,99.5)"
    )
    assert (
        _described(algorithm="asinh", scaling="per_image")
        == "asinh(black=sky-2sigma,softening=0.1);per_image(1,99.5)"
    )
    variants = [
        {},
        {"Q": 8.000001},
        {"stretch": 6.0},
        {"minimum": [0.0, 0.0, 0.1], "black_point": "fixed"},
        {"black_point": "fixed"},
        {"sky_sigma_below": 3.0},
        {"scaling": "per_image", "black_point": "fixed"},
        {"scaling": "per_image"},
        {"scaling": "per_image", "per_image_percentiles": [0.5, 99.5]},
        {"algorithm": "asinh"},
        {"algorithm": "asinh", "softening": 0.2},
        {"algorithm": "asinh", "maximum": [2.0]},
        {"algorithm": "linear"},
        {"algorithm": "linear", "minimum": [-1.0], "black_point": "fixed"},
        {"algorithm": "perceptual"},
        {"algorithm": "perceptual", "midtone": 0.3},
        {"algorithm": "perceptual", "floor": 1e-5},
        {"algorithm": "perceptual", "saturation": 0.7},
        {"algorithm": "perceptual", "max_chroma": 0.3},
        {"algorithm": "perceptual", "max_luminance": 0.9},
        {"algorithm": "perceptual", "luminance_stretch": 100.0},
        {"algorithm": "perceptual", "maximum": [1.0, 2.0, 3.0]},
    ]
    descriptions = [_described(**variant) for variant in variants]
    for text in descriptions:
        assert "\n" not in text and " " not in text
    assert len(set(descriptions)) == len(descriptions), descriptions
    # Fields the algorithm does not use do not change the description.
    assert _described(softening=0.3) == _described()
    assert _described(algorithm="linear", Q=3.0) == _described(algorithm="linear")
