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


"""The ``shardCatalog`` task: the catalog rows that fall in one patch."""

from __future__ import annotations

__all__ = ["ShardCatalogConfig", "ShardCatalogConnections", "ShardCatalogTask", "select_patch_rows"]

import logging
import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import numpy as np
from astropy.table import Table, vstack

from lsst.pex.config import ChoiceField, Field, ListField
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod

from ..butler.dataset_types import DEEP_COADD, SKYMAP, TARGETS, TARGETS_PATCH
from ..butler.skymap_geometry import SkyMapGeometry
from ..butler.tract_frame import TractFrame
from .config_errors import ConfigValueError
from .sharding.patch_assignment import ASSIGNMENT_RULES, PatchGrid, find_neighbour_coadds, patch_bands
from .startup_objects import freeze_startup_objects

_LOG = logging.getLogger(__name__)


class ShardCatalogConnections(PipelineTaskConnections, dimensions=("skymap", "tract", "patch")):
    """Connections of `ShardCatalogTask`."""

    targets = TARGETS.connection(
        cT.Input,
        doc="The PI's catalog, sharded by HTM level-7 trixel; every shard that overlaps the patch.",
        multiple=True,
        deferLoad=True,
    )
    sky_map = SKYMAP.connection(
        cT.PrerequisiteInput,
        doc="Optional: this package's sky map geometry (tract WCS, patch inner/outer boxes), used when "
        "the repository has it; without it the geometry comes from the skymap, tract and patch "
        "dimension records every Rubin repository holds.",
        minimum=0,
    )
    neighbour_coadds = DEEP_COADD.connection(
        cT.PrerequisiteInput,
        doc="Only with assign_to='inner_patch' and fallback_to_neighbour: the coadds of this patch and "
        "of the patches overlapping it, found when the quantum graph is built (never read; their data "
        "IDs say which patch has which band).  pipe_base refuses a dataset type that is a prerequisite "
        "here and a regular input of another task of the same pipeline.",
        multiple=True,
        minimum=0,
        deferLoad=True,
        lookupFunction=find_neighbour_coadds,
    )
    targets_patch = TARGETS_PATCH.connection(
        cT.Output,
        doc="Catalog rows inside the patch, with their tract pixel position and distance to the "
        "patch's inner boundary.",
    )

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if config is not None and not (config.assign_to == "inner_patch" and config.fallback_to_neighbour):
            del self.neighbour_coadds


class ShardCatalogConfig(PipelineTaskConfig, pipelineConnections=ShardCatalogConnections):
    """Configuration of `ShardCatalogTask`."""

    do_check_region = Field[bool](
        doc="Keep only rows inside the patch's sky region (the registry's polygon); if False, keep "
        "rows whose tract pixel position falls in the patch's outer box.",
        default=True,
    )
    tract_pixel_scale = Field[float](
        doc="Pixel scale of the sky map's tracts in arcseconds, used only without a zooniverse_skymap "
        "dataset, to put the tract frame derived from the dimension records in pixels (Rubin's sky "
        "maps, DP1's included, have 0.2).",
        default=0.2,
    )
    assign_to = ChoiceField[str](
        doc="Which patches get a row. 'every_overlapping_patch': every patch whose region holds it, so "
        "an object in the overlap of patches is pictured in each (EPO publishes one). 'inner_patch': "
        "the one patch whose inner box holds it, as Rubin's detect_isPatchInner flag (a row beyond the "
        "tract's grid of inner boxes goes to the nearest edge patch); the patch's outer border holds "
        "its stamp whenever the stamp's half-size is at most the border, and no other patch of the "
        "tract holds more of it.  Objects in the overlap of two tracts are given to a patch in each.",
        allowed=ASSIGNMENT_RULES,
        default="every_overlapping_patch",
    )
    fallback_to_neighbour = Field[bool](
        doc="With assign_to='inner_patch': when a row's inner patch lacks data (no coadd dataset of a "
        "band of fallback_bands), also give the row to the neighbour that has every band and whose "
        "inner box is nearest to it, if the row is in that neighbour's region.  What each patch has "
        "comes from the neighbour_coadds prerequisite input, looked up when the quantum graph is "
        "built; its dataset type (connections.neighbour_coadds, default deep_coadd) must not be a "
        "regular input of another task of the same pipeline: the fused pipeline "
        "(ZooniverseCutoutsFused.yaml, whose makePictures reads deep_coadd as a prerequisite too) sets "
        "this and inner_patch by default; with the three-task pipeline, whose extractStamps reads "
        "deep_coadd as a regular input, run shardCatalog on its own (#shardCatalog), then the other "
        "tasks on its output (--dataset-query-constraint zooniverse_targets_patch).",
        default=False,
    )
    fallback_bands = ListField[str](
        doc="Bands a patch needs to picture its rows (fallback_to_neighbour); empty: every band that "
        "some patch of the neighbourhood has.",
        default=[],
    )

    def validate(self):
        super().validate()
        if not (math.isfinite(self.tract_pixel_scale) and self.tract_pixel_scale > 0):
            raise ConfigValueError(
                ShardCatalogConfig.tract_pixel_scale,
                self,
                self.tract_pixel_scale,
                "arcseconds, finite and > 0",
            )


