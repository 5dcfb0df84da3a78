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

"""PNG chunks: the signature, the framing of a chunk (length, type,
payload, CRC) written and walked, and the text chunks with the rules for
their keywords and values.
"""

from __future__ import annotations

__all__ = [
    "PNG_SIGNATURE",
    "XMP_KEYWORD",
    "PngError",
    "check_text_key",
    "check_text_value",
    "chunk",
    "iter_chunks",
    "itxt_chunk",
    "text_chunk",
]

import zlib
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
"""The eight bytes every PNG file starts with."""

XMP_KEYWORD = "XML:com.adobe.xmp"
"""PNG iTXt keyword of an XMP packet (where AVM tags live)."""


class PngError(ValueError):
    """Raised when bytes that should be a PNG are not a valid, decodable
    PNG within the configured limits.
    """


def check_text_key(key: Any) -> None:
    """Raise if ``key`` cannot be a PNG text-chunk keyword (1-79 Latin-1
    characters, no leading/trailing/double spaces).

    Parameters
    ----------
    key : `object`
        The keyword.

    Raises
    ------
    ValueError
        Raised if it cannot be one.
    """
    if not isinstance(key, str) or not 1 <= len(key) <= 79:
        raise ValueError(f"PNG text key {key!r} must be a string of 1 to 79 characters.")
    try:
        key.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"PNG text key {key!r} must be Latin-1.") from None
    if key != key.strip() or "  " in key or any(ord(c) < 32 or 127 <= ord(c) <= 160 for c in key):
        raise ValueError(f"PNG text key {key!r} has control characters, non-breaking or stray spaces.")


def check_text_value(key: str, value: Any) -> None:
    """Raise if ``value`` cannot be the text of a PNG text chunk.

    Parameters
    ----------
    key : `str`
        The chunk's keyword, for messages.
    value : `object`
        The text.

    Raises
    ------
    TypeError
        Raised if it is not a `str`.
    ValueError
        Raised if it holds a NUL character.
    """
    if not isinstance(value, str):
        raise TypeError(f"PNG text value for {key!r} must be a str, not {type(value).__name__}.")
    if "\0" in value:
        raise ValueError(f"PNG text value for {key!r} contains a NUL character.")


def chunk(chunk_type: bytes, payload: bytes) -> bytes:
    """Frame a PNG chunk.

    Parameters
    ----------
    chunk_type : `bytes`
        The 4-byte chunk type.
    payload : `bytes`
        The chunk data.

    Returns
    -------
    chunk : `bytes`
        Length, type, payload and CRC.
    """
    return (
        len(payload).to_bytes(4, "big")
        + chunk_type
        + payload
        + zlib.crc32(payload, zlib.crc32(chunk_type)).to_bytes(4, "big")
    )


def text_chunk(key: str, value: str) -> bytes:
    """Make a text chunk: ``tEXt`` for a Latin-1 value, else an
    uncompressed ``iTXt``.

    Parameters
    ----------
    key : `str`
        The keyword (checked with `check_text_key`).
    value : `str`
        The text (checked with `check_text_value`).

    Returns
    -------
    chunk : `bytes`
        The framed chunk.
    """
    keyword = key.encode("latin-1")
    try:
        return chunk(b"tEXt", keyword + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return itxt_chunk(keyword, value)


def itxt_chunk(keyword: bytes, value: str) -> bytes:
    """Make an uncompressed ``iTXt`` chunk without language tag.

    Parameters
    ----------
    keyword : `bytes`
        The Latin-1 keyword.
    value : `str`
        The text, written as UTF-8.

    Returns
    -------
    chunk : `bytes`
        The framed chunk.
    """
    # keyword, NUL, compression flag 0, method 0, empty language tag and
    # translated keyword (each NUL-terminated), UTF-8 text.
    return chunk(b"iTXt", keyword + b"\0\0\0\0\0" + value.encode("utf-8"))


def iter_chunks(data: bytes, name: str):
    """Yield ``(type, payload)`` of every chunk, checking structure and
    CRCs, without decompressing image data.

    Parameters
    ----------
    data : `bytes`
        The PNG file.
    name : `str`
        Its name, for messages.

    Yields
    ------
    chunk_type : `bytes`
        The chunk's type.
    payload : `bytes`
        Its data.

    Raises
    ------
    PngError
        Raised for a bad signature, a truncated chunk, a CRC mismatch or
        no ``IEND``.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise PngError(f"{name}: not a PNG file (bad signature {data[:8]!r}).")
    pos = len(PNG_SIGNATURE)
    seen_end = False
    while pos < len(data):
        if pos + 8 > len(data):
            raise PngError(f"{name}: truncated PNG (incomplete chunk header at byte {pos}).")
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunk_type = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise PngError(f"{name}: truncated PNG (chunk {chunk_type!r} runs past the end of the file).")
        payload = data[pos + 8 : pos + 8 + length]
        crc = int.from_bytes(data[end - 4 : end], "big")
        if zlib.crc32(chunk_type + payload) != crc:
            raise PngError(f"{name}: corrupt PNG (CRC mismatch in chunk {chunk_type!r} at byte {pos}).")
        yield chunk_type, payload
        pos = end
        if chunk_type == b"IEND":
            seen_end = True
            break
    if not seen_end:
        raise PngError(f"{name}: truncated PNG (no IEND chunk).")
