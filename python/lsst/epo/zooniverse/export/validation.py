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

"""Validation of exported artifacts against a `DataRightsPolicy`.

An artifact is a `zooniverse_rgb` ZIP (``index.csv`` plus PNGs, see
`lsst.epo.zooniverse.formats.rgb_collection`) or a
single `zooniverse_cutout` PNG.
Everything is treated as hostile: the ZIP's central directory is checked
before any entry is read (names, links, encryption, declared sizes and
compression ratios, overlaps), entries are then inflated one at a time
with a hard cap whatever size they declare, and every PNG is checked from
its header (signature, ``IHDR`` dimensions) before it is fully decoded.

A problem with the ZIP itself or its index rejects the whole artifact; a
problem with one image's content rejects only that image.  Accepted images
(text chunks stripped for ``anonymised`` projects) are written atomically
into an output directory under their entry names; if the artifact is
rejected, whatever was written for it is removed.  Rule names are listed in
`RULES` and documented in ``doc/export_policy.md``.
"""

from __future__ import annotations

__all__ = [
    "ENTRY_NAME_PATTERN",
    "RULES",
    "AcceptedFrame",
    "AcceptedImage",
    "Finding",
    "RejectedImage",
    "ValidationResult",
    "validate_png_file",
    "validate_rgb_zip",
]

import copy
import csv
import dataclasses
import hashlib
import io
import math
import os
import re
import secrets
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Sequence
from typing import IO

from ..formats.png import (
    PNG_SIGNATURE,
    PngError,
    decode_png,
    iter_chunks,
    read_png_text,
    strip_png_text_chunks,
)
from ..formats.rgb_collection import FRAME_BAND_PATTERN, FRAMES_COLUMN, INDEX_NAME, normalize_metadata_policy
from .anonymisation import IdentifyingValues
from .policy import DataRightsPolicy

ENTRY_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+~-]{0,127}")
"""What a ZIP entry name (and a published file name) may be: what
`~lsst.epo.zooniverse.formats.rgb_collection.sanitize_entry_names`
writes (``~`` is
its de-duplication suffix, ``_`` may lead); it must also be ``index.csv``
or end in ``.png``.
"""

RULES: dict[str, tuple[str, str]] = {
    "zip.not_zip": ("artifact", "not a ZIP file, or a corrupt or oversized central directory"),
    "zip.too_many_entries": ("artifact", "more entries than max_entries"),
    "zip.entry_name": ("artifact", "unsafe or unexpected entry name"),
    "zip.symlink": ("artifact", "symbolic-link entry"),
    "zip.special_file": ("artifact", "entry that is a device, FIFO or socket"),
    "zip.duplicate_name": ("artifact", "two entries with the same name, also ignoring case"),
    "zip.encrypted": ("artifact", "encrypted entry"),
    "zip.compression_method": ("artifact", "entry compressed with a method other than stored or deflate"),
    "zip.nested_archive": ("artifact", "entry that is an archive (by name or by content)"),
    "zip.overlap": ("artifact", "entries whose data overlap"),
    "zip.entry_too_large": ("artifact", "entry larger than its limit, declared or inflated"),
    "zip.total_too_large": ("artifact", "entries larger in total than max_total_uncompressed_bytes"),
    "zip.compression_ratio": ("artifact", "an entry or the whole ZIP compressed too well (zip bomb)"),
    "zip.corrupt": ("artifact", "entry that cannot be read (CRC, header, size mismatch)"),
    "index.missing": ("artifact", "no index.csv entry"),
    "index.malformed": (
        "artifact",
        "index.csv unreadable, bad header or rows, object ids missing or repeated",
    ),
    "index.mismatch": ("artifact", "index.csv and the PNG entries do not match one to one"),
    "index.frames": (
        "artifact",
        "index.csv frames column malformed, or naming an entry that is missing, a picture or another's frame",
    ),
    "file.entry_name": ("artifact", "a cutout's entry name is not a safe .png name"),
    "file.not_regular": ("artifact", "a cutout path is not a regular file"),
    "png.file_size": ("image", "PNG file larger than max_png_bytes"),
    "png.signature": ("image", "not a PNG (says what it looks like)"),
    "png.corrupt": ("image", "truncated PNG, bad chunk or CRC, data after IEND"),
    "png.dimensions": ("image", "declared width, height or pixel count over the limits (from IHDR)"),
    "png.decode": ("image", "pixel data cannot be fully decoded"),
    "frame.rejected": ("image", "one of the picture's band frames failed a png.* or metadata.* rule"),
    "frame.dimensions": ("image", "a band frame's size differs from its picture's"),
    "metadata.identifying": ("image", "an anonymised PNG's kept text holds the object id or coordinates"),
}
"""Every rule: name -> (``"artifact"`` or ``"image"``, summary).  An
``artifact`` finding rejects the whole artifact, an ``image`` finding only
the image concerned.
"""

