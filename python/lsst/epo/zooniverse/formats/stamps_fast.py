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

"""The Stamps reader that parses the FITS cards itself (`.fits_cards`,
`.fits_stream`), and the writer that formats them itself
(`write_stamps_fast`, from `.stamps_writer`).

`read_stamps_fast` walks the file once, reading 2880-byte header blocks and
parsing the cards itself (any card it is not sure about is parsed by
astropy), seeks past the data it does not need and reads the pixels it
needs straight into numpy arrays; it raises
`~.fits_cards.UnsupportedError` for what only the astropy reader reads.
"""

from __future__ import annotations

__all__ = ["STAMP_WCS", "StampWcs", "read_stamps_fast", "write_stamps_fast"]

import functools
import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

import astropy.wcs
import numpy as np

from .afw_wcs import A_WCS_COMMENTS
from .fits_cards import CARD, Header, UnsupportedError
from .fits_stream import FitsStream, data_size, read_image_data, read_primary_header
from .mask_planes import mask_planes_from_cards
from .stamps_layout import (
    PLANES,
    PrimaryInfo,
    StampsRead,
    celestial_wcs,
    is_celestial,
    parent_origin,
    select_stamps,
    shifted_wcs,
)
from .stamps_writer import write_stamps_fast

# -- Per-stamp WCS -------------------------------------------------------

