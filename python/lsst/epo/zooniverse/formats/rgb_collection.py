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

ZIP layout (DESIGN §4)::

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

import csv
import io
import json
import math
import re
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

import astropy.wcs
import numpy as np
from astropy.table import Table

from .png import (
    DEFAULT_COMPRESS_LEVEL,
    DEFAULT_MAX_DECODED_PIXELS,
    PngError,
    as_pil_image,
    decode_png,
    encode_png,
)
from .wcs_metadata import WCS_TEXT_KEY, wcs_from_header_string, wcs_to_header_string, wcs_to_xmp

INDEX_NAME = "index.csv"
"""Name of the index entry in the ZIP."""

FORMAT_NAME = "lsst.epo.zooniverse.rgb"
FORMAT_VERSION = 1

METADATA_POLICIES = ("full", "anonymised")
"""What goes into each PNG's metadata chunks.

``full``
    object id, RA/Dec, skymap/tract/patch, bands, coverage, stretch, the FITS
    WCS as text and as AVM/XMP tags, software version.
``anonymised``
    bands, stretch and software version only: no identifier, coordinate or
    WCS (Rubin's "anonymized" data products; the PNG may become public).
The ``index.csv`` inside the ZIP always holds everything: the ZIP itself
stays in the Butler and is never published.
"""

STANDARD_COLUMNS: dict[str, tuple[str, Any]] = {
    "object_id": ("str", ""),
    "ra": ("float", math.nan),
    "dec": ("float", math.nan),
    "skymap": ("str", ""),
    "tract": ("int", -1),
    "patch": ("int", -1),
    "bands": ("str", ""),
    "coverage": ("float", math.nan),
    "stretch": ("str", ""),
}
"""Index columns every collection has: name -> (type, default)."""

_FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_ENTRY_MODE = (stat.S_IFREG | 0o644) << 16
_MAX_NAME_STEM = 100
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")
FRAME_BAND_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,16}")
"""What a band name of a frame may be (it becomes part of an entry name)."""
FRAMES_COLUMN = "frames"
"""The ``index.csv`` column listing a picture's band frames."""
_TEXT_FOR_POLICY = {
    "full": ("object_id", "ra", "dec", "skymap", "tract", "patch", "bands", "coverage", "stretch"),
    "anonymised": ("bands", "stretch"),
}


class RgbCollectionError(ValueError):
    """Raised when a ZIP is not a valid RGB collection (unsafe or
    duplicate entry names, missing or inconsistent index, bad PNG).
    """


def normalize_metadata_policy(policy: str) -> str:
    """Return the canonical name of a metadata policy.

    Parameters
    ----------
    policy : `str`
        ``full``, ``anonymised`` or ``anonymized``.

    Returns
    -------
    policy : `str`
        ``full`` or ``anonymised``.

    Raises
    ------
    ValueError
        Raised for any other value.
    """
    canonical = {"anonymized": "anonymised"}.get(str(policy).lower(), str(policy).lower())
    if canonical not in METADATA_POLICIES:
        raise ValueError(f"Unknown metadata policy {policy!r}; expected one of {METADATA_POLICIES}.")
    return canonical


def _stricter_policy(*policies: str | None) -> str:
    chosen = [normalize_metadata_policy(p) for p in policies if p is not None]
    return "anonymised" if "anonymised" in chosen else "full"


def sanitize_entry_names(object_ids: Iterable[str]) -> list[str]:
    """Make safe, unique PNG entry names from object ids.

    Parameters
    ----------
    object_ids : `~collections.abc.Iterable` [`str`]
        The ids, in collection order.

    Returns
    -------
    names : `list` [`str`]
        ``<id>.png`` where the id keeps only ``A-Z a-z 0-9 . _ + -`` (other
        runs become ``_``; no leading dot; at most 100 characters), made
        unique (also ignoring case, for case-insensitive file systems) by
        appending ``~2``, ``~3``, ... in order of appearance.
    """
    names: list[str] = []
    taken: set[str] = {INDEX_NAME}
    for object_id in object_ids:
        stem = _UNSAFE_NAME_CHARS.sub("_", str(object_id)).lstrip(".")[:_MAX_NAME_STEM] or "object"
        candidate, n = stem, 1
        while f"{candidate}.png".lower() in taken:
            n += 1
            candidate = f"{stem}~{n}"
        taken.add(f"{candidate}.png".lower())
        names.append(f"{candidate}.png")
    return names


