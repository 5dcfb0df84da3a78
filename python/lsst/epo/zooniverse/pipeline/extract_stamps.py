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


"""The ``extractStamps`` task: postage stamps of one patch and band."""

from __future__ import annotations

__all__ = [
    "ExtractStampsConfig",
    "ExtractStampsConnections",
    "ExtractStampsTask",
    "coadd_mask_bits",
    "stamp_sizes",
]

import math

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from lsst.pex.config import Field
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod

from ..butler.dataset_types import DEEP_COADD, STAMPS, TARGETS_PATCH
from ..butler.legacy_coadd import legacy_mask_bits
from ..formats.stamp_cutting import CoverageMap, cut_stamp
from ..formats.stamps import Stamps
from .config_errors import ConfigValueError
from .startup_objects import freeze_startup_objects


class ExtractStampsConnections(PipelineTaskConnections, dimensions=("skymap", "tract", "patch", "band")):
    """Connections of `ExtractStampsTask`."""

    targets_patch = TARGETS_PATCH.connection(
        cT.Input,
        doc="Catalog rows inside the patch (output of shardCatalog).",
    )
    coadd = DEEP_COADD.connection(
        cT.Input,
        doc="The deep coadd of this patch and band, read once per quantum.",
    )
    stamps = STAMPS.connection(
        cT.Output,
        doc="One postage stamp per catalog row, in the lsst.meas.algorithms Stamps layout.",
    )


class ExtractStampsConfig(PipelineTaskConfig, pipelineConnections=ExtractStampsConnections):
    """Configuration of `ExtractStampsTask`."""

    stamp_size = Field[int](
        doc="Stamp width and height in coadd pixels (an odd size puts the object on a pixel centre, "
        "within half a pixel of the stamp centre).",
        default=101,
    )
    stamp_size_arcsec = Field[float](
        doc="Stamp width and height in arcseconds; when set, overrides stamp_size (converted with the "
        "coadd's pixel scale at the patch centre and rounded to the nearest odd number of pixels).",
        default=None,
        optional=True,
    )
    do_use_size_column = Field[bool](
        doc="Take each object's stamp size from the catalog's cutout_size_pixels or cutout_size_arcsec "
        "column when the sharded catalog has one (rows with NaN there use the configured size).",
        default=True,
    )
    max_stamp_size = Field[int](
        doc="Largest stamp side in pixels; larger per-object sizes are clipped to it (and logged).",
        default=1024,
    )
    do_write_variance = Field[bool](doc="Write the variance plane of each stamp.", default=True)

    def validate(self):
        super().validate()
        if self.max_stamp_size < 1:
            raise ConfigValueError(
                ExtractStampsConfig.max_stamp_size, self, self.max_stamp_size, "an integer >= 1"
            )
        if not 1 <= self.stamp_size <= self.max_stamp_size:
            raise ConfigValueError(
                ExtractStampsConfig.stamp_size,
                self,
                self.stamp_size,
                f"an integer in [1, max_stamp_size={self.max_stamp_size}]",
            )
        if self.stamp_size_arcsec is not None and not (
            math.isfinite(self.stamp_size_arcsec) and self.stamp_size_arcsec > 0
        ):
            raise ConfigValueError(
                ExtractStampsConfig.stamp_size_arcsec,
                self,
                self.stamp_size_arcsec,
                "None or a finite number > 0",
            )


def _odd(value: np.ndarray) -> np.ndarray:
    """Round to the nearest odd integer (at least 1)."""
    return np.maximum(2 * np.floor(np.asarray(value, dtype=float) / 2) + 1, 1).astype(np.int64)


