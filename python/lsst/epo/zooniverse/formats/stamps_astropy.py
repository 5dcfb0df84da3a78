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

"""The Stamps writer and reader made of astropy HDU objects alone.

They are the reference the fast writer and reader of `.stamps_fast` are
tested against (byte for byte on write, stamp for stamp on read), and the
fallback for what those leave alone (compressed or scaled HDUs, gzip
files, unusual pixel types or HDU types).  They share only the rules of
the layout (`.stamps_layout`) with the fast ones, never their card
formatting or parsing.
"""

from __future__ import annotations

__all__ = ["read_stamps_astropy", "read_stamps_index_astropy", "write_stamps_astropy"]

import itertools
import os
from collections.abc import Mapping, Sequence
from typing import IO, Any

import astropy.io.fits as fits
import astropy.wcs
import numpy as np

from .afw_wcs import A_WCS_COMMENTS, a_wcs_values
from .fits_cards import Header, astropy_card
from .mask_planes import mask_plane_cards, mask_planes_from_cards
from .stamps_layout import (
    PLANES,
    STAMP_ARRAYS,
    STAMPCLS,
    PrimaryInfo,
    StampsRead,
    array_value,
    celestial_wcs,
    check_metadata_key,
    is_celestial,
    parent_origin,
    select_stamps,
    stamp_planes,
)

# -- Writing -------------------------------------------------------------


def _append(header: fits.Header, key: str, value: Any) -> None:
    """Append a card, using HIERARCH for keys afw would write that way."""
    header.append(astropy_card(key, value), end=True)


def _primary_header(stamps: Any) -> fits.Header:
    header = fits.Header()
    for key, value in stamps.metadata.items():
        check_metadata_key(key)
        _append(header, key, value)
    for keyword, (attribute, kind) in STAMP_ARRAYS.items():
        for stamp in stamps:
            _append(header, keyword, array_value(stamp, attribute, kind))
    for stamp in stamps:
        _append(header, "RA_DEG", stamp.ra)
    for stamp in stamps:
        _append(header, "DEC_DEG", stamp.dec)
    _append(header, "HAS_MASK", stamps.use_mask)
    _append(header, "HAS_VARIANCE", stamps.use_variance)
    _append(header, "HAS_ARCHIVE", False)
    _append(header, "N_STAMPS", len(stamps))
    _append(header, "STAMPCLS", STAMPCLS)
    _append(header, "VERSION", 1)
    return header


def _plane_header(plane: str, number: int, stamp: Any, mask_planes: Mapping[str, int]) -> fits.Header:
    header = fits.Header()
    header["EXTVER"] = number
    header["EXTNAME"] = plane
    if plane == "MASK":
        for key, bit in mask_plane_cards(mask_planes):
            _append(header, key, bit)
    # afw's "A" WCS: the parent-frame origin of the stamp.
    for (key, comment), value in zip(A_WCS_COMMENTS, a_wcs_values(stamp.x0, stamp.y0)):
        header.append((key, value, comment), end=True)
    if plane == "IMAGE" and stamp.wcs is not None:
        header.extend(_stamp_wcs_header(stamp.wcs).cards, end=True)
    return header


def _stamp_wcs_header(wcs: astropy.wcs.WCS) -> fits.Header:
    header = wcs.to_header(relax=True)
    # WCSAXES must precede every WCS keyword (the A-WCS above too), so a
    # late one breaks the FITS standard; it only repeats NAXIS = 2.
    header.remove("WCSAXES", ignore_missing=True)
    return header


def write_stamps_astropy(stamps: Any, filename: str | os.PathLike | IO[bytes]) -> None:
    """Write stamps with astropy HDU objects (the reference writer).

    Parameters
    ----------
    stamps : `~lsst.epo.zooniverse.formats.stamps.Stamps`
        The stamps.
    filename : `str`, `os.PathLike` or binary file object
        Where to write; an existing file is overwritten.

    Raises
    ------
    ValueError
        Raised as `~lsst.epo.zooniverse.formats.stamps.write_stamps`
        raises.
    TypeError
        Raised for a metadata value FITS cannot hold.
    """
    primary = fits.PrimaryHDU(header=_primary_header(stamps))
    # cfitsio's primary always has EXTEND = T; astropy adds it only when
    # there are extensions (so not for an empty collection).
    primary.header.set("EXTEND", True, after="NAXIS")
    hdus: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU] = [primary]
    for number, (stamp, planes) in enumerate(zip(stamps, stamp_planes(stamps)), start=1):
        for plane, data in planes:
            header = _plane_header(plane, number, stamp, stamps.mask_planes)
            hdus.append(fits.ImageHDU(data=data, header=header))
    fits.HDUList(hdus).writeto(filename, overwrite=True, output_verify="exception")


