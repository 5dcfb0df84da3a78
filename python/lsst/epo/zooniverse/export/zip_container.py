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

"""Checks of an artifact's ZIP container.

Everything in a ZIP is treated as hostile: what its end records declare
is checked before `zipfile` parses anything (`open_archive`), then every
entry's name, type, flags, declared sizes and position
(`check_central_directory`), and each entry is inflated with a hard cap
whatever size it declares (`read_entry`).  Problems are added to an
`~lsst.epo.zooniverse.export.validation_results.ArtifactFindings`: each
rejects the whole artifact.
"""

from __future__ import annotations

__all__ = [
    "ENTRY_NAME_PATTERN",
    "InflatedTotals",
    "check_central_directory",
    "compression_ratio",
    "entry_name_problem",
    "open_archive",
    "read_entry",
]

import copy
import dataclasses
import math
import os
import re
import stat
import unicodedata
import zipfile
from typing import IO

from ..formats.rgb_index import INDEX_NAME
from .policy import DataRightsPolicy
from .validation_results import ArtifactFindings, show_name

ENTRY_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+~-]{0,127}")
"""What a ZIP entry name (and a published file name) may be: what
`~lsst.epo.zooniverse.formats.rgb_collection.sanitize_entry_names`
writes (``~`` is
its de-duplication suffix, ``_`` may lead); it must also be ``index.csv``
or end in ``.png``.
"""

_CENTRAL_DIRECTORY_BYTES_PER_ENTRY = 1024
_LOCAL_HEADER_SIZE = 30
_READ_MARGIN = 1 << 16  # More than one zipfile read step (4 kB).
_ARCHIVE_EXTENSIONS = (".zip", ".jar", ".gz", ".tgz", ".tar", ".bz2", ".tbz2", ".xz", ".txz", ".zst")
_ARCHIVE_EXTENSIONS += (".lz4", ".7z", ".rar", ".cab")
_SPECIAL_FILES = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


@dataclasses.dataclass
class InflatedTotals:
    """Bytes read so far from one artifact's entries."""

    inflated: int = 0
    """Bytes inflated (`int`)."""

    compressed: int = 0
    """Compressed bytes they came from (`int`)."""


def compression_ratio(size: int, compressed: int) -> float:
    """Return how many times bigger data are inflated.

    Parameters
    ----------
    size : `int`
        Inflated size.
    compressed : `int`
        Compressed size.

    Returns
    -------
    ratio : `float`
        ``size / compressed``; 0 for empty data, infinite for data inflated
        from nothing.
    """
    if size <= 0:
        return 0.0
    if compressed <= 0:
        return math.inf
    return size / compressed


def _describe_character(character: str) -> str:
    code = f"U+{ord(character):04X}"
    name = unicodedata.name(character, "")
    return f"{code} ({name})" if name else code


def entry_name_problem(name: str) -> str | None:
    """Say what is wrong with a ZIP entry name.

    Parameters
    ----------
    name : `str`
        Entry name, as in the ZIP (or a cutout's published name).

    Returns
    -------
    problem : `str` or `None`
        Words that complete "entry '<name>' ..." (``"is an absolute
        path"``); `None` when ``name`` is ``index.csv`` or a safe ``.png``
        name (`ENTRY_NAME_PATTERN`).
    """
    for character in name:
        if ord(character) < 32 or 127 <= ord(character) <= 159:
            return f"contains the control character {_describe_character(character)}"
    for character in name:
        if not character.isascii():
            return f"contains the non-ASCII character {_describe_character(character)}"
    if name.startswith(("/", "\\")):
        return "is an absolute path"
    if re.match(r"[A-Za-z]:", name):
        return "starts with a drive letter"
    if "\\" in name:
        return "contains a backslash"
    parts = name.split("/")
    if ".." in parts:
        return "has a '..' component (path traversal)"
    if name.endswith("/"):
        return "is a directory"
    if len(parts) > 1:
        return "is inside a directory (only top-level entries are allowed)"
    if name == INDEX_NAME:
        return None
    if not name.endswith(".png"):
        if name.lower().endswith(".png"):
            return "has an upper-case extension (must end in '.png')"
        return f"is neither {INDEX_NAME} nor a .png file"
    if not ENTRY_NAME_PATTERN.fullmatch(name):
        if len(name) > 128:
            return f"is {len(name)} characters long (at most 128)"
        if not re.match(r"[A-Za-z0-9_]", name):
            return "does not start with a letter, digit or underscore"
        bad = sorted(set(re.sub(r"[A-Za-z0-9._+~-]", "", name)))
        return f"contains characters outside [A-Za-z0-9._+~-]: {' '.join(map(repr, bad))}"
    return None


