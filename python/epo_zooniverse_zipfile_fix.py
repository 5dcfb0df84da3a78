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

"""Work around CPython's zipfile seek bug (gh-127847) in affected Pythons.

In Python 3.12.0-3.12.8 and 3.13.0-3.13.1, seeking forward in a stored
(uncompressed) member opened with `zipfile.ZipFile.open` moves the shared
file relative to wherever *another* open member left it and does not
update the member's remaining compressed size.  Interleaved reads of two
members of one archive then return wrong bytes or raise `EOFError`.
pipe_base's quantum-graph files are such archives: ``pipetask run-qbb``
(every BPS job) reads addresses from one member and datasets from another,
and on graphs of a few dozen patches its jobs fail with ``EOFError``.

`install` replaces the stored-member forward seek with an absolute one
(the member's data start plus the new position) that keeps every counter
consistent; other cases go to the original method.  It changes nothing on
fixed Pythons.  ``scripts/setup_env.sh`` installs a ``.pth`` file into
the virtual environment that calls it at interpreter start, so that BPS
job processes get it too.  This is a top-level module with no imports
beyond the standard library, to keep interpreter start-up cheap.
"""

from __future__ import annotations

__all__ = ["affected", "install"]

import os
import sys
import zipfile

_AFFECTED = ((3, 12, 0), (3, 12, 9)), ((3, 13, 0), (3, 13, 2))


def affected(version: tuple[int, ...] | None = None) -> bool:
    """Tell whether a Python version has the zipfile seek bug.

    Parameters
    ----------
    version : `tuple` [`int`, ...], optional
        ``(major, minor, micro)``; the running interpreter's if not given.

    Returns
    -------
    affected : `bool`
        `True` for 3.12.0-3.12.8 and 3.13.0-3.13.1.
    """
    version = tuple(version or sys.version_info[:3])
    return any(low <= version < high for low, high in _AFFECTED)


def _stored_seek(self, offset, whence=os.SEEK_SET):
    if self.closed or not self._seekable or self._compress_type != zipfile.ZIP_STORED or self._decrypter:
        return _original_seek(self, offset, whence)
    if whence == os.SEEK_SET:
        new_pos = offset
    elif whence == os.SEEK_CUR:
        new_pos = self.tell() + offset
    elif whence == os.SEEK_END:
        new_pos = self._orig_file_size + offset
    else:
        return _original_seek(self, offset, whence)
    new_pos = min(max(new_pos, 0), self._orig_file_size)
    if new_pos == 0:
        # The original handles a rewind correctly (it restores the CRC).
        return _original_seek(self, 0, os.SEEK_SET)
    # Stored data: byte new_pos of the member is at a known file offset.
    self._fileobj.seek(self._orig_compress_start + new_pos)
    self._readbuffer = b""
    self._offset = 0
    self._left = self._orig_file_size - new_pos
    self._compress_left = self._orig_compress_size - new_pos
    self._eof = self._left <= 0
    # A CRC over part of the data cannot be checked.
    self._expected_crc = None
    return self.tell()


_original_seek = zipfile.ZipExtFile.seek


def install() -> bool:
    """Patch `zipfile.ZipExtFile.seek` if this Python needs it.

    Returns
    -------
    installed : `bool`
        `True` if the patch is (now) in place.
    """
    if not affected():
        return False
    zipfile.ZipExtFile.seek = _stored_seek
    return True
