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

"""Coadds in the afw FITS layout, read with lsst.images and astropy.

Rubin coadds (``deep_coadd``) are `lsst.afw.image.Exposure` FITS files: an
empty primary HDU with metadata, then ``IMAGE``, ``MASK`` and ``VARIANCE``
image HDUs, each with the celestial FITS WCS of its own pixel grid,
``LTV1``/``LTV2`` and the afw "A" WCS giving the parent (tract) pixel
origin, then archive tables (PSF, ...).  Without afw these files are read
with `lsst.images.MaskedImage.read_legacy`; a bounding-box read takes only
the rows it needs from each plane with astropy's sections and hands them to
`lsst.images.MaskedImage.from_hdu_list`.

Where afw is installed (a Rubin Science Platform notebook or a DRP
repository), ``deep_coadd`` datasets are `lsst.afw.image.ExposureF` and are
read by the Butler's own formatter; `masked_image_from_exposure` converts
one, and this package's Butler configuration (``configs/``) declares it as
``MaskedImageV2``'s converter from `lsst.afw.image.Exposure`, so a task
asking for ``MaskedImageV2`` reads DRP's ``deep_coadd`` (doc/rsp_dp1.md).

`write_legacy_masked_image` writes the same layout (without the archive
tables) for demonstration and test repositories.
"""

from __future__ import annotations

__all__ = [
    "default_pixel_frame",
    "legacy_mask_bits",
    "masked_image_from_exposure",
    "read_legacy_coadd",
    "to_pixel_box",
    "write_legacy_masked_image",
]

import dataclasses
import functools
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import astropy.io.fits as fits
import astropy.units
import astropy.wcs
import numpy as np

from ..formats.afw_wcs import A_WCS_COMMENTS, a_wcs_origin, a_wcs_values
from ..formats.fits_cards import hierarch_key
from ..formats.mask_planes import DEFAULT_MASK_PLANES, mask_plane_cards
from ..formats.wcs_metadata import WCS_TIME_KEYS

if TYPE_CHECKING:
    from lsst.images import Box, GeneralFrame, Mask, MaskedImage

# lsst.images (which imports scipy) is imported by the functions that use it,
# not here: every pipetask job imports this module through the formatters and
# the extractStamps task, and only the jobs that read coadds need lsst.images.


@functools.cache
def default_pixel_frame() -> GeneralFrame:
    """Return the pixel frame of the sky projections attached to coadds read
    here (one object, made at the first call).

    Returns
    -------
    frame : `lsst.images.GeneralFrame`
        A frame in pixel units; also available as the module attribute
        ``DEFAULT_PIXEL_FRAME``.
    """
    from lsst.images import GeneralFrame

    return GeneralFrame(unit=astropy.units.pix)


def __getattr__(name: str) -> Any:
    # DEFAULT_PIXEL_FRAME is made on first access so that importing this
    # module does not import lsst.images.
    if name == "DEFAULT_PIXEL_FRAME":
        return default_pixel_frame()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def to_pixel_box(bbox: Any) -> Box:
    """Convert a bounding box parameter to an `lsst.images.Box`.

    Parameters
    ----------
    bbox : `lsst.images.Box` or `lsst.geom.Box2I`
        The box, in parent (tract) pixel coordinates, maximum inclusive for
        `lsst.geom.Box2I` as in afw.

    Returns
    -------
    box : `lsst.images.Box`
        The same box.

    Raises
    ------
    TypeError
        Raised for any other type.
    """
    from lsst.images import Box, Interval

    if isinstance(bbox, Box):
        return bbox
    if all(hasattr(bbox, attr) for attr in ("getMinX", "getMinY", "getMaxX", "getMaxY")):
        return Box(
            y=Interval(bbox.getMinY(), bbox.getMaxY() + 1), x=Interval(bbox.getMinX(), bbox.getMaxX() + 1)
        )
    raise TypeError(f"bbox must be an lsst.images.Box or lsst.geom.Box2I, not {type(bbox).__name__}.")


def _parent_origin(header: fits.Header) -> tuple[int, int]:
    """Return ``(x0, y0)`` of an afw image HDU."""
    if "LTV1" in header:
        return -round(header["LTV1"]), -round(header["LTV2"])
    return a_wcs_origin(header) or (0, 0)


