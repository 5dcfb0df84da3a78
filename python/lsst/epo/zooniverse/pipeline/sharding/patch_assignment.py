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

"""Which patch of a tract pictures a catalog row.

A tract's patches tile it with their *inner* boxes and overlap through
their *outer* borders.  Rubin's ``detect_isPatchInner`` flag gives a source
to the one patch whose inner box holds it; `PatchGrid.home_mask` applies the
same rule to catalog rows, with one extension so that no row of the tract is
lost: a row outside the tract's grid of inner boxes (in the outer border of
a patch on the tract's edge) belongs to the nearest edge patch.  The inner
boxes of a tract therefore partition its rows: exactly one patch of the
tract is each row's *home*.

Why the home patch also gives the best stamp: the stamp of a row centred at
``floor(x + 0.5)`` in its home patch's inner box lies inside that patch's
outer box whenever the stamp's half-size (``size // 2``) is at most the
patch border.  And the home patch is never worse than a neighbour: on every
side its outer box reaches at least ``border`` pixels beyond the row,
while a neighbour's reaches less than ``border`` pixels on the side of the
shared boundary.  A stamp too large for the home patch's border is
therefore cut (padded with NO_DATA) in every patch of the tract.

Fallback: when the home patch lacks data (no coadd dataset for a band the
pictures use), the row is also given to one neighbour that has every band,
`PatchGrid.fallback_mask`.  What a patch has is known at quantum-graph
build time through `find_neighbour_coadds`, the lookup function of an
optional prerequisite input, so the decision needs no registry at run
time.  pipe_base refuses a dataset type that is a prerequisite input of
one task and a regular input of another in the same pipeline: the fused
pipeline's ``makePictures`` reads ``deep_coadd`` as a prerequisite, so the
fallback runs there in one step (its default); the three-task pipeline's
``extractStamps`` reads it as a regular input, so with the fallback its
``shardCatalog`` runs as a pipeline of its own and the picture tasks run
on its output.  The fallback is decided per
dataset (a coadd exists for the band or not), not per pixel: a row whose
home coadd exists but has no data at the row is reported by the picture
task (``no_data``, ``low_coverage``), not moved.
"""

from __future__ import annotations

__all__ = ["ASSIGNMENT_RULES", "PatchGrid", "find_neighbour_coadds", "patch_bands"]

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ...butler.skymap_geometry import Box2, TractGeometry
from ...butler.tract_frame import TractFrame

ASSIGNMENT_RULES = {
    "inner_patch": (
        "each row in the one patch whose inner box holds it (Rubin's detect_isPatchInner; rows beyond "
        "the tract's grid of inner boxes go to the nearest edge patch), plus, with "
        "fallback_to_neighbour, one neighbour when that patch lacks a coadd band"
    ),
    "every_overlapping_patch": (
        "each row in every patch whose region holds it (objects in patch overlaps are pictured more "
        "than once; EPO publishes one)"
    ),
}
"""Allowed values of ``ShardCatalogConfig.assign_to``, with what they do."""


