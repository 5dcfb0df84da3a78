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

"""The Stamps writer and reader that format and parse the FITS cards
themselves (`.fits_cards`, `.fits_stream`).

Two writers give the same bytes.  `write_stamps_fast` formats the cards
exactly as astropy formats them (tests compare it with the astropy writer
of `.stamps_astropy` byte for byte), has astropy make only the few cards it
does not format itself (HIERARCH, metadata, long strings), takes the
celestial WCS cards from a per-family template
(`~.wcs_metadata.CrpixTemplates`) and writes big-endian pixels straight
from numpy; it leaves what it does not handle to the astropy writer.

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
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import astropy.io.fits as fits
import astropy.wcs
import numpy as np

from .afw_wcs import A_WCS_COMMENTS, a_wcs_values
from .fits_cards import (
    BLOCK,
    CARD,
    CardFormatter,
    Header,
    UnsupportedError,
    astropy_card,
    header_bytes,
)
from .fits_stream import FitsStream, data_size, read_image_data, read_primary_header
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
    shifted_wcs,
    stamp_planes,
    wcs_factory,
)
from .wcs_metadata import CrpixTemplates

# -- Writing -------------------------------------------------------------

# Metadata keywords astropy might treat as structure in a primary header;
# files with them are written by astropy.
_ASTROPY_STRUCTURE = frozenset(
    {"XTENSION", "PCOUNT", "GCOUNT", "GROUPS", "BZERO", "BSCALE", "BLANK", "END", "CONTINUE"}
    | {"CHECKSUM", "DATASUM", "TFIELDS", "THEAP", "INHERIT", "EXTNAME", "EXTVER", "EXTLEVEL"}
)

# File name endings astropy compresses on write.
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zip", ".xz", ".lzma", ".z")

# Pixel types the fast writer handles: dtype kind and size -> BITPIX.
_BITPIX = {("f", 4): -32, ("i", 4): 32, ("f", 8): -64, ("i", 2): 16, ("i", 8): 64, ("u", 1): 8}


def _stamp_wcs_cards(header: fits.Header) -> list[str]:
    header.remove("WCSAXES", ignore_missing=True)
    # The images of the cards as `_plane_header` puts them in its header.
    plane = fits.Header()
    plane.extend(header.cards, end=True)
    return [str(card) for card in plane.cards]


_STAMP_WCS_TEMPLATES = CrpixTemplates(True, _stamp_wcs_cards)


def _compressed_name(filename: Any) -> bool:
    if isinstance(filename, (str, os.PathLike)):
        return os.fspath(filename).lower().endswith(_COMPRESSED_SUFFIXES)
    return False


def _fast_plane_data(data: np.ndarray) -> tuple[int, np.dtype] | None:
    bitpix = _BITPIX.get((data.dtype.kind, data.dtype.itemsize))
    if bitpix is None or data.ndim != 2 or 0 in data.shape:
        return None
    return bitpix, data.dtype.newbyteorder(">")


def _header_wcs(
    stamp: Any, scratch: dict[int, tuple[astropy.wcs.WCS, astropy.wcs.WCS]]
) -> astropy.wcs.WCS | None:
    """Return the WCS to write for a stamp.

    For a WCS not made yet from a shared parent (`Stamp.set_shifted_wcs`),
    one working copy of the parent per file takes the stamp's CRPIX,
    instead of a copy per stamp.
    """
    make = wcs_factory(stamp)
    if type(make) is functools.partial and make.func is shifted_wcs and make.args[0].sip is None:
        parent, crpix = make.args
        entry = scratch.get(id(parent))
        if entry is None or entry[0] is not parent:
            entry = scratch[id(parent)] = (parent, parent.deepcopy())
        work = entry[1]
        work.wcs.crpix = crpix
        return work
    return stamp.wcs


def _primary_cards(stamps: Any, cards: CardFormatter) -> tuple[list[str], bool]:
    """Return the primary header's cards, and whether astropy should write
    the file (a metadata keyword with a structural meaning).
    """
    primary = [
        cards.card("SIMPLE", True, "conforms to FITS standard"),
        cards.card("BITPIX", 8, "array data type"),
        cards.card("NAXIS", 0, "number of array dimensions"),
        cards.card("EXTEND", True),
    ]
    astropy_only = False
    for key, value in stamps.metadata.items():
        check_metadata_key(key)
        card = astropy_card(key, value)  # Raises as the astropy writer does.
        card.verify("exception")
        primary.append(str(card))
        bare = card.keyword.upper()
        astropy_only |= bare in _ASTROPY_STRUCTURE or bare.startswith("NAXIS")
    for keyword, (attribute, kind) in STAMP_ARRAYS.items():
        primary += [cards.card(keyword, array_value(stamp, attribute, kind)) for stamp in stamps]
    primary += [cards.card("RA_DEG", stamp.ra) for stamp in stamps]
    primary += [cards.card("DEC_DEG", stamp.dec) for stamp in stamps]
    primary += [
        cards.card("HAS_MASK", stamps.use_mask),
        cards.card("HAS_VARIANCE", stamps.use_variance),
        cards.card("HAS_ARCHIVE", False),
        cards.card("N_STAMPS", len(stamps)),
        cards.card("STAMPCLS", STAMPCLS),
        cards.card("VERSION", 1),
    ]
    return primary, astropy_only


def _plane_headers(
    stamps: Any, all_planes: list[list[tuple[str, np.ndarray]]], cards: CardFormatter
) -> Iterator[list[tuple[bytes, np.ndarray, np.dtype]]]:
    """Yield, for each stamp in turn, the header, pixels and big-endian
    type of each plane (made as the file is written, so that the headers
    of all stamps are never held at once).  Every plane must have its
    stamp's shape (see `_same_shapes`).
    """
    mask_planes = stamps.mask_planes
    mask_cards = [cards.card(key, bit) for key, bit in mask_plane_cards(mask_planes)]
    fixed = {
        "XTENSION": cards.card("XTENSION", "IMAGE", "Image extension"),
        "NAXIS": cards.card("NAXIS", 2, "number of array dimensions"),
        "PCOUNT": cards.card("PCOUNT", 0, "number of parameters"),
        "GCOUNT": cards.card("GCOUNT", 1, "number of groups"),
        "A-WCS head": [
            cards.card(key, value, comment)
            for (key, comment), value in zip(A_WCS_COMMENTS[:4], a_wcs_values(0, 0)[:4])
        ],
        "A-WCS tail": [
            cards.card(key, value, comment)
            for (key, comment), value in zip(A_WCS_COMMENTS[6:], a_wcs_values(0, 0)[6:])
        ],
    }
    extnames = {plane: cards.card("EXTNAME", plane) for plane in PLANES}
    scratch: dict[int, tuple[astropy.wcs.WCS, astropy.wcs.WCS]] = {}
    for number, (stamp, planes) in enumerate(zip(stamps, all_planes), start=1):
        height, width = stamp.image.shape
        x0, y0 = float(stamp.x0), float(stamp.y0)
        common = [
            cards.card("NAXIS1", width),
            cards.card("NAXIS2", height),
            fixed["PCOUNT"],
            fixed["GCOUNT"],
            cards.card("EXTVER", number),
        ]
        a_wcs = [
            *fixed["A-WCS head"],
            cards.card("CRVAL1A", x0, A_WCS_COMMENTS[4][1]),
            cards.card("CRVAL2A", y0, A_WCS_COMMENTS[5][1]),
            *fixed["A-WCS tail"],
        ]
        headers = []
        for plane, data in planes:
            bitpix, big_endian = _fast_plane_data(data)
            plane_cards = [
                fixed["XTENSION"],
                cards.card("BITPIX", bitpix, "array data type"),
                fixed["NAXIS"],
                *common,
                extnames[plane],
            ]
            if plane == "MASK":
                plane_cards += mask_cards
            plane_cards += a_wcs
            if plane == "IMAGE":
                header_wcs = _header_wcs(stamp, scratch)
                if header_wcs is not None:
                    plane_cards += _STAMP_WCS_TEMPLATES.cards(header_wcs)
            headers.append((header_bytes(plane_cards), data, big_endian))
        yield headers


def _same_shapes(stamps: Any, all_planes: list[list[tuple[str, np.ndarray]]]) -> bool:
    """Return whether every plane has its stamp's image shape (else
    astropy writes each plane's own shape).
    """
    return all(
        data.shape == stamp.image.shape for stamp, planes in zip(stamps, all_planes) for _, data in planes
    )


def _padded(nbytes: int) -> int:
    """Return the size of a data unit of ``nbytes``: whole FITS blocks."""
    return nbytes + (-nbytes % BLOCK)


def write_stamps_fast(stamps: Any, filename: str | os.PathLike | IO[bytes]) -> bool:
    """Write stamps as `~.stamps_astropy.write_stamps_astropy` would,
    formatting the cards here.

    Parameters
    ----------
    stamps : `~lsst.epo.zooniverse.formats.stamps.Stamps`
        The stamps.
    filename : `str`, `os.PathLike` or binary file object
        Where to write; an existing file is overwritten.

    Returns
    -------
    written : `bool`
        `False` (having written nothing) for what the astropy writer
        should write itself: compressed file names, unusual pixel types,
        planes of different shapes, metadata keywords with a structural
        meaning.

    Raises
    ------
    ValueError
        Raised as `~lsst.epo.zooniverse.formats.stamps.write_stamps`
        raises.
    TypeError
        Raised for a metadata value FITS cannot hold.
    """
    if _compressed_name(filename):
        return False
    cards = CardFormatter()
    primary, astropy_only = _primary_cards(stamps, cards)
    all_planes = stamp_planes(stamps)
    if astropy_only or any(_fast_plane_data(data) is None for planes in all_planes for _, data in planes):
        return False
    if not _same_shapes(stamps, all_planes):
        return False

    def write(stream: IO[bytes]) -> None:
        # One stamp at a time: its headers are made, its planes converted
        # to big-endian and padded in one buffer, and written in one call.
        stream.write(header_bytes(primary))
        buffer = bytearray()
        for headers in _plane_headers(stamps, all_planes, cards):
            size = sum(len(header) + _padded(data.nbytes) for header, data, _ in headers)
            if len(buffer) != size:
                buffer = bytearray(size)
            view = memoryview(buffer)
            offset = 0
            for header, data, big_endian in headers:
                view[offset : offset + len(header)] = header
                offset += len(header)
                pixels = np.frombuffer(view, big_endian, data.size, offset).reshape(data.shape)
                np.copyto(pixels, data)
                view[offset + data.nbytes : offset + _padded(data.nbytes)] = bytes(-data.nbytes % BLOCK)
                offset += _padded(data.nbytes)
            stream.write(view)

    if isinstance(filename, (str, os.PathLike)):
        with open(filename, "wb") as stream:
            write(stream)
    else:
        write(filename)
        flush = getattr(filename, "flush", None)
        if flush is not None:
            flush()
    return True


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
