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

"""FITS headers card by card: formatting cards as astropy writes them and
parsing them as astropy reads them (`.fits_stream` reads a file one header
at a time with them).

This is what makes the Stamps writer and reader fast (`.stamps_fast`):
astropy builds a `~astropy.io.fits.Header` object per card and per HDU,
which dominates the time to write or read files of many small HDUs.  The
cards formatted here are byte for byte those astropy writes (the tests
compare the two); a card the code here is not sure about is formatted or
parsed by astropy itself.  Values follow afw's conventions: non-finite
floats are the strings ``NAN``, ``+INFINITY`` and ``-INFINITY``, and keys
longer than 8 characters are ``HIERARCH`` cards.
"""

from __future__ import annotations

__all__ = [
    "BLOCK",
    "CARD",
    "END_CARD",
    "CardFormatter",
    "Header",
    "UnsupportedError",
    "astropy_card",
    "header_bytes",
    "header_value",
    "hierarch_key",
    "parse_card",
    "read_value",
]

import math
import re
from collections.abc import Iterator
from typing import Any

import astropy.io.fits as fits
import numpy as np

BLOCK = 2880
"""Size of a FITS block in bytes (headers and data are padded to it)."""

CARD = 80
"""Size of a header card in bytes."""

END_CARD = "END".ljust(CARD)
"""The END card that closes a header."""

_STANDARD_KEY = re.compile(r"[A-Z0-9_-]{1,8}\Z")

_PRINTABLE = re.compile(r"[ -~]*\Z")

_NON_FINITE = {"NAN": math.nan, "+INFINITY": math.inf, "-INFINITY": -math.inf}

# -- Values --------------------------------------------------------------


