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

"""PNG encoding, decoding and validation shared by the cutout and RGB
formats.

Everything that turns pixels into PNG bytes, or PNG bytes back into pixels,
goes through this module so that the same input checks, compression
settings, metadata chunks and decoding limits apply to every format.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_COMPRESS_LEVEL",
    "DEFAULT_MAX_DECODED_PIXELS",
    "DEFLATE_VARIABLE",
    "PNG_SIGNATURE",
    "XMP_KEYWORD",
    "PngError",
    "as_pil_image",
    "check_text_key",
    "check_text_value",
    "decode_png",
    "encode_png",
    "iter_chunks",
    "png_deflate_library",
    "read_png_text",
    "strip_png_text_chunks",
    "validate_image_array",
]

import io
import os
import zlib
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

try:
    from isal import isal_zlib as _isal_zlib
except ImportError:  # Optional: zlib serves every level.
    _isal_zlib = None

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
"""The eight bytes every PNG file starts with."""

XMP_KEYWORD = "XML:com.adobe.xmp"
"""PNG iTXt keyword of an XMP packet (where AVM tags live)."""

DEFAULT_COMPRESS_LEVEL = 1
"""zlib level used when writing PNGs.

Levels 1-3 deflate with run-length matches only (zlib's ``Z_RLE``
strategy): on sky pictures (noise, dark sky, flat padding) that is both
faster and smaller than zlib's full match search at any level (101-px
pictures: 0.26 ms and 13.9 KiB, against 0.38 ms and 16.2 KiB at level 1
and 11.9 ms and 14.9 KiB at level 9 with the full search).  Levels 4-9
use the full search, which can win on images with repeated structure
(graphics, text).  Level 0 stores the data uncompressed.
"""

RLE_MAX_LEVEL = 3
"""Highest compress level deflated with run-length matches only (see
`DEFAULT_COMPRESS_LEVEL`)."""

DEFAULT_MAX_DECODED_PIXELS = 50_000_000
"""Largest image (in pixels) that `decode_png` agrees to decode.