_MAX_FINDINGS = 100

_MAX_SHOWN_NAME = 160
_MAX_TEXT_BYTES = 1 << 20
_CENTRAL_DIRECTORY_BYTES_PER_ENTRY = 1024
_LOCAL_HEADER_SIZE = 30
_READ_MARGIN = 1 << 16  # More than one zipfile read step (4 kB).
_ARCHIVE_EXTENSIONS = (".zip", ".jar", ".gz", ".tgz", ".tar", ".bz2", ".tbz2", ".xz", ".txz", ".zst")
_ARCHIVE_EXTENSIONS += (".lz4", ".7z", ".rar", ".cab")
_ARCHIVE_SIGNATURES = (
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"PK\x07\x08", "a spanned ZIP archive"),
    (b"\x1f\x8b", "a gzip file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x28\xb5\x2f\xfd", "a Zstandard file"),
    (b"\x04\x22\x4d\x18", "an LZ4 file"),
    (b"MSCF\x00\x00\x00\x00", "a CAB archive"),
    (b"!<arch>\n", "an ar archive"),
)
_OTHER_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x8aMNG", "an MNG animation"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"%PDF", "a PDF document"),
    (b"SIMPLE  =", "a FITS file"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
)
_SPECIAL_FILES = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
_TEXT_KEYS_TO_HIDE = frozenset({"object_id", "objectid", "ra", "dec"})


# ---------------------------------------------------------------------------
# Results


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem found in an artifact."""

    rule: str
    """Stable rule name, a key of `RULES` (`str`)."""

    entry: str | None
    """ZIP entry (or cutout file name) concerned, exactly as in the
    artifact; `None` for the whole artifact (`str` or `None`).
    """

    message: str
    """Sentence saying what is wrong with which entry; unprintable
    characters of entry names are escaped (`str`).
    """

    def __str__(self) -> str:
        if self.entry is None:
            return f"{self.rule}: {self.message}"
        return f"{self.rule} [{_show(self.entry)}]: {self.message}"


@dataclasses.dataclass(frozen=True)
class AcceptedFrame:
    """A band frame of an accepted image (a multi-frame subject's grey
    picture of one band), validated and written like the image.
    """

    band: str
    """Band name (`str`)."""

    entry: str
    """ZIP entry name (`str`)."""

    path: str
    """Where the validated (possibly stripped) PNG was written (`str`)."""

    sha256: str
    """Hex SHA-256 of the bytes written (`str`)."""

    size: int
    """Number of bytes written (`int`)."""


@dataclasses.dataclass(frozen=True)
class AcceptedImage:
    """An image that passed validation and was written to the output
    directory.
    """

    entry: str
    """ZIP entry name (for a cutout: the name given); the published file
    name (`str`).
    """

    object_id: str
    """Object id, from ``index.csv`` (for a cutout: as given) (`str`)."""

    path: str
    """Where the validated (possibly stripped) PNG was written, inside the
    output directory (`str`).
    """

    sha256: str
    """Hex SHA-256 of the bytes written (`str`)."""

    size: int
    """Number of bytes written (`int`)."""

    width: int
    """Width in pixels (`int`)."""

    height: int
    """Height in pixels (`int`)."""

    stripped: tuple[str, ...]
    """Chunks the metadata policy removed, as described by
    `~lsst.epo.zooniverse.formats.png.strip_png_text_chunks` (`tuple` [`str`]).
    """

    index_row: dict[str, str]
    """The image's ``index.csv`` row, every column as text; empty for a
    cutout (`dict` [`str`, `str`]).
    """

    frames: tuple[AcceptedFrame, ...] = ()
    """The image's band frames in subject order (``frames`` column of
    ``index.csv``); empty for a single-picture subject.
    """


@dataclasses.dataclass(frozen=True)
class RejectedImage:
    """An image refused by validation (the rest of its artifact may still
    be accepted).
    """

    entry: str
    """ZIP entry name or cutout name (`str`)."""

    object_id: str
    """Object id (`str`)."""

    finding: Finding
    """Why (`Finding`)."""


@dataclasses.dataclass(frozen=True)
class ValidationResult:
    """Outcome of validating one artifact."""

    artifact_findings: tuple[Finding, ...]
    """Problems of the artifact as a whole; when there is any, the whole
    artifact is rejected and `accepted` is empty (`tuple` [`Finding`]).
    """

    accepted: tuple[AcceptedImage, ...]
    """Images written to the output directory (`tuple` [`AcceptedImage`])."""

    rejected: tuple[RejectedImage, ...]
    """Images refused on their own (`tuple` [`RejectedImage`]); for a
    rejected artifact, those found before validation stopped.
    """

    @property
    def ok(self) -> bool:
        """Whether the artifact as a whole passed (`bool`); some of its
        images may still have been rejected.
        """
        return not self.artifact_findings


# ---------------------------------------------------------------------------
# Names and content sniffing


def _show(name: str) -> str:
    """``name`` with anything but printable ASCII escaped, shortened if
    very long: safe for logs, e-mails and the audit table.
    """
    name = _escape(name)
    if len(name) > _MAX_SHOWN_NAME:
        name = name[:_MAX_SHOWN_NAME] + "..."
    return name


def _escape(text: str) -> str:
    """``text`` with anything but printable ASCII escaped (messages may
    quote library errors that quote hostile bytes).
    """
    if text.isascii() and text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


def _describe_character(character: str) -> str:
    code = f"U+{ord(character):04X}"
    name = unicodedata.name(character, "")
    return f"{code} ({name})" if name else code


def _entry_name_problem(name: str) -> str | None:
    """Say what is wrong with a ZIP entry name, or return `None` when it is
    ``index.csv`` or a safe ``.png`` name.
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


