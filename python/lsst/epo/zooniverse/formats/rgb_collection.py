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
"""Collections of RGB images with per-image metadata (`zooniverse_rgb`),
stored as a ZIP of PNGs.

ZIP layout (README, "Data products and formats")::

    index.csv              one row per image: file, object_id, ra, dec,
                           skymap, tract, patch, bands, coverage, stretch,
                           ..., [frames,] wcs
    <object_id>.png        one RGB PNG per image (sanitised, unique names)
    <stem>+<band>.png      optional: one grey PNG per band of an image
                           (multi-frame subjects, see `RgbCollection`)

The ``frames`` column is only there when at least one image has band
frames: space-separated ``<band>=<entry>`` pairs in frame order (e.g.
``g=obj1+g.png r=obj1+r.png``), empty for an image without frames.  A frame
entry is named after its image's entry (``<stem>`` is that name without
``.png``), made unique like the image names (``~2``, ``~3``, ... before
``.png``); see `frame_entry_names`.

Entries are stored (``ZIP_STORED``: PNG data does not deflate further), in
a fixed order (``index.csv``, then the PNGs sorted by name) with fixed
timestamps and attributes, so identical inputs give byte-identical ZIPs.
ZIP64 records are written when the archive needs them.  The archive comment
holds a short JSON description (format version, metadata policy, column
types) so that a read gives back an equal collection.

This module holds the collection and its writer and reader; the index
(`.rgb_index`), the entry names (`.rgb_names`), the check of band frames
(`.rgb_frames`) and the ZIP container (`.rgb_zip`) have their own
modules, whose public names are re-exported here.
"""

from __future__ import annotations

__all__ = [
    "FRAMES_COLUMN",
    "FRAME_BAND_PATTERN",
    "INDEX_NAME",
    "METADATA_POLICIES",
    "STANDARD_COLUMNS",
    "RgbCollection",
    "RgbCollectionError",
    "frame_entry_names",
    "normalize_metadata_policy",
    "read_rgb_collection",
    "read_rgb_index",
    "sanitize_entry_names",
    "write_rgb_collection",
]

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

import astropy.wcs
import numpy as np
from astropy.table import Table

from .png import (
    DEFAULT_COMPRESS_LEVEL,
    DEFAULT_MAX_DECODED_PIXELS,
    as_pil_image,
    encode_png,
    encode_png_array,
    validate_image_array,
    xmp_chunk,
)
from .rgb_frames import check_band_frames
from .rgb_index import (
    COLUMN_DTYPES,
    FRAME_BAND_PATTERN,
    FRAMES_COLUMN,
    INDEX_NAME,
    METADATA_POLICIES,
    PNG_TEXT_COLUMNS,
    STANDARD_COLUMNS,
    PictureTextChunks,
    RgbCollectionError,
    coerce_column,
    column_kind,
    format_column,
    format_value,
    index_csv,
    normalize_metadata_policy,
    stricter_policy,
)
from .rgb_names import frame_entry_names, sanitize_entry_names
from .rgb_zip import read_rgb_archive, read_rgb_index, write_stored_zip
from .wcs_metadata import WCS_TEXT_KEY, wcs_to_header_string, wcs_to_xmp

FORMAT_NAME = "lsst.epo.zooniverse.rgb"
"""``format`` of the archive comment."""

FORMAT_VERSION = 1
"""``version`` of the archive comment."""


