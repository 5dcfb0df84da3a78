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

Files are written and read by `.stamps_fast`, which formats and parses
the cards itself (`.fits_cards`), byte for byte as astropy writes and
reads them; the astropy-only writer and reader of `.stamps_astropy` remain
as the reference (the tests compare the two) and as the fallback for what
the fast paths leave alone (compressed or scaled HDUs, gzip files, unusual
pixel types).  Both follow the rules of the layout in `.stamps_layout`;
this module holds the classes and the functions to call.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MASK_PLANES",
    "PROVENANCE_PREFIX",
    "STAMPCLS",
    "Stamp",
    "Stamps",
    "read_stamps",
    "read_stamps_index",
    "write_stamps",
]

import dataclasses
import functools
import io
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

import astropy.wcs
import numpy as np
from astropy.table import Table

from .fits_cards import UnsupportedError
from .fits_stream import FitsStream, read_primary_header
from .mask_planes import DEFAULT_MASK_PLANES
from .stamps_astropy import read_stamps_astropy, read_stamps_index_astropy, write_stamps_astropy
from .stamps_fast import read_stamps_fast, write_stamps_fast
from .stamps_layout import (
    PROVENANCE_PREFIX,
    STAMPCLS,
    PrimaryInfo,
    StampsRead,
    get_stamp_wcs,
    index_table,
    set_stamp_wcs,
    set_wcs_factory,
    shifted_wcs,
)


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
        set_wcs_factory(self, functools.partial(shifted_wcs, parent_wcs, crpix))

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


# The WCS of a stamp read from a file is made when first asked for (most
# readers, composeRgb included, need it for one band of each object only).
Stamp.wcs = property(  # type: ignore[assignment]
    get_stamp_wcs, set_stamp_wcs, doc="Celestial WCS of the stamp's pixel grid (`astropy.wcs.WCS` or `None`)."
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
        return index_table(
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
    if not write_stamps_fast(stamps, filename):
        write_stamps_astropy(stamps, filename)


def _name(source: Any) -> str:
    return str(getattr(source, "name", source))


def _assemble(read: StampsRead) -> Stamps:
    """Make the `Stamps` a reader found."""
    info = read.info
    stamps = []
    handed_out: set[int] = set()
    for k in read.selected:
        group = read.parts.get(k + 1)
        if group is None or "IMAGE" not in group:
            raise ValueError(f"{read.name}: no IMAGE HDU for stamp {k + 1} of {info.n_stamps}.")
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
            set_wcs_factory(stamp, wcs)
        stamps.append(stamp)
    result = Stamps(
        stamps,
        metadata=info.metadata,
        mask_planes=read.mask_planes if read.mask_planes is not None else DEFAULT_MASK_PLANES,
        use_mask=info.has_mask,
        use_variance=read.with_variance,
    )
    result.provenance = info.provenance
    return result


def _read_stamps_astropy(
    source: str | os.PathLike | IO[bytes],
    indices: Sequence[int] | None,
    object_ids: Sequence[str] | None,
    name: str,
    use_variance: bool = True,
) -> Stamps:
    """`read_stamps` with astropy alone (the reference reader of
    `.stamps_astropy`).
    """
    return _assemble(read_stamps_astropy(source, indices, object_ids, name, use_variance))


def _fast_or_astropy(source: str | os.PathLike | IO[bytes], fast: Any, slow: Any) -> Any:
    """Run ``fast(stream)``; on `UnsupportedError`, ``slow(source)`` from the
    start.  The file is closed at the end (as astropy closes a file object
    it is given).
    """
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as stream:
                return fast(FitsStream(stream))
        except UnsupportedError:
            return slow(source)
    seekable = source.seekable() if hasattr(source, "seekable") else False
    readable = source if seekable else io.BytesIO(source.read())
    start = readable.tell()
    try:
        try:
            return fast(FitsStream(readable))
        except UnsupportedError:
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
        lambda stream: PrimaryInfo(read_primary_header(stream), name),
        lambda source: read_stamps_index_astropy(source, name),
    )
    return index_table(info.index_rows(), info.metadata)


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
    one ``astropy.wcs.WCS(header)`` construction (`~.stamps_fast.StampWcs`).
    """
    name = _name(source)
    return _fast_or_astropy(
        source,
        lambda stream: _assemble(read_stamps_fast(stream, indices, object_ids, name, use_variance)),
        lambda source: _read_stamps_astropy(source, indices, object_ids, name, use_variance),
    )
