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


"""Tests of the one anonymisation token check and the log escape table."""

import pytest

from lsst.epo.zooniverse.export.anonymisation import IdentifyingValues, contains_token, looks_like_coordinate
from lsst.epo.zooniverse.export.log_escape import LOG_ESCAPES, escape_for_log
from lsst.epo.zooniverse.export.manifest import ManifestError, subject_row


@pytest.mark.parametrize(
    "text, token, found",
    [
        # The token alone, or at either end of the text.
        ("3", "3", True),
        ("3 apples", "3", True),
        ("object 3", "3", True),
        # Separated by punctuation, including "-", "_", "/" and a point
        # that is not between two digits.
        ("x-3-y", "3", True),
        ("obj_3", "3", True),
        ("https://host/p/b/3.png", "3", True),
        ("id 3.", "3", True),
        ("(3)", "3", True),
        # Part of a longer word or number: not the id.
        ("obj3", "3", False),
        ("13", "3", False),
        ("3a", "3", False),
        ("é3", "3", False),
        # Part of a decimal number: the id 3 is not the number 3.14.
        ("ra 3.14", "3", False),
        ("3.0", "3", False),
        ("v1.3", "3", False),
        # Found once anywhere is enough.
        ("ra 3.14 id 3", "3", True),
        ("13 obj3 x/3", "3", True),
        # Longer ids and non-numeric tokens.
        ("object 4711000000000001 here", "4711000000000001", True),
        ("object 47110000000000012 here", "4711000000000001", False),
        ("NGC1234.png", "NGC1234", True),
        ("at 12h30m45s.", "12h30m45s", True),
        # An empty token is never found.
        ("anything", "", False),
        ("", "", False),
    ],
)
def test_contains_token(text, token, found):
    assert contains_token(text, token) is found


def test_subject_row_and_png_text_use_the_same_token_rule():
    """The manifest's URL check and the PNG text check give the same
    answer: the object id 3 is not in "3.14", it is in "3.png".
    """
    common = {
        "project": "p",
        "batch": "b1",
        "entry": "x.png",
        "object_id": "3",
        "index_row": {"object_id": "3"},
        "metadata_policy": "anonymised",
    }
    # A decimal number that merely starts with the id is no leak.
    subject_row(url="https://host/p/v3.14/x.png", **common)
    assert IdentifyingValues("3", []).find("ra 3.14") is None
    # The id as its own word is.
    with pytest.raises(ManifestError, match="object id or a coordinate"):
        subject_row(url="https://host/p/b1/3.png", **common)
    assert IdentifyingValues("3", []).find("3.png") == "3"


@pytest.mark.parametrize(
    "text, found",
    [
        ("150.123", True),
        ("x_1.2345.png", True),
        ("b1/img-0001.png", False),
        ("v1.23", False),
        ("", False),
    ],
)
def test_looks_like_coordinate(text, found):
    assert looks_like_coordinate(text) is found


def test_identifying_values_numbers():
    values = IdentifyingValues("4711", ["150.123456", "-2.345678", "10.0"])
    assert values.find("at 150.1235") == "150.1235"
    assert values.find("dec=-2.346") == "-2.346"
    assert values.find("150.12") is None  # Fewer than 3 decimals.
    assert values.find("10.000") is None  # Too round to be searched for.
    assert values.find("obj 4711") == "4711"
    assert values.find("obj 47110") is None


def test_log_escapes():
    assert escape_for_log("a\nb\r\x1b[2J\x7f") == "a\\x0ab\\x0d\\x1b[2J\\x7f"
    assert escape_for_log("plain é text") == "plain é text"
    assert set(LOG_ESCAPES) == {*range(0x20), 0x7F}


def test_log_escape_table_is_the_one_used():
    """The review page and the public server escape with this table."""
    from lsst.epo.zooniverse.export import review_page, serve

    assert review_page.escape_for_log is escape_for_log
    assert serve.escape_for_log is escape_for_log