def _cutout_header(header: fits.Header, dx: int, dy: int, x0: int, y0: int) -> fits.Header:
    """Header of a sub-image starting ``(dx, dy)`` pixels into an HDU."""
    header = header.copy()
    for axis, shift in ((1, dx), (2, dy)):
        if f"CRPIX{axis}" in header:
            header[f"CRPIX{axis}"] = header[f"CRPIX{axis}"] - shift
    header["LTV1"] = -x0
    header["LTV2"] = -y0
    if "CRVAL1A" in header:
        header["CRVAL1A"] = float(x0)
        header["CRVAL2A"] = float(y0)
    return header


def read_legacy_coadd(path: str | os.PathLike, *, bbox: Any = None, component: str | None = None) -> Any:
    """Read an afw-layout masked image (coadd) with lsst.images.

    Parameters
    ----------
    path : `str` or `os.PathLike`
        The FITS file.
    bbox : `lsst.images.Box` or `lsst.geom.Box2I`, optional
        Read only this region (parent pixel coordinates); it must lie inside
        the image.  Only the rows it spans are read from disk.
    component : `str`, optional
        Return only this attribute of the `lsst.images.MaskedImage`
        (``image``, ``mask``, ``variance``, ``bbox``, ``sky_projection``,
        ``unit``).

    Returns
    -------
    coadd : `lsst.images.MaskedImage` or component
        The masked image with a sky projection from the FITS WCS.

    Raises
    ------
    ValueError
        Raised if ``bbox`` is not inside the image, or the file lacks the
        ``IMAGE``/``MASK``/``VARIANCE`` HDUs.
    """
    from lsst.images import MaskedImage

    if bbox is None:
        if component in ("image", "mask", "variance"):
            return MaskedImage.read_legacy(path, component=component, fits_wcs_frame=default_pixel_frame())
        result = MaskedImage.read_legacy(path, fits_wcs_frame=default_pixel_frame())
        return result if component is None else getattr(result, component)
    box = to_pixel_box(bbox)
    try:
        layout = _layout(path)
    except _NeedsGeneralReaderError:
        result = _read_box_with_sections(path, box)
    else:
        result = _read_box(path, box, layout)
    return result if component is None else getattr(result, component)


def _plane_hdus(hdul: fits.HDUList, path: Any) -> Iterator[tuple[int, str, Any]]:
    """Yield ``(index, EXTNAME, HDU)`` for the IMAGE, MASK and VARIANCE
    HDUs of a legacy coadd (HDUs 1 to 3), raising `ValueError` where one is
    missing.
    """
    for extension, extname in enumerate(("IMAGE", "MASK", "VARIANCE"), start=1):
        try:
            hdu = hdul[extension]
        except IndexError:
            raise ValueError(f"{path}: no {extname} HDU at index {extension}.") from None
        yield extension, extname, hdu


def _read_box_with_sections(path: str | os.PathLike, box: Box) -> MaskedImage:
    """Read a box with astropy sections (any HDU type, e.g. compressed)."""
    from lsst.images import MaskedImage

    with fits.open(path, lazy_load_hdus=True, memmap=False) as hdul:
        hdus = [hdul[0]]
        for _, extname, hdu in _plane_hdus(hdul, path):
            header = hdu.header
            x0, y0 = _parent_origin(header)
            _check_inside(box, x0, y0, header["NAXIS1"], header["NAXIS2"], path)
            dx, dy = box.x.start - x0, box.y.start - y0
            data = hdu.section[dy : dy + box.y.size, dx : dx + box.x.size]
            hdus.append(
                fits.ImageHDU(
                    data=np.asarray(data),
                    header=_cutout_header(header, dx, dy, box.x.start, box.y.start),
                    name=extname,
                )
            )
        return MaskedImage.from_hdu_list(fits.HDUList(hdus), fits_wcs_frame=default_pixel_frame())


def _check_inside(box: Box, x0: int, y0: int, width: int, height: int, path: Any) -> None:
    if box.x.start < x0 or box.y.start < y0 or box.x.stop > x0 + width or box.y.stop > y0 + height:
        raise ValueError(
            f"{path}: bbox x=[{box.x.start}, {box.x.stop}) y=[{box.y.start}, {box.y.stop}) is not "
            f"inside the image x=[{x0}, {x0 + width}) y=[{y0}, {y0 + height})."
        )


