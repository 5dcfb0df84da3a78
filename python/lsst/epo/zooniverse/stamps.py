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
and written with astropy alone.

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
import itertools
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

import astropy.io.fits as fits
import astropy.wcs
import numpy as np
from astropy.table import Table

PROVENANCE_PREFIX = "LSST BUTLER"
"""Prefix of the Butler provenance cards (as written by obs_base)."""

STAMPCLS = "lsst.meas.algorithms.stamps.Stamps"
"""``STAMPCLS`` value that makes the Rubin stack read a file as `Stamps`."""

DEFAULT_MASK_PLANES: dict[str, int] = {
    "BAD": 0,
    "SAT": 1,
    "INTRP": 2,
    "CR": 3,
    "EDGE": 4,
    "DETECTED": 5,
    "DETECTED_NEGATIVE": 6,
    "SUSPECT": 7,
    "NO_DATA": 8,
    "VIGNETTED": 9,
    "STREAK": 10,
}
"""The default mask planes of `lsst.afw.image.Mask` and their bits."""

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
    if len(key) > 8 or " " in key:
        key = f"HIERARCH {key}"
    header.append(fits.Card(key, _header_value(value)), end=True)


def _primary_header(stamps: Stamps) -> fits.Header:
    header = fits.Header()
    for key, value in stamps.metadata.items():
        if key.upper() in _LAYOUT_KEYS or key.upper() in _STRUCTURAL_KEYS:
            raise ValueError(f"Stamps metadata key {key!r} is reserved by the Stamps layout.")
        _append(header, key, value)
    for keyword, (attribute, kind) in _STAMP_ARRAYS.items():
        for stamp in stamps:
            value = getattr(stamp, attribute)
            if kind is str:
                value = "" if value is None else value
            _append(header, keyword, value)
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


def _plane_header(plane: str, number: int, stamp: Stamp, mask_planes: Mapping[str, int]) -> fits.Header:
    header = fits.Header()
    header["EXTVER"] = number
    header["EXTNAME"] = plane
    if plane == "MASK":
        for name in sorted(mask_planes):
            _append(header, f"MP_{name}", int(mask_planes[name]))
    # afw's "A" WCS: the parent-frame origin of the stamp.
    header.append(("CTYPE1A", "LINEAR", "Type of projection"), end=True)
    header.append(("CTYPE2A", "LINEAR", "Type of projection"), end=True)
    header.append(("CRPIX1A", 1.0, "Column Pixel Coordinate of Reference"), end=True)
    header.append(("CRPIX2A", 1.0, "Row Pixel Coordinate of Reference"), end=True)
    header.append(("CRVAL1A", float(stamp.x0), "Column pixel of Reference Pixel"), end=True)
    header.append(("CRVAL2A", float(stamp.y0), "Row pixel of Reference Pixel"), end=True)
    header.append(("CUNIT1A", "PIXEL", "Column unit"), end=True)
    header.append(("CUNIT2A", "PIXEL", "Row unit"), end=True)
    if plane == "IMAGE" and stamp.wcs is not None:
        wcs_header = stamp.wcs.to_header(relax=True)
        # WCSAXES must precede every WCS keyword (the A-WCS above too), so a
        # late one breaks the FITS standard; it only repeats NAXIS = 2.
        wcs_header.remove("WCSAXES", ignore_missing=True)
        header.extend(wcs_header.cards, end=True)
    return header


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
    """
    primary = fits.PrimaryHDU(header=_primary_header(stamps))
    # cfitsio's primary always has EXTEND = T; astropy adds it only when
    # there are extensions (so not for an empty collection).
    primary.header.set("EXTEND", True, after="NAXIS")
    hdus: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU] = [primary]
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
        for plane, data in planes:
            hdus.append(fits.ImageHDU(data=data, header=_plane_header(plane, number, stamp, stamps.mask_planes)))
    fits.HDUList(hdus).writeto(filename, overwrite=True, output_verify="exception")


# ---------------------------------------------------------------------------
# Reading


def _read_value(value: Any) -> Any:
    if isinstance(value, str) and value.strip() in _NON_FINITE:
        return _NON_FINITE[value.strip()]
    if isinstance(value, fits.card.Undefined):
        return None
    return value


def _array(header: fits.Header, keyword: str) -> list[Any]:
    """Values of a repeated keyword, in order (astropy's ``header[key]``
    returns only the first).
    """
    return [_read_value(card.value) for card in header.cards if card.keyword == keyword]


class _PrimaryInfo:
    """What the primary header of a Stamps file says."""

    def __init__(self, header: fits.Header, name: str) -> None:
        missing = [key for key in ("N_STAMPS", "HAS_ARCHIVE") if key not in header]
        if missing:
            raise ValueError(
                f"{name} is not a Stamps file: primary header lacks {', '.join(missing)} "
                "(files from before 2021-05 are not supported, as in lsst.meas.algorithms)."
            )
        self.n_stamps = int(header["N_STAMPS"])
        self.has_mask = bool(header.get("HAS_MASK", True))
        self.has_variance = bool(header.get("HAS_VARIANCE", True))
        self.ras = _array(header, "RA_DEG")
        self.decs = _array(header, "DEC_DEG")
        self.arrays = {keyword: _array(header, keyword) for keyword in _STAMP_ARRAYS}
        for keyword, values in [("RA_DEG", self.ras), ("DEC_DEG", self.decs), *self.arrays.items()]:
            if values and len(values) != self.n_stamps:
                raise ValueError(
                    f"{name}: {len(values)} {keyword} values for N_STAMPS={self.n_stamps} stamps."
                )
        self.metadata: dict[str, Any] = {}
        self.provenance: dict[str, Any] = {}
        for card in header.cards:
            if card.keyword in _LAYOUT_KEYS or card.keyword in _STRUCTURAL_KEYS:
                continue
            target = self.provenance if card.keyword.startswith(PROVENANCE_PREFIX) else self.metadata
            target[card.keyword] = _read_value(card.value)

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


def _xy0(header: fits.Header) -> tuple[int, int]:
    """Parent origin from afw's A-WCS (afw: (0, 0) unless CRPIX?A == 1)."""
    if header.get("CRPIX1A") == 1 and header.get("CRPIX2A") == 1 and "CRVAL1A" in header:
        return round(header["CRVAL1A"]), round(header["CRVAL2A"])
    return 0, 0