class RgbCollection:
    """RGB images of catalog objects and a table describing them.

    Parameters
    ----------
    images : `~collections.abc.Sequence` [`numpy.ndarray` or `PIL.Image.Image`]
        One picture per object: ``uint8`` ``(H, W, 3)`` arrays (or PIL RGB
        images) with row 0 at the top, north up and east left for a
        standard WCS.  Sizes may differ between images.
    index : `astropy.table.Table` or `~collections.abc.Mapping`
        One row per image.  ``object_id`` is required; the other
        `STANDARD_COLUMNS` are filled with defaults when absent; any other
        column (numbers or strings) is carried along.
    wcs : `~collections.abc.Sequence` [`astropy.wcs.WCS` or `None`], optional
        Celestial WCS of each picture, FITS pixel ``(1, 1)`` at the bottom
        left (see `lsst.epo.zooniverse.formats.wcs_metadata`).
    metadata_policy : `str`, optional
        What each PNG's metadata chunks may hold (`METADATA_POLICIES`).
    frames : `~collections.abc.Sequence` [`dict` or `None`], optional
        Band frames for multi-frame subjects (the RGB picture first, then
        one grey picture per band): `None`, or one entry per image, each
        `None` (no frames; an empty `dict` counts as `None`) or a `dict`
        band -> 2-D ``uint8`` array of the image's height and width, in
        the image's orientation (same WCS), in frame order.  Band names
        are 1-16 characters from ``A-Z a-z 0-9 _ -``.

    Raises
    ------
    TypeError, ValueError
        Raised for images that are not RGB ``uint8``, a table whose length
        differs from the number of images, a missing ``object_id`` column,
        a WCS that is not a 2-axis celestial `astropy.wcs.WCS`, an unknown
        policy, or frames that are not as described above.

    Notes
    -----
    The ``file``, ``frames`` and ``wcs`` columns of ``index.csv`` are
    derived from the images, frames and WCS: such columns of ``index`` are
    ignored.
    """

    def __init__(
        self,
        images: Sequence[Any],
        index: Table | Mapping[str, Sequence[Any]],
        *,
        wcs: Sequence[astropy.wcs.WCS | None] | None = None,
        metadata_policy: str = "full",
        frames: Sequence[Mapping[str, np.ndarray] | None] | None = None,
    ) -> None:
        arrays = []
        for k, image in enumerate(images):
            if isinstance(image, np.ndarray):
                # A read-only copy, as the pixels of a PIL image would be,
                # without making one.
                array = np.array(validate_image_array(image, what=f"RGB image {k}"), order="C", copy=True)
                array.flags.writeable = False
            else:
                array = np.asarray(as_pil_image(image, what=f"RGB image {k}"))
            if array.ndim != 3 or array.shape[2] != 3:
                raise ValueError(f"RGB image {k} must have 3 channels, not shape {array.shape}.")
            arrays.append(array)
        self._images = arrays
        table = Table(index, copy=True) if not isinstance(index, Table) else index.copy(copy_data=True)
        if "object_id" not in table.colnames:
            raise ValueError("The index of an RgbCollection needs an 'object_id' column.")
        if len(table) != len(arrays):
            raise ValueError(f"The index has {len(table)} rows for {len(arrays)} images.")
        for name in ("file", FRAMES_COLUMN, "wcs"):
            if name in table.colnames:
                table.remove_column(name)  # Derived here, never taken from the caller.
        for name, (kind, default) in STANDARD_COLUMNS.items():
            if name not in table.colnames:
                table[name] = np.full(len(table), default, dtype=COLUMN_DTYPES[kind])
            else:
                table[name] = coerce_column(table[name], kind, name)
        for name in table.colnames:
            if name not in STANDARD_COLUMNS and column_kind(table[name]) is None:
                raise TypeError(f"Index column {name!r} has unsupported dtype {table[name].dtype}.")
        order = list(STANDARD_COLUMNS) + [n for n in table.colnames if n not in STANDARD_COLUMNS]
        table = table[order]
        table.add_column(sanitize_entry_names(table["object_id"]), name="file", index=0)
        table.meta.clear()
        self._index = table
        if wcs is None:
            wcs = [None] * len(arrays)
        if len(wcs) != len(arrays):
            raise ValueError(f"{len(wcs)} WCS for {len(arrays)} images.")
        for k, image_wcs in enumerate(wcs):
            # Checked here so that a bad WCS fails now, not inside a put.
            if image_wcs is None:
                continue
            if not isinstance(image_wcs, astropy.wcs.WCS):
                kind = type(image_wcs).__name__
                raise TypeError(f"WCS {k} must be an astropy.wcs.WCS or None, not {kind}.")
            if image_wcs.naxis != 2 or not image_wcs.has_celestial:
                ctype = list(image_wcs.wcs.ctype)
                raise ValueError(f"WCS {k} must be a 2-axis celestial WCS, not ctype {ctype}.")
        self._wcs = list(wcs)
        self.metadata_policy = normalize_metadata_policy(metadata_policy)
        self._frames = check_band_frames(frames, arrays)
        self._frame_files = frame_entry_names(
            [str(f) for f in table["file"]], [None if f is None else list(f) for f in self._frames]
        )

    @property
    def images(self) -> list[np.ndarray]:
        """The pictures as ``uint8`` ``(H, W, 3)`` arrays (`list`)."""
        return self._images

    @property
    def index(self) -> Table:
        """Per-image metadata, with the ZIP entry name in ``file``
        (`astropy.table.Table`).
        """
        return self._index

    @property
    def wcs(self) -> list[astropy.wcs.WCS | None]:
        """Per-image WCS or `None` (`list`)."""
        return self._wcs

    @property
    def frames(self) -> list[dict[str, np.ndarray] | None] | None:
        """Band frames: `None` if no image has any, else one entry per
        image, `None` or a `dict` band -> grey ``uint8`` ``(H, W)`` array
        (read-only), in frame order.
        """
        if all(f is None for f in self._frames):
            return None
        return list(self._frames)

    @property
    def frame_files(self) -> list[dict[str, str] | None] | None:
        """ZIP entry names of the band frames, shaped like `frames`
        (`None` if no image has frames).
        """
        if all(f is None for f in self._frame_files):
            return None
        return [None if f is None else dict(f) for f in self._frame_files]

    def __len__(self) -> int:
        return len(self._images)

    def __repr__(self) -> str:
        return f"RgbCollection(<{len(self)} images>, metadata_policy={self.metadata_policy!r})"

    def png_text(
        self, k: int, *, metadata_policy: str | None = None, band: str | None = None
    ) -> dict[str, str]:
        """Return the PNG text chunks written for image ``k`` or one of its
        band frames.

        Parameters
        ----------
        k : `int`
            Image number.
        metadata_policy : `str`, optional
            Policy to apply on top of the collection's own; the stricter of
            the two wins.
        band : `str`, optional
            A band of the image's frames: the frame's chunks, which are the
            image's plus ``band`` (after ``bands``).

        Returns
        -------
        text : `dict` [`str`, `str`]
            Keyword to text, in the order written.
        """
        if band is not None:
            self._frame(k, band)
        return self._png_text(k, stricter_policy(self.metadata_policy, metadata_policy), band=band)

    def _frame(self, k: int, band: str) -> np.ndarray:
        frames = self._frames[k]
        if frames is None or band not in frames:
            raise KeyError(f"Image {k} has no {band!r} frame.")
        return frames[band]

    def _png_text(
        self, k: int, policy: str, wcs_text: str | None = None, band: str | None = None
    ) -> dict[str, str]:
        from .. import __version__

        row = self._index[k]
        text = {}
        for name in PNG_TEXT_COLUMNS[policy]:
            text[name] = format_value(row[name])
            if name == "bands" and band is not None:
                text["band"] = band
        text["Software"] = f"lsst.epo.zooniverse {__version__}"
        if policy == "full" and self._wcs[k] is not None:
            text[WCS_TEXT_KEY] = wcs_text if wcs_text is not None else wcs_to_header_string(self._wcs[k])
        return text

    def encode(self, k: int, *, metadata_policy: str | None = None, compress_level: int = 1) -> bytes:
        """Encode image ``k`` as a PNG with its metadata chunks.

        Parameters
        ----------
        k : `int`
            Image number.
        metadata_policy : `str`, optional
            Policy to apply on top of the collection's own (stricter wins).
        compress_level : `int`, optional
            zlib level, 0-9.

        Returns
        -------
        png : `bytes`
            The PNG file.
        """
        policy = stricter_policy(self.metadata_policy, metadata_policy)
        return self._encode(k, policy, compress_level)

    def encode_frame(
        self, k: int, band: str, *, metadata_policy: str | None = None, compress_level: int = 1
    ) -> bytes:
        """Encode one band frame of image ``k`` as a grey PNG with the
        image's metadata chunks and its ``band``.

        Parameters
        ----------
        k : `int`
            Image number.
        band : `str`
            Band of the frame.
        metadata_policy : `str`, optional
            Policy to apply on top of the collection's own (stricter wins).
        compress_level : `int`, optional
            zlib level, 0-9.

        Returns
        -------
        png : `bytes`
            The PNG file (8-bit grey, colour type 0).

        Raises
        ------
        KeyError
            Raised if the image has no frame of that band.
        """
        self._frame(k, band)
        policy = stricter_policy(self.metadata_policy, metadata_policy)
        return self._encode(k, policy, compress_level, band=band)

    def _xmp(self, k: int, policy: str) -> bytes | None:
        if policy == "full" and self._wcs[k] is not None:
            return wcs_to_xmp(self._wcs[k], self._images[k].shape[:2])
        return None

    def _encode(
        self,
        k: int,
        policy: str,
        compress_level: int,
        wcs_text: str | None = None,
        *,
        band: str | None = None,
        xmp: Any = None,
    ) -> bytes:
        if xmp is None:
            xmp = self._xmp(k, policy)
        return encode_png(
            self._images[k] if band is None else self._frame(k, band),
            text=self._png_text(k, policy, wcs_text, band=band),
            xmp=xmp,
            compress_level=compress_level,
        )

    def equals(self, other: RgbCollection) -> bool:
        """Compare pixels, index, WCS and band frames with another
        collection.

        Parameters
        ----------
        other : `RgbCollection`
            Collection to compare with.

        Returns
        -------
        equal : `bool`
            Whether both hold the same images, metadata, WCS and frames
            (bands in the same order, same pixels, same entry names).
        """
        if len(self) != len(other) or self._index.colnames != other._index.colnames:
            return False
        for name in self._index.colnames:
            a, b = self._index[name], other._index[name]
            if a.dtype.kind == "f":
                if not np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True):
                    return False
            elif list(a) != list(b):
                return False
        same_wcs = all(
            (x is None and y is None)
            or (x is not None and y is not None and wcs_to_header_string(x) == wcs_to_header_string(y))
            for x, y in zip(self._wcs, other._wcs)
        )
        if not same_wcs or self._frame_files != other._frame_files:
            return False
        for mine, theirs in zip(self._frames, other._frames):
            if (mine is None) != (theirs is None):
                return False
            if mine is not None and (
                list(mine) != list(theirs) or not all(np.array_equal(mine[b], theirs[b]) for b in mine)
            ):
                return False
        return all(np.array_equal(a, b) for a, b in zip(self._images, other._images))


