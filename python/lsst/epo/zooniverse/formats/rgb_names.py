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

"""Entry names of an RGB collection ZIP: safe, unique names for the
pictures made from object ids, and for their band frames.
"""

from __future__ import annotations

__all__ = ["frame_entry_names", "sanitize_entry_names"]

import re
from collections.abc import Iterable, Sequence

from .rgb_index import INDEX_NAME

_MAX_NAME_STEM = 100

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")


def sanitize_entry_names(object_ids: Iterable[str]) -> list[str]:
    """Make safe, unique PNG entry names from object ids.

    Parameters
    ----------
    object_ids : `~collections.abc.Iterable` [`str`]
        The ids, in collection order.

    Returns
    -------
    names : `list` [`str`]
        ``<id>.png`` where the id keeps only ``A-Z a-z 0-9 . _ + -`` (other
        runs become ``_``; no leading dot; at most 100 characters), made
        unique (also ignoring case, for case-insensitive file systems) by
        appending ``~2``, ``~3``, ... in order of appearance.
    """
    names: list[str] = []
    taken: set[str] = {INDEX_NAME}
    for object_id in object_ids:
        stem = _UNSAFE_NAME_CHARS.sub("_", str(object_id)).lstrip(".")[:_MAX_NAME_STEM] or "object"
        candidate, n = stem, 1
        while f"{candidate}.png".lower() in taken:
            n += 1
            candidate = f"{stem}~{n}"
        taken.add(f"{candidate}.png".lower())
        names.append(f"{candidate}.png")
    return names


def frame_entry_names(
    files: Sequence[str], bands: Sequence[Sequence[str] | None]
) -> list[dict[str, str] | None]:
    """Make the entry names of the band frames of a collection.

    Parameters
    ----------
    files : `~collections.abc.Sequence` [`str`]
        The entry names of the RGB pictures (``<stem>.png``, unique), in
        collection order.
    bands : `~collections.abc.Sequence` [`list` [`str`] or `None`]
        The bands of each picture's frames, in frame order (`None`: no
        frames).

    Returns
    -------
    names : `list` [`dict` [`str`, `str`] or `None`]
        Band -> entry name for each picture: ``<stem>+<band>.png``, with
        ``<stem>`` shortened so that ``<stem>+<band>`` keeps within 100
        characters, made unique against ``index.csv``, every picture and
        every earlier frame (also ignoring case) by appending ``~2``,
        ``~3``, ... before ``.png`` (in collection then frame order; the
        suffix too keeps within the 100 characters).
    """
    taken = {INDEX_NAME.lower()} | {str(name).lower() for name in files}
    result: list[dict[str, str] | None] = []
    for file, picture_bands in zip(files, bands):
        if picture_bands is None:
            result.append(None)
            continue
        stem = str(file)[: -len(".png")] if str(file).endswith(".png") else str(file)
        names: dict[str, str] = {}
        for band in picture_bands:
            n, suffix = 1, ""
            while True:
                room = _MAX_NAME_STEM - len(band) - 1 - len(suffix)
                candidate = f"{stem[:room]}+{band}{suffix}.png"
                if candidate.lower() not in taken:
                    break
                n += 1
                suffix = f"~{n}"
            taken.add(candidate.lower())
            names[band] = candidate
        result.append(names)
    return result