def select_patch_rows(
    tables: Iterable[Table],
    *,
    sky_map: SkyMapGeometry | None = None,
    tract: int,
    patch: int,
    region: Any = None,
    tract_frame: TractFrame | None = None,
    skymap_name: str | None = None,
    assign_to: str = "every_overlapping_patch",
    bands_by_patch: Mapping[int, Collection[str]] | None = None,
    fallback_bands: Collection[str] = (),
) -> tuple[Table, dict[str, int]]:
    # Over 80 lines with its docstring (ten parameters); the code is
    # one pass of about 55 lines.
    """Select the catalog rows that fall in one patch.

    Parameters
    ----------
    tables : `~collections.abc.Iterable` [`astropy.table.Table`]
        Target shards (``object_id``, ``ra``, ``dec``, ``row_index``, ...).
    sky_map : `~lsst.epo.zooniverse.butler.skymap_geometry.SkyMapGeometry`
        The sky map (the ``zooniverse_skymap`` dataset); or `None` with
        ``tract_frame``.
    tract, patch : `int`
        The patch.
    region : `lsst.sphgeom.Region`, optional
        The patch's sky region; rows outside it are dropped.  If `None`,
        rows outside the patch's outer pixel box are dropped instead.
    tract_frame : `~lsst.epo.zooniverse.butler.tract_frame.TractFrame`
        The tract frame derived from the dimension records, used when
        ``sky_map`` is `None`.
    skymap_name : `str`, optional
        The sky map name recorded in the table's metadata (default: the
        ``sky_map``'s).
    assign_to : `str`, optional
        A key of `ASSIGNMENT_RULES`: ``"every_overlapping_patch"`` keeps
        every row inside the patch; ``"inner_patch"`` only those whose home
        is the patch (`PatchGrid.home_mask`), plus the fallback rows.
    bands_by_patch : `~collections.abc.Mapping` [`int`, \
            `~collections.abc.Collection` [`str`]], optional
        With ``"inner_patch"``: the coadd bands of the patch and of its
        neighbours (a patch left out has none).  `None`: no fallback.
    fallback_bands : `~collections.abc.Collection` [`str`], optional
        Bands a patch needs (empty: the union of ``bands_by_patch``).

    Returns
    -------
    rows : `astropy.table.Table`
        The rows inside the patch, sorted by ``row_index``, with added
        columns ``tract``, ``patch``, ``x``, ``y`` (tract pixel position)
        and ``edge_distance`` (pixels to the patch's inner boundary:
        positive inside it, negative in the overlap with a neighbour).
    counts : `dict` [`str`, `int`]
        ``n_input`` rows seen, ``n_outside`` rows outside the patch,
        ``n_other_patch`` rows inside it given to another patch
        (``"inner_patch"``) and ``n_fallback`` rows kept because their
        inner patch lacks a band.
    """
    if assign_to not in ASSIGNMENT_RULES:
        raise ValueError(f"assign_to must be one of {', '.join(ASSIGNMENT_RULES)}, not {assign_to!r}.")
    tables = [t for t in tables if len(t)]
    if sky_map is not None:
        geometry: Any = sky_map.tract(tract)
        skymap_name = skymap_name or sky_map.name
    elif tract_frame is not None:
        geometry = tract_frame
    else:
        raise TypeError("select_patch_rows needs a sky_map or a tract_frame.")
    if tables:
        rows = vstack(tables, join_type="exact", metadata_conflicts="silent")
    else:
        rows = Table(
            {"object_id": np.array([], dtype=str), "ra": [], "dec": [], "row_index": np.array([], int)}
        )
    n_input = len(rows)
    if n_input:
        # A row can sit in two shards only if a shard is listed twice.
        _, first = np.unique(np.asarray(rows["row_index"]), return_index=True)
        rows = rows[np.sort(first)]
    ra = np.asarray(rows["ra"], dtype=float)
    dec = np.asarray(rows["dec"], dtype=float)
    x, y = geometry.wcs.wcs_world2pix(ra, dec, 0) if len(rows) else (np.array([]), np.array([]))
    if region is not None:
        inside = np.asarray(region.contains(np.radians(ra), np.radians(dec)), dtype=bool).reshape(len(rows))
    else:
        inside = geometry.patch_outer_bbox(patch).contains(x, y)
    inside &= np.isfinite(x) & np.isfinite(y)
    n_inside = int(inside.sum())
    n_fallback = 0
    if assign_to == "inner_patch":
        grid = PatchGrid.from_geometry(geometry)
        home = grid.home_mask(patch, x, y)
        if bands_by_patch is not None:
            needed = set(fallback_bands) or set().union(*bands_by_patch.values())
            complete = [p for p, bands in bands_by_patch.items() if needed <= set(bands)]
            fallback = inside & ~home
            fallback[fallback] = grid.fallback_mask(patch, x[fallback], y[fallback], complete)
            n_fallback = int(fallback.sum())
            home |= fallback
        inside &= home
    rows = rows[inside]
    rows["tract"] = np.full(len(rows), tract, dtype=np.int64)
    rows["patch"] = np.full(len(rows), patch, dtype=np.int64)
    rows["x"] = x[inside]
    rows["y"] = y[inside]
    rows["edge_distance"] = geometry.patch_inner_bbox(patch).distance_inside(x[inside], y[inside])
    rows.sort("row_index")
    rows.meta = {"skymap": skymap_name, "tract": tract, "patch": patch}
    return rows, {
        "n_input": n_input,
        "n_outside": n_input - n_inside,
        "n_other_patch": n_inside - len(rows),
        "n_fallback": n_fallback,
    }


