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
"""The band frames of an RGB collection's pictures (one grey picture
per band, for Zooniverse's multi-frame subjects): their check on the way
into a collection.
"""

from __future__ import annotations

__all__ = ["check_band_frames"]

from collections.abc import Mapping, Sequence

import numpy as np

from .rgb_index import FRAME_BAND_PATTERN


def check_band_frames(
    frames: Sequence[Mapping[str, np.ndarray] | None] | None, images: Sequence[np.ndarray]
) -> list[dict[str, np.ndarray] | None]:
    """Check the band frames given to `~.rgb_collection.RgbCollection`.

    Parameters
    ----------
    frames : `~collections.abc.Sequence` or `None`
        `None`, or one entry per image: `None` (or an empty mapping) for
        an image without frames, or a mapping band -> 2-D ``uint8`` array
        of the image's height and width.
    images : `~collections.abc.Sequence` [`numpy.ndarray`]
        The collection's images.

    Returns
    -------
    checked : `list` [`dict` [`str`, `numpy.ndarray`] or `None`]
        One entry per image: `None`, or read-only C-ordered copies of its
        frames by band.

    Raises
    ------
    TypeError
        Raised if ``frames`` is not a list of such entries, or a frame is
        not a ``uint8`` numpy array.
    ValueError
        Raised for a wrong number of entries, a band name outside
        `~.rgb_index.FRAME_BAND_PATTERN`, or a frame of another shape than
        its image's.
    """
    if frames is None:
        return [None] * len(images)
    if isinstance(frames, (Mapping, str, bytes, np.ndarray)) or not isinstance(frames, Sequence):
        raise TypeError(
            f"frames must be None or a list with one entry per image, not {type(frames).__name__}."
        )
    if len(frames) != len(images):
        raise ValueError(f"{len(frames)} frame entries for {len(images)} images.")
    checked: list[dict[str, np.ndarray] | None] = []
    for k, picture_frames in enumerate(frames):
        if picture_frames is None or (isinstance(picture_frames, Mapping) and not picture_frames):
            checked.append(None)
            continue
        if not isinstance(picture_frames, Mapping):
            raise TypeError(
                f"frames[{k}] must be None or a dict band -> 2-D uint8 array, "
                f"not {type(picture_frames).__name__}."
            )
        expected = images[k].shape[:2]
        result: dict[str, np.ndarray] = {}
        for band, frame in picture_frames.items():
            if not isinstance(band, str) or not FRAME_BAND_PATTERN.fullmatch(band):
                raise ValueError(
                    f"frames[{k}]: band name {band!r} is not 1-16 characters from A-Z a-z 0-9 _ -."
                )
            if not isinstance(frame, np.ndarray):
                raise TypeError(
                    f"frames[{k}][{band!r}] must be a 2-D uint8 numpy array, not {type(frame).__name__}."
                )
            if frame.dtype != np.uint8:
                raise TypeError(f"frames[{k}][{band!r}] must have dtype uint8, not {frame.dtype}.")
            if frame.shape != expected:
                raise ValueError(
                    f"frames[{k}][{band!r}] has shape {frame.shape}; expected {expected}, "
                    "the height and width of its image."
                )
            array = np.array(frame, dtype=np.uint8, order="C", copy=True)
            array.flags.writeable = False
            result[band] = array
        checked.append(result)
    return checked
