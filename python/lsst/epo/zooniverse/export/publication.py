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

"""Publication of approved images at a public location.

The public location is any `lsst.resources.ResourcePath` directory (a
local directory by default; S3, GCS or WebDAV in production) whose
contents are reachable under a public URL prefix.  Images are stored
under stable keys ``<project>/<batch>/<entry>``.

Writes are atomic: on a local file system the bytes go to a hidden
``.<name>.partial-<random>`` file in the target directory, are flushed to
disk and renamed over the final name, so a reader sees either nothing or
the whole image; the HTTP server never serves dot-files.  Object stores
replace an object in one PUT.
"""

from __future__ import annotations

__all__ = ["PublicLocation", "PublicationError"]

import hashlib
import os
import re
import secrets
from collections.abc import Iterator

from lsst.resources import ResourcePath, ResourcePathExpression

# What validation accepts as an entry name (validation.ENTRY_NAME_PATTERN)
# and what the service makes project and batch names of.
_KEY_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+~-]{0,159}$")
_PARTIAL_MARK = ".partial-"


class PublicationError(RuntimeError):
    """An image cannot be published."""


class PublicLocation:
    """A public directory and the URL prefix it is served under.

    Parameters
    ----------
    root : `lsst.resources.ResourcePathExpression`
        Directory URI (``file:///srv/public/``, ``s3://bucket/prefix/``,
        or a local path).
    url_prefix : `str`
        Public URL of ``root`` (``https://epo.example.org/zooniverse/``).
    """

    def __init__(self, root: ResourcePathExpression, url_prefix: str) -> None:
        self.root = ResourcePath(root, forceDirectory=True)
        if not re.match(r"^https?://[^\s?#]+$", url_prefix):
            raise PublicationError(
                f"Public URL prefix {url_prefix!r} must be an http(s) URL without query or fragment."
            )
        self.url_prefix = url_prefix if url_prefix.endswith("/") else url_prefix + "/"
        if self.root.isLocal:
            os.makedirs(self.root.ospath, exist_ok=True)

    def __repr__(self) -> str:
        return f"PublicLocation({str(self.root)!r}, {self.url_prefix!r})"

    @staticmethod
    def key(project: str, batch: str, entry: str) -> str:
        """Return the stable key of an image.

        Parameters
        ----------
        project : `str`
            Project name.
        batch : `str`
            Batch name.
        entry : `str`
            File name of the image (``<object_id>.png``).

        Returns
        -------
        key : `str`
            ``<project>/<batch>/<entry>``.

        Raises
        ------
        PublicationError
            Raised if a part is not a safe single path component.
        """
        for part in (project, batch, entry):
            if not _KEY_PART.match(part) or part in (".", ".."):
                raise PublicationError(f"Unsafe public name component {part!r}.")
        return f"{project}/{batch}/{entry}"

    def url(self, key: str) -> str:
        """Return the public URL of a key.

        Parameters
        ----------
        key : `str`
            Key from `key`.

        Returns
        -------
        url : `str`
            The URL.
        """
        return self.url_prefix + key

    def _path(self, key: str) -> ResourcePath:
        return self.root.join(key)

    def has(self, key: str, sha256: str) -> bool:
        """Tell whether ``key`` exists with exactly these bytes.

        Parameters
        ----------
        key : `str`
            Key of the image.
        sha256 : `str`
            Expected SHA-256 (hex).

        Returns
        -------
        present : `bool`
            `True` if the object exists and its digest matches.
        """
        path = self._path(key)
        if not path.exists():
            return False
        return hashlib.sha256(path.read()).hexdigest() == sha256

    def write(self, key: str, data: bytes) -> str:
        """Write an image atomically and return its public URL.

        Parameters
        ----------
        key : `str`
            Key of the image.
        data : `bytes`
            Its bytes.

        Returns
        -------
        url : `str`
            Public URL.
        """
        path = self._path(key)
        if path.isLocal:
            final = path.ospath
            directory = os.path.dirname(final)
            os.makedirs(directory, exist_ok=True)
            partial = os.path.join(
                directory, f".{os.path.basename(final)}{_PARTIAL_MARK}{secrets.token_hex(6)}"
            )
            try:
                with open(partial, "xb") as stream:
                    stream.write(data)
                    stream.flush()
                    os.fsync(stream.fileno())
                os.replace(partial, final)
            except BaseException:
                if os.path.exists(partial):
                    os.unlink(partial)
                raise
            _fsync_directory(directory)
        else:
            path.write(data, overwrite=True)
        return self.url(key)

    def remove(self, key: str) -> bool:
        """Remove a public object if it exists.

        Parameters
        ----------
        key : `str`
            Key of the image.

        Returns
        -------
        removed : `bool`
            `True` if there was something to remove.
        """
        path = self._path(key)
        if not path.exists():
            return False
        path.remove()
        return True

    def remove_partials(self, project: str, batch: str) -> int:
        """Remove partial files a crashed publication left in a batch.

        Parameters
        ----------
        project : `str`
            Project name.
        batch : `str`
            Batch name.

        Returns
        -------
        removed : `int`
            Number of files removed.
        """
        directory = self.root.join(f"{project}/{batch}/", forceDirectory=True)
        if not directory.isLocal or not os.path.isdir(directory.ospath):
            return 0
        removed = 0
        for name in os.listdir(directory.ospath):
            if name.startswith(".") and _PARTIAL_MARK in name:
                os.unlink(os.path.join(directory.ospath, name))
                removed += 1
        return removed

    def walk(self) -> Iterator[str]:
        """Yield the key of every file under the public root, partial
        files included.

        Yields
        ------
        key : `str`
            Path relative to the root, with ``/`` separators.
        """
        for directory, _, files in self.root.walk():
            for name in files:
                yield directory.join(name).relative_to(self.root)


def _fsync_directory(directory: str) -> None:
    # Make the rename itself durable (POSIX); not possible everywhere.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
