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

"""Butler formatters of this package.

This module is not imported by ``lsst.epo.zooniverse`` itself, so the
package does not need daf_butler at import time; the Butler imports it
through the ``datastore.formatters`` configuration in
``configs/datastores/fileDatastore.yaml``.
"""

from __future__ import annotations

__all__ = [
    "CutoutFormatter",
    "LegacyCoaddFormatter",
    "RgbCollectionFormatter",
    "SkyMapGeometryFormatter",
    "StampsFormatter",
]

from typing import Any

import numpy as np
from PIL import Image

from lsst.daf.butler import DatasetProvenance, FormatterV2
from lsst.resources import ResourcePath

from ..formats.cutout import cutout_text_metadata
from ..formats.png import (
    DEFAULT_COMPRESS_LEVEL,
    as_pil_image,
    check_text_key,
    check_text_value,
    decode_png,
    encode_png,
)
from ..formats.rgb_collection import RgbCollection, read_rgb_collection, read_rgb_index, write_rgb_collection
from ..formats.stamps import PROVENANCE_PREFIX, Stamps, read_stamps, read_stamps_index, write_stamps
from .legacy_coadd import read_legacy_coadd
from .skymap_geometry import SkyMapGeometry


def _compress_level(formatter: FormatterV2) -> int:
    level = formatter.write_parameters.get("compress_level", DEFAULT_COMPRESS_LEVEL)
    if not isinstance(level, int) or not 0 <= level <= 9:
        raise ValueError(f"Write parameter compress_level must be an integer 0-9, not {level!r}.")
    return level


def _check_component(component: str | None, allowed: tuple[str, ...], formatter: FormatterV2) -> None:
    if component is not None and component not in allowed:
        raise ValueError(f"{formatter.name()} cannot read component {component!r}; it knows {allowed}.")


class CutoutFormatter(FormatterV2):
    """Read and write one PNG image (`zooniverse_cutout`).

    Writes a `PIL.Image.Image` (numpy arrays are converted by the storage
    class) with its string ``info`` entries as PNG text chunks.  Reads
    return a PIL image whose ``info`` holds the text chunks, or, for the
    ``array`` component, a read-only ``uint8`` numpy array.

    Write parameters: ``compress_level`` (zlib level 0-9, default 1).
    """

    default_extension = ".png"
    supported_extensions = frozenset({".png"})
    supported_write_parameters = frozenset({"compress_level"})
    unsupported_parameters = None
    can_read_from_local_file = True

    def can_accept(self, in_memory_dataset: Any) -> bool:
        # Docstring inherited.
        # The datastore calls this before writing anything, outside the
        # try block that turns every write error into a bare RuntimeError:
        # check the compression level, a PIL image's mode/size and its text
        # keys here so a bad put fails with its own TypeError/ValueError.
        # Arrays and other types return False and go through the
        # storage-class converter, which checks them.
        _compress_level(self)
        if isinstance(in_memory_dataset, Image.Image):
            as_pil_image(in_memory_dataset, what="zooniverse_cutout image")
            for key, value in cutout_text_metadata(in_memory_dataset).items():
                check_text_key(key)
                check_text_value(key, value)
            return True
        return False

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        # Docstring inherited.
        _check_component(component, ("array",), self)
        with open(path, "rb") as stream:
            image = decode_png(stream.read(), name=path)
        if component == "array":
            array = np.asarray(image)
            array.flags.writeable = False
            return array
        return image

    def to_bytes(self, in_memory_dataset: Any) -> bytes:
        # Docstring inherited.
        if not isinstance(in_memory_dataset, Image.Image):
            raise TypeError(
                f"zooniverse_cutout takes a PIL image or a uint8 numpy array, not "
                f"{type(in_memory_dataset).__name__}."
            )
        return encode_png(
            in_memory_dataset,
            text=cutout_text_metadata(in_memory_dataset),
            compress_level=_compress_level(self),
        )


class StampsFormatter(FormatterV2):
    """Read and write `~lsst.epo.zooniverse.formats.stamps.Stamps` in the
    `lsst.meas.algorithms.Stamps` FITS layout, with astropy.

    Read parameters: ``indices`` (0-based stamp numbers) or ``object_ids``;
    only the selected stamps' pixels are read.  ``use_variance=False``
    skips the variance planes.  Component ``index``: the
    per-stamp metadata table, from the primary header alone.  Butler
    provenance is written as ``LSST BUTLER ...`` primary-header cards, as
    obs_base's FITS formatters do.
    """

    default_extension = ".fits"
    supported_extensions = frozenset({".fits"})
    unsupported_parameters = frozenset()
    can_read_from_local_file = True

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        # Docstring inherited.
        _check_component(component, ("index",), self)
        if component == "index":
            return read_stamps_index(path)
        parameters = self.file_descriptor.parameters or {}
        use_variance = parameters.get("use_variance", True)
        if not isinstance(use_variance, bool):
            raise ValueError(f"Read parameter use_variance must be True or False, not {use_variance!r}.")
        return read_stamps(
            path,
            indices=parameters.get("indices"),
            object_ids=parameters.get("object_ids"),
            use_variance=use_variance,
        )

    def add_provenance(
        self, in_memory_dataset: Any, /, *, provenance: DatasetProvenance | None = None
    ) -> Any:
        # Docstring inherited.
        if not isinstance(in_memory_dataset, Stamps):
            return in_memory_dataset
        flat = (provenance or DatasetProvenance()).to_flat_dict(
            self.dataset_ref, prefix=PROVENANCE_PREFIX, sep=" ", simple_types=True, max_inputs=3000
        )
        metadata = {
            k: v for k, v in in_memory_dataset.metadata.items() if not k.startswith(PROVENANCE_PREFIX)
        }
        metadata.update(flat)
        return Stamps(
            in_memory_dataset,
            metadata=metadata,
            mask_planes=in_memory_dataset.mask_planes,
            use_mask=in_memory_dataset.use_mask,
            use_variance=in_memory_dataset.use_variance,
        )

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        # Docstring inherited.
        if not isinstance(in_memory_dataset, Stamps):
            raise TypeError(f"zooniverse_stamps takes Stamps, not {type(in_memory_dataset).__name__}.")
        write_stamps(in_memory_dataset, uri.ospath)