def open_archive(
    stream: IO[bytes], name: str, policy: DataRightsPolicy, findings: ArtifactFindings
) -> zipfile.ZipFile | None:
    """Open a ZIP after checking what its end records declare.

    Parameters
    ----------
    stream : `typing.IO` [`bytes`]
        The ZIP file, open for reading.
    name : `str`
        File name for messages.
    policy : `DataRightsPolicy`
        Limits on the number of entries.
    findings : `ArtifactFindings`
        Where problems are added.

    Returns
    -------
    archive : `zipfile.ZipFile` or `None`
        The open ZIP; `None` (with a finding) if it declares or has too
        many entries, an oversized central directory, or cannot be read.
    """
    declared = _end_of_central_directory(stream)
    if declared is not None:
        count, directory_size = declared
        if count > policy.max_entries:
            findings.add(
                "zip.too_many_entries",
                None,
                f"the ZIP declares {count} entries, more than the limit of {policy.max_entries}.",
            )
            return None
        allowed = max(count, 1) * _CENTRAL_DIRECTORY_BYTES_PER_ENTRY + 65536
        if directory_size > allowed:
            findings.add(
                "zip.not_zip",
                None,
                f"the ZIP's central directory is {directory_size} bytes for {count} entries "
                f"(more than {allowed}: oversized names, extra fields or comments).",
            )
            return None
    try:
        archive = zipfile.ZipFile(stream, "r")
    except Exception as err:  # zipfile raises many kinds on hostile input.
        findings.add("zip.not_zip", None, f"{name} is not a readable ZIP file ({err}).")
        return None
    count = len(archive.infolist())
    if count > policy.max_entries:
        archive.close()
        findings.add(
            "zip.too_many_entries",
            None,
            f"the ZIP has {count} entries, more than the limit of {policy.max_entries}.",
        )
        return None
    return archive