# Keywords of a stamp's IMAGE header that do not concern its celestial WCS
# (key " "): the structure and afw's A-WCS.
_PLANE_KEYS = frozenset(
    {"XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "EXTVER", "EXTNAME", "BZERO", "BSCALE"}
    | {key for key, _ in A_WCS_COMMENTS}
)

# Celestial WCS keywords whose effect on `astropy.wcs.WCS` does not involve
# CRPIX (with a zenithal projection and no SIP or distortion tables).
_WCS_FAMILY_KEYS = frozenset(
    {"NAXIS1", "NAXIS2", "WCSAXES", "CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "CRVAL1", "CRVAL2"}
    | {"CDELT1", "CDELT2", "CROTA2", "PC1_1", "PC1_2", "PC2_1", "PC2_2", "CD1_1", "CD1_2", "CD2_1", "CD2_2"}
    | {"LONPOLE", "LATPOLE", "RADESYS", "EQUINOX", "MJDREF", "DATEREF", "MJDREFI", "MJDREFF"}
    | {"MJD-OBS", "DATE-OBS", "WCSNAME"}
)

# Projection parameters (PVi_m; astropy writes PV1_3/PV1_4, the native
# pole, for a TAN tract WCS): like CRVAL, they do not involve CRPIX.
_PV_KEY = re.compile(r"PV[12]_[0-9]{1,2}")

_ZENITHAL = frozenset({"AZP", "SZP", "TAN", "STG", "SIN", "ARC", "ZPN", "ZEA", "AIR"})


class StampWcs:
    """Celestial WCS of stamps.

    All stamps of a patch (in every band) share their WCS but for CRPIX.
    The first stamp of each family (same WCS cards but CRPIX, same size)
    gets ``astropy.wcs.WCS(header)``; the others a copy with their own
    CRPIX, which is what ``astropy.wcs.WCS`` gives for their header: with a
    zenithal projection, no SIP and only the keywords of
    `_WCS_FAMILY_KEYS`, CRPIX only ever becomes ``wcs.wcs.crpix``.  Headers
    with anything else get ``astropy.wcs.WCS(header)`` each.

    The families are kept (the last ``maxsize``) across files; what is
    kept is a private copy, never a WCS handed out.

    Parameters
    ----------
    maxsize : `int`, optional
        Number of families kept.
    """

    def __init__(self, maxsize: int = 64) -> None:
        self._maxsize = maxsize
        self._families: dict[tuple[str, ...], astropy.wcs.WCS] = {}

    def __len__(self) -> int:
        return len(self._families)

    def clear(self) -> None:
        """Forget every family."""
        self._families.clear()

    def get(self, header: Header) -> astropy.wcs.WCS | Callable[[], astropy.wcs.WCS] | None:
        """Return the celestial WCS of a stamp's IMAGE header.

        Parameters
        ----------
        header : `~.fits_cards.Header`
            The header, parsed from its text.

        Returns
        -------
        wcs : `astropy.wcs.WCS`, callable or `None`
            The WCS, or for a known family a function that makes it;
            `None` for a header without a celestial WCS.
        """
        if not is_celestial(header):
            return None
        family = self._family(header)
        if family is None:
            return celestial_wcs(header.to_astropy())
        key, crpix = family
        base = self._families.get(key)
        if base is None:
            wcs = celestial_wcs(header.to_astropy())
            if len(self._families) >= self._maxsize:
                self._families.clear()
            self._families[key] = wcs.deepcopy()
            return wcs
        return functools.partial(shifted_wcs, base, crpix)

    @staticmethod
    def _family(header: Header) -> tuple[tuple[str, ...], list[float]] | None:
        if header.has_repeated_keywords or len(header.images) != len(header.cards):
            return None
        ctypes = (header.get("CTYPE1"), header.get("CTYPE2"))
        for ctype in ctypes:
            if not isinstance(ctype, str) or len(ctype) != 8 or ctype[5:] not in _ZENITHAL:
                return None
        key = []
        crpix = [None, None]
        for (keyword, _, value), image in zip(header.cards, header.images):
            if keyword in _WCS_FAMILY_KEYS or _PV_KEY.fullmatch(keyword):
                if len(image) != CARD:
                    return None
                key.append(image)
            elif keyword == "CRPIX1" or keyword == "CRPIX2":
                if type(value) not in (int, float):
                    return None
                crpix[keyword == "CRPIX2"] = float(value)
            elif keyword not in _PLANE_KEYS:
                return None
        if None in crpix:
            return None
        return tuple(key), crpix


STAMP_WCS = StampWcs()
"""The WCS families `read_stamps_fast` knows (one per process)."""

# -- Reading -------------------------------------------------------------


def read_stamps_fast(
    stream: FitsStream,
    indices: Sequence[int] | None,
    object_ids: Sequence[str] | None,
    name: str,
    use_variance: bool = True,
) -> StampsRead:
    """Read stamps as `~.stamps_astropy.read_stamps_astropy` does, parsing
    the cards here.

    Parameters
    ----------
    stream : `~.fits_stream.FitsStream`
        The Stamps file, at its start.
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
        What was read; WCSs of a known family are functions that make them.

    Raises
    ------
    UnsupportedError
        Raised for what only the astropy reader reads.
    ValueError
        Raised as `~lsst.epo.zooniverse.formats.stamps.read_stamps`
        raises.
    """
    primary = read_primary_header(stream)
    info = PrimaryInfo(primary, name)
    selected = select_stamps(info, indices, object_ids, name)
    subset = indices is not None or object_ids is not None
    needed = {k + 1 for k in selected}
    with_variance = use_variance and info.has_variance
    planes_per_stamp = 1 + int(info.has_mask) + int(with_variance)
    parts: dict[int, dict[str, Any]] = {}
    seen_numbers: set[int] = set()
    complete = 0
    mask_planes: dict[str, int] | None = None
    for hdu_index in itertools.count(1):
        if subset and complete == len(needed):
            break
        header = stream.header()
        if header is None:
            break
        xtension = header.cards[0][2] if header.cards and header.cards[0][0] == "XTENSION" else None
        if xtension == "BINTABLE" and not header.get("ZIMAGE", False):
            stream.skip(data_size(header))
            continue  # Archive tables (Persistables): not read without afw.
        if xtension != "IMAGE":
            raise UnsupportedError(f"HDU {hdu_index} is not an image or a table")
        extname = str(header.get("EXTNAME", "")).strip().upper()
        if extname not in PLANES:
            raise ValueError(f"{name}: unknown extension type {extname!r} in HDU {hdu_index}.")
        number = int(header.get("EXTVER", 1))
        seen_numbers.add(number)
        if extname == "MASK" and mask_planes is None:
            mask_planes = mask_planes_from_cards(header.items())
        if number not in needed or (extname == "VARIANCE" and not with_variance):
            stream.skip(data_size(header))
            continue
        group = parts.setdefault(number, {})
        group[extname] = read_image_data(stream, header, np.int32 if extname == "MASK" else np.float32)
        if extname == "IMAGE":
            group["xy0"] = parent_origin(header)
            group["wcs"] = STAMP_WCS.get(header)
        if sum(plane in group for plane in PLANES) == planes_per_stamp:
            complete += 1
    if not subset and len(seen_numbers) != info.n_stamps:
        raise ValueError(f"{name}: found {len(seen_numbers)} stamps but N_STAMPS is {info.n_stamps}.")
    return StampsRead(info, selected, parts, mask_planes, name, with_variance)
