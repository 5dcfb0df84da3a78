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

"""Keep credentials out of logs, error messages and the audit log.

A `Redactor` knows the secret strings of this process: the state
database's password, the values of environment variables whose names say
they hold a secret (``*PASSWORD*``, ``*SECRET*``, ``*TOKEN*``, ``*_KEY``,
``*CREDENTIALS*``: cloud keys, SMTP and webhook secrets), and any secret
added explicitly.  `Redactor.redact` replaces each with ``***`` and also
masks the password part of any ``scheme://user:password@host`` URL and
the signature and credential parameters of signed URLs (the Butler
server's presigned S3, GCS and Azure URLs: anyone holding one can read the
file until it expires).
`install_log_redaction` applies it to every log record of the process.
"""

from __future__ import annotations

__all__ = ["Redactor", "default_redactor", "install_log_redaction", "looks_secret"]

import logging
import os
import re
from collections.abc import Iterable, Mapping

_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|_KEY$|^KEY$|_KEY_|API_?KEY)", re.I)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):(?P<password>[^@\s/]+)@")
_SIGNED_URL_PARAMETER = re.compile(
    r"(?P<head>[?&](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|AWSAccessKeyId|Signature"
    r"|X-Goog-Signature|X-Goog-Credential|GoogleAccessId|sig)=)[^&\s\"'<>]+",
    re.I,
)
_MIN_SECRET_LENGTH = 4


def looks_secret(name: str) -> bool:
    """Say whether a name (of an environment variable or a setting) says
    that its value is a secret.

    Parameters
    ----------
    name : `str`
        The name (``EPO_SMTP_PASSWORD``, ``token``, ``api_key``).

    Returns
    -------
    secret : `bool`
        Whether the name holds ``PASSWORD``, ``PASSWD``, ``SECRET``,
        ``TOKEN`` or ``CREDENTIAL``, or is or ends in ``KEY``
        (case-insensitive).
    """
    return bool(_SECRET_NAME.search(name))


class Redactor:
    """Replace known secrets in text.

    Parameters
    ----------
    secrets : `~collections.abc.Iterable` [`str`], optional
        Secret strings.
    environ : `~collections.abc.Mapping` [`str`, `str`], optional
        Environment whose secret-looking variables are added
        (`os.environ` if not given).
    """

    def __init__(self, secrets: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)
        for name, value in (os.environ if environ is None else environ).items():
            if looks_secret(name):
                self.add(value)

    def add(self, secret: str | None) -> None:
        """Add a secret.

        Parameters
        ----------
        secret : `str` or `None`
            The secret; short or empty values are ignored (they would mask
            ordinary text).
        """
        if secret and len(secret) >= _MIN_SECRET_LENGTH:
            self._secrets.add(secret)

    def redact(self, text: object) -> str:
        """Return ``text`` with every known secret masked.

        Parameters
        ----------
        text : `object`
            Text (or anything `str` accepts).

        Returns
        -------
        redacted : `str`
            The text with secrets replaced by ``***``.
        """
        result = _URL_PASSWORD.sub(r"\g<head>:***@", str(text))
        result = _SIGNED_URL_PARAMETER.sub(r"\g<head>***", result)
        # Longest first, so a secret containing another is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in result:
                result = result.replace(secret, "***")
        return result


_default = Redactor()


def default_redactor() -> Redactor:
    """Return the process's redactor (the one log records go through).

    Returns
    -------
    redactor : `Redactor`
        The shared redactor.
    """
    return _default


class _RedactingFilter(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # A malformed record: leave it to the handler.
            return True
        record.msg = self._redactor.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self._redactor.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_log_redaction(redactor: Redactor | None = None) -> None:
    """Mask secrets in every log record that reaches a handler.

    Parameters
    ----------
    redactor : `Redactor`, optional
        The redactor (`default_redactor` if not given).
    """
    redactor = redactor or _default
    root = logging.getLogger()
    handlers = list(root.handlers) or [logging.lastResort]
    for handler in handlers:
        if handler is None or any(isinstance(f, _RedactingFilter) for f in handler.filters):
            continue
        handler.addFilter(_RedactingFilter(redactor))
