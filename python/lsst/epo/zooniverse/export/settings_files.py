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

"""Parse the export service's settings files with pydantic models, and
report a bad setting the same way everywhere.

The service configuration (`~lsst.epo.zooniverse.export.service_config`),
the data-rights policy (`~lsst.epo.zooniverse.export.policy`) and the
notifier settings (`~lsst.epo.zooniverse.export.notify`) are each
described by `SettingsModel` subclasses: unknown keys are refused, types
are strict (``"5"`` is not an integer, ``true`` is not a number), and a
validator that refuses a value raises `SettingValueError` saying what is
allowed.  `validate_settings` turns the `pydantic.ValidationError` into
the caller's own exception class, with one sentence per problem::

    FILE: key 'a.b': bad value X; allowed: WHAT.
    FILE: key 'a' is missing (required).
    FILE: key 'a': unknown keys ['x', 'y']; allowed: b, c.

Values of keys whose names say they hold a secret, and whole mappings or
lists, are never shown; every message also goes through the process's
`~lsst.epo.zooniverse.export.redaction.Redactor`.
"""

from __future__ import annotations

__all__ = [
    "HIDDEN",
    "MISSING",
    "SettingValueError",
    "SettingsModel",
    "describe_validation_error",
    "read_settings_file",
    "setting_message",
    "validate_settings",
]

import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
import yaml

from .redaction import default_redactor, looks_secret


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


HIDDEN: Any = _Marker("HIDDEN")
"""`SettingValueError` value marker: the bad value must not be shown."""

MISSING: Any = _Marker("MISSING")
"""`SettingValueError` value marker: the key is absent."""

_SAME: Any = _Marker("SAME")


class SettingsModel(pydantic.BaseModel):
    """Base of the settings models: unknown keys refused, strict types,
    immutable.
    """

    model_config = pydantic.ConfigDict(extra="forbid", strict=True, frozen=True)


class SettingValueError(ValueError):
    """Raised by a validator of a `SettingsModel` for a refused value.

    Parameters
    ----------
    allowed : `str`
        What is allowed instead (``"a positive integer"``).
    value : `object`, optional
        The bad value to show, if not the whole value validated (one item
        of a list, say); `HIDDEN` to show none, `MISSING` for an absent
        key.
    key : `str` or `int`, optional
        Key (or list index) below the validated one the problem is at
        (``"operators"``, ``0``).
    problem : `str`, optional
        What is wrong, instead of ``bad value X``.
    """

    def __init__(
        self, allowed: str, *, value: Any = _SAME, key: str | int | None = None, problem: str | None = None
    ) -> None:
        super().__init__(allowed)
        self.allowed = allowed
        self.value = value
        self.key = key
        self.problem = problem


def _show(value: Any, key: str) -> str:
    """Describe a bad value without revealing secrets or whole sections."""
    name = key.rsplit(".", 1)[-1].split("[", 1)[0]
    # A *_env or *_file key names where a secret is, not the secret.
    if value is HIDDEN or (looks_secret(name) and not name.endswith(("_env", "_file"))):
        return "(hidden)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "a list"
    if value is None or isinstance(value, (str, int, float, bool)):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return f"a {type(value).__name__}"


def setting_message(
    source: str | None, key: str, *, allowed: str, value: Any = HIDDEN, problem: str | None = None
) -> str:
    """Say what is wrong with one setting.

    Parameters
    ----------
    source : `str` or `None`
        File (or other origin) of the settings; not named if `None`.
    key : `str`
        Dotted key of the setting (``"review.session_seconds"``); the
        top level if empty.
    allowed : `str`
        What is allowed.
    value : `object`, optional
        The bad value (`HIDDEN` to show none, `MISSING` for an absent
        key).
    problem : `str`, optional
        What is wrong, instead of ``bad value X``.

    Returns
    -------
    message : `str`
        ``"FILE: key 'a.b': bad value X; allowed: WHAT."``, redacted.
    """
    head = f"{source}: " if source else ""
    if key:
        head += f"key '{key}'"
    if value is MISSING and problem is None:
        text = f"{head} is missing; allowed: {allowed}." if key else f"{head}missing; allowed: {allowed}."
    else:
        problem = problem or f"bad value {_show(value, key)}"
        text = f"{head}: {problem}; allowed: {allowed}." if key else f"{head}{problem}; allowed: {allowed}."
    return default_redactor().redact(text)


def _key(loc: Sequence[Any], prefix: str) -> str:
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key += f".{part}" if key else str(part)
    return key


