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

"""Checks of one PNG of an artifact.

`check_png` reads a PNG's dimensions from its header and checks them
before anything is decoded, then its whole chunk structure, then decodes
its pixels; for an anonymised project it strips the text chunks the
`DataRightsPolicy` does not keep and refuses an image when any chunk it
would publish that can carry text still holds the object id or
coordinates (`~lsst.epo.zooniverse.export.anonymisation.IdentifyingValues`):
every ``tEXt``, ``zTXt`` and ``iTXt`` (XMP included) kept, every copy of a
kept keyword, an ``iTXt``'s language tag and translated keyword, the
``iCCP`` profile name and its profile (whose ``desc`` text may be
UTF-16), and ``eXIf`` should it be kept.  Refusing, rather than
stripping an identifying ``iCCP``, is deliberate: the published bytes are
then exactly the bytes checked.  Compressed chunks are inflated with a
cap.  A problem rejects only the image concerned: `ImageRejectedError`
carries its finding.
"""

from __future__ import annotations

__all__ = ["CheckedPng", "ImageRejectedError", "check_png"]

import dataclasses
import zlib
from collections.abc import Callable, Sequence

from ..formats.png import (
    PNG_SIGNATURE,
    PngError,
    decode_png,
    iter_chunks,
    read_png_text,
    strip_png_text_chunks,
)
from .anonymisation import IdentifyingValues
from .content_sniffing import describe_content
from .policy import DataRightsPolicy
from .validation_results import Finding, escape_message, show_name

_MAX_TEXT_BYTES = 1 << 20
_ANIMATION_CHUNKS = frozenset({b"acTL", b"fcTL", b"fdAT"})
"""APNG chunks: only frame 0 would be decoded, the others never checked."""
_TEXT_KEYS_TO_HIDE = frozenset({"object_id", "objectid", "ra", "dec"})
_TEXT_BEARING_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt", b"iCCP", b"eXIf"})
"""Chunks that can carry text: checked wherever they are published."""


class ImageRejectedError(Exception):
    """Raised when a rule refuses one image.

    Parameters
    ----------
    finding : `Finding`
        Why.
    """

    def __init__(self, finding: Finding) -> None:
        super().__init__(str(finding))
        self.finding = finding


@dataclasses.dataclass(frozen=True)
class CheckedPng:
    """A PNG that passed `check_png`."""

    data: bytes
    """The bytes to publish: the file, stripped for anonymised projects
    (`bytes`).
    """

    width: int
    """Width in pixels (`int`)."""

    height: int
    """Height in pixels (`int`)."""

    stripped: tuple[str, ...]
    """Chunks removed, as described by
    `~lsst.epo.zooniverse.formats.png.strip_png_text_chunks`
    (`tuple` [`str`, ...]).
    """


def check_png(
    data: bytes,
    *,
    entry: str,
    object_id: str,
    coordinates: Sequence[str],
    size: int,
    policy: DataRightsPolicy,
    metadata_policy: str,
) -> CheckedPng:
    """Check one PNG from its header to its pixels, and strip its text
    for anonymised projects.

    Parameters
    ----------
    data : `bytes`
        The PNG file (at most one byte more than ``policy.max_png_bytes``
        is enough to refuse a larger one).
    entry : `str`
        Its entry name, for findings.
    object_id : `str`
        Its object id, which the text kept for anonymised projects may
        not hold.
    coordinates : `~collections.abc.Sequence` [`str`]
        Its RA and Dec as text, which the kept text may not hold either.
    size : `int`
        The file's size, for the message of a file too large.
    policy : `DataRightsPolicy`
        Limits, and the text keys anonymised projects keep.
    metadata_policy : `str`
        ``full`` (bytes kept as they are) or ``anonymised``.

    Returns
    -------
    checked : `CheckedPng`
        The bytes to publish, dimensions and chunks removed.

    Raises
    ------
    ImageRejectedError
        Raised, with its finding, if a ``png.*`` or ``metadata.*`` rule
        refuses the image.
    """
    # Long by its docstring; the checks follow the file, header first.
    shown = show_name(entry)

    def reject(rule: str, message: str) -> ImageRejectedError:
        return ImageRejectedError(Finding(rule, entry, escape_message(f"{shown}: {message}")))

    if len(data) > policy.max_png_bytes:
        raise reject(
            "png.file_size",
            f"the PNG file is {size} bytes, over the limit of {policy.max_png_bytes} bytes.",
        )
    if not data.startswith(PNG_SIGNATURE):
        raise reject("png.signature", f"not a PNG file: {describe_content(data)}.")
    width, height = _check_header(data, policy, reject)
    # Whole chunk structure: lengths, CRCs, IEND, nothing after it.
    end = len(PNG_SIGNATURE)
    animation: set[str] = set()
    try:
        for chunk_type, payload in iter_chunks(data, shown):
            end += 12 + len(payload)
            if chunk_type in _ANIMATION_CHUNKS:
                animation.add(chunk_type.decode("ascii"))
    except PngError as err:
        raise reject("png.corrupt", _without_name(err, shown)) from None
    if end != len(data):
        raise reject(
            "png.corrupt",
            f"{len(data) - end} bytes of data follow the IEND chunk (appended file or hidden payload).",
        )
    if animation:
        raise reject(
            "png.animated",
            f"animated PNG (APNG: {', '.join(sorted(animation))} chunks); only still images are accepted "
            "(frames after the first would never be checked).",
        )
    stripped: list[str] = []
    output = data
    if metadata_policy == "anonymised":
        # Every chunk published that can carry text is checked, with
        # capped inflation, before the pixels are decoded.
        try:
            original_text = read_png_text(data, name=shown, max_text_bytes=_MAX_TEXT_BYTES)
            output, stripped = strip_png_text_chunks(data, keep_keys=policy.anonymised_text_keys, name=shown)
            hidden = [v for k, v in original_text.items() if k.strip().lower() in _TEXT_KEYS_TO_HIDE]
            identifying = IdentifyingValues(object_id, [*coordinates, *hidden])
            leak = _find_identifying_chunk(output, identifying, shown)
        except PngError as err:
            raise reject("png.corrupt", _without_name(err, shown)) from None
        if leak is not None:
            raise reject(
                "metadata.identifying",
                f"{leak[0]} kept for anonymised projects holds the identifying "
                f"value '{show_name(leak[1])}' (object id or coordinate).",
            )
    try:
        decode_png(output, name=shown, max_pixels=policy.max_png_pixels)
    except PngError as err:
        raise reject("png.decode", _without_name(err, shown)) from None
    return CheckedPng(output, width, height, tuple(stripped))


