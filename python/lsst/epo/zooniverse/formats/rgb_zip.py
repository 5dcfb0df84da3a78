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

"""The ZIP container of an RGB collection: entries with fixed attributes,
safe entry names on read, and reading the index and the PNGs back.

The ZIP layout is described in `.rgb_collection`, which makes the
collection from what is read here.
"""

from __future__ import annotations

__all__ = [
    "RgbArchiveRead",
    "check_entry_names",
    "open_archive",
    "read_entry",
    "read_rgb_archive",
    "read_rgb_index",
    "write_stored_zip",
    "zip_info",
]

import dataclasses
import os
import re
import stat
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

import astropy.wcs
import numpy as np
from astropy.table import Table

from .png import DEFAULT_MAX_DECODED_PIXELS, PngError, decode_png
from .rgb_index import FRAMES_COLUMN, INDEX_NAME, RgbCollectionError, parse_description, parse_index
from .wcs_metadata import wcs_from_header_string

_FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)

_ENTRY_MODE = (stat.S_IFREG | 0o644) << 16


def zip_info(name: str) -> zipfile.ZipInfo:
    """Make the header of a stored entry with fixed time and attributes
    (identical inputs give identical ZIPs).

    Parameters
    ----------
    name : `str`
        The entry name.

    Returns
    -------
    info : `zipfile.ZipInfo`
        The entry header (``ZIP_STORED``, 1980-01-01, Unix mode 0644).
    """
    info = zipfile.ZipInfo(name, date_time=_FIXED_DATE_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = _ENTRY_MODE
    info.create_system = 3
    return info


_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
"""Local file header of a ZIP entry (before its name and extra field)."""

_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")
"""Central directory header of a ZIP entry (before its name and extra
field)."""

_ZIP64_VERSION = 45
"""Version needed to extract an entry or archive with ZIP64 records."""


def write_stored_zip(
    target: str | os.PathLike | IO[bytes], comment: bytes, entries: Iterable[tuple[str, bytes]]
) -> None:
    """Write a ZIP of stored entries with the fixed attributes of
    `zip_info`.

    Parameters
    ----------
    target : `str`, `os.PathLike` or binary file object
        Path or file object to write (from its current position).
    comment : `bytes`
        The archive comment.
    entries : `~collections.abc.Iterable` [`tuple` [`str`, `bytes`]]
        Entry name and content, in archive order (consumed while writing,
        so that only one entry's content needs to be held).

    Notes
    -----
    The bytes are those of `zipfile.ZipFile` (``ZIP_STORED``, ZIP64
    allowed) with the comment set and ``writestr(zip_info(name), data)``
    for each entry, including where ZIP64 records and fields are written,
    but with one header write per entry (`zipfile` writes each local
    header twice, seeking back for the CRC).  A target that cannot seek
    (where `zipfile` writes data descriptors instead) or a comment longer
    than `zipfile` keeps is written by `zipfile` itself.
    """
    if isinstance(target, (str, os.PathLike)):
        with open(target, "w+b") as stream:
            _write_stored_entries(stream, 0, comment, entries)
        return
    try:
        start = target.tell()
        target.seek(start)
    except (AttributeError, OSError):
        start = None
    if start is None or len(comment) > zipfile.ZIP_MAX_COMMENT:
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            archive.comment = comment
            for name, data in entries:
                archive.writestr(zip_info(name), data)
        return
    _write_stored_entries(target, start, comment, entries)
    target.flush()


def _write_stored_entries(
    stream: IO[bytes], start: int, comment: bytes, entries: Iterable[tuple[str, bytes]]
) -> None:
    """Write the entries, central directory and end records of
    `write_stored_zip` to a seekable stream positioned at ``start``.
    """
    # zipfile's limits are read when used, as zipfile reads them.
    zip64_limit = zipfile.ZIP64_LIMIT
    central = []
    offset = start
    for name, data in entries:
        info = zip_info(name)
        filename, flag_bits = (
            (info.filename.encode("ascii"), info.flag_bits)
            if info.filename.isascii()
            else (info.filename.encode("utf-8"), info.flag_bits | 0x800)
        )
        dostime, dosdate = _dos_time(info.date_time)
        size = len(data)
        crc = zlib.crc32(data)
        extra = info.extra
        local_size = size
        if size * 1.05 > zip64_limit:
            # zipfile's rule for a local ZIP64 field when the size is known.
            extra = extra + struct.pack("<HHQQ", 1, 16, size, size)
            local_size = 0xFFFFFFFF
            info.extract_version = max(_ZIP64_VERSION, info.extract_version)
            info.create_version = max(_ZIP64_VERSION, info.create_version)
        stream.write(
            _LOCAL_HEADER.pack(
                b"PK\003\004",
                info.extract_version,
                info.reserved,
                flag_bits,
                info.compress_type,
                dostime,
                dosdate,
                crc,
                local_size,
                local_size,
                len(filename),
                len(extra),
            )
            + filename
            + extra
        )
        stream.write(data)
        fields = []
        central_size = size
        if size > zip64_limit:
            fields += [size, size]
            central_size = 0xFFFFFFFF
        header_offset = offset
        if offset > zip64_limit:
            fields.append(offset)
            header_offset = 0xFFFFFFFF
        extra_data = info.extra
        min_version = 0
        if fields:
            extra_data = struct.pack("<HH" + "Q" * len(fields), 1, 8 * len(fields), *fields) + extra_data
            min_version = _ZIP64_VERSION
        central.append(
            _CENTRAL_HEADER.pack(
                b"PK\001\002",
                max(min_version, info.create_version),
                info.create_system,
                max(min_version, info.extract_version),
                info.reserved,
                flag_bits,
                info.compress_type,
                dostime,
                dosdate,
                crc,
                central_size,
                central_size,
                len(filename),
                len(extra_data),
                len(info.comment),
                0,
                info.internal_attr,
                info.external_attr,
                header_offset,
            )
            + filename
            + extra_data
            + info.comment
        )
        offset += _LOCAL_HEADER.size + len(filename) + len(extra) + size
    directory = b"".join(central)
    stream.write(directory)
    end = offset + len(directory)
    count, directory_size, directory_offset = len(central), len(directory), offset
    if count > zipfile.ZIP_FILECOUNT_LIMIT or directory_offset > zip64_limit or directory_size > zip64_limit:
        stream.write(
            struct.pack(
                "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, directory_size, directory_offset
            )
        )
        stream.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1))
        count = min(count, 0xFFFF)
        directory_size = min(directory_size, 0xFFFFFFFF)
        directory_offset = min(directory_offset, 0xFFFFFFFF)
    stream.write(
        struct.pack(
            "<4s4H2LH", b"PK\005\006", 0, 0, count, count, directory_size, directory_offset, len(comment)
        )
    )
    stream.write(comment)