A PNG header can declare any size; a decompression bomb is a small file
declaring a huge one.  50 million pixels is far above any Zooniverse
subject image.
"""

_PIL_MODE_BY_CHANNELS = {1: "L", 3: "RGB", 4: "RGBA"}
_PNG_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}
_MAX_IDAT = 1 << 30
_ALLOWED_PIL_MODES = frozenset(_PIL_MODE_BY_CHANNELS.values())


class PngError(ValueError):
    """Raised when bytes that should be a PNG are not a valid, decodable
    PNG within the configured limits.
    """


def validate_image_array(array: Any, *, what: str = "image") -> np.ndarray:
    """Check that an array can be stored as an 8-bit PNG.

    Parameters
    ----------
    array : `numpy.ndarray`
        Candidate pixels: ``uint8`` with shape ``(H, W)`` (grey),
        ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA), H and W at least 1.
    what : `str`, optional
        How to name the array in error messages.

    Returns
    -------
    array : `numpy.ndarray`
        The same pixels as a C-contiguous ``uint8`` array; 3-D arrays with
        one channel are squeezed to 2-D.

    Raises
    ------
    TypeError
        Raised if ``array`` is not a numpy array or its dtype is not
        ``uint8`` (floating-point images must be scaled to 0-255 first).
    ValueError
        Raised if the shape is not one of the accepted forms or is empty.
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{what} must be a numpy array or a PIL image, not {type(array).__name__}.")
    if array.dtype != np.uint8:
        hint = ""
        if np.issubdtype(array.dtype, np.floating):
            hint = (
                " Floating-point pixels must be scaled to 0-255 and converted with "
                "np.clip(x, 0, 255).astype(np.uint8) (NaN has no 8-bit value)."
            )
        raise TypeError(f"{what} must have dtype uint8, not {array.dtype}.{hint}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        pass
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        pass
    else:
        raise ValueError(
            f"{what} has shape {array.shape}; expected (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {array.shape}).")
    return np.ascontiguousarray(array)


def as_pil_image(image: Any, *, what: str = "image") -> Image.Image:
    """Return a PIL image for a PIL image or a uint8 array, after checking
    it.

    Parameters
    ----------
    image : `PIL.Image.Image` or `numpy.ndarray`
        The image.  PIL images must have mode ``L``, ``RGB`` or ``RGBA``.
    what : `str`, optional
        How to name the image in error messages.

    Returns
    -------
    pil_image : `PIL.Image.Image`
        The image; the input object itself when it already is a valid PIL
        image.

    Raises
    ------
    TypeError
        Raised for an unsupported type or dtype.
    ValueError
        Raised for an unsupported shape or mode, or an empty image.
    """
    if isinstance(image, Image.Image):
        if image.mode not in _ALLOWED_PIL_MODES:
            raise ValueError(
                f"{what} has PIL mode {image.mode!r}; expected one of {sorted(_ALLOWED_PIL_MODES)} "
                "(convert it with image.convert('RGB') first)."
            )
        if image.width == 0 or image.height == 0:
            raise ValueError(f"{what} is empty ({image.width}x{image.height}).")
        return image
    array = validate_image_array(image, what=what)
    return Image.fromarray(array, mode=_PIL_MODE_BY_CHANNELS[1 if array.ndim == 2 else array.shape[2]])


DEFLATE_VARIABLE = "EPO_ZOONIVERSE_PNG_DEFLATE"
"""Environment variable choosing the PNG deflate library: ``zlib`` (the
default) or ``isal``.

Intel ISA-L's deflate (the ``isal`` package) is about 2.5 times faster than
zlib's run-length deflate at level 1 on 101x101 pictures (files about as
large), but its output is not reproducible
byte for byte: a CI rerun of the pipeline once wrote one picture one byte
shorter (identical pixels, identical filtered data), which breaks the data
contract that a rerun gives identical ZIPs.  zlib costs about 0.2 ms more
per picture (a few per cent of the pipeline) and keeps that contract;
``isal`` trades it for speed where reproducibility does not matter.
"""


def _deflate_function(level: int) -> tuple[Any, str]:
    """Return the function compressing PNG image data at ``level`` and the
    name of its library.
    """
    choice = os.environ.get(DEFLATE_VARIABLE, "zlib").strip().lower() or "zlib"
    if choice not in ("zlib", "isal"):
        raise ValueError(f"{DEFLATE_VARIABLE} must be 'zlib' or 'isal', not {choice!r}.")
    if choice == "isal" and 1 <= level <= 3 and _isal_zlib is not None:
        return _isal_zlib.compress, "isal"
    if 1 <= level <= RLE_MAX_LEVEL:
        return _deflate_rle, "zlib"
    return zlib.compress, "zlib"


def _deflate_rle(data: Any, level: int) -> bytes:
    """Deflate ``data`` into a zlib stream with run-length matches only."""
    deflater = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, 8, zlib.Z_RLE)
    return deflater.compress(data) + deflater.flush()


def png_deflate_library(compress_level: int = DEFAULT_COMPRESS_LEVEL) -> str:
    """Name the deflate implementation `encode_png` uses at a level.

    Parameters
    ----------
    compress_level : `int`, optional
        Compression level, 0-9.

    Returns
    -------
    name : `str`
        ``"zlib"``, or ``"isal"`` (Intel ISA-L through the ``isal``
        package, levels 1-3, when installed and chosen with
        `DEFLATE_VARIABLE`).
    """
    return _deflate_function(compress_level)[1]


def _chunk(chunk_type: bytes, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(4, "big")
        + chunk_type
        + payload
        + zlib.crc32(payload, zlib.crc32(chunk_type)).to_bytes(4, "big")
    )


