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

"""The Stamps writer that formats the FITS cards itself (`.fits_cards`).

`write_stamps_fast` formats the cards exactly as astropy formats them
(tests compare it with the astropy writer of `.stamps_astropy` byte for
byte), has astropy make only the few cards it does not format itself
(HIERARCH, metadata, long strings), and leaves what it does not handle to
the astropy writer.

The headers of the stamps of a file differ in a few cards only: the stamp
number (``EXTVER``), the parent origin (``CRVAL1A``, ``CRVAL2A``) and, for
stamps whose celestial WCS is their parent's shifted (extractStamps'
stamps), the reference pixel (``CRPIX1``, ``CRPIX2``).  The headers of
each family of stamps (same size, pixel types and WCS but for CRPIX) are
made once as bytes (`StampLayouts`); each stamp's are those bytes with its
own cards copied in.  Stamps and their big-endian pixels go to the file
through one reused buffer of bounded size (`.fits_block_writer`).
"""

from __future__ import annotations

__all__ = ["StampLayouts", "WcsCards", "write_stamps_fast"]

import dataclasses
import functools
import itertools
import math
import os
from typing import IO, Any

import astropy.io.fits as fits
import astropy.wcs
import numpy as np

from .afw_wcs import A_WCS_COMMENTS, a_wcs_values
from .fits_block_writer import BlockWriter, open_for_writing
from .fits_cards import BLOCK, CARD, CardFormatter, astropy_card, header_bytes
from .mask_planes import mask_plane_cards
from .stamps_layout import (
    PLANES,
    STAMP_ARRAYS,
    STAMPCLS,
    check_metadata_key,
    shifted_wcs,
    stamp_planes,
    wcs_factory,
)
from .wcs_metadata import CrpixTemplates

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
    # The images of the cards as the plane header has them.
    plane = fits.Header()
    plane.extend(header.cards, end=True)
    return [str(card) for card in plane.cards]


_STAMP_WCS_TEMPLATES = CrpixTemplates(True, _stamp_wcs_cards)


def _compressed_name(filename: Any) -> bool:
    if isinstance(filename, (str, os.PathLike)):
        return os.fspath(filename).lower().endswith(_COMPRESSED_SUFFIXES)
    return False


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
        values = [getattr(stamp, attribute) for stamp in stamps]
        if kind is str:
            values = ["" if value is None else value for value in values]
        primary += cards.array_cards(keyword, values)
    primary += cards.array_cards("RA_DEG", [stamp.ra for stamp in stamps])
    primary += cards.array_cards("DEC_DEG", [stamp.dec for stamp in stamps])
    primary += [
        cards.card("HAS_MASK", stamps.use_mask),
        cards.card("HAS_VARIANCE", stamps.use_variance),
        cards.card("HAS_ARCHIVE", False),
        cards.card("N_STAMPS", len(stamps)),
        cards.card("STAMPCLS", STAMPCLS),
        cards.card("VERSION", 1),
    ]
    return primary, astropy_only


def _fast_planes(stamps: Any, all_planes: list[list[tuple[str, np.ndarray]]]) -> bool:
    """Return whether every plane is a non-empty 2-D array of a pixel type
    the fast writer writes, of its stamp's image shape (else astropy writes
    each plane as it is).
    """
    dtypes = set()
    for stamp, planes in zip(stamps, all_planes):
        shape = stamp.image.shape
        if len(shape) != 2 or 0 in shape:
            return False
        for _, data in planes:
            if data.shape != shape:
                return False
            dtypes.add(data.dtype)
    return all((dtype.kind, dtype.itemsize) in _BITPIX for dtype in dtypes)


# -- Celestial WCS cards ---------------------------------------------------

