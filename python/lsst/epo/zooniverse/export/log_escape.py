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


"""Escaping of untrusted text written into log lines.

Request lines, operator names and other text a client chooses end up in
log messages; a control character there (a newline, an escape sequence)
could forge a log record or rewrite a terminal.  `LOG_ESCAPES` is the one
table that makes such text safe; `escape_for_log` applies it.
"""

from __future__ import annotations

__all__ = ["LOG_ESCAPES", "escape_for_log"]

LOG_ESCAPES: dict[int, str] = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}
r"""`str.translate` table writing each C0 control character and DEL as
``\xNN`` (`dict` [`int`, `str`]).
"""


def escape_for_log(text: str) -> str:
    r"""Return ``text`` with its control characters escaped.

    Parameters
    ----------
    text : `str`
        Untrusted text.

    Returns
    -------
    escaped : `str`
        ``text`` with every character of `LOG_ESCAPES` written as
        ``\xNN``: one log line, whatever the text holds.
    """
    return text.translate(LOG_ESCAPES)
