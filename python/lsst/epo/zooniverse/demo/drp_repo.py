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

"""A test repository shaped like a Rubin DRP repository (DP1's): sky map
records registered as lsst.skymap registers them (cell-based tracts, no
``zooniverse_skymap``), ``deep_coadd`` under DRP's storage class
``ExposureF``, and a catalog; nothing else of this package.

Reading its coadds needs the test-only configuration in
`DRP_EXPOSURE_CONFIG_DIR` on ``DAF_BUTLER_CONFIG_PATH`` (see
`drp_config_path`): without afw, ``ExposureF`` is given the type
`lsst.images.MaskedImage` and a formatter reading afw-layout files.
"""

from __future__ import annotations

__all__ = [
    "DRP_BANDS",
    "DRP_COLLECTION",
    "DRP_EXPOSURE_CONFIG_DIR",
    "DRP_SKYMAP",
    "DrpRepo",
    "drp_config_path",
    "make_drp_repo",
    "make_drp_tracts",
]

import csv
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..butler.config import CONFIG_DIR, get_butler, make_butler_repo
from ..butler.legacy_coadd import write_legacy_masked_image
from ..butler.skymap_geometry import Box2, make_tan_wcs
from ..butler.skymap_records import SKYMAP_RUN, RubinTract, register_skymap_records
from ..formats.mask_planes import COADD_MASK_PLANES
from ..formats.wcs_metadata import wcs_to_header_string
from .repo import register_demo_instruments
from .scene import DEMO_BANDS, make_sources, render_tract

DRP_SKYMAP = "lsst_cells_test"
"""Name of the DRP-shaped test sky map."""
DRP_COLLECTION = "drp/defaults"
"""Chained collection of the coadds and the sky map run."""
DRP_BANDS = DEMO_BANDS
"""Bands of the coadds."""
DRP_EXPOSURE_CONFIG_DIR = str(Path(__file__).parent / "drp_exposure_config")
"""Test-only Butler configuration: ``ExposureF`` without afw."""

COADD_RUN = "drp/coadds"
PIXEL_SCALE_ARCSEC = 0.2
_INNER, _BORDER = 200, 30


@dataclasses.dataclass
class DrpRepo:
    """What `make_drp_repo` built.

    Attributes
    ----------
    root : `str`
        Repository root.
    collection : `str`
        Chained collection of the inputs.
    skymap : `str`
        Sky map name.
    tracts : `list` [`~lsst.epo.zooniverse.butler.skymap_records.RubinTract`]
        The tracts.
    catalog : `str`
        CSV catalog (``object_id, ra, dec``).
    """

    root: str
    collection: str
    skymap: str
    tracts: list[RubinTract]
    catalog: str


def drp_config_path() -> str:
    """Return the ``DAF_BUTLER_CONFIG_PATH`` value for processes that read
    the DRP-shaped repository's coadds: this package's configuration and
    the test-only ``ExposureF``.

    Returns
    -------
    value : `str`
        Directories joined with `os.pathsep`.
    """
    return os.pathsep.join([CONFIG_DIR, DRP_EXPOSURE_CONFIG_DIR])


def make_drp_tracts() -> list[RubinTract]:
    """Return the test sky map's tracts: one cell-based tract of 2 x 2
    patches (inner 200 pixels, border 30, 0.2 arcsec pixels, TAN, north up)
    at RA 150, Dec 2.

    Returns
    -------
    tracts : `list` [`~lsst.epo.zooniverse.butler.skymap_records.RubinTract`]
        The tracts.
    """
    size = 2 * _INNER
    wcs = make_tan_wcs(150.0, 2.0, PIXEL_SCALE_ARCSEC, size, size)
    # lsst.skymap's tangent point is within a pixel or so of the box centre,
    # not on it.
    wcs.wcs.crpix = [wcs.wcs.crpix[0] + 0.7, wcs.wcs.crpix[1] - 1.3]
    return [RubinTract(0, wcs_to_header_string(wcs), (2, 2), (_INNER, _INNER), _BORDER, clip_outer=False)]