# -- Reading -------------------------------------------------------------


def _open(source: str | os.PathLike | IO[bytes]) -> fits.HDUList:
    return fits.open(source, lazy_load_hdus=True, memmap=False, mode="readonly")


def read_stamps_index_astropy(source: str | os.PathLike | IO[bytes], name: str) -> PrimaryInfo:
    """Read the primary header of a Stamps file with astropy.

    Parameters
    ----------
    source : `str`, `os.PathLike` or binary file object
        The Stamps file.
    name : `str`
        Its name, for messages.

    Returns
    -------
    info : `~.stamps_layout.PrimaryInfo`
        What the primary header says.
    """
    with _open(source) as hdul:
        return PrimaryInfo(Header.from_astropy(hdul[0].header), name)


def _read_plane(hdu: fits.ImageHDU, extname: str) -> np.ndarray:
    data = hdu.data
    if data is None:
        raise ValueError(f"{extname} HDU {hdu.header.get('EXTVER')} has no data.")
    return np.asarray(data, dtype=np.int32 if extname == "MASK" else np.float32)


def read_stamps_astropy(
    source: str | os.PathLike | IO[bytes],
    indices: Sequence[int] | None,
    object_ids: Sequence[str] | None,
    name: str,
    use_variance: bool = True,
) -> StampsRead:
    """Read stamps with astropy alone (the reference reader).

    Parameters
    ----------
    source : `str`, `os.PathLike` or binary file object
        The Stamps file.
    indices, object_ids : `~collections.abc.Sequence` or `None`
        The stamps to read, as for
        `~lsst.epo.zooniverse.formats.stamps.read_stamps`.
    name : `str`
        Name of the file, for messages.
    use_variance : `bool`, optional
        Whether to read the variance planes.

    Returns
    -------
    read : `~.stamps_layout.StampsRead`
        What was read.

    Raises
    ------
    ValueError
        Raised as `~lsst.epo.zooniverse.formats.stamps.read_stamps`
        raises.
    """
    with _open(source) as hdul:
        info = PrimaryInfo(Header.from_astropy(hdul[0].header), name)
        selected = select_stamps(info, indices, object_ids, name)
        subset = indices is not None or object_ids is not None
        needed = {k + 1 for k in selected}
        with_variance = use_variance and info.has_variance
        planes_per_stamp = 1 + int(info.has_mask) + int(with_variance)
        parts: dict[int, dict[str, Any]] = {}
        seen_numbers: set[int] = set()
        complete = 0
        mask_planes: dict[str, int] | None = None
        # Walk the extension headers in order.  astropy's lazy loading reads
        # a header and seeks past its data, so the pixels of stamps that are
        # not selected are never read, and a subset read stops as soon as
        # every selected plane is in hand.
        for hdu_index in itertools.count(1):
            if subset and complete == len(needed):
                break
            try:
                hdu = hdul[hdu_index]
            except IndexError:
                break
            header = hdu.header
            if isinstance(hdu, fits.BinTableHDU) and not header.get("ZIMAGE", False):
                continue  # Archive tables (Persistables): not read without afw.
            extname = str(header.get("EXTNAME", "")).strip().upper()
            if extname not in PLANES:
                raise ValueError(f"{name}: unknown extension type {extname!r} in HDU {hdu_index}.")
            number = int(header.get("EXTVER", 1))
            seen_numbers.add(number)
            if extname == "MASK" and mask_planes is None:
                mask_planes = mask_planes_from_cards(Header.from_astropy(header).items())
            if number not in needed or (extname == "VARIANCE" and not with_variance):
                continue
            group = parts.setdefault(number, {})
            group[extname] = _read_plane(hdu, extname)
            if extname == "IMAGE":
                wrapped = Header.from_astropy(header)
                group["xy0"] = parent_origin(wrapped)
                group["wcs"] = celestial_wcs(header) if is_celestial(wrapped) else None
            if sum(plane in group for plane in PLANES) == planes_per_stamp:
                complete += 1
        if not subset and len(seen_numbers) != info.n_stamps:
            raise ValueError(f"{name}: found {len(seen_numbers)} stamps but N_STAMPS is {info.n_stamps}.")
    return StampsRead(info, selected, parts, mask_planes, name, with_variance)
