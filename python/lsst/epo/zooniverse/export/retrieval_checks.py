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

"""Checks of a dataset's file around its retrieval from the Butler.

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
"""

from __future__ import annotations

__all__ = [
    "RULES",
    "RetrievalRefusedError",
    "RetrievalUnavailableError",
    "check_datastore_file",
    "check_retrieved_copy",
]

import hashlib
import os
import stat
from typing import Any

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
    """
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


def check_retrieved_copy(ref: Any, artifact: str) -> None:
    """Compare a retrieved copy with what the datastore recorded.

    Parameters
    ----------
    ref : `lsst.daf.butler.DatasetRef`
        The dataset, read with ``datastore_records=True`` (without records
        there is nothing to compare).
    artifact : `str`
        The copy.

    Raises
    ------
    RetrievalRefusedError
        Raised for ``retrieval.size_mismatch`` or
        ``retrieval.checksum_mismatch``.
    """
    # DatasetRef has no public accessor for the records get_dataset read.
    records = getattr(ref, "_datastore_records", None) or {}
    infos = [info for table in records.values() for info in table if getattr(info, "component", None) is None]
    if len(infos) != 1:
        return
    info = infos[0]
    size = os.path.getsize(artifact)
    expected = getattr(info, "file_size", -1)
    if expected is not None and expected >= 0 and size != expected:
        raise RetrievalRefusedError(
            "retrieval.size_mismatch",
            f"the retrieved file has {size} bytes; the datastore recorded {expected} (changed or truncated "
            "since it was written)",
        )
    checksum = getattr(info, "checksum", None)
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
