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

This module holds the encoder; the chunks (`.png_chunks`) and the readers
(`.png_read`) have their own modules, whose public names are re-exported
here.
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
    "encode_png_array",
    "iter_chunks",
    "png_deflate_library",
    "read_png_text",
    "strip_png_text_chunks",
    "validate_image_array",
    "xmp_chunk",
]

import functools
import io
import os
import struct
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from .png_chunks import (
    PNG_SIGNATURE,
    XMP_KEYWORD,
    PngError,
    check_text_key,
    check_text_value,
    chunk,
    iter_chunks,
    itxt_chunk,
    text_chunk,
)
from .png_read import DEFAULT_MAX_DECODED_PIXELS, decode_png, read_png_text, strip_png_text_chunks

try:
    from isal import isal_zlib as _isal_zlib
except ImportError:  # Optional: zlib serves every level.
    _isal_zlib = None

try:
    from zlib_ng import zlib_ng as _rle_zlib

    _RLE_LIBRARY = "zlib-ng"
except ImportError:  # Optional: zlib gives the same bytes, about 2x slower.
    _rle_zlib = zlib
    _RLE_LIBRARY = "zlib"

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
`DEFAULT_COMPRESS_LEVEL`).

Run-length deflate uses zlib-ng (the ``zlib-ng`` package) where it is
installed: on the pipeline's pictures it is about 1.9 times faster than
zlib's and gives the same bytes (a run-length match can only be the
previous byte; ``tests/test_cutout.py`` checks the two streams are equal
at levels 1-9 on noise, sky and padding from 16 to 1024 px), so the
output does not depend on which one is installed.  Levels 4-9 (the full
match search, where the two differ) always use zlib.
"""

_PIL_MODE_BY_CHANNELS = {1: "L", 3: "RGB", 4: "RGBA"}

_PNG_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}

_MAX_IDAT = 1 << 30

_ALLOWED_PIL_MODES = frozenset(_PIL_MODE_BY_CHANNELS.values())


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
        return _deflate_rle, _RLE_LIBRARY
    return zlib.compress, "zlib"


def _deflate_rle(data: Any, level: int) -> bytes:
    """Deflate ``data`` into a zlib stream with run-length matches only
    (zlib-ng where installed: the same bytes as zlib's, see
    `RLE_MAX_LEVEL`).
    """
    deflater = _rle_zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, 8, zlib.Z_RLE)
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
        ``"zlib"``, ``"zlib-ng"`` (levels 1-3 where the ``zlib-ng``
        package is installed: the same bytes as zlib), or ``"isal"`` (Intel
        ISA-L through the ``isal`` package, levels 1-3, when installed and
        chosen with `DEFLATE_VARIABLE`).
    """
    return _deflate_function(compress_level)[1]


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
    chunks = [text_chunk(key, value) for key, value in text.items()]
    if xmp is not None:
        chunks.append(xmp_chunk(xmp))
    return encode_png_array(array, chunks, compress_level)


def xmp_chunk(xmp: bytes | str) -> bytes:
    """Frame an XMP packet as the ``iTXt`` chunk `encode_png` writes.

    Parameters
    ----------
    xmp : `bytes` or `str`
        The packet (UTF-8 if `bytes`).

    Returns
    -------
    chunk : `bytes`
        The uncompressed ``iTXt`` chunk ``XML:com.adobe.xmp``.
    """
    return itxt_chunk(XMP_KEYWORD.encode("latin-1"), xmp.decode("utf-8") if isinstance(xmp, bytes) else xmp)


def encode_png_array(array: np.ndarray, chunks: Sequence[bytes], compress_level: int) -> bytes:
    """Encode a checked array with metadata chunks already framed: what
    `encode_png` does after its checks.

    Parameters
    ----------
    array : `numpy.ndarray`
        C-contiguous ``uint8`` pixels as `validate_image_array` returns
        them.
    chunks : `~collections.abc.Sequence` [`bytes`]
        Framed chunks written between ``IHDR`` and ``IDAT`` (e.g. from
        `~.png_chunks.text_chunk`).
    compress_level : `int`
        Compression level, 0-9 (not checked here).

    Returns
    -------
    data : `bytes`
        The PNG file: rows with filter type 0, deflated at
        ``compress_level``.
    """
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    ihdr = _IHDR.pack(width, height, 8, _PNG_COLOUR_TYPE[channels], 0, 0, 0)
    # The filter type byte (0, None) before each row, in one copy.
    rows = np.concatenate((_zero_column(height), array.reshape(height, width * channels)), axis=1)
    compress, _ = _deflate_function(compress_level)
    parts = [PNG_SIGNATURE, chunk(b"IHDR", ihdr), *chunks]
    if compress is _deflate_rle:
        # The stream's two pieces framed as one IDAT chunk, without joining
        # them first.
        deflater = _rle_zlib.compressobj(compress_level, zlib.DEFLATED, zlib.MAX_WBITS, 8, zlib.Z_RLE)
        body = deflater.compress(rows)
        tail = deflater.flush()
        size = len(body) + len(tail)
        if size <= _MAX_IDAT:
            crc = _rle_zlib.crc32(tail, _rle_zlib.crc32(body, _IDAT_CRC))
            parts += [size.to_bytes(4, "big"), b"IDAT", body, tail, crc.to_bytes(4, "big"), _IEND]
            return b"".join(parts)
        data = body + tail
    else:
        data = compress(rows.data, compress_level)
    view = memoryview(data)
    for start in range(0, len(data), _MAX_IDAT):
        parts.append(chunk(b"IDAT", bytes(view[start : start + _MAX_IDAT])))
    parts.append(_IEND)
    return b"".join(parts)


_IHDR = struct.Struct(">IIBBBBB")
"""Layout of the ``IHDR`` payload: width, height, bit depth, colour type,
compression, filter and interlace methods."""

_IDAT_CRC = zlib.crc32(b"IDAT")
"""CRC of the chunk type, where an ``IDAT`` chunk's CRC starts."""

_IEND = chunk(b"IEND", b"")
"""The framed ``IEND`` chunk."""


@functools.lru_cache(maxsize=64)
def _zero_column(height: int) -> np.ndarray:
    """Return a read-only ``(height, 1)`` column of filter type bytes 0."""
    column = np.zeros((height, 1), dtype=np.uint8)
    column.flags.writeable = False
    return column


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