def frame_entry_names(
    files: Sequence[str], bands: Sequence[Sequence[str] | None]
) -> list[dict[str, str] | None]:
    """Make the entry names of the band frames of a collection.

    Parameters
    ----------
    files : `~collections.abc.Sequence` [`str`]
        The entry names of the RGB pictures (``<stem>.png``, unique), in
        collection order.
    bands : `~collections.abc.Sequence` [`list` [`str`] or `None`]
        The bands of each picture's frames, in frame order (`None`: no
        frames).

    Returns
    -------
    names : `list` [`dict` [`str`, `str`] or `None`]
        Band -> entry name for each picture: ``<stem>+<band>.png``, with
        ``<stem>`` shortened so that ``<stem>+<band>`` keeps within 100
        characters, made unique against ``index.csv``, every picture and
        every earlier frame (also ignoring case) by appending ``~2``,
        ``~3``, ... before ``.png`` (in collection then frame order; the
        suffix too keeps within the 100 characters).
    """
    taken = {INDEX_NAME.lower()} | {str(name).lower() for name in files}
    result: list[dict[str, str] | None] = []
    for file, picture_bands in zip(files, bands):
        if picture_bands is None:
            result.append(None)
            continue
        stem = str(file)[: -len(".png")] if str(file).endswith(".png") else str(file)
        names: dict[str, str] = {}
        for band in picture_bands:
            n, suffix = 1, ""
            while True:
                room = _MAX_NAME_STEM - len(band) - 1 - len(suffix)
                candidate = f"{stem[:room]}+{band}{suffix}.png"
                if candidate.lower() not in taken:
                    break
                n += 1
                suffix = f"~{n}"
            taken.add(candidate.lower())
            names[band] = candidate
        result.append(names)
    return result


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
                table[name] = np.full(len(table), default, dtype=_DTYPES[kind])
            else:
                table[name] = _coerce(table[name], kind, name)
        for name in table.colnames:
            if name not in STANDARD_COLUMNS and _kind(table[name]) is None:
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
        self._frames = _check_frames(frames, arrays)
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
        return self._png_text(k, _stricter_policy(self.metadata_policy, metadata_policy), band=band)

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
        for name in _TEXT_FOR_POLICY[policy]:
            text[name] = _format_value(row[name])
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
        policy = _stricter_policy(self.metadata_policy, metadata_policy)
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
        policy = _stricter_policy(self.metadata_policy, metadata_policy)
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


def _check_frames(
    frames: Sequence[Mapping[str, np.ndarray] | None] | None, images: Sequence[np.ndarray]
) -> list[dict[str, np.ndarray] | None]:
    """Validate the ``frames`` argument of `RgbCollection`; return one
    `None` or `dict` of read-only arrays per image.
    """
    if frames is None:
        return [None] * len(images)
    if isinstance(frames, (Mapping, str, bytes, np.ndarray)) or not isinstance(frames, Sequence):
        raise TypeError(
            f"frames must be None or a list with one entry per image, not {type(frames).__name__}."
        )
    if len(frames) != len(images):
        raise ValueError(f"{len(frames)} frame entries for {len(images)} images.")
    checked: list[dict[str, np.ndarray] | None] = []
    for k, picture_frames in enumerate(frames):
        if picture_frames is None or (isinstance(picture_frames, Mapping) and not picture_frames):
            checked.append(None)
            continue
        if not isinstance(picture_frames, Mapping):
            raise TypeError(
                f"frames[{k}] must be None or a dict band -> 2-D uint8 array, "
                f"not {type(picture_frames).__name__}."
            )
        expected = images[k].shape[:2]
        result: dict[str, np.ndarray] = {}
        for band, frame in picture_frames.items():
            if not isinstance(band, str) or not FRAME_BAND_PATTERN.fullmatch(band):
                raise ValueError(
                    f"frames[{k}]: band name {band!r} is not 1-16 characters from A-Z a-z 0-9 _ -."
                )
            if not isinstance(frame, np.ndarray):
                raise TypeError(
                    f"frames[{k}][{band!r}] must be a 2-D uint8 numpy array, not {type(frame).__name__}."
                )
            if frame.dtype != np.uint8:
                raise TypeError(f"frames[{k}][{band!r}] must have dtype uint8, not {frame.dtype}.")
            if frame.shape != expected:
                raise ValueError(
                    f"frames[{k}][{band!r}] has shape {frame.shape}; expected {expected}, "
                    "the height and width of its image."
                )
            array = np.array(frame, dtype=np.uint8, order="C", copy=True)
            array.flags.writeable = False
            result[band] = array
        checked.append(result)
    return checked


_DTYPES = {"str": str, "int": np.int64, "float": np.float64}


def _kind(column: Any) -> str | None:
    kind = np.asarray(column).dtype.kind
    return {"U": "str", "S": "str", "O": "str", "i": "int", "u": "int", "b": "int", "f": "float"}.get(kind)