# WCS families seen by this process: cards without CRPIX -> family number
# (never reused), and the CRPIX cards of each (family, CRPIX) seen, so that
# the stamps of an object in another band (same CRPIX) do not ask wcslib
# again.  Both are emptied when they grow beyond these sizes.
_MAX_FAMILIES = 256
_MAX_CRPIX_CARDS = 16384
_FAMILY_NUMBERS: dict[tuple[str, ...], int] = {}
_CRPIX_CARDS: dict[tuple[int, float, float], tuple[str, str]] = {}
_NEXT_FAMILY = itertools.count()

_CRPIX_KEYS = ("CRPIX1  =", "CRPIX2  =")


@dataclasses.dataclass(frozen=True)
class _WcsFamily:
    """The WCS cards of stamps that differ only in CRPIX."""

    number: int
    """Identifies the family in this process (`int`)."""

    rest: tuple[str, ...]
    """The cards, CRPIX cards blank (`tuple` [`str`])."""

    places: tuple[int, int]
    """Indices of the CRPIX1 and CRPIX2 cards (`tuple` [`int`, `int`])."""

    @classmethod
    def of(cls, cards: list[str]) -> _WcsFamily | None:
        """Return the family of a stamp's WCS cards, `None` without one
        80-character card of each of CRPIX1 and CRPIX2.
        """
        places = []
        for key in _CRPIX_KEYS:
            found = [k for k, card in enumerate(cards) if card.startswith(key)]
            if len(found) != 1 or len(cards[found[0]]) != CARD:
                return None
            places.append(found[0])
        rest = list(cards)
        for place in places:
            rest[place] = ""
        rest = tuple(rest)
        if len(_FAMILY_NUMBERS) >= _MAX_FAMILIES:
            _FAMILY_NUMBERS.clear()
        number = _FAMILY_NUMBERS.setdefault(rest, next(_NEXT_FAMILY))
        return cls(number, rest, (places[0], places[1]))

    def crpix_cards(self, cards: list[str]) -> tuple[str, str] | None:
        """Return the CRPIX cards of a stamp's WCS cards, `None` if the
        other cards are not the family's.
        """
        first, second = self.places
        if len(cards) != len(self.rest):
            return None
        pair = (cards[first], cards[second])
        if len(pair[0]) != CARD or len(pair[1]) != CARD:
            return None
        rest = list(cards)
        rest[first] = rest[second] = ""
        return pair if tuple(rest) == self.rest else None


