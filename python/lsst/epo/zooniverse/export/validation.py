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

This module runs a validation; the checks live by concern in
`~lsst.epo.zooniverse.export.zip_container` (the ZIP),
`~lsst.epo.zooniverse.export.index_checks` (``index.csv``),
`~lsst.epo.zooniverse.export.png_checks` (each PNG) and
`~lsst.epo.zooniverse.export.anonymisation` (identifying text), and the
results in `~lsst.epo.zooniverse.export.validation_results`, whose public
names are importable from here too.
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

import hashlib
import os
import secrets
import stat
from collections.abc import Sequence
from typing import IO

from ..formats.rgb_index import INDEX_NAME, normalize_metadata_policy
from .content_sniffing import archive_kind
from .index_checks import identifying_index_value, match_index, parse_index
from .png_checks import CheckedPng, ImageRejectedError, check_png
from .policy import DataRightsPolicy
from .validation_results import (
    RULES,
    AcceptedFrame,
    AcceptedImage,
    ArtifactFindings,
    Finding,
    RejectedImage,
    ValidationResult,
    escape_message,
    show_name,
)
from .zip_container import (
    ENTRY_NAME_PATTERN,
    InflatedTotals,
    check_central_directory,
    compression_ratio,
    entry_name_problem,
    open_archive,
    read_entry,
)


class _Output:
    """Atomic writes of accepted images into one directory, undone if the
    artifact is rejected.
    """

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = os.path.abspath(directory)
        self.written: list[str] = []

    def write(self, entry: str, data: bytes) -> str:
        # The entry passed entry_name_problem; check again what matters
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


class _Validator:
    """State of one validation: findings, results, files written."""

    def __init__(self, policy: DataRightsPolicy, metadata_policy: str, output_dir: str) -> None:
        if not isinstance(policy, DataRightsPolicy):
            raise TypeError(f"policy must be a DataRightsPolicy, not {type(policy).__name__}.")
        self.policy = policy
        self.metadata_policy = normalize_metadata_policy(metadata_policy)
        self.output = _Output(output_dir)
        self.findings = ArtifactFindings()
        self.accepted: list[AcceptedImage] = []
        self.rejected: list[RejectedImage] = []

    def result(self) -> ValidationResult:
        findings = self.findings.all()
        if findings:
            self.output.discard()
            return ValidationResult(findings, (), tuple(self.rejected))
        self.output.sync()
        return ValidationResult((), tuple(self.accepted), tuple(self.rejected))

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
            if self.metadata_policy == "anonymised":
                self._check_index_row(entry, object_id, index_row)
            picture = self._check_png(data, entry, object_id, coordinates, size)
            output, width, height = picture.data, picture.width, picture.height
            checked = []
            for band, frame_entry, frame_data in frames:
                try:
                    frame = self._check_png(frame_data, frame_entry, object_id, coordinates, len(frame_data))
                    frame_output, frame_width, frame_height = frame.data, frame.width, frame.height
                except ImageRejectedError as rejection:
                    raise ImageRejectedError(
                        Finding(
                            "frame.rejected",
                            entry,
                            escape_message(f"{show_name(entry)}: its {band} frame fails {rejection.finding}"),
                        )
                    ) from None
                if (frame_width, frame_height) != (width, height):
                    raise ImageRejectedError(
                        Finding(
                            "frame.dimensions",
                            entry,
                            escape_message(
                                f"{show_name(entry)}: its {band} frame '{show_name(frame_entry)}' is "
                                f"{frame_width}x{frame_height}, the picture {width}x{height}."
                            ),
                        )
                    )
                checked.append((band, frame_entry, frame_output))
        except ImageRejectedError as rejection:
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
                stripped=picture.stripped,
                index_row=index_row,
                frames=accepted_frames,
            )
        )

    def _check_index_row(self, entry: str, object_id: str, index_row: dict[str, str]) -> None:
        """Refuse an image of an anonymised project whose ``index.csv``
        values that reach the manifest hold the object id or coordinates.
        """
        leak = identifying_index_value(index_row, object_id)
        if leak is not None:
            raise ImageRejectedError(
                Finding(
                    "metadata.identifying",
                    entry,
                    escape_message(
                        f"{show_name(entry)}: {INDEX_NAME} column '{show_name(leak[0])}', published in "
                        f"the manifest, holds the identifying value '{show_name(leak[1])}' "
                        "(object id or coordinate)."
                    ),
                )
            )

    def _check_png(
        self, data: bytes, entry: str, object_id: str, coordinates: Sequence[str], size: int
    ) -> CheckedPng:
        return check_png(
            data,
            entry=entry,
            object_id=object_id,
            coordinates=coordinates,
            size=size,
            policy=self.policy,
            metadata_policy=self.metadata_policy,
        )

    def rgb_zip(self, stream: IO[bytes], name: str) -> None:
        policy = self.policy
        archive = open_archive(stream, name, policy, self.findings)
        if archive is None:
            return
        with archive:
            entries = check_central_directory(archive, archive.infolist(), policy, self.findings)
            if self.findings.found:
                return
            index_info = entries.get(INDEX_NAME)
            if index_info is None:
                self.findings.add("index.missing", None, f"the ZIP has no {INDEX_NAME} entry.")
                return
            totals = InflatedTotals()
            index_data = read_entry(
                archive, index_info, policy.max_index_bytes, totals, policy, self.findings
            )
            if index_data is None:
                return
            rows = parse_index(index_data, self.findings)
            if rows is None:
                return
            pngs = {entry: info for entry, info in entries.items() if entry != INDEX_NAME}
            matched = match_index(rows, pngs, self.findings)
            if matched is None:
                return
            rows_by_file, frames_by_file = matched

            def read_png(entry: str) -> bytes | None:
                data = read_entry(
                    archive, pngs[entry], policy.max_entry_uncompressed_bytes, totals, policy, self.findings
                )
                if data is None:
                    return None
                kind = archive_kind(data)
                if kind is not None:
                    self.findings.add(
                        "zip.nested_archive",
                        entry,
                        f"entry '{show_name(entry)}' is {kind} disguised as a PNG (nested archive).",
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
            ratio = compression_ratio(totals.inflated, totals.compressed)
            if ratio > policy.max_compression_ratio:
                self.findings.add(
                    "zip.compression_ratio",
                    None,
                    f"the ZIP inflates {totals.compressed} bytes to {totals.inflated} "
                    f"(ratio {ratio:.1f}, limit {policy.max_compression_ratio:g}).",
                )


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
        problem = entry_name_problem(entry) if isinstance(entry, str) else "is not a string"
        if problem is None and entry == INDEX_NAME:
            problem = "is not a .png name"
        if problem is not None:
            validator.findings.add(
                "file.entry_name", entry, f"cutout name '{show_name(str(entry))}' {problem}."
            )
            return validator.result()
        limit = policy.max_png_bytes
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        descriptor = os.open(path, flags)
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            os.close(descriptor)
            validator.findings.add(
                "file.not_regular", entry, f"'{show_name(os.path.basename(path))}' is not a regular file."
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
