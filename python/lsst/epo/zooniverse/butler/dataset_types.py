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

"""Dataset types of the data contract (README, "Data products and
formats") and their registration.
"""

from __future__ import annotations

__all__ = [
    "CUTOUT",
    "DATASET_TYPES",
    "DEEP_COADD",
    "RGB",
    "RGB_REPORT",
    "SKYMAP",
    "STAMPS",
    "TARGETS",
    "TARGETS_PATCH",
    "TARGETS_REJECTED",
    "DatasetTypeSpec",
    "register_dataset_types",
]

import dataclasses
from collections.abc import Iterable
from typing import Any

from .config import check_butler_config


@dataclasses.dataclass(frozen=True)
class DatasetTypeSpec:
    """Name, dimensions and storage class of a dataset type."""

    name: str
    dimensions: tuple[str, ...]
    storage_class: str

    def make(self, universe: Any) -> Any:
        """Return the `lsst.daf.butler.DatasetType`.

        Parameters
        ----------
        universe : `lsst.daf.butler.DimensionUniverse`
            The repository's dimensions.

        Returns
        -------
        dataset_type : `lsst.daf.butler.DatasetType`
            The dataset type.
        """
        from lsst.daf.butler import DatasetType

        return DatasetType(self.name, self.dimensions, self.storage_class, universe=universe)

    def connection(self, kind: Any, doc: str, **options: Any) -> Any:
        """Return a pipeline task connection to this dataset type.

        Parameters
        ----------
        kind : `type`
            The connection type (``lsst.pipe.base.connectionTypes.Input``,
            ``Output``, ``PrerequisiteInput``).
        doc : `str`
            What the connection is for.
        **options
            Further connection options (``multiple``, ``deferLoad``, ...).

        Returns
        -------
        connection : `lsst.pipe.base.connectionTypes.BaseConnection`
            The connection, with this spec's name, storage class and
            dimensions.
        """
        return kind(
            doc=doc, name=self.name, storageClass=self.storage_class, dimensions=self.dimensions, **options
        )


DEEP_COADD = DatasetTypeSpec("deep_coadd", ("skymap", "tract", "patch", "band"), "MaskedImageV2")
"""Coadds, as `lsst.images.MaskedImage` read from afw-layout files."""
TARGETS = DatasetTypeSpec("zooniverse_targets", ("htm7",), "ArrowAstropy")
"""A PI's catalog, sharded by HTM level-7 trixel."""
TARGETS_REJECTED = DatasetTypeSpec("zooniverse_targets_rejected", (), "ArrowAstropy")
"""Catalog rows refused by the sharding command, with the reason per row."""
TARGETS_PATCH = DatasetTypeSpec("zooniverse_targets_patch", ("skymap", "tract", "patch"), "ArrowAstropy")
"""Catalog rows inside one patch."""
STAMPS = DatasetTypeSpec("zooniverse_stamps", ("skymap", "tract", "patch", "band"), "ZooniverseStamps")
"""Postage stamps of one patch and band."""
RGB = DatasetTypeSpec("zooniverse_rgb", ("skymap", "tract", "patch"), "ZooniverseRgb")
"""RGB PNGs of one patch, as a ZIP."""
RGB_REPORT = DatasetTypeSpec("zooniverse_rgb_report", ("skymap", "tract", "patch"), "ArrowAstropy")
"""One row per catalog row of a patch: its picture, or why there is none."""
SKYMAP = DatasetTypeSpec("zooniverse_skymap", ("skymap",), "ZooniverseSkyMap")
"""The sky map geometry (tract WCS, patch inner/outer boxes); optional:
shardCatalog uses it where a repository has it, else the dimension
records (`~lsst.epo.zooniverse.butler.tract_frame.TractFrame`).
"""
CUTOUT = DatasetTypeSpec("zooniverse_cutout", (), "ZooniverseCutout")
"""One hand-made PNG (PIs usually register their own dimensions)."""

DATASET_TYPES = (DEEP_COADD, SKYMAP, TARGETS, TARGETS_REJECTED, TARGETS_PATCH, STAMPS, RGB, RGB_REPORT)
"""The dataset types of the cutout pipeline."""


def register_dataset_types(butler: Any, specs: Iterable[DatasetTypeSpec] = DATASET_TYPES) -> list[Any]:
    """Register dataset types after checking the Butler's configuration.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        A writeable Butler.
    specs : `~collections.abc.Iterable` [`DatasetTypeSpec`], optional
        What to register.

    Returns
    -------
    dataset_types : `list` [`lsst.daf.butler.DatasetType`]
        The registered dataset types.

    Raises
    ------
    lsst.epo.zooniverse.ButlerConfigError
        Raised if the Butler lacks this package's storage classes.
    """
    check_butler_config(butler)
    result = []
    for spec in specs:
        dataset_type = spec.make(butler.dimensions)
        butler.registry.registerDatasetType(dataset_type)
        result.append(dataset_type)
    return result