class ShardCatalogTask(PipelineTask):
    """Gather the catalog rows that fall in one patch.

    Notes
    -----
    The quantum graph joins every ``zooniverse_targets`` HTM shard that
    overlaps the patch's region; this task keeps the rows inside the region
    itself and records each row's tract pixel position and its distance to
    the patch's inner boundary.  With ``assign_to="every_overlapping_patch"``
    a row near a boundary is kept by every patch that contains it (the
    distance later decides which picture EPO publishes); with
    ``assign_to="inner_patch"`` only by the patch whose inner box holds it
    (`~.sharding.patch_assignment`), so each object is pictured once, and,
    with ``fallback_to_neighbour``, also by one neighbour when that patch
    lacks a coadd band.  Either way every accepted row is in at least one
    patch's output or outside every patch region, which keeps the
    accounting (`~.accounting.account_targets`) exact.

    The tract and patch geometry comes from the ``zooniverse_skymap``
    dataset when the repository has one (exactly as before), otherwise
    from the quantum's ``skymap``, ``tract`` and ``patch`` dimension
    records (`~lsst.epo.zooniverse.butler.tract_frame.TractFrame`, with
    ``tract_pixel_scale``); see ``doc/rsp_dp1.md``.
    """

    ConfigClass = ShardCatalogConfig
    _DefaultName = "shardCatalog"
    config: ShardCatalogConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        freeze_startup_objects()
        inputs = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        bands_by_patch = None
        if "neighbour_coadds" in inputs:
            # Only the data IDs matter: which patch has which band.
            inputs.pop("neighbour_coadds")
            bands_by_patch = patch_bands(ref.dataId for ref in inputRefs.neighbour_coadds)
        region = data_id.region if self.config.do_check_region else None
        sky_map = inputs.pop("sky_map", None) or None
        frame = None
        if sky_map is None:
            records = data_id.records
            frame = TractFrame.from_records(
                records["skymap"],
                records["tract"],
                records["patch"],
                pixel_scale_arcsec=self.config.tract_pixel_scale,
            )
        outputs = self.run(
            **inputs,
            sky_map=sky_map,
            tract=data_id["tract"],
            patch=data_id["patch"],
            region=region,
            tract_frame=frame,
            skymap_name=data_id["skymap"],
            bands_by_patch=bands_by_patch,
        )
        butlerQC.put(outputs, outputRefs)

    @timeMethod
    def run(
        self,
        *,
        targets,
        sky_map: SkyMapGeometry | None = None,
        tract: int,
        patch: int,
        region: Any = None,
        tract_frame: TractFrame | None = None,
        skymap_name: str | None = None,
        bands_by_patch: Mapping[int, Collection[str]] | None = None,
    ) -> Struct:
        """Select the rows of one patch.

        Parameters
        ----------
        targets : `list` [`astropy.table.Table` or `DeferredDatasetHandle`]
            The overlapping target shards (tables or handles to them).
        sky_map : `~lsst.epo.zooniverse.butler.skymap_geometry.SkyMapGeometry`
            The sky map, or `None` to use ``tract_frame``.
        tract, patch : `int`
            The patch.
        region : `lsst.sphgeom.Region`, optional
            The patch's sky region (`None`: use the patch's pixel box).
        tract_frame : `~lsst.epo.zooniverse.butler.tract_frame.TractFrame`
            The tract frame from the dimension records (without
            ``sky_map``).
        skymap_name : `str`, optional
            The sky map name for the output's metadata.
        bands_by_patch : `~collections.abc.Mapping` [`int`, \
                `~collections.abc.Collection` [`str`]], optional
            With ``assign_to="inner_patch"``: the coadd bands of this patch
            and its neighbours, for the fallback (`None`: no fallback).

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``targets_patch``
                The rows inside the patch (`astropy.table.Table`).

        Raises
        ------
        lsst.pipe.base.NoWorkFound
            Raised if no row falls in the patch.
        """
        tables = [t.get() if hasattr(t, "get") and not isinstance(t, Table) else t for t in targets]
        rows, counts = select_patch_rows(
            tables,
            sky_map=sky_map,
            tract=tract,
            patch=patch,
            region=region,
            tract_frame=tract_frame,
            skymap_name=skymap_name,
            assign_to=self.config.assign_to,
            bands_by_patch=bands_by_patch if self.config.fallback_to_neighbour else None,
            fallback_bands=self.config.fallback_bands,
        )
        for key, value in counts.items():
            self.metadata[key] = value
        self.metadata["n_selected"] = len(rows)
        self.log.info(
            "Tract %d patch %d: %d of %d rows from %d shards fall in the patch (%s; %d given to another "
            "patch, %d kept because their inner patch lacks a band).",
            tract,
            patch,
            len(rows),
            counts["n_input"],
            len(tables),
            self.config.assign_to,
            counts["n_other_patch"],
            counts["n_fallback"],
        )
        if not len(rows):
            raise NoWorkFound(
                f"None of the {counts['n_input']} rows of the overlapping shards is in the patch."
            )
        return Struct(targets_patch=rows)
