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

"""Postage stamps in the `lsst.meas.algorithms.Stamps` FITS layout, read
and written without the Rubin stack.

The layout is the one ``lsst.meas.algorithms.stamps.writeFits`` writes and
``readFitsWithOptions`` reads: an empty primary HDU with the collection
metadata and per-stamp arrays as repeated keywords, then for each stamp
``IMAGE``, ``MASK`` and ``VARIANCE`` image HDUs told apart by ``EXTVER``
(1-based stamp number).  Files written here name
``lsst.meas.algorithms.stamps.Stamps`` in ``STAMPCLS`` so that the Rubin
stack reads them as ordinary `~lsst.meas.algorithms.Stamps`; files written
by the Rubin stack read here as `Stamps`.

Beyond what ``lsst.meas.algorithms`` writes, each stamp records (as
repeated primary keywords, which that code keeps in the metadata it reads)
its catalog object id (``OBJ_ID``), its bounding box in parent (patch)
pixels (``BBOX_X0``, ``BBOX_Y0``, ``BBOX_W``, ``BBOX_H``), the fraction of
its pixels with data (``COVERAGE``) and the distance from its object to the
inner boundary of the patch in pixels (``EDGEDIST``); and its ``IMAGE`` HDU
carries a celestial FITS WCS when one is known.

Files are written and read by code of this module that formats and
parses the cards itself, byte for byte as astropy writes and reads them;
the astropy-only writer and reader it replaces remain as the reference
(the tests compare the two) and as the fallback for what the fast paths
leave alone (compressed or scaled HDUs, gzip files, unusual pixel types).
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MASK_PLANES",
    "PROVENANCE_PREFIX",
    "STAMPCLS",
    "Stamp",
    "Stamps",
    "cut_stamp",
    "read_stamps",
    "read_stamps_index",
    "write_stamps",
]

import dataclasses
import functools
import io
import itertools
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

import astropy.io.fits as fits
import astropy.wcs
import numpy as np
from astropy.table import Table

from .mask_planes import DEFAULT_MASK_PLANES
from .wcs_metadata import CrpixTemplates

PROVENANCE_PREFIX = "LSST BUTLER"
"""Prefix of the Butler provenance cards (as written by obs_base)."""

STAMPCLS = "lsst.meas.algorithms.stamps.Stamps"
"""``STAMPCLS`` value that makes the Rubin stack read a file as `Stamps`."""

# Per-stamp primary-header arrays beyond RA_DEG/DEC_DEG: keyword -> (Stamp
# attribute, type).  All keywords are at most 8 characters, so no HIERARCH.
_STAMP_ARRAYS: dict[str, tuple[str, type]] = {
    "OBJ_ID": ("object_id", str),
    "BBOX_X0": ("x0", int),
    "BBOX_Y0": ("y0", int),
    "BBOX_W": ("width", int),
    "BBOX_H": ("height", int),
    "COVERAGE": ("coverage", float),
    "EDGEDIST": ("edge_distance", float),
}
# Keywords written by the layout itself; never part of user metadata.
_LAYOUT_KEYS = frozenset(
    {"RA_DEG", "DEC_DEG", "HAS_MASK", "HAS_VARIANCE", "HAS_ARCHIVE", "N_STAMPS", "STAMPCLS", "VERSION"}
    | set(_STAMP_ARRAYS)
    | {"ARCHIVE_IDS"}
)
_STRUCTURAL_KEYS = frozenset({"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "COMMENT", "HISTORY", ""})
_NON_FINITE = {"NAN": math.nan, "+INFINITY": math.inf, "-INFINITY": -math.inf}
_PLANES = ("IMAGE", "MASK", "VARIANCE")


@dataclasses.dataclass(eq=False)
class Stamp:
    """One postage stamp: image, mask and variance planes cut from a parent
    image, with where it came from.

    Parameters
    ----------
    image : `numpy.ndarray`
        ``float32`` pixels, shape ``(height, width)``; row 0 is the lowest
        ``y`` (FITS and afw order, south at the bottom for a standard WCS).
    mask : `numpy.ndarray`, optional
        ``int32`` mask bits, same shape.
    variance : `numpy.ndarray`, optional
        ``float32`` variance, same shape.
    x0, y0 : `int`
        Parent-frame (patch or tract pixel) coordinates of ``image[0, 0]``.
    ra, dec : `float`
        Position of the stamp's object in degrees (NaN if unknown).
    object_id : `str`, optional
        Catalog id of the object.
    coverage : `float`
        Fraction of pixels with data (finite and not ``NO_DATA``).
    edge_distance : `float`
        Distance in pixels from the object to the inner (non-overlapping)
        boundary of the patch: positive inside it, negative in the overlap
        region (NaN if unknown).
    wcs : `astropy.wcs.WCS`, optional
        Celestial WCS of this stamp's own pixel grid (0-based pixel
        ``(0, 0)`` is ``image[0, 0]``).
    """

    image: np.ndarray
    mask: np.ndarray | None = None
    variance: np.ndarray | None = None
    x0: int = 0
    y0: int = 0
    ra: float = math.nan
    dec: float = math.nan
    object_id: str | None = None
    coverage: float = math.nan
    edge_distance: float = math.nan
    wcs: astropy.wcs.WCS | None = None

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image, dtype=np.float32)
        if self.image.ndim != 2 or 0 in self.image.shape:
            raise ValueError(f"Stamp image must be a non-empty 2-D array, not shape {self.image.shape}.")
        for plane, dtype in (("mask", np.int32), ("variance", np.float32)):
            value = getattr(self, plane)
            if value is not None:
                value = np.asarray(value, dtype=dtype)
                if value.shape != self.image.shape:
                    raise ValueError(
                        f"Stamp {plane} shape {value.shape} differs from image shape {self.image.shape}."
                    )
                setattr(self, plane, value)
        self.x0 = int(self.x0)
        self.y0 = int(self.y0)
        if self.object_id is not None:
            self.object_id = str(self.object_id)

    @property
    def width(self) -> int:
        """Number of columns (`int`)."""
        return self.image.shape[1]

    @property
    def height(self) -> int:
        """Number of rows (`int`)."""
        return self.image.shape[0]

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """Bounding box in parent pixels, ``(x0, y0, width, height)``."""
        return (self.x0, self.y0, self.width, self.height)

    def set_shifted_wcs(self, parent_wcs: astropy.wcs.WCS, dx: float, dy: float) -> None:
        """Give the stamp the WCS of its parent image, shifted to the stamp's
        pixel grid; it is made when first asked for.

        Parameters
        ----------
        parent_wcs : `astropy.wcs.WCS`
            Celestial WCS of the parent's array (0-based pixel ``(0, 0)`` is
            the parent array's first pixel).  It must not be changed
            afterwards: every stamp of the parent shares it until its own
            WCS is made.
        dx, dy : `float`
            Position of the stamp's pixel ``(0, 0)`` in the parent array.
        """
        crpix = [float(parent_wcs.wcs.crpix[0]) - dx, float(parent_wcs.wcs.crpix[1]) - dy]
        _set_wcs_factory(self, functools.partial(_shifted_wcs, parent_wcs, crpix))

    def equals(self, other: Stamp) -> bool:
        """Compare pixels (NaN equal to NaN) and metadata with another
        stamp.

        Parameters
        ----------
        other : `Stamp`
            Stamp to compare with.

        Returns
        -------
        equal : `bool`
            Whether the stamps are the same.
        """

        def same_float(a: float, b: float) -> bool:
            return (math.isnan(a) and math.isnan(b)) or a == b

        def same_array(a: np.ndarray | None, b: np.ndarray | None) -> bool:
            if a is None or b is None:
                return a is b
            return a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")

        return (
            same_array(self.image, other.image)
            and same_array(self.mask, other.mask)
            and same_array(self.variance, other.variance)
            and self.bbox == other.bbox
            and self.object_id == other.object_id
            and all(
                same_float(getattr(self, a), getattr(other, a))
                for a in ("ra", "dec", "coverage", "edge_distance")
            )
        )


def _stamp_wcs(self: Stamp) -> astropy.wcs.WCS | None:
    state = self.__dict__
    make = state.get("_wcs_factory")
    if make is not None:
        state["_wcs"] = make()
        state["_wcs_factory"] = None
    return state.get("_wcs")


def _set_stamp_wcs(self: Stamp, value: astropy.wcs.WCS | None) -> None:
    self.__dict__["_wcs"] = value
    self.__dict__["_wcs_factory"] = None


def _set_wcs_factory(stamp: Stamp, make: Callable[[], astropy.wcs.WCS]) -> None:
    """Give ``stamp`` the WCS ``make()`` returns, made when first asked for."""
    stamp.__dict__["_wcs"] = None
    stamp.__dict__["_wcs_factory"] = make


# The WCS of a stamp read from a file is made when first asked for (most
# readers, composeRgb included, need it for one band of each object only).
Stamp.wcs = property(  # type: ignore[assignment]
    _stamp_wcs, _set_stamp_wcs, doc="Celestial WCS of the stamp's pixel grid (`astropy.wcs.WCS` or `None`)."
)


class Stamps(Sequence[Stamp]):
    """A sequence of `Stamp` with collection-level metadata, stored in the
    `lsst.meas.algorithms.Stamps` FITS layout.

    Parameters
    ----------
    stamps : `~collections.abc.Iterable` [`Stamp`]
        The stamps, in order.
    metadata : `~collections.abc.Mapping` [`str`, `object`], optional
        Collection metadata written first in the primary header (e.g.
        ``SKYMAP``, ``TRACT``, ``PATCH``, ``BAND``).  Values must be FITS
        header values (`bool`, `int`, `float`, `str` or `None`).
    mask_planes : `~collections.abc.Mapping` [`str`, `int`], optional
        Mask plane name to bit number; defaults to `DEFAULT_MASK_PLANES`.
    use_mask, use_variance : `bool`, optional
        Whether to write the mask and variance planes.
    """

    def __init__(
        self,
        stamps: Iterable[Stamp] = (),
        *,
        metadata: Mapping[str, Any] | None = None,
        mask_planes: Mapping[str, int] | None = None,
        use_mask: bool = True,
        use_variance: bool = True,
    ) -> None:
        self._stamps = list(stamps)
        for stamp in self._stamps:
            if not isinstance(stamp, Stamp):
                raise TypeError(f"Stamps holds Stamp objects, not {type(stamp).__name__}.")
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.provenance: dict[str, Any] = {}
        """Butler provenance read from the file (``LSST BUTLER ...`` cards);
        not written back by `write_stamps` (the Butler adds its own).
        """
        self.mask_planes: dict[str, int] = dict(DEFAULT_MASK_PLANES if mask_planes is None else mask_planes)
        self.use_mask = bool(use_mask)
        self.use_variance = bool(use_variance)

    def __len__(self) -> int:
        return len(self._stamps)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return Stamps(
                self._stamps[index],
                metadata=self.metadata,
                mask_planes=self.mask_planes,
                use_mask=self.use_mask,
                use_variance=self.use_variance,
            )
        return self._stamps[index]

    def __iter__(self) -> Iterator[Stamp]:
        return iter(self._stamps)

    def __repr__(self) -> str:
        return f"Stamps(<{len(self)} stamps>, metadata={self.metadata!r})"

    def append(self, stamp: Stamp) -> None:
        """Add a stamp at the end.

        Parameters
        ----------
        stamp : `Stamp`
            The stamp.
        """
        if not isinstance(stamp, Stamp):
            raise TypeError(f"Stamps holds Stamp objects, not {type(stamp).__name__}.")
        self._stamps.append(stamp)

    @property
    def object_ids(self) -> list[str | None]:
        """Catalog object ids of the stamps, in order."""
        return [stamp.object_id for stamp in self._stamps]

    def index_table(self) -> Table:
        """Return the per-stamp metadata as a table.

        Returns
        -------
        table : `astropy.table.Table`
            One row per stamp: ``index``, ``object_id``, ``ra``, ``dec``,
            ``bbox_x0``, ``bbox_y0``, ``bbox_width``, ``bbox_height``,
            ``coverage``, ``edge_distance``.
        """
        return _index_table(
            [
                (s.object_id, s.ra, s.dec, s.x0, s.y0, s.width, s.height, s.coverage, s.edge_distance)
                for s in self._stamps
            ],
            self.metadata,
        )

    def equals(self, other: Stamps) -> bool:
        """Compare stamps, metadata and mask planes with another collection.

        Parameters
        ----------
        other : `Stamps`
            Collection to compare with.

        Returns
        -------
        equal : `bool`
            Whether the two collections hold the same data.
        """
        return (
            len(self) == len(other)
            and self.metadata == other.metadata
            and (not self.use_mask or self.mask_planes == other.mask_planes)
            and all(a.equals(b) for a, b in zip(self, other))
        )

    def writeFits(self, filename: str | os.PathLike) -> None:
        """Write the stamps to a FITS file (the `lsst.meas.algorithms`
        method name).

        Parameters
        ----------
        filename : `str` or `os.PathLike`
            Path of the file to write; overwritten if it exists.
        """
        write_stamps(self, filename)

    @classmethod
    def readFits(cls, filename: str | os.PathLike) -> Stamps:
        """Read all stamps from a FITS file (the `lsst.meas.algorithms`
        method name).

        Parameters
        ----------
        filename : `str` or `os.PathLike`
            Path of the file.

        Returns
        -------
        stamps : `Stamps`
            The stamps.
        """
        return read_stamps(filename)


def _index_table(rows: list[tuple], metadata: Mapping[str, Any]) -> Table:
    names = (
        "object_id",
        "ra",
        "dec",
        "bbox_x0",
        "bbox_y0",
        "bbox_width",
        "bbox_height",
        "coverage",
        "edge_distance",
    )
    dtypes = (object, np.float64, np.float64, np.int64, np.int64, np.int64, np.int64, np.float64, np.float64)
    columns = list(zip(*rows)) if rows else [[] for _ in names]
    table = Table(
        [np.arange(len(rows), dtype=np.int64)]
        + [np.array(col, dtype=dtype) for col, dtype in zip(columns, dtypes)],
        names=("index",) + names,
    )
    table["object_id"] = np.array(["" if v is None else v for v in table["object_id"]], dtype=str)
    table.meta.update({k: v for k, v in metadata.items() if isinstance(v, (bool, int, float, str))})
    return table


# ---------------------------------------------------------------------------
# Cutting


def cut_stamp(
    image: np.ndarray,
    mask: np.ndarray | None,
    variance: np.ndarray | None,
    *,
    parent_x0: int,
    parent_y0: int,
    x0: int,
    y0: int,
    width: int,
    height: int,
    no_data_bit: int = DEFAULT_MASK_PLANES["NO_DATA"],
    **kwargs: Any,
) -> Stamp:
    """Cut a stamp from parent planes held in memory, padding the part that
    falls outside them.

    Parameters
    ----------
    image, mask, variance : `numpy.ndarray`
        Parent planes (``mask`` and ``variance`` may be `None`), row 0 at
        ``parent_y0``.
    parent_x0, parent_y0 : `int`
        Parent-frame coordinates of ``image[0, 0]``.
    x0, y0, width, height : `int`
        The stamp's bounding box in the parent frame.
    no_data_bit : `int`, optional
        Mask bit set on padded pixels, and counted as "no data" for the
        coverage.
    **kwargs
        Further `Stamp` fields (``ra``, ``dec``, ``object_id``,
        ``edge_distance``, ``wcs``).

    Returns
    -------
    stamp : `Stamp`
        The stamp.  Pixels outside the parent are NaN in image and variance
        and have the ``NO_DATA`` bit set in the mask; ``coverage`` is the
        fraction of pixels that are finite and not flagged ``NO_DATA``.

    Raises
    ------
    ValueError
        Raised for a non-positive stamp size.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"Stamp size must be positive, not {width}x{height}.")
    stamp_image = np.full((height, width), np.nan, dtype=np.float32)
    stamp_mask = np.full((height, width), 1 << no_data_bit, dtype=np.int32)
    stamp_variance = np.full((height, width), np.nan, dtype=np.float32)
    # Overlap in parent array indices.
    px0, py0 = x0 - parent_x0, y0 - parent_y0
    ix0, iy0 = max(px0, 0), max(py0, 0)
    ix1, iy1 = min(px0 + width, image.shape[1]), min(py0 + height, image.shape[0])
    if ix1 > ix0 and iy1 > iy0:
        target = (slice(iy0 - py0, iy1 - py0), slice(ix0 - px0, ix1 - px0))
        source = (slice(iy0, iy1), slice(ix0, ix1))
        stamp_image[target] = image[source]
        stamp_mask[target] = 0 if mask is None else mask[source]
        if variance is not None:
            stamp_variance[target] = variance[source]
    has_data = np.isfinite(stamp_image) & ((stamp_mask & (1 << no_data_bit)) == 0)
    return Stamp(
        image=stamp_image,
        mask=stamp_mask,
        variance=stamp_variance if variance is not None else None,
        x0=x0,
        y0=y0,
        coverage=float(has_data.mean()),
        **kwargs,
    )


