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

"""Read a secret from an environment variable or a file, and mask it.

Every credential the export service uses (operator tokens of the review
page, the state database's password, SMTP passwords, webhook URLs and
header values, the Zooniverse credentials) is read by `read_secret`, so
one set of rules applies everywhere:

- exactly one source, an environment variable or a file;
- surrounding whitespace (a trailing newline, say) is removed;
- an unset variable, an unreadable, oversized or empty file, and an
  empty value are errors (`SecretError`) naming what the secret is for
  and where it was looked for, never the value;
- a file readable by group or other users is accepted with a warning;
- the value is added to a `~lsst.epo.zooniverse.export.redaction.Redactor`
  (the process's default one unless another is given), so it is masked
  in logs and error messages from then on.
"""

from __future__ import annotations

__all__ = ["MAX_SECRET_FILE_SIZE", "SecretError", "read_secret"]

import logging
import os
import stat

from .redaction import Redactor, default_redactor

_LOG = logging.getLogger(__name__)

MAX_SECRET_FILE_SIZE = 4096
"""Largest secret file accepted, in characters."""


class SecretError(ValueError):
    """A secret cannot be read.

    The message names what the secret is for and its source (variable or
    file), never the secret.
    """


def read_secret(
    *,
    env: str | None = None,
    file: str | os.PathLike[str] | None = None,
    what: str,
    redactor: Redactor | None = None,
) -> str:
    """Read a secret and register it with a redactor.

    Parameters
    ----------
    env : `str`, optional
        Environment variable holding the secret.
    file : `str` or `os.PathLike`, optional
        File holding the secret (UTF-8 text).
    what : `str`
        What the secret is for (``"SMTP password"``,
        ``"review.operators.eve.token_file"``): error messages start
        with it.
    redactor : `~lsst.epo.zooniverse.export.redaction.Redactor`, optional
        Redactor the secret is added to (the process's default one if not
        given).

    Returns
    -------
    secret : `str`
        The secret, surrounding whitespace removed.

    Raises
    ------
    SecretError
        Raised unless exactly one of ``env`` and ``file`` is given, and
        if the variable is not set, the file cannot be read or is
        larger than `MAX_SECRET_FILE_SIZE` characters, or the secret is
        empty.  The message names ``what`` and the source, never the
        secret.
    """
    if (env is None) == (file is None):
        raise SecretError(f"{what}: give exactly one of an environment variable and a file.")
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise SecretError(f"{what}: the environment variable {env} is not set.")
        source = f"the environment variable {env}"
    else:
        path = os.fspath(file)  # type: ignore[arg-type]
        try:
            with open(path, encoding="utf-8") as stream:
                mode = os.fstat(stream.fileno()).st_mode
                value = stream.read(MAX_SECRET_FILE_SIZE + 1)
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
            raise SecretError(f"{what}: cannot read {path} ({reason}).") from None
        if len(value) > MAX_SECRET_FILE_SIZE:
            raise SecretError(f"{what}: {path} is longer than {MAX_SECRET_FILE_SIZE} characters.")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            _LOG.warning("%s: the secret file %s is readable by other users.", what, path)
        source = path
    value = value.strip()
    if not value:
        raise SecretError(f"{what}: {source} is empty.")
    (redactor if redactor is not None else default_redactor()).add(value)
    return value