class WcsCards:
    """The celestial WCS cards of the ``IMAGE`` headers of one file's
    stamps.

    A stamp whose WCS is its (non-SIP) parent's shifted
    (`~.stamps.Stamp.set_shifted_wcs`) gets the cards of one working copy
    of the parent per file, which takes each stamp's CRPIX, instead of a
    WCS of its own; its cards are those of the parent's family but for
    CRPIX, and the CRPIX cards of a reference pixel seen before in the
    family are not asked of wcslib again.  Any other stamp gets the cards
    of its own WCS.
    """

    def __init__(self) -> None:
        # id(parent) -> [parent, working copy, family or None, family tried]
        self._parents: dict[int, list[Any]] = {}

    def family(self, stamp: Any) -> _WcsFamily | None:
        """Return the WCS family of a stamp whose WCS is its parent's
        shifted (asking wcslib for the parent's first stamp only).

        Parameters
        ----------
        stamp : `~lsst.epo.zooniverse.formats.stamps.Stamp`
            The stamp, for which `is_shifted` is true.

        Returns
        -------
        family : `_WcsFamily` or `None`
            Its family, `None` if its parent's WCS cards have none.
        """
        parent = wcs_factory(stamp).args[0]
        entry = self._parents.get(id(parent))
        if entry is None or entry[0] is not parent or not entry[3]:
            self.get(stamp)
            entry = self._parents[id(parent)]
        return entry[2]

    @staticmethod
    def is_shifted(stamp: Any) -> bool:
        """Return whether a stamp's WCS is (not made yet) its non-SIP
        parent's shifted, the stamps that may have a family.

        Parameters
        ----------
        stamp : `~lsst.epo.zooniverse.formats.stamps.Stamp`
            The stamp.

        Returns
        -------
        shifted : `bool`
            Whether the stamp's WCS is its parent's shifted.
        """
        make = wcs_factory(stamp)
        return type(make) is functools.partial and make.func is shifted_wcs and make.args[0].sip is None

    def get(self, stamp: Any) -> tuple[_WcsFamily | None, list[str] | tuple[str, str]]:
        """Return the WCS cards of a stamp.

        Parameters
        ----------
        stamp : `~lsst.epo.zooniverse.formats.stamps.Stamp`
            The stamp.

        Returns
        -------
        family : `_WcsFamily` or `None`
            The stamp's WCS family, if it has one.
        cards : `list` [`str`] or `tuple` [`str`, `str`]
            With a family, its CRPIX1 and CRPIX2 cards; else all its WCS
            cards (none without a WCS).
        """
        if not self.is_shifted(stamp):
            wcs = stamp.wcs
            return None, [] if wcs is None else _STAMP_WCS_TEMPLATES.cards(wcs)
        parent, crpix = wcs_factory(stamp).args
        entry = self._parents.get(id(parent))
        if entry is None or entry[0] is not parent:
            entry = self._parents[id(parent)] = [parent, parent.deepcopy(), None, False]
        family = entry[2]
        crpix1, crpix2 = float(crpix[0]), float(crpix[1])
        # Zeros are left out: 0.0 and -0.0 are one key but two cards.
        key = (family.number, crpix1, crpix2) if family is not None and crpix1 and crpix2 else None
        if key is not None:
            pair = _CRPIX_CARDS.get(key)
            if pair is not None:
                return family, pair
        work: astropy.wcs.WCS = entry[1]
        work.wcs.crpix = crpix
        cards = _STAMP_WCS_TEMPLATES.cards(work)
        if family is None and not entry[3]:
            family = entry[2] = _WcsFamily.of(cards)
            entry[3] = True
            key = (family.number, crpix1, crpix2) if family is not None and crpix1 and crpix2 else None
        pair = family.crpix_cards(cards) if family is not None else None
        if pair is None:
            return None, cards
        if key is not None and math.isfinite(crpix1 + crpix2):
            if len(_CRPIX_CARDS) >= _MAX_CRPIX_CARDS:
                _CRPIX_CARDS.clear()
            _CRPIX_CARDS[key] = pair
        return family, pair


# -- Plane headers -----------------------------------------------------------

# Places of a stamp's own cards in a layout's headers (indices into the
# list of its cards, see `StampLayouts.place`).
_EXTVER, _CRVAL1, _CRVAL2, _CRPIX1, _CRPIX2 = range(5)


@dataclasses.dataclass
class _Layout:
    """The bytes of the HDUs of a family of stamps, less their pixels and
    own cards.
    """

    size: int
    """Bytes of a stamp's HDUs (`int`)."""

    headers: list[tuple[int, bytes]]
    """Offset and bytes of each plane's header (`list`)."""

    own_cards: list[tuple[int, int]]
    """Offset of each of the stamp's own cards and which it is (`list`)."""

    data: list[tuple[int, np.dtype, int, int]]
    """Offset, big-endian type, bytes and padding of each plane's pixels
    (`list`).
    """