def _find_identifying_chunk(data: bytes, identifying: IdentifyingValues, name: str) -> tuple[str, str] | None:
    """Return the description of the first chunk of ``data`` that can
    carry text and holds an identifying value, and the value found.
    """
    for chunk_type, payload in iter_chunks(data, name):
        if chunk_type not in _TEXT_BEARING_CHUNKS:
            continue
        try:
            what, texts = _chunk_texts(chunk_type, payload, name)
        except (zlib.error, UnicodeDecodeError, IndexError) as err:
            raise PngError(f"{name}: corrupt {chunk_type.decode()} chunk ({err}).") from None
        for text in texts:
            found = identifying.find(text)
            if found is not None:
                return what, found
    return None


def _chunk_texts(chunk_type: bytes, payload: bytes, name: str) -> tuple[str, list[str]]:
    """Describe a chunk that can carry text and return every text in it:
    keyword, value (inflated with a cap), language tag and translated
    keyword; for binary payloads (``iCCP`` profile, ``eXIf``) also the
    text with NUL bytes removed, which is how UTF-16 text reads.
    """
    if chunk_type == b"eXIf":
        return "eXIf chunk", [payload.decode("latin-1"), payload.replace(b"\0", b"").decode("latin-1")]
    keyword, _, rest = payload.partition(b"\0")
    key = keyword.decode("latin-1")
    if chunk_type == b"tEXt":
        return f"text chunk '{show_name(key)}'", [key, rest.decode("latin-1")]
    if chunk_type == b"zTXt":
        return f"text chunk '{show_name(key)}'", [key, _inflate(rest[1:], name, key).decode("latin-1")]
    if chunk_type == b"iCCP":
        profile = _inflate(rest[1:], name, key)
        texts = [key, profile.decode("latin-1"), profile.replace(b"\0", b"").decode("latin-1")]
        return f"iCCP chunk (colour profile '{show_name(key)}')", texts
    compressed, rest = rest[0], rest[2:]
    language, _, rest = rest.partition(b"\0")
    translated, _, value = rest.partition(b"\0")
    if compressed:
        value = _inflate(value, name, key)
    texts = [key, language.decode("latin-1"), translated.decode("utf-8"), value.decode("utf-8")]
    return f"text chunk '{show_name(key)}'", texts


def _inflate(compressed: bytes, name: str, key: str) -> bytes:
    """Inflate a chunk's compressed text or profile, at most
    ``_MAX_TEXT_BYTES`` bytes.
    """
    inflater = zlib.decompressobj()
    value = inflater.decompress(compressed, _MAX_TEXT_BYTES + 1)
    if len(value) > _MAX_TEXT_BYTES:
        raise PngError(
            f"{name}: compressed chunk '{show_name(key)}' inflates to more than {_MAX_TEXT_BYTES} bytes."
        )
    if not inflater.eof:
        raise zlib.error("incomplete or truncated stream")
    return value


def _check_header(
    data: bytes, policy: DataRightsPolicy, reject: Callable[[str, str], ImageRejectedError]
) -> tuple[int, int]:
    """Read the dimensions from ``IHDR`` and check them against the
    limits, before anything is decoded.
    """
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


def _without_name(error: Exception, shown: str) -> str:
    """Return a `PngError` message without the file-name prefix the
    finding already carries.
    """
    message = str(error)
    prefix = f"{shown}: "
    return message[len(prefix) :] if message.startswith(prefix) else message
