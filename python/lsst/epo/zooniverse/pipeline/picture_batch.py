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

"""The pixel work of composeRgb on a batch of pictures at once: the
stamps of N objects stacked into ``(N, H, W)`` arrays go through the same
element-wise numpy operations as one picture's, which pays the per-call
cost once per batch instead of once per picture.

Every step gives each picture exactly the pixels it gets alone: the steps
are element-wise, and those that are not (a channel fed by several bands,
a stretch whose levels or arithmetic path depend on the picture) are done
picture by picture.
"""

from __future__ import annotations

__all__ = [
    "BATCH_SIZE",
    "band_frames",
    "batch_stretch",
    "clean_planes",
    "gained",
    "mix_channels",
    "patch_black_levels",
    "stacked_planes",
]

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .orientation import orient_picture
from .stretch_parameters import STRETCH_FUNCTIONS, global_stretch_parameters, stretch_parameters
from .stretch_sky import sample_stride, sky_black_levels, uses_sky_black

BATCH_SIZE = 64
"""Pictures composed together (a few MB of float32 planes)."""

_FAST_ASINH_BOUND = 1.0e17
"""Largest asinh argument for which every picture of a batch surely takes
the ``log`` form of `asinh_nonnegative` (its limit is 1e18), as each
picture alone does."""


def gained(plane: np.ndarray, gain: float) -> np.ndarray:
    """Return ``gain`` times ``plane`` (``plane`` itself for a gain of 1).

    Parameters
    ----------
    plane : `numpy.ndarray`
        ``float32`` values.
    gain : `float`
        The gain.

    Returns
    -------
    result : `numpy.ndarray`
        ``float32`` values.
    """
    return plane if gain == 1.0 else plane * np.float32(gain)