def _read_box(path: str | os.PathLike, box: Box, layout: _CoaddLayout) -> MaskedImage:
    """Read a box of an uncompressed file: one contiguous block of rows per
    plane, with the metadata interpreted once per file.
    """
    from lsst.images import Image, Mask, MaskedImage

    planes = {}
    with open(path, "rb") as stream:
        for plane in layout.planes:
            planes[plane.extname] = plane.read(stream, box, path)
    projection = layout.sky_projection
    image = Image(
        planes["IMAGE"], yx0=(box.y.start, box.x.start), unit=layout.unit, sky_projection=projection
    )
    variance = Image(
        planes["VARIANCE"],
        yx0=(box.y.start, box.x.start),
        unit=None if layout.unit is None else layout.unit**2,
        sky_projection=projection,
    )
    # int64 so that bit 31 of an int32 mask can be tested.
    legacy_mask = planes["MASK"].astype(np.int64)
    if layout.unmapped_bitmask and np.any(legacy_mask & layout.unmapped_bitmask):
        # Declared legacy planes with no place in the schema have pixels
        # set here: let lsst.images decide (it refuses such masks, or adds an
        # optional plane) instead of silently dropping the bits.
        return _read_box_with_sections(path, box)
    mask = Mask(0, schema=layout.mask_schema, bbox=box, sky_projection=projection)
    for bit, plane_name in layout.mask_bits:
        bits = (legacy_mask & (1 << bit)) != 0
        if bits.any():
            mask.set(plane_name, bits)
    return MaskedImage(image, mask=mask, variance=variance)


@dataclasses.dataclass(frozen=True)
class _PlaneLayout:
    """Where one uncompressed plane's pixels are in the file."""

    extname: str
    offset: int
    shape: tuple[int, int]
    dtype: np.dtype
    x0: int
    y0: int

    def read(self, stream: Any, box: Box, path: Any) -> np.ndarray:
        height, width = self.shape
        _check_inside(box, self.x0, self.y0, width, height, path)
        dx, dy = box.x.start - self.x0, box.y.start - self.y0
        row_bytes = width * self.dtype.itemsize
        stream.seek(self.offset + dy * row_bytes)
        rows = box.y.size
        buffer = stream.read(rows * row_bytes)
        if len(buffer) != rows * row_bytes:
            raise ValueError(f"{path}: {self.extname} data is truncated.")
        block = np.frombuffer(buffer, dtype=self.dtype).reshape(rows, width)
        return block[:, dx : dx + box.x.size].astype(self.dtype.newbyteorder("="))


@dataclasses.dataclass(frozen=True)
class _CoaddLayout:
    """What a bbox read needs to know about a file, computed once."""

    planes: tuple[_PlaneLayout, ...]
    sky_projection: Any
    unit: Any
    mask_schema: Any
    mask_bits: tuple[tuple[int, str], ...]
    unmapped_bitmask: int
    """Bits of declared legacy mask planes missing from ``mask_bits``."""


_LAYOUT_CACHE: dict[tuple[str, int, int], _CoaddLayout] = {}
_LAYOUT_CACHE_SIZE = 64


def _layout(path: str | os.PathLike) -> _CoaddLayout:
    """Return the cached layout of a file (keyed by path, size and
    modification time, so a rewritten file is parsed again).
    """
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
    layout = _LAYOUT_CACHE.get(key)
    if layout is None:
        layout = _parse_layout(path)
        if len(_LAYOUT_CACHE) >= _LAYOUT_CACHE_SIZE:
            _LAYOUT_CACHE.pop(next(iter(_LAYOUT_CACHE)))
        _LAYOUT_CACHE[key] = layout
    return layout