@dataclasses.dataclass(frozen=True)
class PatchGrid:
    """A tract's grid of inner patch boxes.

    Parameters
    ----------
    x0, y0 : `int`
        Tract pixel of the first inner box's first pixel.
    width, height : `int`
        Inner box size in pixels.
    nx, ny : `int`
        Patches along x and y; patch ``(i, j)`` has id ``j * nx + i``.
    """

    x0: int
    y0: int
    width: int
    height: int
    nx: int
    ny: int

    @classmethod
    def from_geometry(cls, geometry: TractGeometry | TractFrame) -> PatchGrid:
        """Return the grid of a tract.

        Parameters
        ----------
        geometry : `TractGeometry` or `TractFrame`
            The tract (this package's sky map, or the frame derived from
            the dimension records).

        Returns
        -------
        grid : `PatchGrid`
            Its grid.
        """
        if isinstance(geometry, TractFrame):
            nx, ny = geometry.patch_counts
            return cls(0, 0, geometry.size[0] // nx, geometry.size[1] // ny, nx, ny)
        width, height = geometry.patch_inner_size
        return cls(geometry.border, geometry.border, width, height, geometry.nx, geometry.ny)

    def index(self, patch: int) -> tuple[int, int]:
        """Return ``(i, j)``, a patch's column and row in the grid."""
        if not 0 <= patch < self.nx * self.ny:
            raise ValueError(f"The tract has no patch {patch} ({self.nx} x {self.ny} patches).")
        return patch % self.nx, patch // self.nx

    def inner_bbox(self, patch: int) -> Box2:
        """Return a patch's inner box (`Box2`, tract pixels)."""
        i, j = self.index(patch)
        x0 = self.x0 + i * self.width
        y0 = self.y0 + j * self.height
        return Box2(x0, y0, x0 + self.width, y0 + self.height)

    def home_mask(self, patch: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether ``patch`` is each position's home patch.

        Parameters
        ----------
        patch : `int`
            The patch.
        x, y : `numpy.ndarray`
            Tract pixel positions (pixel centres at integers).

        Returns
        -------
        home : `numpy.ndarray` [`bool`]
            True where the position is in the patch's inner box (half-open,
            as `Box2.contains`), or beyond the grid on a side where the
            patch is the grid's last one.  NaN positions are never home.
        """
        i, j = self.index(patch)
        box = self.inner_bbox(patch)
        x_lo = -np.inf if i == 0 else box.x0 - 0.5
        x_hi = np.inf if i == self.nx - 1 else box.x1 - 0.5
        y_lo = -np.inf if j == 0 else box.y0 - 0.5
        y_hi = np.inf if j == self.ny - 1 else box.y1 - 0.5
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        return (x >= x_lo) & (x < x_hi) & (y >= y_lo) & (y < y_hi)

    def home_patch(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Return each position's home patch id (-1 for NaN positions)."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        good = np.isfinite(x) & np.isfinite(y)
        i = np.clip(np.floor((np.where(good, x, 0.0) + 0.5 - self.x0) / self.width), 0, self.nx - 1)
        j = np.clip(np.floor((np.where(good, y, 0.0) + 0.5 - self.y0) / self.height), 0, self.ny - 1)
        return np.where(good, j.astype(np.int64) * self.nx + i.astype(np.int64), -1)

    def fallback_mask(
        self,
        patch: int,
        x: np.ndarray,
        y: np.ndarray,
        complete: Iterable[int],
    ) -> np.ndarray:
        """Whether ``patch`` pictures each row in place of its home patch.

        Parameters
        ----------
        patch : `int`
            The patch (its quantum holds the rows in its outer region).
        x, y : `numpy.ndarray`
            Tract pixel positions of rows in the patch's outer region.
        complete : `~collections.abc.Iterable` [`int`]
            Patches of the neighbourhood that have every band.

        Returns
        -------
        fallback : `numpy.ndarray` [`bool`]
            True where the row's home patch is incomplete, and ``patch`` is
            complete and of the complete patches the one whose inner box is
            nearest to the row (largest `Box2.distance_inside`; ties to the
            smaller id).  Every quantum of the neighbourhood makes the same
            choice, so at most one neighbour takes each row; a row outside
            that neighbour's outer region stays with its home patch only.
        """
        complete = sorted(set(complete))
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if patch not in complete or not len(x):
            return np.zeros(len(x), dtype=bool)
        home_complete = np.isin(self.home_patch(x, y), complete)
        distances = np.stack([self.inner_bbox(p).distance_inside(x, y) for p in complete])
        # argmax returns the first maximum: ties go to the smaller patch id.
        nearest = np.asarray(complete)[np.argmax(distances, axis=0)]
        return ~home_complete & (nearest == patch)


def patch_bands(data_ids: Iterable[Mapping[str, Any]]) -> dict[int, set[str]]:
    """Return the bands each patch has, from the data IDs of its coadds.

    Parameters
    ----------
    data_ids : `~collections.abc.Iterable` [`~collections.abc.Mapping`]
        Data IDs with ``patch`` and ``band``.

    Returns
    -------
    bands : `dict` [`int`, `set` [`str`]]
        Bands per patch.
    """
    bands: dict[int, set[str]] = {}
    for data_id in data_ids:
        bands.setdefault(int(data_id["patch"]), set()).add(str(data_id["band"]))
    return bands


_TRACT_PATCHES: dict[tuple[str, bytes, int], tuple[tuple[int, Any], ...]] = {}
"""Patch ids and regions of the tracts seen, by sky map name, sky map hash
and tract.  A registered sky map's records never change, and its hash (of
its configuration, for lsst.skymap and for this package's geometries)
tells two sky maps of one name apart, so the records of a tract are read
once a process rather than once a quantum of the graph."""

_TRACT_PATCHES_KEPT = 64
"""Tracts kept in `_TRACT_PATCHES`; it is emptied when it would hold more."""


def _tract_patches(registry: Any, data_id: Any) -> tuple[tuple[int, Any], ...]:
    """Return ``(patch id, region)`` of every patch of ``data_id``'s tract
    (``data_id`` expanded).
    """
    skymap = data_id.records["skymap"]
    key = (str(skymap.name), bytes(skymap.hash), int(data_id["tract"]))
    patches = _TRACT_PATCHES.get(key)
    if patches is None:
        records = registry.queryDimensionRecords(
            "patch", dataId={"skymap": data_id["skymap"], "tract": data_id["tract"]}
        )
        patches = tuple((int(record.id), record.region) for record in records)
        if len(_TRACT_PATCHES) >= _TRACT_PATCHES_KEPT:
            _TRACT_PATCHES.clear()
        _TRACT_PATCHES[key] = patches
    return patches


def find_neighbour_coadds(
    dataset_type: Any, registry: Any, data_id: Any, collections: Sequence[str]
) -> list[Any]:
    """Find the coadds of a patch and of the patches that overlap it.

    The ``lookupFunction`` of ``shardCatalog``'s ``neighbour_coadds``
    prerequisite input, called once per quantum when the quantum graph is
    built (never at run time).

    Parameters
    ----------
    dataset_type : `lsst.daf.butler.DatasetType`
        The coadd dataset type (dimensions ``skymap``, ``tract``,
        ``patch``, ``band``).
    registry : `lsst.daf.butler.Registry`
        The registry.
    data_id : `lsst.daf.butler.DataCoordinate`
        The quantum's data ID (``skymap``, ``tract``, ``patch``).
    collections : `~collections.abc.Sequence` [`str`]
        The input collections.

    Returns
    -------
    refs : `list` [`lsst.daf.butler.DatasetRef`]
        Every band's coadd of the patches of the same tract whose region
        overlaps the quantum's patch region (the patch itself included),
        sorted by patch and band.
    """
    # One query a quantum: the tract's patch records come from
    # _tract_patches (read once a tract), the overlap test is the
    # records' own regions; only the coadds, which may change between two
    # graphs, are looked up every time.
    if not data_id.hasRecords():
        data_id = registry.expandDataId(data_id)
    region = data_id.region
    tract_id = {"skymap": data_id["skymap"], "tract": data_id["tract"]}
    neighbours = {int(data_id["patch"])} | {
        patch
        for patch, patch_region in _tract_patches(registry, data_id)
        if not region.isDisjointFrom(patch_region)
    }
    refs = registry.queryDatasets(
        dataset_type,
        collections=collections,
        dataId=tract_id,
        where="patch IN (:patches)",
        bind={"patches": sorted(neighbours)},
        findFirst=True,
    )
    return sorted(
        refs,
        key=lambda ref: (int(ref.dataId["patch"]), str(ref.dataId["band"])),
    )
