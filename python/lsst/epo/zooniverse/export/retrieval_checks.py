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

"""Checks of a dataset's file around its retrieval from the Butler, direct
or client/server (the RSP's Butler server, `RemoteButler`).

Before the copy, `check_datastore_file` refuses a local datastore file that
is a symbolic link or lies outside every datastore root (a PI who can write
in the datastore could otherwise make the service publish another user's
file); after it, `check_retrieved_copy` compares the copy with the size and
checksum the datastore recorded when the dataset was written.  A refusal is
a `RetrievalRefusedError` whose rule names the check (`RULES`).  A file
that is missing, or is a directory, a FIFO or anything but a regular file,
raises `RetrievalUnavailableError`: the poll fails and a later one tries
again (the file may come back), up to a bounded number of attempts
(``retrieval.unavailable``).

A `RemoteButler` has no local datastore: the server signs a URL for the
file and the client downloads it (``retrieveArtifacts``), so there is no
link or root to check before the copy; the copy is checked against the
datastore record the server sent with the URL, which the Butler writes
next to the copy in its artifact index (`recorded_file_info`).
"""

from __future__ import annotations

__all__ = [
    "RULES",
    "RetrievalRefusedError",
    "RetrievalUnavailableError",
    "check_datastore_file",
    "check_retrieved_copy",
    "is_remote_butler",
    "recorded_file_info",
]

import hashlib
import os
import stat
from typing import Any, NamedTuple

RULES: dict[str, str] = {
    "retrieval.unavailable": "the dataset's file stayed missing, a directory or not a regular file",
    "retrieval.symlink": "the datastore file is a symbolic link",
    "retrieval.outside_datastore": "the datastore file is outside every datastore root",
    "retrieval.size_mismatch": "the retrieved file's size differs from the datastore record's file_size",
    "retrieval.checksum_mismatch": "the retrieved file's checksum differs from the datastore record's",
}
"""Every retrieval rule: name -> summary."""


class RetrievalRefusedError(Exception):
    """Raised when a dataset's file may not be retrieved.

    Parameters
    ----------
    rule : `str`
        A key of `RULES`.
    message : `str`
        What is wrong.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule


class RetrievalUnavailableError(RuntimeError):
    """Raised when a dataset's file cannot be read now: missing, or not a
    regular file.
    """


class RecordedFile(NamedTuple):
    """What a datastore recorded about a dataset's file."""

    file_size: int
    """Its size in bytes (negative if unknown)."""
    checksum: str | None
    """Its blake2b checksum, if the datastore computed one."""


def is_remote_butler(butler: Any) -> bool:
    """Tell whether a Butler is a client of a Butler server.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        The Butler.

    Returns
    -------
    remote : `bool`
        `True` for a `lsst.daf.butler.remote_butler.RemoteButler`.
    """
    try:
        from lsst.daf.butler.remote_butler import RemoteButler
    except ImportError:  # The client's dependencies are not installed.
        return False
    return isinstance(butler, RemoteButler)


def recorded_file_info(directory: str, name: str) -> RecordedFile | None:
    """Read what the datastore recorded about a retrieved file from the
    artifact index the Butler wrote with it.

    Parameters
    ----------
    directory : `str`
        The directory ``retrieveArtifacts`` copied into.
    name : `str`
        The copied file's name in it.

    Returns
    -------
    recorded : `RecordedFile` or `None`
        Its recorded size and checksum; `None` if there is no index or it
        does not list the file.
    """
    from lsst.daf.butler.datastores.file_datastore.retrieve_artifacts import ZipIndex

    path = os.path.join(directory, ZipIndex.index_name)
    try:
        with open(path, "rb") as stream:
            index = ZipIndex.model_validate_json(stream.read())
    except FileNotFoundError:
        return None
    entry = index.artifact_map.get(name)
    if entry is None or entry.info.component is not None:
        return None
    return RecordedFile(entry.info.file_size, entry.info.checksum)


def check_datastore_file(butler: Any, ref: Any) -> None:
    """Refuse a local datastore file that is a symbolic link or lies
    outside the datastore roots.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        The PI's repository.
    ref : `lsst.daf.butler.DatasetRef`
        The dataset.

    Raises
    ------
    RetrievalRefusedError
        Raised for ``retrieval.symlink`` or ``retrieval.outside_datastore``.
    RetrievalUnavailableError
        Raised if the file is missing, or is a directory, a FIFO or
        anything but a regular file.

    Notes
    -----
    A `RemoteButler`'s files are only reached through URLs the server
    signs: there is nothing local to check.
    """
    if is_remote_butler(butler):
        return
    uri = butler.getURI(ref)
    if not uri.isLocal:
        return
    path = uri.ospath
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise RetrievalUnavailableError("the dataset's file is missing from the datastore") from None
    if not (stat.S_ISLNK(mode) or stat.S_ISREG(mode)):
        kind = "not a regular file"
        if stat.S_ISDIR(mode) or stat.S_ISFIFO(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO"
        raise RetrievalUnavailableError(f"the dataset's file in the datastore is {kind}")
    if stat.S_ISLNK(mode):
        raise RetrievalRefusedError(
            "retrieval.symlink", "the dataset's file in the datastore is a symbolic link; it is not followed"
        )
    real = os.path.realpath(path)
    roots = [
        os.path.realpath(root.ospath)
        for root in butler.get_datastore_roots().values()
        if root is not None and root.isLocal
    ]
    if not any(os.path.commonpath([real, root]) == root for root in roots):
        raise RetrievalRefusedError(
            "retrieval.outside_datastore",
            "the dataset's file is outside the datastore root (reached through a linked directory, or "
            "ingested in place)",
        )


def check_retrieved_copy(ref: Any, artifact: str, recorded: RecordedFile | None = None) -> None:
    """Compare a retrieved copy with what the datastore recorded.

    Parameters
    ----------
    ref : `lsst.daf.butler.DatasetRef`
        The dataset, read with ``datastore_records=True`` from a direct
        Butler.
    artifact : `str`
        The copy.
    recorded : `RecordedFile`, optional
        The record from the artifact index (`recorded_file_info`), used
        when ``ref`` carries no datastore record (a `RemoteButler`'s refs
        never do); with neither there is nothing to compare.

    Raises
    ------
    RetrievalRefusedError
        Raised for ``retrieval.size_mismatch`` or
        ``retrieval.checksum_mismatch``.
    """
    # DatasetRef has no public accessor for the records get_dataset read.
    records = getattr(ref, "_datastore_records", None) or {}
    infos = [info for table in records.values() for info in table if getattr(info, "component", None) is None]
    if len(infos) == 1:
        recorded = RecordedFile(getattr(infos[0], "file_size", -1), getattr(infos[0], "checksum", None))
    if recorded is None:
        return
    size = os.path.getsize(artifact)
    expected = recorded.file_size
    if expected is not None and expected >= 0 and size != expected:
        raise RetrievalRefusedError(
            "retrieval.size_mismatch",
            f"the retrieved file has {size} bytes; the datastore recorded {expected} (changed or truncated "
            "since it was written)",
        )
    checksum = recorded.checksum
    if checksum:
        digest = hashlib.blake2b()
        with open(artifact, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != checksum:
            raise RetrievalRefusedError(
                "retrieval.checksum_mismatch",
                "the retrieved file's blake2b checksum differs from the one the datastore recorded",
            )