def _dos_time(date_time: tuple[int, ...]) -> tuple[int, int]:
    """Return the MS-DOS time and date of a ZIP entry's ``date_time``."""
    dosdate = (date_time[0] - 1980) << 9 | date_time[1] << 5 | date_time[2]
    dostime = date_time[3] << 11 | date_time[4] << 5 | (date_time[5] // 2)
    return dostime, dosdate


def check_entry_names(archive: zipfile.ZipFile, name: str) -> dict[str, zipfile.ZipInfo]:
    """Check the entry names of a collection ZIP being read.

    Parameters
    ----------
    archive : `zipfile.ZipFile`
        The ZIP.
    name : `str`
        Its name, for messages.

    Returns
    -------
    entries : `dict` [`str`, `zipfile.ZipInfo`]
        Entry name to header.

    Raises
    ------
    RgbCollectionError
        Raised for an unsafe name (absolute, ``..``, directory, symbolic
        link), names equal ignoring case, an entry that is neither the
        index nor a ``.png``, or no index.
    """
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


def read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bytes:
    """Read an entry of a collection ZIP.

    Parameters
    ----------
    archive : `zipfile.ZipFile`
        The ZIP.
    info : `zipfile.ZipInfo`
        The entry.
    name : `str`
        Name of the ZIP, for messages.

    Returns
    -------
    data : `bytes`
        The entry's content.

    Raises
    ------
    RgbCollectionError
        Raised for a corrupt, encrypted or oddly compressed entry.
    """
    # zipfile reports corrupt, encrypted or oddly compressed entries with its
    # own exceptions; report them as an invalid collection naming the entry.
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as err:
        raise RgbCollectionError(f"{name}:{info.filename}: cannot read ZIP entry ({err}).") from err


def open_archive(source: str | IO[bytes], name: str) -> zipfile.ZipFile:
    """Open a collection ZIP for reading.

    Parameters
    ----------
    source : `str` or binary file object
        The ZIP.
    name : `str`
        Its name, for messages.

    Returns
    -------
    archive : `zipfile.ZipFile`
        The open ZIP.

    Raises
    ------
    RgbCollectionError
        Raised if it is not a ZIP file.
    """
    try:
        return zipfile.ZipFile(source, "r")
    except zipfile.BadZipFile as err:
        raise RgbCollectionError(f"{name}: not a ZIP file ({err}).") from err


def _read_index(
    archive: zipfile.ZipFile, entries: Mapping[str, zipfile.ZipInfo], name: str
) -> tuple[Table, list[str], str, list[list[tuple[str, str]] | None], list[str] | None]:
    """Read the archive comment and ``index.csv``: index table, WCS texts,
    policy, frames and the ``frames`` column's text.
    """
    types, policy = parse_description(archive.comment, name)
    data = read_entry(archive, entries[INDEX_NAME], name)
    table, wcs_text, frames, frames_text = parse_index(data, types, entries, name)
    return table, wcs_text, policy, frames, frames_text


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
    with open_archive(source, name) as archive:
        entries = check_entry_names(archive, name)
        table, wcs_text, policy, _, frames_text = _read_index(archive, entries, name)
    if frames_text is not None:
        table[FRAMES_COLUMN] = np.array(frames_text, dtype=str) if frames_text else np.array([], dtype=str)
    table["wcs"] = np.array(wcs_text, dtype=str) if wcs_text else np.array([], dtype=str)
    table.meta["metadata_policy"] = policy
    return table


@dataclasses.dataclass
class RgbArchiveRead:
    """What `read_rgb_archive` read: the arguments of
    `~.rgb_collection.RgbCollection` and the entry names of the ZIP.

    Attributes
    ----------
    images : `list` [`numpy.ndarray`]
        The RGB pictures.
    index : `astropy.table.Table`
        Their index rows, without ``file``.
    wcs : `list` [`astropy.wcs.WCS` or `None`]
        Their WCS.
    policy : `str`
        The collection's metadata policy.
    frames : `list` [`dict` [`str`, `numpy.ndarray`] or `None`]
        Their band frames.
    files : `list` [`str`]
        Entry names of the pictures.
    frame_files : `list` [`dict` [`str`, `str`] or `None`]
        Entry names of their band frames.
    """

    images: list[np.ndarray]
    index: Table
    wcs: list[astropy.wcs.WCS | None]
    policy: str
    frames: list[dict[str, np.ndarray] | None]
    files: list[str]
    frame_files: list[dict[str, str] | None]


def _select_rows(table: Table, object_ids: Sequence[str] | None, name: str) -> list[int]:
    """Return the index rows of the images asked for, in order."""
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
    return rows


def _decode_entry(
    archive: zipfile.ZipFile,
    entries: Mapping[str, zipfile.ZipInfo],
    entry: str,
    name: str,
    max_pixels: int | None,
) -> Any:
    """Decode a PNG entry (a `PIL.Image.Image`)."""
    try:
        return decode_png(
            read_entry(archive, entries[entry], name), name=f"{name}:{entry}", max_pixels=max_pixels
        )
    except PngError as err:
        raise RgbCollectionError(str(err)) from err


def read_rgb_archive(
    source: str | IO[bytes],
    *,
    object_ids: Sequence[str] | None,
    name: str,
    max_pixels: int | None = DEFAULT_MAX_DECODED_PIXELS,
) -> RgbArchiveRead:
    """Read the pictures, band frames and index rows of an RGB collection
    ZIP.

    Parameters
    ----------
    source : `str` or binary file object
        The ZIP.
    object_ids : `~collections.abc.Sequence` [`str`] or `None`
        Read only the images of these object ids, in this order.
    name : `str`
        Name for error messages.
    max_pixels : `int` or `None`, optional
        Refuse PNGs declaring more pixels than this.

    Returns
    -------
    read : `RgbArchiveRead`
        What was read.

    Raises
    ------
    RgbCollectionError
        Raised as `~.rgb_collection.read_rgb_collection` raises.
    """
    with open_archive(source, name) as archive:
        entries = check_entry_names(archive, name)
        table, wcs_text, policy, frame_specs, _ = _read_index(archive, entries, name)
        rows = _select_rows(table, object_ids, name)
        images = []
        for k in rows:
            entry = str(table["file"][k])
            image = _decode_entry(archive, entries, entry, name, max_pixels)
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
                frame = _decode_entry(archive, entries, entry, name, max_pixels)
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
    frame_files = [None if frame_specs[k] is None else dict(frame_specs[k]) for k in rows]
    return RgbArchiveRead(images, subset, wcs, policy, frames, files, frame_files)