def header_value(value: Any) -> Any:
    """Convert a Python value to what afw writes for it in a header.

    Parameters
    ----------
    value : `bool`, `int`, `float`, `str` or `None`
        The value (numpy scalars too).

    Returns
    -------
    value : `bool`, `int`, `float`, `str` or `None`
        The value to write; non-finite floats become the strings ``NAN``,
        ``+INFINITY`` and ``-INFINITY``.

    Raises
    ------
    TypeError
        Raised for a value FITS cannot hold.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "NAN"
        if math.isinf(value):
            return "+INFINITY" if value > 0 else "-INFINITY"
        return value
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"Cannot write {value!r} ({type(value).__name__}) to a FITS header.")


def read_value(value: Any) -> Any:
    """Convert a header value as read back to Python (the inverse of
    `header_value`).

    Parameters
    ----------
    value : `object`
        The value astropy (or `parse_card`) reads from a card.

    Returns
    -------
    value : `object`
        ``NAN``, ``+INFINITY`` and ``-INFINITY`` strings as floats, an
        undefined value as `None`, anything else unchanged.
    """
    if isinstance(value, str) and value.strip() in _NON_FINITE:
        return _NON_FINITE[value.strip()]
    if isinstance(value, fits.card.Undefined):
        return None
    return value


def astropy_card(key: str, value: Any) -> fits.Card:
    """Make the astropy card afw would write for a key and value.

    Parameters
    ----------
    key : `str`
        The keyword; written as ``HIERARCH`` if longer than 8 characters
        or with a space.
    value : `object`
        The value, converted by `header_value`.

    Returns
    -------
    card : `astropy.io.fits.Card`
        The card (not verified).
    """
    return fits.Card(hierarch_key(key), header_value(value))


def hierarch_key(key: str) -> str:
    """Return the keyword afw writes for a key.

    Parameters
    ----------
    key : `str`
        The key.

    Returns
    -------
    keyword : `str`
        ``HIERARCH <key>`` for a key longer than 8 characters or with a
        space, else the key.
    """
    return f"HIERARCH {key}" if len(key) > 8 or " " in key else key


# -- Writing cards -------------------------------------------------------


def _format_float(value: float) -> str:
    """Format a float as astropy does in a card (at most 20 characters)."""
    text = str(value).replace("e", "E")
    if len(text) > 20:
        exponent = text.find("E")
        if exponent < 0:
            text = text[:20]
        else:
            text = text[: 20 - (len(text) - exponent)] + text[exponent:]
    return text


def _value_text(value: Any) -> str | None:
    """Return the value field astropy writes for ``value`` (after
    `header_value`), or `None` for what only astropy should format.
    """
    kind = type(value)
    if kind is bool:
        return "                   T" if value else "                   F"
    if kind is int:
        return f"{value:>20d}"
    if kind is float:
        if not math.isfinite(value):
            return None  # astropy refuses it.
        return f"{_format_float(value):>20}"
    if kind is str:
        if not value:
            return "''"
        # astropy refuses non-printable text, and takes "name: number"
        # strings for record-valued keyword cards.
        if not _PRINTABLE.match(value) or ": " in value:
            return None
        text = "'" + value.replace("'", "''").ljust(8) + "'"
        return f"{text:20}"
    if value is None:
        return ""
    return None


class CardFormatter:
    """Card images, formatted here or (memoised) by astropy.

    One formatter serves one file: it remembers the cards astropy formatted
    for it.
    """

    def __init__(self) -> None:
        self._astropy: dict[tuple[str, type, str, str | None], str] = {}

    def card(self, key: str, value: Any, comment: str | None = None) -> str:
        """Return the image of the card ``(key, header_value(value))`` as
        astropy writes it.

        Parameters
        ----------
        key : `str`
            The keyword.
        value : `object`
            The value, converted by `header_value`.
        comment : `str`, optional
            The card's comment.

        Returns
        -------
        image : `str`
            One or more 80-character cards.
        """
        value = header_value(value)
        if _STANDARD_KEY.match(key) and key not in ("END", "CONTINUE", "COMMENT", "HISTORY"):
            text = _value_text(value)
            if text is not None:
                image = f"{key:8}= {text}" if comment is None else f"{key:8}= {text} / {comment}"
                if len(image) <= CARD:
                    return image.ljust(CARD)
        # repr tells -0.0 from 0.0, which astropy writes differently.
        memo = (key, type(value), repr(value), comment)
        try:
            return self._astropy[memo]
        except KeyError:
            card = astropy_card(key, value)
            if comment is not None:
                card.comment = comment
            card.verify("exception")
            image = self._astropy[memo] = str(card)
            return image

    def array_cards(self, key: str, values: list[Any]) -> list[str]:
        """Return the images of the cards of one keyword repeated for many
        values (a per-stamp array), as `card` gives them one by one.

        Parameters
        ----------
        key : `str`
            The keyword.
        values : `list`
            The values, each converted by `header_value`.

        Returns
        -------
        images : `list` [`str`]
            One 80-character card per value (more for a long string).

        Notes
        -----
        Finite floats, integers and short strings (the per-stamp arrays of
        a Stamps file) are formatted here without the checks `card` makes
        per value; anything else goes through `card`.
        """
        if not _STANDARD_KEY.match(key) or key in ("END", "CONTINUE", "COMMENT", "HISTORY"):
            return [self.card(key, value) for value in values]
        prefix = f"{key:8}= "
        fast = _uniform_array_cards(prefix, values)
        if fast is not None:
            return fast
        isfinite = math.isfinite
        images = []
        for value in values:
            kind = type(value)
            if kind is float and isfinite(value):
                text = str(value).replace("e", "E")
                text = f"{text:>20}" if len(text) <= 20 else None
            elif kind is int:
                text = f"{value:>20d}"
            elif kind is str:
                text = _value_text(value)
            else:
                text = None
            if text is None or len(text) > CARD - 10:
                images.append(self.card(key, value))
            else:
                images.append(f"{prefix}{text:<70}")
        return images


# Blank value columns after a 20-character value.
_VALUE_PADDING = " " * (CARD - 10 - 20)

# Integers written in 20 characters.
_INT_LIMIT = 10**19


def _uniform_array_cards(prefix: str, values: list[Any]) -> list[str] | None:
    """Return the cards of a per-stamp array whose values are all of one
    common kind, in one pass (`None` for any other array): integers of at
    most 20 characters, or finite floats of at most 20 characters.
    """
    if not values:
        return []
    kind = type(values[0])
    if kind is int:
        if not all(type(value) is int and -_INT_LIMIT < value < _INT_LIMIT for value in values):
            return None
        return [f"{prefix}{value:>20d}{_VALUE_PADDING}" for value in values]
    if kind is float:
        if not all(type(value) is float for value in values):
            return None
        texts = [str(value) for value in values]
        if any(len(text) > 20 or not text[-1].isdigit() for text in texts):
            return None  # Long, or inf/nan (astropy refuses them).
        return [f"{prefix}{text.replace('e', 'E'):>20}{_VALUE_PADDING}" for text in texts]
    return None


def header_bytes(cards: list[str]) -> bytes:
    """Return a header as written to a file.

    Parameters
    ----------
    cards : `list` [`str`]
        The card images, without END.

    Returns
    -------
    header : `bytes`
        The cards and the END card, padded with spaces to whole blocks.
    """
    text = "".join(cards) + END_CARD
    return (text + " " * (-len(text) % BLOCK)).encode("ascii")


# -- Reading cards -------------------------------------------------------


class UnsupportedError(Exception):
    """Raised by the fast readers for what only astropy reads."""


_NUMBER = re.compile(r"[+-]?(?:\.\d+|\d+(?:\.\d*)?)(?:[DE][+-]?\d+)?")

_COMMENTARY = frozenset({"", "COMMENT", "HISTORY"})

_ASTROPY_COMMENTARY = _COMMENTARY | {"END"}


class _AstropyParseError(Exception):
    """A card the fast parser leaves to astropy."""


def _parse_value(text: str, standard: bool) -> Any:
    """Parse a card's value field as astropy does (FITS fixed and free
    format: strings, logicals, integers, reals, undefined); raise
    `_AstropyParseError` for anything else (complex numbers, non-standard
    number formats, record-valued keyword cards, odd quoting).
    """
    text = text.lstrip(" ")
    if not text or text[0] == "/":
        return fits.card.UNDEFINED
    first = text[0]
    if first == "'":
        end = text.find("'", 1)
        while end >= 0 and text[end + 1 : end + 2] == "'":
            if text[end + 2 : end + 3] in ("", " ", "/"):
                raise _AstropyParseError  # astropy may end the string there.
            end = text.find("'", end + 2)
        if end < 0:
            raise _AstropyParseError
        rest = text[end + 1 :].lstrip(" ")
        value = text[1:end]
        if (rest and rest[0] != "/") or (standard and ": " in value):
            raise _AstropyParseError
        return value.replace("''", "'").rstrip()
    if first in "TF":
        rest = text[1:].lstrip(" ")
        if rest and rest[0] != "/":
            raise _AstropyParseError
        return first == "T"
    match = _NUMBER.match(text)
    if match is None:
        raise _AstropyParseError
    rest = text[match.end() :].lstrip(" ")
    if rest and rest[0] != "/":
        raise _AstropyParseError
    number = match.group()
    if "." in number or "E" in number or "D" in number:
        return float(number.replace("D", "E"))
    return int(number)


def parse_card(image: str) -> tuple[str, Any]:
    """Return the keyword and value of one logical card, as astropy reads
    them.

    Parameters
    ----------
    image : `str`
        The card image (80 characters, or more for a long string with its
        ``CONTINUE`` cards).

    Returns
    -------
    keyword : `str`
        The keyword as astropy gives it.
    value : `object`
        The value as astropy gives it (astropy parses the cards the code
        here is not sure about).
    """
    if len(image) == CARD:
        head = image[:8]
        try:
            if head == "HIERARCH" and image[8] == " ":
                equals = image.find("=")
                keyword = image[9:equals].strip()
                if equals > 0 and keyword.upper() not in _ASTROPY_COMMENTARY:
                    return keyword, _parse_value(image[equals + 1 :], False)
            else:
                keyword = head.rstrip(" ")
                if keyword in _COMMENTARY:
                    return keyword, image[8:].rstrip()
                if image[8:10] == "= " and _STANDARD_KEY.match(keyword) and keyword != "CONTINUE":
                    return keyword, _parse_value(image[10:], True)
        except _AstropyParseError:
            pass
    card = fits.Card.fromstring(image)
    return card.keyword, card.value


def _memo_card(memo: dict[str, tuple[str, str, Any]], image: str) -> tuple[str, str, Any]:
    if image.startswith("END"):
        # astropy may take it for the END card (with a warning).
        raise UnsupportedError("a card that looks like END")
    keyword, value = parse_card(image)
    card = memo[image] = (keyword, keyword.upper(), value)
    return card


class Header:
    """The cards of one header, in order: ``cards`` holds (keyword, upper
    case keyword, value) and ``images`` the card images.

    Like astropy's, ``header[key]`` is the first card of that keyword;
    lookups take upper case keywords.

    Parameters
    ----------
    cards : `list` [`tuple` [`str`, `str`, `object`]]
        Keyword, upper case keyword and value of each card.
    images : `list` [`str`]
        The card images (empty for a wrapped astropy header).
    text : `str`
        The header text (empty for a wrapped astropy header).
    """

    __slots__ = ("cards", "images", "text", "_first")

    def __init__(self, cards: list[tuple[str, str, Any]], images: list[str], text: str) -> None:
        self.cards = cards
        self.images = images
        self.text = text
        last = len(cards) - 1
        self._first = dict(zip(reversed([card[1] for card in cards]), range(last, -1, -1)))

    @classmethod
    def parse(cls, text: str, memo: dict[str, tuple[str, str, Any]] | None = None) -> Header:
        """Parse header text (whole cards, without END) as
        `astropy.io.fits.Header.fromstring` does.

        Parameters
        ----------
        text : `str`
            The header text.
        memo : `dict` [`str`, `tuple`], optional
            Card images already parsed and their card (the headers of a
            Stamps file repeat most of their cards); updated.

        Returns
        -------
        header : `Header`
            The parsed header.
        """
        if memo is None:
            memo = {}
        images = [text[start : start + CARD] for start in range(0, len(text), CARD)]
        if "CONTINUE" in text:
            grouped: list[str] = []
            for image in images:
                if grouped and image.startswith("CONTINUE"):
                    grouped[-1] += image  # A long string (astropy groups them).
                else:
                    grouped.append(image)
            images = grouped
        get = memo.get
        cards = [get(image) or _memo_card(memo, image) for image in images]
        return cls(cards, images, text)

    @classmethod
    def from_astropy(cls, header: fits.Header) -> Header:
        """Wrap an astropy header.

        Parameters
        ----------
        header : `astropy.io.fits.Header`
            The header.

        Returns
        -------
        header : `Header`
            Its cards (without images or text).
        """
        cards = [(card.keyword, card.keyword.upper(), card.value) for card in header.cards]
        return cls(cards, [], "")

    def __contains__(self, key: str) -> bool:
        return key in self._first

    def __getitem__(self, key: str) -> Any:
        return self.cards[self._first[key]][2]

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of the first card of a keyword.

        Parameters
        ----------
        key : `str`
            The upper case keyword.
        default : `object`, optional
            Returned without such a card.

        Returns
        -------
        value : `object`
            The value.
        """
        index = self._first.get(key)
        return default if index is None else self.cards[index][2]

    @property
    def has_repeated_keywords(self) -> bool:
        """Whether some keyword has more than one card (`bool`)."""
        return len(self._first) != len(self.cards)

    def items(self) -> Iterator[tuple[str, Any]]:
        """Iterate over (keyword, value) of the cards, in order."""
        return ((card[0], card[2]) for card in self.cards)

    def to_astropy(self) -> fits.Header:
        """Parse the header text with astropy (a parsed header only)."""
        return fits.Header.fromstring(self.text)