def _coerce(column: Any, kind: str, name: str) -> np.ndarray:
    values = np.asarray(column)
    try:
        if kind == "str":
            # Bytes (e.g. string columns of FITS tables) are text, not
            # "b'...'".
            return np.array(
                [
                    "" if v is None else v.decode("utf-8") if isinstance(v, bytes) else str(v)
                    for v in values.tolist()
                ],
                dtype=str,
            )
        return values.astype(_DTYPES[kind])
    except (TypeError, ValueError) as err:  # UnicodeDecodeError is a ValueError.
        raise TypeError(f"Index column {name!r} cannot be converted to {kind}: {err}") from err


def _format_value(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (np.integer, np.bool_)):
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------------------
# Writing


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_DATE_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = _ENTRY_MODE
    info.create_system = 3
    return info


def _wcs_texts(collection: RgbCollection) -> list[str | None]:
    """`wcs_to_header_string` of each image's WCS (`None` without one)."""
    return [None if wcs is None else wcs_to_header_string(wcs) for wcs in collection.wcs]


def _index_csv(collection: RgbCollection, wcs_texts: Sequence[str | None] | None = None) -> bytes:
    table = collection.index
    if wcs_texts is None:
        wcs_texts = _wcs_texts(collection)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    frame_files = collection.frame_files
    # The frames column exists only when some image has frames, so that
    # collections without frames keep the layout they always had.
    frames_header = [] if frame_files is None else [FRAMES_COLUMN]
    writer.writerow(table.colnames + frames_header + ["wcs"])
    for k, (row, wcs_text) in enumerate(zip(table, wcs_texts)):
        frames_cell = []
        if frame_files is not None:
            names = frame_files[k] or {}
            frames_cell = [" ".join(f"{band}={entry}" for band, entry in names.items())]
        writer.writerow(
            [_format_value(row[name]) for name in table.colnames] + frames_cell + [wcs_text or ""]
        )
    return buffer.getvalue().encode("utf-8")


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
    policy = _stricter_policy(collection.metadata_policy, metadata_policy)
    table = collection.index
    description = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "metadata_policy": policy,
        "columns": {name: _kind(table[name]) for name in table.colnames},
    }
    # Each WCS text goes both into the index and into its PNG: made once.
    wcs_texts = _wcs_texts(collection)
    # (entry name, image number, band or None for the RGB picture).
    jobs: list[tuple[str, int, str | None]] = [(str(name), k, None) for k, name in enumerate(table["file"])]
    for k, names in enumerate(collection._frame_files):
        jobs += [(entry, k, band) for band, entry in (names or {}).items()]
    if len(jobs) > len(collection):
        seen: set[str] = {INDEX_NAME}
        for entry, _, _ in jobs:
            if entry.lower() in seen:
                raise RgbCollectionError(f"Entry name {entry!r} is used twice (ignoring case).")
            seen.add(entry.lower())
    jobs.sort(key=lambda job: job[0])
    # A picture's XMP is shared by its frames: made once.
    xmp_cache: dict[int, Any] = {}
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.comment = json.dumps(description, sort_keys=True).encode()
        archive.writestr(_zip_info(INDEX_NAME), _index_csv(collection, wcs_texts))
        for entry, k, band in jobs:
            xmp = None
            if collection._frames[k] is not None:
                if k not in xmp_cache:
                    xmp_cache[k] = collection._xmp(k, policy)
                xmp = xmp_cache[k]
            png = collection._encode(k, policy, compress_level, wcs_texts[k], band=band, xmp=xmp)
            # Force ZIP64 extra fields only when an entry needs them.
            archive.writestr(_zip_info(entry), png)


# ---------------------------------------------------------------------------
# Reading


