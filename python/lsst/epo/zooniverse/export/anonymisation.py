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


"""What an anonymised project must not publish, and how to look for it.

A project with the ``anonymised`` metadata policy publishes images whose
kept PNG text, public URLs and subject ids must not reveal the catalog
object id or the sky coordinates.  This module holds the one definition
of "the text holds this value" that every check of an anonymised artifact
uses:

- `contains_token` finds an object id (or any other word) as a whole
  word or number;
- `IdentifyingValues` finds a known object id and known coordinates in
  PNG text, whatever the notation of the numbers;
- `looks_like_coordinate` finds any number with the precision of a sky
  coordinate in a public name.
"""

from __future__ import annotations

__all__ = ["IdentifyingValues", "contains_token", "looks_like_coordinate"]

import math
import re
from collections.abc import Iterable

_MIN_SIGNIFICANT_DIGITS = 4
_DECIMAL_NUMBER = re.compile(r"(?<![\d.])[-+]?(\d+)\.(\d+)")
_COORDINATE_LIKE = re.compile(r"\d\.\d{3,}")


def contains_token(text: str, token: str) -> bool:
    """Tell whether ``token`` occurs in ``text`` as a whole word or number.

    Parameters
    ----------
    text : `str`
        Text searched (PNG text, a public URL).
    token : `str`
        Value looked for, such as an object id.

    Returns
    -------
    found : `bool`
        `True` if some occurrence of ``token`` is not part of a longer
        word or number; always `False` for an empty ``token``.

    Notes
    -----
    An occurrence is part of a longer word or number, and does not count,
    when:

    - a letter or digit (of any script) is right before or after it:
      ``3`` is not found in ``obj3``, ``13`` or ``3a``;
    - it starts with a digit and follows a digit and a point, or ends
      with a digit and is followed by a point and a digit: it is then a
      piece of a decimal number, so ``3`` is not found in ``ra 3.14``,
      ``3.0`` or ``v1.3`` (the object id ``3`` is not the number 3.14;
      coordinates are searched for as numbers by `IdentifyingValues` and
      `looks_like_coordinate`).

    Anything else separates words: spaces, punctuation, ``-``, ``_``,
    ``/``, and a point that is not between two digits.  So ``3`` is found
    in ``3``, ``x-3-y``, ``obj_3``, ``3.png`` and ``id 3.`` (anonymisation
    errs on the side of refusing an image).
    """
    if not token:
        return False
    start = text.find(token)
    while start >= 0:
        end = start + len(token)
        before = text[start - 1] if start > 0 else ""
        after = text[end] if end < len(text) else ""
        in_number_before = before == "." and text[start - 2 : start - 1].isdigit() and token[0].isdigit()
        in_number_after = after == "." and text[end + 1 : end + 2].isdigit() and token[-1].isdigit()
        if not before.isalnum() and not after.isalnum() and not in_number_before and not in_number_after:
            return True
        start = text.find(token, start + 1)
    return False


def looks_like_coordinate(text: str) -> bool:
    """Tell whether ``text`` holds a number precise enough to be a sky
    coordinate.

    Parameters
    ----------
    text : `str`
        A public name: a URL or a subject's external id.

    Returns
    -------
    found : `bool`
        `True` if ``text`` holds a digit, a point and at least three more
        digits (``150.123``, ``x_1.2345.png``).
    """
    return _COORDINATE_LIKE.search(text) is not None


def _significant_digits(number: str) -> int:
    """Count the digits of a decimal number without leading zeros (and
    trailing zeros after a decimal point).
    """
    digits = number.replace("-", "").replace("+", "").replace(".", "").lstrip("0")
    return len(digits.rstrip("0") if "." in number else digits)


class IdentifyingValues:
    """The object id and coordinates an anonymised PNG's text must not
    reveal, and the search for them.

    Parameters
    ----------
    object_id : `str`
        Object id, searched for with `contains_token`.
    coordinates : `~collections.abc.Iterable` [`str`]
        RA/Dec as text.  Numbers are found in any notation that keeps at
        least 3 decimals, rounded or truncated, with or without sign
        (``150.123456`` is found as ``150.1235``, ``150.123`` or
        ``-150.12346``); values with fewer than 4 significant digits
        (``10.0``) are too round to identify anything and would match
        innocent text, so they are not searched for.  Text that is not a
        number (sexagesimal) is searched for with `contains_token`.
    """

    def __init__(self, object_id: str, coordinates: Iterable[str]) -> None:
        self.words = [object_id.strip()] if object_id.strip() else []
        self.numbers: list[float] = []
        for text in coordinates:
            text = text.strip()
            try:
                value = float(text)
            except ValueError:
                if len(text) >= _MIN_SIGNIFICANT_DIGITS:
                    self.words.append(text)
                continue
            if math.isfinite(value) and _significant_digits(repr(value)) >= _MIN_SIGNIFICANT_DIGITS:
                self.numbers.append(abs(value))

    def find(self, text: str) -> str | None:
        """Return the identifying value found in ``text``.

        Parameters
        ----------
        text : `str`
            Text to search (a PNG text chunk's key or value).

        Returns
        -------
        found : `str` or `None`
            The object id or coordinate word found, or the number of
            ``text`` that matches a coordinate; `None` if there is none.
        """
        for word in self.words:
            if contains_token(text, word):
                return word
        if self.numbers:
            for match in _DECIMAL_NUMBER.finditer(text):
                decimals = len(match.group(2))
                if decimals < 3:
                    continue
                value = float(f"{match.group(1)}.{match.group(2)}")
                tolerance = 10.0**-decimals
                if any(abs(value - number) < tolerance for number in self.numbers):
                    return match.group(0)
        return None
