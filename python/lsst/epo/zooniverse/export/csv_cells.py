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

"""Cells of the CSV files the export service writes, made safe to open
in a spreadsheet.

Every CSV the service writes (the ``report`` and ``report --catalog``
lines, the Zooniverse import manifests) passes its cells through
`escape_csv_cell` or `escape_csv_row`: a text cell that starts with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return, and is not a plain
number, gets a leading apostrophe, so that a spreadsheet shows it as text
instead of running it as a formula (CSV injection; OWASP's rule).  Object
ids, reasons and catalog values come from PIs and from the files they
export, so they are hostile.
"""

from __future__ import annotations

__all__ = ["FORMULA_PREFIXES", "escape_csv_cell", "escape_csv_row"]

import re
from collections.abc import Mapping, Sequence
from typing import Any, overload

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula
(`tuple` [`str`, ...]).
"""

_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def escape_csv_cell(value: Any) -> Any:
    """Return a CSV cell safe against formula injection.

    Parameters
    ----------
    value : `object`
        The cell.  Only a `str` can change: one that starts with a
        character of `FORMULA_PREFIXES` and is not a plain decimal number
        (``-5.3``, ``+12``, ``-1e-3`` stay as they are, so numeric columns
        keep their numbers) gets a leading ``'``.  Numbers, `None` and
        other types are returned unchanged.

    Returns
    -------
    cell : `object`
        The value to write.

    Notes
    -----
    The escaped value is what the file holds: a reader other than a
    spreadsheet sees the apostrophe.  Zooniverse manifests keep exact
    values where it matters: their locations are ``http(s)`` URLs, which
    never start with those characters, so they are never changed, and a
    numeric external id or metadata value (``-12.5``) is kept as it is.
    Only a text external id or metadata value starting with one of them
    (say ``-bad``) is published with the apostrophe (``'-bad``), as the
    manifest's text, which the manifest validator accepts.
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


@overload
def escape_csv_row(row: Mapping[str, Any]) -> dict[str, Any]: ...


@overload
def escape_csv_row(row: Sequence[Any]) -> list[Any]: ...


def escape_csv_row(row: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any] | list[Any]:
    """Return a row with every cell passed through `escape_csv_cell`.

    Parameters
    ----------
    row : `~collections.abc.Mapping` [`str`, `object`] or \
            `~collections.abc.Sequence` [`object`]
        A row for `csv.DictWriter` (keys are column names, kept as they
        are) or for `csv.writer`.

    Returns
    -------
    escaped : `dict` [`str`, `object`] or `list` [`object`]
        The same row, escaped.
    """
    if isinstance(row, Mapping):
        return {key: escape_csv_cell(value) for key, value in row.items()}
    return [escape_csv_cell(value) for value in row]
