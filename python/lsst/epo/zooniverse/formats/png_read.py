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

"""Reading PNG files: full decoding within a size limit, the text chunks
without the pixels, and removing metadata chunks without re-encoding.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_DECODED_PIXELS", "decode_png", "read_png_text", "strip_png_text_chunks"]

import io
import zlib
from collections.abc import Collection

from PIL import Image

from .png_chunks import PNG_SIGNATURE, PngError, iter_chunks

DEFAULT_MAX_DECODED_PIXELS = 50_000_000
"""Largest image (in pixels) that `decode_png` agrees to decode.

A PNG header can declare any size; a decompression bomb is a small file
declaring a huge one.  50 million pixels is far above any Zooniverse
subject image.
"""


def _check_structure(data: bytes, name: str, max_pixels: int | None) -> tuple[int, int]:
    """Check chunk structure and declared size; return ``(width, height)``."""
    chunks = iter_chunks(data, name)
    first_type, ihdr = next(chunks)
    if first_type != b"IHDR" or len(ihdr) != 13:
        raise PngError(f"{name}: corrupt PNG (first chunk is {first_type!r}, not IHDR).")
    width = int.from_bytes(ihdr[0:4], "big")
    height = int.from_bytes(ihdr[4:8], "big")
    if width == 0 or height == 0:
        raise PngError(f"{name}: PNG declares an empty image ({width}x{height}).")
    if max_pixels is not None and width * height > max_pixels:
        raise PngError(
            f"{name}: PNG declares {width}x{height} = {width * height} pixels, more than the limit of "
            f"{max_pixels} (possible decompression bomb)."
        )
    for _ in chunks:
        pass
    return width, height


def decode_png(
    data: bytes, *, name: str = "PNG", max_pixels: int | None = DEFAULT_MAX_DECODED_PIXELS
) -> Image.Image:
    """Fully decode PNG bytes, refusing anything that is not a complete,
    valid PNG within the size limit.

    Parameters
    ----------
    data : `bytes`
        The PNG file contents.
    name : `str`, optional
        Name of the file, for error messages.
    max_pixels : `int` or `None`, optional
        Refuse images that declare more pixels than this before decoding
        anything (`None`: no limit).

    Returns
    -------
    image : `PIL.Image.Image`
        The decoded image, pixels loaded.

    Raises
    ------
    PngError
        Raised for a bad signature, a truncated or corrupt file, a declared
        size over the limit, or pixel data that fails to decode.
    """
    _check_structure(data, name, max_pixels)
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
        image.load()
    except Exception as err:
        raise PngError(f"{name}: PNG pixel data cannot be decoded ({err}).") from err
    return image


def read_png_text(data: bytes, *, name: str = "PNG", max_text_bytes: int | None = None) -> dict[str, str]:
    """Read the text chunks (``tEXt``, ``zTXt``, ``iTXt``) of a PNG without
    decoding its pixels.

    Parameters
    ----------
    data : `bytes`
        The PNG file contents.
    name : `str`, optional
        Name of the file, for error messages.
    max_text_bytes : `int` or `None`, optional
        Refuse a compressed text chunk (``zTXt``, compressed ``iTXt``) that
        inflates to more than this many bytes (`None`: no limit).  Set it
        for untrusted files: a few kilobytes of deflate can inflate to
        gigabytes.

    Returns
    -------
    text : `dict` [`str`, `str`]
        Keyword to text, in file order.

    Raises
    ------
    PngError
        Raised if the file is not a structurally valid PNG, or a text chunk
        is corrupt or inflates past ``max_text_bytes``.
    """
    text: dict[str, str] = {}
    for chunk_type, payload in iter_chunks(data, name):
        try:
            if chunk_type == b"tEXt":
                key, _, value = payload.partition(b"\0")
                text[key.decode("latin-1")] = value.decode("latin-1")
            elif chunk_type == b"zTXt":
                key, _, rest = payload.partition(b"\0")
                value = _inflate_text(rest[1:], max_text_bytes, name, key)
                text[key.decode("latin-1")] = value.decode("latin-1")
            elif chunk_type == b"iTXt":
                key, _, rest = payload.partition(b"\0")
                compressed, rest = rest[0], rest[2:]
                _language, _, rest = rest.partition(b"\0")
                _translated, _, value = rest.partition(b"\0")
                if compressed:
                    value = _inflate_text(value, max_text_bytes, name, key)
                text[key.decode("latin-1")] = value.decode("utf-8")
        except (zlib.error, UnicodeDecodeError, IndexError) as err:
            raise PngError(f"{name}: corrupt {chunk_type.decode()} chunk ({err}).") from err
    return text


def _inflate_text(compressed: bytes, limit: int | None, name: str, key: bytes) -> bytes:
    """Inflate the text of a compressed text chunk, at most ``limit``
    bytes.
    """
    if limit is None:
        return zlib.decompress(compressed)
    inflater = zlib.decompressobj()
    value = inflater.decompress(compressed, limit + 1)
    if len(value) > limit:
        raise PngError(
            f"{name}: compressed text chunk {_printable(key)!r} inflates to more than {limit} bytes."
        )
    if not inflater.eof:
        raise zlib.error("incomplete or truncated stream")
    return value


_KEPT_CHUNK_TYPES = frozenset(
    {
        b"IHDR",
        b"PLTE",
        b"IDAT",
        b"IEND",
        b"tRNS",
        b"gAMA",
        b"cHRM",
        b"sRGB",
        b"iCCP",
        b"sBIT",
        b"pHYs",
        b"bKGD",
    }
)
"""Chunks `strip_png_text_chunks` always keeps: the critical chunks and the
ancillary chunks that say how to display the pixels.
"""

_TEXT_CHUNK_TYPES = frozenset({b"tEXt", b"zTXt", b"iTXt"})


def _printable(raw: bytes) -> str:
    """Latin-1 text of ``raw`` with anything but printable ASCII escaped,
    safe to put in a log line.
    """
    text = raw.decode("latin-1")
    if text.isascii() and text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


def strip_png_text_chunks(
    data: bytes, *, keep_keys: Collection[str] = (), name: str = "PNG"
) -> tuple[bytes, list[str]]:
    """Remove metadata chunks from a PNG without re-encoding its pixels.

    Parameters
    ----------
    data : `bytes`
        The PNG file contents.
    keep_keys : `~collections.abc.Collection` [`str`], optional
        Keywords of the text chunks (``tEXt``, ``zTXt``, ``iTXt``) to keep;
        every other text chunk is removed.
    name : `str`, optional
        Name of the file, for error messages.

    Returns
    -------
    stripped : `bytes`
        The PNG with only ``IHDR``, ``PLTE``, ``IDAT``, ``IEND``, the
        colour and display chunks (``tRNS``, ``gAMA``, ``cHRM``, ``sRGB``,
        ``iCCP``, ``sBIT``, ``pHYs``, ``bKGD``) and the kept text chunks,
        each copied byte for byte in its original order.  ``data`` itself
        when nothing was removed.
    dropped : `list` [`str`]
        What was removed, in file order: the chunk type (``"eXIf"``,
        ``"tIME"``), ``"<type>:<keyword>"`` for text chunks
        (``"tEXt:object_id"``, ``"iTXt:XML:com.adobe.xmp"``), and
        ``"trailing-data"`` for bytes after ``IEND``.  Non-printable
        characters are escaped.

    Raises
    ------
    PngError
        Raised if ``data`` is not a structurally valid PNG (signature,
        chunk lengths and CRCs, ``IHDR`` first, ``IEND`` present).

    Notes
    -----
    Every other chunk goes: ``eXIf``, ``tIME``, ``sPLT``, ``hIST``, the
    APNG animation chunks and private or unknown chunks.  Pixels, and the
    ``IDAT`` bytes themselves, are untouched.
    """
    keep = set()
    for key in keep_keys:
        try:
            keep.add(key.encode("latin-1"))
        except UnicodeEncodeError:
            continue  # Not a possible PNG keyword: matches no chunk.
    view = memoryview(data)
    parts: list[bytes | memoryview] = [view[: len(PNG_SIGNATURE)]]
    dropped: list[str] = []
    pos = len(PNG_SIGNATURE)
    for number, (chunk_type, payload) in enumerate(iter_chunks(data, name)):
        end = pos + 12 + len(payload)
        if number == 0 and chunk_type != b"IHDR":
            raise PngError(f"{name}: corrupt PNG (first chunk is {chunk_type!r}, not IHDR).")
        if chunk_type in _KEPT_CHUNK_TYPES:
            parts.append(view[pos:end])
        elif chunk_type in _TEXT_CHUNK_TYPES:
            keyword = payload.partition(b"\0")[0]
            if keyword in keep:
                parts.append(view[pos:end])
            else:
                dropped.append(f"{_printable(chunk_type)}:{_printable(keyword)}")
        else:
            dropped.append(_printable(chunk_type))
        pos = end
    if pos < len(data):
        dropped.append("trailing-data")
    if not dropped:
        return data, dropped
    return b"".join(parts), dropped