def make_drp_repo(root: str | os.PathLike, *, seed: int = 20261204) -> DrpRepo:
    """Build the DRP-shaped test repository.

    Parameters
    ----------
    root : `str` or `os.PathLike`
        Where to create it (must not exist).
    seed : `int`, optional
        Seed of the synthetic sky.

    Returns
    -------
    repo : `DrpRepo`
        What was built.
    """
    from lsst.daf.butler import CollectionType, DatasetRef, DatasetType, FileDataset

    from ..butler.formatters import LegacyCoaddFormatter

    root = Path(root)
    make_butler_repo(str(root))
    butler = get_butler(str(root), writeable=True)
    register_demo_instruments(butler)
    tracts = make_drp_tracts()
    register_skymap_records(butler, DRP_SKYMAP, tracts)
    coadd = DatasetType(
        "deep_coadd", ("skymap", "tract", "patch", "band"), "ExposureF", universe=butler.dimensions
    )
    butler.registry.registerDatasetType(coadd)
    butler.registry.registerCollection(COADD_RUN, CollectionType.RUN)
    tract = tracts[0]
    extent = Box2(-_BORDER, -_BORDER, tract.bbox.x1 + _BORDER, tract.bbox.y1 + _BORDER)
    wcs = tract.wcs
    shifted = wcs.deepcopy()
    shifted.wcs.crpix = shifted.wcs.crpix + np.array([_BORDER, _BORDER])
    sources = make_sources(shifted, extent.width, extent.height, n_stars=25, n_galaxies=25, seed=seed)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=root))
    try:
        datasets = []
        for k, band in enumerate(DRP_BANDS):
            image, variance = render_tract(
                sources,
                shifted,
                extent.width,
                extent.height,
                band,
                seed=seed + k,
                scale_arcsec=PIXEL_SCALE_ARCSEC,
            )
            mask = np.zeros(image.shape, dtype=np.int32)
            for patch_id in tract.patch_ids():
                box = tract.patch_outer_bbox(patch_id)
                rows = slice(box.y0 - extent.y0, box.y1 - extent.y0)
                cols = slice(box.x0 - extent.x0, box.x1 - extent.x0)
                path = staging / f"deep_coadd_{patch_id}_{band}.fits"
                write_legacy_masked_image(
                    path,
                    image=np.ascontiguousarray(image[rows, cols]),
                    mask=np.ascontiguousarray(mask[rows, cols]),
                    variance=np.ascontiguousarray(variance[rows, cols]),
                    x0=box.x0,
                    y0=box.y0,
                    wcs=wcs,
                    mask_planes=COADD_MASK_PLANES,
                )
                data_id = {"skymap": DRP_SKYMAP, "tract": 0, "patch": patch_id, "band": band}
                ref = DatasetRef(coadd, butler.registry.expandDataId(data_id), run=COADD_RUN)
                datasets.append(FileDataset(path=str(path), refs=[ref], formatter=LegacyCoaddFormatter))
        butler.ingest(*datasets, transfer="move")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    butler.registry.registerCollection(DRP_COLLECTION, CollectionType.CHAINED)
    butler.registry.setCollectionChain(DRP_COLLECTION, [COADD_RUN, SKYMAP_RUN])
    catalog = root / "catalog.csv"
    _write_catalog(catalog, sources)
    return DrpRepo(str(root), DRP_COLLECTION, DRP_SKYMAP, tracts, str(catalog))


def _write_catalog(path: Path, sources: list[Any]) -> None:
    """Write the sources brighter than r = 23 as the PI's catalog, plus a
    row outside the tract.
    """
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["object_id", "ra", "dec"])
        for source in sources:
            if source.mag["r"] <= 23.0:
                writer.writerow([str(10_000 + source.source_id), repr(source.ra % 360.0), repr(source.dec)])
        writer.writerow(["99999", "151.0", "2.0"])