class RgbCollectionFormatter(FormatterV2):
    """Read and write an `~.formats.rgb_collection.RgbCollection`
    as a deterministic ZIP of PNGs plus ``index.csv``.

    Read parameter ``object_ids`` selects images; component ``index`` reads
    only ``index.csv`` (no PNG is decoded).  Write parameters:
    ``compress_level`` (zlib level 0-9, default 1) and
    ``metadata_policy`` (``full`` or ``anonymised``; the stricter of this
    and the collection's own policy applies).
    """

    default_extension = ".zip"
    supported_extensions = frozenset({".zip"})
    supported_write_parameters = frozenset({"compress_level", "metadata_policy"})
    unsupported_parameters = frozenset()
    can_read_from_local_file = True

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        # Docstring inherited.
        _check_component(component, ("index",), self)
        if component == "index":
            return read_rgb_index(path)
        parameters = self.file_descriptor.parameters or {}
        return read_rgb_collection(path, object_ids=parameters.get("object_ids"))

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        # Docstring inherited.
        if not isinstance(in_memory_dataset, RgbCollection):
            raise TypeError(f"zooniverse_rgb takes an RgbCollection, not {type(in_memory_dataset).__name__}.")
        write_rgb_collection(
            in_memory_dataset,
            uri.ospath,
            metadata_policy=self.write_parameters.get("metadata_policy"),
            compress_level=_compress_level(self),
        )


class LegacyCoaddFormatter(FormatterV2):
    """Read-only formatter for coadds in the afw Exposure FITS layout,
    returning `lsst.images.MaskedImage` (storage class ``MaskedImageV2``).

    The ``bbox`` read parameter (`lsst.images.Box` or `lsst.geom.Box2I`,
    parent pixels) reads only the rows it spans, with the file's metadata
    interpreted once per process.  Components ``image``, ``mask``,
    ``variance``, ``bbox``, ``sky_projection`` and ``unit`` are supported.
    Datasets are ingested with this formatter named explicitly
    (``FileDataset(..., formatter=LegacyCoaddFormatter)``).
    """

    default_extension = ".fits"
    supported_extensions = frozenset({".fits", ".fit", ".fits.fz", ".fz"})
    unsupported_parameters = frozenset({"components"})
    can_read_from_local_file = True

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        # Docstring inherited.
        _check_component(component, ("image", "mask", "variance", "bbox", "sky_projection", "unit"), self)
        bbox = (self.file_descriptor.parameters or {}).get("bbox")
        return read_legacy_coadd(path, bbox=bbox, component=component)

    def can_accept(self, in_memory_dataset: Any) -> bool:
        # Docstring inherited.
        # The datastore asks this before writing and wraps any error from
        # the write itself in a bare RuntimeError: refuse here, so a put
        # fails with the read-only message and nothing is written.
        raise NotImplementedError(_LEGACY_COADD_READ_ONLY)

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        # Docstring inherited.
        raise NotImplementedError(_LEGACY_COADD_READ_ONLY)


_LEGACY_COADD_READ_ONLY = (
    "LegacyCoaddFormatter is read-only: ingest afw-layout coadd files instead of putting them."
)


class SkyMapGeometryFormatter(FormatterV2):
    """Read and write a `~.skymap_geometry.SkyMapGeometry` as
    JSON (`zooniverse_skymap`).
    """

    default_extension = ".json"
    supported_extensions = frozenset({".json"})
    unsupported_parameters = None
    can_read_from_local_file = True

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        # Docstring inherited.
        _check_component(component, (), self)
        with open(path, encoding="utf-8") as stream:
            return SkyMapGeometry.from_json(stream.read())

    def to_bytes(self, in_memory_dataset: Any) -> bytes:
        # Docstring inherited.
        if not isinstance(in_memory_dataset, SkyMapGeometry):
            raise TypeError(
                f"zooniverse_skymap takes a SkyMapGeometry, not {type(in_memory_dataset).__name__}."
            )
        return in_memory_dataset.to_json().encode()
