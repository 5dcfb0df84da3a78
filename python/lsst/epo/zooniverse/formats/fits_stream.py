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

"""Reading a FITS file one header at a time: sequential reads and skips,
headers parsed with `.fits_cards`, image data read straight into numpy.

What this reader is not sure about raises `.fits_cards.UnsupportedError`,
for the caller to read the file with astropy instead.
"""

from __future__ import annotations

__all__ = ["FitsStream", "data_size", "read_image_data", "read_primary_header"]

import io
from typing import IO, Any

import numpy as np

from .fits_cards import BLOCK, CARD, END_CARD, Header, UnsupportedError

_HEADER_TEXT = bytes(range(32, 127))

_END_CARD_BYTES = END_CARD.encode("ascii")


class FitsStream:
    """Sequential reads and skips on a binary file object.

    Parameters
    ----------
    stream : binary file object
        The file, positioned at the start of a header.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._readinto = getattr(stream, "readinto", None)
        self._seekable = stream.seekable() if hasattr(stream, "seekable") else False
        self._memo: dict[str, tuple[str, str, Any]] = {}

    def read(self, size: int) -> bytes:
        """Read bytes.

        Parameters
        ----------
        size : `int`
            How many.

        Returns
        -------
        data : `bytes`
            ``size`` bytes, fewer only at the end of the file.
        """
        chunks = []
        while size > 0:
            chunk = self._stream.read(size)
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    def readinto(self, buffer: memoryview) -> int:
        """Read bytes into a buffer.

        Parameters
        ----------
        buffer : `memoryview`
            The buffer to fill.

        Returns
        -------
        size : `int`
            Bytes read (fewer than the buffer's size only at the end of
            the file).
        """
        if self._readinto is None:
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        done = 0
        while done < len(buffer):
            n = self._readinto(buffer[done:])
            if not n:
                break
            done += n
        return done

    def skip(self, size: int) -> None:
        """Move on in the file (by seeking when the file can).

        Parameters
        ----------
        size : `int`
            Bytes to skip.
        """
        if size <= 0:
            return
        if self._seekable:
            self._stream.seek(size, io.SEEK_CUR)
        else:
            while size > 0:
                chunk = self._stream.read(min(size, 1 << 20))
                if not chunk:
                    break
                size -= len(chunk)

    def header(self) -> Header | None:
        """Read and parse the next header; `None` at the end of the file."""
        blocks = []
        while True:
            block = self.read(BLOCK)
            if not block and not blocks:
                return None
            if len(block) != BLOCK or block.translate(None, _HEADER_TEXT):
                raise UnsupportedError("truncated header or not header text")
            end = block.find(_END_CARD_BYTES)
            while end >= 0 and end % CARD:
                end = block.find(_END_CARD_BYTES, end + 1)
            if end >= 0:
                blocks.append(block[:end])
                return Header.parse(b"".join(blocks).decode("ascii"), self._memo)
            blocks.append(block)


def data_size(header: Header) -> int:
    """Return the bytes of data after a header, padding included.

    Parameters
    ----------
    header : `Header`
        The header of the HDU.

    Returns
    -------
    size : `int`
        Bytes to skip to reach the next header.

    Raises
    ------
    UnsupportedError
        Raised if the structure keywords are missing or not integers.
    """
    try:
        bitpix = header["BITPIX"]
        naxis = header["NAXIS"]
        pcount = header.get("PCOUNT", 0)
        gcount = header.get("GCOUNT", 1)
        if not all(type(v) is int for v in (bitpix, naxis, pcount, gcount)):
            raise UnsupportedError("non-integer structure keywords")
        if naxis == 0:
            return 0
        size = 1
        for axis in range(1, naxis + 1):
            length = header[f"NAXIS{axis}"]
            if type(length) is not int:
                raise UnsupportedError("non-integer NAXISn")
            size *= length
    except KeyError as err:
        raise UnsupportedError(f"missing {err}") from None
    size = abs(bitpix) // 8 * gcount * (pcount + size)
    return size + (-size % BLOCK)


_PLANE_DTYPES = {-32: ">f4", 32: ">i4", -64: ">f8", 16: ">i2", 64: ">i8", 8: "u1"}


def read_image_data(stream: FitsStream, header: Header, target: type[np.number]) -> np.ndarray:
    """Read the data of a 2-D image HDU whose header was just read.

    Parameters
    ----------
    stream : `FitsStream`
        The file, just after the header.
    header : `Header`
        The header.
    target : `type`
        The numpy type of the array returned (e.g. `numpy.float32`).

    Returns
    -------
    data : `numpy.ndarray`
        The pixels, native byte order, shape ``(NAXIS2, NAXIS1)``.

    Raises
    ------
    UnsupportedError
        Raised for a scaled or unusual image HDU, or truncated data.
    """
    bitpix = header.get("BITPIX")
    dtype = _PLANE_DTYPES.get(bitpix) if type(bitpix) is int else None
    if (
        dtype is None
        or header.get("NAXIS") != 2
        or header.get("PCOUNT", 0) != 0
        or header.get("GCOUNT", 1) != 1
        or header.get("BZERO", 0) != 0
        or header.get("BSCALE", 1) != 1
        or "BLANK" in header
        or (bitpix == 8 and "BZERO" in header)
    ):
        raise UnsupportedError("scaled or unusual image HDU")
    width, height = header.get("NAXIS1"), header.get("NAXIS2")
    if type(width) is not int or type(height) is not int or width <= 0 or height <= 0:
        raise UnsupportedError("unusual image size")
    data = np.empty((height, width), dtype=dtype)
    if stream.readinto(memoryview(data).cast("B")) != data.nbytes:
        raise UnsupportedError("truncated data")
    stream.skip(-data.nbytes % BLOCK)
    if data.dtype.itemsize == 4 and data.dtype.kind == np.dtype(target).kind:
        data.byteswap(inplace=True)
        return data.view(np.dtype(target))
    return data.astype(target)


def read_primary_header(stream: FitsStream) -> Header:
    """Read the primary header of a FITS file and skip its data.

    Parameters
    ----------
    stream : `FitsStream`
        The file, at its start.

    Returns
    -------
    header : `Header`
        The primary header.

    Raises
    ------
    UnsupportedError
        Raised if the file does not start like a FITS file, or has random
        groups.
    """
    header = stream.header()
    if header is None or not header.text.startswith("SIMPLE  =") or header.cards[0][2] is not True:
        raise UnsupportedError("not a FITS file")
    if "GROUPS" in header:
        raise UnsupportedError("random groups")
    stream.skip(data_size(header))
    return header