def stamp_sizes(
    targets: Table, *, default_size: int, pixel_scale_arcsec: float, max_size: int, use_size_column: bool
) -> np.ndarray:
    """Stamp side in pixels for each catalog row.

    Parameters
    ----------
    targets : `astropy.table.Table`
        Catalog rows; optional ``cutout_size_pixels`` or
        ``cutout_size_arcsec`` columns give per-object sizes.
    default_size : `int`
        Size for rows without their own.
    pixel_scale_arcsec : `float`
        Coadd pixel scale.
    max_size : `int`
        Upper limit.
    use_size_column : `bool`
        Whether to read the per-object columns.

    Returns
    -------
    sizes : `numpy.ndarray` [`int`]
        Per row.
    """
    sizes = np.full(len(targets), default_size, dtype=np.int64)
    if use_size_column:
        for column, factor in (("cutout_size_pixels", 1.0), ("cutout_size_arcsec", 1.0 / pixel_scale_arcsec)):
            if column in targets.colnames:
                values = np.asarray(targets[column], dtype=float) * factor
                good = np.isfinite(values) & (values > 0)
                sizes[good] = np.rint(values[good]).astype(np.int64)
    return np.clip(sizes, 1, max_size)


def coadd_mask_bits(mask) -> tuple[np.ndarray, dict[str, int]]:
    """Return a coadd's mask as afw-style bits, as
    `~lsst.epo.zooniverse.butler.legacy_coadd.legacy_mask_bits` does, by
    table look-up.

    Parameters
    ----------
    mask : `lsst.images.Mask`
        The coadd's mask.

    Returns
    -------
    bits : `numpy.ndarray`
        ``int32`` mask bits, shape ``(height, width)``.
    planes : `dict` [`str`, `int`]
        Mask plane name to bit number.

    Notes
    -----
    The plane names and bits are those `legacy_mask_bits` gives (asked on
    one pixel); the pixels are converted with one 256-entry table per
    byte of the mask (one gather per byte, instead of four array
    operations per plane).
    """
    # Imported here, not at module level: lsst.images imports scipy, and
    # every job of the pipeline imports this module (pipetask imports all
    # the graph's task classes), including the jobs that read no coadd.
    from lsst.images import Box, Interval

    box = mask.bbox
    corner = mask[Box(y=Interval(box.y.start, box.y.start + 1), x=Interval(box.x.start, box.x.start + 1))]
    planes = legacy_mask_bits(corner)[1]
    schema, array = mask.schema, mask.array
    values = np.arange(256)
    tables = np.zeros((array.shape[-1], 256), dtype=np.int32)
    for name, legacy in zip(schema.names, planes):
        plane_bit = schema.bit(name)
        tables[plane_bit.index] |= ((values & int(plane_bit.mask)) != 0).astype(np.int32) << planes[legacy]
    bits = np.zeros(array.shape[:2], dtype=np.int32)
    for index, table in enumerate(tables):
        if table.any():
            bits |= table[array[..., index]]
    return bits, planes