def _open(source: str | os.PathLike | IO[bytes]) -> fits.HDUList:
    return fits.open(source, lazy_load_hdus=True, memmap=False, mode="readonly")


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
    with _open(source) as hdul:
        info = _PrimaryInfo(hdul[0].header, _name(source))
    return _index_table(info.index_rows(), info.metadata)


def _name(source: Any) -> str:
    return str(getattr(source, "name", source))


def read_stamps(
    source: str | os.PathLike | IO[bytes],
    *,
    indices: Sequence[int] | None = None,
    object_ids: Sequence[str] | None = None,
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
    """
    name = _name(source)
    with _open(source) as hdul:
        info = _PrimaryInfo(hdul[0].header, name)
        selected = _select(info, indices, object_ids, name)
        subset = indices is not None or object_ids is not None
        needed = {k + 1 for k in selected}
        planes_per_stamp = 1 + int(info.has_mask) + int(info.has_variance)
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
                mask_planes = {
                    card.keyword[3:]: int(card.value) for card in header.cards if card.keyword.startswith("MP_")
                }
            if number not in needed:
                continue
            group = parts.setdefault(number, {})
            group[extname] = _read_plane(hdu, extname)
            if extname == "IMAGE":
                group["xy0"] = _xy0(header)
                group["wcs"] = _celestial_wcs(header)
            if sum(plane in group for plane in _PLANES) == planes_per_stamp:
                complete += 1
        if not subset and len(seen_numbers) != info.n_stamps:
            raise ValueError(f"{name}: found {len(seen_numbers)} stamps but N_STAMPS is {info.n_stamps}.")
    stamps = []
    for k in selected:
        group = parts.get(k + 1)
        if group is None or "IMAGE" not in group:
            raise ValueError(f"{name}: no IMAGE HDU for stamp {k + 1} of {info.n_stamps}.")
        x0, y0 = group["xy0"]
        stamps.append(
            Stamp(
                image=group["IMAGE"],
                mask=group.get("MASK"),
                variance=group.get("VARIANCE"),
                x0=x0,
                y0=y0,
                wcs=group["wcs"],
                **info.stamp_fields(k),
            )
        )
    result = Stamps(
        stamps,
        metadata=info.metadata,
        mask_planes=mask_planes if mask_planes is not None else DEFAULT_MASK_PLANES,
        use_mask=info.has_mask,
        use_variance=info.has_variance,
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


def _read_plane(hdu: fits.ImageHDU, extname: str) -> np.ndarray:
    data = hdu.data
    if data is None:
        raise ValueError(f"{extname} HDU {hdu.header.get('EXTVER')} has no data.")
    return np.asarray(data, dtype=np.int32 if extname == "MASK" else np.float32)


def _celestial_wcs(header: fits.Header) -> astropy.wcs.WCS | None:
    ctype = str(header.get("CTYPE1", ""))
    if not (ctype.startswith("RA") or ctype.startswith("GLON") or ctype.startswith("ELON")):
        return None
    return astropy.wcs.WCS(header, naxis=2, key=" ")