# ---------------------------------------------------------------------------
# Writing
#
# Two writers give the same bytes.  `_write_stamps_astropy` builds the HDUs
# with astropy; it is the reference, and the fallback for what the fast one
# leaves alone.  The fast one formats the cards itself exactly as astropy
# formats them (tests compare the two byte for byte), has astropy make only
# the few cards it does not format itself (HIERARCH, metadata, long
# strings), takes the celestial WCS cards from a per-family template
# (`~.wcs_metadata.CrpixTemplates`) and writes big-endian
# pixels straight from numpy.

_BLOCK = 2880
_CARD = 80
_END_CARD = "END".ljust(_CARD)
_STANDARD_KEY = re.compile(r"[A-Z0-9_-]{1,8}\Z")
_PRINTABLE = re.compile(r"[ -~]*\Z")
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


def _header_value(value: Any) -> Any:
    """Convert a Python value to what afw writes for it in a header."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "NAN"
        if math.isinf(value):
            return "+INFINITY" if value > 0 else "-INFINITY"
        return value
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"Cannot write {value!r} ({type(value).__name__}) to a FITS header.")


def _append(header: fits.Header, key: str, value: Any) -> None:
    """Append a card, using HIERARCH for keys afw would write that way."""
    header.append(_astropy_card(key, value), end=True)


def _astropy_card(key: str, value: Any) -> fits.Card:
    if len(key) > 8 or " " in key:
        key = f"HIERARCH {key}"
    return fits.Card(key, _header_value(value))


def _primary_header(stamps: Stamps) -> fits.Header:
    header = fits.Header()
    for key, value in stamps.metadata.items():
        _check_metadata_key(key)
        _append(header, key, value)
    for keyword, (attribute, kind) in _STAMP_ARRAYS.items():
        for stamp in stamps:
            _append(header, keyword, _array_value(stamp, attribute, kind))
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


def _check_metadata_key(key: str) -> None:
    if key.upper() in _LAYOUT_KEYS or key.upper() in _STRUCTURAL_KEYS:
        raise ValueError(f"Stamps metadata key {key!r} is reserved by the Stamps layout.")


def _array_value(stamp: Stamp, attribute: str, kind: type) -> Any:
    value = getattr(stamp, attribute)
    if kind is str and value is None:
        return ""
    return value


_A_WCS_COMMENTS = (
    ("CTYPE1A", "Type of projection"),
    ("CTYPE2A", "Type of projection"),
    ("CRPIX1A", "Column Pixel Coordinate of Reference"),
    ("CRPIX2A", "Row Pixel Coordinate of Reference"),
    ("CRVAL1A", "Column pixel of Reference Pixel"),
    ("CRVAL2A", "Row pixel of Reference Pixel"),
    ("CUNIT1A", "Column unit"),
    ("CUNIT2A", "Row unit"),
)


def _plane_header(plane: str, number: int, stamp: Stamp, mask_planes: Mapping[str, int]) -> fits.Header:
    header = fits.Header()
    header["EXTVER"] = number
    header["EXTNAME"] = plane
    if plane == "MASK":
        for name in sorted(mask_planes):
            _append(header, f"MP_{name}", int(mask_planes[name]))
    # afw's "A" WCS: the parent-frame origin of the stamp.
    values = ("LINEAR", "LINEAR", 1.0, 1.0, float(stamp.x0), float(stamp.y0), "PIXEL", "PIXEL")
    for (key, comment), value in zip(_A_WCS_COMMENTS, values):
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


def _stamp_wcs_cards(header: fits.Header) -> list[str]:
    header.remove("WCSAXES", ignore_missing=True)
    # The images of the cards as `_plane_header` puts them in its header.
    plane = fits.Header()
    plane.extend(header.cards, end=True)
    return [str(card) for card in plane.cards]


_STAMP_WCS_TEMPLATES = CrpixTemplates(True, _stamp_wcs_cards)


def _stamp_planes(stamps: Stamps) -> list[list[tuple[str, np.ndarray]]]:
    """Return the planes written for each stamp; raise if one is missing."""
    result = []
    for number, stamp in enumerate(stamps, start=1):
        planes = [("IMAGE", stamp.image)]
        if stamps.use_mask:
            if stamp.mask is None:
                raise ValueError(f"Stamp {number} has no mask but the collection writes masks.")
            planes.append(("MASK", stamp.mask))
        if stamps.use_variance:
            if stamp.variance is None:
                raise ValueError(f"Stamp {number} has no variance but the collection writes variance.")
            planes.append(("VARIANCE", stamp.variance))
        result.append(planes)
    return result


def _write_stamps_astropy(stamps: Stamps, filename: str | os.PathLike | IO[bytes]) -> None:
    """`write_stamps` with astropy HDU objects (the reference writer)."""
    primary = fits.PrimaryHDU(header=_primary_header(stamps))
    # cfitsio's primary always has EXTEND = T; astropy adds it only when
    # there are extensions (so not for an empty collection).
    primary.header.set("EXTEND", True, after="NAXIS")
    hdus: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU] = [primary]
    for number, (stamp, planes) in enumerate(zip(stamps, _stamp_planes(stamps)), start=1):
        for plane, data in planes:
            header = _plane_header(plane, number, stamp, stamps.mask_planes)
            hdus.append(fits.ImageHDU(data=data, header=header))
    fits.HDUList(hdus).writeto(filename, overwrite=True, output_verify="exception")


def _format_float(value: float) -> str:
    """Format a float as astropy does in a card (at most 20 characters)."""
    text = str(value).replace("e", "E")
    if len(text) > 20:
        exponent = text.find("E")
        if exponent < 0:
            text = text[:20]
        else:
            text = text[: 20 - (len(text) - exponent)] + text[exponent:]
    return text


def _value_text(value: Any) -> str | None:
    """Return the value field astropy writes for ``value`` (after
    `_header_value`), or `None` for what only astropy should format.
    """
    kind = type(value)
    if kind is bool:
        return "                   T" if value else "                   F"
    if kind is int:
        return f"{value:>20d}"
    if kind is float:
        if not math.isfinite(value):
            return None  # astropy refuses it.
        return f"{_format_float(value):>20}"
    if kind is str:
        if not value:
            return "''"
        # astropy refuses non-printable text, and takes "name: number"
        # strings for record-valued keyword cards.
        if not _PRINTABLE.match(value) or ": " in value:
            return None
        text = "'" + value.replace("'", "''").ljust(8) + "'"
        return f"{text:20}"
    if value is None:
        return ""
    return None


class _Cards:
    """Card images, formatted here or (memoised) by astropy."""

    def __init__(self) -> None:
        self._astropy: dict[tuple[str, type, str, str | None], str] = {}

    def card(self, key: str, value: Any, comment: str | None = None) -> str:
        """Image of the card ``(key, _header_value(value))`` as astropy
        writes it (one or more 80-character cards).
        """
        value = _header_value(value)
        if _STANDARD_KEY.match(key) and key not in ("END", "CONTINUE", "COMMENT", "HISTORY"):
            text = _value_text(value)
            if text is not None:
                image = f"{key:8}= {text}" if comment is None else f"{key:8}= {text} / {comment}"
                if len(image) <= _CARD:
                    return image.ljust(_CARD)
        # repr tells -0.0 from 0.0, which astropy writes differently.
        memo = (key, type(value), repr(value), comment)
        try:
            return self._astropy[memo]
        except KeyError:
            card = _astropy_card(key, value)
            if comment is not None:
                card.comment = comment
            card.verify("exception")
            image = self._astropy[memo] = str(card)
            return image


def _header_wcs(
    stamp: Stamp, scratch: dict[int, tuple[astropy.wcs.WCS, astropy.wcs.WCS]]
) -> astropy.wcs.WCS | None:
    """Return the WCS to write for a stamp.

    For a WCS not made yet from a shared parent (`Stamp.set_shifted_wcs`),
    one working copy of the parent per file takes the stamp's CRPIX,
    instead of a copy per stamp.
    """
    make = stamp.__dict__.get("_wcs_factory")
    if type(make) is functools.partial and make.func is _shifted_wcs and make.args[0].sip is None:
        parent, crpix = make.args
        entry = scratch.get(id(parent))
        if entry is None or entry[0] is not parent:
            entry = scratch[id(parent)] = (parent, parent.deepcopy())
        work = entry[1]
        work.wcs.crpix = crpix
        return work
    return stamp.wcs


def _header_bytes(cards: list[str]) -> bytes:
    text = "".join(cards) + _END_CARD
    return (text + " " * (-len(text) % _BLOCK)).encode("ascii")


def _compressed_name(filename: Any) -> bool:
    if isinstance(filename, (str, os.PathLike)):
        return os.fspath(filename).lower().endswith(_COMPRESSED_SUFFIXES)
    return False


def _fast_plane_data(data: np.ndarray) -> tuple[int, np.dtype] | None:
    bitpix = _BITPIX.get((data.dtype.kind, data.dtype.itemsize))
    if bitpix is None or data.ndim != 2 or 0 in data.shape:
        return None
    return bitpix, data.dtype.newbyteorder(">")


def _write_stamps_fast(stamps: Stamps, filename: str | os.PathLike | IO[bytes]) -> bool:
    """Write as `_write_stamps_astropy` would; return `False` (having
    written nothing) for what that writer should do itself.
    """
    if _compressed_name(filename):
        return False
    cards = _Cards()
    primary = [
        cards.card("SIMPLE", True, "conforms to FITS standard"),
        cards.card("BITPIX", 8, "array data type"),
        cards.card("NAXIS", 0, "number of array dimensions"),
        cards.card("EXTEND", True),
    ]
    astropy_only = False
    for key, value in stamps.metadata.items():
        _check_metadata_key(key)
        card = _astropy_card(key, value)  # Raises as the astropy writer does.
        card.verify("exception")
        primary.append(str(card))
        bare = card.keyword.upper()
        astropy_only |= bare in _ASTROPY_STRUCTURE or bare.startswith("NAXIS")
    for keyword, (attribute, kind) in _STAMP_ARRAYS.items():
        primary += [cards.card(keyword, _array_value(stamp, attribute, kind)) for stamp in stamps]
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
    all_planes = _stamp_planes(stamps)
    if astropy_only or any(_fast_plane_data(data) is None for planes in all_planes for _, data in planes):
        return False
    mask_planes = stamps.mask_planes
    mask_cards = [cards.card(f"MP_{name}", int(mask_planes[name])) for name in sorted(mask_planes)]
    fixed = {
        "XTENSION": cards.card("XTENSION", "IMAGE", "Image extension"),
        "NAXIS": cards.card("NAXIS", 2, "number of array dimensions"),
        "PCOUNT": cards.card("PCOUNT", 0, "number of parameters"),
        "GCOUNT": cards.card("GCOUNT", 1, "number of groups"),
        "A-WCS head": [
            cards.card(key, value, comment)
            for (key, comment), value in zip(_A_WCS_COMMENTS[:4], ("LINEAR", "LINEAR", 1.0, 1.0))
        ],
        "A-WCS tail": [cards.card(key, "PIXEL", comment) for key, comment in _A_WCS_COMMENTS[6:]],
    }
    extnames = {plane: cards.card("EXTNAME", plane) for plane in _PLANES}
    scratch: dict[int, tuple[astropy.wcs.WCS, astropy.wcs.WCS]] = {}
    stamp_headers = []
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
            cards.card("CRVAL1A", x0, _A_WCS_COMMENTS[4][1]),
            cards.card("CRVAL2A", y0, _A_WCS_COMMENTS[5][1]),
            *fixed["A-WCS tail"],
        ]
        headers = []
        for plane, data in planes:
            if data.shape != (height, width):
                return False  # astropy writes each plane's own shape.
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
            headers.append((_header_bytes(plane_cards), data, big_endian))
        stamp_headers.append(headers)

    def write(stream: IO[bytes]) -> None:
        stream.write(_header_bytes(primary))
        for headers in stamp_headers:
            for header, data, big_endian in headers:
                stream.write(header)
                pixels = np.ascontiguousarray(data, dtype=big_endian)
                stream.write(memoryview(pixels).cast("B"))
                stream.write(bytes(-pixels.nbytes % _BLOCK))

    if isinstance(filename, (str, os.PathLike)):
        with open(filename, "wb") as stream:
            write(stream)
    else:
        write(filename)
        flush = getattr(filename, "flush", None)
        if flush is not None:
            flush()
    return True


def write_stamps(stamps: Stamps, filename: str | os.PathLike | IO[bytes]) -> None:
    """Write stamps in the `lsst.meas.algorithms.Stamps` FITS layout.

    Parameters
    ----------
    stamps : `Stamps`
        The stamps.
    filename : `str`, `os.PathLike` or binary file object
        Where to write; an existing file is overwritten.

    Raises
    ------
    ValueError
        Raised if a metadata key collides with a layout keyword, or if
        masks are to be written but a stamp has none.
    TypeError
        Raised for a metadata value FITS cannot hold.

    Notes
    -----
    The cards and pixels are formatted here, byte for byte as astropy
    writes them; astropy writes the file itself only for what that fast
    path does not handle (compressed file names, unusual pixel types or
    metadata keywords with a structural meaning).
    """
    if not _write_stamps_fast(stamps, filename):
        _write_stamps_astropy(stamps, filename)


# ---------------------------------------------------------------------------
# Reading
#
# `_read_stamps_astropy` reads with astropy; it is the reference, and the
# fallback whenever the fast reader meets something it leaves to astropy
# (`_UnsupportedError`: compressed or scaled HDUs, unusual HDU types, a
# file that does not start like a FITS file).  The fast reader walks the
# file once, reading 2880-byte header blocks and parsing the cards itself
# (any card it is not sure about is parsed by astropy), seeks past the data
# it does not need and reads the pixels it needs straight into numpy arrays.


class _UnsupportedError(Exception):
    """Raised by the fast reader for what only astropy reads."""


def _read_value(value: Any) -> Any:
    if isinstance(value, str) and value.strip() in _NON_FINITE:
        return _NON_FINITE[value.strip()]
    if isinstance(value, fits.card.Undefined):
        return None
    return value


_NUMBER = re.compile(r"[+-]?(?:\.\d+|\d+(?:\.\d*)?)(?:[DE][+-]?\d+)?")
_COMMENTARY = frozenset({"", "COMMENT", "HISTORY"})
_ASTROPY_COMMENTARY = _COMMENTARY | {"END"}


class _AstropyParseError(Exception):
    """A card the fast parser leaves to astropy."""


def _parse_value(text: str, standard: bool) -> Any:
    """Parse a card's value field as astropy does (FITS fixed and free
    format: strings, logicals, integers, reals, undefined); raise
    `_AstropyParseError` for anything else (complex numbers, non-standard
    number formats, record-valued keyword cards, odd quoting).
    """
    text = text.lstrip(" ")
    if not text or text[0] == "/":
        return fits.card.UNDEFINED
    first = text[0]
    if first == "'":
        end = text.find("'", 1)
        while end >= 0 and text[end + 1 : end + 2] == "'":
            if text[end + 2 : end + 3] in ("", " ", "/"):
                raise _AstropyParseError  # astropy may end the string there.
            end = text.find("'", end + 2)
        if end < 0:
            raise _AstropyParseError
        rest = text[end + 1 :].lstrip(" ")
        value = text[1:end]
        if (rest and rest[0] != "/") or (standard and ": " in value):
            raise _AstropyParseError
        return value.replace("''", "'").rstrip()
    if first in "TF":
        rest = text[1:].lstrip(" ")
        if rest and rest[0] != "/":
            raise _AstropyParseError
        return first == "T"
    match = _NUMBER.match(text)
    if match is None:
        raise _AstropyParseError
    rest = text[match.end() :].lstrip(" ")
    if rest and rest[0] != "/":
        raise _AstropyParseError
    number = match.group()
    if "." in number or "E" in number or "D" in number:
        return float(number.replace("D", "E"))
    return int(number)


def _parse_card(image: str) -> tuple[str, Any]:
    """Keyword and value of one logical card, as astropy reads them."""
    if len(image) == _CARD:
        head = image[:8]
        try:
            if head == "HIERARCH" and image[8] == " ":
                equals = image.find("=")
                keyword = image[9:equals].strip()
                if equals > 0 and keyword.upper() not in _ASTROPY_COMMENTARY:
                    return keyword, _parse_value(image[equals + 1 :], False)
            else:
                keyword = head.rstrip(" ")
                if keyword in _COMMENTARY:
                    return keyword, image[8:].rstrip()
                if image[8:10] == "= " and _STANDARD_KEY.match(keyword) and keyword != "CONTINUE":
                    return keyword, _parse_value(image[10:], True)
        except _AstropyParseError:
            pass
    card = fits.Card.fromstring(image)
    return card.keyword, card.value


def _memo_card(memo: dict[str, tuple[str, str, Any]], image: str) -> tuple[str, str, Any]:
    if image.startswith("END"):
        # astropy may take it for the END card (with a warning).
        raise _UnsupportedError("a card that looks like END")
    keyword, value = _parse_card(image)
    card = memo[image] = (keyword, keyword.upper(), value)
    return card


class _Header:
    """The cards of one header, in order: ``cards`` holds (keyword, upper
    case keyword, value) and ``images`` the card images.

    Like astropy's, ``header[key]`` is the first card of that keyword;
    lookups take upper case keywords.
    """

    __slots__ = ("cards", "images", "text", "_first")

    def __init__(self, cards: list[tuple[str, str, Any]], images: list[str], text: str) -> None:
        self.cards = cards
        self.images = images
        self.text = text
        last = len(cards) - 1
        self._first = dict(zip(reversed([card[1] for card in cards]), range(last, -1, -1)))

    @classmethod
    def parse(cls, text: str, memo: dict[str, tuple[str, str, Any]] | None = None) -> _Header:
        """Parse header text (whole cards, without END) as
        `astropy.io.fits.Header.fromstring` does.

        ``memo`` maps card images already parsed to their card (the
        headers of a Stamps file repeat most of their cards).
        """
        if memo is None:
            memo = {}
        images = [text[start : start + _CARD] for start in range(0, len(text), _CARD)]
        if "CONTINUE" in text:
            grouped: list[str] = []
            for image in images:
                if grouped and image.startswith("CONTINUE"):
                    grouped[-1] += image  # A long string (astropy groups them).
                else:
                    grouped.append(image)
            images = grouped
        get = memo.get
        cards = [get(image) or _memo_card(memo, image) for image in images]
        return cls(cards, images, text)

    @classmethod
    def from_astropy(cls, header: fits.Header) -> _Header:
        """Wrap an astropy header."""
        cards = [(card.keyword, card.keyword.upper(), card.value) for card in header.cards]
        return cls(cards, [], "")

    def __contains__(self, key: str) -> bool:
        return key in self._first

    def __getitem__(self, key: str) -> Any:
        return self.cards[self._first[key]][2]

    def get(self, key: str, default: Any = None) -> Any:
        index = self._first.get(key)
        return default if index is None else self.cards[index][2]

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((card[0], card[2]) for card in self.cards)

    def to_astropy(self) -> fits.Header:
        return fits.Header.fromstring(self.text)


def _arrays(header: _Header) -> dict[str, list[Any]]:
    """Values of each keyword, in order (repeated keywords are arrays;
    astropy's ``header[key]`` returns only the first).
    """
    arrays: dict[str, list[Any]] = {}
    for keyword, _, value in header.cards:
        values = arrays.get(keyword)
        if values is None:
            arrays[keyword] = [value]
        else:
            values.append(value)
    return arrays


class _PrimaryInfo:
    """What the primary header of a Stamps file says."""

    def __init__(self, header: _Header, name: str) -> None:
        missing = [key for key in ("N_STAMPS", "HAS_ARCHIVE") if key not in header]
        if missing:
            raise ValueError(
                f"{name} is not a Stamps file: primary header lacks {', '.join(missing)} "
                "(files from before 2021-05 are not supported, as in lsst.meas.algorithms)."
            )
        self.n_stamps = int(header["N_STAMPS"])
        self.has_mask = bool(header.get("HAS_MASK", True))
        self.has_variance = bool(header.get("HAS_VARIANCE", True))
        arrays = _arrays(header)

        def array(keyword: str) -> list[Any]:
            return [_read_value(value) for value in arrays.get(keyword, ())]

        self.ras = array("RA_DEG")
        self.decs = array("DEC_DEG")
        self.arrays = {keyword: array(keyword) for keyword in _STAMP_ARRAYS}
        for keyword, values in [("RA_DEG", self.ras), ("DEC_DEG", self.decs), *self.arrays.items()]:
            if values and len(values) != self.n_stamps:
                raise ValueError(
                    f"{name}: {len(values)} {keyword} values for N_STAMPS={self.n_stamps} stamps."
                )
        self.metadata: dict[str, Any] = {}
        self.provenance: dict[str, Any] = {}
        for keyword, value in header.items():
            if keyword in _LAYOUT_KEYS or keyword in _STRUCTURAL_KEYS:
                continue
            target = self.provenance if keyword.startswith(PROVENANCE_PREFIX) else self.metadata
            target[keyword] = _read_value(value)

    def stamp_fields(self, k: int) -> dict[str, Any]:
        """Per-stamp values from the primary header for stamp ``k``."""
        fields: dict[str, Any] = {
            "ra": float(self.ras[k]) if self.ras and self.ras[k] is not None else math.nan,
            "dec": float(self.decs[k]) if self.decs and self.decs[k] is not None else math.nan,
        }
        for keyword, (attribute, kind) in _STAMP_ARRAYS.items():
            values = self.arrays[keyword]
            if not values or values[k] is None:
                continue
            if attribute in ("x0", "y0", "width", "height"):
                continue  # The pixel HDUs are the authority for the bbox.
            fields[attribute] = (values[k] or None) if kind is str else kind(values[k])
        return fields

    def index_rows(self) -> list[tuple]:
        rows = []
        for k in range(self.n_stamps):
            fields = self.stamp_fields(k)
            bbox = [
                int(self.arrays[key][k]) if self.arrays[key] else -1
                for key in ("BBOX_X0", "BBOX_Y0", "BBOX_W", "BBOX_H")
            ]
            rows.append(
                (
                    fields.get("object_id"),
                    fields["ra"],
                    fields["dec"],
                    *bbox,
                    fields.get("coverage", math.nan),
                    fields.get("edge_distance", math.nan),
                )
            )
        return rows


def _xy0(header: _Header) -> tuple[int, int]:
    """Parent origin from afw's A-WCS (afw: (0, 0) unless CRPIX?A == 1)."""
    if header.get("CRPIX1A") == 1 and header.get("CRPIX2A") == 1 and "CRVAL1A" in header:
        return round(header["CRVAL1A"]), round(header["CRVAL2A"])
    return 0, 0


def _name(source: Any) -> str:
    return str(getattr(source, "name", source))


def _mask_planes(header: _Header) -> dict[str, int]:
    return {key[3:]: int(value) for key, value in header.items() if key.startswith("MP_")}


# -- The astropy reader ----------------------------------------------------


def _open(source: str | os.PathLike | IO[bytes]) -> fits.HDUList:
    return fits.open(source, lazy_load_hdus=True, memmap=False, mode="readonly")


def _read_stamps_index_astropy(source: str | os.PathLike | IO[bytes], name: str) -> _PrimaryInfo:
    with _open(source) as hdul:
        return _PrimaryInfo(_Header.from_astropy(hdul[0].header), name)


def _read_plane(hdu: fits.ImageHDU, extname: str) -> np.ndarray:
    data = hdu.data
    if data is None:
        raise ValueError(f"{extname} HDU {hdu.header.get('EXTVER')} has no data.")
    return np.asarray(data, dtype=np.int32 if extname == "MASK" else np.float32)


def _read_stamps_astropy(
    source: str | os.PathLike | IO[bytes],
    indices: Sequence[int] | None,
    object_ids: Sequence[str] | None,
    name: str,
    use_variance: bool = True,
) -> Stamps:
    """`read_stamps` with astropy alone (the reference reader)."""
    with _open(source) as hdul:
        info = _PrimaryInfo(_Header.from_astropy(hdul[0].header), name)
        selected = _select(info, indices, object_ids, name)
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
            if extname not in _PLANES:
                raise ValueError(f"{name}: unknown extension type {extname!r} in HDU {hdu_index}.")
            number = int(header.get("EXTVER", 1))
            seen_numbers.add(number)
            if extname == "MASK" and mask_planes is None:
                mask_planes = _mask_planes(_Header.from_astropy(header))
            if number not in needed or (extname == "VARIANCE" and not with_variance):
                continue
            group = parts.setdefault(number, {})
            group[extname] = _read_plane(hdu, extname)
            if extname == "IMAGE":
                wrapped = _Header.from_astropy(header)
                group["xy0"] = _xy0(wrapped)
                group["wcs"] = _celestial_wcs(header) if _is_celestial(wrapped) else None
            if sum(plane in group for plane in _PLANES) == planes_per_stamp:
                complete += 1
        if not subset and len(seen_numbers) != info.n_stamps:
            raise ValueError(f"{name}: found {len(seen_numbers)} stamps but N_STAMPS is {info.n_stamps}.")
    return _assemble(info, selected, parts, mask_planes, name, with_variance)


def _assemble(
    info: _PrimaryInfo,
    selected: list[int],
    parts: dict[int, dict[str, Any]],
    mask_planes: dict[str, int] | None,
    name: str,
    with_variance: bool,
) -> Stamps:
    stamps = []
    handed_out: set[int] = set()
    for k in selected:
        group = parts.get(k + 1)
        if group is None or "IMAGE" not in group:
            raise ValueError(f"{name}: no IMAGE HDU for stamp {k + 1} of {info.n_stamps}.")
        x0, y0 = group["xy0"]
        wcs = group["wcs"]
        if isinstance(wcs, astropy.wcs.WCS):
            if id(wcs) in handed_out:  # The same stamp selected twice.
                wcs = wcs.deepcopy()
            handed_out.add(id(wcs))
        stamp = Stamp(
            image=group["IMAGE"],
            mask=group.get("MASK"),
            variance=group.get("VARIANCE"),
            x0=x0,
            y0=y0,
            wcs=wcs if not callable(wcs) else None,
            **info.stamp_fields(k),
        )
        if callable(wcs):
            _set_wcs_factory(stamp, wcs)
        stamps.append(stamp)
    result = Stamps(
        stamps,
        metadata=info.metadata,
        mask_planes=mask_planes if mask_planes is not None else DEFAULT_MASK_PLANES,
        use_mask=info.has_mask,
        use_variance=with_variance,
    )
    result.provenance = info.provenance
    return result


def _select(
    info: _PrimaryInfo, indices: Sequence[int] | None, object_ids: Sequence[str] | None, name: str
) -> list[int]:
    if indices is not None and object_ids is not None:
        raise ValueError("Give either indices or object_ids, not both.")
    if object_ids is not None:
        if isinstance(object_ids, str):
            object_ids = [object_ids]
        known = info.arrays["OBJ_ID"]
        position = {str(value): k for k, value in enumerate(known)}
        missing = [str(oid) for oid in object_ids if str(oid) not in position]
        if missing:
            raise ValueError(f"{name}: no stamps for object ids {missing}.")
        return [position[str(oid)] for oid in object_ids]
    if indices is not None:
        result = []
        for k in indices:
            k = int(k)
            if not 0 <= k < info.n_stamps:
                raise ValueError(f"{name}: stamp index {k} out of range for {info.n_stamps} stamps.")
            result.append(k)
        return result
    return list(range(info.n_stamps))


def _is_celestial(header: _Header) -> bool:
    ctype = str(header.get("CTYPE1", ""))
    return ctype.startswith("RA") or ctype.startswith("GLON") or ctype.startswith("ELON")


def _celestial_wcs(header: fits.Header) -> astropy.wcs.WCS:
    return astropy.wcs.WCS(header, naxis=2, key=" ")


# -- Per-stamp WCS ---------------------------------------------------------

# Keywords of a stamp's IMAGE header that do not concern its celestial WCS
# (key " "): the structure and afw's A-WCS.
_PLANE_KEYS = frozenset(
    {"XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "EXTVER", "EXTNAME", "BZERO", "BSCALE"}
    | {key for key, _ in _A_WCS_COMMENTS}
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


class _StampWcs:
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
    """

    def __init__(self, maxsize: int = 64) -> None:
        self._maxsize = maxsize
        self._families: dict[tuple[str, ...], astropy.wcs.WCS] = {}

    def clear(self) -> None:
        """Forget every family."""
        self._families.clear()

    def get(self, header: _Header) -> astropy.wcs.WCS | Callable[[], astropy.wcs.WCS] | None:
        """Return the celestial WCS of a stamp's IMAGE header (or, for a
        known family, a function that makes it), or `None`.
        """
        if not _is_celestial(header):
            return None
        family = self._family(header)
        if family is None:
            return _celestial_wcs(header.to_astropy())
        key, crpix = family
        base = self._families.get(key)
        if base is None:
            wcs = _celestial_wcs(header.to_astropy())
            if len(self._families) >= self._maxsize:
                self._families.clear()
            self._families[key] = wcs.deepcopy()
            return wcs
        return functools.partial(_shifted_wcs, base, crpix)

    @staticmethod
    def _family(header: _Header) -> tuple[tuple[str, ...], list[float]] | None:
        if len(header._first) != len(header.cards) or len(header.images) != len(header.cards):
            return None
        ctypes = (header.get("CTYPE1"), header.get("CTYPE2"))
        for ctype in ctypes:
            if not isinstance(ctype, str) or len(ctype) != 8 or ctype[5:] not in _ZENITHAL:
                return None
        key = []
        crpix = [None, None]
        for (keyword, _, value), image in zip(header.cards, header.images):
            if keyword in _WCS_FAMILY_KEYS or _PV_KEY.fullmatch(keyword):
                if len(image) != _CARD:
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


def _shifted_wcs(base: astropy.wcs.WCS, crpix: list[float]) -> astropy.wcs.WCS:
    wcs = base.deepcopy()
    wcs.wcs.crpix = crpix
    if wcs.sip is not None:  # SIP polynomials are about their own CRPIX.
        wcs.sip = astropy.wcs.Sip(wcs.sip.a, wcs.sip.b, wcs.sip.ap, wcs.sip.bp, crpix)
    wcs.wcs.set()
    return wcs


_STAMP_WCS = _StampWcs()


# -- The fast reader -------------------------------------------------------

_HEADER_TEXT = bytes(range(32, 127))
_END_CARD_BYTES = _END_CARD.encode("ascii")


class _Stream:
    """Sequential reads and skips on a binary file object."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._readinto = getattr(stream, "readinto", None)
        self._seekable = stream.seekable() if hasattr(stream, "seekable") else False
        self._memo: dict[str, tuple[str, str, Any]] = {}

    def read(self, size: int) -> bytes:
        chunks = []
        while size > 0:
            chunk = self._stream.read(size)
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    def readinto(self, buffer: memoryview) -> int:
        if self._readinto is None:
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        done = 0
        while done < len(buffer):
            n = self._readinto(buffer[done:])
            if not n:
                break
            done += n
        return done

    def skip(self, size: int) -> None:
        if size <= 0:
            return
        if self._seekable:
            self._stream.seek(size, io.SEEK_CUR)
        else:
            while size > 0:
                chunk = self._stream.read(min(size, 1 << 20))
                if not chunk:
                    break
                size -= len(chunk)

    def header(self) -> _Header | None:
        """Read and parse the next header; `None` at the end of the file."""
        blocks = []
        while True:
            block = self.read(_BLOCK)
            if not block and not blocks:
                return None
            if len(block) != _BLOCK or block.translate(None, _HEADER_TEXT):
                raise _UnsupportedError("truncated header or not header text")
            end = block.find(_END_CARD_BYTES)
            while end >= 0 and end % _CARD:
                end = block.find(_END_CARD_BYTES, end + 1)
            if end >= 0:
                blocks.append(block[:end])
                return _Header.parse(b"".join(blocks).decode("ascii"), self._memo)
            blocks.append(block)


def _data_size(header: _Header) -> int:
    """Bytes of data after a header, padding included."""
    try:
        bitpix = header["BITPIX"]
        naxis = header["NAXIS"]
        pcount = header.get("PCOUNT", 0)
        gcount = header.get("GCOUNT", 1)
        if not all(type(v) is int for v in (bitpix, naxis, pcount, gcount)):
            raise _UnsupportedError("non-integer structure keywords")
        if naxis == 0:
            return 0
        size = 1
        for axis in range(1, naxis + 1):
            length = header[f"NAXIS{axis}"]
            if type(length) is not int:
                raise _UnsupportedError("non-integer NAXISn")
            size *= length
    except KeyError as err:
        raise _UnsupportedError(f"missing {err}") from None
    size = abs(bitpix) // 8 * gcount * (pcount + size)
    return size + (-size % _BLOCK)


_PLANE_DTYPES = {-32: ">f4", 32: ">i4", -64: ">f8", 16: ">i2", 64: ">i8", 8: "u1"}


def _read_plane_fast(stream: _Stream, header: _Header, extname: str) -> np.ndarray:
    """Read the data of an image HDU whose header was just read."""
    bitpix = header.get("BITPIX")
    dtype = _PLANE_DTYPES.get(bitpix) if type(bitpix) is int else None
    if (
        dtype is None
        or header.get("NAXIS") != 2
        or header.get("PCOUNT", 0) != 0
        or header.get("GCOUNT", 1) != 1
        or header.get("BZERO", 0) != 0
        or header.get("BSCALE", 1) != 1
        or "BLANK" in header
        or (bitpix == 8 and "BZERO" in header)
    ):
        raise _UnsupportedError("scaled or unusual image HDU")
    width, height = header.get("NAXIS1"), header.get("NAXIS2")
    if type(width) is not int or type(height) is not int or width <= 0 or height <= 0:
        raise _UnsupportedError("unusual image size")
    data = np.empty((height, width), dtype=dtype)
    if stream.readinto(memoryview(data).cast("B")) != data.nbytes:
        raise _UnsupportedError("truncated data")
    stream.skip(-data.nbytes % _BLOCK)
    target = np.int32 if extname == "MASK" else np.float32
    if data.dtype.itemsize == 4 and data.dtype.kind == np.dtype(target).kind:
        data.byteswap(inplace=True)
        return data.view(np.dtype(target))
    return data.astype(target)


def _read_stamps_fast(
    stream: _Stream,
    indices: Sequence[int] | None,
    object_ids: Sequence[str] | None,
    name: str,
    use_variance: bool = True,
) -> Stamps:
    """Read as `_read_stamps_astropy` does; raise `_UnsupportedError` for
    what only that reader reads.
    """
    primary = _read_primary(stream)
    info = _PrimaryInfo(primary, name)
    selected = _select(info, indices, object_ids, name)
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
            stream.skip(_data_size(header))
            continue  # Archive tables (Persistables): not read without afw.
        if xtension != "IMAGE":
            raise _UnsupportedError(f"HDU {hdu_index} is not an image or a table")
        extname = str(header.get("EXTNAME", "")).strip().upper()
        if extname not in _PLANES:
            raise ValueError(f"{name}: unknown extension type {extname!r} in HDU {hdu_index}.")
        number = int(header.get("EXTVER", 1))
        seen_numbers.add(number)
        if extname == "MASK" and mask_planes is None:
            mask_planes = _mask_planes(header)
        if number not in needed or (extname == "VARIANCE" and not with_variance):
            stream.skip(_data_size(header))
            continue
        group = parts.setdefault(number, {})
        group[extname] = _read_plane_fast(stream, header, extname)
        if extname == "IMAGE":
            group["xy0"] = _xy0(header)
            group["wcs"] = _STAMP_WCS.get(header)
        if sum(plane in group for plane in _PLANES) == planes_per_stamp:
            complete += 1
    if not subset and len(seen_numbers) != info.n_stamps:
        raise ValueError(f"{name}: found {len(seen_numbers)} stamps but N_STAMPS is {info.n_stamps}.")
    return _assemble(info, selected, parts, mask_planes, name, with_variance)


def _read_primary(stream: _Stream) -> _Header:
    header = stream.header()
    if header is None or not header.text.startswith("SIMPLE  =") or header.cards[0][2] is not True:
        raise _UnsupportedError("not a FITS file")
    if "GROUPS" in header:
        raise _UnsupportedError("random groups")
    stream.skip(_data_size(header))
    return header


def _fast_or_astropy(source: str | os.PathLike | IO[bytes], fast: Any, slow: Any) -> Any:
    """Run ``fast(stream)``; on `_UnsupportedError`, ``slow(source)`` from the
    start.  The file is closed at the end (as astropy closes a file object
    it is given).
    """
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as stream:
                return fast(_Stream(stream))
        except _UnsupportedError:
            return slow(source)
    seekable = source.seekable() if hasattr(source, "seekable") else False
    readable = source if seekable else io.BytesIO(source.read())
    start = readable.tell()
    try:
        try:
            return fast(_Stream(readable))
        except _UnsupportedError:
            readable.seek(start)
            return slow(readable)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def read_stamps_index(source: str | os.PathLike | IO[bytes]) -> Table:
    """Read the per-stamp metadata table from the primary header only.

    Parameters
    ----------
    source : `str`, `os.PathLike` or binary file object
        The Stamps file.

    Returns
    -------
    table : `astropy.table.Table`
        As `Stamps.index_table`; bbox columns are -1 for files that do not
        record them (files written by the Rubin stack).
    """
    name = _name(source)
    info = _fast_or_astropy(
        source,
        lambda stream: _PrimaryInfo(_read_primary(stream), name),
        lambda source: _read_stamps_index_astropy(source, name),
    )
    return _index_table(info.index_rows(), info.metadata)


def read_stamps(
    source: str | os.PathLike | IO[bytes],
    *,
    indices: Sequence[int] | None = None,
    object_ids: Sequence[str] | None = None,
    use_variance: bool = True,
) -> Stamps:
    """Read stamps from a file in the `lsst.meas.algorithms.Stamps` layout.

    Parameters
    ----------
    source : `str`, `os.PathLike` or binary file object
        The Stamps file.
    indices : `~collections.abc.Sequence` [`int`], optional
        Read only these stamps (0-based, in the order given).
    object_ids : `~collections.abc.Sequence` [`str`], optional
        Read only the stamps of these catalog object ids (in the order
        given).  Cannot be combined with ``indices``.
    use_variance : `bool`, optional
        If `False`, the variance planes are skipped, not read: the stamps
        have no variance and ``use_variance`` is `False` (for readers that
        only need the image and mask, such as composeRgb).

    Returns
    -------
    stamps : `Stamps`
        The stamps.  Only the headers of the HDUs before the last selected
        stamp and the pixels of the selected stamps are read.

    Raises
    ------
    ValueError
        Raised if the file is not in the Stamps layout, has an unknown
        extension, disagrees with its ``N_STAMPS``, or a requested index or
        object id is not in it.

    Notes
    -----
    The file is read in one pass with the cards parsed here; astropy reads
    files this fast path leaves alone (compressed or scaled HDUs, unusual
    HDU types, gzip files).  Stamps whose WCS differs only in CRPIX share
    one ``astropy.wcs.WCS(header)`` construction (`_StampWcs`).
    """
    name = _name(source)
    return _fast_or_astropy(
        source,
        lambda stream: _read_stamps_fast(stream, indices, object_ids, name, use_variance),
        lambda source: _read_stamps_astropy(source, indices, object_ids, name, use_variance),
    )
