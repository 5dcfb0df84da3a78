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

"""Recognising what a file is from its first bytes.

Validation uses `archive_kind` to refuse archives nested in an artifact,
whatever their names, and `describe_content` to say what a file that
should be a PNG really is.
"""

from __future__ import annotations

__all__ = ["archive_kind", "describe_content"]

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


def archive_kind(data: bytes) -> str | None:
    """Name the archive format some bytes start with.

    Parameters
    ----------
    data : `bytes`
        Start of a file (at least 262 bytes to recognise a tar archive).

    Returns
    -------
    kind : `str` or `None`
        Such as ``"a ZIP archive"``; `None` if ``data`` is no known archive.
    """
    for signature, kind in _ARCHIVE_SIGNATURES:
        if data.startswith(signature):
            return kind
    if data.startswith(b"BZh") and data[3:4] in b"123456789" and len(data) > 3:
        return "a bzip2 file"
    if data[257:262] == b"ustar":
        return "a tar archive"
    return None


def describe_content(data: bytes) -> str:
    """Say what bytes that are not a PNG look like.

    Parameters
    ----------
    data : `bytes`
        The file.

    Returns
    -------
    description : `str`
        Such as ``"it looks like a JPEG image"`` or ``"the file is empty"``.
    """
    if not data:
        return "the file is empty"
    kind = archive_kind(data)
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
