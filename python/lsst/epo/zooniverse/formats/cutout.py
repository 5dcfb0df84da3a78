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

"""Single PNG cutouts (`zooniverse_cutout` datasets).

A PI who makes an image by hand stores it with::

    butler.put(
        make_cutout_image(rgb_array, metadata={"object_id": "42"}),
        "zooniverse_cutout",
        dataId,
    )

or simply ``butler.put(rgb_array, ...)`` / ``butler.put(pil_image, ...)``.
The PNG's text chunks come from the string entries of the PIL image's
``info`` mapping, so metadata read back from a PNG survives a re-put.
"""

from __future__ import annotations

__all__ = ["cutout_image_from_array", "cutout_text_metadata", "make_cutout_image"]

from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from .png import as_pil_image, check_text_key, check_text_value, validate_image_array


def make_cutout_image(image: Any, metadata: Mapping[str, Any] | None = None) -> Image.Image:
    """Make the PIL image to store as a `zooniverse_cutout`.

    Parameters
    ----------
    image : `numpy.ndarray` or `PIL.Image.Image`
        ``uint8`` pixels, ``(H, W)`` grey, ``(H, W, 3)`` RGB or
        ``(H, W, 4)`` RGBA, with row 0 at the top of the picture; or a PIL
        image of mode ``L``, ``RGB`` or ``RGBA``.
    metadata : `~collections.abc.Mapping` [`str`, `object`], optional
        Written as PNG text chunks; values are converted with `str`.  Keys
        must be 1-79 Latin-1 characters.

    Returns
    -------
    cutout : `PIL.Image.Image`
        A new image (the input is not modified) whose ``info`` holds the
        metadata.

    Raises
    ------
    TypeError
        Raised for a non-``uint8`` array or an unsupported type.
    ValueError
        Raised for an unsupported shape or mode, an empty image, or a
        metadata key that cannot be a PNG text keyword.
    """
    pil_image = as_pil_image(image).copy()
    for key, value in (metadata or {}).items():
        if not isinstance(key, str):
            raise TypeError(f"Cutout metadata keys must be strings, not {key!r}.")
        check_text_key(key)
        check_text_value(key, str(value))
        pil_image.info[key] = str(value)
    return pil_image


def cutout_image_from_array(array: np.ndarray) -> Image.Image:
    """Convert a ``uint8`` array to a PIL image for `butler.put`.

    This is the storage-class converter that lets ``butler.put`` take a
    numpy array directly.

    Parameters
    ----------
    array : `numpy.ndarray`
        ``uint8`` pixels, ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``.

    Returns
    -------
    image : `PIL.Image.Image`
        The image.

    Raises
    ------
    TypeError
        Raised for a non-``uint8`` array (e.g. floats or NaN).
    ValueError
        Raised for an unsupported or empty shape.
    """
    return as_pil_image(validate_image_array(array, what="zooniverse_cutout array"))


def cutout_text_metadata(image: Image.Image) -> dict[str, str]:
    """Return the metadata of a cutout that is written as PNG text chunks.

    Parameters
    ----------
    image : `PIL.Image.Image`
        The cutout.

    Returns
    -------
    metadata : `dict` [`str`, `str`]
        The string-valued entries of ``image.info``, in order.  Entries
        Pillow uses for other purposes (``dpi``, ``gamma``, ...) are not
        strings and are left out.
    """
    return {
        key: value for key, value in image.info.items() if isinstance(key, str) and isinstance(value, str)
    }