def _wcs_texts(collection: RgbCollection) -> list[str | None]:
    """`wcs_to_header_string` of each image's WCS (`None` without one)."""
    return [None if wcs is None else wcs_to_header_string(wcs) for wcs in collection.wcs]


def write_rgb_collection(
    collection: RgbCollection,
    target: str | IO[bytes],
    *,
    metadata_policy: str | None = None,
    compress_level: int = DEFAULT_COMPRESS_LEVEL,
) -> None:
    """Write a collection as a deterministic ZIP of PNGs.

    Parameters
    ----------
    collection : `RgbCollection`
        The images and their index.
    target : `str` or binary file object
        Path or seekable file object to write.
    metadata_policy : `str`, optional
        Policy applied on top of the collection's own; the stricter of the
        two decides what the PNGs carry.
    compress_level : `int`, optional
        zlib level of the PNGs, 0-9.

    Raises
    ------
    RgbCollectionError
        Raised if two entry names are equal, also ignoring case (only
        possible after editing the ``file`` column).

    Notes
    -----
    Band frames are grey PNGs with the text chunks of their image (under
    the same policy) plus ``band``, and the image's XMP; they are listed in
    the ``frames`` column of ``index.csv``.
    """
    from .. import __version__

    policy = stricter_policy(collection.metadata_policy, metadata_policy)
    table = collection.index
    description = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "metadata_policy": policy,
        "columns": {name: column_kind(table[name]) for name in table.colnames},
    }
    # Each WCS text and index value goes both into the index and into its
    # PNG: formatted once.
    wcs_texts = _wcs_texts(collection)
    columns = {name: format_column(table[name]) for name in table.colnames}
    texts = PictureTextChunks(policy, columns, f"lsst.epo.zooniverse {__version__}", wcs_texts, WCS_TEXT_KEY)
    # (entry name, image number, band or None for the RGB picture).
    jobs: list[tuple[str, int, str | None]] = [(name, k, None) for k, name in enumerate(columns["file"])]
    for k, names in enumerate(collection._frame_files):
        jobs += [(entry, k, band) for band, entry in (names or {}).items()]
    if len(jobs) > len(collection):
        seen: set[str] = {INDEX_NAME}
        for entry, _, _ in jobs:
            if entry.lower() in seen:
                raise RgbCollectionError(f"Entry name {entry!r} is used twice (ignoring case).")
            seen.add(entry.lower())
    jobs.sort(key=lambda job: job[0])
    if jobs and (not isinstance(compress_level, int) or not 0 <= compress_level <= 9):
        raise ValueError(f"PNG compress_level must be an integer from 0 to 9, not {compress_level!r}.")
    comment = json.dumps(description, sort_keys=True).encode()
    write_stored_zip(
        target, comment, _entries(collection, policy, compress_level, jobs, texts, wcs_texts, columns)
    )