class ExtractStampsTask(PipelineTask):
    """Cut postage stamps of catalog objects from one coadd.

    Notes
    -----
    The coadd is read once per quantum (patch and band) and every stamp is
    sliced from it in memory.  A stamp is centred on the pixel nearest the
    object (``floor(x + 0.5)``, as `lsst.geom.Point2I` rounds); the part
    outside the coadd is padded with NaN and the ``NO_DATA`` mask bit, and
    each stamp records its coverage (fraction of pixels with data).  Every
    catalog row of the patch gets a stamp, even one with no data at all,
    so that composeRgb can say why an object has no picture.

    A stamp inside the coadd holds views of the coadd's planes, not
    copies; only stamps that need padding hold their own pixels.  The
    writer formats and writes one stamp at a time, so a quantum's memory
    is the coadd plus the padded stamps plus a few hundred bytes per
    stamp, however many objects the patch has.
    """

    ConfigClass = ExtractStampsConfig
    _DefaultName = "extractStamps"
    config: ExtractStampsConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        freeze_startup_objects()
        inputs = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        outputs = self.run(
            **inputs,
            skymap=data_id["skymap"],
            tract=data_id["tract"],
            patch=data_id["patch"],
            band=data_id["band"],
        )
        butlerQC.put(outputs, outputRefs)

    @timeMethod
    def run(self, *, targets_patch: Table, coadd, skymap: str, tract: int, patch: int, band: str) -> Struct:
        # Over 80 lines with its docstring: one pass over the rows, kept whole.
        """Cut one stamp per catalog row.

        Parameters
        ----------
        targets_patch : `astropy.table.Table`
            Catalog rows of the patch (``object_id``, ``ra``, ``dec``,
            ``edge_distance``, optional size columns).
        coadd : `lsst.images.MaskedImage`
            The coadd, with a sky projection.
        skymap : `str`
            Sky map name, recorded in the stamps' metadata.
        tract, patch : `int`
            The patch, recorded in the stamps' metadata.
        band : `str`
            The band, recorded in the stamps' metadata.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``stamps``
                One stamp per row, in row order
                (`~lsst.epo.zooniverse.formats.stamps.Stamps`).

        Raises
        ------
        lsst.pipe.base.NoWorkFound
            Raised if the catalog has no rows.
        """
        if not len(targets_patch):
            raise NoWorkFound("No catalog rows in this patch.")
        wcs = coadd.fits_wcs
        parent_y0, parent_x0 = coadd.yx0.y, coadd.yx0.x
        image = coadd.image.array
        mask, mask_planes = coadd_mask_bits(coadd.mask)
        variance = coadd.variance.array if self.config.do_write_variance else None
        ra = np.asarray(targets_patch["ra"], dtype=float)
        dec = np.asarray(targets_patch["dec"], dtype=float)
        xy = coadd.sky_projection.sky_to_pixel(SkyCoord(ra * u.deg, dec * u.deg, frame="icrs"))
        x, y = np.atleast_1d(xy.x), np.atleast_1d(xy.y)
        pixel_scale = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600.0
        default_size = self.config.stamp_size
        if self.config.stamp_size_arcsec is not None:
            default_size = int(_odd(self.config.stamp_size_arcsec / pixel_scale))
        sizes = stamp_sizes(
            targets_patch,
            default_size=min(default_size, self.config.max_stamp_size),
            pixel_scale_arcsec=pixel_scale,
            max_size=self.config.max_stamp_size,
            use_size_column=self.config.do_use_size_column,
        )
        edge = (
            np.asarray(targets_patch["edge_distance"], dtype=float)
            if "edge_distance" in targets_patch.colnames
            else np.full(len(targets_patch), np.nan)
        )
        no_data_bit = mask_planes.get("NO_DATA", 8)
        stamps = Stamps(
            metadata={
                "SKYMAP": skymap,
                "TRACT": tract,
                "PATCH": patch,
                "BAND": band,
                "BUNIT": str(coadd.unit or ""),
            },
            mask_planes=mask_planes,
            use_variance=variance is not None,
        )
        # Every stamp's coverage from one table (the same value cut_stamp
        # would count from the float32 stamp).
        covered = (
            CoverageMap(image, mask, no_data_bit, parent_x0, parent_y0) if image.dtype == np.float32 else None
        )
        n_empty = 0
        for k, object_id in enumerate(targets_patch["object_id"]):
            size = int(sizes[k])
            x0 = int(math.floor(x[k] + 0.5)) - size // 2
            y0 = int(math.floor(y[k] + 0.5)) - size // 2
            stamp = cut_stamp(
                image,
                mask,
                variance,
                parent_x0=parent_x0,
                parent_y0=parent_y0,
                x0=x0,
                y0=y0,
                width=size,
                height=size,
                no_data_bit=no_data_bit,
                share=True,  # Views of the coadd: no per-stamp copy.
                coverage=None if covered is None else covered.coverage(x0, y0, size, size),
                ra=float(ra[k]),
                dec=float(dec[k]),
                object_id=str(object_id),
                edge_distance=float(edge[k]),
            )
            stamp.set_shifted_wcs(wcs, x0 - parent_x0, y0 - parent_y0)
            n_empty += stamp.coverage == 0
            stamps.append(stamp)
        self.metadata["n_stamps"] = len(stamps)
        self.metadata["n_without_data"] = int(n_empty)
        self.log.info(
            "Tract %d patch %d band %s: cut %d stamps (%d without data).",
            tract,
            patch,
            band,
            len(stamps),
            n_empty,
        )
        return Struct(stamps=stamps)