def _parse_layout(path: str | os.PathLike) -> _CoaddLayout:
    from lsst.images import (
        MaskedImage,
        MaskPlane,
        get_legacy_deep_coadd_mask_planes,
        get_legacy_non_cell_coadd_mask_planes,
    )

    planes = []
    with fits.open(path, lazy_load_hdus=True, memmap=False) as hdul:
        headers = {}
        for extension, extname, hdu in _plane_hdus(hdul, path):
            header = hdu.header
            # CompImageHDU is an ImageHDU subclass, but its data on disk is a
            # binary table of compressed tiles, not rows of pixels.
            if (
                not isinstance(hdu, fits.ImageHDU)
                or isinstance(hdu, fits.CompImageHDU)
                or header.get("BSCALE", 1) != 1
                or header.get("BZERO", 0) != 0
            ):
                raise _NeedsGeneralReaderError()
            x0, y0 = _parent_origin(header)
            bitpix = header["BITPIX"]
            dtype = np.dtype({-32: ">f4", -64: ">f8", 32: ">i4", 16: ">i2", 64: ">i8"}[bitpix])
            planes.append(
                _PlaneLayout(
                    extname=extname,
                    offset=hdul.fileinfo(extension)["datLoc"],
                    shape=(header["NAXIS2"], header["NAXIS1"]),
                    dtype=dtype,
                    x0=x0,
                    y0=y0,
                )
            )
            headers[extname] = header
        # Let lsst.images interpret the metadata (WCS, unit, mask planes) of
        # a one-pixel cut-down copy; the full-size planes are never read.
        tiny = fits.HDUList(
            [hdul[0].copy()]
            + [
                fits.ImageHDU(
                    data=np.zeros((1, 1), dtype=plane.dtype.newbyteorder("=")),
                    header=_cutout_header(headers[plane.extname], 0, 0, plane.x0, plane.y0),
                    name=plane.extname,
                )
                for plane in planes
            ]
        )
        template = MaskedImage.from_hdu_list(tiny, fits_wcs_frame=default_pixel_frame())
    legacy_planes = MaskPlane.read_legacy(headers["MASK"], strip=False)
    schema_names = {plane.name for plane in template.mask.schema if plane is not None}
    renames = {}
    for mapping in (get_legacy_non_cell_coadd_mask_planes(), get_legacy_deep_coadd_mask_planes()):
        renames.update({legacy: plane.name for legacy, plane in mapping.items()})
    mask_bits = []
    unmapped_bitmask = 0
    for legacy_name, bit in sorted(legacy_planes.items(), key=lambda item: item[1]):
        name = renames.get(legacy_name, legacy_name)
        if name in schema_names:
            mask_bits.append((bit, name))
        else:
            unmapped_bitmask |= 1 << bit
    return _CoaddLayout(
        planes=tuple(planes),
        sky_projection=template.sky_projection,
        unit=template.image.unit,
        mask_schema=template.mask.schema,
        mask_bits=tuple(mask_bits),
        unmapped_bitmask=unmapped_bitmask,
    )


def masked_image_from_exposure(exposure: Any) -> MaskedImage:
    """Convert an afw Exposure (DRP's ``deep_coadd``) to an
    `lsst.images.MaskedImage` with its sky projection.

    Parameters
    ----------
    exposure : `lsst.afw.image.Exposure`
        The coadd, as the Butler's afw formatter reads it.

    Returns
    -------
    masked_image : `lsst.images.MaskedImage`
        Image, mask (deep-coadd plane names) and variance in parent (tract)
        pixels, with the coadd's WCS as a sky projection in
        `DEFAULT_PIXEL_FRAME` and the unit from ``BUNIT`` if the metadata
        has one.

    Notes
    -----
    This is the converter ``configs/storageClasses.yaml`` declares for
    ``MaskedImageV2`` from `lsst.afw.image.Exposure`: the Butler calls it
    after reading an ``ExposureF`` dataset for a connection or ``get`` that
    asks for ``MaskedImageV2``.  Needs afw; not exercised where afw is
    absent.
    """
    from lsst.images import MaskedImage, SkyProjection, get_legacy_deep_coadd_mask_planes

    wcs = exposure.getWcs()
    projection = SkyProjection.from_legacy(wcs, default_pixel_frame()) if wcs is not None else None
    unit = None
    metadata = exposure.getMetadata()
    bunit = metadata.get("BUNIT") if metadata is not None and "BUNIT" in metadata else None
    if bunit:
        try:
            unit = astropy.units.Unit(str(bunit).strip())
        except ValueError:
            unit = None
    return MaskedImage.from_legacy(
        exposure.getMaskedImage(),
        unit=unit,
        plane_map=get_legacy_deep_coadd_mask_planes(),
        sky_projection=projection,
    )