def _archive_kind(data: bytes) -> str | None:
    """Name the archive format ``data`` starts with, if any."""
    for signature, kind in _ARCHIVE_SIGNATURES:
        if data.startswith(signature):
            return kind
    if data.startswith(b"BZh") and data[3:4] in b"123456789" and len(data) > 3:
        return "a bzip2 file"
    if data[257:262] == b"ustar":
        return "a tar archive"
    return None


def _describe_content(data: bytes) -> str:
    """Say what non-PNG bytes look like."""
    if not data:
        return "the file is empty"
    kind = _archive_kind(data)
    if kind is None:
        for signature, candidate in _OTHER_SIGNATURES:
            if data.startswith(signature):
                kind = candidate
                break
    if kind is None and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        kind = "a WebP image"
    if kind is None and data[1:4] == b"PNG":
        return "the PNG signature is damaged (transferred as text?)"
    if kind is None:
        head = data[:512]
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
            stripped = text.lstrip().lower()
            if stripped.startswith(("<svg", "<?xml")):
                kind = "an SVG or XML document"
            elif stripped.startswith(("<!doctype html", "<html")):
                kind = "an HTML document"
            else:
                kind = "text"
    if kind is None:
        return f"unknown content starting with {data[:8]!r}"
    return f"it looks like {kind}"


# ---------------------------------------------------------------------------
# Output