def _entries(
    collection: RgbCollection,
    policy: str,
    compress_level: int,
    jobs: Sequence[tuple[str, int, str | None]],
    texts: PictureTextChunks,
    wcs_texts: Sequence[str | None],
    columns: Mapping[str, Sequence[str]],
) -> Iterator[tuple[str, bytes]]:
    """Yield the entries of `write_rgb_collection`'s ZIP: the index, then
    each job's PNG, encoded when asked for.
    """
    yield INDEX_NAME, index_csv(collection.index, collection.frame_files, wcs_texts, columns)
    # A picture's XMP chunk is shared by its frames: made once.
    xmp_cache: dict[int, list[bytes]] = {}
    for entry, k, band in jobs:
        xmp = xmp_cache.get(k)
        if xmp is None:
            packet = collection._xmp(k, policy)
            xmp = [] if packet is None else [xmp_chunk(packet)]
            if collection._frames[k] is not None:
                xmp_cache[k] = xmp
        image = collection._images[k] if band is None else collection._frame(k, band)
        chunks = texts.chunks(k, band) + xmp
        if isinstance(image, np.ndarray):
            yield entry, encode_png_array(validate_image_array(image), chunks, compress_level)
        else:  # Not the array the collection was made with.
            yield entry, collection._encode(k, policy, compress_level, wcs_texts[k], band=band)