def _text_chunk(key: str, value: str) -> bytes:
    """``tEXt`` for a Latin-1 value, else an uncompressed ``iTXt``."""
    keyword = key.encode("latin-1")
    try:
        return _chunk(b"tEXt", keyword + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return _itxt_chunk(keyword, value)


def _itxt_chunk(keyword: bytes, value: str) -> bytes:
    # keyword, NUL, compression flag 0, method 0, empty language tag and
    # translated keyword (each NUL-terminated), UTF-8 text.
    return _chunk(b"iTXt", keyword + b"\0\0\0\0\0" + value.encode("utf-8"))


def encode_png(
    image: Any,
    *,
    text: Mapping[str, str] | None = None,
    xmp: bytes | str | None = None,
    compress_level: int = DEFAULT_COMPRESS_LEVEL,
) -> bytes:
    """Encode an image as PNG bytes with optional metadata chunks.

    Parameters
    ----------
    image : `PIL.Image.Image` or `numpy.ndarray`
        The pixels (see `as_pil_image`).
    text : `~collections.abc.Mapping` [`str`, `str`], optional
        Text chunks, written in the mapping's order: ``tEXt`` when the value
        is Latin-1, ``iTXt`` otherwise.
    xmp : `bytes` or `str`, optional
        An XMP packet (e.g. AVM tags from pyavm), written as the ``iTXt``
        chunk ``XML:com.adobe.xmp`` that XMP readers look for.
    compress_level : `int`, optional
        Compression level, 0-9 (zlib's deflate; run-length matches only at
        levels 1-3, see `DEFAULT_COMPRESS_LEVEL`; Intel ISA-L's deflate at
        levels 1-3 when chosen with `DEFLATE_VARIABLE`).

    Returns
    -------
    data : `bytes`
        The PNG file.  Identical inputs give identical bytes with zlib (the
        same zlib version); not always with ISA-L.

    Raises
    ------
    TypeError, ValueError
        Raised for invalid pixels (see `as_pil_image`), metadata keys or
        compression levels.

    Notes
    -----
    The file is 8 bits per sample, not interlaced, and every row uses PNG
    filter type 0 (None): on astronomical pictures (noise everywhere) the
    other filters only make the data harder to compress, and choosing one
    per row costs more than the deflate itself.  Chunks: ``IHDR``, the text
    chunks, the XMP ``iTXt``, ``IDAT`` (in pieces of at most 1 GiB),
    ``IEND``.  At the default level, zlib's run-length deflate is about
    1.5 times faster than its full search and gives files about 15 % smaller
    on sky pictures; ISA-L (not reproducible byte for byte) is faster still
    (bench/RESULTS.md).
    """
    if not isinstance(compress_level, int) or not 0 <= compress_level <= 9:
        raise ValueError(f"PNG compress_level must be an integer from 0 to 9, not {compress_level!r}.")
    text = dict(text or {})
    for key, value in text.items():
        check_text_key(key)
        check_text_value(key, value)
    if isinstance(image, Image.Image):
        as_pil_image(image)  # Validates the mode and size.
        if "transparency" in image.info or "icc_profile" in image.info:
            # Pillow writes these (tRNS, iCCP) from the image itself.
            return _encode_png_pillow(image, text=text, xmp=xmp, compress_level=compress_level)
        array = np.asarray(image)
    else:
        array = validate_image_array(image)
    chunks = [_text_chunk(key, value) for key, value in text.items()]
    if xmp is not None:
        chunks.append(
            _itxt_chunk(XMP_KEYWORD.encode("latin-1"), xmp.decode("utf-8") if isinstance(xmp, bytes) else xmp)
        )
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    ihdr = (
        width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, _PNG_COLOUR_TYPE[channels], 0, 0, 0])
    )
    rows = np.empty((height, width * channels + 1), dtype=np.uint8)
    rows[:, 0] = 0  # Filter type None.
    rows[:, 1:] = array.reshape(height, width * channels)
    compress, _ = _deflate_function(compress_level)
    data = compress(rows.data, compress_level)
    parts = [PNG_SIGNATURE, _chunk(b"IHDR", ihdr), *chunks]
    view = memoryview(data)
    for start in range(0, len(data), _MAX_IDAT):
        parts.append(_chunk(b"IDAT", bytes(view[start : start + _MAX_IDAT])))
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


def _encode_png_pillow(
    image: Any,
    *,
    text: Mapping[str, str] | None = None,
    xmp: bytes | str | None = None,
    compress_level: int = DEFAULT_COMPRESS_LEVEL,
) -> bytes:
    """`encode_png` done by Pillow (adaptive row filters, zlib): the
    reference the tests and the benchmark compare against.
    """
    pil_image = as_pil_image(image)
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        check_text_key(key)
        info.add_text(key, value)
    if xmp is not None:
        info.add_itxt(XMP_KEYWORD, xmp.decode("utf-8") if isinstance(xmp, bytes) else xmp)
    buffer = io.BytesIO()
    pil_image.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level, optimize=False)
    return buffer.getvalue()


def check_text_key(key: Any) -> None:
    """Raise if ``key`` cannot be a PNG text-chunk keyword (1-79 Latin-1
    characters, no leading/trailing/double spaces).
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
    """Raise if ``value`` cannot be the text of a PNG text chunk."""
    if not isinstance(value, str):
        raise TypeError(f"PNG text value for {key!r} must be a str, not {type(value).__name__}.")
    if "\0" in value:
        raise ValueError(f"PNG text value for {key!r} contains a NUL character.")


def iter_chunks(data: bytes, name: str):
    """Yield ``(type, payload)`` of every chunk, checking structure and
    CRCs, without decompressing image data.
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
