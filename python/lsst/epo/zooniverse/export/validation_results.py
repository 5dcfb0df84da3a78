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

"""What validating an exported artifact finds and keeps.

The rules (`RULES`), the findings (`Finding`, collected by
`ArtifactFindings`), the images accepted or rejected and the
`ValidationResult` of `lsst.epo.zooniverse.export.validation`, with the
escaping that makes hostile entry names and messages safe to show
(`show_name`, `escape_message`).
"""

from __future__ import annotations

__all__ = [
    "MAX_LISTED_FINDINGS",
    "RULES",
    "AcceptedFrame",
    "AcceptedImage",
    "ArtifactFindings",
    "Finding",
    "RejectedImage",
    "ValidationResult",
    "escape_message",
    "show_name",
]

import dataclasses

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
    "png.animated": ("image", "animated PNG (APNG: acTL, fcTL or fdAT chunks)"),
    "png.decode": ("image", "pixel data cannot be fully decoded"),
    "frame.rejected": ("image", "one of the picture's band frames failed a png.* or metadata.* rule"),
    "frame.dimensions": ("image", "a band frame's size differs from its picture's"),
    "metadata.identifying": ("image", "an anonymised PNG's kept text holds the object id or coordinates"),
}
"""Every rule: name -> (``"artifact"`` or ``"image"``, summary).  An
``artifact`` finding rejects the whole artifact, an ``image`` finding only
the image concerned.
"""

MAX_LISTED_FINDINGS = 100
"""Most artifact findings listed one by one; the rest are counted (`int`)."""

_MAX_SHOWN_NAME = 160


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
        return f"{self.rule} [{show_name(self.entry)}]: {self.message}"


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


class ArtifactFindings:
    """The findings that reject a whole artifact, in the order found.

    At most `MAX_LISTED_FINDINGS` are kept; further ones are only counted.
    """

    def __init__(self) -> None:
        self.listed: list[Finding] = []
        self.unlisted = 0

    @property
    def found(self) -> bool:
        """Whether any finding was added (`bool`)."""
        return bool(self.listed)

    def add(self, rule: str, entry: str | None, message: str) -> None:
        """Record one finding.

        Parameters
        ----------
        rule : `str`
            An ``artifact`` rule of `RULES`.
        entry : `str` or `None`
            Entry concerned, `None` for the whole artifact.
        message : `str`
            What is wrong; escaped with `escape_message`.
        """
        assert RULES[rule][0] == "artifact", rule
        if len(self.listed) < MAX_LISTED_FINDINGS:
            self.listed.append(Finding(rule, entry, escape_message(message)))
        else:
            self.unlisted += 1

    def all(self) -> tuple[Finding, ...]:
        """Return the findings, ending with one that counts those not
        listed, if any.

        Returns
        -------
        findings : `tuple` [`Finding`, ...]
            The listed findings (and the count of the others).
        """
        findings = list(self.listed)
        if self.unlisted:
            last = findings[-1]
            findings.append(
                Finding(last.rule, None, f"{self.unlisted} more problems of this artifact are not listed.")
            )
        return tuple(findings)


def show_name(name: str) -> str:
    """Return an entry name fit to show.

    Parameters
    ----------
    name : `str`
        Entry name, as found in an artifact.

    Returns
    -------
    shown : `str`
        ``name`` with anything but printable ASCII escaped, shortened if
        very long: safe for logs, e-mails and the audit table.
    """
    name = escape_message(name)
    if len(name) > _MAX_SHOWN_NAME:
        name = name[:_MAX_SHOWN_NAME] + "..."
    return name


def escape_message(text: str) -> str:
    """Return a message fit to show.

    Parameters
    ----------
    text : `str`
        Message (it may quote library errors that quote hostile bytes).

    Returns
    -------
    escaped : `str`
        ``text`` with anything but printable ASCII escaped.
    """
    if text.isascii() and text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")