class _Output:
    """Atomic writes of accepted images into one directory, undone if the
    artifact is rejected.
    """

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = os.path.abspath(directory)
        self.written: list[str] = []

    def write(self, entry: str, data: bytes) -> str:
        # The entry passed _entry_name_problem; check again what matters
        # for the file system, whatever changes there in future.
        if (
            not ENTRY_NAME_PATTERN.fullmatch(entry)
            or os.path.basename(entry) != entry
            or entry in (".", "..")
        ):
            raise ValueError(f"Refusing to write unsafe file name {entry!r}.")
        final = os.path.join(self.directory, entry)
        temporary = os.path.join(self.directory, f".{entry}.{secrets.token_hex(6)}.tmp")
        flags = (
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        )
        descriptor = os.open(temporary, flags, 0o644)
        try:
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, final)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise
        self.written.append(final)
        return final

    def sync(self) -> None:
        if not self.written:
            return
        descriptor = os.open(self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def discard(self) -> None:
        for path in self.written:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.written.clear()


# ---------------------------------------------------------------------------
# The validator


class _Validator:
    """State of one validation: findings, results, files written."""

    def __init__(self, policy: DataRightsPolicy, metadata_policy: str, output_dir: str) -> None:
        if not isinstance(policy, DataRightsPolicy):
            raise TypeError(f"policy must be a DataRightsPolicy, not {type(policy).__name__}.")
        self.policy = policy
        self.metadata_policy = normalize_metadata_policy(metadata_policy)
        self.output = _Output(output_dir)
        self.findings: list[Finding] = []
        self.unlisted = 0
        self.accepted: list[AcceptedImage] = []
        self.rejected: list[RejectedImage] = []

    # Findings ------------------------------------------------------------

    def artifact(self, rule: str, entry: str | None, message: str) -> None:
        assert RULES[rule][0] == "artifact", rule
        if len(self.findings) < _MAX_FINDINGS:
            self.findings.append(Finding(rule, entry, _escape(message)))
        else:
            self.unlisted += 1

    def result(self) -> ValidationResult:
        findings = list(self.findings)
        if self.unlisted:
            last = findings[-1]
            findings.append(
                Finding(last.rule, None, f"{self.unlisted} more problems of this artifact are not listed.")
            )
        if findings:
            self.output.discard()
            return ValidationResult(tuple(findings), (), tuple(self.rejected))
        self.output.sync()
        return ValidationResult((), tuple(self.accepted), tuple(self.rejected))

    # One image -----------------------------------------------------------

    def image(
        self,
        data: bytes,
        *,
        entry: str,
        object_id: str,
        coordinates: Sequence[str],
        index_row: dict[str, str],
        size: int,
        frames: Sequence[tuple[str, str, bytes]] = (),
    ) -> None:
        """Check one PNG and its band frames (``band, entry, data``);
        write them if they all pass, record why the image is refused if
        not.
        """
        try:
            output, width, height, stripped = self._check_png(data, entry, object_id, coordinates, size)
            checked = []
            for band, frame_entry, frame_data in frames:
                try:
                    frame_output, frame_width, frame_height, _ = self._check_png(
                        frame_data, frame_entry, object_id, coordinates, len(frame_data)
                    )
                except _ImageRejectedError as rejection:
                    raise _ImageRejectedError(
                        Finding(
                            "frame.rejected",
                            entry,
                            _escape(f"{_show(entry)}: its {band} frame fails {rejection.finding}"),
                        )
                    ) from None
                if (frame_width, frame_height) != (width, height):
                    raise _ImageRejectedError(
                        Finding(
                            "frame.dimensions",
                            entry,
                            _escape(
                                f"{_show(entry)}: its {band} frame '{_show(frame_entry)}' is "
                                f"{frame_width}x{frame_height}, the picture {width}x{height}."
                            ),
                        )
                    )
                checked.append((band, frame_entry, frame_output))
        except _ImageRejectedError as rejection:
            self.rejected.append(RejectedImage(entry, object_id, rejection.finding))
            return
        accepted_frames = tuple(
            AcceptedFrame(
                band=band,
                entry=frame_entry,
                path=self.output.write(frame_entry, frame_output),
                sha256=hashlib.sha256(frame_output).hexdigest(),
                size=len(frame_output),
            )
            for band, frame_entry, frame_output in checked
        )
        path = self.output.write(entry, output)
        self.accepted.append(
            AcceptedImage(
                entry=entry,
                object_id=object_id,
                path=path,
                sha256=hashlib.sha256(output).hexdigest(),
                size=len(output),
                width=width,
                height=height,
                stripped=tuple(stripped),
                index_row=index_row,
                frames=accepted_frames,
            )
        )

    def _check_png(
        self, data: bytes, entry: str, object_id: str, coordinates: Sequence[str], size: int
    ) -> tuple[bytes, int, int, list[str]]:
        policy = self.policy
        shown = _show(entry)

        def reject(rule: str, message: str) -> _ImageRejectedError:
            return _ImageRejectedError(Finding(rule, entry, _escape(f"{shown}: {message}")))

        if len(data) > policy.max_png_bytes:
            raise reject(
                "png.file_size",
                f"the PNG file is {size} bytes, over the limit of {policy.max_png_bytes} bytes.",
            )
        if not data.startswith(PNG_SIGNATURE):
            raise reject("png.signature", f"not a PNG file: {_describe_content(data)}.")
        width, height = self._check_header(data, reject)
        # Whole chunk structure: lengths, CRCs, IEND, nothing after it.
        end = len(PNG_SIGNATURE)
        try:
            for _, payload in iter_chunks(data, shown):
                end += 12 + len(payload)
        except PngError as err:
            raise reject("png.corrupt", _without_name(err, shown)) from None
        if end != len(data):
            raise reject(
                "png.corrupt",
                f"{len(data) - end} bytes of data follow the IEND chunk (appended file or hidden payload).",
            )
        stripped: list[str] = []
        output = data
        if self.metadata_policy == "anonymised":
            try:
                original_text = read_png_text(data, name=shown, max_text_bytes=_MAX_TEXT_BYTES)
                output, stripped = strip_png_text_chunks(
                    data, keep_keys=policy.anonymised_text_keys, name=shown
                )
                kept_text = read_png_text(output, name=shown, max_text_bytes=_MAX_TEXT_BYTES)
            except PngError as err:
                raise reject("png.corrupt", _without_name(err, shown)) from None
        try:
            decode_png(output, name=shown, max_pixels=policy.max_png_pixels)
        except PngError as err:
            raise reject("png.decode", _without_name(err, shown)) from None
        if self.metadata_policy == "anonymised":
            hidden = [
                value for key, value in original_text.items() if key.strip().lower() in _TEXT_KEYS_TO_HIDE
            ]
            identifying = IdentifyingValues(object_id, [*coordinates, *hidden])
            for key, value in kept_text.items():
                found = identifying.find(value) or identifying.find(key)
                if found is not None:
                    raise reject(
                        "metadata.identifying",
                        f"text chunk '{_show(key)}' kept for anonymised projects holds the identifying "
                        f"value '{_show(found)}' (object id or coordinate).",
                    )
        return output, width, height, stripped

    def _check_header(
        self, data: bytes, reject: Callable[[str, str], _ImageRejectedError]
    ) -> tuple[int, int]:
        """Read the dimensions from ``IHDR`` and check them against the
        limits, before anything is decoded.
        """
        policy = self.policy
        header = data[8:33]
        if len(header) < 25 or header[4:8] != b"IHDR" or int.from_bytes(header[0:4], "big") != 13:
            raise reject("png.corrupt", "truncated PNG or first chunk is not a 13-byte IHDR.")
        if zlib.crc32(header[4:21]) != int.from_bytes(header[21:25], "big"):
            raise reject("png.corrupt", "corrupt PNG (CRC mismatch in IHDR).")
        width = int.from_bytes(header[8:12], "big")
        height = int.from_bytes(header[12:16], "big")
        if width == 0 or height == 0:
            raise reject("png.dimensions", f"the PNG header declares an empty image ({width}x{height}).")
        problems = []
        if width > policy.max_png_width:
            problems.append(f"a width over the limit of {policy.max_png_width}")
        if height > policy.max_png_height:
            problems.append(f"a height over the limit of {policy.max_png_height}")
        if width * height > policy.max_png_pixels:
            problems.append(f"{width * height} pixels, over the limit of {policy.max_png_pixels}")
        if problems:
            raise reject(
                "png.dimensions",
                f"the PNG header declares {width}x{height}: {', '.join(problems)} "
                "(checked before decoding; possible decompression bomb).",
            )
        return width, height

    # ZIP -----------------------------------------------------------------

    def rgb_zip(self, stream: IO[bytes], name: str) -> None:
        policy = self.policy
        declared = _end_of_central_directory(stream)
        if declared is not None:
            count, directory_size = declared
            if count > policy.max_entries:
                self.artifact(
                    "zip.too_many_entries",
                    None,
                    f"the ZIP declares {count} entries, more than the limit of {policy.max_entries}.",
                )
                return
            allowed = max(count, 1) * _CENTRAL_DIRECTORY_BYTES_PER_ENTRY + 65536
            if directory_size > allowed:
                self.artifact(
                    "zip.not_zip",
                    None,
                    f"the ZIP's central directory is {directory_size} bytes for {count} entries "
                    f"(more than {allowed}: oversized names, extra fields or comments).",
                )
                return
        try:
            archive = zipfile.ZipFile(stream, "r")
        except Exception as err:  # zipfile raises many kinds on hostile input.
            self.artifact("zip.not_zip", None, f"{name} is not a readable ZIP file ({err}).")
            return
        with archive:
            infos = archive.infolist()
            if len(infos) > policy.max_entries:
                self.artifact(
                    "zip.too_many_entries",
                    None,
                    f"the ZIP has {len(infos)} entries, more than the limit of {policy.max_entries}.",
                )
                return
            entries = self._check_central_directory(archive, infos)
            if self.findings:
                return
            index_info = entries.get(INDEX_NAME)
            if index_info is None:
                self.artifact("index.missing", None, f"the ZIP has no {INDEX_NAME} entry.")
                return
            totals = _Totals()
            index_data = self._read(archive, index_info, policy.max_index_bytes, totals)
            if index_data is None:
                return
            rows = self._parse_index(index_data)
            if rows is None:
                return
            pngs = {entry: info for entry, info in entries.items() if entry != INDEX_NAME}
            matched = self._match_index(rows, pngs)
            if matched is None:
                return
            rows_by_file, frames_by_file = matched

            def read_png(entry: str) -> bytes | None:
                data = self._read(archive, pngs[entry], policy.max_entry_uncompressed_bytes, totals)
                if data is None:
                    return None
                kind = _archive_kind(data)
                if kind is not None:
                    self.artifact(
                        "zip.nested_archive",
                        entry,
                        f"entry '{_show(entry)}' is {kind} disguised as a PNG (nested archive).",
                    )
                    return None
                return data

            pictures = [pngs[entry] for entry in rows_by_file]
            for info in sorted(pictures, key=lambda i: i.header_offset):
                entry = info.orig_filename
                data = read_png(entry)
                if data is None:
                    return
                frames = []
                for band, frame_entry in frames_by_file.get(entry, ()):
                    frame_data = read_png(frame_entry)
                    if frame_data is None:
                        return
                    frames.append((band, frame_entry, frame_data))
                row = rows_by_file[entry]
                self.image(
                    data,
                    entry=entry,
                    object_id=row["object_id"],
                    coordinates=[row.get("ra", ""), row.get("dec", "")],
                    index_row=row,
                    size=len(data),
                    frames=frames,
                )
            ratio = _ratio(totals.inflated, totals.compressed)
            if ratio > policy.max_compression_ratio:
                self.artifact(
                    "zip.compression_ratio",
                    None,
                    f"the ZIP inflates {totals.compressed} bytes to {totals.inflated} "
                    f"(ratio {ratio:.1f}, limit {policy.max_compression_ratio:g}).",
                )

    def _check_central_directory(
        self, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]
    ) -> dict[str, zipfile.ZipInfo]:
        """Check every entry's name, type, flags and declared sizes; return
        the entries by name.
        """
        policy = self.policy
        entries: dict[str, zipfile.ZipInfo] = {}
        by_folded_name: dict[str, str] = {}
        total_size = total_compressed = 0
        for info in infos:
            name = info.orig_filename
            shown = _show(name)
            mode = info.external_attr >> 16
            problem = _entry_name_problem(name)
            if problem is None and info.filename != name:
                problem = f"has a different name in a Unicode path extra field ('{_show(info.filename)}')"
            if problem is None and (info.is_dir() or stat.S_ISDIR(mode) or info.external_attr & 0x10):
                problem = "is a directory"
            if problem is not None:
                if problem.startswith("is neither") and name.lower().endswith(_ARCHIVE_EXTENSIONS):
                    self.artifact(
                        "zip.nested_archive", name, f"entry '{shown}' is an archive inside the ZIP."
                    )
                else:
                    self.artifact("zip.entry_name", name, f"entry '{shown}' {problem}.")
            if stat.S_ISLNK(mode):
                self.artifact("zip.symlink", name, f"entry '{shown}' is a symbolic link.")
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                kind = _SPECIAL_FILES.get(stat.S_IFMT(mode), f"of file type {stat.S_IFMT(mode):#o}")
                self.artifact("zip.special_file", name, f"entry '{shown}' is not a regular file but {kind}.")
            if info.flag_bits & 0x41:
                self.artifact("zip.encrypted", name, f"entry '{shown}' is encrypted.")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                self.artifact(
                    "zip.compression_method",
                    name,
                    f"entry '{shown}' uses compression method {info.compress_type} "
                    "(only stored and deflate are accepted).",
                )
            folded = name.casefold()
            if name in entries:
                self.artifact("zip.duplicate_name", name, f"entry name '{shown}' appears more than once.")
            elif folded in by_folded_name:
                other = _show(by_folded_name[folded])
                self.artifact(
                    "zip.duplicate_name",
                    name,
                    f"entry name '{shown}' differs from '{other}' only by case.",
                )
            else:
                by_folded_name[folded] = name
            entries.setdefault(name, info)
            limit = policy.max_index_bytes if name == INDEX_NAME else policy.max_entry_uncompressed_bytes
            if info.file_size > limit:
                self.artifact(
                    "zip.entry_too_large",
                    name,
                    f"entry '{shown}' declares {info.file_size} bytes, over the limit of {limit}.",
                )
            ratio = _ratio(info.file_size, info.compress_size)
            if ratio > policy.max_compression_ratio:
                self.artifact(
                    "zip.compression_ratio",
                    name,
                    f"entry '{shown}' declares {info.compress_size} bytes inflating to {info.file_size} "
                    f"(ratio {ratio:.1f}, limit {policy.max_compression_ratio:g}).",
                )
            total_size += info.file_size
            total_compressed += info.compress_size
        if total_size > policy.max_total_uncompressed_bytes:
            self.artifact(
                "zip.total_too_large",
                None,
                f"the entries declare {total_size} bytes in total, over the limit of "
                f"{policy.max_total_uncompressed_bytes}.",
            )
        ratio = _ratio(total_size, total_compressed)
        if ratio > policy.max_compression_ratio:
            self.artifact(
                "zip.compression_ratio",
                None,
                f"the entries declare {total_compressed} bytes inflating to {total_size} "
                f"(ratio {ratio:.1f}, limit {policy.max_compression_ratio:g}).",
            )
        self._check_overlaps(archive, infos)
        return entries

    def _check_overlaps(self, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
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
                self.artifact(
                    "zip.overlap",
                    info.orig_filename,
                    f"the data of entry '{_show(info.orig_filename)}' overlap the next entry or the "
                    "central directory (possible zip bomb).",
                )

    def _read(
        self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, totals: _Totals
    ) -> bytes | None:
        """Inflate one entry, at most ``limit`` bytes whatever it declares;
        `None` (with a finding) if it is corrupt or too large.
        """
        entry = info.orig_filename
        shown = _show(entry)
        # zipfile stops at the declared size (and checks the CRC there):
        # let it read past a lie, and past our own cap, so that hitting
        # the cap is not reported as a CRC error.
        probe = copy.copy(info)
        probe.file_size = limit + 1 + _READ_MARGIN
        try:
            with archive.open(probe) as stream:
                data = stream.read(limit + 1)
        except Exception as err:  # BadZipFile, zlib.error, EOFError, ...
            self.artifact("zip.corrupt", entry, f"entry '{shown}' cannot be read ({err}).")
            return None
        if len(data) > limit:
            self.artifact(
                "zip.entry_too_large",
                entry,
                f"entry '{shown}' inflates to more than {limit} bytes (it declares {info.file_size}).",
            )
            return None
        if len(data) != info.file_size:
            self.artifact(
                "zip.corrupt",
                entry,
                f"entry '{shown}' declares {info.file_size} bytes but holds {len(data)}.",
            )
            return None
        ratio = _ratio(len(data), info.compress_size)
        if ratio > self.policy.max_compression_ratio:
            self.artifact(
                "zip.compression_ratio",
                entry,
                f"entry '{shown}' inflates {info.compress_size} bytes to {len(data)} "
                f"(ratio {ratio:.1f}, limit {self.policy.max_compression_ratio:g}).",
            )
            return None
        totals.inflated += len(data)
        totals.compressed += info.compress_size
        if totals.inflated > self.policy.max_total_uncompressed_bytes:
            self.artifact(
                "zip.total_too_large",
                None,
                f"the entries inflate to more than {self.policy.max_total_uncompressed_bytes} bytes.",
            )
            return None
        return data

    def _parse_index(self, data: bytes) -> list[dict[str, str]] | None:
        """Parse ``index.csv``; `None` (with a finding) if it is not a
        valid index.
        """
        kind = _archive_kind(data)
        if kind is not None:
            self.artifact("zip.nested_archive", INDEX_NAME, f"{INDEX_NAME} is {kind}, not a CSV table.")
            return None

        def malformed(message: str) -> None:
            self.artifact("index.malformed", INDEX_NAME, f"{INDEX_NAME} {message}")

        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            malformed(f"is not UTF-8 text ({err}).")
            return None
        try:
            lines = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error as err:
            malformed(f"is not a valid CSV table ({err}).")
            return None
        if not lines:
            malformed("is empty.")
            return None
        header, body = lines[0], lines[1:]
        if len(set(header)) != len(header):
            malformed("has a header that repeats a column name.")
            return None
        for column in ("file", "object_id"):
            if column not in header:
                malformed(f"has no {column!r} column.")
                return None
        rows = []
        seen_ids: dict[str, int] = {}
        for line, values in enumerate(body, start=2):
            if len(values) != len(header):
                malformed(f"line {line} has {len(values)} fields, not {len(header)}.")
                return None
            row = dict(zip(header, values))
            object_id = row["object_id"]
            if not object_id.strip():
                malformed(f"line {line} has no object_id.")
                return None
            if object_id in seen_ids:
                malformed(
                    f"lines {seen_ids[object_id]} and {line} have the same object_id '{_show(object_id)}'."
                )
                return None
            seen_ids[object_id] = line
            rows.append(row)
        return rows

    def _match_index(
        self, rows: list[dict[str, str]], pngs: dict[str, zipfile.ZipInfo]
    ) -> tuple[dict[str, dict[str, str]], dict[str, list[tuple[str, str]]]] | None:
        """Check that the index names each PNG entry exactly once, as a
        picture (``file``) or as a band frame of one (``frames``); return
        the rows and the ``(band, entry)`` frames by picture entry name
        (`None`, with findings, if not).
        """
        by_file: dict[str, dict[str, str]] = {}
        for row in rows:
            entry = row["file"]
            if entry in by_file:
                self.artifact("index.mismatch", entry, f"{INDEX_NAME} lists '{_show(entry)}' more than once.")
            by_file[entry] = row
        for entry in by_file:
            if entry not in pngs:
                self.artifact(
                    "index.mismatch",
                    entry,
                    f"{INDEX_NAME} lists '{_show(entry)}', which is not a PNG entry of the ZIP.",
                )
        frames_by_file: dict[str, list[tuple[str, str]]] = {}
        frame_owner: dict[str, str] = {}
        for entry, row in by_file.items():
            text = row.get(FRAMES_COLUMN, "")
            if not text.strip():
                continue
            bands: set[str] = set()
            for token in text.split():
                band, _, frame = token.partition("=")
                problem = None
                if not FRAME_BAND_PATTERN.fullmatch(band) or not frame:
                    problem = f"has '{_show(token)}', not <band>=<entry>"
                elif band in bands:
                    problem = f"names band '{_show(band)}' twice"
                elif frame not in pngs:
                    problem = f"names '{_show(frame)}', which is not a PNG entry of the ZIP"
                elif frame in by_file:
                    problem = f"names '{_show(frame)}', which is a picture, as a frame"
                elif frame in frame_owner:
                    problem = f"names '{_show(frame)}', already a frame of '{_show(frame_owner[frame])}'"
                if problem:
                    self.artifact(
                        "index.frames", entry, f"{INDEX_NAME}: the frames of '{_show(entry)}' {problem}."
                    )
                    break
                bands.add(band)
                frame_owner[frame] = entry
                frames_by_file.setdefault(entry, []).append((band, frame))
        for entry in pngs:
            if entry not in by_file and entry not in frame_owner:
                self.artifact(
                    "index.mismatch", entry, f"PNG entry '{_show(entry)}' is not listed in {INDEX_NAME}."
                )
        return None if self.findings else (by_file, frames_by_file)


class _ImageRejectedError(Exception):
    def __init__(self, finding: Finding) -> None:
        super().__init__(str(finding))
        self.finding = finding


@dataclasses.dataclass
class _Totals:
    inflated: int = 0
    compressed: int = 0


def _ratio(size: int, compressed: int) -> float:
    if size <= 0:
        return 0.0
    if compressed <= 0:
        return math.inf
    return size / compressed


def _without_name(error: Exception, shown: str) -> str:
    """Return a `PngError` message without the file-name prefix the
    finding already carries.
    """
    message = str(error)
    prefix = f"{shown}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


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


# ---------------------------------------------------------------------------
# Public functions


def validate_rgb_zip(
    path: str, policy: DataRightsPolicy, *, metadata_policy: str, output_dir: str
) -> ValidationResult:
    """Validate a `zooniverse_rgb` ZIP and write its acceptable PNGs.

    Parameters
    ----------
    path : `str`
        The ZIP file.
    policy : `DataRightsPolicy`
        Limits to apply.
    metadata_policy : `str`
        ``full`` (PNG bytes kept as they are) or ``anonymised`` (text
        chunks other than ``policy.anonymised_text_keys`` removed, and no
        kept text may hold the object id or coordinates).
    output_dir : `str`
        Directory (created if needed) where each accepted PNG is written,
        atomically, as ``output_dir/<entry>``.  Nothing is written
        elsewhere.

    Returns
    -------
    result : `ValidationResult`
        Artifact findings (ZIP structure, index: nothing accepted and no
        file left in ``output_dir`` when there is any), accepted and
        rejected images.

    Raises
    ------
    ValueError
        Raised for an unknown ``metadata_policy``.
    OSError
        Raised if ``path`` cannot be opened or ``output_dir`` cannot be
        written; files already written for the artifact are removed.

    Notes
    -----
    Entries are inflated one at a time, each with a hard cap, so memory
    stays bounded by the largest allowed entry (and the index) whatever
    the archive declares.
    """
    validator = _Validator(policy, metadata_policy, output_dir)
    try:
        with open(path, "rb") as stream:
            validator.rgb_zip(stream, os.path.basename(path))
        return validator.result()
    except BaseException:
        validator.output.discard()
        raise


def validate_png_file(
    path: str,
    policy: DataRightsPolicy,
    *,
    metadata_policy: str,
    output_dir: str,
    entry: str,
    object_id: str,
) -> ValidationResult:
    """Validate a single `zooniverse_cutout` PNG and write it if it passes.

    Parameters
    ----------
    path : `str`
        The PNG file.
    policy : `DataRightsPolicy`
        Limits to apply.
    metadata_policy : `str`
        ``full`` or ``anonymised`` (see `validate_rgb_zip`).
    output_dir : `str`
        Directory (created if needed) where the PNG is written as
        ``output_dir/<entry>``.
    entry : `str`
        Published file name: a safe name ending in ``.png``
        (`ENTRY_NAME_PATTERN`).
    object_id : `str`
        The image's object id (for anonymised projects, it must not appear
        in the kept text).

    Returns
    -------
    result : `ValidationResult`
        An artifact finding for an unsafe ``entry`` or a path that is not a
        regular file; otherwise one accepted or one rejected image.

    Raises
    ------
    ValueError
        Raised for an unknown ``metadata_policy``.
    OSError
        Raised if ``path`` cannot be read or ``output_dir`` written.
    """
    validator = _Validator(policy, metadata_policy, output_dir)
    try:
        problem = _entry_name_problem(entry) if isinstance(entry, str) else "is not a string"
        if problem is None and entry == INDEX_NAME:
            problem = "is not a .png name"
        if problem is not None:
            validator.artifact("file.entry_name", entry, f"cutout name '{_show(str(entry))}' {problem}.")
            return validator.result()
        limit = policy.max_png_bytes
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        descriptor = os.open(path, flags)
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            os.close(descriptor)
            validator.artifact(
                "file.not_regular", entry, f"'{_show(os.path.basename(path))}' is not a regular file."
            )
            return validator.result()
        with os.fdopen(descriptor, "rb") as stream:
            data = stream.read(limit + 1)
        validator.image(
            data,
            entry=entry,
            object_id=str(object_id),
            coordinates=(),
            index_row={},
            size=status.st_size,
        )
        return validator.result()
    except BaseException:
        validator.output.discard()
        raise