def check_central_directory(
    archive: zipfile.ZipFile,
    infos: list[zipfile.ZipInfo],
    policy: DataRightsPolicy,
    findings: ArtifactFindings,
) -> dict[str, zipfile.ZipInfo]:
    """Check every entry's name, type, flags and declared sizes, and that
    no two entries' data overlap, before any entry is read.

    Parameters
    ----------
    archive : `zipfile.ZipFile`
        The open ZIP.
    infos : `list` [`zipfile.ZipInfo`]
        Its entries, as listed in the central directory.
    policy : `DataRightsPolicy`
        Limits to apply.
    findings : `ArtifactFindings`
        Where problems are added.

    Returns
    -------
    entries : `dict` [`str`, `zipfile.ZipInfo`]
        The entries by name (the first of any repeated name).
    """
    # Long by its docstring and one flat pass of checks per entry.
    entries: dict[str, zipfile.ZipInfo] = {}
    by_folded_name: dict[str, str] = {}
    total_size = total_compressed = 0
    for info in infos:
        name = info.orig_filename
        shown = show_name(name)
        mode = info.external_attr >> 16
        problem = entry_name_problem(name)
        if problem is None and info.filename != name:
            problem = f"has a different name in a Unicode path extra field ('{show_name(info.filename)}')"
        if problem is None and (info.is_dir() or stat.S_ISDIR(mode) or info.external_attr & 0x10):
            problem = "is a directory"
        if problem is not None:
            if problem.startswith("is neither") and name.lower().endswith(_ARCHIVE_EXTENSIONS):
                findings.add("zip.nested_archive", name, f"entry '{shown}' is an archive inside the ZIP.")
            else:
                findings.add("zip.entry_name", name, f"entry '{shown}' {problem}.")
        if stat.S_ISLNK(mode):
            findings.add("zip.symlink", name, f"entry '{shown}' is a symbolic link.")
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            kind = _SPECIAL_FILES.get(stat.S_IFMT(mode), f"of file type {stat.S_IFMT(mode):#o}")
            findings.add("zip.special_file", name, f"entry '{shown}' is not a regular file but {kind}.")
        if info.flag_bits & 0x41:
            findings.add("zip.encrypted", name, f"entry '{shown}' is encrypted.")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            findings.add(
                "zip.compression_method",
                name,
                f"entry '{shown}' uses compression method {info.compress_type} "
                "(only stored and deflate are accepted).",
            )
        folded = name.casefold()
        if name in entries:
            findings.add("zip.duplicate_name", name, f"entry name '{shown}' appears more than once.")
        elif folded in by_folded_name:
            other = show_name(by_folded_name[folded])
            findings.add(
                "zip.duplicate_name",
                name,
                f"entry name '{shown}' differs from '{other}' only by case.",
            )
        else:
            by_folded_name[folded] = name
        entries.setdefault(name, info)
        limit = policy.max_index_bytes if name == INDEX_NAME else policy.max_entry_uncompressed_bytes
        if info.file_size > limit:
            findings.add(
                "zip.entry_too_large",
                name,
                f"entry '{shown}' declares {info.file_size} bytes, over the limit of {limit}.",
            )
        ratio = compression_ratio(info.file_size, info.compress_size)
        if ratio > policy.max_compression_ratio:
            findings.add(
                "zip.compression_ratio",
                name,
                f"entry '{shown}' declares {info.compress_size} bytes inflating to {info.file_size} "
                f"(ratio {ratio:.1f}, limit {policy.max_compression_ratio:g}).",
            )
        total_size += info.file_size
        total_compressed += info.compress_size
    if total_size > policy.max_total_uncompressed_bytes:
        findings.add(
            "zip.total_too_large",
            None,
            f"the entries declare {total_size} bytes in total, over the limit of "
            f"{policy.max_total_uncompressed_bytes}.",
        )
    ratio = compression_ratio(total_size, total_compressed)
    if ratio > policy.max_compression_ratio:
        findings.add(
            "zip.compression_ratio",
            None,
            f"the entries declare {total_compressed} bytes inflating to {total_size} "
            f"(ratio {ratio:.1f}, limit {policy.max_compression_ratio:g}).",
        )
    _check_overlaps(archive, infos, findings)
    return entries


def _check_overlaps(
    archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], findings: ArtifactFindings
) -> None:
    """Refuse entries whose data overlap (the trick of non-recursive
    zip bombs) or run into the central directory.
    """
    ordered = sorted(infos, key=lambda i: i.header_offset)
    ends = [i.header_offset for i in ordered[1:]] + [getattr(archive, "start_dir", math.inf)]
    for info, next_start in zip(ordered, ends):
        encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
        try:
            name_length = len(info.orig_filename.encode(encoding))
        except UnicodeEncodeError:
            name_length = 0
        end = info.header_offset + _LOCAL_HEADER_SIZE + name_length + info.compress_size
        if end > next_start:
            findings.add(
                "zip.overlap",
                info.orig_filename,
                f"the data of entry '{show_name(info.orig_filename)}' overlap the next entry or the "
                "central directory (possible zip bomb).",
            )