def legacy_mask_bits(mask: Mask) -> tuple[np.ndarray, dict[str, int]]:
    """Pack an `lsst.images.Mask` into afw-style ``int32`` mask bits.

    Parameters
    ----------
    mask : `lsst.images.Mask`
        The mask, with any schema.

    Returns
    -------
    bits : `numpy.ndarray`
        ``int32`` array of the mask's shape.
    planes : `dict` [`str`, `int`]
        Legacy (afw) plane name to bit number: the standard afw numbers of
        `~..formats.mask_planes.DEFAULT_MASK_PLANES` for the planes
        lsst.images renames from afw names (``SATURATED`` is ``SAT``,
        ...), the next free bits for any other plane.

    Raises
    ------
    ValueError
        Raised if the mask has more planes than 32 bits hold.
    """
    from lsst.images import get_legacy_deep_coadd_mask_planes

    to_legacy = {plane.name: legacy for legacy, plane in get_legacy_deep_coadd_mask_planes().items()}
    schema = mask.schema
    names = list(schema.names)
    planes: dict[str, int] = {}
    free = iter(bit for bit in range(32) if bit not in DEFAULT_MASK_PLANES.values())
    for name in names:
        legacy = to_legacy.get(name, name)
        bit = DEFAULT_MASK_PLANES.get(legacy)
        if bit is None or bit in planes.values():
            try:
                bit = next(free)
            except StopIteration:
                raise ValueError(f"A mask with {len(names)} planes does not fit in 32 bits.") from None
        planes[legacy] = bit
    array = mask.array
    bits = np.zeros(array.shape[:2], dtype=np.int32)
    for name, legacy in zip(names, planes):
        plane_bit = schema.bit(name)
        bits |= ((array[..., plane_bit.index] & plane_bit.mask) != 0).astype(np.int32) << planes[legacy]
    return bits, planes


class _NeedsGeneralReaderError(Exception):
    """The file is compressed or scaled; use the general reader."""


def write_legacy_masked_image(
    path: str | os.PathLike,
    *,
    image: np.ndarray,
    mask: np.ndarray,
    variance: np.ndarray,
    x0: int,
    y0: int,
    wcs: astropy.wcs.WCS,
    mask_planes: Mapping[str, int] | None = None,
    metadata: Mapping[str, Any] | None = None,
    bunit: str | None = "nJy",
) -> None:
    """Write a masked image in the layout afw writes for an Exposure.

    Parameters
    ----------
    path : `str` or `os.PathLike`
        File to write.
    image, variance : `numpy.ndarray`
        ``float32`` planes, shape ``(height, width)``, row 0 at ``y0``.
    mask : `numpy.ndarray`
        ``int32`` mask plane.
    x0, y0 : `int`
        Parent (tract) pixel coordinates of ``image[0, 0]``.
    wcs : `astropy.wcs.WCS`
        Celestial WCS of the parent (tract) pixel grid, 0-based.
    mask_planes : `~collections.abc.Mapping` [`str`, `int`], optional
        Mask plane bits (default: afw's default planes).
    metadata : `~collections.abc.Mapping` [`str`, `object`], optional
        Cards for the primary header.
    bunit : `str` or `None`, optional
        Pixel unit (``nJy`` for Rubin coadds).
    """
    mask_planes = DEFAULT_MASK_PLANES if mask_planes is None else mask_planes
    primary = fits.PrimaryHDU()
    for key, value in (metadata or {}).items():
        primary.header[hierarch_key(key)] = value
    local_wcs = wcs.deepcopy()
    local_wcs.wcs.crpix = local_wcs.wcs.crpix - np.array([x0, y0])
    wcs_cards = local_wcs.to_header(relax=True)
    for key in WCS_TIME_KEYS:
        wcs_cards.remove(key, ignore_missing=True)
    hdus: list[Any] = [primary]
    for extname, data in (
        ("IMAGE", np.asarray(image, dtype=np.float32)),
        ("MASK", np.asarray(mask, dtype=np.int32)),
        ("VARIANCE", np.asarray(variance, dtype=np.float32)),
    ):
        header = fits.Header()
        header["EXTTYPE"] = extname
        header["EXTNAME"] = extname
        header["INHERIT"] = True
        if extname == "MASK":
            for key, bit in mask_plane_cards(mask_planes):
                header[hierarch_key(key)] = bit
        header.extend(wcs_cards.cards)
        header["LTV1"] = -x0
        header["LTV2"] = -y0
        for (key, comment), value in zip(A_WCS_COMMENTS, a_wcs_values(x0, y0)):
            header[key] = (value, comment)
        if bunit is not None and extname == "IMAGE":
            header["BUNIT"] = bunit
        hdus.append(fits.ImageHDU(data=data, header=header))
    fits.HDUList(hdus).writeto(path, overwrite=True, output_verify="exception")