def _check_entry_names(archive: zipfile.ZipFile, name: str) -> dict[str, zipfile.ZipInfo]:
    entries: dict[str, zipfile.ZipInfo] = {}
    seen_lower: set[str] = set()
    for info in archive.infolist():
        entry = info.filename
        if (
            entry.startswith(("/", "\\"))
            or re.match(r"^[A-Za-z]:", entry)
            or "\\" in entry
            or any(part in ("..", ".") for part in entry.split("/"))
        ):
            raise RgbCollectionError(f"{name}: unsafe entry name {entry!r} (absolute path or '..').")
        if "/" in entry or info.is_dir():
            raise RgbCollectionError(f"{name}: unexpected directory entry {entry!r}.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise RgbCollectionError(f"{name}: entry {entry!r} is a symbolic link.")
        if entry.lower() in seen_lower:
            raise RgbCollectionError(f"{name}: duplicate entry name {entry!r}.")
        seen_lower.add(entry.lower())
        if entry != INDEX_NAME and not entry.endswith(".png"):
            raise RgbCollectionError(f"{name}: entry {entry!r} is neither {INDEX_NAME} nor a .png file.")
        entries[entry] = info
    if INDEX_NAME not in entries:
        raise RgbCollectionError(f"{name}: no {INDEX_NAME} entry.")
    return entries


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bytes:
    # zipfile reports corrupt, encrypted or oddly compressed entries with its
    # own exceptions; report them as an invalid collection naming the entry.
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as err:
        raise RgbCollectionError(f"{name}:{info.filename}: cannot read ZIP entry ({err}).") from err


def _open_archive(source: str | IO[bytes], name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source, "r")
    except zipfile.BadZipFile as err:
        raise RgbCollectionError(f"{name}: not a ZIP file ({err}).") from err


def _read_index(archive: zipfile.ZipFile, entries: Mapping[str, zipfile.ZipInfo], name: str):
    try:
        description = json.loads(archive.comment.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        description = {}
    if not isinstance(description, dict):
        description = {}
    types = description.get("columns", {})
    if not isinstance(types, dict) or any(kind not in _DTYPES for kind in types.values()):
        raise RgbCollectionError(f"{name}: the archive comment has invalid column types {types!r}.")
    policy = description.get("metadata_policy", "full")
    try:
        policy = normalize_metadata_policy(policy)
    except ValueError as err:
        raise RgbCollectionError(f"{name}: {err}") from err
    try:
        text = _read_entry(archive, entries[INDEX_NAME], name).decode("utf-8")
    except UnicodeDecodeError as err:
        raise RgbCollectionError(f"{name}: {INDEX_NAME} is not UTF-8 text ({err}).") from err
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or rows[0][:1] != ["file"] or "object_id" not in rows[0] or rows[0][-1] != "wcs":
        raise RgbCollectionError(f"{name}: {INDEX_NAME} does not start with the expected header.")
    header, body = rows[0], rows[1:]
    if len(set(header)) != len(header):
        raise RgbCollectionError(f"{name}: {INDEX_NAME} header repeats a column name.")
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise RgbCollectionError(
                f"{name}: {INDEX_NAME} line {line} has {len(row)} fields, not {len(header)}."
            )
    columns = {}
    for j, column in enumerate(header[:-1]):
        if column == FRAMES_COLUMN:
            continue
        kind = STANDARD_COLUMNS.get(column, (types.get(column, "str"),))[0]
        values = [row[j] for row in body]
        try:
            columns[column] = np.array(
                [_DTYPES[kind](v) if kind != "str" else v for v in values], dtype=_DTYPES[kind]
            )
        except ValueError as err:
            raise RgbCollectionError(f"{name}: {INDEX_NAME} column {column!r} is not {kind}: {err}") from err
    table = Table(columns, names=[c for c in header[:-1] if c != FRAMES_COLUMN])
    wcs_text = [row[-1] for row in body]
    files = [str(f) for f in table["file"]]
    if len(set(files)) != len(files):
        raise RgbCollectionError(f"{name}: {INDEX_NAME} names the same file twice.")
    frames_text = None
    frames: list[list[tuple[str, str]] | None] = [None] * len(body)
    listed = set(files)
    if FRAMES_COLUMN in header:
        j = header.index(FRAMES_COLUMN)
        frames_text = [row[j] for row in body]
        for k, text in enumerate(frames_text):
            frames[k] = _parse_frames(text, files[k], listed, name) if text else None
    pngs = {entry for entry in entries if entry != INDEX_NAME}
    if pngs != listed:
        missing = sorted(listed - pngs)
        extra = sorted(pngs - listed)
        raise RgbCollectionError(
            f"{name}: {INDEX_NAME} and the PNG entries disagree "
            f"(missing: {missing[:5]}, unlisted: {extra[:5]})."
        )
    return table, wcs_text, policy, frames, frames_text


def _parse_frames(text: str, file: str, listed: set[str], name: str) -> list[tuple[str, str]]:
    """Parse one cell of the ``frames`` column (``<band>=<entry> ...``),
    adding its entries to ``listed`` (the entries named so far).
    """
    frames: list[tuple[str, str]] = []
    bands: set[str] = set()
    for token in text.split(" "):
        band, equals, entry = token.partition("=")
        problem = None
        if not equals or not FRAME_BAND_PATTERN.fullmatch(band) or not entry.endswith(".png") or "=" in entry:
            problem = f"has {token!r}, not <band>=<entry>.png"
        elif band in bands:
            problem = f"names band {band!r} twice"
        elif entry in listed:
            problem = f"names {entry!r}, which is a picture or another frame"
        if problem:
            raise RgbCollectionError(f"{name}: {INDEX_NAME}: the frames of {file!r} {problem}.")
        bands.add(band)
        listed.add(entry)
        frames.append((band, entry))
    return frames


def read_rgb_index(source: str | IO[bytes], *, name: str | None = None) -> Table:
    """Read only the index of an RGB collection ZIP; no PNG is decoded.

    Parameters
    ----------
    source : `str` or binary file object
        The ZIP.
    name : `str`, optional
        Name for error messages.

    Returns
    -------
    index : `astropy.table.Table`
        The index table, with the WCS header text in a ``wcs`` column and,
        when the ZIP has band frames, the ``frames`` column (``<band>=<entry>``
        pairs, empty for an image without frames) just before it.

    Raises
    ------
    RgbCollectionError
        Raised for an invalid archive or index.
    """
    name = name or str(source)
    with _open_archive(source, name) as archive:
        entries = _check_entry_names(archive, name)
        table, wcs_text, policy, _, frames_text = _read_index(archive, entries, name)
    if frames_text is not None:
        table[FRAMES_COLUMN] = np.array(frames_text, dtype=str) if frames_text else np.array([], dtype=str)
    table["wcs"] = np.array(wcs_text, dtype=str) if wcs_text else np.array([], dtype=str)
    table.meta["metadata_policy"] = policy
    return table


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
    with _open_archive(source, name) as archive:
        entries = _check_entry_names(archive, name)
        table, wcs_text, policy, frame_specs, _ = _read_index(archive, entries, name)
        rows = list(range(len(table)))
        if object_ids is not None:
            if isinstance(object_ids, str):
                object_ids = [object_ids]
            position: dict[str, int] = {}
            for k, oid in enumerate(table["object_id"]):
                position.setdefault(str(oid), k)
            missing = [str(oid) for oid in object_ids if str(oid) not in position]
            if missing:
                raise RgbCollectionError(f"{name}: no images for object ids {missing}.")
            counts = Counter(str(oid) for oid in object_ids)
            repeated = sorted(oid for oid, count in counts.items() if count > 1)
            if repeated:
                # Entry names must stay unique for the subset to be written.
                raise RgbCollectionError(f"{name}: object ids {repeated} requested more than once.")
            rows = [position[str(oid)] for oid in object_ids]
        images = []
        for k in rows:
            entry = str(table["file"][k])
            try:
                image = decode_png(
                    _read_entry(archive, entries[entry], name), name=f"{name}:{entry}", max_pixels=max_pixels
                )
            except PngError as err:
                raise RgbCollectionError(str(err)) from err
            if image.mode != "RGB":
                raise RgbCollectionError(f"{name}:{entry}: PNG has mode {image.mode!r}, not RGB.")
            images.append(np.asarray(image))
        frames: list[dict[str, np.ndarray] | None] = []
        for k in rows:
            if frame_specs[k] is None:
                frames.append(None)
                continue
            picture_frames = {}
            for band, entry in frame_specs[k]:
                try:
                    frame = decode_png(
                        _read_entry(archive, entries[entry], name),
                        name=f"{name}:{entry}",
                        max_pixels=max_pixels,
                    )
                except PngError as err:
                    raise RgbCollectionError(str(err)) from err
                if frame.mode != "L":
                    raise RgbCollectionError(
                        f"{name}:{entry}: band frame PNG has mode {frame.mode!r}, not L (8-bit grey)."
                    )
                picture_frames[band] = np.asarray(frame)
            frames.append(picture_frames)
    subset = table[rows]
    files = [str(f) for f in subset["file"]]
    subset.remove_column("file")
    wcs = []
    for k, entry in zip(rows, files):
        try:
            wcs.append(wcs_from_header_string(wcs_text[k]) if wcs_text[k] else None)
        except Exception as err:  # astropy raises many kinds for a bad header.
            raise RgbCollectionError(f"{name}: {INDEX_NAME} has an invalid WCS for {entry}: {err}") from err
    try:
        collection = RgbCollection(images, subset, wcs=wcs, metadata_policy=policy, frames=frames)
    except (TypeError, ValueError) as err:
        raise RgbCollectionError(f"{name}: {err}") from err
    # Keep the entry names of the ZIP (the constructor derives them from the
    # ids, which differ for a subset of duplicate or case-colliding ids).
    collection.index["file"] = np.array(files, dtype=str)
    collection._frame_files = [None if frame_specs[k] is None else dict(frame_specs[k]) for k in rows]
    return collection