def read_entry(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    limit: int,
    totals: InflatedTotals,
    policy: DataRightsPolicy,
    findings: ArtifactFindings,
) -> bytes | None:
    """Inflate one entry, at most ``limit`` bytes whatever it declares.

    Parameters
    ----------
    archive : `zipfile.ZipFile`
        The open ZIP.
    info : `zipfile.ZipInfo`
        The entry.
    limit : `int`
        Most bytes the entry may inflate to.
    totals : `InflatedTotals`
        Bytes inflated so far from the artifact; updated.
    policy : `DataRightsPolicy`
        Limits on the compression ratio and the total size.
    findings : `ArtifactFindings`
        Where problems are added.

    Returns
    -------
    data : `bytes` or `None`
        The entry's bytes; `None` (with a finding) if it is corrupt, too
        large or compressed too well, or the artifact grows too large.
    """
    entry = info.orig_filename
    shown = show_name(entry)
    # zipfile stops at the declared size (and checks the CRC there):
    # let it read past a lie, and past our own cap, so that hitting
    # the cap is not reported as a CRC error.
    probe = copy.copy(info)
    probe.file_size = limit + 1 + _READ_MARGIN
    try:
        with archive.open(probe) as stream:
            data = stream.read(limit + 1)
    except Exception as err:  # BadZipFile, zlib.error, EOFError, ...
        findings.add("zip.corrupt", entry, f"entry '{shown}' cannot be read ({err}).")
        return None
    if len(data) > limit:
        findings.add(
            "zip.entry_too_large",
            entry,
            f"entry '{shown}' inflates to more than {limit} bytes (it declares {info.file_size}).",
        )
        return None
    if len(data) != info.file_size:
        findings.add(
            "zip.corrupt",
            entry,
            f"entry '{shown}' declares {info.file_size} bytes but holds {len(data)}.",
        )
        return None
    ratio = compression_ratio(len(data), info.compress_size)
    if ratio > policy.max_compression_ratio:
        findings.add(
            "zip.compression_ratio",
            entry,
            f"entry '{shown}' inflates {info.compress_size} bytes to {len(data)} "
            f"(ratio {ratio:.1f}, limit {policy.max_compression_ratio:g}).",
        )
        return None
    totals.inflated += len(data)
    totals.compressed += info.compress_size
    if totals.inflated > policy.max_total_uncompressed_bytes:
        findings.add(
            "zip.total_too_large",
            None,
            f"the entries inflate to more than {policy.max_total_uncompressed_bytes} bytes.",
        )
        return None
    return data


def _end_of_central_directory(stream: IO[bytes]) -> tuple[int, int] | None:
    """Read the entry count and central-directory size a ZIP declares, from
    its end records, before zipfile parses (and allocates) anything; `None`
    if they cannot be found (zipfile then reports the problem).
    """
    try:
        stream.seek(0, os.SEEK_END)
        file_size = stream.tell()
        tail_size = min(file_size, 22 + 65535)
        stream.seek(file_size - tail_size)
        tail = stream.read(tail_size)
        position = tail.rfind(b"PK\x05\x06")
        if position < 0 or position + 22 > len(tail):
            return None
        count = int.from_bytes(tail[position + 10 : position + 12], "little")
        size = int.from_bytes(tail[position + 12 : position + 16], "little")
        if count == 0xFFFF or size == 0xFFFFFFFF:
            locator_at = file_size - tail_size + position - 20
            if locator_at < 0:
                return None
            stream.seek(locator_at)
            locator = stream.read(20)
            if locator[:4] != b"PK\x06\x07":
                return None
            record_at = int.from_bytes(locator[8:16], "little")
            if record_at > file_size:
                return None
            stream.seek(record_at)
            record = stream.read(56)
            if len(record) < 56 or record[:4] != b"PK\x06\x06":
                return None
            count = int.from_bytes(record[32:40], "little")
            size = int.from_bytes(record[40:48], "little")
        return count, size
    except (OSError, ValueError):
        return None
    finally:
        stream.seek(0)