class StampLayouts:
    """The headers of the stamps of one file, made once per family.

    Parameters
    ----------
    stamps : `~lsst.epo.zooniverse.formats.stamps.Stamps`
        The stamps.
    cards : `~.fits_cards.CardFormatter`
        The file's card formatter.
    """

    def __init__(self, stamps: Any, cards: CardFormatter) -> None:
        self._cards = cards
        self._mask_cards = [cards.card(key, bit) for key, bit in mask_plane_cards(stamps.mask_planes)]
        a_wcs = list(zip(A_WCS_COMMENTS, a_wcs_values(0, 0)))
        self._a_wcs_head = [cards.card(key, value, comment) for (key, comment), value in a_wcs[:4]]
        self._a_wcs_tail = [cards.card(key, value, comment) for (key, comment), value in a_wcs[6:]]
        self._fixed = [
            cards.card("XTENSION", "IMAGE", "Image extension"),
            cards.card("NAXIS", 2, "number of array dimensions"),
            cards.card("PCOUNT", 0, "number of parameters"),
            cards.card("GCOUNT", 1, "number of groups"),
        ]
        self._extnames = {plane: cards.card("EXTNAME", plane) for plane in PLANES}
        self._layouts: dict[tuple, _Layout] = {}
        self._wcs = WcsCards()

    def _plane_cards(self, plane: str, data: np.ndarray, own: list[Any], wcs_cards: list[Any]) -> list[Any]:
        """Return a plane's cards, ``own`` (stamp number and parent origin)
        and ``wcs_cards`` (``IMAGE`` only) in their places.
        """
        cards = self._cards
        height, width = data.shape
        xtension, naxis, pcount, gcount = self._fixed
        plane_cards = [
            xtension,
            cards.card("BITPIX", _BITPIX[data.dtype.kind, data.dtype.itemsize], "array data type"),
            naxis,
            cards.card("NAXIS1", width),
            cards.card("NAXIS2", height),
            pcount,
            gcount,
            own[_EXTVER],
            self._extnames[plane],
        ]
        if plane == "MASK":
            plane_cards += self._mask_cards
        plane_cards += [*self._a_wcs_head, own[_CRVAL1], own[_CRVAL2], *self._a_wcs_tail]
        if plane == "IMAGE":
            plane_cards += wcs_cards
        return plane_cards

    def _layout(self, planes: list[tuple[str, np.ndarray]], own: list[Any], wcs_cards: list[Any]) -> _Layout:
        """Make the layout of a stamp's HDUs; the items of ``own`` and
        ``wcs_cards`` that are numbers are the places of the stamp's own
        cards, the others go in the headers as they are.
        """
        layout = _Layout(0, [], [], [])
        for plane, data in planes:
            texts = []
            offset = layout.size
            for card in self._plane_cards(plane, data, own, wcs_cards):
                if isinstance(card, int):
                    layout.own_cards.append((offset, card))
                    card = " " * CARD
                texts.append(card)
                offset += len(card)
            header = header_bytes(texts)
            layout.headers.append((layout.size, header))
            layout.size += len(header)
            nbytes = data.nbytes
            padding = -nbytes % BLOCK
            layout.data.append((layout.size, data.dtype.newbyteorder(">"), nbytes, padding))
            layout.size += nbytes + padding
        return layout

    def _family_layout(self, family: _WcsFamily | None, planes: list[tuple[str, np.ndarray]]) -> _Layout:
        """Return the layout of the stamps of a WCS family (`None`: without
        WCS) and of these planes' size and types.
        """
        key = (family.number if family is not None else None, *[data.dtype for _, data in planes])
        key += planes[0][1].shape
        layout = self._layouts.get(key)
        if layout is None:
            wcs_cards: list[Any] = []
            if family is not None:
                wcs_cards = list(family.rest)
                wcs_cards[family.places[0]], wcs_cards[family.places[1]] = _CRPIX1, _CRPIX2
            layout = self._layouts[key] = self._layout(planes, [_EXTVER, _CRVAL1, _CRVAL2], wcs_cards)
        return layout

    def planned_size(self, stamp: Any, planes: list[tuple[str, np.ndarray]]) -> int:
        """Return the bytes `place` will likely put for a stamp: exact for
        a stamp of a WCS family or without WCS, its pixels and a block per
        header for others (whose WCS cards are not made twice).

        Parameters
        ----------
        stamp : `~lsst.epo.zooniverse.formats.stamps.Stamp`
            The stamp.
        planes : `list` [`tuple` [`str`, `numpy.ndarray`]]
            As for `place`.

        Returns
        -------
        size : `int`
            Bytes.
        """
        if self._wcs.is_shifted(stamp):
            family = self._wcs.family(stamp)
            if family is not None:
                return self._family_layout(family, planes).size
        elif stamp.wcs is None:
            return self._family_layout(None, planes).size
        return sum(BLOCK + data.nbytes + (-data.nbytes % BLOCK) for _, data in planes)

    def place(
        self, writer: BlockWriter, number: int, stamp: Any, planes: list[tuple[str, np.ndarray]]
    ) -> None:
        """Put a stamp's HDUs in the writer's buffer.

        Parameters
        ----------
        writer : `~.fits_block_writer.BlockWriter`
            The writer.
        number : `int`
            1-based stamp number (``EXTVER``).
        stamp : `~lsst.epo.zooniverse.formats.stamps.Stamp`
            The stamp.
        planes : `list` [`tuple` [`str`, `numpy.ndarray`]]
            ``(EXTNAME, pixels)`` of each plane written, all of the stamp's
            image shape and of a type the writer writes.
        """
        own = [
            f"EXTVER  = {number:>20d}".ljust(CARD),
            self._crval_card(0, stamp.x0),
            self._crval_card(1, stamp.y0),
        ]
        family, wcs_cards = self._wcs.get(stamp)
        if family is not None:
            own += wcs_cards
        layout = None
        if family is not None or not wcs_cards:
            layout = self._family_layout(family, planes)
        if layout is None or any(len(card) != CARD for card in own):  # Headers made whole.
            if family is not None:
                wcs_cards = list(family.rest)
                wcs_cards[family.places[0]], wcs_cards[family.places[1]] = own[_CRPIX1], own[_CRPIX2]
            layout = self._layout(planes, own, wcs_cards)
        base = writer.reserve(layout.size)
        view = writer.view
        for offset, header in layout.headers:
            view[base + offset : base + offset + len(header)] = header
        if layout.own_cards:
            own_bytes = [card.encode("ascii") for card in own]
            for offset, which in layout.own_cards:
                view[base + offset : base + offset + CARD] = own_bytes[which]
        for (offset, big_endian, nbytes, padding), (_, data) in zip(layout.data, planes):
            start = base + offset
            np.ndarray(data.shape, big_endian, view, start)[...] = data
            if padding:
                writer.pad(start + nbytes, padding)

    def _crval_card(self, axis: int, origin: int) -> str:
        """Return the ``CRVAL1A`` (axis 0) or ``CRVAL2A`` card of a
        parent origin, as `~.fits_cards.CardFormatter.card` gives it.
        """
        value = float(origin)
        text = repr(value)
        keyword, comment = A_WCS_COMMENTS[4 + axis]
        if len(text) > 20 or "e" in text or "n" in text:  # Exponent, inf, nan: the general way.
            return self._cards.card(keyword, value, comment)
        return f"{keyword:8}= {text:>20} / {comment}".ljust(CARD)


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
    if astropy_only or not _fast_planes(stamps, all_planes):
        return False

    def write(stream: IO[bytes], preallocate: bool) -> None:
        # Stamp after stamp into one buffer, written when full.
        writer = BlockWriter(stream)
        primary_bytes = header_bytes(primary)
        layouts = StampLayouts(stamps, cards)
        if preallocate:
            planned = sum(layouts.planned_size(stamp, planes) for stamp, planes in zip(stamps, all_planes))
            writer.preallocate(len(primary_bytes) + planned)
        writer.write(primary_bytes)
        for number, (stamp, planes) in enumerate(zip(stamps, all_planes), start=1):
            layouts.place(writer, number, stamp, planes)
        writer.flush()

    if isinstance(filename, (str, os.PathLike)):
        with open_for_writing(filename) as stream:
            write(stream, True)
    else:
        write(filename, False)
        flush = getattr(filename, "flush", None)
        if flush is not None:
            flush()
    return True