def read_rgb_collection(
    source: str | IO[bytes],
    *,
    object_ids: Sequence[str] | None = None,
    name: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_DECODED_PIXELS,
) -> RgbCollection:
    """Read an RGB collection ZIP.

    Parameters
    ----------
    source : `str` or binary file object
        The ZIP.
    object_ids : `~collections.abc.Sequence` [`str`], optional
        Read only the images (and band frames) of these object ids, in
        this order (each id at most once).  The ``file`` column and
        `RgbCollection.frame_files` keep the entry names of the ZIP.
    name : `str`, optional
        Name for error messages.
    max_pixels : `int` or `None`, optional
        Refuse PNGs declaring more pixels than this (default
        `~.png.DEFAULT_MAX_DECODED_PIXELS`; `None`: no
        limit).

    Returns
    -------
    collection : `RgbCollection`
        The collection.

    Raises
    ------
    RgbCollectionError
        Raised for unsafe or duplicate entry names, a missing or
        inconsistent index (including its ``frames`` column), an entry
        that is not a valid RGB PNG, a band frame that is not an 8-bit grey
        PNG of its image's size, or an unknown or repeated object id.
    """
    name = name or str(source)
    read = read_rgb_archive(source, object_ids=object_ids, name=name, max_pixels=max_pixels)
    try:
        collection = RgbCollection(
            read.images, read.index, wcs=read.wcs, metadata_policy=read.policy, frames=read.frames
        )
    except (TypeError, ValueError) as err:
        raise RgbCollectionError(f"{name}: {err}") from err
    # Keep the entry names of the ZIP (the constructor derives them from the
    # ids, which differ for a subset of duplicate or case-colliding ids).
    collection.index["file"] = np.array(read.files, dtype=str)
    collection._frame_files = read.frame_files
    return collection
