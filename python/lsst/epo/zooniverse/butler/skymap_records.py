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

"""Sky map dimension records written the way lsst.skymap writes them, for
test repositories shaped like Rubin's (no lsst.skymap, which needs afw).

lsst.skymap's ``BaseSkyMap.register`` inserts one ``skymap`` record
(``skymap``, ``hash``, ``tract_max``, ``patch_nx_max``, ``patch_ny_max``),
one ``tract`` record per tract (``skymap``, ``tract``, ``region`` = the sky
polygon through the outer corners of the tract's pixel box) and one
``patch`` record per patch (``skymap``, ``tract``, ``patch`` = ``y * nx +
x``, ``cell_x``, ``cell_y``, ``region`` = the polygon of the patch's outer
box), registers the ``skyMap`` dataset type (storage class ``SkyMap``) and
its run ``skymaps``.  Its tract builders (``tractBuilder.py``) make the
tract box a whole number of inner patches starting at pixel 0, and grow
each inner box by the patch border: the legacy builder clips the result to
the tract, the cell-based builder does not.
"""

from __future__ import annotations

__all__ = ["SKYMAP_DATASET_TYPE", "SKYMAP_RUN", "RubinTract", "register_skymap_records"]

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import astropy.wcs

from ..formats.wcs_metadata import wcs_from_header_string
from .skymap_geometry import Box2, box_sky_polygon

SKYMAP_DATASET_TYPE = "skyMap"
"""lsst.skymap's dataset type (``BaseSkyMap.SKYMAP_DATASET_TYPE_NAME``)."""
SKYMAP_RUN = "skymaps"
"""lsst.skymap's run (``BaseSkyMap.SKYMAP_RUN_COLLECTION_NAME``)."""


@dataclasses.dataclass(frozen=True)
class RubinTract:
    """One tract cut into patches as lsst.skymap's tract builders cut it.

    Parameters
    ----------
    tract_id : `int`
        Tract number.
    wcs_header : `str`
        FITS cards of the tract's 0-based-pixel celestial WCS.
    patch_counts : `tuple` [`int`, `int`]
        Patches along x and y.
    patch_inner_size : `tuple` [`int`, `int`]
        Inner patch size ``(width, height)``.
    patch_border : `int`
        Pixels between a patch's inner and outer boxes.
    clip_outer : `bool`
        Clip outer boxes to the tract (the legacy builder) or not (the
        cell-based builder, Rubin's).
    """

    tract_id: int
    wcs_header: str
    patch_counts: tuple[int, int]
    patch_inner_size: tuple[int, int]
    patch_border: int
    clip_outer: bool = False

    @property
    def wcs(self) -> astropy.wcs.WCS:
        """The tract WCS (`astropy.wcs.WCS`)."""
        return wcs_from_header_string(self.wcs_header)

    @property
    def bbox(self) -> Box2:
        """The tract box, a whole number of inner patches (`Box2`)."""
        return Box2(
            0,
            0,
            self.patch_counts[0] * self.patch_inner_size[0],
            self.patch_counts[1] * self.patch_inner_size[1],
        )

    def patch_ids(self) -> Iterator[int]:
        """Yield the patch ids (``y * nx + x``)."""
        yield from range(self.patch_counts[0] * self.patch_counts[1])

    def patch_index(self, patch_id: int) -> tuple[int, int]:
        """Return a patch's ``(x, y)`` index."""
        nx, ny = self.patch_counts
        if not 0 <= patch_id < nx * ny:
            raise ValueError(f"Tract {self.tract_id} has no patch {patch_id}.")
        return patch_id % nx, patch_id // nx

    def patch_inner_bbox(self, patch_id: int) -> Box2:
        """Return a patch's inner box (`Box2`)."""
        i, j = self.patch_index(patch_id)
        width, height = self.patch_inner_size
        return Box2(i * width, j * height, (i + 1) * width, (j + 1) * height)

    def patch_outer_bbox(self, patch_id: int) -> Box2:
        """Return a patch's outer box (`Box2`)."""
        inner = self.patch_inner_bbox(patch_id)
        border = self.patch_border
        outer = Box2(inner.x0 - border, inner.y0 - border, inner.x1 + border, inner.y1 + border)
        if self.clip_outer:
            bbox = self.bbox
            outer = Box2(
                max(outer.x0, bbox.x0), max(outer.y0, bbox.y0), min(outer.x1, bbox.x1), min(outer.y1, bbox.y1)
            )
        return outer


def _hash(name: str, tracts: Sequence[RubinTract]) -> bytes:
    text = json.dumps({"name": name, "tracts": [dataclasses.asdict(t) for t in tracts]}, sort_keys=True)
    return hashlib.sha1(text.encode()).digest()


def register_skymap_records(butler: Any, name: str, tracts: Sequence[RubinTract]) -> None:
    """Register a sky map's dimension records as lsst.skymap does.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        A writeable Butler.
    name : `str`
        The sky map name.
    tracts : `~collections.abc.Sequence` [`RubinTract`]
        The tracts, numbered ``0 .. len(tracts) - 1`` as lsst.skymap
        numbers them.

    Notes
    -----
    The ``skyMap`` dataset type and the ``skymaps`` run are registered, but
    no ``skyMap`` dataset is written: it is a pickled lsst.skymap object.
    Registering the same sky map twice does nothing the second time.
    """
    from lsst.daf.butler import DatasetType

    if [t.tract_id for t in tracts] != list(range(len(tracts))):
        raise ValueError("lsst.skymap numbers tracts 0 .. n-1 in order.")
    record = {
        "skymap": name,
        "hash": _hash(name, tracts),
        "tract_max": len(tracts),
        "patch_nx_max": max(t.patch_counts[0] for t in tracts),
        "patch_ny_max": max(t.patch_counts[1] for t in tracts),
    }
    butler.registry.registerRun(SKYMAP_RUN)
    butler.registry.registerDatasetType(
        DatasetType(SKYMAP_DATASET_TYPE, ["skymap"], "SkyMap", universe=butler.dimensions)
    )
    with butler.transaction():
        if not butler.registry.syncDimensionData("skymap", record):
            return
        for tract in tracts:
            wcs = tract.wcs
            butler.registry.insertDimensionData(
                "tract", {"skymap": name, "tract": tract.tract_id, "region": box_sky_polygon(wcs, tract.bbox)}
            )
            patches = []
            for patch_id in tract.patch_ids():
                i, j = tract.patch_index(patch_id)
                patches.append(
                    {
                        "skymap": name,
                        "tract": tract.tract_id,
                        "patch": patch_id,
                        "cell_x": i,
                        "cell_y": j,
                        "region": box_sky_polygon(wcs, tract.patch_outer_bbox(patch_id)),
                    }
                )
            butler.registry.insertDimensionData("patch", *patches)