def clean_planes(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    backgrounds: Sequence[float],
    bad_bits: Sequence[int],
    in_place: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Return each band's pixels, background subtracted, with bad and
    non-finite pixels set to zero, and its bad pixels.

    Parameters
    ----------
    images : `~collections.abc.Sequence` [`numpy.ndarray`]
        ``float32`` pixels of each band (any shape: one stamp, a stack of
        stamps, or samples of them); not changed.
    masks : `~collections.abc.Sequence` [`numpy.ndarray` or `None`]
        Their mask bits, or `None`.
    backgrounds : `~collections.abc.Sequence` [`float`]
        Background of each band.
    bad_bits : `~collections.abc.Sequence` [`int`]
        Mask bits of the bad pixels of each band.
    in_place : `bool`, optional
        Whether to reuse ``images`` (and ``masks``, whose bits other than
        ``bad_bits`` are then cleared) for the result.

    Returns
    -------
    planes : `list` [`numpy.ndarray`]
        ``float32`` arrays (new ones unless ``in_place``).
    bad : `list` [`numpy.ndarray`]
        Boolean arrays of the bad pixels.
    """
    planes, bad_pixels = [], []
    for image, mask, background, bits in zip(images, masks, backgrounds, bad_bits):
        if in_place:
            plane = np.subtract(image, np.float32(background), out=image)
        else:
            plane = image - np.float32(background)
        bad = np.isfinite(plane)
        np.logical_not(bad, out=bad)
        if mask is not None and bits:
            bits_set = np.bitwise_and(mask, bits, out=mask if in_place else None)
            np.logical_or(bad, bits_set, out=bad)
        np.copyto(plane, np.float32(0), where=bad)
        planes.append(plane)
        bad_pixels.append(bad)
    return planes, bad_pixels


def stacked_planes(
    band_stamps: Sequence[Sequence[Any]], backgrounds: Sequence[float], bad_bits: Sequence[int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Return `clean_planes` of a batch of objects' stamps, stacked.

    Parameters
    ----------
    band_stamps : `~collections.abc.Sequence` [`list` [`Stamp`]]
        Per object, its stamp in each band (all of one shape).
    backgrounds, bad_bits : `~collections.abc.Sequence`
        As for `clean_planes`.

    Returns
    -------
    planes, bad : `list` [`numpy.ndarray`]
        Per band, ``(N, H, W)`` arrays (see `clean_planes`).
    """
    images, masks = [], []
    for j in range(len(backgrounds)):
        band_images, band_masks = _band_pixels(band_stamps, j)
        images.append(np.stack(band_images))
        masks.append(None if band_masks is None else np.stack(band_masks))
    return clean_planes(images, masks, backgrounds, bad_bits, in_place=True)


def _band_pixels(
    band_stamps: Sequence[Sequence[Any]], band: int
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Return the images of band ``band``'s stamps of a batch of objects,
    and their masks (zeros for a stamp without one; `None` if none has
    one).
    """
    stamps = [objects[band] for objects in band_stamps]
    images = [stamp.image for stamp in stamps]
    if all(stamp.mask is None for stamp in stamps):
        return images, None
    return images, [np.zeros(s.image.shape, np.int32) if s.mask is None else s.mask for s in stamps]


def mix_channels(
    planes: Sequence[np.ndarray], weights: np.ndarray, batched: bool = False
) -> list[np.ndarray]:
    """Return the red, green and blue channels of planes: each the mean
    of weight times plane over the bands that feed it; a channel no band
    feeds is the mean of the others.

    Parameters
    ----------
    planes : `~collections.abc.Sequence` [`numpy.ndarray`]
        Each band's plane (see `clean_planes`).
    weights : `numpy.ndarray`
        ``(n_bands, 3)`` weights.
    batched : `bool`, optional
        Whether the planes are ``(N, H, W)`` stacks of N objects: a
        channel several bands feed is then summed object by object, as
        for one object.

    Returns
    -------
    channels : `list` [`numpy.ndarray`]
        Three ``float32`` arrays of the planes' shape (a plane itself for
        a channel one band feeds with gain 1).
    """
    stack = None
    channels: list[np.ndarray | None] = []
    for k in range(3):
        w = weights[:, k]
        fed = np.flatnonzero(w > 0)
        if len(fed) == 1:
            # One band feeds the channel (the usual mapping): its gain
            # times its plane (the plane itself for a gain of 1).
            channels.append(gained(planes[int(fed[0])], float(w[fed[0]])))
        elif len(fed) > 1:
            if stack is None:
                stack = np.stack(planes)  # (n_bands, [N,] H, W)
            mean_weights = (w / len(fed)).astype(np.float32)
            if batched:
                channels.append(
                    np.stack([np.tensordot(mean_weights, stack[:, i], axes=1) for i in range(stack.shape[1])])
                )
            else:
                channels.append(np.tensordot(mean_weights, stack, axes=1))
        else:
            channels.append(None)
    if all(c is not None for c in channels):
        return channels
    mean = np.mean([c for c in channels if c is not None], axis=0).astype(np.float32)
    return [c if c is not None else mean for c in channels]


def batch_stretch(
    config: Any, channels: Sequence[np.ndarray], black: Sequence[float | None] | None
) -> np.ndarray | None:
    """Stretch a batch of pictures at once, when that gives each the
    pixels `StretchConfig.apply` gives it alone.

    Parameters
    ----------
    config : `StretchConfig`
        The stretch.
    channels : `~collections.abc.Sequence` [`numpy.ndarray`]
        Red, green and blue ``(N, H, W)`` finite ``float32`` stacks.
    black : `~collections.abc.Sequence` [`float` or `None`] or `None`
        The patch's black levels (see `StretchConfig.apply`).

    Returns
    -------
    rgb : `numpy.ndarray` or `None`
        ``uint8`` ``(N, H, W, 3)``; `None` where the pictures must be
        stretched one by one: levels measured per picture
        (``scaling="per_image"``, or the sky black point without patch
        levels), the perceptual algorithm, or values so large that the
        arithmetic path of the asinh could differ between pictures.
    """
    sky = uses_sky_black(config)
    if config.scaling != "global" or config.algorithm == "perceptual" or (sky and black is None):
        return None
    kwargs = global_stretch_parameters(config, black if sky else None)
    n, height, width = channels[0].shape
    if config.algorithm == "lupton":
        extremes = [float(c.max()) for c in channels] + [-float(c.min()) for c in channels]
        extremes += [abs(float(v)) for v in np.atleast_1d(kwargs["minimum"])]
        # The asinh argument is at most (|value| + |minimum|) * Q / stretch
        # (Q below 0.1 is replaced by 0.1); NaN or infinity: one by one.
        bound = 2 * max(extremes) * max(config.Q, 1.0) / config.stretch
        if not all(math.isfinite(e) for e in extremes) or not bound < _FAST_ASINH_BOUND:
            return None
    elif config.algorithm == "asinh" and not 1.0 / config.softening < _FAST_ASINH_BOUND:
        return None
    # The stretches work on 2-D images: the stack as one tall image.
    flat = [c.reshape(n * height, width) for c in channels]
    rgb = STRETCH_FUNCTIONS[config.algorithm](*flat, **kwargs)
    return rgb.reshape(n, height, width, 3)


def strided_samples(planes: Sequence[np.ndarray], stride: int) -> np.ndarray:
    """Return every ``stride``-th value of each plane, counted from its
    first value in row-major order, the planes one after the other.

    Parameters
    ----------
    planes : `~collections.abc.Sequence` [`numpy.ndarray`]
        The planes (views of a parent or arrays of their own).
    stride : `int`
        Step between samples.

    Returns
    -------
    samples : `numpy.ndarray`
        ``np.concatenate([p.ravel()[::stride] for p in planes])``.

    Notes
    -----
    Planes of one shape and type are sampled by one gather each at the
    sampled positions, without copying the rest of a plane that is a view
    of its parent (a stamp inside its coadd).
    """
    if not planes or any(p.shape != planes[0].shape or p.dtype != planes[0].dtype for p in planes):
        return np.concatenate([p.ravel()[::stride] for p in planes])
    if stride == 1:
        return np.stack(planes).ravel()
    positions = np.unravel_index(np.arange(0, planes[0].size, stride), planes[0].shape)
    samples = np.empty((len(planes), len(positions[0])), dtype=planes[0].dtype)
    for row, plane in zip(samples, planes):
        row[...] = plane[positions]
    return samples.ravel()


def patch_black_levels(
    config: Any,
    band_stamps: Sequence[Sequence[Any]],
    n_objects: int,
    weights: np.ndarray,
    backgrounds: Sequence[float],
    bad_bits: Sequence[int],
) -> list[float | None] | None:
    """Return the black level of each channel over all the patch's
    pictures (``scaling="global"`` with the sky black point), else `None`.

    Parameters
    ----------
    config : `StretchConfig`
        The stretch.
    band_stamps : `~collections.abc.Sequence` [`list` [`Stamp`]]
        Per picture to make, its stamp in each band used.
    n_objects : `int`
        Catalog rows of the patch (the sampling stride keeps at most about
        `MAX_SKY_SAMPLES` pixels of that many stamps).
    weights : `numpy.ndarray`
        ``(n_bands, 3)`` weights of the bands used.
    backgrounds, bad_bits : `~collections.abc.Sequence`
        As for `clean_planes`.

    Returns
    -------
    black : `list` [`float` or `None`] or `None`
        See `sky_black_levels`.
    """
    if config.scaling != "global" or not uses_sky_black(config) or not band_stamps:
        return None
    shape = band_stamps[0][0].image.shape
    stride = sample_stride(n_objects * math.prod(shape), shape[-1])
    # With no channel summing bands, a channel pixel depends on the same
    # pixel of the stamps only: the sampled pixels alone are mixed, all
    # objects at once.
    if ((weights > 0).sum(axis=0) <= 1).all():
        images, masks = [], []
        for j in range(len(backgrounds)):
            band_images, band_masks = _band_pixels(band_stamps, j)
            images.append(strided_samples(band_images, stride))
            masks.append(None if band_masks is None else strided_samples(band_masks, stride))
        samples = mix_channels(clean_planes(images, masks, backgrounds, bad_bits, in_place=True)[0], weights)
    else:
        parts: list[list[np.ndarray]] = [[], [], []]
        for objects in band_stamps:
            planes = clean_planes(
                [s.image for s in objects], [s.mask for s in objects], backgrounds, bad_bits
            )[0]
            for k, channel in enumerate(mix_channels(planes, weights)):
                parts[k].append(channel.ravel()[::stride])
        samples = [np.concatenate(p) for p in parts]
    return sky_black_levels(config, samples)


def band_frames(
    config: Any,
    planes: Sequence[np.ndarray],
    bad: Sequence[np.ndarray | None],
    used: Sequence[str],
    weights: np.ndarray,
    channels: Sequence[np.ndarray],
    orientation: tuple[int, bool],
    black: list[float | None] | None,
) -> dict[str, np.ndarray]:
    """Return the grey frames of one picture (see
    ``ComposeRgbConfig.band_frames``).

    Parameters
    ----------
    config : `ComposeRgbConfig`
        The composeRgb config (its ``stretch`` and ``output_size``).
    planes, bad : `~collections.abc.Sequence`
        The picture's planes and bad pixels (`None` where a band has
        none) of each band used (see `clean_planes`).
    used : `~collections.abc.Sequence` [`str`]
        The bands used.
    weights : `numpy.ndarray`
        Their ``(n_bands, 3)`` weights.
    channels : `~collections.abc.Sequence` [`numpy.ndarray`]
        The picture's red, green and blue channels.
    orientation : `tuple` [`int`, `bool`]
        Quarter turns and flip of the picture (see `orient_picture`).
    black : `list` [`float` or `None`] or `None`
        The patch's black levels.

    Returns
    -------
    frames : `dict` [`str`, `numpy.ndarray`]
        Band -> ``(H, W)`` uint8 frame, oriented and resized like the
        picture.
    """
    stretch = config.stretch
    # The levels the RGB picture was stretched with.
    kwargs = stretch_parameters(stretch, tuple(np.asarray(c) for c in channels), black)
    frames = {}
    for j, band in enumerate(used):
        # The band with its gain in the channel it weighs most in (red
        # first on a tie): alone in that channel, it is that channel.
        channel = int(np.argmax(weights[j]))
        plane = gained(planes[j], float(weights[j, channel]))
        if kwargs is None:  # No finite pixel: the picture is black, and so is the frame.
            grey = np.zeros(plane.shape, dtype=np.uint8)
        else:
            # The level of that channel.
            band_kwargs = dict(kwargs)
            for name in ("minimum", "maximum"):
                if name in band_kwargs:
                    levels = list(np.atleast_1d(band_kwargs[name]))
                    band_kwargs[name] = [float(levels[channel if len(levels) == 3 else 0])]
            rgb = STRETCH_FUNCTIONS[stretch.algorithm](plane, plane, plane, **band_kwargs)
            # Equal channels give grey (to rounding, for perceptual):
            # their rounded mean.
            grey = ((rgb.astype(np.uint16).sum(axis=2) + 1) // 3).astype(np.uint8)
            if bad[j] is not None:
                grey[bad[j]] = 0
        # Through the picture's own orientation and resampling, so that
        # frame pixels line up exactly with the picture's.
        frame, _ = orient_picture(
            np.repeat(grey[:, :, None], 3, axis=2), None, *orientation, config.output_size
        )
        frames[band] = np.ascontiguousarray(frame[:, :, 0])
    return frames
