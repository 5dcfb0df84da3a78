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
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any

import pydantic

from ..formats.png_chunks import check_text_key
from ..formats.rgb_index import METADATA_POLICIES
from .settings_files import SettingsModel, SettingValueError, read_settings_file, validate_settings

SAFE_OWNER = re.compile(r"[A-Za-z0-9_.-]+")
"""What an owner name (the ``{owner}`` of a collection pattern) may hold;
``.`` and ``..`` are refused too.
"""

_GLOB_CHARACTERS = frozenset("*?[]{}\\")
_PLACEHOLDER = "{owner}"


class PolicyError(ValueError):
    """Raised for an invalid policy: the message names the file (or other
    source), the key at fault, the bad value and what is allowed.
    """


def _string_list(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        raise SettingValueError("a list of strings")
    return tuple(value)


def _distinct_names(values: tuple[str, ...]) -> tuple[str, ...]:
    for index, item in enumerate(values):
        if not item or item != item.strip():
            raise SettingValueError("non-empty strings without surrounding spaces", value=item, key=index)
    for index, item in enumerate(values):
        if item in values[:index]:
            raise SettingValueError("a list without repeated values", value=item, key=index)
    return values


def _collection_patterns(patterns: tuple[str, ...]) -> tuple[str, ...]:
    for index, pattern in enumerate(patterns):
        if "{" in pattern.replace(_PLACEHOLDER, "") or "}" in pattern.replace(_PLACEHOLDER, ""):
            allowed = f"patterns whose only brace is the {_PLACEHOLDER} placeholder"
        elif any(c.isspace() or not c.isprintable() for c in pattern):
            allowed = "patterns without whitespace or control characters"
        elif any(part in ("", ".", "..") for part in pattern.split("/")):
            allowed = "patterns without an empty, '.' or '..' component"
        else:
            continue
        raise SettingValueError(allowed, value=pattern, key=index)
    return patterns


def _text_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    for index, key in enumerate(keys):
        try:
            check_text_key(key)
        except ValueError:
            allowed = "PNG text keywords (1-79 Latin-1 characters, no control characters or stray spaces)"
            raise SettingValueError(allowed, value=key, key=index) from None
    return keys


_Names = Annotated[
    tuple[str, ...], pydantic.BeforeValidator(_string_list), pydantic.AfterValidator(_distinct_names)
]
_Limit = Annotated[int, pydantic.Field(gt=0)]
_Ratio = Annotated[float, pydantic.Field(ge=1, allow_inf_nan=False)]


class _PolicyFile(SettingsModel):
    """The keys of a policy file (absent ones are not validated: the
    `DataRightsPolicy` defaults apply).
    """

    dataset_types: _Names = None  # type: ignore[assignment]
    collection_patterns: Annotated[_Names, pydantic.AfterValidator(_collection_patterns)] = None  # type: ignore[assignment]
    max_entries: _Limit = None  # type: ignore[assignment]
    max_total_uncompressed_bytes: _Limit = None  # type: ignore[assignment]
    max_entry_uncompressed_bytes: _Limit = None  # type: ignore[assignment]
    max_index_bytes: _Limit = None  # type: ignore[assignment]
    max_compression_ratio: _Ratio = None  # type: ignore[assignment]
    max_png_bytes: _Limit = None  # type: ignore[assignment]
    max_png_width: _Limit = None  # type: ignore[assignment]
    max_png_height: _Limit = None  # type: ignore[assignment]
    max_png_pixels: _Limit = None  # type: ignore[assignment]
    anonymised_text_keys: Annotated[_Names, pydantic.AfterValidator(_text_keys)] = None  # type: ignore[assignment]


def _validated(values: Mapping[str, Any], source: str, prefix: str = "") -> dict[str, Any]:
    """Check policy keys and values; return those given, normalised."""
    model = validate_settings(_PolicyFile, values, source=source, error=PolicyError, prefix=prefix)
    return model.model_dump(exclude_unset=True)


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
    ``1000 * 1024`` bytes (doc/zooniverse_facts.md §3).
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

    def __post_init__(self) -> None:
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        for name, value in _validated(values, "DataRightsPolicy").items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], *, source: str = "policy", prefix: str = ""
    ) -> DataRightsPolicy:
        """Make a policy from a mapping such as a parsed policy file.

        Parameters
        ----------
        mapping : `~collections.abc.Mapping` [`str`, `object`]
            Policy keys and values; absent keys take their defaults.  When
            ``max_entry_uncompressed_bytes`` is given and ``max_png_bytes``
            is not, the PNG file-size limit takes the same value.
        source : `str`, optional
            Where the mapping comes from (a file name), for error messages.
        prefix : `str`, optional
            Key of the mapping in that file (``"policy"`` for a policy
            inside a service configuration), for error messages.

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
        values = _validated(mapping, source, prefix)
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
        content = read_settings_file(path, what="policy file", error=PolicyError)
        return cls.from_mapping(content, source=os.fspath(path))

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
