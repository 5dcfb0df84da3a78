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
"""The staging area: EPO's private copies of retrieved datasets and of the
images waiting in quarantine, one directory per batch, and the digests
that tell whether a staged file is still the one that was checked.
"""

from __future__ import annotations

__all__ = ["StagedFile", "StagingArea", "read_staged_file", "sha256_file"]

import hashlib
import os
from typing import Protocol


class StagedFile(Protocol):
    """A quarantined file as the state database records it (an image or a
    band frame).
    """

    @property
    def entry(self) -> str:
        """Its entry name."""

    @property
    def quarantine_path(self) -> str | None:
        """Where it is staged."""

    @property
    def sha256(self) -> str | None:
        """Its digest when it was validated."""


def sha256_file(path: str) -> str:
    """Return the SHA-256 digest of a file.

    Parameters
    ----------
    path : `str`
        The file.

    Returns
    -------
    digest : `str`
        Hexadecimal digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_staged_file(record: StagedFile) -> tuple[bytes | None, str]:
    """Read a quarantined file and check it against its validated digest.

    Parameters
    ----------
    record : `StagedFile`
        The file's record.

    Returns
    -------
    data : `bytes` or `None`
        Its bytes, or `None` if unreadable or changed.
    problem : `str`
        Why not (empty if ``data`` is given).
    """
    try:
        with open(record.quarantine_path or "", "rb") as stream:
            data = stream.read()
    except OSError as err:
        return None, f"staging copy of {record.entry} unreadable ({err.strerror})"
    if hashlib.sha256(data).hexdigest() != record.sha256:
        return None, f"staging copy of {record.entry} changed since validation"
    return data, ""


class StagingArea:
    """EPO's private staging directory.

    Parameters
    ----------
    root : `str`
        The directory; created if needed and made private (quarantined
        images must not be readable by other users).
    """

    def __init__(self, root: str) -> None:
        os.makedirs(root, mode=0o700, exist_ok=True)
        os.chmod(root, 0o700)
        self.root = root

    def batch_directory(self, project: str, batch: str) -> str:
        """Return the directory of a batch.

        Parameters
        ----------
        project : `str`
            Project name.
        batch : `str`
            Batch name.

        Returns
        -------
        directory : `str`
            ``<root>/<project>/<batch>`` (not created here).
        """
        return os.path.join(self.root, project, batch)

    def quarantine_directory(self, project: str, batch: str) -> str:
        """Return the directory of a batch's quarantined images.

        Parameters
        ----------
        project : `str`
            Project name.
        batch : `str`
            Batch name.

        Returns
        -------
        directory : `str`
            ``<root>/<project>/<batch>/quarantine`` (not created here).
        """
        return os.path.join(self.batch_directory(project, batch), "quarantine")
