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

"""The data-rights policy of the EPO export service.

A `DataRightsPolicy` says which Butler collections and dataset types a
project may export, and the limits every exported artifact must respect
(ZIP structure, PNG size and dimensions, the text chunks an anonymised
PNG may keep).  `lsst.epo.zooniverse.export.validation` applies it.  The
file format is documented in ``doc/export_policy.md``.
"""

from __future__ import annotations

__all__ = ["METADATA_POLICIES", "SAFE_OWNER", "DataRightsPolicy", "PolicyError"]

import dataclasses
import fnmatch
import math
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import yaml

from ..formats.png import check_text_key
from ..formats.rgb_collection import METADATA_POLICIES

SAFE_OWNER = re.compile(r"[A-Za-z0-9_.-]+")
"""What an owner name (the ``{owner}`` of a collection pattern) may hold;
``.`` and ``..`` are refused too.
"""

_GLOB_CHARACTERS = frozenset("*?[]{}\\")
_PLACEHOLDER = "{owner}"


class PolicyError(ValueError):
    """Raised for an invalid policy: the message names the file (or other
    source) and the key at fault.
    """


def _check_limit(key: str, value: Any, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{source}: {key} must be an integer, not {value!r}.")
    if value <= 0:
        raise PolicyError(f"{source}: {key} must be positive, not {value}.")
    return value


def _check_ratio(key: str, value: Any, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(f"{source}: {key} must be a number, not {value!r}.")
    if not math.isfinite(value) or value < 1:
        raise PolicyError(f"{source}: {key} must be a finite number of at least 1, not {value}.")
    return float(value)


def _check_strings(key: str, value: Any, source: str) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise PolicyError(f"{source}: {key} must be a list of strings, not {value!r}.")
    for item in value:
        if not isinstance(item, str) or not item or item != item.strip():
            raise PolicyError(
                f"{source}: {key} must hold non-empty strings without surrounding spaces, not {item!r}."
            )
    if len(set(value)) != len(value):
        raise PolicyError(f"{source}: {key} lists the same value twice.")
    return tuple(value)


def _check_pattern(key: str, pattern: str, source: str) -> None:
    rest = pattern.replace(_PLACEHOLDER, "")
    if "{" in rest or "}" in rest:
        raise PolicyError(
            f"{source}: {key} pattern {pattern!r} has a brace other than the {_PLACEHOLDER} placeholder."
        )
    if any(c.isspace() or not c.isprintable() for c in pattern):
        raise PolicyError(f"{source}: {key} pattern {pattern!r} has whitespace or control characters.")
    if any(part in ("", ".", "..") for part in pattern.split("/")):
        raise PolicyError(f"{source}: {key} pattern {pattern!r} has an empty, '.' or '..' component.")


def _check_value(key: str, value: Any, source: str) -> Any:
    """Check and normalise the value of one policy key."""
    kind = DataRightsPolicy._KINDS[key]
    if kind == "limit":
        return _check_limit(key, value, source)
    if kind == "ratio":
        return _check_ratio(key, value, source)
    values = _check_strings(key, value, source)
    if key == "collection_patterns":
        for pattern in values:
            _check_pattern(key, pattern, source)
    elif key == "anonymised_text_keys":
        for text_key in values:
            try:
                check_text_key(text_key)
            except ValueError as err:
                raise PolicyError(f"{source}: {key}: {err}") from None
    return values


@dataclasses.dataclass(frozen=True)
class DataRightsPolicy:
    """What the export service may take from PIs' collections, and the
    limits every artifact must respect.

    Every field is a key of the policy file (``doc/export_policy.md``).
    Sizes are in bytes.

    Raises
    ------
    PolicyError
        Raised by the constructor for a value of the wrong type, a
        non-positive limit or an invalid pattern or text key.
    """

    dataset_types: tuple[str, ...] = ("zooniverse_rgb", "zooniverse_cutout")
    """Dataset types that may be exported."""

    collection_patterns: tuple[str, ...] = ("u/{owner}/*",)
    """`fnmatch` patterns (case-sensitive) of the collections a project may
    export from; ``{owner}`` is replaced by the project's owner.
    """

    max_entries: int = 20_000
    """Most entries (``index.csv`` included) in one ZIP."""

    max_total_uncompressed_bytes: int = 4 * 1024**3
    """Most bytes all entries of one ZIP may inflate to."""

    max_entry_uncompressed_bytes: int = 8 * 1024**2
    """Most bytes one PNG entry of a ZIP may inflate to; larger entries
    reject the whole ZIP (a PNG between ``max_png_bytes`` and this is
    refused alone, ``png.file_size``).  In a policy file that does not set
    ``max_png_bytes``, also the PNG file-size limit.
    """

    max_index_bytes: int = 64 * 1024**2
    """Most bytes the ``index.csv`` entry of a ZIP may inflate to (it holds
    a FITS WCS header per image, about 1.5 kB a row).
    """

    max_compression_ratio: float = 50.0
    """Highest uncompressed / compressed size ratio, for each entry and for
    the whole ZIP (zip-bomb guard; PNG data hardly deflates).
    """

    max_png_bytes: int = 1_000 * 1024
    """Largest PNG file: the Zooniverse lab uploader refuses files over
    ``1000 * 1024`` bytes (ZOONIVERSE.md §1.4).
    """

    max_png_width: int = 4096
    """Widest PNG, in pixels (from ``IHDR``, before decoding)."""

    max_png_height: int = 4096
    """Tallest PNG, in pixels (from ``IHDR``, before decoding)."""

    max_png_pixels: int = 16_000_000
    """Most pixels of one PNG (decompression-bomb guard, from ``IHDR``
    before decoding).
    """

    anonymised_text_keys: tuple[str, ...] = ("Software", "bands", "band", "stretch")
    """Text chunks a PNG of an ``anonymised`` project keeps; every other
    text chunk is removed.
    """

    _KINDS: ClassVar[dict[str, str]] = {
        "dataset_types": "strings",
        "collection_patterns": "strings",
        "max_entries": "limit",
        "max_total_uncompressed_bytes": "limit",
        "max_entry_uncompressed_bytes": "limit",
        "max_index_bytes": "limit",
        "max_compression_ratio": "ratio",
        "max_png_bytes": "limit",
        "max_png_width": "limit",
        "max_png_height": "limit",
        "max_png_pixels": "limit",
        "anonymised_text_keys": "strings",
    }

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = _check_value(field.name, getattr(self, field.name), "DataRightsPolicy")
            object.__setattr__(self, field.name, value)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, source: str = "policy") -> DataRightsPolicy:
        """Make a policy from a mapping such as a parsed policy file.

        Parameters
        ----------
        mapping : `~collections.abc.Mapping` [`str`, `object`]
            Policy keys and values; absent keys take their defaults.  When
            ``max_entry_uncompressed_bytes`` is given and ``max_png_bytes``
            is not, the PNG file-size limit takes the same value.
        source : `str`, optional
            Where the mapping comes from (a file name), for error messages.

        Returns
        -------
        policy : `DataRightsPolicy`
            The policy.

        Raises
        ------
        PolicyError
            Raised if ``mapping`` is not a mapping, has an unknown key or a
            value of the wrong type, a limit that is not positive, or an
            invalid pattern or text key; the message names the key and
            ``source``.
        """
        if not isinstance(mapping, Mapping):
            raise PolicyError(f"{source}: a policy must be a mapping of keys to values, not {mapping!r}.")
        values: dict[str, Any] = {}
        for key, value in mapping.items():
            if key not in cls._KINDS:
                known = ", ".join(cls._KINDS)
                raise PolicyError(f"{source}: unknown policy key {key!r} (known keys: {known}).")
            values[key] = _check_value(key, value, source)
        if "max_entry_uncompressed_bytes" in values and "max_png_bytes" not in values:
            values["max_png_bytes"] = values["max_entry_uncompressed_bytes"]
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> DataRightsPolicy:
        """Read a policy file.

        Parameters
        ----------
        path : `str` or `os.PathLike`
            A YAML file holding one mapping (``doc/export_policy.md``).

        Returns
        -------
        policy : `DataRightsPolicy`
            The policy.

        Raises
        ------
        PolicyError
            Raised if the file cannot be read, is not YAML, does not hold a
            mapping, or holds an invalid policy; the message names the file.
        """
        source = os.fspath(path)
        try:
            with open(source, encoding="utf-8") as stream:
                content = yaml.safe_load(stream)
        except (OSError, UnicodeDecodeError) as err:
            raise PolicyError(f"{source}: cannot read the policy file ({err}).") from err
        except yaml.YAMLError as err:
            raise PolicyError(f"{source}: the policy file is not valid YAML ({err}).") from err
        if not isinstance(content, Mapping):
            kind = "empty" if content is None else f"a {type(content).__name__}"
            raise PolicyError(f"{source}: the policy file must hold a mapping of keys to values, not {kind}.")
        return cls.from_mapping(content, source=source)

    def to_mapping(self) -> dict[str, Any]:
        """Return the policy as a mapping that `from_mapping` (or a YAML
        dump read by `from_yaml`) turns back into an equal policy.

        Returns
        -------
        mapping : `dict` [`str`, `object`]
            Every key, lists for the sequences.
        """
        return {
            field.name: list(value) if isinstance(value := getattr(self, field.name), tuple) else value
            for field in dataclasses.fields(self)
        }

    def allows_dataset_type(self, name: str) -> bool:
        """Say whether a dataset type may be exported.

        Parameters
        ----------
        name : `str`
            Dataset type name.

        Returns
        -------
        allowed : `bool`
            Whether ``name`` is one of `dataset_types` (exactly).
        """
        return isinstance(name, str) and name in self.dataset_types

    def allows_collection(self, collection: str, owner: str) -> bool:
        """Say whether a project of ``owner`` may export from a collection.

        Parameters
        ----------
        collection : `str`
            Butler collection name.
        owner : `str`
            The project owner's user name.

        Returns
        -------
        allowed : `bool`
            `True` if ``owner`` is a safe name (`SAFE_OWNER`, not ``.`` or
            ``..``), ``collection`` is a plain name (no whitespace, control
            or glob characters, no empty, ``.`` or ``..`` component) and it
            matches one of `collection_patterns` with ``{owner}`` replaced.
        """
        if not isinstance(owner, str) or not SAFE_OWNER.fullmatch(owner) or owner in (".", ".."):
            return False
        if not isinstance(collection, str) or not collection:
            return False
        if any(c.isspace() or not c.isprintable() or c in _GLOB_CHARACTERS for c in collection):
            return False
        if any(part in ("", ".", "..") for part in collection.split("/")):
            return False
        return any(
            fnmatch.fnmatchcase(collection, pattern.replace(_PLACEHOLDER, owner))
            for pattern in self.collection_patterns
        )
