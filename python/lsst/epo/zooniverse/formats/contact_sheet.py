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


"""Contact sheets: a grid of labelled thumbnails a person can look at."""

from __future__ import annotations

__all__ = ["contact_sheet_from_collections", "make_contact_sheet"]

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .png import as_pil_image

_LABEL_HEIGHT = 14
_GAP = 4


def make_contact_sheet(
    items: Iterable[tuple[Any, str]],
    *,
    thumb_size: int = 128,
    columns: int = 8,
    title: str | None = None,
) -> Image.Image:
    """Lay pictures out on a grid with a label under each.

    Parameters
    ----------
    items : `~collections.abc.Iterable` [`tuple`]
        ``(picture, label)`` pairs: a picture (RGB or grey
        `PIL.Image.Image` or `numpy.ndarray`) and its `str` label.
    thumb_size : `int`, optional
        Thumbnail side in pixels (aspect ratio kept).
    columns : `int`, optional
        Thumbnails per row.
    title : `str`, optional
        A line of text above the grid.

    Returns
    -------
    sheet : `PIL.Image.Image`
        The contact sheet (RGB).

    Raises
    ------
    ValueError
        Raised if there is nothing to show or the sizes are not positive.
    """
    if thumb_size < 8 or columns < 1:
        raise ValueError(f"thumb_size must be >= 8 and columns >= 1, not {thumb_size} and {columns}.")
    items = list(items)
    if not items:
        raise ValueError("A contact sheet needs at least one picture.")
    font = ImageFont.load_default()
    columns = min(columns, len(items))
    rows = math.ceil(len(items) / columns)
    cell_w, cell_h = thumb_size + _GAP, thumb_size + _LABEL_HEIGHT + _GAP
    top = _LABEL_HEIGHT + _GAP if title else 0
    sheet = Image.new("RGB", (columns * cell_w + _GAP, rows * cell_h + _GAP + top), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((_GAP, _GAP // 2), title, fill=(230, 230, 230), font=font)
    for k, (picture, label) in enumerate(items):
        image = as_pil_image(picture, what=f"picture {k}").convert("RGB")
        image.thumbnail((thumb_size, thumb_size), Image.Resampling.LANCZOS)
        column, row = k % columns, k // columns
        x = _GAP + column * cell_w + (thumb_size - image.width) // 2
        y = top + _GAP + row * cell_h + (thumb_size - image.height) // 2
        sheet.paste(image, (x, y))
        text = str(label)
        while len(text) > 3 and draw.textlength(text, font=font) > thumb_size:
            text = text[:-2] + "…" if not text.endswith("…") else text[:-2] + "…"
        draw.text(
            (_GAP + column * cell_w, top + _GAP + row * cell_h + thumb_size + 1),
            text,
            fill=(230, 230, 230),
            font=font,
        )
    return sheet


def contact_sheet_from_collections(
    collections: Sequence[Any],
    *,
    max_pictures: int = 64,
    thumb_size: int = 128,
    columns: int = 8,
    title: str | None = None,
) -> Image.Image:
    """Contact sheet of the first pictures of several RGB collections.

    Parameters
    ----------
    collections : `~collections.abc.Sequence` [`RgbCollection`]
        Collections, e.g. every ``zooniverse_rgb`` of a run.
    max_pictures : `int`, optional
        Most pictures shown (taken evenly across the collections' images).
    thumb_size, columns : `int`, optional
        See `make_contact_sheet`.
    title : `str`, optional
        See `make_contact_sheet`.

    Returns
    -------
    sheet : `PIL.Image.Image`
        The contact sheet.
    """
    items = []
    for collection in collections:
        index = collection.index
        for image, object_id, tract, patch in zip(
            collection.images, index["object_id"], index["tract"], index["patch"]
        ):
            items.append((image, f"{object_id} {tract}:{patch}"))
    if len(items) > max_pictures:
        chosen = np.linspace(0, len(items) - 1, max_pictures).round().astype(int)
        items = [items[k] for k in sorted(set(chosen))]
    return make_contact_sheet(items, thumb_size=thumb_size, columns=columns, title=title)