def _unwrap(annotation: Any) -> Any:
    """Return the model or container type inside ``Annotated``/``Optional``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin is typing.Union or origin is types.UnionType:
            arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
            nested = [a for a in arguments if typing.get_origin(a) or _is_model(a)]
            annotation = (nested or arguments)[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)


def _model_at(model: type[pydantic.BaseModel] | None, loc: Sequence[Any]) -> type[pydantic.BaseModel] | None:
    """Return the model validating the mapping at ``loc`` (or `None`)."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if _is_model(annotation):
            field = annotation.model_fields.get(part)
            if field is None:
                return None
            annotation = field.annotation
            continue
        origin = typing.get_origin(annotation)
        arguments = typing.get_args(annotation)
        if origin in (dict, Mapping) and len(arguments) == 2:
            annotation = arguments[1]
        elif origin in (list, tuple, Sequence) and arguments:
            annotation = arguments[0]
        else:
            return None
    annotation = _unwrap(annotation)
    return annotation if _is_model(annotation) else None


_ALLOWED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def describe_validation_error(
    error: pydantic.ValidationError,
    *,
    source: str | None,
    model: type[pydantic.BaseModel] | None = None,
    prefix: str = "",
) -> str:
    """Describe every problem of a validation error, one sentence each.

    Parameters
    ----------
    error : `pydantic.ValidationError`
        The error.
    source : `str` or `None`
        File (or other origin) of the settings.
    model : `type` [`pydantic.BaseModel`], optional
        The model validated (to list the allowed keys when unknown keys
        are found).
    prefix : `str`, optional
        Key of the validated mapping inside its file (``"review"``).

    Returns
    -------
    message : `str`
        The sentences (see the module documentation), redacted.
    """
    sentences: list[str] = []
    unknown: dict[tuple[Any, ...], list[str]] = {}
    for problem in error.errors():
        loc = tuple(problem["loc"])
        kind = problem["type"]
        if kind == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(str(loc[-1]))
            continue
        if kind == "missing":
            head = f"{source}: " if source else ""
            sentences.append(
                default_redactor().redact(f"{head}key '{_key(loc, prefix)}' is missing (required).")
            )
            continue
        value = problem["input"]
        cause = (problem.get("ctx") or {}).get("error")
        what = None
        if isinstance(cause, SettingValueError):
            what = cause.problem
            allowed = cause.allowed
            if cause.key is not None:
                loc += (cause.key,)
            if cause.value is not _SAME:
                value = cause.value
        elif isinstance(cause, Exception):
            allowed = str(cause)
        else:
            allowed = _ALLOWED.get(kind) or problem["msg"].removeprefix("Input should be ")
        sentences.append(
            setting_message(source, _key(loc, prefix), allowed=allowed, value=value, problem=what)
        )
    for loc, names in unknown.items():
        where = _model_at(model, loc)
        known = ", ".join(sorted(where.model_fields)) if where is not None else "see the documentation"
        sentences.append(
            setting_message(source, _key(loc, prefix), allowed=known, problem=f"unknown keys {sorted(names)}")
        )
    return " ".join(sentences)


def validate_settings[Model: pydantic.BaseModel](
    model: type[Model],
    values: Any,
    *,
    source: str | None,
    error: type[Exception],
    prefix: str = "",
) -> Model:
    """Validate settings with a model; raise the caller's exception.

    Parameters
    ----------
    model : `type` [`SettingsModel`]
        The model.
    values : `object`
        The settings (a mapping, normally).
    source : `str` or `None`
        File (or other origin) of the settings, for messages.
    error : `type` [`Exception`]
        Exception class to raise (``ServiceConfigError``, ...).
    prefix : `str`, optional
        Key of ``values`` inside its file, for messages.

    Returns
    -------
    settings : ``model``
        The validated settings.

    Raises
    ------
    Exception
        An ``error`` whose message is `describe_validation_error`'s.
    """
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as err:
        raise error(describe_validation_error(err, source=source, model=model, prefix=prefix)) from None


def read_settings_file(
    path: str | os.PathLike[str], *, what: str, error: type[Exception], empty_ok: bool = False
) -> dict[str, Any]:
    """Read a YAML settings file holding one mapping.

    Parameters
    ----------
    path : `str` or `os.PathLike`
        The file.
    what : `str`
        What the file is (``"policy file"``), for messages.
    error : `type` [`Exception`]
        Exception class to raise.
    empty_ok : `bool`, optional
        Read an empty file as an empty mapping instead of refusing it.

    Returns
    -------
    values : `dict` [`str`, `object`]
        The mapping.

    Raises
    ------
    Exception
        An ``error`` naming the file if it cannot be read, is not YAML or
        does not hold a mapping (an empty file included unless
        ``empty_ok``).
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as stream:
            content = yaml.safe_load(stream)
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{source}: cannot read the {what} ({err}).") from None
    except yaml.YAMLError as err:
        raise error(f"{source}: the {what} is not valid YAML ({err}).") from None
    if content is None and empty_ok:
        return {}
    if not isinstance(content, dict):
        kind = "empty" if content is None else f"a {type(content).__name__}"
        raise error(f"{source}: the {what} must hold a mapping of keys to values, not {kind}.")
    return content
